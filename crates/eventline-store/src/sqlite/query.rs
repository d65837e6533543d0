//! Pages from SQLite, with the SQL shared with PostgreSQL (`page_sql`).

use eventline_core::cursor::StreamCursor;
use eventline_core::query::{Filter, Page, PageQuery};
use rusqlite::Connection;
use rusqlite::types::Value;

use super::{EVENT_COLUMNS, SEQ_HEAD_SQL, event_from_row, row_values};
use crate::page_sql::{self, Dialect, Param};
use crate::{Error, StreamChunk};

pub(super) fn page(connection: &Connection, query: &PageQuery) -> Result<Page, Error> {
    let (sql, values) = page_sql(query);
    let mut statement = connection.prepare_cached(&sql)?;
    let rows = statement.query_map(rusqlite::params_from_iter(values), row_values)?;
    let mut events = Vec::with_capacity(query.limit as usize + 1);
    for row in rows {
        events.push(event_from_row(row?)?);
    }
    Ok(page_sql::into_page(events, query.limit))
}

/// `page_sql::seq_position` of SQLite's signed `seq`.
pub(super) fn seq_position(seq: i64) -> StreamCursor {
    page_sql::seq_position(u64::try_from(seq).unwrap_or(0))
}

/// Reads the head and the events up to it in one transaction: one snapshot, so the head
/// is exact.
pub(super) fn stream(
    connection: &Connection,
    filter: &Filter,
    after: StreamCursor,
    limit: u32,
) -> Result<StreamChunk, Error> {
    let transaction = connection.unchecked_transaction()?;
    let head = seq_position(transaction.query_row(SEQ_HEAD_SQL, [], |row| row.get(0))?);
    let (sql, params) = page_sql::stream_sql(
        filter,
        after,
        head.commit,
        limit,
        EVENT_COLUMNS,
        Dialect::Sqlite,
    );
    let mut statement = transaction.prepare_cached(&sql)?;
    let rows = statement.query_map(
        rusqlite::params_from_iter(params.into_iter().map(sql_value)),
        |row| Ok((row.get::<_, i64>(9)?, row_values(row)?)),
    )?;
    let mut events = Vec::new();
    for row in rows {
        let (seq, values) = row?;
        events.push((seq_position(seq), event_from_row(values)?));
    }
    drop(statement);
    transaction.finish()?;
    Ok(page_sql::into_stream_chunk(events, limit, after, head))
}

/// The SQLite form of the shared page SQL.
fn page_sql(query: &PageQuery) -> (String, Vec<Value>) {
    let (sql, params) = page_sql::page_sql(query, EVENT_COLUMNS, Dialect::Sqlite);
    (sql, params.into_iter().map(sql_value).collect())
}

/// A shared SQL parameter as SQLite takes it.
pub(super) fn sql_value(param: Param) -> Value {
    match param {
        Param::Int(value) => Value::Integer(value),
        Param::Text(value) => Value::Text(value),
        Param::Id(id) => Value::Blob(id.as_bytes().to_vec()),
    }
}

#[cfg(test)]
pub(super) fn plan(connection: &Connection, query: &PageQuery) -> String {
    let (sql, values) = page_sql(query);
    explain_values(connection, &sql, values)
}

#[cfg(test)]
pub(super) fn explain(connection: &Connection, sql: &str, params: Vec<Param>) -> String {
    explain_values(connection, sql, params.into_iter().map(sql_value).collect())
}

#[cfg(test)]
fn explain_values(connection: &Connection, sql: &str, values: Vec<Value>) -> String {
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
