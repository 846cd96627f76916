-- Review assignments, declared instance counts and materialized releases.

CREATE TABLE assignments (
    project     TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    instance_id TEXT    NOT NULL,
    revision    INTEGER NOT NULL,
    assignee    TEXT    NOT NULL,
    rule        TEXT,
    assigned_by TEXT    NOT NULL,
    PRIMARY KEY (project, seq)
);
CREATE INDEX assignments_instance ON assignments (project, instance_id, seq);
CREATE INDEX assignments_assignee ON assignments (project, assignee, seq);

-- The latest declaration for an image replaces the earlier ones.
CREATE TABLE count_declarations (
    project  TEXT    NOT NULL,
    seq      INTEGER NOT NULL,
    image_id TEXT    NOT NULL,
    counts   TEXT    NOT NULL,                  -- JSON {"<category_id>": count}
    PRIMARY KEY (project, seq)
);
CREATE INDEX count_declarations_image ON count_declarations (project, image_id, seq);

CREATE TABLE materializations (
    project         TEXT    NOT NULL,
    seq             INTEGER NOT NULL,
    name            TEXT    NOT NULL,
    manifest_sha256 TEXT    NOT NULL,
    files           INTEGER NOT NULL,
    target          TEXT,
    PRIMARY KEY (project, seq)
);

CREATE TRIGGER assignments_no_update BEFORE UPDATE ON assignments
BEGIN SELECT RAISE(ABORT, 'ledger: assignments is append-only'); END;
CREATE TRIGGER assignments_no_delete BEFORE DELETE ON assignments
BEGIN SELECT RAISE(ABORT, 'ledger: assignments is append-only'); END;
CREATE TRIGGER count_declarations_no_update BEFORE UPDATE ON count_declarations
BEGIN SELECT RAISE(ABORT, 'ledger: count_declarations is append-only'); END;
CREATE TRIGGER count_declarations_no_delete BEFORE DELETE ON count_declarations
BEGIN SELECT RAISE(ABORT, 'ledger: count_declarations is append-only'); END;
CREATE TRIGGER materializations_no_update BEFORE UPDATE ON materializations
BEGIN SELECT RAISE(ABORT, 'ledger: materializations is append-only'); END;
CREATE TRIGGER materializations_no_delete BEFORE DELETE ON materializations
BEGIN SELECT RAISE(ABORT, 'ledger: materializations is append-only'); END;
