-- Which keys the store's data was written with (issue 10), so a worker started
-- with another key file refuses to start instead of writing data that the old
-- rows' readers cannot read and blind indexes that no longer match the old
-- customers. Only key ids and check values (an HMAC of a fixed text under each
-- key), never the keys. Rotation adds a row for the new key.
CREATE TABLE store_keys (
    -- 'encryption' (by key id) or 'index' (the one blind-index key).
    purpose     TEXT NOT NULL,
    key_id      TEXT NOT NULL,
    check_value TEXT NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (purpose, key_id)
);
