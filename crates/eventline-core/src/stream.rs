//! What a live stream asks for: the `getEvents` filters and where in commit order to
//! start.

use crate::cursor::StreamCursor;
use crate::event::Event;
use crate::limits::Limits;
use crate::query::{Filter, PageQuery, ParamError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamQuery {
    pub filter: Filter,
    /// Continue right after this position; `None`: from the events committed from now on.
    pub after: Option<StreamCursor>,
}

impl StreamQuery {
    /// Reads the query string of `GET /api/events/stream` and the `Last-Event-ID` header
    /// an `EventSource` sends when it reconnects. The header wins over `after`: it is the
    /// last event the client actually received.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
        last_event_id: Option<&str>,
        limits: &Limits,
    ) -> Result<StreamQuery, ParamError> {
        let mut after = None;
        let mut filters = Vec::new();
        for (name, value) in pairs {
            match name {
                "after" => {
                    if after.is_some() {
                        return Err(ParamError::new("after", "is given more than once"));
                    }
                    after = Some(value);
                }
                "offset" | "limit" | "order" => {
                    return Err(ParamError::new(
                        name,
                        "does not apply to a stream: it sends events in commit order as they arrive; start elsewhere with after",
                    ));
                }
                _ => filters.push((name, value)),
            }
        }
        let filter = PageQuery::from_pairs(filters, limits)?.filter;
        let (parameter, text) = match (last_event_id, after) {
            (Some(text), _) => ("Last-Event-ID", text),
            (None, Some(text)) => ("after", text),
            (None, None) => {
                return Ok(StreamQuery {
                    filter,
                    after: None,
                });
            }
        };
        let after = match text.trim() {
            "" => None,
            text => Some(StreamCursor::decode(text).ok_or_else(|| {
                ParamError::new(parameter, "must be the id of an event this stream sent")
            })?),
        };
        Ok(StreamQuery { filter, after })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn parse(pairs: &[(&str, &str)], header: Option<&str>) -> Result<StreamQuery, ParamError> {
        StreamQuery::from_pairs(pairs.iter().copied(), header, &Limits::default())
    }

    #[test]
    fn reads_filters_and_a_start() {
        let position = StreamCursor {
            commit: 42,
            id: Uuid::from_u128(7),
        };
        let text = position.encode();
        let query = parse(
            &[("eventTypes", "b,a"), ("scope", "app"), ("after", &text)],
            None,
        )
        .expect("valid");
        assert_eq!(query.filter.event_types, ["a", "b"]);
        assert_eq!(query.after, Some(position));
        // The header is what the client last received; it wins over the URL's start.
        let later = StreamCursor {
            commit: 43,
            ..position
        };
        let query = parse(&[("after", &text)], Some(&later.encode())).expect("valid");
        assert_eq!(query.after, Some(later));
        assert_eq!(parse(&[], None).expect("valid").after, None);
    }

    #[test]
    fn refuses_what_does_not_apply() {
        for name in ["offset", "limit", "order"] {
            let error = parse(&[(name, "1")], None).expect_err(name);
            assert_eq!(error.parameter, name);
        }
        assert_eq!(
            parse(&[("after", "c123")], None)
                .expect_err("page cursor")
                .parameter,
            "after"
        );
        assert_eq!(
            parse(&[], Some("nonsense")).expect_err("header").parameter,
            "Last-Event-ID"
        );
        assert_eq!(
            parse(&[("colour", "red")], None)
                .expect_err("unknown")
                .parameter,
            "colour"
        );
    }
}

/// A read in commit order: the matching events after a position, and how far the read
/// got. Every matching event in (`after`, `upto`] is in `events`, so the next read starts
/// at `upto` whether or not anything matched.
#[derive(Debug, Clone)]
pub struct StreamChunk {
    pub events: Vec<(StreamCursor, Event)>,
    pub upto: StreamCursor,
}

impl StreamChunk {
    /// A read in commit order from rows read in that order, at most `limit`: a full read
    /// ends at its last event (more may follow), a short one at the head it read up to.
    pub fn from_rows(
        events: Vec<(StreamCursor, Event)>,
        limit: u32,
        after: StreamCursor,
        head: StreamCursor,
    ) -> StreamChunk {
        let upto = match events.last() {
            Some((position, _)) if events.len() >= limit as usize => *position,
            _ => after.max(head),
        };
        StreamChunk { events, upto }
    }
}
