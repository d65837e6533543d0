//! Every bound Eventline enforces on input, with its default. The server makes each one
//! configurable; tests exceed each one.

use crate::scope::Scope;

#[derive(Debug, Clone)]
pub struct Limits {
    /// Encoded size of one event's `content` object.
    pub content_bytes_max: usize,
    /// Body of a single-event post: the content plus room for the other fields.
    pub event_body_bytes_max: usize,
    /// Events in one batch request.
    pub batch_len_max: usize,
    /// Body of one batch request (after gzip decoding).
    pub batch_body_bytes_max: usize,
    /// Events in one page of a query.
    pub page_len_max: u32,
    /// Page length when the query does not say.
    pub page_len_default: u32,
    /// A numeric `offset` walks the index, so it is bounded; the cursor is not.
    pub offset_max: u64,
    /// Names in one `event_types` filter.
    pub event_types_len_max: usize,
    /// Scope of an event posted without one.
    pub scope_default: Scope,
}

/// Bytes a single-event body may carry beyond its content: the id, type, contact, times.
const EVENT_ENVELOPE_BYTES_MAX: usize = 4 * 1024;

impl Default for Limits {
    fn default() -> Limits {
        let content_bytes_max = 64 * 1024;
        Limits {
            content_bytes_max,
            event_body_bytes_max: content_bytes_max + EVENT_ENVELOPE_BYTES_MAX,
            batch_len_max: 10_000,
            batch_body_bytes_max: 10 * 1024 * 1024,
            page_len_max: 1_000,
            page_len_default: 50,
            offset_max: 100_000,
            event_types_len_max: 100,
            scope_default: Scope::App,
        }
    }
}

impl Limits {
    /// Sets the content limit and the single-event body limit that follows from it.
    pub fn with_content_bytes_max(mut self, content_bytes_max: usize) -> Limits {
        self.content_bytes_max = content_bytes_max;
        self.event_body_bytes_max = content_bytes_max + EVENT_ENVELOPE_BYTES_MAX;
        self
    }
}
