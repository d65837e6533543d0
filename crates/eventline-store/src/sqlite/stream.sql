-- Schema version 4: the live stream reads events in `seq` order, so a `seq` once given
-- must never be given again. SQLite would reuse the largest after it is deleted (an
-- erased contact's newest event), so the writer gives each event
-- max(max(seq), seq_max) + 1, and deleting the largest raises `seq_max`.
CREATE TABLE stream_state (
    seq_max INTEGER NOT NULL
) STRICT;

INSERT INTO stream_state (seq_max) SELECT coalesce(max(seq), 0) FROM events;

CREATE TRIGGER events_seq_kept AFTER DELETE ON events
WHEN OLD.seq > (SELECT seq_max FROM stream_state) BEGIN
    UPDATE stream_state SET seq_max = OLD.seq;
END;
