-- PostgreSQL only (a BRIN index on messages.created_at for the search window, docs/search.md
-- "At scale"); SQLite's search walks its FTS5 index newest first by rowid and needs nothing.
SELECT 1;
