-- Signed checkpoints and published verifier keys (PostgreSQL dialect).
-- Both tables are append-only, like the log: a signed checkpoint is evidence and is
-- never changed or removed, and a key that was once published stays published so that
-- the checkpoints it signed stay verifiable after the signing key rotates. Row
-- triggers refuse UPDATE and DELETE, a statement trigger refuses TRUNCATE, and the
-- application role holds only INSERT and SELECT on both (deploy/postgres-roles.sql).

-- One signed C2SP checkpoint per (project, tree size): the note exactly as signed.
CREATE TABLE checkpoints (
    project    text   NOT NULL,
    size       bigint NOT NULL,
    root       bytea  NOT NULL,
    key_name   text   NOT NULL,
    key_id     bytea  NOT NULL,
    note       bytea  NOT NULL,
    created_at text   NOT NULL,
    PRIMARY KEY (project, size)
);

-- Verifier keys of every key that has signed checkpoints here. Not per project: one
-- signing key signs every project's checkpoints (with Citus, a reference table).
CREATE TABLE verifier_keys (
    key_name     text  NOT NULL,
    key_id       bytea NOT NULL,
    verifier_key text  NOT NULL,
    published_at text  NOT NULL,
    PRIMARY KEY (key_name, key_id)
);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['checkpoints', 'verifier_keys']
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
