//! The accounts half of the in-memory fake: the same rules as `sql/accounts.rs` (first account
//! is the admin, the mode decides the rest, an invite is consumed only with the account, no
//! change may leave no active admin), on the fake's maps.

use super::{MemoryStore, Result, Session};
use crate::db::{
    User,
    accounts::{
        AccessChange, AccessOutcome, Account, AccountLink, LINK_INVITE, LINK_RESET, NewAccount,
        Registered, Registration, Role, SessionRow, Status,
    },
};

fn account(user: &User, created_at: i64) -> Account {
    Account {
        id: user.id.clone(),
        username: user.username.clone(),
        role: user.role,
        status: user.status,
        created_at,
    }
}

pub(super) fn register(store: &MemoryStore, a: &NewAccount) -> Result<Registered> {
    store.check()?;
    let mut data = store.data();
    let first = !data.kv.contains_key("first_user");
    let (role, status) = match (first || a.admin, a.mode) {
        (true, _) => (Role::Admin, Status::Active),
        (false, Registration::Open) => (Role::User, Status::Active),
        (false, Registration::Approval) => (Role::User, Status::Pending),
        (false, Registration::Closed) => return Ok(Registered::Closed),
        (false, Registration::Invite) => {
            let valid = data.links.iter().position(|l| {
                Some(&l.token_hash) == a.invite_hash.as_ref()
                    && l.purpose == LINK_INVITE
                    && l.used_at.is_none()
                    && l.revoked_at.is_none()
                    && l.expires_at > a.now
            });
            match valid {
                None => return Ok(Registered::InviteInvalid),
                Some(_) if data.users.contains_key(&a.key) => return Ok(Registered::Taken),
                Some(i) => data.links[i].used_at = Some(a.now),
            }
            (Role::User, Status::Active)
        }
    };
    if data.users.contains_key(&a.key) {
        return Ok(Registered::Taken);
    }
    if first {
        data.kv.insert("first_user".into(), a.id.clone());
    }
    let user = User {
        id: a.id.clone(),
        username: a.username.clone(),
        password_hash: a.password_hash.clone(),
        role,
        status,
    };
    data.users.insert(a.key.clone(), (user.clone(), a.now));
    Ok(Registered::Created(account(&user, a.now)))
}

pub(super) fn user_by_id(store: &MemoryStore, id: &str) -> Result<Option<User>> {
    store.check()?;
    let data = store.data();
    Ok(data
        .users
        .values()
        .find(|(u, _)| u.id == id)
        .map(|(u, _)| u.clone()))
}

pub(super) fn accounts(store: &MemoryStore) -> Result<Vec<Account>> {
    store.check()?;
    let data = store.data();
    let mut all: Vec<Account> = data.users.values().map(|(u, at)| account(u, *at)).collect();
    all.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    Ok(all)
}

pub(super) fn set_access(
    store: &MemoryStore,
    user_id: &str,
    change: AccessChange,
) -> Result<AccessOutcome> {
    store.check()?;
    let mut data = store.data();
    let Some((user, at)) = data.users.values_mut().find(|(u, _)| u.id == user_id) else {
        return Ok(AccessOutcome::NotFound);
    };
    let before = (user.role, user.status);
    match change {
        AccessChange::Role(r) => user.role = r,
        AccessChange::Status(s) => user.status = s,
    }
    let changed = account(user, *at);
    let admins = data
        .users
        .values()
        .filter(|(u, _)| u.role == Role::Admin && u.status == Status::Active)
        .count();
    if admins == 0 {
        let (user, _) = data
            .users
            .values_mut()
            .find(|(u, _)| u.id == user_id)
            .expect("found above");
        (user.role, user.status) = before;
        return Ok(AccessOutcome::LastAdmin);
    }
    Ok(AccessOutcome::Changed(changed))
}

pub(super) fn set_password(store: &MemoryStore, user_id: &str, hash: &str) -> Result<bool> {
    store.check()?;
    let mut data = store.data();
    let found = data.users.values_mut().find(|(u, _)| u.id == user_id);
    Ok(found.map(|(u, _)| u.password_hash = hash.into()).is_some())
}

pub(super) fn create_session_row(store: &MemoryStore, row: &SessionRow) -> Result<()> {
    store.check()?;
    let session = Session {
        row: row.clone(),
        revoked_at: None,
    };
    store.data().sessions.insert(row.id.clone(), session);
    Ok(())
}

pub(super) fn sessions_of(
    store: &MemoryStore,
    user_id: &str,
    kind: &str,
    now: i64,
) -> Result<Vec<SessionRow>> {
    store.check()?;
    let data = store.data();
    let mut rows: Vec<SessionRow> = data
        .sessions
        .values()
        .filter(|s| s.row.user_id == user_id && s.row.kind == kind)
        .filter(|s| s.revoked_at.is_none() && s.row.expires_at > now)
        .map(|s| s.row.clone())
        .collect();
    rows.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
    Ok(rows)
}

pub(super) fn revoke_sessions_of(
    store: &MemoryStore,
    user_id: &str,
    kind: Option<&str>,
    keep: Option<&str>,
    now: i64,
) -> Result<Vec<(String, i64)>> {
    store.check()?;
    let mut data = store.data();
    let mut revoked = Vec::new();
    for s in data.sessions.values_mut() {
        let chosen = s.row.user_id == user_id
            && kind.is_none_or(|k| s.row.kind == k)
            && keep != Some(s.row.id.as_str());
        if chosen && s.revoked_at.is_none() {
            s.revoked_at = Some(now);
            revoked.push((s.row.id.clone(), s.row.expires_at));
        }
    }
    Ok(revoked)
}

pub(super) fn revoke_session_of(
    store: &MemoryStore,
    user_id: &str,
    id: &str,
    kind: &str,
    now: i64,
) -> Result<Option<i64>> {
    store.check()?;
    let mut data = store.data();
    let Some(s) = data.sessions.get_mut(id) else {
        return Ok(None);
    };
    if s.row.user_id != user_id || s.row.kind != kind || s.revoked_at.is_some() {
        return Ok(None);
    }
    if s.row.expires_at <= now {
        return Ok(None);
    }
    s.revoked_at = Some(now);
    Ok(Some(s.row.expires_at))
}

pub(super) fn create_link(store: &MemoryStore, link: &AccountLink) -> Result<()> {
    store.check()?;
    store.data().links.push(link.clone());
    Ok(())
}

pub(super) fn open_links(store: &MemoryStore, purpose: &str, now: i64) -> Result<Vec<AccountLink>> {
    store.check()?;
    let data = store.data();
    let mut links: Vec<AccountLink> = data
        .links
        .iter()
        .filter(|l| l.purpose == purpose && l.used_at.is_none() && l.revoked_at.is_none())
        .filter(|l| l.expires_at > now)
        .cloned()
        .collect();
    links.reverse();
    Ok(links)
}

pub(super) fn revoke_link(store: &MemoryStore, id: &str, purpose: &str, now: i64) -> Result<bool> {
    store.check()?;
    let mut data = store.data();
    let found = data.links.iter_mut().find(|l| {
        l.id == id && l.purpose == purpose && l.used_at.is_none() && l.revoked_at.is_none()
    });
    Ok(found.map(|l| l.revoked_at = Some(now)).is_some())
}

pub(super) fn use_reset_link(
    store: &MemoryStore,
    token_hash: &str,
    password_hash: &str,
    now: i64,
) -> Result<Option<String>> {
    store.check()?;
    let mut data = store.data();
    let Some(link) = data.links.iter_mut().find(|l| {
        l.token_hash == token_hash
            && l.purpose == LINK_RESET
            && l.used_at.is_none()
            && l.revoked_at.is_none()
            && l.expires_at > now
    }) else {
        return Ok(None);
    };
    link.used_at = Some(now);
    let Some(user_id) = link.user_id.clone() else {
        return Ok(None);
    };
    if let Some((u, _)) = data.users.values_mut().find(|(u, _)| u.id == user_id) {
        u.password_hash = password_hash.into();
    }
    Ok(Some(user_id))
}
