-- Forget and pseudonymization (issue 13). Discovery comes first: the customer's
-- rows are found and their keys saved here before anything is changed, so a
-- retry or a takeover finishes the same rows even though the identifiers that
-- found them are gone. Once a database's change committed, customer_databases_done
-- says so (one row per database, not an update of every row). The rows of
-- databases done are the erasure ledger that `privacy-worker ledger replay`
-- applies again after a restore. Keys only, never personal data (the data map
-- refuses a personal key column).
CREATE TABLE customer_rows (
    id          INTEGER PRIMARY KEY,
    request_id  INTEGER NOT NULL REFERENCES privacy_requests (id),
    db_name     TEXT NOT NULL,
    table_name  TEXT NOT NULL,
    action      TEXT NOT NULL CHECK (action IN ('delete', 'anonymize', 'pseudonymize')),
    -- The key's values as text, a JSON array in the order of the map's `key`.
    row_key     TEXT NOT NULL
);
CREATE INDEX customer_rows_request_idx ON customer_rows (request_id, db_name);
CREATE TABLE customer_databases_done (
    request_id  INTEGER NOT NULL REFERENCES privacy_requests (id),
    db_name     TEXT NOT NULL,
    done_at     TEXT NOT NULL,
    PRIMARY KEY (request_id, db_name)
);
-- Set when discovery is saved: the ids (JSON array) of the worker's own requests
-- of the same customer, whose copies of its data a forget destroys.
ALTER TABLE privacy_requests ADD COLUMN related_requests TEXT;
