-- API tokens (PostgreSQL dialect). Only the SHA-256 of each token is stored. The table
-- is mutable for one reason: revocation sets revoked_at, once. Tokens are never
-- deleted, so the principal recorded in every entry ("token:<name>") stays explained.
-- The application role holds SELECT, INSERT and UPDATE here (deploy/postgres-roles.sql).

CREATE TABLE tokens (
    id         text PRIMARY KEY,
    name       text NOT NULL UNIQUE,
    role       text NOT NULL CHECK (role IN ('writer', 'reviewer', 'auditor', 'admin')),
    project    text,
    hash       bytea NOT NULL,
    created_at text NOT NULL,
    created_by text NOT NULL,
    revoked_at text
);

CREATE FUNCTION ledger_tokens_revoke_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'UPDATE' THEN
        RAISE EXCEPTION 'ledger: tokens is append-only: a token is revoked, never deleted (% refused)', TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF OLD.revoked_at IS NOT NULL OR NEW.revoked_at IS NULL
       OR (NEW.id, NEW.name, NEW.role, NEW.project, NEW.hash, NEW.created_at, NEW.created_by)
          IS DISTINCT FROM
          (OLD.id, OLD.name, OLD.role, OLD.project, OLD.hash, OLD.created_at, OLD.created_by)
    THEN
        RAISE EXCEPTION 'ledger: tokens is append-only but for revocation: a token can only be revoked, once'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER tokens_revoke_only BEFORE UPDATE OR DELETE ON tokens
    FOR EACH ROW EXECUTE FUNCTION ledger_tokens_revoke_only();
CREATE TRIGGER tokens_no_truncate BEFORE TRUNCATE ON tokens
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_tokens_revoke_only();
