-- The window of a PostgreSQL search (docs/search.md, "At scale"): `created_at >= cut` ANDed
-- with the GIN bitmap of the query's words. Read from the btree of 0015 that condition built a
-- bitmap of every message in the window (27 ms for 40 % of a million messages), more than the
-- window saved for a word in a few thousand messages. A BRIN index summarises each range of 16
-- pages by its oldest and newest `created_at`: its bitmap is a list of page ranges (about 1 ms,
-- any window), which the GIN bitmap's exact rows are checked against. Messages are appended in
-- time order, so the ranges are narrow; a range that is not (rows written out of order) only
-- costs a recheck, never a wrong row. New ranges are summarised by autovacuum
-- (`autosummarize`); until then they are always read. The btree stays: a frequent word is
-- found newest first along it.
CREATE INDEX messages_created_brin ON messages USING brin (created_at)
    WITH (pages_per_range = 16, autosummarize = on);
