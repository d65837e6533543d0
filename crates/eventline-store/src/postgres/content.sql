-- Content filters' equality (`eq`, `in`) as containment (`content @> '{"store": "x"}'`),
-- which this index serves for every path and value. Measured on 1,000,000 events of
-- `bench/perf`: 119 MB (the table is 243 MB), 7.4 s to build, bulk inserts at about half
-- the rate; a needle went from 1,207 ms to 2.0 ms (`docs/performance.md`). A deployment
-- that never filters on content may drop it: every read stays exact without it.
CREATE INDEX events_content ON events USING GIN (content jsonb_path_ops);
