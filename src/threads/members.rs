//! A thread's members: the list with roles, removing a member (the owner) or leaving (a member
//! removes themself). A removed member's subscriptions end at once on every instance (`removed`)
//! and the thread becomes a 404 for them, like for a stranger; the others get `members_updated`.

use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
};

use super::member_thread;
use crate::{
    auth::CurrentUser,
    contract::{MemberRole, MemberView, RemovedReason, ServerFrame, threads::MemberList},
    error::ApiError,
    realtime::Event,
    state::AppState,
};

/// The members with their roles, owner first.
pub(crate) async fn member_views(
    state: &AppState,
    thread_id: &str,
) -> Result<Vec<MemberView>, ApiError> {
    let tid = thread_id.to_string();
    let (thread, members) = state
        .db
        .run(|s| async move {
            let thread = s.thread(&tid).await?;
            Ok((thread, s.thread_members(&tid).await?))
        })
        .await?;
    let Some(thread) = thread else {
        return Ok(Vec::new());
    };
    let mut views: Vec<MemberView> = members
        .into_iter()
        .map(|m| MemberView {
            role: if m.user_id == thread.owner_id {
                MemberRole::Owner
            } else {
                MemberRole::Member
            },
            user_id: m.user_id,
            username: m.username,
        })
        .collect();
    views.sort_by_key(|m| m.role != MemberRole::Owner);
    Ok(views)
}

/// Tell every subscriber the member list as it now is (after message `at_seq`).
pub(crate) async fn publish_members(
    state: &AppState,
    thread_id: &str,
    at_seq: i64,
) -> Result<(), ApiError> {
    let members = member_views(state, thread_id).await?;
    state.realtime.publish(Event::Notice {
        users: members.iter().map(|m| m.user_id.clone()).collect(),
        thread: thread_id.to_string(),
        frame: Box::new(ServerFrame::MembersUpdated {
            thread: thread_id.to_string(),
            members: members.clone(),
        }),
    });
    state.realtime.publish(Event::MembersChanged {
        thread_id: thread_id.to_string(),
        at_seq,
        members,
    });
    Ok(())
}

/// The thread's members and their roles (any member may look).
#[utoipa::path(
    get,
    path = "/api/threads/{id}/members",
    operation_id = "listMembers",
    tag = "threads",
    params(("id" = String, Path, description = "Thread id")),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The members, owner first", body = MemberList),
        (status = 404, response = crate::error::responses::NotFound),
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
    crate::http::IdPath(id): crate::http::IdPath,
) -> Result<Json<MemberList>, ApiError> {
    member_thread(&state, &id, user.id()).await?;
    Ok(Json(MemberList {
        members: member_views(&state, &id).await?,
    }))
}

/// Remove a member (the owner), or leave (a member removing themself). The owner cannot leave
/// without handing the thread to another member first (409).
#[utoipa::path(
    delete,
    path = "/api/threads/{id}/members/{user_id}",
    operation_id = "removeMember",
    tag = "threads",
    params(
        ("id" = String, Path, description = "Thread id"),
        ("user_id" = String, Path, description = "The member's user id"),
    ),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "No longer a member"),
        (status = 403, response = crate::error::responses::Forbidden),
        (status = 404, response = crate::error::responses::NotFound),
        (status = 409, response = crate::error::responses::Conflict),
    )
)]
pub(crate) async fn remove(
    State(state): State<AppState>,
    user: CurrentUser,
    path: Result<Path<(String, String)>, axum::extract::rejection::PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Ok(Path((id, target))) = path else {
        return Err(ApiError::NotFound);
    };
    let thread = member_thread(&state, &id, user.id()).await?;
    let leaving = target == user.id();
    if leaving && thread.owner_id == target {
        return Err(ApiError::Conflict(
            "the owner cannot leave; hand the thread to another member first".into(),
        ));
    }
    if !leaving && thread.owner_id != user.id() {
        return Err(ApiError::Forbidden(
            "only the thread's owner can remove members",
        ));
    }
    let (tid, who) = (id.clone(), target.clone());
    let removed = state
        .db
        .run(|s| async move { s.remove_member(&tid, &who).await })
        .await?;
    if !removed {
        return Err(ApiError::NotFound);
    }
    state.realtime.publish(Event::MemberRemoved {
        thread_id: id.clone(),
        user_id: target,
        reason: if leaving {
            RemovedReason::Left
        } else {
            RemovedReason::Removed
        },
    });
    publish_members(&state, &id, thread.last_seq).await?;
    Ok(StatusCode::NO_CONTENT)
}
