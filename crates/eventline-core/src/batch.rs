//! Batches: many events in one request, validated as a whole.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::event::{self, EventError, NewEvent};
use crate::limits::Limits;
use crate::problem::ErrorCode;

/// A batch answer lists at most this many bad events; the count of all of them is given too.
pub const ITEM_ERRORS_LISTED_MAX: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchFormat {
    /// `{"events": [...]}` or a bare JSON array.
    Json,
    /// One event per line; blank lines are skipped.
    Ndjson,
}

/// One bad event of a batch. `index` counts events from 0, in the order sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemError {
    pub index: usize,
    pub code: ErrorCode,
    pub field: Option<String>,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchError {
    Malformed {
        line: usize,
        column: usize,
        detail: String,
    },
    /// Valid JSON, but neither an array nor an object with an `events` array.
    NotABatch,
    TooMany {
        len_max: usize,
    },
    /// Some events are invalid: `errors` lists the first [`ITEM_ERRORS_LISTED_MAX`].
    Items {
        errors: Vec<ItemError>,
        count: usize,
    },
}

impl BatchError {
    pub fn code(&self) -> ErrorCode {
        match self {
            BatchError::Malformed { .. } => ErrorCode::MalformedJson,
            BatchError::NotABatch => ErrorCode::InvalidBatch,
            BatchError::TooMany { .. } => ErrorCode::BodyTooLarge,
            BatchError::Items { .. } => ErrorCode::InvalidBatch,
        }
    }

    pub fn detail(&self) -> String {
        match self {
            BatchError::Malformed {
                line,
                column,
                detail,
            } => {
                format!("malformed JSON at line {line}, column {column}: {detail}")
            }
            BatchError::NotABatch => {
                "a batch is a JSON array of events, an object {\"events\": [...]}, or NDJSON"
                    .to_owned()
            }
            BatchError::TooMany { len_max } => format!("a batch holds at most {len_max} events"),
            BatchError::Items { count, .. } => {
                format!("{count} events are invalid; nothing of this batch was stored")
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wrapped<'a> {
    #[serde(borrow)]
    events: Vec<&'a RawValue>,
}

/// Parses and validates a batch. Either every event is valid, or none is returned.
pub fn parse_batch(
    body: &[u8],
    format: BatchFormat,
    limits: &Limits,
) -> Result<Vec<NewEvent>, BatchError> {
    let mut events = Vec::new();
    let mut errors = Vec::new();
    let mut error_count = 0;
    let mut record =
        |index: usize, result: Result<NewEvent, EventError>, line: Option<usize>| match result {
            Ok(event) => events.push(event),
            Err(error) => {
                error_count += 1;
                if errors.len() < ITEM_ERRORS_LISTED_MAX {
                    let detail = match line {
                        Some(line) => format!("line {line}: {}", error.detail()),
                        None => error.detail(),
                    };
                    errors.push(ItemError {
                        index,
                        code: error.code(),
                        field: error.field().map(str::to_owned),
                        detail,
                    });
                }
            }
        };
    match format {
        BatchFormat::Json => {
            let items = parse_json_items(body)?;
            if items.len() > limits.batch_len_max {
                return Err(BatchError::TooMany {
                    len_max: limits.batch_len_max,
                });
            }
            for (index, item) in items.into_iter().enumerate() {
                record(index, event::parse_event_value(item, limits), None);
            }
        }
        BatchFormat::Ndjson => {
            let lines = body.split(|&byte| byte == b'\n').enumerate();
            let events_lines = lines.filter(|(_, line)| !line.trim_ascii().is_empty());
            for (index, (line_index, line)) in events_lines.enumerate() {
                if index == limits.batch_len_max {
                    return Err(BatchError::TooMany {
                        len_max: limits.batch_len_max,
                    });
                }
                record(
                    index,
                    event::parse_event(line, limits),
                    Some(line_index + 1),
                );
            }
        }
    }
    if error_count > 0 {
        return Err(BatchError::Items {
            errors,
            count: error_count,
        });
    }
    Ok(events)
}

fn parse_json_items(body: &[u8]) -> Result<Vec<&RawValue>, BatchError> {
    let malformed = |error: serde_json::Error| match error.classify() {
        serde_json::error::Category::Data => BatchError::NotABatch,
        _ => match EventError::from_json(&error) {
            EventError::Malformed {
                line,
                column,
                detail,
            } => BatchError::Malformed {
                line,
                column,
                detail,
            },
            _ => BatchError::NotABatch,
        },
    };
    match body.trim_ascii_start().first() {
        Some(b'[') => serde_json::from_slice::<Vec<&RawValue>>(body).map_err(malformed),
        Some(b'{') => serde_json::from_slice::<Wrapped<'_>>(body)
            .map(|wrapped| wrapped.events)
            .map_err(malformed),
        _ => match serde_json::from_slice::<&RawValue>(body) {
            Ok(_) => Err(BatchError::NotABatch),
            Err(error) => Err(malformed(error)),
        },
    }
}
