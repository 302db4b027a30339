-- The status-change outbox (issue 12): every change of a request's status that
-- is announced on the bus (in_progress, completed, failed, revoked) is written
-- here in the same transaction as the change, and a relay publishes it with
-- confirms, then marks it published. So no announcement is lost; one may be
-- published twice (a consumer may see a repeat). The facts only: the envelope
-- is built when it is published.
CREATE TABLE status_outbox (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id   INTEGER NOT NULL REFERENCES privacy_requests (id),
    tenant       TEXT NOT NULL,
    kind         TEXT NOT NULL,
    status       TEXT NOT NULL,
    changed_at   TEXT NOT NULL,
    published_at TEXT
);
CREATE INDEX status_outbox_unpublished_idx ON status_outbox (id) WHERE published_at IS NULL;
