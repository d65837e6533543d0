//! `GET /api/events/export`: every event matching the `getEvents` filters, as NDJSON,
//! streamed a page at a time, so the server's memory stays the same however many events
//! match. gzip when the client accepts it (the compression layer).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use eventline_core::query::{Page, PageQuery, ParamError, Start};
use eventline_store::Store;
use futures::StreamExt;

use super::{ApiError, AppState};
use crate::ingest::ErrorChain;

/// Events read from the store per step of the export.
const EXPORT_PAGE_EVENTS: u32 = 1_000;

pub(super) async fn export(
    State(state): State<AppState>,
    pairs: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let pairs = super::query_pairs(pairs)?;
    if pairs.iter().any(|(name, _)| name == "limit") {
        return Err(ApiError::from(ParamError {
            parameter: "limit".to_owned(),
            detail: "export answers every matching event; read a part with GET /api/events"
                .to_owned(),
        }));
    }
    let mut query = PageQuery::from_pairs(
        pairs
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str())),
        &state.config.limits,
    )?;
    query.limit = EXPORT_PAGE_EVENTS;
    // The first page is read before answering, so that a store that cannot serve gets a
    // proper 503 rather than a broken stream.
    let first = state
        .store
        .page(query.clone())
        .await
        .map_err(|error| ApiError::storage(&error))?;
    let pages = futures::stream::unfold(
        Some(Export::Send(Box::new(Step {
            store: Arc::clone(&state.store),
            query,
            page: first,
        }))),
        next_chunk,
    )
    // The body may be polled once more after its end.
    .fuse();
    Ok((
        [(CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(pages),
    )
        .into_response())
}

struct Step {
    store: Arc<dyn Store>,
    query: PageQuery,
    page: Page,
}

/// Where the export stands between chunks.
enum Export {
    /// A page read, to send; then the next. Boxed: a query with content filters is large.
    Send(Box<Step>),
    /// The store failed after some events were sent: end the body with an error, so the
    /// client sees an incomplete transfer, never a silently short export.
    Fail,
}

async fn next_chunk(
    export: Option<Export>,
) -> Option<(Result<Bytes, std::io::Error>, Option<Export>)> {
    let Step {
        store,
        mut query,
        page,
    } = match export? {
        Export::Send(step) => *step,
        Export::Fail => return Some((Err(std::io::Error::other("the store failed")), None)),
    };
    let mut chunk = Vec::with_capacity(page.events.len() * 320);
    for event in &page.events {
        if let Err(error) = serde_json::to_writer(&mut chunk, event) {
            return Some((Err(std::io::Error::other(error)), None));
        }
        chunk.push(b'\n');
    }
    let next = match page.next {
        None => None,
        Some(cursor) => {
            query.start = Start::After(cursor);
            match store.page(query.clone()).await {
                Ok(page) => Some(Export::Send(Box::new(Step { store, query, page }))),
                Err(error) => {
                    tracing::error!(error = %ErrorChain(&error), "export stopped: the store failed");
                    Some(Export::Fail)
                }
            }
        }
    };
    Some((Ok(Bytes::from(chunk)), next))
}
