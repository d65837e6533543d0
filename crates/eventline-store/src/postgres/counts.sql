-- Schema version 3: event counts per minute, event type and scope, as deltas appended in
-- the same transaction as the events (and negative ones for deletions). Appending, not
-- updating one row per minute, keeps concurrent group commits from waiting on each other;
-- `compact_counts` folds old deltas into one row per key.
CREATE TABLE event_count_deltas (
    minute     bigint  NOT NULL,    -- timestamp_ms / 60000
    event_type text    NOT NULL,
    scope      text    NOT NULL,
    count      bigint  NOT NULL,
    compacted  boolean NOT NULL DEFAULT false
);
CREATE INDEX event_count_deltas_by_minute ON event_count_deltas (minute);

INSERT INTO event_count_deltas (minute, event_type, scope, count, compacted)
SELECT timestamp_ms / 60000, event_type, scope, COUNT(*), true FROM events GROUP BY 1, 2, 3;
