//! A thread's lifecycle: rename, change agents, hand over ownership, archive and pin (each
//! member's own), soft delete, and the purge of threads deleted long enough ago.
//!
//! Every change that others see goes out as an event through `Realtime::publish` (here and, by
//! the broker, on every instance): `thread_updated` / `members_updated` are ordered after the
//! last message stored before the change; a deletion ends every subscription at once.

use std::time::Duration;

use axum::{Json, extract::State, http::StatusCode};
use tokio_util::sync::CancellationToken;

use super::{member_thread, members::publish_members};
use crate::{
    auth::CurrentUser,
    contract::{ServerFrame, http::ThreadView, threads::ThreadPatch},
    db::{
        lifecycle::{MemberFlags, ThreadChange},
        now_ms,
    },
    domain::ThreadTitle,
    error::ApiError,
    http::json::{Fields, JsonObject},
    realtime::Event,
    state::AppState,
};

/// A boolean field, absent or null meaning "leave it".
fn opt_bool(
    f: &mut Fields<'_>,
    body: &serde_json::Map<String, serde_json::Value>,
    name: &str,
) -> Option<bool> {
    match body.get(name) {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Bool(b)) => Some(*b),
        Some(_) => {
            f.reject(name, "must be a boolean");
            None
        }
    }
}

/// Change a thread: the owner renames it, changes its agents or hands it to another member;
/// any member archives or pins it for themselves.
#[utoipa::path(
    patch,
    path = "/api/threads/{id}",
    operation_id = "updateThread",
    tag = "threads",
    params(("id" = String, Path, description = "Thread id")),
    request_body = ThreadPatch,
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The thread as it now is, with the caller's flags", body = ThreadView),
        (status = 403, response = crate::error::responses::Forbidden),
        (status = 404, response = crate::error::responses::NotFound),
        (status = 422, response = crate::error::responses::Validation),
    )
)]
pub(crate) async fn update(
    State(state): State<AppState>,
    user: CurrentUser,
    crate::http::IdPath(id): crate::http::IdPath,
    JsonObject(body): JsonObject,
) -> Result<Json<ThreadView>, ApiError> {
    let mut f = Fields::new(&body);
    let title = f.opt_string("title");
    let title = f.parse("title", title, ThreadTitle::parse);
    let agents: Option<Vec<String>> = f
        .opt_strings("agents")
        .map(|a| a.into_iter().map(str::to_string).collect());
    if let Some(unknown) = agents.iter().flatten().find(|a| !state.agents.knows(a)) {
        f.reject("agents", format!("unknown agent {unknown:?}"));
    }
    let owner_id = f.opt_string("owner_id").map(str::to_string);
    let flags = MemberFlags {
        archived: opt_bool(&mut f, &body, "archived"),
        pinned: opt_bool(&mut f, &body, "pinned"),
    };
    f.finish()?;
    let thread = member_thread(&state, &id, user.id()).await?;
    let change = ThreadChange {
        title: title.map(|t| t.as_str().to_string()),
        agents: agents.map(|a| {
            let mut unique: Vec<String> = Vec::new();
            for x in a {
                if !unique.contains(&x) {
                    unique.push(x);
                }
            }
            unique
        }),
        owner_id: owner_id.filter(|o| *o != thread.owner_id),
    };
    let owner_change =
        change.title.is_some() || change.agents.is_some() || change.owner_id.is_some();
    if owner_change && thread.owner_id != user.id() {
        return Err(ApiError::Forbidden(
            "only the thread's owner can rename it, change its agents or its owner",
        ));
    }
    if let Some(new_owner) = &change.owner_id {
        let (tid, who) = (id.clone(), new_owner.clone());
        let members = state
            .db
            .run(|s| async move { s.members(&tid).await })
            .await?;
        if !members.contains(&who) {
            return Err(ApiError::field(
                "owner_id",
                "must be a member of the thread",
            ));
        }
    }
    let mut current = thread;
    if owner_change {
        let (tid, c) = (id.clone(), change.clone());
        current = state
            .db
            .run(|s| async move { s.update_thread(&tid, &c).await })
            .await?
            .ok_or(ApiError::NotFound)?;
        state.realtime.publish(Event::ThreadChanged {
            thread_id: id.clone(),
            at_seq: current.last_seq,
            title: current.title.clone(),
            owner_id: current.owner_id.clone(),
            agents: current.agents.clone(),
        });
        let tid = id.clone();
        let members = state
            .db
            .run(|s| async move { s.members(&tid).await })
            .await?;
        state.realtime.publish(Event::Notice {
            users: members.into_iter().collect(),
            thread: id.clone(),
            frame: Box::new(ServerFrame::ThreadUpdated {
                thread: id.clone(),
                title: current.title.clone(),
                owner_id: current.owner_id.clone(),
                agents: current.agents.clone(),
            }),
        });
        if change.owner_id.is_some() {
            publish_members(&state, &id, current.last_seq).await?;
        }
    }
    if flags.archived == Some(true) {
        // Opted-in members keep a summary of what they archive (docs/memories.md).
        state.memories.thread_archived(user.id(), &id);
    }
    let (tid, uid, now) = (id.clone(), user.id().to_string(), now_ms());
    let (archived, pinned) = state
        .db
        .run(|s| async move {
            if flags.archived.is_some() || flags.pinned.is_some() {
                s.set_member_flags(&tid, &uid, flags, now).await?;
            }
            s.member_flags(&tid, &uid).await
        })
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(crate::db::views::thread_view(
        &current, archived, pinned,
    )))
}

/// Delete a thread (its owner only): at once a 404 for everyone, on every instance; open
/// subscriptions end with `removed` (reason `deleted`). The data is purged later.
#[utoipa::path(
    delete,
    path = "/api/threads/{id}",
    operation_id = "deleteThread",
    tag = "threads",
    params(("id" = String, Path, description = "Thread id")),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, response = crate::error::responses::Forbidden),
        (status = 404, response = crate::error::responses::NotFound),
    )
)]
pub(crate) async fn delete(
    State(state): State<AppState>,
    user: CurrentUser,
    crate::http::IdPath(id): crate::http::IdPath,
) -> Result<StatusCode, ApiError> {
    let thread = member_thread(&state, &id, user.id()).await?;
    if thread.owner_id != user.id() {
        return Err(ApiError::Forbidden("only the thread's owner can delete it"));
    }
    let (tid, now) = (id.clone(), now_ms());
    let members = state
        .db
        .run(|s| async move {
            let members = s.members(&tid).await?;
            s.delete_thread(&tid, now).await.map(|d| d.map(|_| members))
        })
        .await?
        .ok_or(ApiError::NotFound)?;
    state.realtime.publish(Event::ThreadDeleted {
        thread_id: id,
        members: members.into_iter().collect(),
    });
    Ok(StatusCode::NO_CONTENT)
}

/// Purge threads deleted more than `database.deleted_retention_secs` ago, every
/// `database.purge_interval_ms` (every instance runs it; a purge is idempotent).
pub fn spawn_purge(state: AppState, stop: CancellationToken) {
    tokio::spawn(async move {
        let every = Duration::from_millis(state.settings.database.purge_interval_ms.max(100));
        let keep = state.settings.database.deleted_retention_secs as i64 * 1000;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            if !state.db.is_up() {
                continue;
            }
            let before = now_ms() - keep;
            match state
                .db
                .run(|s| async move { s.purge_deleted(before).await })
                .await
            {
                Ok(0) => {}
                Ok(n) => tracing::info!(threads = n, "purged deleted threads"),
                Err(e) => tracing::warn!(error = %e, "could not purge deleted threads yet"),
            }
        }
    });
}
