-- Usage and budgets (issue #15). Each agent answer records who asked for it, so that usage can
-- be summed per user from the stored per-message token counts (src/usage/report.rs).
ALTER TABLE messages ADD COLUMN requester_id TEXT;
CREATE INDEX messages_requester_created ON messages (requester_id, created_at)
    WHERE requester_id IS NOT NULL;
CREATE INDEX messages_usage_created ON messages (created_at) WHERE requester_id IS NOT NULL;

-- Token limits: one row per user with an override, and the row '*' for the default an admin set
-- (the settings' [budgets] apply until then). NULL: no limit (the default) / the default's limit
-- (a user's override).
CREATE TABLE usage_budgets (
    user_id TEXT PRIMARY KEY,
    daily_tokens BIGINT,
    monthly_tokens BIGINT,
    updated_at BIGINT NOT NULL
);

-- Per-user, per-period counters: `used` tokens settled, `reserved` tokens held by answers still
-- running. A provider is called only after an atomic reservation here (src/usage/budget.rs), so
-- every instance sees the same budget. Period keys: 'd2026-11-30', 'm2026-11' (UTC).
CREATE TABLE usage_counters (
    user_id TEXT NOT NULL,
    period TEXT NOT NULL,
    used BIGINT NOT NULL DEFAULT 0,
    reserved BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, period)
);
