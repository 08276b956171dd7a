//! The bodies of the HTTP API (`docs/protocol.md` §3-§6) as types: what each route takes and
//! what it answers. Handlers answer with these types only, the OpenAPI document
//! (`docs/openapi.json`, `crate::openapi`) describes them, and `web/src/contract.ts` has their
//! TypeScript. Request bodies are parsed field by field (`http::json::Fields`), so that one 422
//! names every field at fault; these request types are their shape, which clients send.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::MessageView;

/// `GET /healthz`: the process is alive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Liveness {
    pub status: Alive,
}

/// The only answer of a live process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum Alive {
    Ok,
}

/// `GET /readyz`: whether this instance can serve users, and the state of what it needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Readiness {
    pub status: ReadyStatus,
    pub db: DbStatus,
    pub broker: BrokerStatus,
}

/// `ready` and `degraded` come with 200, `starting` and `draining` with 503.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum ReadyStatus {
    Ready,
    Degraded,
    Starting,
    Draining,
}

/// Whether the database answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum DbStatus {
    Up,
    Down,
}

/// `local` when one instance runs alone (no broker), else whether the broker answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum BrokerStatus {
    Local,
    Up,
    Down,
}

/// `POST /api/auth/register`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct NewAccount {
    /// 3-32 characters of `[a-zA-Z0-9_.-]`, unique case-insensitively, case preserved.
    #[schema(
        min_length = 3,
        max_length = 32,
        pattern = "^[a-zA-Z0-9_.-]+$",
        example = "alice"
    )]
    pub username: String,
    /// 8-256 characters.
    #[schema(min_length = 8, max_length = 256, example = "correct horse battery")]
    pub password: String,
    /// The secret of an invite link (`/invite/<secret>`); needed when registration is `invite`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    pub invite: Option<String>,
}

/// `POST /api/auth/login`. Any string is taken: a name or password that breaks the
/// registration rules is just a wrong credential (401).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Credentials {
    #[schema(example = "alice")]
    pub username: String,
    #[schema(example = "correct horse battery")]
    pub password: String,
}

/// A new session: the bearer token (also set as the session cookie) and its user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Session {
    pub token: String,
    pub user: super::accounts::AccountView,
}

/// An agent that can be asked, without its keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct AgentView {
    pub id: String,
    pub name: String,
    /// The provider really used: `openai`, `anthropic`, `gemini`, `ollama`, or for an agent on
    /// `local` (or whose provider has no key) the local server found on the machine
    /// (`ollama`, `openai-compatible`), else `local`.
    pub provider: String,
    /// The model really used (`offline` for the built-in offline agent).
    pub model: String,
    /// The agent's colour (`#rrggbb`) for its avatar and answers, when one is set (settings
    /// `colour`, or the admin UI); clients pick their own otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    #[cfg_attr(test, ts(optional))]
    pub colour: Option<String>,
}

/// `GET /api/agents`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct AgentList {
    pub agents: Vec<AgentView>,
}

/// `POST /api/threads`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct NewThread {
    /// 1-200 characters after trimming; no NUL.
    #[schema(example = "Weekend plans")]
    pub title: String,
    /// Agent ids (`GET /api/agents`) attached to the thread; duplicates are dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    pub agents: Option<Vec<String>>,
}

/// A thread as the contract shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ThreadView {
    pub id: String,
    pub title: String,
    pub owner_id: String,
    pub agents: Vec<String>,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// The `seq` of the thread's latest message (0 when it has none).
    pub last_seq: i64,
    /// The caller archived it (hidden from the default list; still searchable).
    pub archived: bool,
    /// The caller pinned it (listed first).
    pub pinned: bool,
}

/// `GET /api/threads`: the caller's threads, most recent activity first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ThreadList {
    pub threads: Vec<ThreadView>,
}

/// `POST /api/threads/{id}/members` (owner only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct NewMember {
    /// Matched case-insensitively.
    #[schema(example = "bob")]
    pub username: String,
}

/// `GET /api/threads/{id}/messages`: which page of the history. With `after_seq`, the first
/// `limit` messages with a greater `seq`; with `before_seq`, the last `limit` with a smaller
/// one; with `around_seq`, `limit` messages centred on that `seq` (a search hit in context);
/// with none, the latest `limit`. At most one of the three.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Page size: default 50, values over 500 are taken as 500, below 1 is 422.
    #[param(minimum = 1)]
    pub limit: Option<i64>,
    #[param(minimum = 0)]
    pub after_seq: Option<i64>,
    pub before_seq: Option<i64>,
    /// (extension) The page centred on this `seq`: the `(limit - 1) / 2` messages before it, the
    /// message itself and the ones after it, `limit` in all (fewer at either end of the thread).
    #[param(minimum = 1)]
    pub around_seq: Option<i64>,
}

/// `GET /api/threads/{id}/messages`: always in ascending `seq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct MessageList {
    pub messages: Vec<MessageView>,
}

/// `POST /api/threads/{id}/messages`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct PostMessage {
    /// The sender's idempotency key: 1-128 printable ASCII characters (a UUID is typical).
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = "^[ -~]+$",
        example = "3e2d1c0b-a9f8-4e7d-8c6b-5a4f3e2d1c0b"
    )]
    pub client_id: String,
    /// 1-16384 characters after trimming; no NUL.
    #[schema(example = "hello")]
    pub body: String,
    /// An agent id (`GET /api/agents`) to answer the message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    pub agent: Option<String>,
    /// Several agent ids (1-4, duplicates dropped) that answer at once, each in its own stream;
    /// instead of `agent` (extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_items = 1, max_items = 4)]
    #[cfg_attr(test, ts(optional))]
    pub agents: Option<Vec<String>>,
}

/// `202` to a `POST` of a message while the database is down: it is queued; repeat the POST
/// later (same `client_id`) to learn the stored message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct QueuedMessage {
    pub client_id: String,
    pub status: QueuedStatus,
}

/// The only status of a queued message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum QueuedStatus {
    Queued,
}

/// `POST /api/threads/{id}/debate`: the topic is stored as the sender's message (idempotent by
/// `client_id`), then the agents answer in turn for `rounds` rounds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct NewDebate {
    #[schema(min_length = 1, max_length = 128, pattern = "^[ -~]+$")]
    pub client_id: String,
    /// 1-16384 characters after trimming; no NUL.
    pub topic: String,
    /// 2-8 agent ids.
    #[schema(min_items = 2, max_items = 8)]
    pub agents: Vec<String>,
    #[schema(minimum = 1, maximum = 10)]
    pub rounds: u32,
    /// An agent id that writes a closing synthesis after the last round (extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    pub mediator: Option<String>,
}

/// `202` to a debate: its topic is on its way; the turns arrive over the WebSocket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct DebateAccepted {
    pub client_id: String,
    pub status: AcceptedStatus,
}

/// The only status of an accepted debate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum AcceptedStatus {
    Accepted,
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn wire(v: impl Serialize) -> Value {
        serde_json::to_value(v).unwrap()
    }

    #[test]
    fn bodies_serialise_as_the_contract_writes_them() {
        assert_eq!(
            wire(Liveness { status: Alive::Ok }),
            json!({"status": "ok"})
        );
        assert_eq!(
            wire(Readiness {
                status: ReadyStatus::Degraded,
                db: DbStatus::Down,
                broker: BrokerStatus::Local,
            }),
            json!({"status": "degraded", "db": "down", "broker": "local"})
        );
        assert_eq!(
            wire(QueuedMessage {
                client_id: "c".into(),
                status: QueuedStatus::Queued,
            }),
            json!({"client_id": "c", "status": "queued"})
        );
        assert_eq!(
            wire(DebateAccepted {
                client_id: "c".into(),
                status: AcceptedStatus::Accepted,
            }),
            json!({"client_id": "c", "status": "accepted"})
        );
        assert_eq!(
            wire(NewThread {
                title: "T".into(),
                agents: None,
            }),
            json!({"title": "T"})
        );
    }
}
