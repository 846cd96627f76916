-- Log, tree hashes and projections (SQLite dialect).
-- Every table is keyed by project first. Log tables are append-only: the triggers
-- below refuse UPDATE and DELETE (SQLite has no TRUNCATE; DELETE without WHERE is the
-- same statement and is refused by the same trigger).

CREATE TABLE heads (
    project          TEXT PRIMARY KEY,
    size             INTEGER NOT NULL,          -- number of entries
    last_leaf        BLOB,                      -- leaf hash of entry size-1
    last_recorded_at TEXT                       -- recorded_at of entry size-1
);

CREATE TABLE entries (
    project     TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    event_id    TEXT    NOT NULL,               -- client UUID
    event_hash  BLOB    NOT NULL,               -- SHA-256 of the stored event, for retries
    type        TEXT    NOT NULL,
    actor       TEXT    NOT NULL,
    instance_id TEXT,
    image_id    TEXT,
    guideline   TEXT,                           -- "id@version"
    recorded_at TEXT    NOT NULL,
    entry       BLOB    NOT NULL,               -- RFC 8785 bytes, exactly as hashed
    PRIMARY KEY (project, seq),
    UNIQUE (project, event_id)
);
CREATE INDEX entries_actor ON entries (project, actor, seq);
CREATE INDEX entries_instance ON entries (project, instance_id, seq);
CREATE INDEX entries_image ON entries (project, image_id, seq);
CREATE INDEX entries_time ON entries (project, recorded_at);

-- Complete-subtree hashes in Go tlog's stored-hash layout: index = stored_hash_index
-- (level, n); written once when the subtree becomes complete, never rewritten.
CREATE TABLE tree_hashes (
    project TEXT    NOT NULL,
    idx     INTEGER NOT NULL,
    hash    BLOB    NOT NULL,
    PRIMARY KEY (project, idx)
);

-- Projections, written in the append transaction and rebuildable from the log.
CREATE TABLE actors (
    project      TEXT NOT NULL,
    actor_id     TEXT NOT NULL,
    kind         TEXT NOT NULL,
    roles        TEXT NOT NULL,                 -- JSON list
    skills       TEXT NOT NULL,                 -- JSON list
    organization TEXT,
    display_name TEXT,
    seq          INTEGER NOT NULL,              -- latest registration
    PRIMARY KEY (project, actor_id)
);

CREATE TABLE guidelines (
    project      TEXT NOT NULL,
    guideline_id TEXT NOT NULL,
    version      TEXT NOT NULL,
    sha256       TEXT NOT NULL,
    title        TEXT,
    seq          INTEGER NOT NULL,
    PRIMARY KEY (project, guideline_id, version)
);

CREATE TABLE categories (
    project       TEXT    NOT NULL,
    category_id   INTEGER NOT NULL,
    name          TEXT    NOT NULL,
    supercategory TEXT,
    seq           INTEGER NOT NULL,
    PRIMARY KEY (project, category_id)
);

CREATE TABLE images (
    project     TEXT    NOT NULL,
    image_id    TEXT    NOT NULL,
    width       INTEGER NOT NULL,
    height      INTEGER NOT NULL,
    file_name   TEXT    NOT NULL,
    sha256      TEXT,
    sequence_id TEXT,
    frame_index INTEGER,
    seq         INTEGER NOT NULL,
    PRIMARY KEY (project, image_id)
);

-- Current state of each instance (mutable projection).
CREATE TABLE instances (
    project     TEXT    NOT NULL,
    instance_id TEXT    NOT NULL,
    image_id    TEXT    NOT NULL,
    category_id INTEGER NOT NULL,
    revision    INTEGER NOT NULL,
    deleted     INTEGER NOT NULL,
    created_seq INTEGER NOT NULL,
    updated_seq INTEGER NOT NULL,
    review      TEXT,                           -- latest decision on the current revision
    PRIMARY KEY (project, instance_id)
);
CREATE INDEX instances_image ON instances (project, image_id);

-- Every revision; revision r is valid from seq until the seq of revision r+1.
CREATE TABLE revisions (
    project     TEXT    NOT NULL,
    instance_id TEXT    NOT NULL,
    revision    INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    op          TEXT    NOT NULL,               -- created | edited | deleted
    image_id    TEXT    NOT NULL,
    category_id INTEGER NOT NULL,
    iscrowd     INTEGER NOT NULL,
    segmentation TEXT   NOT NULL,               -- canonical JSON, as submitted
    area        INTEGER NOT NULL,
    bbox        TEXT    NOT NULL,               -- canonical JSON [x, y, w, h]
    actor       TEXT    NOT NULL,
    guideline   TEXT    NOT NULL,
    PRIMARY KEY (project, instance_id, revision)
);
CREATE INDEX revisions_seq ON revisions (project, seq);
CREATE INDEX revisions_image ON revisions (project, image_id, seq);

CREATE TABLE reviews (
    project     TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    instance_id TEXT    NOT NULL,
    revision    INTEGER NOT NULL,
    reviewer    TEXT    NOT NULL,
    decision    TEXT    NOT NULL,
    reason      TEXT,
    PRIMARY KEY (project, seq)
);
CREATE INDEX reviews_instance ON reviews (project, instance_id, revision);

CREATE TABLE links (
    project  TEXT    NOT NULL,
    parent   TEXT    NOT NULL,
    child    TEXT    NOT NULL,
    relation TEXT    NOT NULL,
    seq      INTEGER NOT NULL,
    PRIMARY KEY (project, parent, child)
);

CREATE TABLE releases (
    project   TEXT    NOT NULL,
    name      TEXT    NOT NULL,
    seq       INTEGER NOT NULL,
    tree_size INTEGER NOT NULL,
    policy    TEXT    NOT NULL,                 -- canonical JSON
    sha256    TEXT    NOT NULL,
    PRIMARY KEY (project, name)
);

-- Append-only enforcement.
CREATE TRIGGER entries_no_update BEFORE UPDATE ON entries
BEGIN SELECT RAISE(ABORT, 'ledger: entries is append-only'); END;
CREATE TRIGGER entries_no_delete BEFORE DELETE ON entries
BEGIN SELECT RAISE(ABORT, 'ledger: entries is append-only'); END;
CREATE TRIGGER tree_hashes_no_update BEFORE UPDATE ON tree_hashes
BEGIN SELECT RAISE(ABORT, 'ledger: tree_hashes is append-only'); END;
CREATE TRIGGER tree_hashes_no_delete BEFORE DELETE ON tree_hashes
BEGIN SELECT RAISE(ABORT, 'ledger: tree_hashes is append-only'); END;
CREATE TRIGGER guidelines_no_update BEFORE UPDATE ON guidelines
BEGIN SELECT RAISE(ABORT, 'ledger: guidelines is append-only'); END;
CREATE TRIGGER guidelines_no_delete BEFORE DELETE ON guidelines
BEGIN SELECT RAISE(ABORT, 'ledger: guidelines is append-only'); END;
CREATE TRIGGER categories_no_update BEFORE UPDATE ON categories
BEGIN SELECT RAISE(ABORT, 'ledger: categories is append-only'); END;
CREATE TRIGGER categories_no_delete BEFORE DELETE ON categories
BEGIN SELECT RAISE(ABORT, 'ledger: categories is append-only'); END;
CREATE TRIGGER images_no_update BEFORE UPDATE ON images
BEGIN SELECT RAISE(ABORT, 'ledger: images is append-only'); END;
CREATE TRIGGER images_no_delete BEFORE DELETE ON images
BEGIN SELECT RAISE(ABORT, 'ledger: images is append-only'); END;
CREATE TRIGGER revisions_no_update BEFORE UPDATE ON revisions
BEGIN SELECT RAISE(ABORT, 'ledger: revisions is append-only'); END;
CREATE TRIGGER revisions_no_delete BEFORE DELETE ON revisions
BEGIN SELECT RAISE(ABORT, 'ledger: revisions is append-only'); END;
CREATE TRIGGER reviews_no_update BEFORE UPDATE ON reviews
BEGIN SELECT RAISE(ABORT, 'ledger: reviews is append-only'); END;
CREATE TRIGGER reviews_no_delete BEFORE DELETE ON reviews
BEGIN SELECT RAISE(ABORT, 'ledger: reviews is append-only'); END;
CREATE TRIGGER links_no_update BEFORE UPDATE ON links
BEGIN SELECT RAISE(ABORT, 'ledger: links is append-only'); END;
CREATE TRIGGER links_no_delete BEFORE DELETE ON links
BEGIN SELECT RAISE(ABORT, 'ledger: links is append-only'); END;
CREATE TRIGGER releases_no_update BEFORE UPDATE ON releases
BEGIN SELECT RAISE(ABORT, 'ledger: releases is append-only'); END;
CREATE TRIGGER releases_no_delete BEFORE DELETE ON releases
BEGIN SELECT RAISE(ABORT, 'ledger: releases is append-only'); END;
