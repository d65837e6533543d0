//! The PostgreSQL store: any number of stateless Eventline servers on one database.
//!
//! Writes: one transaction per group commit. The ids of the group are looked up in one
//! query, replays and conflicts are decided in memory, and the new events go in as one
//! multi-row `INSERT … SELECT FROM unnest(…) ON CONFLICT (id) DO NOTHING`. Should another
//! server insert one of those ids between the lookup and the insert, the insert skips
//! it, the transaction is rolled back and the group is decided again, now seeing it.
//!
//! Durability: `synchronous_commit` is set on every connection from [`Durability`], so
//! the database's own default cannot weaken what a 2xx promises.

use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use eventline_core::cursor::{StreamCursor, StreamStart};
use eventline_core::event::{Event, Scope};
use eventline_core::properties::{Properties, PropertyValues};
use eventline_core::query::{Filter, Page, PageQuery};
use eventline_core::stats::{StatsQuery, StatsRow};
use serde_json::value::RawValue;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};
use uuid::Uuid;

mod commit;
mod discovery;

use crate::page_sql;
use crate::sql::Param;
use crate::{Durability, Error, Outcome, Store, StreamChunk, Submission};
use commit::{count, decide, deleting_counted, insert, take_raced_replays};

/// Migrations in order; the schema version is the number applied.
const MIGRATIONS: &[&str] = &[
    include_str!("postgres/schema.sql"),
    include_str!("postgres/suppression.sql"),
    include_str!("postgres/counts.sql"),
    include_str!("postgres/stream.sql"),
    include_str!("postgres/content.sql"),
];
/// Serializes migrations when several servers start at once (`pg_advisory_xact_lock`).
const MIGRATION_LOCK_KEY: i64 = 0x6576_656e_746c_696e; // "eventlin"
/// A group that races another server on the same ids this many times in a row fails.
const RACE_RETRIES_MAX: usize = 5;

/// Columns of `events` in the order [`event_from_row`] reads them.
const EVENT_COLUMNS: &str = "id, timestamp_ms, received_at_ms, client_timestamp_ms, event_type, contact_id, scope, content::text";

#[derive(Debug, Clone)]
pub struct PostgresOptions {
    pub durability: Durability,
    /// Connections this server opens at most; more requests wait.
    pub connections_max: usize,
    /// How long a request waits for a connection, and a new connection for the
    /// database, before the request fails with 503.
    pub connect_timeout: Duration,
}

impl Default for PostgresOptions {
    fn default() -> PostgresOptions {
        PostgresOptions {
            durability: Durability::Full,
            connections_max: 16,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

pub struct PostgresStore {
    pool: Pool,
    connections_max: usize,
    /// Groups rolled back and decided again (a deadlock, or an id stored meanwhile with
    /// other fields): rare by design, so tests can watch it.
    groups_redone: std::sync::atomic::AtomicU64,
}

impl PostgresStore {
    /// Connects, and creates or migrates the schema.
    pub async fn connect(url: &str, options: &PostgresOptions) -> Result<PostgresStore, Error> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|error| Error::DatabaseUrl(format!("{error}")))?;
        let synchronous_commit = match options.durability {
            Durability::Full => "on",
            Durability::Normal => "off",
        };
        config
            .options(format!("-c synchronous_commit={synchronous_commit}"))
            .application_name("eventline")
            .connect_timeout(options.connect_timeout);
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                // A closed connection is noticed without a query; a broken one fails its
                // next statement, and the pool drops it.
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.connections_max)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.connect_timeout))
            .create_timeout(Some(options.connect_timeout))
            .recycle_timeout(Some(options.connect_timeout))
            .build()
            .map_err(|error| Error::DatabaseUrl(error.to_string()))?;
        let store = PostgresStore {
            pool,
            connections_max: options.connections_max,
            groups_redone: std::sync::atomic::AtomicU64::new(0),
        };
        store.migrate().await?;
        Ok(store)
    }

    fn redo(&self) {
        self.groups_redone
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    async fn migrate(&self) -> Result<(), Error> {
        let mut client = self.pool.get().await?;
        let transaction = client.transaction().await?;
        transaction
            .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK_KEY])
            .await?;
        transaction
            .batch_execute("CREATE TABLE IF NOT EXISTS eventline_schema (version integer NOT NULL)")
            .await?;
        let version: i32 = transaction
            .query_one(
                "SELECT coalesce(max(version), 0) FROM eventline_schema",
                &[],
            )
            .await?
            .get(0);
        let known = i32::try_from(MIGRATIONS.len()).unwrap_or(i32::MAX);
        if version > known {
            return Err(Error::SchemaTooNew {
                found: i64::from(version),
                known: i64::from(known),
            });
        }
        for (number, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            transaction.batch_execute(migration).await?;
            let number = i32::try_from(number + 1).unwrap_or(i32::MAX);
            transaction
                .execute(
                    "INSERT INTO eventline_schema (version) VALUES ($1)",
                    &[&number],
                )
                .await?;
            tracing::info!(version = number, "database schema migrated");
        }
        transaction.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn append(&self, submissions: Vec<Submission>) -> Result<Vec<Outcome>, Error> {
        let mut client = self.pool.get().await?;
        for _ in 0..RACE_RETRIES_MAX {
            let transaction = client.transaction().await?;
            let (mut outcomes, mut new_events) = decide(&transaction, &submissions).await?;
            let inserted = match insert(&transaction, &new_events).await {
                Ok(inserted) => inserted,
                // Inserts take their ids in id order, so two groups cannot deadlock each
                // other; a deadlock with anything else is decided again all the same.
                Err(Error::Postgres(error))
                    if error.code()
                        == Some(&tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED) =>
                {
                    transaction.rollback().await?;
                    self.redo();
                    continue;
                }
                Err(error) => return Err(error),
            };
            if inserted.len() < new_events.len()
                && !take_raced_replays(&transaction, &mut outcomes, &mut new_events, &inserted)
                    .await?
            {
                // Another transaction stored one of these ids with other fields since the
                // lookup: decide the group again, which now sees it.
                transaction.rollback().await?;
                self.redo();
                continue;
            }
            count(&transaction, &new_events).await?;
            transaction.commit().await?;
            return Ok(outcomes);
        }
        Err(Error::Contended)
    }

    async fn page(&self, query: PageQuery) -> Result<Page, Error> {
        let (sql, params) = page_sql::page_sql(&query, EVENT_COLUMNS);
        let params = to_sql(params);
        let client = self.pool.get().await?;
        let statement = client.prepare_cached(&sql).await?;
        let rows = client.query(&statement, &borrowed(&params)).await?;
        let events = rows
            .iter()
            .map(event_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_rows(events, query.limit))
    }

    async fn stream(
        &self,
        filter: &Filter,
        after: StreamCursor,
        limit: u32,
    ) -> Result<StreamChunk, Error> {
        let client = self.pool.get().await?;
        // The head first: every transaction below it has ended, so the rows read below it
        // are all there will ever be.
        let head = xmin(&client).await?;
        let (sql, params) = page_sql::stream_sql(filter, after, head.commit, limit, EVENT_COLUMNS);
        let params = to_sql(params);
        let statement = client.prepare_cached(&sql).await?;
        let rows = client.query(&statement, &borrowed(&params)).await?;
        let mut events = Vec::with_capacity(rows.len());
        for row in &rows {
            let event = event_from_row(row)?;
            let commit: &str = row.try_get(8)?;
            let commit = commit.parse().map_err(|_| {
                Error::Corrupt(format!("event {}: commit_xid {commit:?}", event.id))
            })?;
            events.push((
                StreamCursor {
                    commit,
                    id: event.id,
                },
                event,
            ));
        }
        Ok(StreamChunk::from_rows(events, limit, after, head))
    }

    async fn stream_head(&self) -> Result<StreamCursor, Error> {
        let client = self.pool.get().await?;
        xmin(&client).await
    }

    async fn stream_start(&self) -> Result<StreamStart, Error> {
        let client = self.pool.get().await?;
        let statement = client
            .prepare_cached(
                "SELECT pg_snapshot_xmin(s)::text, pg_snapshot_xmax(s)::text,
                        array(SELECT x::text FROM pg_snapshot_xip(s) AS x)
                 FROM pg_current_snapshot() AS s",
            )
            .await?;
        let row = client.query_one(&statement, &[]).await?;
        let xid = |text: &str| {
            text.parse::<u64>()
                .map_err(|_| Error::Corrupt(format!("transaction id {text:?}")))
        };
        let running: Vec<String> = row.try_get(2)?;
        Ok(StreamStart {
            position: StreamCursor {
                commit: xid(row.try_get(0)?)?,
                id: Uuid::nil(),
            },
            ended_below: xid(row.try_get(1)?)?,
            running: running
                .iter()
                .map(|text| xid(text))
                .collect::<Result<_, _>>()?,
        })
    }

    async fn check(&self) -> Result<(), Error> {
        let client = self.pool.get().await?;
        client.query_one("SELECT 1", &[]).await?;
        Ok(())
    }

    async fn erase_contact(&self, contact_id: &str, suppress: bool) -> Result<u64, Error> {
        let mut client = self.pool.get().await?;
        let transaction = client.transaction().await?;
        let erased: i64 = transaction
            .query_one(&deleting_counted("contact_id = $1"), &[&contact_id])
            .await?
            .try_get(0)?;
        if suppress {
            transaction
                .execute(
                    "INSERT INTO suppressed_contacts (contact_id) VALUES ($1) ON CONFLICT DO NOTHING",
                    &[&contact_id],
                )
                .await?;
        }
        transaction.commit().await?;
        Ok(erased.unsigned_abs())
    }

    async fn unsuppress_contact(&self, contact_id: &str) -> Result<bool, Error> {
        let client = self.pool.get().await?;
        let removed = client
            .execute(
                "DELETE FROM suppressed_contacts WHERE contact_id = $1",
                &[&contact_id],
            )
            .await?;
        Ok(removed > 0)
    }

    async fn delete_before(&self, cutoff_ms: i64, limit: u32) -> Result<u64, Error> {
        let client = self.pool.get().await?;
        let deleted: i64 = client
            .query_one(
                &deleting_counted(
                    "id IN (SELECT id FROM events WHERE timestamp_ms < $1 ORDER BY timestamp_ms LIMIT $2)",
                ),
                &[&cutoff_ms, &i64::from(limit)],
            )
            .await?
            .try_get(0)?;
        Ok(deleted.unsigned_abs())
    }

    async fn stats(&self, query: StatsQuery) -> Result<Vec<StatsRow>, Error> {
        let client = self.pool.get().await?;
        let mut rows = Vec::new();
        for (sql, params) in page_sql::stats_sql(
            &query,
            &page_sql::Rollups {
                minute: "event_count_deltas",
                hour: None,
            },
        ) {
            let statement = client.prepare_cached(&sql).await?;
            let params = to_sql(params);
            for row in client.query(&statement, &borrowed(&params)).await? {
                rows.push((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?));
            }
        }
        Ok(page_sql::sum_stats(rows))
    }

    async fn event_types(&self) -> Result<Vec<(String, u64)>, Error> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT event_type, SUM(count)::bigint FROM event_count_deltas GROUP BY 1 HAVING SUM(count) > 0 ORDER BY 1",
                &[],
            )
            .await?;
        rows.iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get::<_, i64>(1)?.unsigned_abs())))
            .collect()
    }

    async fn properties(&self, event_type: Option<&str>) -> Result<Properties, Error> {
        discovery::properties(&*self.pool.get().await?, event_type).await
    }

    async fn property_values(
        &self,
        keys: &[String],
        limit: usize,
    ) -> Result<PropertyValues, Error> {
        discovery::values(&*self.pool.get().await?, keys, limit).await
    }

    /// Folds the count deltas of minutes that ended more than two minutes ago into one
    /// row per minute, type and scope, so stats read few rows.
    async fn maintain(&self) -> Result<(), Error> {
        let client = self.pool.get().await?;
        client
            .execute(
                "WITH folded AS (
                     DELETE FROM event_count_deltas
                     WHERE NOT compacted AND minute < (extract(epoch FROM now()) * 1000)::bigint / 60000 - 2
                     RETURNING minute, event_type, scope, count)
                 INSERT INTO event_count_deltas (minute, event_type, scope, count, compacted)
                 SELECT minute, event_type, scope, sum(count)::bigint, true FROM folded GROUP BY 1, 2, 3",
                &[],
            )
            .await?;
        Ok(())
    }

    /// PostgreSQL flushes the WAL of concurrent commits together: several group commits in
    /// flight keep it busy while each waits for its flush. A quarter of the pool, so that
    /// reads always find connections.
    fn appends_in_flight_max(&self) -> usize {
        (self.connections_max / 4).max(1)
    }
}

type SqlValue = Box<dyn ToSql + Sync + Send>;

/// The oldest transaction still running, as a stream position: the events of every
/// transaction before it are committed (or never will be), its own come after.
async fn xmin(client: &deadpool_postgres::Client) -> Result<StreamCursor, Error> {
    let statement = client
        .prepare_cached("SELECT pg_snapshot_xmin(pg_current_snapshot())::text")
        .await?;
    let xmin: String = client.query_one(&statement, &[]).await?.try_get(0)?;
    let commit = xmin
        .parse()
        .map_err(|_| Error::Corrupt(format!("pg_snapshot_xmin {xmin:?}")))?;
    Ok(StreamCursor {
        commit,
        id: Uuid::nil(),
    })
}

fn to_sql(params: Vec<Param>) -> Vec<SqlValue> {
    params
        .into_iter()
        .map(|param| -> SqlValue {
            match param {
                Param::Int(value) => Box::new(value),
                Param::Text(value) => Box::new(value),
                Param::Id(id) => Box::new(id),
            }
        })
        .collect()
}

fn borrowed(values: &[SqlValue]) -> Vec<&(dyn ToSql + Sync)> {
    values
        .iter()
        .map(|value| value.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

pub(crate) fn event_from_row(row: &Row) -> Result<Event, Error> {
    let id: Uuid = row.try_get(0)?;
    let scope: &str = row.try_get(6)?;
    let scope = Scope::parse(scope)
        .ok_or_else(|| Error::Corrupt(format!("event {id}: scope {scope:?}")))?;
    let content: String = row.try_get(7)?;
    let content = RawValue::from_string(content)
        .map_err(|error| Error::Corrupt(format!("event {id}: content: {error}")))?;
    Ok(Event {
        id,
        timestamp_ms: row.try_get(1)?,
        received_at_ms: row.try_get(2)?,
        client_timestamp_ms: row.try_get(3)?,
        event_type: row.try_get(4)?,
        contact_id: row.try_get(5)?,
        scope,
        content,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn event(n: u128) -> Event {
        Event {
            id: Uuid::from_u128(n),
            event_type: "t".to_owned(),
            content: RawValue::from_string("{}".to_owned()).expect("json"),
            contact_id: None,
            scope: Scope::App,
            timestamp_ms: 1,
            received_at_ms: 1,
            client_timestamp_ms: None,
        }
    }

    /// The durability setting reaches every connection, whatever the database's default.
    #[tokio::test]
    async fn durability_sets_synchronous_commit() {
        let url = eventline_testkit::database().await;
        for (durability, expected) in [(Durability::Full, "on"), (Durability::Normal, "off")] {
            let options = PostgresOptions {
                durability,
                ..PostgresOptions::default()
            };
            let store = PostgresStore::connect(&url, &options)
                .await
                .expect("connect");
            let client = store.pool.get().await.expect("connection");
            let row = client
                .query_one("SHOW synchronous_commit", &[])
                .await
                .expect("show");
            assert_eq!(row.get::<_, String>(0), expected);
        }
    }

    /// Servers starting together migrate once, one after another.
    #[tokio::test]
    async fn concurrent_starts_migrate_once() {
        let url = eventline_testkit::database().await;
        let starts: Vec<_> = (0..6)
            .map(|_| {
                let url = url.clone();
                tokio::spawn(async move {
                    PostgresStore::connect(&url, &PostgresOptions::default()).await
                })
            })
            .collect();
        let mut stores = Vec::new();
        for start in starts {
            stores.push(start.await.expect("task").expect("connect"));
        }
        let store = stores.pop().expect("a store");
        let client = store.pool.get().await.expect("connection");
        let versions: Vec<i32> = client
            .query("SELECT version FROM eventline_schema ORDER BY version", &[])
            .await
            .expect("versions")
            .iter()
            .map(|row| row.get(0))
            .collect();
        let expected: Vec<i32> = (1..=MIGRATIONS.len() as i32).collect();
        assert_eq!(versions, expected);
    }

    /// A transaction that started before a commit and ends after it holds that commit
    /// back from streams until it ends; then both come, the older transaction first. A
    /// stream that had moved past the later commit would never see the earlier one.
    #[tokio::test]
    async fn a_running_transaction_holds_later_commits_back_from_streams() {
        let url = eventline_testkit::database().await;
        let store = PostgresStore::connect(&url, &PostgresOptions::default())
            .await
            .expect("connect");
        let start = store.stream_head().await.expect("head");
        let mut slow = store.pool.get().await.expect("connection");
        let slow = slow.transaction().await.expect("begin");
        insert(&slow, &[event(1)]).await.expect("insert");
        store
            .append(vec![Submission {
                events: vec![event(2)],
            }])
            .await
            .expect("append");
        let chunk = store
            .stream(&Filter::default(), start, 10)
            .await
            .expect("stream");
        assert!(chunk.events.is_empty(), "{:?}", chunk.events);
        // A stream starting now must leave out event 2 (committed) and keep event 1.
        let start_now = store.stream_start().await.expect("start");
        slow.commit().await.expect("commit");
        let mut positions = Vec::new();
        let mut ids = Vec::new();
        let mut after = start;
        // Other tests' transactions on the shared cluster may hold both back a moment.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while ids.len() < 2 && tokio::time::Instant::now() < deadline {
            let chunk = store
                .stream(&Filter::default(), after, 10)
                .await
                .expect("stream");
            ids.extend(chunk.events.iter().map(|(_, event)| event.id.as_u128()));
            positions.extend(chunk.events.iter().map(|(position, _)| *position));
            after = chunk.upto;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        assert_eq!(ids, [1, 2]);
        assert!(!start_now.committed_before(positions[0]), "{start_now:?}");
        assert!(start_now.committed_before(positions[1]), "{start_now:?}");
        assert!(
            positions
                .iter()
                .all(|position| *position > start_now.position)
        );
    }

    async fn explain(client: &deadpool_postgres::Client, sql: &str, params: Vec<Param>) -> String {
        let params = to_sql(params);
        let plan: Vec<String> = client
            .query(&format!("EXPLAIN (COSTS OFF) {sql}"), &borrowed(&params))
            .await
            .expect("explain")
            .iter()
            .map(|row| row.get(0))
            .collect();
        plan.join("\n")
    }

    /// Regressions (found by the fault harness): group commits inserting the same ids in
    /// different orders deadlocked; and groups that lost the insert race for an id
    /// another group stored meanwhile were rolled back and decided again, until a group
    /// that lost five times in a row failed. Either way requests got 503s.
    #[tokio::test]
    async fn concurrent_groups_with_the_same_ids_all_commit() {
        let url = eventline_testkit::database().await;
        let store = Arc::new(
            PostgresStore::connect(&url, &PostgresOptions::default())
                .await
                .expect("connect"),
        );
        for round in 0..20u128 {
            let groups: Vec<_> = (0..12)
                .map(|group| {
                    let store = Arc::clone(&store);
                    // The same 40 ids, each group in another order.
                    let mut ids: Vec<u128> = (0..40).map(|n| round * 100 + n).collect();
                    if group % 2 == 1 {
                        ids.reverse();
                    }
                    ids.rotate_left((group * 7) % 40);
                    let submissions = ids
                        .into_iter()
                        .map(|n| Submission {
                            events: vec![event(n)],
                        })
                        .collect();
                    tokio::spawn(async move { store.append(submissions).await })
                })
                .collect();
            let mut stored = 0;
            for group in groups {
                let outcomes = group.await.expect("task").expect("committed");
                stored += outcomes
                    .iter()
                    .map(|outcome| match outcome {
                        Outcome::Stored(appended) => {
                            appended.iter().filter(|entry| !entry.replayed()).count()
                        }
                        _ => panic!("{outcome:?}"),
                    })
                    .sum::<usize>();
            }
            assert_eq!(stored, 40, "each id stored by exactly one group");
        }
        // Losing an insert race to the same event is a replay, not a reason to start over.
        assert_eq!(
            store
                .groups_redone
                .load(std::sync::atomic::Ordering::Relaxed),
            0
        );
    }

    /// Each query shape can read its own index in page order: no sort. Scans and sorts
    /// are priced out, since PostgreSQL rightly prefers them on a table this small: the
    /// plan left is the one it takes on a large table.
    #[tokio::test]
    async fn every_query_shape_uses_an_index_in_page_order() {
        let url = eventline_testkit::database().await;
        let store = PostgresStore::connect(&url, &PostgresOptions::default())
            .await
            .expect("connect");
        let client = store.pool.get().await.expect("connection");
        client
            .batch_execute(
                "SET enable_seqscan = off; SET enable_bitmapscan = off; SET enable_sort = off",
            )
            .await
            .expect("set");
        for (query, index) in page_sql::query_shapes() {
            let (sql, params) = page_sql::page_sql(&query, EVENT_COLUMNS);
            let plan = explain(&client, &sql, params).await;
            assert!(
                plan.contains(index),
                "{query:?} should use {index}:\n{plan}"
            );
            let nodes = |name: &str| {
                plan.lines()
                    .filter(|line| line.trim().trim_start_matches("->").trim() == name)
                    .count()
            };
            // Several types: each range cut at the page's end, then merged.
            let types = query.filter.event_types.len();
            let cut_ranges = if types > 1 { types } else { 0 };
            assert_eq!(nodes("Limit"), 1 + cut_ranges, "{query:?}:\n{plan}");
            assert_eq!(nodes("Sort"), 0, "{query:?} sorts:\n{plan}");
        }
        // A content equality is looked up in the GIN index, under `not` and `or` too: a
        // needle is then found without reading the window.
        client
            .batch_execute(
                "SET enable_sort = on; SET enable_bitmapscan = on; SET enable_indexscan = off",
            )
            .await
            .expect("set");
        for node in [
            serde_json::json!({"path": "store", "value": "x"}),
            serde_json::json!([{"path": "store", "op": "in", "value": ["x", "y"]}, {"path": "n", "op": "gt", "value": 3}]),
            serde_json::json!({"or": [{"path": "store", "value": "x"}, {"path": "plan", "value": "pro"}]}),
        ] {
            let query = PageQuery {
                filter: eventline_core::query::Filter {
                    content: Some(
                        eventline_core::content_filter::from_json(&node).expect("a filter"),
                    ),
                    ..Default::default()
                },
                order: eventline_core::query::Order::Asc,
                start: eventline_core::query::Start::First,
                limit: 50,
            };
            let (sql, params) = page_sql::page_sql(&query, EVENT_COLUMNS);
            let plan = explain(&client, &sql, params).await;
            assert!(plan.contains("events_content"), "{node}:\n{plan}");
        }
        client
            .batch_execute(
                "SET enable_indexscan = on; SET enable_bitmapscan = off; SET enable_sort = off",
            )
            .await
            .expect("set");
        // The stream reads the commit index in order, whatever the filter.
        for (query, _) in page_sql::query_shapes() {
            let after = StreamCursor {
                commit: 3,
                id: Uuid::nil(),
            };
            let (sql, params) = page_sql::stream_sql(&query.filter, after, 9, 100, EVENT_COLUMNS);
            let plan = explain(&client, &sql, params).await;
            assert!(plan.contains("events_by_commit"), "{query:?}:\n{plan}");
            assert!(!plan.contains("Sort"), "{query:?} sorts:\n{plan}");
        }
    }
}
