-- API tokens (SQLite dialect). Only the SHA-256 of each token is stored. The table is
-- mutable for one reason: revocation sets revoked_at, once. Tokens are never deleted,
-- so the principal recorded in every entry ("token:<name>") stays explained.

CREATE TABLE tokens (
    id         TEXT PRIMARY KEY,                -- 16 hex digits, public (part of the token)
    name       TEXT NOT NULL UNIQUE,            -- the principal is "token:<name>"
    role       TEXT NOT NULL CHECK (role IN ('writer', 'reviewer', 'auditor', 'admin')),
    project    TEXT,                            -- NULL: every project
    hash       BLOB NOT NULL,                   -- SHA-256 of the whole token string
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    revoked_at TEXT
);

CREATE TRIGGER tokens_no_delete BEFORE DELETE ON tokens
BEGIN SELECT RAISE(ABORT, 'ledger: tokens is append-only: a token is revoked, never deleted'); END;
CREATE TRIGGER tokens_revoke_only BEFORE UPDATE ON tokens
WHEN OLD.revoked_at IS NOT NULL OR NEW.revoked_at IS NULL
    OR NEW.id IS NOT OLD.id OR NEW.name IS NOT OLD.name OR NEW.role IS NOT OLD.role
    OR NEW.project IS NOT OLD.project OR NEW.hash IS NOT OLD.hash
    OR NEW.created_at IS NOT OLD.created_at OR NEW.created_by IS NOT OLD.created_by
BEGIN SELECT RAISE(ABORT, 'ledger: tokens is append-only but for revocation: a token can only be revoked, once'); END;
