-- Message extras as one JSON text (src/db/meta.rs): debate id, role and round, the answer a
-- regenerated version replaces, and an agent answer's model and duration. NULL when none.
ALTER TABLE messages ADD COLUMN meta TEXT;
