-- Review assignments, declared instance counts and materialized releases.

CREATE TABLE assignments (
    project     text    NOT NULL,
    seq         bigint  NOT NULL,
    instance_id text    NOT NULL,
    revision    integer NOT NULL,
    assignee    text    NOT NULL,
    rule        text,
    assigned_by text    NOT NULL,
    PRIMARY KEY (project, seq)
);
CREATE INDEX assignments_instance ON assignments (project, instance_id, seq);
CREATE INDEX assignments_assignee ON assignments (project, assignee, seq);

-- The latest declaration for an image replaces the earlier ones.
CREATE TABLE count_declarations (
    project  text   NOT NULL,
    seq      bigint NOT NULL,
    image_id text   NOT NULL,
    counts   text   NOT NULL,
    PRIMARY KEY (project, seq)
);
CREATE INDEX count_declarations_image ON count_declarations (project, image_id, seq);

CREATE TABLE materializations (
    project         text    NOT NULL,
    seq             bigint  NOT NULL,
    name            text    NOT NULL,
    manifest_sha256 text    NOT NULL,
    files           integer NOT NULL,
    target          text,
    PRIMARY KEY (project, seq)
);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['assignments', 'count_declarations', 'materializations']
    LOOP
        EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OR DELETE ON %I
                        FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()',
                       t || '_append_only', t);
        EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON %I
                        FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change()',
                       t || '_no_truncate', t);
    END LOOP;
END;
$$;
