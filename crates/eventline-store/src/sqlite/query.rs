//! Pages in SQL: keyset pagination on (timestamp_ms, id) over the index that fits the
//! filter.

use eventline_core::cursor::Cursor;
use eventline_core::query::{Filter, Order, Page, PageQuery, Start};
use rusqlite::Connection;
use rusqlite::types::Value;

use super::{EVENT_COLUMNS, event_from_row, row_values};
use crate::Error;

pub(super) fn page(connection: &Connection, query: &PageQuery) -> Result<Page, Error> {
    let (sql, values) = page_sql(query);
    let mut statement = connection.prepare_cached(&sql)?;
    let rows = statement.query_map(rusqlite::params_from_iter(values), row_values)?;
    let mut events = Vec::with_capacity(query.limit as usize + 1);
    for row in rows {
        events.push(event_from_row(row?)?);
    }
    // One row more than the page was asked for tells whether another page exists.
    let next = if events.len() > query.limit as usize {
        events.truncate(query.limit as usize);
        events.last().map(|event| Cursor {
            timestamp_ms: event.timestamp_ms,
            id: event.id,
        })
    } else {
        None
    };
    Ok(Page { events, next })
}

/// The page's SQL and its parameters.
///
/// Several event types without a contact are read as one ordered range per type, merged
/// lazily (SQLite's `MERGE (UNION ALL)`): a range scan of the type index each that stops
/// at the page's end, instead of a sort of every matching event.
fn page_sql(query: &PageQuery) -> (String, Vec<Value>) {
    let direction = match query.order {
        Order::Asc => "ASC",
        Order::Desc => "DESC",
    };
    let fetch = i64::from(query.limit) + 1;
    let skip = match query.start {
        Start::Skip(skip) => i64::try_from(skip).unwrap_or(i64::MAX),
        _ => 0,
    };
    let order_by = format!("ORDER BY timestamp_ms {direction}, id {direction}");
    let mut values = Vec::new();
    let sql = if query.filter.event_types.len() > 1 && query.filter.contact_id.is_none() {
        let parts: Vec<String> = query
            .filter
            .event_types
            .iter()
            .map(|event_type| {
                let mut conditions = conditions(&query.filter, query, &mut values);
                conditions.push("event_type = ?".to_owned());
                values.push(Value::Text(event_type.clone()));
                format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE {}",
                    conditions.join(" AND ")
                )
            })
            .collect();
        format!("{} {order_by} LIMIT ? OFFSET ?", parts.join(" UNION ALL "))
    } else {
        let mut conditions = conditions(&query.filter, query, &mut values);
        match query.filter.event_types.as_slice() {
            [] => {}
            [event_type] => {
                conditions.push("event_type = ?".to_owned());
                values.push(Value::Text(event_type.clone()));
            }
            event_types => {
                let marks = vec!["?"; event_types.len()].join(", ");
                conditions.push(format!("event_type IN ({marks})"));
                values.extend(event_types.iter().cloned().map(Value::Text));
            }
        }
        format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE {} {order_by} LIMIT ? OFFSET ?",
            conditions.join(" AND ")
        )
    };
    values.push(Value::Integer(fetch));
    values.push(Value::Integer(skip));
    (sql, values)
}

/// Every condition but the event types, with its values appended to `values`.
fn conditions(filter: &Filter, query: &PageQuery, values: &mut Vec<Value>) -> Vec<String> {
    let mut conditions = vec!["1".to_owned()];
    if let Some(since_ms) = filter.since_ms {
        conditions.push("timestamp_ms >= ?".to_owned());
        values.push(Value::Integer(since_ms));
    }
    if let Some(until_ms) = filter.until_ms {
        conditions.push("timestamp_ms < ?".to_owned());
        values.push(Value::Integer(until_ms));
    }
    if let Some(contact_id) = &filter.contact_id {
        conditions.push("contact_id = ?".to_owned());
        values.push(Value::Text(contact_id.clone()));
    }
    if let Some(scope) = filter.scope {
        conditions.push("scope = ?".to_owned());
        values.push(Value::Text(scope.as_str().to_owned()));
    }
    if let Start::After(cursor) = query.start {
        let comparison = match query.order {
            Order::Asc => ">",
            Order::Desc => "<",
        };
        conditions.push(format!("(timestamp_ms, id) {comparison} (?, ?)"));
        values.push(Value::Integer(cursor.timestamp_ms));
        values.push(Value::Blob(cursor.id.as_bytes().to_vec()));
    }
    conditions
}

#[cfg(test)]
pub(super) fn plan(connection: &Connection, query: &PageQuery) -> String {
    let (sql, values) = page_sql(query);
    let mut statement = connection
        .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
        .expect("plan");
    let rows = statement
        .query_map(rusqlite::params_from_iter(values), |row| {
            row.get::<_, String>(3)
        })
        .expect("plan rows");
    rows.map(|row| row.expect("plan row"))
        .collect::<Vec<_>>()
        .join("\n")
}
