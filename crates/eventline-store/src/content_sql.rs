//! The SQL of content filters (`eventline_core::content_filter`) on the `content` jsonb
//! column: one expression per filter tree, true exactly where
//! `ContentFilter::matches` is.
//!
//! The value at a path is `content -> $1 -> $2 …`: each key is bound as text, so `->`
//! looks up an object member and never indexes an array, as the filter's paths do. A
//! missing value is SQL `NULL`, so every condition is wrapped in `COALESCE(…, false)`:
//! under `NOT`, a `NULL` would drop the row instead of keeping it. Equality goes through
//! jsonb's `=`, which compares numbers by value and objects member by member, as
//! `json_equal` does; it is paired with a containment (`content @> …`) that every equal
//! value satisfies, outside the `COALESCE` so that the GIN index on `content`
//! (`jsonb_path_ops`, `postgres/content.sql`) serves it: a needle among 1,000,000 events
//! went from 1,207 ms to 2.0 ms (`docs/performance.md`).

use eventline_core::content_filter::{Condition, ContentFilter, Op, Test};
use serde_json::Value;

use crate::sql::{Param, Sql};

/// More values than this in one `eq`/`in` are not spelled out as containments: the
/// planner's time grows with each.
const CONTAINMENTS_MAX: usize = 64;

/// The expression for `filter`.
pub(crate) fn content_condition(filter: &ContentFilter, sql: &mut Sql) -> String {
    match filter {
        ContentFilter::Condition(condition) => match containments(condition, sql) {
            // Outside `COALESCE`, where the planner sees it and a GIN index serves it:
            // a containment is never `NULL`, so it needs no wrapping, even under `NOT`.
            Some(containments) => format!(
                "({containments}) AND COALESCE({}, false)",
                condition_sql(condition, sql)
            ),
            None => format!("COALESCE({}, false)", condition_sql(condition, sql)),
        },
        ContentFilter::And(all) => join(all, " AND ", "TRUE", sql),
        ContentFilter::Or(any) => join(any, " OR ", "FALSE", sql),
        ContentFilter::Not(inner) => format!("NOT ({})", content_condition(inner, sql)),
    }
}

fn join(filters: &[ContentFilter], operator: &str, empty: &str, sql: &mut Sql) -> String {
    if filters.is_empty() {
        return empty.to_owned();
    }
    let parts: Vec<String> = filters
        .iter()
        .map(|filter| format!("({})", content_condition(filter, sql)))
        .collect();
    // Parenthesized whole: the caller joins it to other conditions with AND.
    format!("({})", parts.join(operator))
}

/// For an `eq` or `in` of at most `CONTAINMENTS_MAX` values, a containment each value
/// satisfies (`content @> '{"store": "x"}'`), joined with OR: what a GIN index on
/// `content` (`jsonb_path_ops`) serves.
fn containments(condition: &Condition, sql: &mut Sql) -> Option<String> {
    let Test::OneOf(values) = &condition.test else {
        return None;
    };
    if values.is_empty() || values.len() > CONTAINMENTS_MAX {
        return None;
    }
    let containments: Vec<String> = values
        .iter()
        .map(|value| {
            let nested = nest(&condition.path, value.clone());
            format!(
                "content @> {}::text::jsonb",
                sql.bind(Param::Text(nested.to_string()))
            )
        })
        .collect();
    Some(containments.join(" OR "))
}

fn condition_sql(condition: &Condition, sql: &mut Sql) -> String {
    // `in []` holds nowhere; nothing is bound, since a placeholder no SQL uses has no type.
    if matches!(&condition.test, Test::OneOf(values) if values.is_empty()) {
        return "false".to_owned();
    }
    let keys: Vec<String> = condition
        .path
        .iter()
        .map(|key| format!(" -> {}::text", sql.bind(Param::Text(key.clone()))))
        .collect();
    let value = format!("(content{})", keys.concat());
    let string_of = |value: &str| format!("({value} #>> '{{}}')");
    match &condition.test {
        Test::OneOf(values) => one_of(&value, values, sql),
        Test::NoneOf(values) => {
            format!(
                "({value} IS NOT NULL AND NOT {})",
                one_of(&value, values, sql)
            )
        }
        Test::Number(op, bound) => {
            let bound = sql.bind(Param::Text(bound.to_string()));
            format!(
                "(CASE WHEN jsonb_typeof({value}) = 'number' THEN {value}::numeric {} {bound}::text::numeric ELSE false END)",
                comparison(*op)
            )
        }
        Test::Text(op, bound) => {
            let bound = sql.bind(Param::Text(bound.clone()));
            format!(
                "(CASE WHEN jsonb_typeof({value}) = 'string' THEN {} COLLATE \"C\" {} {bound} ELSE false END)",
                string_of(&value),
                comparison(*op)
            )
        }
        Test::Exists(true) => format!("({value} IS NOT NULL)"),
        Test::Exists(false) => format!("({value} IS NULL)"),
        Test::Contains { text, members } => {
            let in_string = match text {
                Some(text) => format!(
                    "strpos({}, {}) > 0",
                    string_of(&value),
                    sql.bind(Param::Text(text.clone()))
                ),
                None => "false".to_owned(),
            };
            let member = one_of("member.value", members, sql);
            format!(
                "(CASE jsonb_typeof({value}) WHEN 'string' THEN {in_string} \
                 WHEN 'array' THEN EXISTS (SELECT 1 FROM jsonb_array_elements({value}) AS member WHERE {member}) \
                 ELSE false END)"
            )
        }
        // Lowercased under ICU's root collation, as `content_filter::fold` does.
        Test::ContainsFolded(folded) => format!(
            "(CASE WHEN jsonb_typeof({value}) = 'string' THEN strpos(lower({} COLLATE \"und-x-icu\"), {}) > 0 ELSE false END)",
            string_of(&value),
            sql.bind(Param::Text(folded.clone()))
        ),
    }
}

/// `value IN (v1::jsonb, …)`.
fn one_of(value: &str, values: &[Value], sql: &mut Sql) -> String {
    if values.is_empty() {
        return "false".to_owned();
    }
    let marks: Vec<String> = values
        .iter()
        .map(|value| format!("{}::text::jsonb", sql.bind(Param::Text(value.to_string()))))
        .collect();
    format!("({value} IN ({}))", marks.join(", "))
}

/// `{"k1": {"k2": value}}` for the path `k1.k2`.
fn nest(path: &[String], value: Value) -> Value {
    path.iter().rev().fold(value, |inner, key| {
        Value::Object(serde_json::Map::from_iter([(key.clone(), inner)]))
    })
}

fn comparison(op: Op) -> &'static str {
    match op {
        Op::Gt => ">",
        Op::Gte => ">=",
        Op::Lt => "<",
        Op::Lte => "<=",
        // Only ranges are compared so; the parser makes no other `Number` or `Text` test.
        _ => "=",
    }
}
