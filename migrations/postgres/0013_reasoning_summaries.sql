-- Issue #18, reasoning and long contexts. An agent's reasoning is stored in the message's
-- `meta` JSON (`reasoning`, `reasoning_tokens`): no column needed.
--
-- A persona's fallback may name another agent: its provider and model answer (in this
-- persona) when this agent's own fail before the first token.
ALTER TABLE agents ADD COLUMN fallback_agent TEXT;
-- The summary of a thread's older turns, as one agent sees them: it covers every message up to
-- `through_seq` (those no longer fit the agent's context window). Reused on later turns and
-- extended when more turns fall out; purged with its thread.
CREATE TABLE context_summaries (
    thread_id TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    through_seq BIGINT NOT NULL,
    body TEXT NOT NULL,
    -- `provider` (written by the agent's model) or `extractive` (the offline summary).
    method TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (thread_id, agent_id)
);
