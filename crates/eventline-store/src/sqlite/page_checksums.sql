-- Schema version 7: no change to the tables. Every page of the database file carries a
-- checksum in its 8 reserved bytes from this version on (`page_checksum.rs`; a store of
-- an earlier version is rewritten with them by a VACUUM before this migration runs). The
-- version records it: a store of version 7 or later whose header does not reserve the
-- bytes has a damaged first page, and is refused rather than rewritten.
SELECT 1;
