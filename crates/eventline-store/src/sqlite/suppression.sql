-- Schema version 2: contacts whose new events are refused after an erasure with
-- `?suppress=true`, until they are unsuppressed.
CREATE TABLE suppressed_contacts (
    contact_id TEXT PRIMARY KEY
) STRICT, WITHOUT ROWID;
