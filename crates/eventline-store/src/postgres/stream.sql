-- Schema version 4: the live stream reads events in commit order. An event's position is
-- the id of the transaction that wrote it, then its own id. Transactions commit out of
-- the order of their ids (several group commits and servers run at once), so a reader
-- reads only below the oldest transaction still running (pg_snapshot_xmin): nothing can
-- commit there any more. Events stored before this version share the migration's id.
ALTER TABLE events ADD COLUMN commit_xid xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX events_by_commit ON events (commit_xid, id);
