-- Outbound notifications (PostgreSQL dialect): subscribers (webhook URLs), one delivery
-- per subscriber and notification, and every delivery attempt.
--
-- subscribers and deliveries are mutable: a subscriber is deactivated, a delivery moves
-- from pending to delivered or failed. delivery_attempts is append-only, so the record
-- of what was sent, when, and what came back stays as it was. The application role
-- needs SELECT, INSERT and UPDATE on subscribers and deliveries, SELECT and INSERT on
-- delivery_attempts.

-- Not per project: a subscriber with project NULL hears of every project (a reference
-- table in a distributed PostgreSQL). The secret is the HMAC-SHA256 key the bodies are
-- signed with, so it is kept as given (it cannot be a hash).
CREATE TABLE subscribers (
    id          text PRIMARY KEY,
    project     text,
    url         text    NOT NULL,
    secret      text    NOT NULL,
    kinds       text    NOT NULL,
    description text,
    active      integer NOT NULL,
    created_at  text    NOT NULL,
    created_by  text    NOT NULL,
    disabled_at text
);

-- id is derived from (subscriber, project, kind, subject): the same notification is
-- queued once per subscriber however often it is raised.
CREATE TABLE deliveries (
    project         text    NOT NULL,
    id              text    NOT NULL,
    subscriber_id   text    NOT NULL,
    notification_id text    NOT NULL,
    kind            text    NOT NULL,
    subject         text    NOT NULL,
    body            text    NOT NULL,
    status          text    NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        integer NOT NULL,
    next_attempt_at text    NOT NULL,
    lease_until     text,
    created_at      text    NOT NULL,
    delivered_at    text,
    last_error      text,
    PRIMARY KEY (project, id)
);
CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at);
CREATE INDEX deliveries_subscriber ON deliveries (subscriber_id, created_at);

CREATE TABLE delivery_attempts (
    project      text    NOT NULL,
    delivery_id  text    NOT NULL,
    attempt      integer NOT NULL,
    started_at   text    NOT NULL,
    duration_ms  integer NOT NULL,
    status_code  integer,
    error        text,
    outcome      text    NOT NULL CHECK (outcome IN ('delivered', 'retry', 'failed')),
    PRIMARY KEY (project, delivery_id, attempt)
);

CREATE TRIGGER delivery_attempts_append_only BEFORE UPDATE OR DELETE ON delivery_attempts
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER delivery_attempts_no_truncate BEFORE TRUNCATE ON delivery_attempts
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
