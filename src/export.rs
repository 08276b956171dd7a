//! Taking threads away and bringing them in: a thread as Markdown or JSON, everything of a user
//! as one JSON archive, and the import of our JSON (a thread or an archive) or of a ChatGPT
//! `conversations.json` as new threads. Imports are idempotent: each imported thread is recorded
//! under the SHA-256 of its content, and importing the same content again creates nothing.

use std::collections::HashMap;

use axum::{
    Json, Router,
    extract::{Query, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::{
    auth::CurrentUser,
    contract::{
        AuthorKind, AuthorView, UserView,
        threads::{
            ARCHIVE_FORMAT, ExportArchive, ExportedMessageView, ImportResult, ImportedThreadView,
            THREAD_EXPORT_FORMAT, ThreadExport,
        },
    },
    db::{
        Author, DebateMeta, DebateRole, MessageMeta, NewMessage, StoreError, Thread, debate_id_for,
        lifecycle::{ExportedMessage, ImportedThread},
        now_ms, rfc3339,
    },
    domain::{MessageBody, ThreadTitle},
    error::ApiError,
    http::json::JsonObject,
    state::AppState,
    threads::member_thread,
};

/// Most messages one import may hold (the 1 MiB body limit comes first in practice).
const MAX_IMPORT_MESSAGES: usize = 10_000;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/threads/{id}/export", get(export_thread))
        .route("/api/me/export", get(export_me))
        .route("/api/import", post(import))
}

fn view(thread: &Thread, messages: &[ExportedMessage]) -> ThreadExport {
    ThreadExport {
        format: THREAD_EXPORT_FORMAT.into(),
        title: thread.title.clone(),
        agents: thread.agents.clone(),
        created_at: rfc3339(thread.created_at),
        messages: messages
            .iter()
            .map(|e| ExportedMessageView {
                seq: e.message.seq,
                client_id: e.message.client_id.clone(),
                author: AuthorView {
                    kind: e.message.author.kind,
                    id: e.message.author.id.clone(),
                    name: e.message.author.name.clone(),
                },
                body: e.message.body.clone(),
                created_at: rfc3339(e.message.created_at),
                status: e.message.status.clone(),
                prompt_tokens: e.prompt_tokens,
                completion_tokens: e.completion_tokens,
                debate: e.message.meta.as_ref().and_then(|m| m.debate.clone()),
            })
            .collect(),
    }
}

/// A thread as Markdown: a title, then each message under its author and time.
fn markdown(t: &ThreadExport) -> String {
    let mut out = format!("# {}\n\n", t.title);
    if !t.agents.is_empty() {
        out.push_str(&format!("Agents: {}\n\n", t.agents.join(", ")));
    }
    for m in &t.messages {
        let who = match m.author.kind {
            AuthorKind::Agent => format!("{} (agent)", m.author.name),
            AuthorKind::User => m.author.name.clone(),
        };
        let place = m.debate.as_ref().map(debate_place).unwrap_or_default();
        out.push_str(&format!(
            "## {}{} — {}\n\n{}\n\n",
            who, place, m.created_at, m.body
        ));
        if let (Some(p), Some(c)) = (m.prompt_tokens, m.completion_tokens) {
            out.push_str(&format!("_{p} prompt + {c} completion tokens_\n\n"));
        }
    }
    out
}

/// A message's place in a debate, after its author in the Markdown heading.
fn debate_place(d: &DebateMeta) -> String {
    match d.role {
        DebateRole::Topic => {
            let mut s = format!(
                " · debate topic ({} rounds; {}",
                d.rounds.unwrap_or_default(),
                d.agents.as_deref().unwrap_or_default().join(", ")
            );
            if let Some(m) = &d.mediator {
                s.push_str(&format!("; mediator {m}"));
            }
            s.push(')');
            s
        }
        DebateRole::Turn => format!(" · round {}", d.round.unwrap_or_default()),
        DebateRole::Synthesis => " · synthesis".to_string(),
    }
}

async fn load(state: &AppState, thread: Thread) -> Result<ThreadExport, ApiError> {
    let id = thread.id.clone();
    let messages = state
        .db
        .run(|s| async move { s.export_messages(&id).await })
        .await?;
    Ok(view(&thread, &messages))
}

/// A thread as JSON (`format=json`, the default; importable) or Markdown (`format=md`).
#[utoipa::path(
    get,
    path = "/api/threads/{id}/export",
    operation_id = "exportThread",
    tag = "threads",
    params(
        ("id" = String, Path, description = "Thread id"),
        ("format" = Option<String>, Query, description = "`json` (default) or `md`"),
    ),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The thread (JSON, or text/markdown)", body = ThreadExport),
        (status = 404, response = crate::error::responses::NotFound),
        (status = 422, response = crate::error::responses::Validation),
    )
)]
pub(crate) async fn export_thread(
    State(state): State<AppState>,
    user: CurrentUser,
    crate::http::IdPath(id): crate::http::IdPath,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let markdown_wanted = match q.get("format").map(String::as_str) {
        None | Some("json") => false,
        Some("md") => true,
        Some(_) => return Err(ApiError::field("format", "must be json or md")),
    };
    let thread = member_thread(&state, &id, user.id()).await?;
    let export = load(&state, thread).await?;
    if !markdown_wanted {
        return Ok(Json(export).into_response());
    }
    let mut response = markdown(&export).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/markdown; charset=utf-8"),
    );
    Ok(response)
}

/// Every thread of the caller (archived included), as one JSON archive (importable).
#[utoipa::path(
    get,
    path = "/api/me/export",
    operation_id = "exportMe",
    tag = "threads",
    security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, description = "Everything of the caller", body = ExportArchive))
)]
pub(crate) async fn export_me(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Json<ExportArchive>, ApiError> {
    let mut threads = Vec::new();
    for archived in [false, true] {
        let uid = user.id().to_string();
        let listed = state
            .db
            .run(|s| async move { s.thread_list(&uid, archived).await })
            .await?;
        for t in listed {
            threads.push(load(&state, t.thread).await?);
        }
    }
    Ok(Json(ExportArchive {
        format: ARCHIVE_FORMAT.into(),
        user: UserView {
            id: user.id().to_string(),
            username: user.username().to_string(),
        },
        threads,
        memories: Some(crate::memories::everything_of(&state.db, user.id()).await?)
            .filter(|m| !m.is_empty()),
    }))
}

fn parse_time(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::String(s) => OffsetDateTime::parse(s, &Rfc3339)
            .ok()
            .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64),
        // ChatGPT: seconds since the epoch, fractional.
        Value::Number(n) => n.as_f64().map(|s| (s * 1000.0) as i64),
        _ => None,
    }
}

/// Our thread export, checked.
fn from_ours(v: &Value) -> Result<ThreadExport, String> {
    let t: ThreadExport =
        serde_json::from_value(v.clone()).map_err(|e| format!("not a thread export: {e}"))?;
    if t.format != THREAD_EXPORT_FORMAT {
        return Err(format!("unknown format {:?}", t.format));
    }
    Ok(t)
}

/// One ChatGPT conversation: the branch that ends at `current_node`, user and assistant turns.
fn from_chatgpt(c: &Value, me: &UserView) -> Result<ThreadExport, String> {
    let title = c["title"]
        .as_str()
        .unwrap_or("ChatGPT conversation")
        .to_string();
    let mapping = c["mapping"]
        .as_object()
        .ok_or("a conversation has no mapping")?;
    let mut node = c["current_node"].as_str().map(str::to_string);
    let mut chain = Vec::new();
    while let Some(id) = node {
        let Some(n) = mapping.get(&id) else { break };
        chain.push(n);
        node = n["parent"].as_str().map(str::to_string);
        if chain.len() > mapping.len() {
            return Err("the conversation's nodes form a cycle".into());
        }
    }
    chain.reverse();
    let created = parse_time(c.get("create_time")).unwrap_or(0);
    let mut messages = Vec::new();
    for n in chain {
        let m = &n["message"];
        let role = m["author"]["role"].as_str().unwrap_or_default();
        let text: String = m["content"]["parts"]
            .as_array()
            .map(|parts| {
                parts
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default();
        if text.trim().is_empty() || !matches!(role, "user" | "assistant") {
            continue;
        }
        let author = if role == "user" {
            AuthorView {
                kind: AuthorKind::User,
                id: me.id.clone(),
                name: me.username.clone(),
            }
        } else {
            AuthorView {
                kind: AuthorKind::Agent,
                id: "chatgpt".into(),
                name: "ChatGPT".into(),
            }
        };
        let at = parse_time(m.get("create_time")).unwrap_or(created);
        messages.push(ExportedMessageView {
            seq: messages.len() as i64 + 1,
            client_id: format!("chatgpt-{}", m["id"].as_str().unwrap_or_default()),
            author,
            body: text,
            created_at: rfc3339(at),
            status: None,
            prompt_tokens: None,
            completion_tokens: None,
            debate: None,
        });
    }
    Ok(ThreadExport {
        format: THREAD_EXPORT_FORMAT.into(),
        title,
        agents: Vec::new(),
        created_at: rfc3339(created),
        messages,
    })
}

/// The threads a body holds: our thread export, our archive, or `{"conversations": [...]}`
/// (the content of ChatGPT's `conversations.json`).
fn threads_of(body: &Map<String, Value>, me: &UserView) -> Result<Vec<ThreadExport>, ApiError> {
    let bad = |why: String| ApiError::field("format", why);
    let whole = Value::Object(body.clone());
    match (
        body.get("format").and_then(Value::as_str),
        body.get("conversations"),
    ) {
        (Some(THREAD_EXPORT_FORMAT), _) => Ok(vec![from_ours(&whole).map_err(bad)?]),
        (Some(ARCHIVE_FORMAT), _) => body
            .get("threads")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("an archive needs threads".into()))?
            .iter()
            .map(|t| from_ours(t).map_err(bad))
            .collect(),
        (None, Some(Value::Array(convs))) => convs
            .iter()
            .map(|c| from_chatgpt(c, me).map_err(bad))
            .collect(),
        _ => Err(bad(format!(
            "expected {THREAD_EXPORT_FORMAT:?}, {ARCHIVE_FORMAT:?} or {{\"conversations\": [...]}}"
        ))),
    }
}

/// Check an exported thread and make it the caller's new thread (not stored yet).
fn to_import(state: &AppState, t: &ThreadExport, owner: &str) -> Result<ImportedThread, ApiError> {
    let title = ThreadTitle::parse(&t.title).map_err(|why| ApiError::field("title", why))?;
    if t.messages.len() > MAX_IMPORT_MESSAGES {
        return Err(ApiError::field(
            "messages",
            format!("at most {MAX_IMPORT_MESSAGES} messages per thread"),
        ));
    }
    let canonical = serde_json::to_vec(&(
        &t.title,
        &t.agents,
        &t.created_at,
        t.messages
            .iter()
            .map(|m| {
                (
                    &m.author.kind,
                    &m.author.name,
                    &m.body,
                    &m.created_at,
                    &m.status,
                )
            })
            .collect::<Vec<_>>(),
    ))
    .unwrap_or_default();
    let content_hash: String = Sha256::digest(&canonical)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let id = uuid::Uuid::now_v7().to_string();
    let mut messages = Vec::with_capacity(t.messages.len());
    let mut seen = std::collections::HashSet::new();
    for (i, m) in t.messages.iter().enumerate() {
        let body = MessageBody::parse(&m.body)
            .map_err(|why| ApiError::field("messages", format!("message {}: {why}", i + 1)))?;
        let client_id = if !m.client_id.is_empty()
            && m.client_id.len() <= 128
            && seen.insert(m.client_id.clone())
        {
            m.client_id.clone()
        } else {
            format!("import-{}", i + 1)
        };
        messages.push(NewMessage {
            id: uuid::Uuid::now_v7().to_string(),
            thread_id: id.clone(),
            client_id,
            author: Author {
                kind: m.author.kind,
                id: m.author.id.clone(),
                name: m.author.name.clone(),
            },
            body: body.as_str().to_string(),
            created_at: parse_time(Some(&Value::String(m.created_at.clone()))).unwrap_or(0),
            status: m.status.clone(),
            prompt_tokens: m.prompt_tokens,
            completion_tokens: m.completion_tokens,
            meta: m.debate.clone().map(|debate| {
                Box::new(MessageMeta {
                    debate: Some(debate),
                    ..MessageMeta::default()
                })
            }),
            requester: None,
            agent: None,
            stream_id: None,
        });
    }
    renumber_debates(&mut messages);
    Ok(ImportedThread {
        thread: Thread {
            id,
            title: title.as_str().to_string(),
            owner_id: owner.to_string(),
            agents: t
                .agents
                .iter()
                .filter(|a| state.agents.knows(a))
                .cloned()
                .collect(),
            created_at: parse_time(Some(&Value::String(t.created_at.clone()))).unwrap_or(0),
            last_seq: t.messages.len() as i64,
        },
        messages,
        content_hash,
    })
}

/// Give each imported debate the id of its new topic message (`debate_id_for`), as a debate
/// started here would have: the exported ids belong to the original thread. A debate whose topic
/// is not in the export keeps its id.
fn renumber_debates(messages: &mut [NewMessage]) {
    let renamed: HashMap<String, String> = messages
        .iter()
        .filter_map(|m| {
            let d = m.meta.as_ref()?.debate.as_ref()?;
            (d.role == DebateRole::Topic).then(|| (d.id.clone(), debate_id_for(&m.id)))
        })
        .collect();
    for m in messages.iter_mut() {
        if let Some(d) = m.meta.as_mut().and_then(|meta| meta.debate.as_mut())
            && let Some(new_id) = renamed.get(&d.id)
        {
            d.id = new_id.clone();
        }
    }
}

/// Import our JSON (a thread or an archive) or ChatGPT conversations as new threads of the
/// caller. The same content imported again creates nothing (`created: false`).
#[utoipa::path(
    post,
    path = "/api/import",
    operation_id = "importThreads",
    tag = "threads",
    request_body(content = ThreadExport, description = "A thread export, an archive, or {\"conversations\": [...]} from ChatGPT"),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The threads, new or found", body = ImportResult),
        (status = 422, response = crate::error::responses::Validation),
    )
)]
pub(crate) async fn import(
    State(state): State<AppState>,
    user: CurrentUser,
    JsonObject(body): JsonObject,
) -> Result<(StatusCode, Json<ImportResult>), ApiError> {
    let me = UserView {
        id: user.id().to_string(),
        username: user.username().to_string(),
    };
    let exports = threads_of(&body, &me)?;
    let imports = exports
        .iter()
        .map(|t| to_import(&state, t, user.id()))
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = Vec::new();
    for import in imports {
        let (uid, hash) = (user.id().to_string(), import.content_hash.clone());
        let earlier = state
            .db
            .run(|s| async move { s.imported_thread(&uid, &hash).await })
            .await?;
        let created = match earlier {
            Some(id) => Some(id),
            None => {
                let stored = import.clone();
                match state
                    .db
                    .run(|s| async move { s.import_thread(&stored, now_ms()).await })
                    .await
                {
                    Ok(()) => None,
                    // Two identical imports at once: the other one made it.
                    Err(StoreError::Conflict(_)) => {
                        let (uid, hash) = (user.id().to_string(), import.content_hash.clone());
                        let found = state
                            .db
                            .run(|s| async move { s.imported_thread(&uid, &hash).await })
                            .await?;
                        Some(found.unwrap_or_default())
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        };
        out.push(ImportedThreadView {
            id: created
                .clone()
                .filter(|id| !id.is_empty())
                .unwrap_or_else(|| import.thread.id.clone()),
            title: import.thread.title.clone(),
            created: created.is_none(),
        });
        if created.is_none() {
            state.members.set(
                &import.thread.id,
                [user.id().to_string()].into_iter().collect(),
            );
        }
    }
    let status = if out.iter().any(|t| t.created) {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(ImportResult { threads: out })))
}
