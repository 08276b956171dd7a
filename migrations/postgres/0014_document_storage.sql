-- Where a document's file parts are (issue #19): 'database' (document_parts) or the URL of
-- the bucket they were written to (documents.storage), so changing the setting keeps old
-- documents readable.
ALTER TABLE documents ADD COLUMN storage TEXT NOT NULL DEFAULT 'database';
