-- Outbound notifications (SQLite dialect): subscribers (webhook URLs), one delivery per
-- subscriber and notification, and every delivery attempt.
--
-- subscribers and deliveries are mutable: a subscriber is deactivated, a delivery moves
-- from pending to delivered or failed. delivery_attempts is append-only, so the record
-- of what was sent, when, and what came back stays as it was.

-- Not per project: a subscriber with project NULL hears of every project (a reference
-- table in a distributed PostgreSQL). The secret is the HMAC-SHA256 key the bodies are
-- signed with, so it is kept as given (it cannot be a hash).
CREATE TABLE subscribers (
    id          TEXT PRIMARY KEY,               -- 16 hex digits
    project     TEXT,                           -- NULL: every project
    url         TEXT NOT NULL,
    secret      TEXT NOT NULL,
    kinds       TEXT NOT NULL,                  -- JSON list of notification kinds
    description TEXT,
    active      INTEGER NOT NULL,               -- 1 active, 0 unsubscribed
    created_at  TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    disabled_at TEXT
);

-- id is derived from (subscriber, project, kind, subject): the same notification is
-- queued once per subscriber however often it is raised.
CREATE TABLE deliveries (
    project         TEXT    NOT NULL,
    id              TEXT    NOT NULL,
    subscriber_id   TEXT    NOT NULL,
    notification_id TEXT    NOT NULL,           -- the Idempotency-Key header
    kind            TEXT    NOT NULL,
    subject         TEXT    NOT NULL,
    body            TEXT    NOT NULL,           -- the exact JSON bytes that are signed
    status          TEXT    NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        INTEGER NOT NULL,           -- attempts started
    next_attempt_at TEXT    NOT NULL,
    lease_until     TEXT,                       -- a sender holds it until then
    created_at      TEXT    NOT NULL,
    delivered_at    TEXT,
    last_error      TEXT,
    PRIMARY KEY (project, id)
);
CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at);
CREATE INDEX deliveries_subscriber ON deliveries (subscriber_id, created_at);

CREATE TABLE delivery_attempts (
    project      TEXT    NOT NULL,
    delivery_id  TEXT    NOT NULL,
    attempt      INTEGER NOT NULL,
    started_at   TEXT    NOT NULL,
    duration_ms  INTEGER NOT NULL,
    status_code  INTEGER,                       -- HTTP status, NULL when none came back
    error        TEXT,
    outcome      TEXT    NOT NULL CHECK (outcome IN ('delivered', 'retry', 'failed')),
    PRIMARY KEY (project, delivery_id, attempt)
);

CREATE TRIGGER delivery_attempts_no_update BEFORE UPDATE ON delivery_attempts
BEGIN SELECT RAISE(ABORT, 'ledger: delivery_attempts is append-only'); END;
CREATE TRIGGER delivery_attempts_no_delete BEFORE DELETE ON delivery_attempts
BEGIN SELECT RAISE(ABORT, 'ledger: delivery_attempts is append-only'); END;
