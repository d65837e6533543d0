//! The SQL of the PostgreSQL store's reads: keyset pagination on (timestamp_ms, id) over
//! the index that fits the filter, reads in commit order, and stats over the parts
//! `eventline_core::stats::stats_parts` splits a window into.

use eventline_core::cursor::StreamCursor;
use eventline_core::event::Event;
use eventline_core::query::{Filter, Order, PageQuery, Start};
use eventline_core::stats::{StatsPart, stats_parts};

use crate::content_sql::content_condition;
use crate::sql::{Param, Sql};

/// The page's SQL (reading `columns` from `events`) and its parameters.
///
/// Several event types without a contact are read as one ordered range per type: a range
/// scan of the type index each that stops at the page's end, instead of a sort of every
/// matching event, merged lazily (`Merge Append`). PostgreSQL merges only ranges that are
/// ordered subqueries, so each range is its own `ORDER BY … LIMIT`, cut at the page's end.
pub(crate) fn page_sql(query: &PageQuery, columns: &str) -> (String, Vec<Param>) {
    let mut sql = Sql::default();
    let direction = match query.order {
        Order::Asc => "ASC",
        Order::Desc => "DESC",
    };
    let order_by = format!("ORDER BY timestamp_ms {direction}, id {direction}");
    let event_types = &query.filter.event_types;
    let fetch = i64::from(query.limit) + 1;
    let skip = match query.start {
        Start::Skip(skip) => i64::try_from(skip).unwrap_or(i64::MAX),
        _ => 0,
    };
    let body = if event_types.len() > 1 && query.filter.contact_id.is_none() {
        let parts: Vec<String> = event_types
            .iter()
            .map(|event_type| {
                let mut conditions = conditions(query, &mut sql);
                conditions.push(format!(
                    "event_type = {}",
                    sql.bind(Param::Text(event_type.clone()))
                ));
                let branch = format!(
                    "SELECT {columns} FROM events WHERE {}",
                    conditions.join(" AND ")
                );
                let cut = sql.bind(Param::Int(fetch.saturating_add(skip)));
                format!("({branch} {order_by} LIMIT {cut})")
            })
            .collect();
        format!("{} {order_by}", parts.join(" UNION ALL "))
    } else {
        let mut conditions = conditions(query, &mut sql);
        match event_types.as_slice() {
            [] => {}
            [event_type] => {
                conditions.push(format!(
                    "event_type = {}",
                    sql.bind(Param::Text(event_type.clone()))
                ));
            }
            event_types => conditions.extend(event_types_condition(event_types, &mut sql)),
        }
        format!(
            "SELECT {columns} FROM events WHERE {} {order_by}",
            conditions.join(" AND ")
        )
    };
    // One row more than the page tells whether another page exists.
    let fetch = sql.bind(Param::Int(fetch));
    let skip = sql.bind(Param::Int(skip));
    (format!("{body} LIMIT {fetch} OFFSET {skip}"), sql.params)
}

/// Every condition but the event types.
fn conditions(query: &PageQuery, sql: &mut Sql) -> Vec<String> {
    let mut conditions = filter_conditions(&query.filter, sql);
    if let Start::After(cursor) = query.start {
        let comparison = match query.order {
            Order::Asc => ">",
            Order::Desc => "<",
        };
        let timestamp = sql.bind(Param::Int(cursor.timestamp_ms));
        let id = sql.bind(Param::Id(cursor.id));
        conditions.push(format!(
            "(timestamp_ms, id) {comparison} ({timestamp}, {id})"
        ));
    }
    conditions
}

/// The filter's conditions but the event types.
fn filter_conditions(filter: &Filter, sql: &mut Sql) -> Vec<String> {
    let mut conditions = vec!["TRUE".to_owned()];
    if let Some(since_ms) = filter.since_ms {
        conditions.push(format!(
            "timestamp_ms >= {}",
            sql.bind(Param::Int(since_ms))
        ));
    }
    if let Some(until_ms) = filter.until_ms {
        conditions.push(format!("timestamp_ms < {}", sql.bind(Param::Int(until_ms))));
    }
    if let Some(contact_id) = &filter.contact_id {
        conditions.push(format!(
            "contact_id = {}",
            sql.bind(Param::Text(contact_id.clone()))
        ));
    }
    if let Some(scope) = filter.scope {
        conditions.push(scope_condition(scope, sql));
    }
    if let Some(content) = &filter.content {
        conditions.push(content_condition(content, sql));
    }
    conditions
}

fn scope_condition(scope: eventline_core::event::Scope, sql: &mut Sql) -> String {
    format!(
        "scope = {}",
        sql.bind(Param::Text(scope.as_str().to_owned()))
    )
}

/// `event_type IN (…)`, or nothing for every type.
fn event_types_condition(event_types: &[String], sql: &mut Sql) -> Option<String> {
    if event_types.is_empty() {
        return None;
    }
    let marks: Vec<String> = event_types
        .iter()
        .map(|event_type| sql.bind(Param::Text(event_type.clone())))
        .collect();
    Some(format!("event_type IN ({})", marks.join(", ")))
}

/// The SQL of a read in commit order: the events matching `filter` after `after` and up
/// to `head`, at most `limit`, each row `columns` then its commit position.
///
/// The commit position is `commit_xid` (the writing transaction; its events are ordered
/// by id), bound as text since the driver has no `xid8` type.
pub(crate) fn stream_sql(
    filter: &Filter,
    after: StreamCursor,
    head: u64,
    limit: u32,
    columns: &str,
) -> (String, Vec<Param>) {
    let mut sql = Sql::default();
    let mut conditions = filter_conditions(filter, &mut sql);
    conditions.extend(event_types_condition(&filter.event_types, &mut sql));
    let after_commit = sql.bind(Param::Text(after.commit.to_string()));
    let after_id = sql.bind(Param::Id(after.id));
    let head = sql.bind(Param::Text(head.to_string()));
    conditions.push(format!(
        "(commit_xid, id) > ({after_commit}::text::xid8, {after_id}) AND commit_xid < {head}::text::xid8"
    ));
    let limit = sql.bind(Param::Int(i64::from(limit)));
    (
        // The position named apart: `ORDER BY commit_xid` would sort by the text.
        format!(
            "SELECT {columns}, commit_xid::text AS commit_position FROM events WHERE {} ORDER BY commit_xid, id LIMIT {limit}",
            conditions.join(" AND ")
        ),
        sql.params,
    )
}

/// Every query shape, in both orders, with and without a cursor, and the index each
/// should read: the cases of both stores' query-plan tests.
#[cfg(test)]
pub(crate) fn query_shapes() -> Vec<(PageQuery, &'static str)> {
    let window = Filter {
        since_ms: Some(1),
        until_ms: Some(9),
        ..Filter::default()
    };
    let with_types = |types: &[&str]| Filter {
        event_types: types.iter().map(|name| (*name).to_owned()).collect(),
        ..window.clone()
    };
    let filters = [
        (window.clone(), "events_by_time"),
        (
            Filter {
                contact_id: Some("c".to_owned()),
                ..window.clone()
            },
            "events_by_contact",
        ),
        (with_types(&["a"]), "events_by_type"),
        (with_types(&["a", "b"]), "events_by_type"),
    ];
    let after = Start::After(eventline_core::cursor::Cursor {
        timestamp_ms: 5,
        id: uuid::Uuid::nil(),
    });
    let mut shapes = Vec::new();
    for (filter, index) in filters {
        for order in [Order::Asc, Order::Desc] {
            for start in [Start::First, after] {
                let query = PageQuery {
                    filter: filter.clone(),
                    order,
                    start,
                    limit: 50,
                };
                shapes.push((query, index));
            }
        }
    }
    shapes
}

/// The count tables a stats request reads instead of the events.
pub(crate) struct Rollups<'a> {
    /// Counts per minute (`minute`, `event_type`, `scope`, `count`).
    pub minute: &'a str,
    /// Counts per hour (`hour`, …), when the store keeps them.
    pub hour: Option<&'a str>,
}

/// The queries of a stats request, one per part of
/// [`stats_parts`](eventline_core::stats::stats_parts); each returns rows of (bucket start ms, event type, count), and the
/// caller sums them.
pub(crate) fn stats_sql(
    query: &eventline_core::stats::StatsQuery,
    rollups: &Rollups<'_>,
) -> Vec<(String, Vec<Param>)> {
    let filter = &query.filter;
    let bucket_ms = query.bucket.ms();
    let events_part = |from_ms: i64, to_ms: i64| {
        let (mut sql, bucket, bucket_again) = bucketed(bucket_ms);
        let mut conditions = vec![
            format!("timestamp_ms >= {}", sql.bind(Param::Int(from_ms))),
            format!("timestamp_ms < {}", sql.bind(Param::Int(to_ms))),
        ];
        if let Some(contact_id) = &filter.contact_id {
            conditions.push(format!(
                "contact_id = {}",
                sql.bind(Param::Text(contact_id.clone()))
            ));
        }
        stats_conditions(filter, &mut sql, &mut conditions);
        // Only the events know their content: counts are never read with it (`stats_parts`).
        if let Some(content) = &filter.content {
            conditions.push(content_condition(content, &mut sql));
        }
        (
            format!(
                "SELECT (timestamp_ms / {bucket}) * {bucket_again}, event_type, COUNT(*) FROM events \
                 WHERE {} GROUP BY 1, 2",
                conditions.join(" AND ")
            ),
            sql.params,
        )
    };
    // Counts of `table`, whose key column `unit` counts `unit_ms` each, over [from, to).
    let rollup_part = |table: &str, unit: &str, unit_ms: i64, from: i64, to: i64| {
        let (mut sql, bucket, bucket_again) = bucketed(bucket_ms);
        let mut conditions = vec![
            format!("{unit} >= {}", sql.bind(Param::Int(from))),
            format!("{unit} < {}", sql.bind(Param::Int(to))),
        ];
        stats_conditions(filter, &mut sql, &mut conditions);
        (
            format!(
                "SELECT (({unit} * {unit_ms}) / {bucket}) * {bucket_again}, event_type, SUM(count)::bigint \
                 FROM {table} WHERE {} GROUP BY 1, 2",
                conditions.join(" AND ")
            ),
            sql.params,
        )
    };
    stats_parts(query, rollups.hour.is_some())
        .into_iter()
        .map(|part| match part {
            StatsPart::Events { from_ms, to_ms } => events_part(from_ms, to_ms),
            StatsPart::Minutes { from_ms, to_ms } => rollup_part(
                rollups.minute,
                "minute",
                60_000,
                from_ms / 60_000,
                to_ms / 60_000,
            ),
            StatsPart::Hours { from_ms, to_ms } => match rollups.hour {
                Some(hourly) => rollup_part(
                    hourly,
                    "hour",
                    3_600_000,
                    from_ms / 3_600_000,
                    to_ms / 3_600_000,
                ),
                // Only asked with hourly counts; the minutes of the same hours count the same.
                None => rollup_part(
                    rollups.minute,
                    "minute",
                    60_000,
                    from_ms / 60_000,
                    to_ms / 60_000,
                ),
            },
        })
        .collect()
}

/// A statement's binder with the bucket width bound twice (`(t / B) * B`): the binder
/// and the two placeholders.
fn bucketed(bucket_ms: i64) -> (Sql, String, String) {
    let mut sql = Sql::default();
    let bucket = sql.bind(Param::Int(bucket_ms));
    let bucket_again = sql.bind(Param::Int(bucket_ms));
    (sql, bucket, bucket_again)
}

fn stats_conditions(filter: &Filter, sql: &mut Sql, conditions: &mut Vec<String>) {
    if let Some(scope) = filter.scope {
        conditions.push(scope_condition(scope, sql));
    }
    conditions.extend(event_types_condition(&filter.event_types, sql));
}

/// Sums the rows of the stats queries into one count per (bucket, type), dropping empty
/// ones, in bucket then type order.
pub(crate) fn sum_stats(
    rows: impl IntoIterator<Item = (i64, String, i64)>,
) -> Vec<eventline_core::stats::StatsRow> {
    let mut sums: std::collections::BTreeMap<(i64, String), i64> =
        std::collections::BTreeMap::new();
    for (start_ms, event_type, count) in rows {
        *sums.entry((start_ms, event_type)).or_default() += count;
    }
    sums.into_iter()
        .filter(|(_, count)| *count > 0)
        .map(
            |((start_ms, event_type), count)| eventline_core::stats::StatsRow {
                start_ms,
                event_type,
                count: count as u64,
            },
        )
        .collect()
}

/// The count rows that `events` add: how many per minute, event type and scope. Both
/// stores add them to their counts in the transaction that stores the events.
pub(crate) fn counts_per_minute<'a>(
    events: impl IntoIterator<Item = &'a Event>,
) -> std::collections::BTreeMap<(i64, &'a str, &'a str), i64> {
    let mut counts = std::collections::BTreeMap::new();
    for event in events {
        let key = (
            event.timestamp_ms.div_euclid(60_000),
            event.event_type.as_str(),
            event.scope.as_str(),
        );
        *counts.entry(key).or_default() += 1;
    }
    counts
}
