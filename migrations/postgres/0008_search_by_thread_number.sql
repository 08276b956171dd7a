-- SQLite's search index gets rowids that name the thread (its 0008). PostgreSQL's index is the
-- generated `messages.search` column with its GIN index (0003), which already lives on the
-- message row: nothing to change here; the file keeps both backends' versions in step.
SELECT 1;
