-- A demo dialer list in a second database: one row per campaign a number was
-- dialled in, keyed by the phone number alone (the dialer knows no customer).

CREATE TABLE leads (
    lead_id    INTEGER PRIMARY KEY,
    msisdn     TEXT NOT NULL,
    first_name TEXT,
    campaign   TEXT NOT NULL,
    last_dial  TEXT,
    outcome    TEXT
);

INSERT INTO leads (lead_id, msisdn, first_name, campaign, last_dial, outcome) VALUES
    (1, '1-415-234-7172', 'John',  'Winter broadband', '2026-10-03T10:00:00Z', 'answered'),
    (2, '14152347172',    'John',  'Loyalty 2026',     '2026-10-20T14:30:00Z', 'no answer'),
    (3, '4155550101',     'Ahmed', 'Winter broadband', '2026-10-04T09:10:00Z', 'answered'),
    (4, '4155550199',     'Zoe',   'Winter broadband', '2026-10-04T09:20:00Z', 'busy');
