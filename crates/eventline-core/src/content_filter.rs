//! Content filters (SPEC §8): conditions on the values inside an event's `content`,
//! parsed once, from the URL form (`content.PATH[op]=V`) or the JSON form (`where`), and
//! matched the same way by every read of every store.
//!
//! The two forms differ only in how a value compares. The URL form's value is text: it
//! equals a string with that text, or a number, `true`, `false` or `null` whose JSON text
//! it is (`content.total=42` matches `42`, `42.0` and `"42"`). The JSON form's value is
//! typed: the string `"42"` does not equal the number `42`. Both are reduced here to one
//! model: a text value `V` becomes the set of JSON values it stands for
//! ([`text_candidates`]), so every store compares JSON values with JSON values only.
//!
//! Numbers compare by value (`42` equals `42.0`): integers exactly, others as `f64`.

use std::cmp::Ordering;

use serde_json::{Map, Number, Value};

use crate::param::ParamError;

/// Conditions in one request, counted over the whole tree.
pub const CONDITIONS_MAX: usize = 20;
/// Keys in one path.
pub const PATH_KEYS_MAX: usize = 16;
/// Members of one `in` list.
pub const IN_MEMBERS_MAX: usize = 1_000;
/// Nesting of `and`, `or` and `not` nodes in the JSON form.
pub const DEPTH_MAX: usize = 4;

/// The comparisons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
    In,
    Exists,
    Contains,
    IContains,
}

impl Op {
    pub const ALL: [Op; 10] = [
        Op::Eq,
        Op::Ne,
        Op::Gt,
        Op::Gte,
        Op::Lt,
        Op::Lte,
        Op::In,
        Op::Exists,
        Op::Contains,
        Op::IContains,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Op::Eq => "eq",
            Op::Ne => "ne",
            Op::Gt => "gt",
            Op::Gte => "gte",
            Op::Lt => "lt",
            Op::Lte => "lte",
            Op::In => "in",
            Op::Exists => "exists",
            Op::Contains => "contains",
            Op::IContains => "icontains",
        }
    }

    fn parse(name: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.name() == name)
    }
}

const KNOWN_OPS: &str = "eq, ne, gt, gte, lt, lte, in, exists, contains, icontains";

/// What a condition compares the value at its path with, decided when it is parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Test {
    /// `eq`, `in` and, negated with presence required, `ne`: equal to one of these.
    OneOf(Vec<Value>),
    /// `ne`: present and equal to none of these.
    NoneOf(Vec<Value>),
    /// `gt`, `gte`, `lt`, `lte` with a number: a number comparing so.
    Number(Op, Number),
    /// The same with a string: a string comparing so by bytes.
    Text(Op, String),
    /// `exists`.
    Exists(bool),
    /// `contains`: a string holding `text` (when the operand is a string), or an array
    /// with a member equal to one of `members`.
    Contains {
        text: Option<String>,
        members: Vec<Value>,
    },
    /// `icontains`: a string holding this, both lowercased.
    ContainsFolded(String),
}

/// One condition: the value at `path` inside `content` passes `test`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// Object keys from `content` down; never empty.
    pub path: Vec<String>,
    pub op: Op,
    pub test: Test,
}

/// A tree of conditions. A request's filters are one `And`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContentFilter {
    Condition(Condition),
    And(Vec<ContentFilter>),
    Or(Vec<ContentFilter>),
    Not(Box<ContentFilter>),
}

impl ContentFilter {
    /// Whether an event's `content`, as its JSON text, passes. Only the values at the
    /// conditions' paths are parsed (`json_path`); stored content is always JSON.
    pub fn matches_json(&self, content: &str) -> bool {
        self.holds(&|condition: &Condition| condition.matches_json(content))
    }

    pub fn matches(&self, content: &Value) -> bool {
        self.holds(&|condition: &Condition| condition.matches(content))
    }

    fn holds(&self, condition_holds: &impl Fn(&Condition) -> bool) -> bool {
        match self {
            ContentFilter::Condition(condition) => condition_holds(condition),
            ContentFilter::And(all) => all.iter().all(|filter| filter.holds(condition_holds)),
            ContentFilter::Or(any) => any.iter().any(|filter| filter.holds(condition_holds)),
            ContentFilter::Not(filter) => !filter.holds(condition_holds),
        }
    }

    /// How many conditions the tree holds.
    pub fn condition_count(&self) -> usize {
        match self {
            ContentFilter::Condition(_) => 1,
            ContentFilter::And(all) | ContentFilter::Or(all) => {
                all.iter().map(ContentFilter::condition_count).sum()
            }
            ContentFilter::Not(filter) => filter.condition_count(),
        }
    }
}

/// The value at `path` inside `content`: each key names a member of an object.
pub fn value_at<'v>(content: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter()
        .try_fold(content, |value, key| value.as_object()?.get(key))
}

impl Condition {
    pub fn matches(&self, content: &Value) -> bool {
        self.passes(value_at(content, &self.path))
    }

    /// [`Condition::matches`] on `content`'s JSON text, parsing only the value at the path.
    pub fn matches_json(&self, content: &str) -> bool {
        match crate::json_path::value_at(content, &self.path) {
            None => self.passes(None),
            Some(text) => match serde_json::from_str::<Value>(text) {
                Ok(value) => self.passes(Some(&value)),
                Err(_) => false,
            },
        }
    }

    /// Whether the value at the path (`None`: absent) passes the test.
    pub fn passes(&self, value: Option<&Value>) -> bool {
        match (&self.test, value) {
            (Test::Exists(wanted), value) => value.is_some() == *wanted,
            (_, None) => false,
            (Test::OneOf(values), Some(value)) => values.iter().any(|v| json_equal(v, value)),
            (Test::NoneOf(values), Some(value)) => !values.iter().any(|v| json_equal(v, value)),
            (Test::Number(op, bound), Some(Value::Number(number))) => {
                compare_numbers(number, bound).is_some_and(|ordering| op_holds(*op, ordering))
            }
            (Test::Text(op, bound), Some(Value::String(text))) => {
                op_holds(*op, text.as_bytes().cmp(bound.as_bytes()))
            }
            (Test::Number(..) | Test::Text(..), Some(_)) => false,
            (Test::Contains { text, members }, Some(value)) => match value {
                Value::String(string) => text.as_ref().is_some_and(|text| string.contains(text)),
                Value::Array(items) => items
                    .iter()
                    .any(|item| members.iter().any(|member| json_equal(member, item))),
                _ => false,
            },
            (Test::ContainsFolded(folded), Some(Value::String(string))) => {
                fold(string).contains(folded.as_str())
            }
            (Test::ContainsFolded(_), Some(_)) => false,
        }
    }
}

/// Whether `ordering` (value to bound) passes the comparison `op`; false for an op that
/// is no comparison.
pub fn op_holds(op: Op, ordering: Ordering) -> bool {
    match op {
        Op::Gt => ordering == Ordering::Greater,
        Op::Gte => ordering != Ordering::Less,
        Op::Lt => ordering == Ordering::Less,
        Op::Lte => ordering != Ordering::Greater,
        _ => false,
    }
}

/// Lowercases for `icontains`: Unicode's lowercase mapping, as PostgreSQL's `lower()`
/// under an ICU collation does, so that both stores agree.
pub fn fold(text: &str) -> String {
    text.to_lowercase()
}

/// Numbers by value: integers exactly, anything else as `f64`.
pub fn compare_numbers(a: &Number, b: &Number) -> Option<Ordering> {
    if let (Some(a), Some(b)) = (as_i128(a), as_i128(b)) {
        return Some(a.cmp(&b));
    }
    a.as_f64()?.partial_cmp(&b.as_f64()?)
}

fn as_i128(number: &Number) -> Option<i128> {
    number
        .as_i64()
        .map(i128::from)
        .or_else(|| number.as_u64().map(i128::from))
}

/// JSON values equal by type, numbers by value, arrays and objects member by member.
pub fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(a), Value::Number(b)) => compare_numbers(a, b) == Some(Ordering::Equal),
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(a, b)| json_equal(a, b))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .all(|(key, a)| b.get(key).is_some_and(|b| json_equal(a, b)))
        }
        (a, b) => a == b,
    }
}

/// The JSON values a URL-form text stands for: the string itself, and the number, `true`,
/// `false` or `null` whose JSON text it is.
pub fn text_candidates(text: &str) -> Vec<Value> {
    let mut candidates = vec![Value::String(text.to_owned())];
    match text {
        "true" => candidates.push(Value::Bool(true)),
        "false" => candidates.push(Value::Bool(false)),
        "null" => candidates.push(Value::Null),
        _ => candidates.extend(number_text(text).map(Value::Number)),
    }
    candidates
}

/// `text` as a JSON number, if it is one (`42`, `-1.5`, `1e3`; not `+1`, `.5` or `NaN`).
fn number_text(text: &str) -> Option<Number> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Number(number)) => Some(number),
        _ => None,
    }
}

/// A condition's test from its operator and operand; `typed` for the JSON form. The error
/// says why the operand does not fit the operator.
fn test(op: Op, operand: &Value, typed: bool) -> Result<Test, String> {
    // The JSON values an operand stands for.
    let candidates = |value: &Value| -> Vec<Value> {
        match value {
            Value::String(text) if !typed => text_candidates(text),
            value => vec![value.clone()],
        }
    };
    Ok(match op {
        Op::Eq => Test::OneOf(candidates(operand)),
        Op::Ne => Test::NoneOf(candidates(operand)),
        Op::In => {
            let Value::Array(members) = operand else {
                return Err("must be a JSON array of values, e.g. [\"a\",\"b\"]".to_owned());
            };
            if members.len() > IN_MEMBERS_MAX {
                return Err(format!("holds at most {IN_MEMBERS_MAX} values"));
            }
            let mut values = Vec::new();
            for member in members {
                // In the URL form a member stands for what its text would.
                let member = match member {
                    Value::String(_) | Value::Array(_) | Value::Object(_) => member.clone(),
                    scalar if !typed => Value::String(scalar.to_string()),
                    scalar => scalar.clone(),
                };
                values.extend(candidates(&member));
            }
            Test::OneOf(values)
        }
        Op::Gt | Op::Gte | Op::Lt | Op::Lte => match operand {
            Value::Number(number) => Test::Number(op, number.clone()),
            Value::String(text) => match number_text(text).filter(|_| !typed) {
                Some(number) => Test::Number(op, number),
                None => Test::Text(op, text.clone()),
            },
            _ => return Err("must be a number or a string".to_owned()),
        },
        Op::Exists => match operand {
            Value::Bool(wanted) => Test::Exists(*wanted),
            Value::String(text) if !typed && (text == "true" || text == "false") => {
                Test::Exists(text == "true")
            }
            _ => return Err("must be true or false".to_owned()),
        },
        Op::Contains => Test::Contains {
            text: operand.as_str().map(str::to_owned),
            members: candidates(operand),
        },
        Op::IContains => match operand {
            Value::String(text) => Test::ContainsFolded(fold(text)),
            _ => return Err("must be a string".to_owned()),
        },
    })
}

/// The URL form: `name` is `content.PATH` or `content.PATH[op]`, `value` its text.
/// `None` when the parameter is not a content filter at all.
pub fn from_url_param(name: &str, value: &str) -> Option<Result<Condition, ParamError>> {
    let rest = name.strip_prefix("content.")?;
    let error = |detail: String| ParamError::new(name, detail);
    Some((|| {
        let (path, op) = match rest
            .strip_suffix(']')
            .and_then(|rest| rest.rsplit_once('['))
        {
            Some((path, op)) => (
                path,
                Op::parse(op).ok_or_else(|| {
                    error(format!("unknown operator `{op}`; known are {KNOWN_OPS}"))
                })?,
            ),
            None => (rest, Op::Eq),
        };
        if path.contains(['[', ']']) {
            return Err(error(
                "a path holds no brackets; a key with a bracket or a dot is written in the JSON form (POST /api/events/query)"
                    .to_owned(),
            ));
        }
        let path = url_path(path).map_err(error)?;
        let operand = match op {
            Op::In => serde_json::from_str::<Value>(value)
                .ok()
                .filter(Value::is_array)
                .ok_or_else(|| {
                    error("must be a JSON array of values, e.g. [\"a\",\"b\"]".to_owned())
                })?,
            _ => Value::String(value.to_owned()),
        };
        let test = test(op, &operand, false).map_err(error)?;
        Ok(Condition { path, op, test })
    })())
}

fn url_path(path: &str) -> Result<Vec<String>, String> {
    let keys: Vec<String> = path.split('.').map(str::to_owned).collect();
    check_path(&keys)?;
    Ok(keys)
}

fn check_path(keys: &[String]) -> Result<(), String> {
    if keys.is_empty() || keys.iter().any(String::is_empty) {
        return Err("the path has an empty key".to_owned());
    }
    if keys.len() > PATH_KEYS_MAX {
        return Err(format!("a path has at most {PATH_KEYS_MAX} keys"));
    }
    Ok(())
}

/// The JSON form's `where`: a list of nodes that hold together, or one node. `field`
/// names the node in errors (`where`, then `where[2]`, `where[0].or[1]`…).
pub fn from_json(node: &Value) -> Result<ContentFilter, ParamError> {
    let filter = match node {
        Value::Array(nodes) => ContentFilter::And(list(nodes, "where", 1)?),
        node => json_node(node, "where", 1)?,
    };
    check_count(&filter, "where")?;
    Ok(filter)
}

/// Refuses a request of more than [`CONDITIONS_MAX`] conditions.
pub fn check_count(filter: &ContentFilter, field: &str) -> Result<(), ParamError> {
    let count = filter.condition_count();
    if count > CONDITIONS_MAX {
        return Err(ParamError::new(
            field,
            format!("{count} content filters; at most {CONDITIONS_MAX} in one request"),
        ));
    }
    Ok(())
}

fn list(nodes: &[Value], field: &str, depth: usize) -> Result<Vec<ContentFilter>, ParamError> {
    if nodes.len() > CONDITIONS_MAX {
        return Err(ParamError::new(
            field,
            format!("holds at most {CONDITIONS_MAX} filters"),
        ));
    }
    nodes
        .iter()
        .enumerate()
        .map(|(at, node)| json_node(node, &format!("{field}[{at}]"), depth))
        .collect()
}

fn json_node(node: &Value, field: &str, depth: usize) -> Result<ContentFilter, ParamError> {
    let error = |detail: &str| ParamError::new(field, detail);
    let Value::Object(node) = node else {
        return Err(error(
            "must be an object: {\"path\", \"op\", \"value\"}, {\"and\": […]}, {\"or\": […]} or {\"not\": …}",
        ));
    };
    if let Some((name, inner)) = single(node, &["and", "or", "not"]) {
        let field = format!("{field}.{name}");
        if depth > DEPTH_MAX {
            return Err(ParamError::new(
                &field,
                format!("and, or and not nest at most {DEPTH_MAX} deep"),
            ));
        }
        return Ok(match (name, inner) {
            ("not", inner) => ContentFilter::Not(Box::new(json_node(inner, &field, depth + 1)?)),
            (name, Value::Array(nodes)) => {
                let nodes = list(nodes, &field, depth + 1)?;
                if name == "and" {
                    ContentFilter::And(nodes)
                } else {
                    ContentFilter::Or(nodes)
                }
            }
            _ => return Err(ParamError::new(&field, "must be an array of filters")),
        });
    }
    for key in node.keys() {
        if !["path", "op", "value"].contains(&key.as_str()) {
            return Err(ParamError::new(
                &format!("{field}.{key}"),
                "unknown field; a filter has path, op and value, or is one of and, or, not",
            ));
        }
    }
    let path_field = format!("{field}.path");
    let path = match node.get("path") {
        Some(Value::String(path)) => url_path(path),
        Some(Value::Array(keys)) => keys
            .iter()
            .map(|key| key.as_str().map(str::to_owned))
            .collect::<Option<Vec<String>>>()
            .ok_or_else(|| "must be a string or an array of strings".to_owned())
            .and_then(|keys| check_path(&keys).map(|()| keys)),
        Some(_) => Err("must be a string or an array of strings".to_owned()),
        None => Err("is missing".to_owned()),
    }
    .map_err(|detail| ParamError::new(&path_field, detail))?;
    let op_field = format!("{field}.op");
    let op = match node.get("op") {
        Some(Value::String(op)) => Op::parse(op).ok_or_else(|| {
            ParamError::new(
                &op_field,
                format!("unknown operator `{op}`; known are {KNOWN_OPS}"),
            )
        })?,
        Some(_) => return Err(ParamError::new(&op_field, "must be a string")),
        None => Op::Eq,
    };
    let value_field = format!("{field}.value");
    let operand = node
        .get("value")
        .ok_or_else(|| ParamError::new(&value_field, "is missing"))?;
    let test = test(op, operand, true).map_err(|detail| ParamError::new(&value_field, detail))?;
    Ok(ContentFilter::Condition(Condition { path, op, test }))
}

/// The one key of `node` among `names`, if it has exactly that one key.
fn single<'v>(
    node: &'v Map<String, Value>,
    names: &[&'static str],
) -> Option<(&'static str, &'v Value)> {
    let (key, value) = node.iter().next().filter(|_| node.len() == 1)?;
    let name = names.iter().find(|name| **name == key)?;
    Some((name, value))
}

#[cfg(test)]
mod tests {
    use proptest::strategy::Strategy;
    use serde_json::json;

    use super::*;

    fn url(name: &str, value: &str) -> Condition {
        from_url_param(name, value)
            .expect("a content filter")
            .expect("valid")
    }

    fn url_error(name: &str, value: &str) -> ParamError {
        from_url_param(name, value)
            .expect("a content filter")
            .expect_err("invalid")
    }

    #[test]
    fn the_url_form_compares_by_text() {
        let total = url("content.total", "42");
        for content in [
            json!({"total": 42}),
            json!({"total": 42.0}),
            json!({"total": "42"}),
        ] {
            assert!(total.matches(&content), "{content}");
        }
        for content in [
            json!({"total": 43}),
            json!({"total": "42.0"}),
            json!({}),
            json!({"total": [42]}),
        ] {
            assert!(!total.matches(&content), "{content}");
        }
        assert!(url("content.paid", "true").matches(&json!({"paid": true})));
        assert!(url("content.paid", "true").matches(&json!({"paid": "true"})));
        assert!(url("content.gone", "null").matches(&json!({"gone": null})));
        assert!(url("content.a.b", "x").matches(&json!({"a": {"b": "x"}})));
        assert!(!url("content.a.b", "x").matches(&json!({"a": [{"b": "x"}]})));
    }

    #[test]
    fn ne_needs_the_value_present() {
        let ne = url("content.plan[ne]", "free");
        assert!(ne.matches(&json!({"plan": "pro"})));
        assert!(ne.matches(&json!({"plan": null})));
        assert!(!ne.matches(&json!({"plan": "free"})));
        assert!(!ne.matches(&json!({})));
    }

    #[test]
    fn ranges_compare_numbers_by_value_and_strings_by_bytes() {
        let gte = url("content.amount[gte]", "500");
        assert!(gte.matches(&json!({"amount": 500})));
        assert!(gte.matches(&json!({"amount": 500.5})));
        assert!(!gte.matches(&json!({"amount": 499.99})));
        assert!(
            !gte.matches(&json!({"amount": "600"})),
            "a string is no number"
        );
        let big = url("content.n[gt]", "9007199254740992");
        assert!(
            big.matches(&json!({"n": 9_007_199_254_740_993_u64})),
            "integers exactly"
        );
        let lt = url("content.day[lt]", "2024-02");
        assert!(lt.matches(&json!({"day": "2024-01-31"})));
        assert!(!lt.matches(&json!({"day": "2024-02"})));
        assert!(!lt.matches(&json!({"day": 5})));
        assert!(url("content.day[lte]", "2024-02").matches(&json!({"day": "2024-02"})));
    }

    #[test]
    fn in_exists_contains_and_icontains() {
        let within = url("content.store[in]", r#"["a","b",7]"#);
        assert!(within.matches(&json!({"store": "b"})));
        assert!(within.matches(&json!({"store": 7})));
        assert!(within.matches(&json!({"store": "7"})));
        assert!(!within.matches(&json!({"store": "c"})));
        assert!(url("content.x[exists]", "true").matches(&json!({"x": null})));
        assert!(url("content.x[exists]", "false").matches(&json!({"y": 1})));
        assert!(!url("content.x[exists]", "false").matches(&json!({"x": 1})));
        let contains = url("content.tags[contains]", "vip");
        assert!(contains.matches(&json!({"tags": ["new", "vip"]})));
        assert!(contains.matches(&json!({"tags": "a vip one"})));
        assert!(!contains.matches(&json!({"tags": ["VIP"]})));
        assert!(url("content.n[contains]", "3").matches(&json!({"n": [1, 3]})));
        let folded = url("content.name[icontains]", "ÉCOLE");
        assert!(folded.matches(&json!({"name": "la grande école"})));
        assert!(!folded.matches(&json!({"name": ["école"]})));
    }

    #[test]
    fn the_json_form_compares_by_type() {
        let filter =
            from_json(&json!([{"path": "total", "op": "eq", "value": 42}])).expect("valid");
        assert!(filter.matches(&json!({"total": 42.0})));
        assert!(!filter.matches(&json!({"total": "42"})));
        let tree = from_json(&json!({"or": [
            {"path": ["address", "city"], "value": "Paris"},
            {"not": {"path": "plan", "op": "in", "value": ["free", "trial"]}},
        ]}))
        .expect("valid");
        assert!(tree.matches(&json!({"address": {"city": "Paris"}, "plan": "free"})));
        assert!(tree.matches(&json!({"plan": "pro"})));
        assert!(!tree.matches(&json!({"plan": "trial"})));
        let dotted = from_json(&json!([{"path": ["a.b"], "value": 1}])).expect("valid");
        assert!(dotted.matches(&json!({"a.b": 1})));
        assert!(!dotted.matches(&json!({"a": {"b": 1}})));
    }

    proptest::proptest! {
        /// Matching the JSON text, which parses only the values at the paths, agrees with
        /// matching the parsed document.
        #[test]
        fn matching_the_text_agrees_with_matching_the_value(
            document in proptest::collection::btree_map(
                "[ab]",
                proptest::prop_oneof![
                    proptest::strategy::Just(json!(null)),
                    proptest::prelude::any::<i32>().prop_map(|n| json!(n)),
                    "[ab1]{0,2}".prop_map(|text| json!(text)),
                    proptest::prelude::any::<bool>().prop_map(|flag| json!(flag)),
                    proptest::strategy::Just(json!({"a": 1, "b": ["a", 1]})),
                    proptest::strategy::Just(json!(["a", "b1", 1])),
                ],
                0..3,
            ),
            path in "[ab](\\.[ab])?",
            op in proptest::sample::select(Op::ALL.to_vec()),
            operand in proptest::sample::select(vec!["a", "1", "b1", "true", "null", "[\"a\",1]", "[]"]),
        ) {
            let document = Value::Object(document.into_iter().collect());
            if let Some(Ok(condition)) = from_url_param(&format!("content.{path}[{}]", op.name()), operand) {
                let filter = ContentFilter::Not(Box::new(ContentFilter::Condition(condition)));
                for text in [document.to_string(), serde_json::to_string_pretty(&document).expect("json")] {
                    proptest::prop_assert_eq!(filter.matches_json(&text), filter.matches(&document));
                }
            }
        }
    }

    #[test]
    fn bad_filters_are_named() {
        // A range over text that is no number compares strings.
        assert_eq!(
            url("content.total[gt]", "x").test,
            Test::Text(Op::Gt, "x".to_owned())
        );
        assert_eq!(
            url_error("content.total[between]", "1").parameter,
            "content.total[between]"
        );
        assert!(
            url_error("content.total[between]", "1")
                .detail
                .contains("unknown operator")
        );
        assert!(url_error("content.", "1").detail.contains("empty key"));
        assert!(url_error("content.a..b", "1").detail.contains("empty key"));
        assert!(
            url_error("content.s[in]", "a,b")
                .detail
                .contains("JSON array")
        );
        assert!(
            url_error("content.s[exists]", "yes")
                .detail
                .contains("true or false")
        );
        let deep = format!("content.{}", vec!["k"; 17].join("."));
        assert!(url_error(&deep, "1").detail.contains("at most 16"));
        let many: Vec<i32> = (0..1_001).collect();
        assert!(
            url_error("content.s[in]", &json!(many).to_string())
                .detail
                .contains("at most 1000")
        );
        assert!(from_url_param("contact_id", "x").is_none());

        let error = |node: Value| from_json(&node).expect_err("invalid");
        assert_eq!(
            error(json!([{"path": "a", "value": 1}, {"path": "a", "op": "gt", "value": true}]))
                .parameter,
            "where[1].value"
        );
        assert_eq!(
            error(json!([{"path": "a", "op": "near", "value": 1}])).parameter,
            "where[0].op"
        );
        assert_eq!(
            error(json!([{"path": "", "value": 1}])).parameter,
            "where[0].path"
        );
        assert_eq!(error(json!([{"path": "a"}])).parameter, "where[0].value");
        assert_eq!(
            error(json!([{"path": "a", "value": 1, "x": 2}])).parameter,
            "where[0].x"
        );
        assert_eq!(error(json!([1])).parameter, "where[0]");
        assert_eq!(
            error(json!({"or": {"path": "a", "value": 1}})).parameter,
            "where.or"
        );
        let four = json!({"not": {"not": {"not": {"not": {"path": "a", "value": 1}}}}});
        assert!(from_json(&four).is_ok(), "four deep");
        let deep = json!({"not": {"not": {"not": {"not": {"not": {"path": "a", "value": 1}}}}}});
        assert_eq!(error(deep).parameter, "where.not.not.not.not.not");
        let many: Vec<Value> = (0..21).map(|n| json!({"path": "a", "value": n})).collect();
        assert!(error(json!(many)).detail.contains("at most 20"));
        let spread = json!([{"or": (0..11).map(|n| json!({"path": "a", "value": n})).collect::<Vec<_>>()},
                            {"and": (0..10).map(|n| json!({"path": "a", "value": n})).collect::<Vec<_>>()}]);
        assert!(error(spread).detail.contains("21 content filters"));
    }
}
