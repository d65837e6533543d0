//! Positions in the two orders events are read in: the page cursor, in (timestamp, id)
//! order, and the stream cursor, in commit order.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use uuid::Uuid;

/// Cursors start with this letter so that `offset` can never mistake one for a count.
const CURSOR_PREFIX: char = 'c';
const CURSOR_BYTES: usize = 8 + 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    pub timestamp_ms: i64,
    pub id: Uuid,
}

impl Cursor {
    /// An opaque, URL-safe text form.
    pub fn encode(&self) -> String {
        encode(CURSOR_PREFIX, self.timestamp_ms.to_be_bytes(), self.id)
    }

    pub fn decode(text: &str) -> Option<Cursor> {
        let (timestamp, id) = decode(CURSOR_PREFIX, text)?;
        Some(Cursor {
            timestamp_ms: i64::from_be_bytes(timestamp),
            id,
        })
    }
}

/// Stream cursors start with this letter: one is never taken for a page cursor.
const STREAM_CURSOR_PREFIX: char = 's';

/// A place in commit order, the order the live stream delivers events in: every event
/// committed after another has a greater position, whatever its `timestamp`.
///
/// `commit` is the store's commit counter (the embedded store's row sequence, PostgreSQL's
/// transaction id); `id` orders the events of one commit. The stream sends it as each
/// event's SSE id, so a client that reconnects with `Last-Event-ID` continues right after.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamCursor {
    pub commit: u64,
    pub id: Uuid,
}

impl StreamCursor {
    /// A place in the log store's commit order: the position alone orders events, so the
    /// id part is the largest there is, and the position of an event equals the head's at
    /// the same place.
    pub fn at_seq(seq: u64) -> StreamCursor {
        StreamCursor {
            commit: seq,
            id: Uuid::max(),
        }
    }

    pub fn encode(&self) -> String {
        encode(STREAM_CURSOR_PREFIX, self.commit.to_be_bytes(), self.id)
    }

    pub fn decode(text: &str) -> Option<StreamCursor> {
        let (commit, id) = decode(STREAM_CURSOR_PREFIX, text)?;
        Some(StreamCursor {
            commit: u64::from_be_bytes(commit),
            id,
        })
    }
}

/// Where a stream that starts now begins: after `position`, less the events that come
/// after it in commit order but were already committed when the stream started. (On
/// PostgreSQL, transactions after the oldest one still running may have ended already;
/// the embedded store has none such.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamStart {
    pub position: StreamCursor,
    /// Commits from `position.commit` up to here had ended at the start, but `running`.
    pub ended_below: u64,
    /// Commits still running at the start.
    pub running: Vec<u64>,
}

impl StreamStart {
    /// A start with nothing committed after `position`.
    pub fn at(position: StreamCursor) -> StreamStart {
        StreamStart {
            position,
            ended_below: position.commit,
            running: Vec::new(),
        }
    }

    /// Whether an event at `at` was committed before the stream started.
    pub fn committed_before(&self, at: StreamCursor) -> bool {
        (self.position.commit..self.ended_below).contains(&at.commit)
            && !self.running.contains(&at.commit)
    }

    /// Whether no event at or after `at` can have been committed before the start.
    pub fn is_behind(&self, at: StreamCursor) -> bool {
        at.commit >= self.ended_below
    }
}

/// `prefix` then 8 bytes of number and the id's 16, in URL-safe base64.
fn encode(prefix: char, number: [u8; 8], id: Uuid) -> String {
    let mut bytes = [0u8; CURSOR_BYTES];
    bytes[..8].copy_from_slice(&number);
    bytes[8..].copy_from_slice(id.as_bytes());
    let mut text = String::with_capacity(33);
    text.push(prefix);
    URL_SAFE_NO_PAD.encode_string(bytes, &mut text);
    text
}

fn decode(prefix: char, text: &str) -> Option<([u8; 8], Uuid)> {
    let encoded = text.strip_prefix(prefix)?;
    let bytes = URL_SAFE_NO_PAD.decode(encoded).ok()?;
    let bytes: [u8; CURSOR_BYTES] = bytes.try_into().ok()?;
    let (number, id) = bytes.split_at(8);
    Some((number.try_into().ok()?, Uuid::from_slice(id).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let cursor = Cursor {
            timestamp_ms: 1_499_299_200_123,
            id: Uuid::from_u128(0x0190_b3c4_4f1e_7cc0_8d2a_5e2b_1c9d_7f10),
        };
        let text = cursor.encode();
        assert!(text.starts_with('c'));
        assert_eq!(Cursor::decode(&text), Some(cursor));
        for garbage in ["", "c", "123", "cAAAA", &text[1..], &format!("{text}A")] {
            assert_eq!(Cursor::decode(garbage), None, "{garbage:?}");
        }
    }

    #[test]
    fn stream_cursors_round_trip_and_differ_from_page_cursors() {
        let position = StreamCursor {
            commit: 7_000_000_123,
            id: Uuid::from_u128(0x0190_b3c4_4f1e_7cc0_8d2a_5e2b_1c9d_7f10),
        };
        let text = position.encode();
        assert_eq!(StreamCursor::decode(&text), Some(position));
        assert_eq!(Cursor::decode(&text), None);
        let page = Cursor {
            timestamp_ms: 1,
            id: Uuid::nil(),
        };
        assert_eq!(StreamCursor::decode(&page.encode()), None);
        for garbage in ["", "s", "sAAAA", &format!("{text}A")] {
            assert_eq!(StreamCursor::decode(garbage), None, "{garbage:?}");
        }
    }
}
