-- The full-text index's vocabulary, read by a search to turn a French stem's prefix into the
-- words of the index that begin with it (docs/search.md, "At scale"): an FTS5 prefix query
-- merges the doclists of every such word in full before it returns a row, where an OR of the
-- words is walked newest first and stops early. `fts5vocab` is a view of the index: nothing is
-- stored and nothing is written when a message is.
CREATE VIRTUAL TABLE message_search_vocab USING fts5vocab(message_search, row);
