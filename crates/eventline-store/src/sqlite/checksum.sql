-- Schema version 5: each event carries a CRC-32 of its fields, checked on every read, so
-- that a damaged page is refused instead of served. SQLite checksums its WAL but not the
-- database file. Events stored before version 5 have none and are read unchecked.
ALTER TABLE events ADD COLUMN checksum INTEGER;
