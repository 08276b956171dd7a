-- Search at a million messages (docs/search.md, "At scale"). A frequent word is ranked among
-- the caller's latest matches only (`created_at >= cut`, db::sql::search_scope); without an
-- index on `created_at` that condition was checked on each matching row, after the row was
-- read, so every match of the word was still read (0.5 s for a word in 80,000 messages). With
-- it PostgreSQL reads only the window's rows (64 ms for the same word). Messages are appended
-- in time order: the index grows at its right edge.
CREATE INDEX messages_created ON messages (created_at);
