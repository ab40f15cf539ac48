-- A vendor-like queue database (MariaDB / MySQL), as the tests create it. Times are the
-- centre's local time without zone, numbers restart every morning, a recall updates
-- called_at/closed_at of the same row, and every change bumps updated_at.
CREATE TABLE tickets (
    id          BIGINT AUTO_INCREMENT PRIMARY KEY,          -- the vendor's ticket id (unique across days)
    number      VARCHAR(16) NOT NULL,           -- A001, A002, ... restarts daily
    service_code VARCHAR(16) NOT NULL,          -- HT (hộ tịch), DD (đất đai), ...
    counter_no  VARCHAR(8),                     -- Q1, Q2, ... set when called
    staff_code  VARCHAR(16),                    -- NV01, ... set when called
    status      VARCHAR(12) NOT NULL DEFAULT 'WAITING', -- WAITING, CALLING, DONE; HUY (cancelled), CHUYEN (transferred)
    issued_at   DATETIME(3) NOT NULL,
    called_at   DATETIME(3),
    closed_at   DATETIME(3),
    updated_at  DATETIME(6) NOT NULL
) CHARACTER SET utf8mb4;
CREATE INDEX tickets_changed ON tickets (updated_at, id);
CREATE TABLE staff_sessions (
    id          BIGINT AUTO_INCREMENT PRIMARY KEY,
    staff_code  VARCHAR(16) NOT NULL,
    counter_no  VARCHAR(8) NOT NULL,
    login_at    DATETIME(3) NOT NULL,
    logout_at   DATETIME(3),
    updated_at  DATETIME(6) NOT NULL
) CHARACTER SET utf8mb4;
CREATE INDEX staff_sessions_changed ON staff_sessions (updated_at, id);
-- the bridge's read-only user
-- CREATE USER 'qms_ro'@'bridge-host' IDENTIFIED BY '...';
-- GRANT SELECT ON qms.tickets TO 'qms_ro'@'bridge-host'; GRANT SELECT ON qms.staff_sessions TO 'qms_ro'@'bridge-host';
