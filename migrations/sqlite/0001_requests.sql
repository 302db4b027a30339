-- The request store. Three tables:
--   privacy_requests  one row per privacy request: its lifecycle and the job runner's bookkeeping
--   inbound_messages  one row per distinct bus message, with the reply it was given
--   request_events    the audit trail: every status change and duplicate hit, never deleted
-- Request ids (LCM request ids and RCDP tracking ids alike) come from one sequence
-- (AUTOINCREMENT, seeded below) starting at 10000, shared by every flow and instance.
-- Personal data is stored encrypted (AES-256-GCM, key id beside each value) and
-- looked up by a keyed blind index (HMAC-SHA256 of the normalized value).

CREATE TABLE privacy_requests (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant           TEXT        NOT NULL,
    flow             TEXT        NOT NULL CHECK (flow IN ('lcm', 'rcdp')),
    kind             TEXT        NOT NULL CHECK (kind IN ('access', 'forget')),
    pseudonymize     INTEGER     NOT NULL,
    -- Who the request is about: 'account' (the LCM AccountNumber), 'gcrid', 'email',
    -- 'mobile' or 'customer'; its blind index; its value, encrypted.
    identifier_type  TEXT        NOT NULL,
    identifier_index TEXT        NOT NULL,
    identifier_value BLOB        NOT NULL,
    key_id           TEXT        NOT NULL,
    source           TEXT,
    status           TEXT        NOT NULL DEFAULT 'registered'
                     CHECK (status IN ('registered', 'in_progress', 'completed', 'failed', 'revoked')),
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    -- Job runner: a runner claims due rows with a single IMMEDIATE transaction (SQLite has one writer) and holds a lease.
    due_at           TEXT NOT NULL,
    attempts         INTEGER     NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    lease_expires_at TEXT,
    last_error       TEXT,
    result           TEXT,
    completed_at     TEXT
);

-- At most one pending request of a kind per customer: the duplicate rule's backstop.
CREATE UNIQUE INDEX privacy_requests_one_pending_idx
    ON privacy_requests (tenant, identifier_index, kind, pseudonymize)
    WHERE status IN ('registered', 'in_progress');
CREATE INDEX privacy_requests_customer_idx ON privacy_requests (tenant, identifier_index);
CREATE INDEX privacy_requests_due_idx ON privacy_requests (due_at)
    WHERE status IN ('registered', 'in_progress');

CREATE TABLE inbound_messages (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    -- 'mid:' + AMQP message_id, 'cid:' + correlation_id, or 'nk:' + SHA-256 of the
    -- LCM natural key; NULL when a message has none of them.
    idempotency_key  TEXT        UNIQUE,
    request_id       INTEGER     REFERENCES privacy_requests (id),
    operation        TEXT        NOT NULL,
    source           TEXT,
    message_id       TEXT,
    correlation_id   TEXT,
    reply_to         TEXT,
    routing_key      TEXT        NOT NULL,
    -- What the message carried that is not personal data (JSON).
    details          TEXT        NOT NULL,
    -- What it carried that is (JSON, encrypted), and the key that encrypted it.
    personal_data    BLOB,
    personal_key_id  TEXT,
    -- The reply payload sent back, and when it was committed.
    reply_payload    TEXT        NOT NULL,
    received_at      TEXT NOT NULL,
    answered_at      TEXT NOT NULL
);
CREATE INDEX inbound_messages_request_idx ON inbound_messages (request_id);

CREATE TABLE request_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id  INTEGER     NOT NULL REFERENCES privacy_requests (id),
    at          TEXT NOT NULL,
    -- Who: 'agent:<AgentID>', 'source:<reqSource>', 'operator:<name>' or 'system'.
    actor       TEXT        NOT NULL,
    from_status TEXT,
    to_status   TEXT        NOT NULL,
    reason      TEXT        NOT NULL
);
CREATE INDEX request_events_request_idx ON request_events (request_id);

-- The first id handed out is 10000, as with PostgreSQL.
INSERT INTO sqlite_sequence (name, seq) VALUES ('privacy_requests', 9999);
