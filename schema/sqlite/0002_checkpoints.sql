-- Signed checkpoints and published verifier keys (SQLite dialect).
-- Both tables are append-only, like the log: a signed checkpoint is evidence and is
-- never changed or removed, and a key that was once published stays published so that
-- the checkpoints it signed stay verifiable after the signing key rotates.

-- One signed C2SP checkpoint per (project, tree size): the note exactly as signed.
CREATE TABLE checkpoints (
    project    TEXT    NOT NULL,
    size       INTEGER NOT NULL,                -- tree size the checkpoint commits to
    root       BLOB    NOT NULL,                -- 32-byte RFC 9162 root hash at that size
    key_name   TEXT    NOT NULL,                -- name of the signing key
    key_id     BLOB    NOT NULL,                -- its 4-byte key id
    note       BLOB    NOT NULL,                -- the signed note bytes (UTF-8 text)
    created_at TEXT    NOT NULL,                -- UTC, YYYY-MM-DDTHH:MM:SS.ffffffZ
    PRIMARY KEY (project, size)
);

-- Verifier keys (C2SP note format) of every key that has signed checkpoints here.
-- Not per project: one signing key signs every project's checkpoints (a reference
-- table in a distributed PostgreSQL).
CREATE TABLE verifier_keys (
    key_name     TEXT NOT NULL,
    key_id       BLOB NOT NULL,
    verifier_key TEXT NOT NULL,                 -- <name>+<key id hex>+<base64 key>
    published_at TEXT NOT NULL,
    PRIMARY KEY (key_name, key_id)
);

CREATE TRIGGER checkpoints_no_update BEFORE UPDATE ON checkpoints
BEGIN SELECT RAISE(ABORT, 'ledger: checkpoints is append-only'); END;
CREATE TRIGGER checkpoints_no_delete BEFORE DELETE ON checkpoints
BEGIN SELECT RAISE(ABORT, 'ledger: checkpoints is append-only'); END;
CREATE TRIGGER verifier_keys_no_update BEFORE UPDATE ON verifier_keys
BEGIN SELECT RAISE(ABORT, 'ledger: verifier_keys is append-only'); END;
CREATE TRIGGER verifier_keys_no_delete BEFORE DELETE ON verifier_keys
BEGIN SELECT RAISE(ABORT, 'ledger: verifier_keys is append-only'); END;
