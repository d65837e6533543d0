-- Eventline's PostgreSQL store, schema version 1.

-- One row per event. `id` is the idempotency key: one row per id, written in the same
-- transaction as the event.
CREATE TABLE events (
    id                  uuid    NOT NULL PRIMARY KEY,
    timestamp_ms        bigint  NOT NULL,             -- event time, Unix ms
    received_at_ms      bigint  NOT NULL,             -- server clock, Unix ms
    client_timestamp_ms bigint,                       -- timestamp as sent, for replays
    event_type          text    NOT NULL,
    contact_id          text,                         -- NULL: no contact
    scope               text    NOT NULL CHECK (scope IN ('app', 'site')),
    content             jsonb   NOT NULL
);

-- The three query shapes, each in the page order (timestamp, id).
CREATE INDEX events_by_time ON events (timestamp_ms, id);
CREATE INDEX events_by_contact ON events (contact_id, timestamp_ms, id) WHERE contact_id IS NOT NULL;
CREATE INDEX events_by_type ON events (event_type, timestamp_ms, id);
