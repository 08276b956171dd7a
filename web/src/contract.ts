// Generated from src/contract.rs, src/contract/http.rs and src/contract/accounts.rs by
// `UPDATE_CONTRACT=1 cargo test --lib contract`.
// Do not edit: CI fails when this file differs from what the Rust types generate.

export type ErrorCode = "bad_request" | "invalid_json" | "unauthorized" | "forbidden" | "not_found" | "method_not_allowed" | "conflict" | "too_large" | "unsupported_type" | "validation" | "rate_limited" | "internal" | "unavailable" | "unknown_type" | "cancelled" | "provider_error" | "timeout" | "interrupted" | "registration_closed" | "invite_invalid" | "pending_approval" | "password_login_disabled" | "budget_exceeded" | "file_too_large" | "quota_exceeded";

export type ErrorBody = { error: ErrorDetail, };

export type ErrorDetail = { code: ErrorCode, message: string, fields?: { [key in string]: string }, 
/**
 * `budget_exceeded`: when the spent budget starts again (RFC 3339, UTC).
 */
resets_at?: string, };

export type AuthorKind = "user" | "agent";

export type AuthorView = { kind: AuthorKind, id: string, name: string, };

export type MessageView = { id: string, thread_id: string, seq: number, client_id: string, author: AuthorView, body: string, 
/**
 * RFC 3339, UTC.
 */
created_at: string, 
/**
 * `"incomplete"` for an agent answer that was cut short.
 */
status?: string, 
/**
 * The message's place in a debate (topic, turn with its round, or closing synthesis).
 */
debate?: DebateMeta, 
/**
 * On a regenerated answer: the id of the answer's first version (all versions share it).
 */
version_of?: string, 
/**
 * On an agent answer: the model that wrote it.
 */
model?: string, 
/**
 * On an agent answer: milliseconds from the request to the provider to the last token.
 */
duration_ms?: number, 
/**
 * On an agent answer: tokens of the prompt, as the provider counted them.
 */
prompt_tokens?: number, 
/**
 * On an agent answer: tokens of the answer, as the provider counted them.
 */
completion_tokens?: number, 
/**
 * On an `incomplete` answer: why it stopped.
 */
error_class?: AgentErrorClass, 
/**
 * On an agent answer that used the thread's documents: the passages its `[n]` refer to.
 */
citations?: Array<Citation>, 
/**
 * On an agent answer: the model's reasoning ("thinking"), apart from `body` (extension).
 */
reasoning?: string, 
/**
 * On an agent answer: tokens spent reasoning, as the provider counted them (extension).
 */
reasoning_tokens?: number, 
/**
 * On an agent answer: the summary that stood in for older turns (extension).
 */
context_summary?: ContextSummaryView, };

export type DebateMeta = { 
/**
 * The debate's id (the `debate_id` of its streams).
 */
id: string, 
/**
 * `topic` (the user's message that starts it), `turn` (an agent's turn) or `synthesis`
 * (the mediator's closing turn).
 */
role: DebateRole, 
/**
 * 1-based round of a `turn`.
 */
round?: number, 
/**
 * On the topic: the agents in speaking order.
 */
agents?: Array<string>, 
/**
 * On the topic: the number of rounds.
 */
rounds?: number, 
/**
 * On the topic: the mediator agent that writes the closing synthesis, if any.
 */
mediator?: string, };

export type DebateRole = "topic" | "turn" | "synthesis";

export type UserView = { id: string, username: string, };

export type MemberRole = "owner" | "member";

export type MemberView = { user_id: string, username: string, role: MemberRole, };

export type RemovedReason = "deleted" | "removed" | "left";

export type AgentRef = { id: string, name: string, 
/**
 * The model that really answers (`stream_start`): the configured one, a local model found
 * on this machine, or `offline`.
 */
model?: string, };

export type AgentErrorClass = "rate_limited" | "unavailable" | "model_not_found" | "context_too_long" | "content_filter" | "timed_out" | "misconfigured" | "bad_request" | "bad_response" | "connection_lost" | "cancelled" | "interrupted";

export type AckStatus = "queued" | "persisted";

export type ServerFrame = { "type": "welcome", connection_id: string, user: UserView, db: string, } | { "type": "subscribed", thread: string, head_seq: number, } | { "type": "unsubscribed", thread: string, } | { "type": "resync", thread: string, } | { "type": "message", thread: string, id: string, thread_id: string, seq: number, client_id: string, author: AuthorView, body: string, 
/**
 * RFC 3339, UTC.
 */
created_at: string, 
/**
 * `"incomplete"` for an agent answer that was cut short.
 */
status?: string, 
/**
 * The message's place in a debate (topic, turn with its round, or closing synthesis).
 */
debate?: DebateMeta, 
/**
 * On a regenerated answer: the id of the answer's first version (all versions share it).
 */
version_of?: string, 
/**
 * On an agent answer: the model that wrote it.
 */
model?: string, 
/**
 * On an agent answer: milliseconds from the request to the provider to the last token.
 */
duration_ms?: number, 
/**
 * On an agent answer: tokens of the prompt, as the provider counted them.
 */
prompt_tokens?: number, 
/**
 * On an agent answer: tokens of the answer, as the provider counted them.
 */
completion_tokens?: number, 
/**
 * On an `incomplete` answer: why it stopped.
 */
error_class?: AgentErrorClass, 
/**
 * On an agent answer that used the thread's documents: the passages its `[n]` refer to.
 */
citations?: Array<Citation>, 
/**
 * On an agent answer: the model's reasoning ("thinking"), apart from `body` (extension).
 */
reasoning?: string, 
/**
 * On an agent answer: tokens spent reasoning, as the provider counted them (extension).
 */
reasoning_tokens?: number, 
/**
 * On an agent answer: the summary that stood in for older turns (extension).
 */
context_summary?: ContextSummaryView, } | { "type": "ack", client_id: string, status: AckStatus, seq?: number, message_id?: string, thread: string, } | { "type": "status", db: string, broker: string, } | { "type": "pong", nonce: unknown, } | { "type": "error", code: ErrorCode, message: string, client_id?: string, retry_after_ms?: number, 
/**
 * `budget_exceeded`: when the spent budget starts again (RFC 3339, UTC; extension).
 */
resets_at?: string, } | { "type": "stream_start", thread: string, stream_id: string, agent: AgentRef, debate_id?: string, 
/**
 * A debate turn's 1-based round (extension).
 */
round?: number, 
/**
 * A debate stream's part: `turn`, or `synthesis` for the mediator's closing turn
 * (extension).
 */
role?: DebateRole, 
/**
 * A regenerated answer's first version: the stream writes a new version of that
 * answer (extension).
 */
version_of?: string, } | { "type": "stream_snapshot", thread: string, stream_id: string, text: string, offset: number, 
/**
 * The reasoning so far (extension); `stream_reasoning` frames go on from its length.
 */
reasoning?: string, } | { "type": "stream_reasoning", thread: string, stream_id: string, offset: number, delta: string, } | { "type": "stream_chunk", thread: string, stream_id: string, offset: number, delta: string, } | { "type": "stream_end", thread: string, stream_id: string, message: MessageView, } | { "type": "stream_error", thread: string, stream_id: string, code: ErrorCode, 
/**
 * A short, stable English sentence for this class (never upstream text).
 */
message: string, error_class?: AgentErrorClass, 
/**
 * `budget_exceeded`: when the requester's spent budget starts again (RFC 3339, UTC;
 * extension). No provider was called.
 */
resets_at?: string, } | { "type": "thread_updated", thread: string, title: string, owner_id: string, agents: Array<string>, } | { "type": "members_updated", thread: string, members: Array<MemberView>, } | { "type": "removed", thread: string, reason: RemovedReason, } | { "type": "stream_retry", thread: string, stream_id: string, 
/**
 * 1 for the first retry.
 */
attempt: number, retry_in_ms: number, error_class: AgentErrorClass, } | { "type": "document", thread: string, document: DocumentView, 
/**
 * True on the last frame of a deleted document.
 */
deleted: boolean, } | { "type": "memory", change: MemoryChange, memory?: MemoryView, };

export type ClientFrameShape = { "type": "subscribe", thread: string, after_seq?: number, } | { "type": "unsubscribe", thread: string, } | { "type": "send", thread: string, client_id: string, body: string, agent?: string, 
/**
 * Several agents answer at once, each in its own stream (extension; 1-4 ids).
 */
agents?: Array<string>, } | { "type": "debate", thread: string, client_id: string, topic: string, agents: Array<string>, rounds: number, 
/**
 * An agent that writes a closing synthesis after the last round (extension).
 */
mediator?: string, } | { "type": "cancel", stream_id?: string, debate_id?: string, } | { "type": "ping", nonce?: unknown, } | { "type": "regenerate", thread: string, client_id: string, message_id: string, agent?: string, };

export type Liveness = { status: Alive, };

export type Alive = "ok";

export type Readiness = { status: ReadyStatus, db: DbStatus, broker: BrokerStatus, };

export type ReadyStatus = "ready" | "degraded" | "starting" | "draining";

export type DbStatus = "up" | "down";

export type BrokerStatus = "local" | "up" | "down";

export type NewAccount = { 
/**
 * 3-32 characters of `[a-zA-Z0-9_.-]`, unique case-insensitively, case preserved.
 */
username: string, 
/**
 * 8-256 characters.
 */
password: string, 
/**
 * The secret of an invite link (`/invite/<secret>`); needed when registration is `invite`.
 */
invite?: string, };

export type Credentials = { username: string, password: string, };

export type Session = { token: string, user: AccountView, };

export type AgentView = { id: string, name: string, 
/**
 * The provider really used: `openai`, `anthropic`, `gemini`, `ollama`, or for an agent on
 * `local` (or whose provider has no key) the local server found on the machine
 * (`ollama`, `openai-compatible`), else `local`.
 */
provider: string, 
/**
 * The model really used (`offline` for the built-in offline agent).
 */
model: string, 
/**
 * The agent's colour (`#rrggbb`) for its avatar and answers, when one is set (settings
 * `colour`, or the admin UI); clients pick their own otherwise.
 */
colour?: string, };

export type AgentList = { agents: Array<AgentView>, };

export type NewThread = { 
/**
 * 1-200 characters after trimming; no NUL.
 */
title: string, 
/**
 * Agent ids (`GET /api/agents`) attached to the thread; duplicates are dropped.
 */
agents?: Array<string>, };

export type ThreadView = { id: string, title: string, owner_id: string, agents: Array<string>, 
/**
 * RFC 3339, UTC.
 */
created_at: string, 
/**
 * The `seq` of the thread's latest message (0 when it has none).
 */
last_seq: number, 
/**
 * The caller archived it (hidden from the default list; still searchable).
 */
archived: boolean, 
/**
 * The caller pinned it (listed first).
 */
pinned: boolean, };

export type ThreadList = { threads: Array<ThreadView>, };

export type NewMember = { 
/**
 * Matched case-insensitively.
 */
username: string, };

export type MessageList = { messages: Array<MessageView>, };

export type PostMessage = { 
/**
 * The sender's idempotency key: 1-128 printable ASCII characters (a UUID is typical).
 */
client_id: string, 
/**
 * 1-16384 characters after trimming; no NUL.
 */
body: string, 
/**
 * An agent id (`GET /api/agents`) to answer the message.
 */
agent?: string, 
/**
 * Several agent ids (1-4, duplicates dropped) that answer at once, each in its own stream;
 * instead of `agent` (extension).
 */
agents?: Array<string>, };

export type QueuedMessage = { client_id: string, status: QueuedStatus, };

export type QueuedStatus = "queued";

export type NewDebate = { client_id: string, 
/**
 * 1-16384 characters after trimming; no NUL.
 */
topic: string, 
/**
 * 2-8 agent ids.
 */
agents: Array<string>, rounds: number, 
/**
 * An agent id that writes a closing synthesis after the last round (extension).
 */
mediator?: string, };

export type DebateAccepted = { client_id: string, status: AcceptedStatus, };

export type AcceptedStatus = "accepted";

export type ThreadPatch = { 
/**
 * 1-200 characters after trimming.
 */
title?: string, 
/**
 * Agent ids; replaces the thread's agents.
 */
agents?: Array<string>, 
/**
 * Hand the thread to another member (who becomes its owner; the caller stays a member).
 */
owner_id?: string, archived?: boolean, pinned?: boolean, };

export type MemberList = { members: Array<MemberView>, };

export type SearchHitView = { thread: string, thread_title: string, message_id: string, seq: number, snippet: string, author: AuthorView, 
/**
 * RFC 3339, UTC.
 */
created_at: string, };

export type SearchResults = { hits: Array<SearchHitView>, 
/**
 * The `offset` of the next page, when there may be one.
 */
next_offset: number | null, };

export type ExportedMessageView = { seq: number, client_id: string, author: AuthorView, body: string, 
/**
 * RFC 3339, UTC.
 */
created_at: string, status?: string, 
/**
 * Token usage of an agent's answer, when the provider reported it.
 */
prompt_tokens?: number, completion_tokens?: number, 
/**
 * The message's place in a debate (topic with its agents, rounds and mediator; a turn with
 * its round; the mediator's synthesis). On import, each debate gets a new id.
 */
debate?: DebateMeta, };

export type ThreadExport = { format: string, title: string, agents: Array<string>, 
/**
 * RFC 3339, UTC.
 */
created_at: string, messages: Array<ExportedMessageView>, };

export type ExportArchive = { format: string, user: UserView, threads: Array<ThreadExport>, 
/**
 * The user's memory items, newest first (extension; absent when there are none). An
 * import ignores them.
 */
memories?: Array<MemoryView>, };

export type ImportedThreadView = { id: string, title: string, 
/**
 * `false`: the same content was imported before; nothing new was made.
 */
created: boolean, };

export type ImportResult = { threads: Array<ImportedThreadView>, };

export type Role = "admin" | "user";

export type Status = "active" | "pending" | "disabled";

export type AccountView = { id: string, username: string, role: Role, status: Status, };

export type AdminAccountView = { id: string, username: string, role: Role, status: Status, created_at: string, };

export type AccountList = { users: Array<AdminAccountView>, };

export type AccessPatch = { role?: Role, status?: Status, };

export type SessionView = { id: string, created_at: string, expires_at: string, 
/**
 * The session this request was made with.
 */
current: boolean, };

export type SessionList = { sessions: Array<SessionView>, };

export type PasswordChange = { current: string, 
/**
 * 8-256 characters.
 */
new: string, };

export type PasswordReset = { token: string, password: string, };

export type TokenScope = "read" | "chat";

export type NewApiToken = { 
/**
 * 1-64 characters after trimming.
 */
name: string, scope: TokenScope, };

export type ApiTokenView = { id: string, name: string, scope: TokenScope, created_at: string, expires_at: string, };

export type CreatedApiToken = { token: string, id: string, name: string, scope: TokenScope, created_at: string, expires_at: string, };

export type ApiTokenList = { tokens: Array<ApiTokenView>, };

export type InviteView = { id: string, created_at: string, expires_at: string, };

export type InviteList = { invites: Array<InviteView>, };

export type CreatedLink = { id: string, token: string, path: string, expires_at: string, };

export type SignInOptions = { 
/**
 * Whether `POST /api/auth/login` and `/api/auth/register` take passwords.
 */
password_login: boolean, 
/**
 * The registration mode (`open`, `approval`, `invite`, `closed`).
 */
registration: string, 
/**
 * The single sign-on providers, in the settings' order.
 */
providers: Array<SsoProviderView>, };

export type SsoProviderView = { name: string, 
/**
 * What its button says.
 */
label: string, 
/**
 * Where the browser goes to sign in (`/auth/oidc/{name}/start`); add `?invite=<token>`
 * to carry an invite.
 */
start_url: string, };

export type SsoExchange = { code: string, };

export type UsageRow = { 
/**
 * `YYYY-MM-DD` (UTC), when grouped by `day`.
 */
day?: string, 
/**
 * The agent's id, when grouped by `agent`.
 */
agent?: string, 
/**
 * The model that answered, when grouped by `model` (`unknown` when it was not recorded).
 */
model?: string, 
/**
 * The requester, when grouped by `user` (admin report only).
 */
user_id?: string, username?: string, 
/**
 * Agent answers stored (complete or incomplete).
 */
answers: number, prompt_tokens: number, completion_tokens: number, total_tokens: number, 
/**
 * Tokens times the price table (`prices` settings), in `currency`; answers of a model
 * without a price count 0.
 */
cost: number, };

export type UsageTotals = { 
/**
 * Agent answers stored (complete or incomplete).
 */
answers: number, prompt_tokens: number, completion_tokens: number, total_tokens: number, 
/**
 * Tokens times the price table (`prices` settings), in `currency`; answers of a model
 * without a price count 0.
 */
cost: number, };

export type UsageReport = { 
/**
 * First and last day of the report, inclusive (`YYYY-MM-DD`, UTC).
 */
from: string, to: string, 
/**
 * The dimensions rows are grouped by, in order (`day`, `agent`, `model`, `user`).
 */
group: Array<string>, currency: string, rows: Array<UsageRow>, total: UsageTotals, };

export type BudgetLimits = { daily_tokens: number | null, monthly_tokens: number | null, };

export type BudgetPeriod = { 
/**
 * The limit in tokens; absent: no limit.
 */
limit?: number, 
/**
 * Tokens spent this period (answers still running count their reservation).
 */
used: number, 
/**
 * `limit - used` (0 once spent); absent: no limit.
 */
remaining?: number, 
/**
 * When the period starts again (RFC 3339, UTC).
 */
resets_at: string, };

export type MyBudget = { daily: BudgetPeriod, monthly: BudgetPeriod, };

export type BudgetOverride = { user_id: string, username: string, daily_tokens: number | null, monthly_tokens: number | null, };

export type BudgetSettingsView = { default: BudgetLimits, overrides: Array<BudgetOverride>, };

export type DocumentView = { id: string, thread_id: string, 
/**
 * The file name as uploaded.
 */
name: string, 
/**
 * `pdf`, `docx`, `md`, `txt`, `html` or `csv`.
 */
kind: string, 
/**
 * Bytes.
 */
size: number, 
/**
 * `processing`, `indexed` or `failed` (the contract's three states).
 */
status: string, 
/**
 * Finer progress: `queued`, `extracting`, `indexed` or `failed`.
 */
stage: string, 
/**
 * Why extraction failed (with `status` `failed`).
 */
error?: string, 
/**
 * Pages (PDF) once indexed.
 */
pages?: number, 
/**
 * Passages indexed.
 */
chunks?: number, uploader_id: string, 
/**
 * RFC 3339, UTC.
 */
created_at: string, };

export type DocumentList = { documents: Array<DocumentView>, };

export type ChunkView = { 
/**
 * 0-based position in the document.
 */
ord: number, 
/**
 * 1-based page, for formats with pages (PDF).
 */
page?: number, 
/**
 * The nearest heading above the passage.
 */
heading?: string, text: string, };

export type ChunkList = { document_id: string, chunks: Array<ChunkView>, };

export type PassageView = { document_id: string, 
/**
 * The document's name.
 */
name: string, chunk: ChunkView, 
/**
 * Full-text rank (higher is better; comparable within one answer only).
 */
score: number, };

export type PassageList = { passages: Array<PassageView>, };

export type Citation = { 
/**
 * The number in the answer's text (`[1]`, `[2]`, ...).
 */
n: number, document_id: string, 
/**
 * The document's name.
 */
name: string, 
/**
 * 1-based page, for formats with pages.
 */
page?: number, 
/**
 * The chunk's `ord` (open it with `.../chunks?from_ord=ORD&limit=1`).
 */
ord: number, 
/**
 * The start of the passage (at most 300 characters).
 */
quote: string, };

export type SummaryMethod = "provider" | "extractive";

export type ContextSummaryView = { 
/**
 * The last message it covers: every message with `seq <= through_seq`.
 */
through_seq: number, body: string, method: SummaryMethod, };

export type AgentSource = "settings" | "database";

export type KeyStatus = "none" | "ok" | "unreadable";

export type ConnectionView = { id: string, name: string, 
/**
 * `openai` (and compatible gateways), `anthropic`, `gemini` or `ollama`.
 */
kind: string, base_url: string | null, has_key: boolean, 
/**
 * At most the key's last 4 characters (none for a key shorter than 12).
 */
key_hint: string | null, key_status: KeyStatus, created_at: string, updated_at: string, };

export type ConnectionList = { connections: Array<ConnectionView>, };

export type ConnectionInput = { name: string | null, kind: string | null, base_url: string | null, api_key: string | null, };

export type ModelList = { models: Array<string>, };

export type AdminAgentView = { id: string, name: string, 
/**
 * A CSS colour (`#rrggbb`) for the agent's messages.
 */
colour: string | null, system_prompt: string, 
/**
 * The connection it calls (`null`: the settings' provider, or the built-in local one).
 */
connection_id: string | null, provider: string, model: string, temperature: number, max_tokens: number, 
/**
 * A model of the same connection tried when the main one fails before its first token.
 */
fallback_model: string | null, 
/**
 * An agent (its id) whose provider and model answer, in this agent's persona, when this
 * agent's own (and its fallback model) fail before the first token.
 */
fallback_agent: string | null, enabled: boolean, source: AgentSource, 
/**
 * Whether messages may ask it now (false when disabled, or when a settings agent with the
 * same id or name wins over it).
 */
active: boolean, updated_at: string | null, };

export type AdminAgentList = { agents: Array<AdminAgentView>, };

export type AgentInput = { id: string | null, name: string | null, colour: string | null, system_prompt: string | null, connection_id: string | null, model: string | null, temperature: number | null, max_tokens: number | null, fallback_model: string | null, fallback_agent: string | null, enabled: boolean | null, };

export type MemoryView = { id: string, 
/**
 * `fact` (stated by the user, or added by hand) or `summary` (of a thread).
 */
kind: string, text: string, 
/**
 * The thread it was captured in (none for an item added by hand).
 */
source_thread?: string, 
/**
 * The message it was captured from (facts only).
 */
source_message?: string, 
/**
 * RFC 3339, UTC.
 */
created_at: string, updated_at: string, };

export type MemoryList = { memories: Array<MemoryView>, 
/**
 * Pass as `before` for the next (older) page; absent on the last page.
 */
next_before?: string, };

export type MemorySettingsView = { 
/**
 * Opt-in: off until the user turns it on. Off, nothing is captured and agents receive
 * none of the items (which are kept until deleted).
 */
enabled: boolean, 
/**
 * Items kept now.
 */
count: number, 
/**
 * Most items the user may keep.
 */
max_items: number, 
/**
 * Most characters of one item.
 */
max_chars: number, };

export type MemoryInput = { 
/**
 * 1 to `max_chars` characters after trimming.
 */
text: string, };

export type MemoryOptIn = { enabled: boolean, };

export type MemoriesDeleted = { deleted: number, };

export type MemoryChange = "added" | "updated" | "deleted" | "cleared";
