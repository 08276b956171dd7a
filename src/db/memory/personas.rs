//! Personas and provider connections in the in-memory fake: the same rules as
//! `sql/personas.rs` (unique ids and names, a used connection cannot go, every change bumps
//! the version).

use super::{MemoryStore, Result};
use crate::db::{
    StoreError,
    personas::{PersonaChange, PersonaSnapshot},
};

pub(super) fn version(store: &MemoryStore) -> Result<i64> {
    store.check()?;
    Ok(store.data().personas.version)
}

pub(super) fn snapshot(store: &MemoryStore) -> Result<PersonaSnapshot> {
    store.check()?;
    Ok(store.data().personas.clone())
}

pub(super) fn change(store: &MemoryStore, change: &PersonaChange) -> Result<bool> {
    store.check()?;
    let mut data = store.data();
    let p = &mut data.personas;
    let taken = || StoreError::Conflict("taken".into());
    let done = match change {
        PersonaChange::PutConnection { row, create } => {
            if p.connections
                .iter()
                .any(|c| c.name == row.name && c.id != row.id || *create && c.id == row.id)
            {
                return Err(taken());
            }
            if *create {
                p.connections.push(row.clone());
                true
            } else if let Some(c) = p.connections.iter_mut().find(|c| c.id == row.id) {
                let created_at = c.created_at;
                *c = row.clone();
                c.created_at = created_at;
                true
            } else {
                false
            }
        }
        PersonaChange::DeleteConnection { id } => {
            if p.agents
                .iter()
                .any(|a| a.connection_id.as_deref() == Some(id))
            {
                return Err(StoreError::Conflict("in use".into()));
            }
            let before = p.connections.len();
            p.connections.retain(|c| &c.id != id);
            p.connections.len() < before
        }
        PersonaChange::PutAgent { row, create } => {
            if p.agents.iter().any(|a| {
                a.name_key() == row.name_key() && a.id != row.id || *create && a.id == row.id
            }) {
                return Err(taken());
            }
            if *create {
                p.agents.push(row.clone());
                true
            } else if let Some(a) = p.agents.iter_mut().find(|a| a.id == row.id) {
                let created_at = a.created_at;
                *a = row.clone();
                a.created_at = created_at;
                true
            } else {
                false
            }
        }
        PersonaChange::DeleteAgent { id } => {
            let before = p.agents.len();
            p.agents.retain(|a| &a.id != id);
            p.agents.len() < before
        }
    };
    if done {
        p.version += 1;
    }
    Ok(done)
}
