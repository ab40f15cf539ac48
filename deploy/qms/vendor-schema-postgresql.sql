-- A vendor-like queue database (PostgreSQL), as the tests create it. Times are the
-- centre's local time without zone, numbers restart every morning, a recall updates
-- called_at/closed_at of the same row, and every change bumps updated_at.
CREATE TABLE tickets (
    id          BIGSERIAL PRIMARY KEY,          -- the vendor's ticket id (unique across days)
    number      VARCHAR(16) NOT NULL,           -- A001, A002, ... restarts daily
    service_code VARCHAR(16) NOT NULL,          -- HT (hộ tịch), DD (đất đai), ...
    counter_no  VARCHAR(8),                     -- Q1, Q2, ... set when called
    staff_code  VARCHAR(16),                    -- NV01, ... set when called
    status      VARCHAR(12) NOT NULL DEFAULT 'WAITING', -- WAITING, CALLING, DONE; HUY (cancelled), CHUYEN (transferred)
    issued_at   TIMESTAMP(3) NOT NULL,
    called_at   TIMESTAMP(3),
    closed_at   TIMESTAMP(3),
    updated_at  TIMESTAMP(6) NOT NULL
);
CREATE INDEX tickets_changed ON tickets (updated_at, id);
CREATE TABLE staff_sessions (
    id          BIGSERIAL PRIMARY KEY,
    staff_code  VARCHAR(16) NOT NULL,
    counter_no  VARCHAR(8) NOT NULL,
    login_at    TIMESTAMP(3) NOT NULL,
    logout_at   TIMESTAMP(3),
    updated_at  TIMESTAMP(6) NOT NULL
);
CREATE INDEX staff_sessions_changed ON staff_sessions (updated_at, id);
-- the bridge's read-only user
-- CREATE ROLE qms_ro LOGIN PASSWORD '...';
-- GRANT USAGE ON SCHEMA public TO qms_ro; GRANT SELECT ON tickets, staff_sessions TO qms_ro;
