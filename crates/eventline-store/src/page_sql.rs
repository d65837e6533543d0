//! The SQL of a page, for both stores: keyset pagination on (timestamp_ms, id) over the
//! index that fits the filter. Only the placeholders and the id's type differ.

use eventline_core::cursor::Cursor;
use eventline_core::event::Event;
use eventline_core::query::{Order, Page, PageQuery, Start};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// `?` placeholders, bound in order.
    Sqlite,
    /// `$1`, `$2`… placeholders.
    Postgres,
}

/// A value bound to a placeholder.
#[derive(Debug, Clone)]
pub(crate) enum Param {
    Int(i64),
    Text(String),
    Id(Uuid),
}

struct Sql {
    dialect: Dialect,
    params: Vec<Param>,
}

impl Sql {
    /// Binds `param` and returns its placeholder.
    fn bind(&mut self, param: Param) -> String {
        self.params.push(param);
        match self.dialect {
            Dialect::Sqlite => "?".to_owned(),
            Dialect::Postgres => format!("${}", self.params.len()),
        }
    }
}

/// The page's SQL (reading `columns` from `events`) and its parameters.
///
/// Several event types without a contact are read as one ordered range per type: a range
/// scan of the type index each that stops at the page's end, instead of a sort of every
/// matching event, merged lazily: SQLite's `MERGE (UNION ALL)`, PostgreSQL's
/// `Merge Append`. PostgreSQL merges only ranges that are ordered subqueries, so there
/// each range is its own `ORDER BY … LIMIT`, cut at the page's end.
pub(crate) fn page_sql(query: &PageQuery, columns: &str, dialect: Dialect) -> (String, Vec<Param>) {
    let mut sql = Sql {
        dialect,
        params: Vec::new(),
    };
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
                match dialect {
                    Dialect::Sqlite => branch,
                    Dialect::Postgres => {
                        let cut = sql.bind(Param::Int(fetch.saturating_add(skip)));
                        format!("({branch} {order_by} LIMIT {cut})")
                    }
                }
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
            event_types => {
                let marks: Vec<String> = event_types
                    .iter()
                    .map(|event_type| sql.bind(Param::Text(event_type.clone())))
                    .collect();
                conditions.push(format!("event_type IN ({})", marks.join(", ")));
            }
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
    let filter = &query.filter;
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
        conditions.push(format!(
            "scope = {}",
            sql.bind(Param::Text(scope.as_str().to_owned()))
        ));
    }
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

/// The page from the rows of `page_sql`: one row more than `limit` means another page
/// exists, and the cursor is the last event shown.
pub(crate) fn into_page(mut events: Vec<Event>, limit: u32) -> Page {
    let limit = limit as usize;
    let next = if events.len() > limit {
        events.truncate(limit);
        events.last().map(|event| Cursor {
            timestamp_ms: event.timestamp_ms,
            id: event.id,
        })
    } else {
        None
    };
    Page { events, next }
}

/// Every query shape, in both orders, with and without a cursor, and the index each
/// should read: the cases of both stores' query-plan tests.
#[cfg(test)]
pub(crate) fn query_shapes() -> Vec<(PageQuery, &'static str)> {
    use eventline_core::query::Filter;

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
    let after = Start::After(Cursor {
        timestamp_ms: 5,
        id: Uuid::nil(),
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
