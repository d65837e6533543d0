//! What a read asks for: the filters of `getEvents`, the order, and where the page starts.

use crate::content_filter::{self, ContentFilter};
use crate::cursor::Cursor;
use crate::event::{Event, Scope};
use crate::limits::Limits;
pub use crate::param::ParamError;
use crate::timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// Oldest first.
    #[default]
    Asc,
    Desc,
}

/// Where a page starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Start {
    #[default]
    First,
    /// Skip this many matching events (walks the index: bounded by `Limits::offset_max`).
    Skip(u64),
    /// Continue right after this event, in the query's order.
    After(Cursor),
}

/// The filters shared by every read: page, export, stream and stats.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Filter {
    /// Inclusive lower bound on `timestamp`, in Unix milliseconds.
    pub since_ms: Option<i64>,
    /// Exclusive upper bound on `timestamp`, in Unix milliseconds.
    pub until_ms: Option<i64>,
    pub contact_id: Option<String>,
    pub scope: Option<Scope>,
    /// Empty means every type.
    pub event_types: Vec<String>,
    /// Conditions on `content` (SPEC §8); `None` means any content.
    pub content: Option<ContentFilter>,
}

impl Filter {
    /// Whether an event matches, exactly as the stores' queries decide.
    pub fn matches(&self, event: &Event) -> bool {
        self.since_ms
            .is_none_or(|since| event.timestamp_ms >= since)
            && self.until_ms.is_none_or(|until| event.timestamp_ms < until)
            && self
                .contact_id
                .as_ref()
                .is_none_or(|contact| event.contact_id.as_ref() == Some(contact))
            && self.scope.is_none_or(|scope| event.scope == scope)
            && (self.event_types.is_empty() || self.event_types.contains(&event.event_type))
            && self
                .content
                .as_ref()
                .is_none_or(|content| content.matches_json(event.content.get()))
    }
}

/// One page of events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageQuery {
    pub filter: Filter,
    pub order: Order,
    pub start: Start,
    pub limit: u32,
}

/// A page and where the next one starts; `next` is `None` when nothing more matches.
#[derive(Debug, Clone)]
pub struct Page {
    pub events: Vec<Event>,
    pub next: Option<Cursor>,
}

impl PageQuery {
    /// Reads the query string of `getEvents`. Unknown parameters are refused, so a typo
    /// never silently widens a query; `key` is left to access control.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
        limits: &Limits,
    ) -> Result<PageQuery, ParamError> {
        let mut seen: Vec<&'static str> = Vec::new();
        let mut conditions = Vec::new();
        let mut query = PageQuery {
            filter: Filter::default(),
            order: Order::Asc,
            start: Start::First,
            limit: limits.page_len_default,
        };
        for (name, value) in pairs {
            let canonical = match name {
                "since" => "since",
                "until" => "until",
                "contact_id" | "contactId" => "contact_id",
                "scope" => "scope",
                "event_types" | "eventTypes" => "event_types",
                "offset" => "offset",
                "limit" => "limit",
                "order" => "order",
                "key" => continue,
                name => match content_filter::from_url_param(name, value) {
                    Some(condition) => {
                        conditions.push(ContentFilter::Condition(condition?));
                        continue;
                    }
                    None => {
                        return Err(ParamError::new(
                            name,
                            "unknown parameter; known are since, until, contact_id, scope, event_types, offset, limit, order and content.PATH[op]",
                        ));
                    }
                },
            };
            if seen.contains(&canonical) {
                return Err(ParamError::new(canonical, "is given more than once"));
            }
            seen.push(canonical);
            query.set(canonical, value, limits)?;
        }
        if let (Some(since), Some(until)) = (query.filter.since_ms, query.filter.until_ms)
            && since > until
        {
            return Err(ParamError::new("since", "is later than until"));
        }
        if !conditions.is_empty() {
            let content = ContentFilter::And(conditions);
            content_filter::check_count(&content, "content")?;
            query.filter.content = Some(content);
        }
        Ok(query)
    }

    fn set(&mut self, name: &'static str, value: &str, limits: &Limits) -> Result<(), ParamError> {
        let filter = &mut self.filter;
        match name {
            "since" | "until" => {
                let value = value.trim();
                if value.is_empty() {
                    return Ok(());
                }
                let ms = timestamp::from_str(value)
                    .map_err(|error| ParamError::new(name, error.to_string()))?;
                if name == "since" {
                    filter.since_ms = Some(ms);
                } else {
                    filter.until_ms = Some(ms);
                }
            }
            "contact_id" => filter.contact_id = (!value.is_empty()).then(|| value.to_owned()),
            "scope" => {
                filter.scope = match value.trim() {
                    "" => None,
                    text => Some(
                        Scope::parse(text)
                            .ok_or_else(|| ParamError::new(name, "must be app, site or empty"))?,
                    ),
                }
            }
            "event_types" => {
                let mut types: Vec<String> = value
                    .split(',')
                    .map(str::trim)
                    .filter(|text| !text.is_empty())
                    .map(str::to_owned)
                    .collect();
                types.sort_unstable();
                types.dedup();
                if types.len() > limits.event_types_len_max {
                    return Err(ParamError::new(
                        name,
                        format!("names at most {} event types", limits.event_types_len_max),
                    ));
                }
                filter.event_types = types;
            }
            "offset" => self.start = parse_offset(value, limits)?,
            "limit" => {
                let max = limits.page_len_max;
                let limit: u32 = match value.trim() {
                    "" => limits.page_len_default,
                    text => text
                        .parse()
                        .ok()
                        .filter(|limit| (1..=max).contains(limit))
                        .ok_or_else(|| {
                            ParamError::new(name, format!("must be a whole number from 1 to {max}"))
                        })?,
                };
                self.limit = limit;
            }
            "order" => {
                self.order = match value.trim() {
                    "" | "asc" => Order::Asc,
                    "desc" => Order::Desc,
                    _ => return Err(ParamError::new(name, "must be asc or desc")),
                }
            }
            _ => unreachable!("parameter names are canonical here"),
        }
        Ok(())
    }
}

impl PageQuery {
    /// The JSON form of a read (`POST /api/events/query`): the parameters of
    /// [`PageQuery::from_pairs`] as JSON values (`event_types` an array, numbers as
    /// numbers) and `where`, the content filters as a list or a tree
    /// ([`content_filter::from_json`]).
    pub fn from_json(body: &serde_json::Value, limits: &Limits) -> Result<PageQuery, ParamError> {
        use serde_json::Value;
        let Value::Object(fields) = body else {
            return Err(ParamError::new(
                "body",
                "must be a JSON object of read parameters and where",
            ));
        };
        let mut pairs: Vec<(&str, String)> = Vec::new();
        let mut content = None;
        for (name, value) in fields {
            let name = name.as_str();
            let text = match (name, value) {
                ("where", value) => {
                    content = Some(content_filter::from_json(value)?);
                    continue;
                }
                (_, Value::Null) => String::new(),
                ("event_types" | "eventTypes", Value::Array(types)) => {
                    let mut names = Vec::with_capacity(types.len());
                    for event_type in types {
                        match event_type.as_str() {
                            Some(event_type) if !event_type.contains(',') => names.push(event_type),
                            _ => {
                                return Err(ParamError::new(
                                    name,
                                    "must be an array of event type names",
                                ));
                            }
                        }
                    }
                    names.join(",")
                }
                ("since" | "until" | "offset" | "limit", Value::Number(number)) => {
                    number.to_string()
                }
                (_, Value::String(text)) if !name.starts_with("content.") && name != "key" => {
                    text.clone()
                }
                ("key", _) => {
                    return Err(ParamError::new(
                        name,
                        "send a key as `Authorization: Bearer <key>`, not in the body",
                    ));
                }
                (name, _) if name.starts_with("content.") => {
                    return Err(ParamError::new(
                        name,
                        "content filters of the JSON form are written in where",
                    ));
                }
                (name, _) => {
                    return Err(ParamError::new(
                        name,
                        "must be a string (a number for since, until, offset and limit; an array for event_types)",
                    ));
                }
            };
            pairs.push((name, text));
        }
        let mut query = PageQuery::from_pairs(
            pairs.iter().map(|(name, text)| (*name, text.as_str())),
            limits,
        )?;
        query.filter.content = content.filter(|content| content != &ContentFilter::And(Vec::new()));
        Ok(query)
    }
}

fn parse_offset(value: &str, limits: &Limits) -> Result<Start, ParamError> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(Start::First);
    }
    if value.bytes().all(|byte| byte.is_ascii_digit()) {
        let skip: u64 = value.parse().unwrap_or(u64::MAX);
        if skip > limits.offset_max {
            return Err(ParamError::new(
                "offset",
                format!(
                    "a numeric offset is at most {}; pass the next_offset of the previous page to go further",
                    limits.offset_max
                ),
            ));
        }
        return Ok(if skip == 0 {
            Start::First
        } else {
            Start::Skip(skip)
        });
    }
    Cursor::decode(value).map(Start::After).ok_or_else(|| {
        ParamError::new(
            "offset",
            "must be a count of events or the next_offset of a previous page",
        )
    })
}

impl Page {
    /// The page from rows read in page order, one more than `limit` if there are: one
    /// row more means another page exists, and the cursor is the last event shown.
    pub fn from_rows(mut events: Vec<Event>, limit: u32) -> Page {
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
}
