-- Eventline's embedded store, schema version 1. Open it with `sqlite3`; the view
-- `events_readable` shows ids and times as text.

-- One row per event. `seq` is SQLite's rowid: rows are appended in commit order.
CREATE TABLE events (
    seq                 INTEGER PRIMARY KEY,
    id                  BLOB    NOT NULL,             -- UUID, 16 bytes
    timestamp_ms        INTEGER NOT NULL,             -- event time, Unix ms
    received_at_ms      INTEGER NOT NULL,             -- server clock, Unix ms
    client_timestamp_ms INTEGER,                      -- timestamp as sent, for replays
    event_type          TEXT    NOT NULL,
    contact_id          TEXT,                         -- NULL: no contact
    scope               TEXT    NOT NULL CHECK (scope IN ('app', 'site')),
    content             TEXT    NOT NULL              -- JSON object as sent
) STRICT;

-- Idempotency: an id is stored once, in the same transaction as its event.
CREATE UNIQUE INDEX events_by_id ON events (id);
-- The three query shapes, each in the page order (timestamp, id).
CREATE INDEX events_by_time ON events (timestamp_ms, id);
CREATE INDEX events_by_contact ON events (contact_id, timestamp_ms, id) WHERE contact_id IS NOT NULL;
CREATE INDEX events_by_type ON events (event_type, timestamp_ms, id);

CREATE VIEW events_readable AS
SELECT
    lower(substr(hex(id), 1, 8) || '-' || substr(hex(id), 9, 4) || '-' || substr(hex(id), 13, 4)
        || '-' || substr(hex(id), 17, 4) || '-' || substr(hex(id), 21)) AS id,
    strftime('%Y-%m-%dT%H:%M:%fZ', timestamp_ms / 1000.0, 'unixepoch') AS timestamp,
    strftime('%Y-%m-%dT%H:%M:%fZ', received_at_ms / 1000.0, 'unixepoch') AS received_at,
    event_type,
    contact_id,
    scope,
    content
FROM events;
