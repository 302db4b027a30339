-- A demo contact-centre CRM, for the README's walk-through and the tests.
-- Portable SQL: it loads into SQLite (sqlite3 demo/crm.db < demo/crm.sql) and
-- into PostgreSQL (psql -f demo/crm.sql) alike. Every person here is made up.

CREATE TABLE customers (
    id             INTEGER PRIMARY KEY,
    account_number TEXT NOT NULL UNIQUE,   -- the LCM AccountNumber
    gcr_id         TEXT,                   -- RCDP gcrid
    customer_code  TEXT,                   -- RCDP customer
    full_name      TEXT NOT NULL,
    email          TEXT,
    phone          TEXT,
    postcode       TEXT,
    birth_date     TEXT
);

CREATE TABLE calls (
    id            INTEGER PRIMARY KEY,
    customer_id   INTEGER NOT NULL REFERENCES customers (id),
    started_at    TEXT NOT NULL,
    caller_number TEXT,
    agent_id      TEXT NOT NULL,
    notes         TEXT
);

-- Kept for the accountants when a customer is forgotten (the data map anonymizes
-- them): so the link to the customer goes when the customer's row does.
CREATE TABLE invoices (
    id           INTEGER PRIMARY KEY,
    customer_id  INTEGER REFERENCES customers (id) ON DELETE SET NULL,
    issued_on    TEXT NOT NULL,
    billing_name TEXT NOT NULL,
    amount_cents INTEGER NOT NULL
);

CREATE TABLE campaigns (
    id   INTEGER PRIMARY KEY,
    name TEXT NOT NULL
);

CREATE TABLE campaign_members (
    id          INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers (id),
    campaign_id INTEGER NOT NULL REFERENCES campaigns (id),
    joined_at   TEXT NOT NULL,
    opted_out   INTEGER NOT NULL DEFAULT 0
);

INSERT INTO customers (id, account_number, gcr_id, customer_code, full_name, email, phone, postcode, birth_date) VALUES
    (1, '934|1|475|0|0|44|59', 'GCR-1001', 'C-1001', 'John Smith',     'john.smith@example.com',  '14152347172',   'SW1A 1AA', '1980-04-02'),
    (2, '934|1|475|0|0|44|60', 'GCR-1002', 'C-1002', 'Mary Jones',     'mary.jones@example.com',  '+44 20 7946 0958', 'SW1A 1AA', '1975-11-23'),
    (3, '934|1|475|0|0|44|61', 'GCR-1003', 'C-1003', 'Ahmed Khan',     'ahmed.khan@example.org',  '4155550101',    'EC1A 1BB', '1990-01-15');

INSERT INTO calls (id, customer_id, started_at, caller_number, agent_id, notes) VALUES
    (1, 1, '2026-11-02T09:14:00Z', '14152347172', 'rajat', 'Asked about the November invoice, said "thanks, bye"'),
    (2, 1, '2026-11-20T16:40:00Z', '14152347172', 'rajat', 'Asked for all personal information held about him'),
    (3, 2, '2026-11-05T11:02:00Z', '442079460958', 'lena', 'Moving house, new address to follow'),
    (4, 3, '2026-11-07T08:30:00Z', '4155550101', 'rajat', NULL);

INSERT INTO invoices (id, customer_id, issued_on, billing_name, amount_cents) VALUES
    (1, 1, '2026-10-31', 'John Smith', 4599),
    (2, 1, '2026-11-30', 'John Smith', 4599),
    (3, 2, '2026-11-30', 'Mary Jones', 2999);

INSERT INTO campaigns (id, name) VALUES (1, 'Winter broadband'), (2, 'Loyalty 2026');

INSERT INTO campaign_members (id, customer_id, campaign_id, joined_at, opted_out) VALUES
    (1, 1, 1, '2026-10-01', 0),
    (2, 1, 2, '2026-10-15', 1),
    (3, 2, 2, '2026-10-15', 0);
