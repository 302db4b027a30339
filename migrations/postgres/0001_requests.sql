-- The request store. Three tables:
--   privacy_requests  one row per privacy request: its lifecycle and the job runner's bookkeeping
--   inbound_messages  one row per distinct bus message (idempotency key), with the reply it was given
--   request_events    the audit trail: every status change, never deleted
-- Request ids come from one sequence starting at 10000, shared by every flow and instance.

CREATE SEQUENCE privacy_request_id_seq START WITH 10000 MINVALUE 10000;

CREATE TABLE privacy_requests (
    id               BIGINT PRIMARY KEY DEFAULT nextval('privacy_request_id_seq'),
    tenant           TEXT        NOT NULL,
    flow             TEXT        NOT NULL CHECK (flow IN ('lcm', 'rcdp')),
    kind             TEXT        NOT NULL CHECK (kind IN ('access', 'forget')),
    pseudonymize     BOOLEAN     NOT NULL,
    -- Who the request is about: the LCM AccountNumber for the LCM flow.
    customer_key     TEXT        NOT NULL,
    status           TEXT        NOT NULL DEFAULT 'registered'
                     CHECK (status IN ('registered', 'in_progress', 'completed', 'failed', 'revoked')),
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL,
    -- Job runner: a runner claims due rows with FOR UPDATE SKIP LOCKED and holds a lease.
    due_at           TIMESTAMPTZ NOT NULL,
    attempts         INTEGER     NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    lease_expires_at TIMESTAMPTZ,
    last_error       TEXT,
    result           TEXT,
    completed_at     TIMESTAMPTZ
);
ALTER SEQUENCE privacy_request_id_seq OWNED BY privacy_requests.id;

CREATE INDEX privacy_requests_due_idx ON privacy_requests (due_at)
    WHERE status IN ('registered', 'in_progress');
CREATE INDEX privacy_requests_customer_idx ON privacy_requests (tenant, customer_key, kind)
    WHERE status IN ('registered', 'in_progress');

CREATE TABLE inbound_messages (
    id                 BIGSERIAL PRIMARY KEY,
    -- 'mid:' + AMQP message_id, or 'nk:' + SHA-256 of the natural key.
    idempotency_key    TEXT        NOT NULL UNIQUE,
    request_id         BIGINT      NOT NULL REFERENCES privacy_requests (id),
    operation          TEXT        NOT NULL,
    source             TEXT,
    message_id         TEXT,
    correlation_id     TEXT,
    reply_to           TEXT,
    routing_key        TEXT        NOT NULL,
    -- What the agent sent (GetDataPrivacyStatusRequest).
    customer_name      TEXT,
    phone_number       TEXT,
    other_phone_number TEXT,
    email_id           TEXT,
    other_email_id     TEXT,
    agent_comments     TEXT,
    account_number     TEXT,
    call_id            TEXT,
    agent_id           TEXT,
    request_type       TEXT,
    is_pseudonymize    BOOLEAN,
    customer_id        TEXT,
    -- The reply payload sent back (the envelope's "message"), and when it was committed.
    reply_payload      TEXT        NOT NULL,
    received_at        TIMESTAMPTZ NOT NULL,
    answered_at        TIMESTAMPTZ NOT NULL
);
CREATE INDEX inbound_messages_request_idx ON inbound_messages (request_id);

CREATE TABLE request_events (
    id          BIGSERIAL PRIMARY KEY,
    request_id  BIGINT      NOT NULL REFERENCES privacy_requests (id),
    at          TIMESTAMPTZ NOT NULL,
    -- Who: 'agent:<AgentID>', 'source:<app>', 'operator:<name>' or 'system'.
    actor       TEXT        NOT NULL,
    from_status TEXT,
    to_status   TEXT        NOT NULL,
    reason      TEXT        NOT NULL
);
CREATE INDEX request_events_request_idx ON request_events (request_id);
