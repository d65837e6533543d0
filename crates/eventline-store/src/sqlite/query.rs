//! Pages from SQLite, with the SQL shared with PostgreSQL (`page_sql`).

use eventline_core::query::{Page, PageQuery};
use rusqlite::Connection;
use rusqlite::types::Value;

use super::{EVENT_COLUMNS, event_from_row, row_values};
use crate::Error;
use crate::page_sql::{self, Dialect, Param};

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
