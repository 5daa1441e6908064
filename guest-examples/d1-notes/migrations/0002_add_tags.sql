-- Migration number: 0002 	 add tags
-- WITHOUT ROWID: inserting a tag leaves last_insert_rowid() at the note's
-- id, which the tag inserts of the same batch use.
CREATE TABLE note_tags (
    note_id INTEGER NOT NULL REFERENCES notes (id) ON DELETE CASCADE,
    tag TEXT NOT NULL,
    PRIMARY KEY (note_id, tag)
) WITHOUT ROWID;
CREATE INDEX idx_note_tags_tag ON note_tags (tag);
