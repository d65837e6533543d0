//! The event: what a client may send, how it is validated, and what is stored.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::limits::Limits;
use crate::problem::ErrorCode;
pub use crate::scope::Scope;
use crate::timestamp::{self, TIMESTAMP_MS_MAX};

pub const EVENT_TYPE_CHARS_MAX: usize = 128;
pub const CONTACT_ID_CHARS_MAX: usize = 256;

/// A validated event as a client sent it, before the server stamps it.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// The idempotency key, when the client chose one.
    pub id: Option<Uuid>,
    pub event_type: String,
    pub content: Box<RawValue>,
    pub contact_id: Option<String>,
    pub scope: Scope,
    pub timestamp_ms: Option<i64>,
    pub sent_at_ms: Option<i64>,
}

/// A stored event, as every read returns it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    pub id: Uuid,
    pub event_type: String,
    pub content: Box<RawValue>,
    pub contact_id: Option<String>,
    pub scope: Scope,
    /// Event time, after the `sent_at` clock correction.
    #[serde(rename = "timestamp")]
    pub timestamp_ms: i64,
    #[serde(rename = "received_at")]
    pub received_at_ms: i64,
    /// The `timestamp` exactly as the client gave it, if it gave one. Part of the event's
    /// identity for idempotent replays; never sent to clients.
    #[serde(skip)]
    pub client_timestamp_ms: Option<i64>,
}

impl NewEvent {
    /// Gives the event its server-side fields. `generated_id` is used when the client
    /// gave no id.
    ///
    /// When the client says when it sent the request (`sent_at`), the difference between
    /// the server's clock and the device's is added to the client's `timestamp`, so events
    /// from a device whose clock is wrong land at the right time. Without a client
    /// `timestamp` the event time is the receive time, which needs no correction.
    pub fn stamp(self, received_at_ms: i64, generated_id: Uuid) -> Result<Event, FieldError> {
        let timestamp_ms = match (self.timestamp_ms, self.sent_at_ms) {
            (None, _) => received_at_ms,
            (Some(timestamp_ms), None) => timestamp_ms,
            (Some(timestamp_ms), Some(sent_at_ms)) => {
                let corrected =
                    timestamp_ms.saturating_add(received_at_ms.saturating_sub(sent_at_ms));
                if !(0..=TIMESTAMP_MS_MAX).contains(&corrected) {
                    return Err(FieldError::invalid(
                        "sent_at",
                        "moves the corrected timestamp out of range; is the device clock far off?",
                    ));
                }
                corrected
            }
        };
        Ok(Event {
            id: self.id.unwrap_or(generated_id),
            event_type: self.event_type,
            content: self.content,
            contact_id: self.contact_id,
            scope: self.scope,
            timestamp_ms,
            received_at_ms,
            client_timestamp_ms: self.timestamp_ms,
        })
    }
}

impl Event {
    /// Whether `submitted`, posted with this event's id, is the same event sent again.
    /// Server-set times and `sent_at` do not count; content is compared as JSON, so key
    /// order and white space do not matter.
    pub fn is_same_submission(&self, submitted: &Event) -> bool {
        self.event_type == submitted.event_type
            && self.contact_id == submitted.contact_id
            && self.scope == submitted.scope
            && self.client_timestamp_ms == submitted.client_timestamp_ms
            && same_json(&self.content, &submitted.content)
    }
}

fn same_json(a: &RawValue, b: &RawValue) -> bool {
    if a.get() == b.get() {
        return true;
    }
    match (
        serde_json::from_str::<serde_json::Value>(a.get()),
        serde_json::from_str::<serde_json::Value>(b.get()),
    ) {
        (Ok(a), Ok(b)) => same_value(&a, &b),
        _ => false,
    }
}

/// JSON equality where numbers are equal by value: a store may keep `1e2` as `100`
/// (PostgreSQL's jsonb does), and a replay of `1e2` is still the same event.
fn same_value(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(a), Value::Number(b)) => {
            a == b || (a.as_f64().is_some() && a.as_f64() == b.as_f64())
        }
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(a, b)| same_value(a, b))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .all(|(key, a)| b.get(key).is_some_and(|b| same_value(a, b)))
        }
        _ => a == b,
    }
}

/// Whether JSON text holds the escape `\u0000`. PostgreSQL's jsonb cannot store U+0000,
/// so both stores refuse it, alike. (A raw U+0000 is not valid JSON text.)
fn has_nul_escape(json: &str) -> bool {
    let mut bytes = json.bytes();
    while let Some(byte) = bytes.next() {
        if byte == b'\\' {
            // The escaped character: `u` and four hex digits, or one of `"\/bfnrt`.
            if bytes.next() == Some(b'u') && bytes.by_ref().take(4).eq(*b"0000") {
                return true;
            }
        }
    }
    false
}

/// A field that failed validation, named so the client knows what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub code: ErrorCode,
    pub field: String,
    pub detail: String,
}

impl FieldError {
    pub fn invalid(field: &str, detail: impl Into<String>) -> FieldError {
        FieldError {
            code: ErrorCode::InvalidField,
            field: field.to_owned(),
            detail: detail.into(),
        }
    }

    fn unknown(field: &str) -> FieldError {
        FieldError {
            code: ErrorCode::UnknownField,
            field: field.to_owned(),
            detail: format!(
                "unknown field `{field}`; an event has id, event_type, content, contact_id, scope, timestamp and sent_at"
            ),
        }
    }
}

/// Why a body is not an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventError {
    /// Not JSON at all; `line` and `column` are 1-based.
    Malformed {
        line: usize,
        column: usize,
        detail: String,
    },
    /// JSON, but not an object.
    NotAnObject,
    Field(FieldError),
}

impl EventError {
    pub fn code(&self) -> ErrorCode {
        match self {
            EventError::Malformed { .. } => ErrorCode::MalformedJson,
            EventError::NotAnObject => ErrorCode::NotAnObject,
            EventError::Field(error) => error.code,
        }
    }

    pub fn field(&self) -> Option<&str> {
        match self {
            EventError::Field(error) => Some(&error.field),
            _ => None,
        }
    }

    pub fn detail(&self) -> String {
        match self {
            EventError::Malformed {
                line,
                column,
                detail,
            } => {
                format!("malformed JSON at line {line}, column {column}: {detail}")
            }
            EventError::NotAnObject => "an event must be a JSON object".to_owned(),
            EventError::Field(error) => format!("{}: {}", error.field, error.detail),
        }
    }
}

impl From<FieldError> for EventError {
    fn from(error: FieldError) -> EventError {
        EventError::Field(error)
    }
}

impl EventError {
    pub(crate) fn from_json(error: &serde_json::Error) -> EventError {
        match error.classify() {
            serde_json::error::Category::Data => EventError::NotAnObject,
            _ => EventError::Malformed {
                line: error.line(),
                column: error.column(),
                detail: strip_position(error),
            },
        }
    }
}

/// serde_json appends " at line L column C"; the position is reported separately.
fn strip_position(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

/// Parses and validates one event from a request body.
pub fn parse_event(body: &[u8], limits: &Limits) -> Result<NewEvent, EventError> {
    let fields: Fields<'_> =
        serde_json::from_slice(body).map_err(|error| EventError::from_json(&error))?;
    fields.validate(limits)
}

/// Parses and validates one event that is already known to be well-formed JSON.
pub fn parse_event_value(raw: &RawValue, limits: &Limits) -> Result<NewEvent, EventError> {
    let fields: Fields<'_> =
        serde_json::from_str(raw.get()).map_err(|error| EventError::from_json(&error))?;
    fields.validate(limits)
}

/// The top-level members of an event object, still raw. Collected by hand rather than
/// with `deny_unknown_fields` so that an unknown or repeated member is reported by name.
#[derive(Default)]
struct Fields<'a> {
    id: Option<&'a RawValue>,
    event_type: Option<&'a RawValue>,
    content: Option<&'a RawValue>,
    contact_id: Option<&'a RawValue>,
    scope: Option<&'a RawValue>,
    timestamp: Option<&'a RawValue>,
    sent_at: Option<&'a RawValue>,
    first_error: Option<FieldError>,
}

impl<'de: 'a, 'a> Deserialize<'de> for Fields<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(FieldsVisitor(std::marker::PhantomData))
    }
}

struct FieldsVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for FieldsVisitor<'a> {
    type Value = Fields<'a>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an event object")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Fields<'a>, M::Error> {
        let mut fields = Fields::default();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            let value: &'de RawValue = map.next_value()?;
            let slot = match key.as_ref() {
                "id" => &mut fields.id,
                "event_type" => &mut fields.event_type,
                "content" => &mut fields.content,
                "contact_id" => &mut fields.contact_id,
                "scope" => &mut fields.scope,
                "timestamp" => &mut fields.timestamp,
                "sent_at" => &mut fields.sent_at,
                // Set by the server; clients that echo a stored event back may send it.
                "received_at" => continue,
                unknown => {
                    fields
                        .first_error
                        .get_or_insert_with(|| FieldError::unknown(unknown));
                    continue;
                }
            };
            if slot.replace(value).is_some() {
                fields
                    .first_error
                    .get_or_insert_with(|| FieldError::invalid(&key, "appears more than once"));
            }
        }
        Ok(fields)
    }
}

/// An object key, borrowed from the input when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

impl Fields<'_> {
    fn validate(self, limits: &Limits) -> Result<NewEvent, EventError> {
        if let Some(error) = self.first_error {
            return Err(error.into());
        }
        let id = match self
            .id
            .map(|raw| string_or_null(raw, "id"))
            .transpose()?
            .flatten()
        {
            None => None,
            Some(text) => Some(Uuid::try_parse(&text).map_err(|_| {
                FieldError::invalid(
                    "id",
                    "must be a UUID such as \"0190b3c4-4f1e-7cc0-8d2a-5e2b1c9d7f10\"",
                )
            })?),
        };
        let event_type = match self
            .event_type
            .map(|raw| string_or_null(raw, "event_type"))
            .transpose()?
            .flatten()
        {
            None => return Err(FieldError::invalid("event_type", "is required").into()),
            Some(text) => validate_event_type(text)?,
        };
        let content = match self.content {
            None => {
                return Err(FieldError::invalid(
                    "content",
                    "is required and must be a JSON object",
                )
                .into());
            }
            Some(raw) if !raw.get().starts_with('{') => {
                return Err(FieldError::invalid("content", "must be a JSON object").into());
            }
            Some(raw) if raw.get().len() > limits.content_bytes_max => {
                return Err(FieldError::invalid(
                    "content",
                    format!(
                        "is {} bytes; the limit is {} bytes",
                        raw.get().len(),
                        limits.content_bytes_max
                    ),
                )
                .into());
            }
            Some(raw) if has_nul_escape(raw.get()) => {
                return Err(FieldError::invalid(
                    "content",
                    "contains the character U+0000 (\\u0000), which Eventline does not store",
                )
                .into());
            }
            Some(raw) => raw.to_owned(),
        };
        let contact_id = match self
            .contact_id
            .map(|raw| string_or_null(raw, "contact_id"))
            .transpose()?
            .flatten()
        {
            None => None,
            Some(text) if text.is_empty() => None,
            Some(text) if text.chars().count() > CONTACT_ID_CHARS_MAX => {
                return Err(FieldError::invalid(
                    "contact_id",
                    format!("is longer than {CONTACT_ID_CHARS_MAX} characters"),
                )
                .into());
            }
            Some(text) => Some(text.into_owned()),
        };
        let scope = match self
            .scope
            .map(|raw| string_or_null(raw, "scope"))
            .transpose()?
            .flatten()
        {
            None => limits.scope_default,
            Some(text) => Scope::parse(&text)
                .ok_or_else(|| FieldError::invalid("scope", "must be \"app\" or \"site\""))?,
        };
        let timestamp_ms = self
            .timestamp
            .map(|raw| time_field(raw, "timestamp"))
            .transpose()?
            .flatten();
        let sent_at_ms = self
            .sent_at
            .map(|raw| time_field(raw, "sent_at"))
            .transpose()?
            .flatten();
        Ok(NewEvent {
            id,
            event_type,
            content,
            contact_id,
            scope,
            timestamp_ms,
            sent_at_ms,
        })
    }
}

fn string_or_null<'a>(raw: &'a RawValue, field: &str) -> Result<Option<Cow<'a, str>>, FieldError> {
    #[derive(Deserialize)]
    struct Text<'a>(#[serde(borrow)] Cow<'a, str>);
    if raw.get() == "null" {
        return Ok(None);
    }
    serde_json::from_str::<Text<'a>>(raw.get())
        .map(|Text(text)| Some(text))
        .map_err(|_| FieldError::invalid(field, "must be a string"))
}

fn validate_event_type(text: Cow<'_, str>) -> Result<String, FieldError> {
    let chars = text.chars().count();
    if chars == 0 {
        return Err(FieldError::invalid("event_type", "must not be empty"));
    }
    if chars > EVENT_TYPE_CHARS_MAX {
        return Err(FieldError::invalid(
            "event_type",
            format!("is longer than {EVENT_TYPE_CHARS_MAX} characters"),
        ));
    }
    if text.contains(',') {
        return Err(FieldError::invalid(
            "event_type",
            "must not contain a comma (the query filter is comma-separated)",
        ));
    }
    if text.chars().any(char::is_control) {
        return Err(FieldError::invalid(
            "event_type",
            "must not contain control characters",
        ));
    }
    if text.trim() != text {
        return Err(FieldError::invalid(
            "event_type",
            "must not start or end with white space",
        ));
    }
    Ok(text.into_owned())
}

fn time_field(raw: &RawValue, field: &str) -> Result<Option<i64>, FieldError> {
    let value: serde_json::Value = serde_json::from_str(raw.get())
        .map_err(|_| FieldError::invalid(field, "must be a number or a string"))?;
    if value.is_null() {
        return Ok(None);
    }
    timestamp::from_json(&value)
        .map(Some)
        .map_err(|error| FieldError::invalid(field, error.to_string()))
}
