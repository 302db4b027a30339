-- The discovered keys in batches (issue 13's benchmark): one row per table and
-- action of up to 10,000 keys, a JSON array of keys (each a JSON array of the
-- key's values as text, in the order of the map's `key`), instead of one row
-- per key. Saving 100,000 keys was 100,000 rows and their index entries, a
-- write that took as long as the erasure it precedes; it is now ten rows. The
-- ledger still records every erased row: its database, table and key values,
-- never personal data. Keys saved before are moved here, a batch per table.
CREATE TABLE customer_row_batches (
    id          BIGSERIAL PRIMARY KEY,
    request_id  BIGINT NOT NULL REFERENCES privacy_requests (id),
    db_name     TEXT NOT NULL,
    table_name  TEXT NOT NULL,
    action      TEXT NOT NULL CHECK (action IN ('delete', 'anonymize', 'pseudonymize')),
    row_keys    TEXT NOT NULL
);
CREATE INDEX customer_row_batches_request_idx ON customer_row_batches (request_id);
INSERT INTO customer_row_batches (request_id, db_name, table_name, action, row_keys)
    SELECT request_id, db_name, table_name, action,
           CAST(jsonb_agg(CAST(row_key AS jsonb) ORDER BY id) AS TEXT)
    FROM customer_rows
    GROUP BY request_id, db_name, table_name, action
    ORDER BY min(id);
DROP TABLE customer_rows;
