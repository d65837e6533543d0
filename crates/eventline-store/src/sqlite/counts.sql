-- Schema version 3: event counts per minute, event type and scope, kept in the same
-- transaction as the events, so that stats over millions of events read thousands of
-- rows. Inserts are counted by the writer, once per key and group commit (a per-row
-- trigger cost a fifth of the ingest rate); deletes, which are rare, by a trigger.
-- Zero counts are left in place (harmless, and cheaper than deleting).
CREATE TABLE event_counts (
    minute     INTEGER NOT NULL,    -- timestamp_ms / 60000
    event_type TEXT    NOT NULL,
    scope      TEXT    NOT NULL,
    count      INTEGER NOT NULL,
    PRIMARY KEY (minute, event_type, scope)
) STRICT, WITHOUT ROWID;

INSERT INTO event_counts (minute, event_type, scope, count)
SELECT timestamp_ms / 60000, event_type, scope, COUNT(*) FROM events GROUP BY 1, 2, 3;

CREATE TRIGGER events_uncounted AFTER DELETE ON events BEGIN
    UPDATE event_counts SET count = count - 1
    WHERE minute = OLD.timestamp_ms / 60000 AND event_type = OLD.event_type AND scope = OLD.scope;
END;
