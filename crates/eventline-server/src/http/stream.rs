//! `GET /api/events/stream`: the `getEvents` filters, live, as Server-Sent Events. Each
//! event's SSE id is its place in commit order; a client that reconnects with
//! `Last-Event-ID` (as `EventSource` does by itself) continues right after it. The fan-out
//! and its bounds are in `crate::live`.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use eventline_core::cursor::StreamCursor;
use eventline_core::problem::ErrorCode;
use eventline_core::stream::StreamQuery;
use futures::StreamExt;
use serde::Serialize;

use super::{ApiError, AppState};
use crate::live::{Message, SubscribeError, Subscription};

/// How long an `EventSource` waits before it reconnects.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);

#[derive(Serialize)]
struct Closed {
    code: &'static str,
    detail: &'static str,
}

pub(super) async fn stream(
    State(state): State<AppState>,
    headers: HeaderMap,
    pairs: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let pairs = super::query_pairs(pairs)?;
    // Bytes that are not text are no stream id either: the core refuses them as such.
    let last_event_id = headers
        .get("last-event-id")
        .map(|value| String::from_utf8_lossy(value.as_bytes()));
    let query = StreamQuery::from_pairs(
        pairs
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str())),
        last_event_id.as_deref(),
        &state.config.limits,
    )?;
    let subscription = state
        .live
        .subscribe(query)
        .await
        .map_err(|error| match error {
            SubscribeError::Full => ApiError::new(
                ErrorCode::StreamsFull,
                "every live stream place of this server is taken; retry later",
            ),
            SubscribeError::Store(error) => ApiError::storage(&error),
        })?;
    // The start first: a client that reconnects before any event continues from here.
    let hello = position(subscription.position()).retry(RECONNECT_DELAY);
    let messages = futures::stream::unfold(Some(subscription), next_message);
    let events = futures::stream::once(async { Ok(hello) }).chain(messages);
    Ok((
        // Proxies that buffer answers (nginx) pass this one through as it comes.
        [("x-accel-buffering", "no")],
        Sse::new(events),
    )
        .into_response())
}

/// Where the stream stands, with nothing new to send: an `EventSource` takes the id as
/// its `lastEventId` and dispatches nothing unless a `position` listener is added.
fn position(at: StreamCursor) -> SseEvent {
    let id = at.encode();
    SseEvent::default().event("position").data(&id).id(id)
}

async fn next_message(
    subscription: Option<Subscription>,
) -> Option<(Result<SseEvent, Infallible>, Option<Subscription>)> {
    let mut subscription = subscription?;
    let event = match subscription.next().await? {
        Message::Event(position, event) => {
            let event_sse = SseEvent::default().id(position.encode());
            match event_sse.json_data(&event) {
                Ok(sse) => sse,
                Err(error) => {
                    tracing::error!(%error, "live stream closed: an event cannot be encoded");
                    return None;
                }
            }
        }
        Message::Position(at) => position(at),
        Message::Closed(reason) => {
            let closed = Closed {
                code: reason.code(),
                detail: reason.detail(),
            };
            SseEvent::default()
                .event("closed")
                .json_data(closed)
                .unwrap_or_else(|_| SseEvent::default().event("closed"))
        }
    };
    Some((Ok(event), Some(subscription)))
}
