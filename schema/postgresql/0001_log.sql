-- Log, tree hashes and projections (PostgreSQL dialect).
-- Every table is keyed by project first, so that a distributed PostgreSQL (Citus,
-- distribution column = project) can shard it. Log tables are append-only: row
-- triggers refuse UPDATE and DELETE, a statement trigger refuses TRUNCATE, and the
-- application role (deploy/postgres-roles.sql) holds only INSERT and SELECT on them.

CREATE TABLE heads (
    project          text PRIMARY KEY,
    size             bigint NOT NULL,
    last_leaf        bytea,
    last_recorded_at text
);

CREATE TABLE entries (
    project     text   NOT NULL,
    seq         bigint NOT NULL,
    event_id    text   NOT NULL,
    event_hash  bytea  NOT NULL,
    type        text   NOT NULL,
    actor       text   NOT NULL,
    instance_id text,
    image_id    text,
    guideline   text,
    recorded_at text   NOT NULL,
    entry       bytea  NOT NULL,
    PRIMARY KEY (project, seq),
    UNIQUE (project, event_id)
);
CREATE INDEX entries_actor ON entries (project, actor, seq);
CREATE INDEX entries_instance ON entries (project, instance_id, seq);
CREATE INDEX entries_image ON entries (project, image_id, seq);
CREATE INDEX entries_time ON entries (project, recorded_at);

CREATE TABLE tree_hashes (
    project text   NOT NULL,
    idx     bigint NOT NULL,
    hash    bytea  NOT NULL,
    PRIMARY KEY (project, idx)
);

CREATE TABLE actors (
    project      text   NOT NULL,
    actor_id     text   NOT NULL,
    kind         text   NOT NULL,
    roles        text   NOT NULL,
    skills       text   NOT NULL,
    organization text,
    display_name text,
    seq          bigint NOT NULL,
    PRIMARY KEY (project, actor_id)
);

CREATE TABLE guidelines (
    project      text   NOT NULL,
    guideline_id text   NOT NULL,
    version      text   NOT NULL,
    sha256       text   NOT NULL,
    title        text,
    seq          bigint NOT NULL,
    PRIMARY KEY (project, guideline_id, version)
);

CREATE TABLE categories (
    project       text    NOT NULL,
    category_id   integer NOT NULL,
    name          text    NOT NULL,
    supercategory text,
    seq           bigint  NOT NULL,
    PRIMARY KEY (project, category_id)
);

CREATE TABLE images (
    project     text    NOT NULL,
    image_id    text    NOT NULL,
    width       integer NOT NULL,
    height      integer NOT NULL,
    file_name   text    NOT NULL,
    sha256      text,
    sequence_id text,
    frame_index integer,
    seq         bigint  NOT NULL,
    PRIMARY KEY (project, image_id)
);

CREATE TABLE instances (
    project     text    NOT NULL,
    instance_id text    NOT NULL,
    image_id    text    NOT NULL,
    category_id integer NOT NULL,
    revision    integer NOT NULL,
    deleted     integer NOT NULL,
    created_seq bigint  NOT NULL,
    updated_seq bigint  NOT NULL,
    review      text,
    PRIMARY KEY (project, instance_id)
);
CREATE INDEX instances_image ON instances (project, image_id);

CREATE TABLE revisions (
    project      text    NOT NULL,
    instance_id  text    NOT NULL,
    revision     integer NOT NULL,
    seq          bigint  NOT NULL,
    op           text    NOT NULL,
    image_id     text    NOT NULL,
    category_id  integer NOT NULL,
    iscrowd      integer NOT NULL,
    segmentation text    NOT NULL,
    area         bigint  NOT NULL,
    bbox         text    NOT NULL,
    actor        text    NOT NULL,
    guideline    text    NOT NULL,
    PRIMARY KEY (project, instance_id, revision)
);
CREATE INDEX revisions_seq ON revisions (project, seq);
CREATE INDEX revisions_image ON revisions (project, image_id, seq);

CREATE TABLE reviews (
    project     text    NOT NULL,
    seq         bigint  NOT NULL,
    instance_id text    NOT NULL,
    revision    integer NOT NULL,
    reviewer    text    NOT NULL,
    decision    text    NOT NULL,
    reason      text,
    PRIMARY KEY (project, seq)
);
CREATE INDEX reviews_instance ON reviews (project, instance_id, revision);

CREATE TABLE links (
    project  text   NOT NULL,
    parent   text   NOT NULL,
    child    text   NOT NULL,
    relation text   NOT NULL,
    seq      bigint NOT NULL,
    PRIMARY KEY (project, parent, child)
);

CREATE TABLE releases (
    project   text   NOT NULL,
    name      text   NOT NULL,
    seq       bigint NOT NULL,
    tree_size bigint NOT NULL,
    policy    text   NOT NULL,
    sha256    text   NOT NULL,
    PRIMARY KEY (project, name)
);

CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger: % is append-only (% refused)', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['entries', 'tree_hashes', 'guidelines', 'categories', 'images',
                     'revisions', 'reviews', 'links', 'releases']
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
