//! The single sign-on half of the in-memory fake: the same rules as `sql/sso.rs` (pending rows
//! are single use and expire, an identity links to one account, created with it).

use std::collections::HashMap;

use super::{MemoryStore, Result};
use crate::db::{
    User,
    accounts::{NewAccount, Registered},
    sso::{SsoIdentity, SsoPending},
};

/// Pending rows by key hash, and `(issuer, subject)` -> user id.
#[derive(Default)]
pub(super) struct Data {
    pending: HashMap<String, SsoPending>,
    identities: HashMap<(String, String), String>,
}

pub(super) fn put_pending(store: &MemoryStore, p: &SsoPending) -> Result<()> {
    store.check()?;
    let mut data = store.data();
    data.sso
        .pending
        .retain(|_, old| old.expires_at >= p.created_at);
    data.sso.pending.insert(p.key_hash.clone(), p.clone());
    Ok(())
}

pub(super) fn take_pending(
    store: &MemoryStore,
    kind: &str,
    key_hash: &str,
    now: i64,
) -> Result<Option<SsoPending>> {
    store.check()?;
    let mut data = store.data();
    if data
        .sso
        .pending
        .get(key_hash)
        .is_none_or(|p| p.kind != kind)
    {
        return Ok(None);
    }
    let p = data.sso.pending.remove(key_hash).expect("checked above");
    Ok((p.expires_at > now).then_some(p))
}

pub(super) fn user(store: &MemoryStore, issuer: &str, subject: &str) -> Result<Option<User>> {
    store.check()?;
    let id = {
        let data = store.data();
        data.sso
            .identities
            .get(&(issuer.to_string(), subject.to_string()))
            .cloned()
    };
    match id {
        Some(id) => super::accounts::user_by_id(store, &id),
        None => Ok(None),
    }
}

pub(super) fn register(
    store: &MemoryStore,
    a: &NewAccount,
    identity: &SsoIdentity,
) -> Result<Registered> {
    let key = (identity.issuer.clone(), identity.subject.clone());
    if store.data().sso.identities.contains_key(&key) {
        return Ok(Registered::Taken);
    }
    let outcome = super::accounts::register(store, a)?;
    if matches!(outcome, Registered::Created(_)) {
        store.data().sso.identities.insert(key, a.id.clone());
    }
    Ok(outcome)
}
