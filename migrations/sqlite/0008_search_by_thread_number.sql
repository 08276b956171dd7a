-- Search that stays fast with a million messages (docs/search.md, "At scale").
-- Each thread gets a stable integer number, and each message's row in the full-text index has
-- the rowid (thread number << 32) | seq: the index alone says which thread a hit is in, so the
-- caller's threads are checked without reading the index's stored columns (one lookup per match,
-- the cost that made a common word take seconds), and the message is found by (thread, seq).
ALTER TABLE threads ADD COLUMN num INTEGER;
UPDATE threads SET num = n.num
    FROM (SELECT id, row_number() OVER (ORDER BY created_at, id) AS num FROM threads) AS n
    WHERE n.id = threads.id;
CREATE UNIQUE INDEX threads_num ON threads(num);
CREATE TRIGGER threads_number AFTER INSERT ON threads WHEN NEW.num IS NULL BEGIN
    UPDATE threads SET num = (SELECT coalesce(max(num), 0) + 1 FROM threads) WHERE id = NEW.id;
END;
-- Each membership carries its thread's number while the thread is not deleted: the caller's
-- readable threads are one range of an index, not a join per membership.
ALTER TABLE thread_members ADD COLUMN thread_num INTEGER;
UPDATE thread_members SET thread_num =
    (SELECT num FROM threads WHERE id = thread_members.thread_id AND deleted_at IS NULL);
CREATE INDEX thread_members_user_num ON thread_members(user_id, thread_num);
CREATE TRIGGER thread_members_number AFTER INSERT ON thread_members BEGIN
    UPDATE thread_members SET thread_num =
        (SELECT num FROM threads WHERE id = NEW.thread_id AND deleted_at IS NULL)
        WHERE thread_id = NEW.thread_id AND user_id = NEW.user_id;
END;
CREATE TRIGGER threads_deleted AFTER UPDATE OF deleted_at ON threads
    WHEN NEW.deleted_at IS NOT NULL BEGIN
    UPDATE thread_members SET thread_num = NULL WHERE thread_id = NEW.id;
END;
-- The index is rebuilt with those rowids and only the body (the rest is in `messages`).
DROP TABLE message_search;
CREATE VIRTUAL TABLE message_search USING fts5(
    body,
    tokenize = 'porter unicode61 remove_diacritics 2'
);
INSERT INTO message_search (rowid, body)
    SELECT (t.num << 32) | m.seq, m.body FROM messages m JOIN threads t ON t.id = m.thread_id;
-- Written by the database in the transaction that stores (or purges) the message, whatever the
-- path (group commit, outage queue flush, import), as PostgreSQL's generated column is.
CREATE TRIGGER messages_search_insert AFTER INSERT ON messages BEGIN
    INSERT INTO message_search (rowid, body)
        VALUES (((SELECT num FROM threads WHERE id = NEW.thread_id) << 32) | NEW.seq, NEW.body);
END;
CREATE TRIGGER messages_search_delete AFTER DELETE ON messages BEGIN
    DELETE FROM message_search
        WHERE rowid = ((SELECT num FROM threads WHERE id = OLD.thread_id) << 32) | OLD.seq;
END;
