//! Threads: creation, listing, membership, and the membership cache that lets the WebSocket path
//! authorise subscriptions and sends while the database is down. The lifecycle (rename,
//! archive, pin, delete, purge) is in `lifecycle`, the member list and removals in `members`.

pub mod lifecycle;
pub mod members;

use std::{
    collections::{HashMap, HashSet},
    sync::RwLock,
};

use crate::{
    auth::CurrentUser,
    contract::http::{NewMember, NewThread, ThreadList, ThreadView},
    db::{StoreError, Thread, now_ms},
    domain::{ThreadTitle, Username},
    error::ApiError,
    http::json::{Fields, JsonObject},
    limits::{RateLimiter, retry_after_secs},
    realtime::Event,
    state::AppState,
};
use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    routing::{get, post},
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/threads", post(create).get(list))
        .route(
            "/api/threads/{id}",
            get(show).patch(lifecycle::update).delete(lifecycle::delete),
        )
        .route(
            "/api/threads/{id}/members",
            post(add_member).get(members::list),
        )
        .route(
            "/api/threads/{id}/members/{user_id}",
            axum::routing::delete(members::remove),
        )
}

/// Take one request from a per-user limiter, or answer 429 with when to retry.
fn rate_limit(
    state: &AppState,
    limiter: &RateLimiter<String>,
    scope: &str,
    user: &CurrentUser,
) -> Result<(), ApiError> {
    limiter.check(&user.id().to_string()).map_err(|wait| {
        crate::limits::count_rate_limited(&state.metrics, scope);
        ApiError::RateLimited {
            retry_after_secs: retry_after_secs(wait),
            policy: limiter.policy(),
            message: format!("too many {scope} requests; slow down"),
        }
    })
}

/// Create a thread owned by the caller, who is its first member.
#[utoipa::path(
    post,
    path = "/api/threads",
    operation_id = "createThread",
    tag = "threads",
    request_body = NewThread,
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 201, description = "The new thread", body = ThreadView),
        (status = 429, response = crate::error::responses::RateLimited),
    )
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    user: CurrentUser,
    JsonObject(body): JsonObject,
) -> Result<(StatusCode, Json<ThreadView>), ApiError> {
    rate_limit(&state, &state.limits.threads, "threads", &user)?;
    let mut f = Fields::new(&body);
    let title = f.string("title");
    let title = f.parse("title", title, ThreadTitle::parse);
    let agents: Vec<String> = f
        .opt_strings("agents")
        .unwrap_or_default()
        .into_iter()
        .map(str::to_string)
        .collect();
    if let Some(unknown) = agents.iter().find(|a| !state.agents.knows(a)) {
        f.reject("agents", format!("unknown agent {unknown:?}"));
    }
    f.finish()?;
    let mut unique = Vec::new();
    for a in agents {
        if !unique.contains(&a) {
            unique.push(a);
        }
    }
    let now = now_ms();
    let thread = Thread {
        id: uuid::Uuid::now_v7().to_string(),
        title: title.expect("checked").as_str().to_string(),
        owner_id: user.id().to_string(),
        agents: unique,
        created_at: now,
        last_seq: 0,
    };
    let stored = thread.clone();
    state
        .db
        .run(|s| async move { s.create_thread(&stored, now).await })
        .await?;
    state
        .members
        .set(&thread.id, [user.id().to_string()].into_iter().collect());
    Ok((StatusCode::CREATED, Json(ThreadView::from(&thread))))
}

/// The threads the caller is a member of: pinned first, then most recent activity first;
/// archived ones are left out, unless `archived=true` (then only they are listed).
#[utoipa::path(
    get,
    path = "/api/threads",
    operation_id = "listThreads",
    tag = "threads",
    params(("archived" = Option<bool>, Query, description = "List the archived threads instead")),
    security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, description = "The caller's threads", body = ThreadList))
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
    axum::extract::Query(q): axum::extract::Query<HashMap<String, String>>,
) -> Result<Json<ThreadList>, ApiError> {
    let archived = match q.get("archived").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(ApiError::field("archived", "must be true or false")),
    };
    let uid = user.id().to_string();
    let threads = state
        .db
        .run(|s| async move { s.thread_list(&uid, archived).await })
        .await?;
    state
        .members
        .note_user_threads(user.id(), threads.iter().map(|t| t.thread.id.clone()));
    Ok(Json(ThreadList {
        threads: threads
            .iter()
            .map(|t| crate::db::views::thread_view(&t.thread, t.archived, t.pinned))
            .collect(),
    }))
}

/// Load a thread the user is a member of; a stranger gets the same 404 as a missing thread.
pub async fn member_thread(
    state: &AppState,
    thread_id: &str,
    user_id: &str,
) -> Result<Thread, ApiError> {
    if !crate::domain::plausible_id(thread_id) {
        return Err(ApiError::NotFound);
    }
    let id = thread_id.to_string();
    let (thread, members) = state
        .db
        .run(|s| async move {
            let thread = s.thread(&id).await?;
            let members = match &thread {
                Some(_) => s.members(&id).await?,
                None => Vec::new(),
            };
            Ok((thread, members))
        })
        .await?;
    let thread = thread.ok_or(ApiError::NotFound)?;
    let is_member = members.iter().any(|m| m == user_id);
    state.members.set(thread_id, members.into_iter().collect());
    state.realtime.hub.note_head(thread_id, thread.last_seq);
    if is_member {
        Ok(thread)
    } else {
        Err(ApiError::NotFound)
    }
}

/// One thread; a thread the caller is not a member of is a 404, like one that does not exist.
#[utoipa::path(
    get,
    path = "/api/threads/{id}",
    operation_id = "getThread",
    tag = "threads",
    params(("id" = String, Path, description = "Thread id")),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The thread", body = ThreadView),
        (status = 404, response = crate::error::responses::NotFound),
    )
)]
pub(crate) async fn show(
    State(state): State<AppState>,
    user: CurrentUser,
    crate::http::IdPath(id): crate::http::IdPath,
) -> Result<Json<ThreadView>, ApiError> {
    let thread = member_thread(&state, &id, user.id()).await?;
    let (tid, uid) = (id.clone(), user.id().to_string());
    let (archived, pinned) = state
        .db
        .run(|s| async move { s.member_flags(&tid, &uid).await })
        .await?
        .unwrap_or_default();
    Ok(Json(crate::db::views::thread_view(
        &thread, archived, pinned,
    )))
}

/// Add a user to a thread (its owner only).
#[utoipa::path(
    post,
    path = "/api/threads/{id}/members",
    operation_id = "addMember",
    tag = "threads",
    params(("id" = String, Path, description = "Thread id")),
    request_body = NewMember,
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "The user is a member"),
        (status = 403, response = crate::error::responses::Forbidden),
        (status = 404, response = crate::error::responses::NotFound),
        (status = 429, response = crate::error::responses::RateLimited),
    )
)]
pub(crate) async fn add_member(
    State(state): State<AppState>,
    user: CurrentUser,
    crate::http::IdPath(id): crate::http::IdPath,
    JsonObject(body): JsonObject,
) -> Result<StatusCode, ApiError> {
    // Every attempt counts, known name or not: probing for usernames is slowed like anything else.
    rate_limit(&state, &state.limits.members, "members", &user)?;
    let mut f = Fields::new(&body);
    let username = f.string("username").map(str::to_string);
    f.finish()?;
    let thread = member_thread(&state, &id, user.id()).await?;
    if thread.owner_id != user.id() {
        return Err(ApiError::Forbidden(
            "only the thread's owner can add members",
        ));
    }
    let username = username.expect("checked");
    let key = match Username::parse(&username) {
        Ok(u) => u.key(),
        Err(_) => return Err(ApiError::NotFound),
    };
    let (tid, now) = (id.clone(), now_ms());
    let member = state
        .db
        .run(|s| async move {
            let target = s.user_by_key(&key).await?.ok_or(StoreError::NotFound)?;
            s.add_member(&tid, &target.id, now).await?;
            Ok(target.id)
        })
        .await?;
    state.realtime.publish(Event::MemberAdded {
        thread_id: id.clone(),
        user_id: member,
    });
    members::publish_members(&state, &id, thread.last_seq).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What this instance knows about who belongs to which thread.
#[derive(Default)]
pub struct Membership {
    /// Complete member sets, per thread.
    threads: RwLock<HashMap<String, HashSet<String>>>,
    /// Threads each user is known to belong to (positive knowledge only).
    users: RwLock<HashMap<String, HashSet<String>>>,
    /// Threads known to be deleted: nobody is a member, even while the database is down.
    gone: RwLock<HashSet<String>>,
}

impl Membership {
    /// `Some(answer)` when known, `None` when only the database can tell.
    pub fn check(&self, thread_id: &str, user_id: &str) -> Option<bool> {
        if self
            .gone
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(thread_id)
        {
            return Some(false);
        }
        if let Some(members) = self
            .threads
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(thread_id)
        {
            return Some(members.contains(user_id));
        }
        let users = self.users.read().unwrap_or_else(|e| e.into_inner());
        users
            .get(user_id)
            .filter(|t| t.contains(thread_id))
            .map(|_| true)
    }

    pub fn set(&self, thread_id: &str, members: HashSet<String>) {
        if members.is_empty() {
            return; // never cache guesses at ids that do not exist
        }
        self.threads
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(thread_id.to_string(), members);
    }

    pub fn add(&self, thread_id: &str, user_id: &str) {
        if let Some(m) = self
            .threads
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(thread_id)
        {
            m.insert(user_id.to_string());
        }
        self.users
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(user_id.to_string())
            .or_default()
            .insert(thread_id.to_string());
    }

    /// A member was removed (or left): a "no" from now on, on this instance, up or down.
    pub fn remove(&self, thread_id: &str, user_id: &str) {
        if let Some(m) = self
            .threads
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(thread_id)
        {
            m.remove(user_id);
        }
        if let Some(t) = self
            .users
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(user_id)
        {
            t.remove(thread_id);
        }
    }

    /// The thread was deleted: nobody is a member any more.
    pub fn forget_thread(&self, thread_id: &str) {
        self.gone
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(thread_id.to_string());
        self.threads
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(thread_id);
        for threads in self
            .users
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .values_mut()
        {
            threads.remove(thread_id);
        }
    }

    pub fn note_user_threads(&self, user_id: &str, threads: impl IntoIterator<Item = String>) {
        let mut users = self.users.write().unwrap_or_else(|e| e.into_inner());
        users
            .entry(user_id.to_string())
            .or_default()
            .extend(threads);
    }
}

/// Is the user a member? From the cache when it knows, else from the database.
pub async fn is_member(
    state: &AppState,
    thread_id: &str,
    user_id: &str,
) -> Result<bool, StoreError> {
    if !crate::domain::plausible_id(thread_id) {
        return Ok(false);
    }
    match state.members.check(thread_id, user_id) {
        Some(true) => return Ok(true),
        // A "no" may be stale (a membership added on another instance while the broker was
        // cut off): the database decides when it can; during an outage the cache does.
        Some(false) if !state.db.is_up() => return Ok(false),
        _ => {}
    }
    let id = thread_id.to_string();
    let members = state
        .db
        .run(|s| async move { s.members(&id).await })
        .await?;
    let is_member = members.iter().any(|m| m == user_id);
    state.members.set(thread_id, members.into_iter().collect());
    Ok(is_member)
}
