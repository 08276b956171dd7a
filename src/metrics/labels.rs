//! The label values each labelled counter can take. They are registered when the registry is
//! built, so every label set is exported at 0 from the start and `rate()` / `increase()` see the
//! first event of each (docs/operations.md#metrics lists them).

/// `ws_connections_total{outcome}`.
pub const WS_OUTCOMES: &[&str] = &["rejected", "error", "closed"];

/// `ws_frames_total{direction}`.
pub const WS_DIRECTIONS: &[&str] = &["in", "out"];

/// `rate_limited_total{scope}`: one per limit that answers `rate_limited` / 429 (or 503 before
/// a WebSocket upgrade).
pub const RATE_LIMIT_SCOPES: &[&str] = &[
    "auth",
    "send",
    "ws_connect",
    "threads",
    "members",
    "agents",
    "ws_per_user",
    "ws_per_ip",
];

/// `llm_tokens_total{direction}`.
pub const TOKEN_DIRECTIONS: &[&str] = &["prompt", "completion"];

/// `llm_requests_total{outcome}`, registered for every configured agent's provider and models.
pub const LLM_OUTCOMES: &[&str] = &["ok", "error", "timeout", "rate_limited", "cancelled"];

/// `http_requests_total{status}` exported at 0 for every route and method of the router: the
/// statuses the alerts and SLIs select (429 rate limited, 500 internal error, 503 unavailable).
/// Other statuses appear with their first answer.
pub const HTTP_ZERO_STATUSES: &[&str] = &["429", "500", "503"];

/// `broker_received_total{relevance}`: whether this instance serves the event's thread.
pub const BROKER_RELEVANCE: &[&str] = &["relevant", "irrelevant"];

/// Why a document's extraction failed (`document_extraction_failures_total{reason}`;
/// docs/documents.md).
pub const DOCUMENT_FAILURES: &[&str] = &[
    "corrupt",
    "encrypted",
    "no_text",
    "too_large",
    "timeout",
    "resources",
    "internal",
];

/// `embedding_requests_total{purpose}` and `embedding_request_seconds{purpose}`: passages being
/// indexed, or a question being asked.
pub const EMBEDDING_PURPOSES: &[&str] = &["index", "query"];

/// `embedding_requests_total{outcome}`.
pub const EMBEDDING_OUTCOMES: &[&str] = &["ok", "error"];
