// Generated from src/contract.rs by `UPDATE_CONTRACT=1 cargo test --lib contract`.
// Do not edit: CI fails when this file differs from what the Rust types generate.

export type ErrorCode = "bad_request" | "invalid_json" | "unauthorized" | "forbidden" | "not_found" | "method_not_allowed" | "conflict" | "too_large" | "unsupported_type" | "validation" | "rate_limited" | "internal" | "unavailable" | "unknown_type" | "cancelled" | "provider_error" | "timeout" | "interrupted";

export type ErrorBody = { error: ErrorDetail, };

export type ErrorDetail = { code: ErrorCode, message: string, fields?: { [key in string]: string }, };

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
status?: string, };

export type UserView = { id: string, username: string, };

export type AgentRef = { id: string, name: string, };

export type AckStatus = "queued" | "persisted";

export type ServerFrame = { "type": "welcome", connection_id: string, user: UserView, db: string, } | { "type": "subscribed", thread: string, head_seq: number, } | { "type": "unsubscribed", thread: string, } | { "type": "resync", thread: string, } | { "type": "message", thread: string, id: string, thread_id: string, seq: number, client_id: string, author: AuthorView, body: string, 
/**
 * RFC 3339, UTC.
 */
created_at: string, 
/**
 * `"incomplete"` for an agent answer that was cut short.
 */
status?: string, } | { "type": "ack", client_id: string, status: AckStatus, seq?: number, message_id?: string, thread: string, } | { "type": "status", db: string, broker: string, } | { "type": "pong", nonce: unknown, } | { "type": "error", code: ErrorCode, message: string, client_id?: string, retry_after_ms?: number, } | { "type": "stream_start", thread: string, stream_id: string, agent: AgentRef, debate_id?: string, } | { "type": "stream_snapshot", thread: string, stream_id: string, text: string, offset: number, } | { "type": "stream_chunk", thread: string, stream_id: string, offset: number, delta: string, } | { "type": "stream_end", thread: string, stream_id: string, message: MessageView, } | { "type": "stream_error", thread: string, stream_id: string, code: ErrorCode, message: string, };

export type ClientFrameShape = { "type": "subscribe", thread: string, after_seq?: number, } | { "type": "unsubscribe", thread: string, } | { "type": "send", thread: string, client_id: string, body: string, agent?: string, } | { "type": "debate", thread: string, client_id: string, topic: string, agents: Array<string>, rounds: number, } | { "type": "cancel", stream_id: string, } | { "type": "ping", nonce?: unknown, };
