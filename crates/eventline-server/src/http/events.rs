//! `/api/events`: post one event, post a batch, read a page.

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use eventline_core::batch::{self, BatchError, BatchFormat, ItemError};
use eventline_core::event::{self, Event};
use eventline_core::problem::ErrorCode;
use eventline_core::query::PageQuery;
use eventline_store::Outcome;
use serde::Serialize;
use uuid::Uuid;

use super::auth::ContactGrant;
use super::body::{self, Accepts, BodyFormat};
use super::{ApiError, AppState, auth};

/// A query's JSON body: its read parameters and up to 20 content filters, whose `in`
/// lists hold up to 1,000 values each.
const QUERY_BODY_BYTES_MAX: usize = 1 << 20;

pub(super) fn router(state: &AppState) -> Router<AppState> {
    let posting = || middleware::from_fn_with_state(state.clone(), auth::post);
    let reading = || middleware::from_fn_with_state(state.clone(), auth::read);
    let reading_in_body = || middleware::from_fn_with_state(state.clone(), auth::read_in_body);
    // Every type across every contact: not for a contact token.
    let admin = || middleware::from_fn_with_state(state.clone(), auth::admin);
    Router::new()
        .route(
            "/api/events",
            post(post_event)
                .route_layer(posting())
                .merge(get(get_events).route_layer(reading())),
        )
        .route("/api/events/post", post(post_event).route_layer(posting()))
        .route("/api/events/get", get(get_events).route_layer(reading()))
        // The path in the seed SDK documentation's `getEvents` example.
        .route("/api/contacts/get", get(get_events).route_layer(reading()))
        .route("/api/events/batch", post(post_batch).route_layer(posting()))
        .route(
            "/api/events/query",
            post(query_events).route_layer(reading_in_body()),
        )
        .route(
            "/api/events/export",
            get(super::export::export).route_layer(reading()),
        )
        .route(
            "/api/events/stream",
            get(super::stream::stream).route_layer(reading()),
        )
        .route(
            "/api/stats",
            get(super::stats::stats).route_layer(reading()),
        )
        .route(
            "/api/event-types",
            get(super::stats::event_types).route_layer(admin()),
        )
        .route(
            "/api/properties",
            get(super::properties::properties).route_layer(admin()),
        )
        .route(
            "/api/properties/values",
            get(super::properties::values).route_layer(admin()),
        )
}

async fn post_event(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    // Read once per request: it is the events' `received_at`.
    let received_at_ms = crate::now_ms();
    body::format(&headers, Accepts::Json)?;
    let bytes = body::read(body, state.config.limits.event_body_bytes_max).await?;
    let event =
        event::parse_event(&bytes, &state.config.limits)?.stamp(received_at_ms, Uuid::now_v7())?;
    // The answer to a new event is the event as submitted; the store answers a replay
    // with the copy it stored first.
    let submitted = event.clone();
    match state.ingest.submit(vec![event]).await? {
        Outcome::Stored(mut appended) => {
            let appended = appended
                .pop()
                .ok_or_else(|| ApiError::new(ErrorCode::Internal, "the store answered no event"))?;
            match appended.replay_of {
                Some(stored) => Ok((StatusCode::OK, Json(stored)).into_response()),
                None => Ok((StatusCode::CREATED, Json(submitted)).into_response()),
            }
        }
        Outcome::Conflict { id, .. } => Err(ApiError::conflict(None, id)),
        Outcome::Suppressed { contact_id, .. } => Err(ApiError::suppressed(None, &contact_id)),
    }
}

#[derive(Serialize)]
struct BatchAnswer {
    /// Events stored by this request.
    stored: usize,
    /// Events whose id was already stored with the same fields.
    replayed: usize,
    /// Every event's id, in the order sent.
    ids: Vec<Uuid>,
}

async fn post_batch(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    // Read once per request: it is the events' `received_at`.
    let received_at_ms = crate::now_ms();
    let format = match body::format(&headers, Accepts::JsonOrNdjson)? {
        BodyFormat::Json => BatchFormat::Json,
        BodyFormat::Ndjson => BatchFormat::Ndjson,
    };
    let bytes = body::read(body, state.config.limits.batch_body_bytes_max).await?;
    let new_events = batch::parse_batch(&bytes, format, &state.config.limits)?;
    // The events own copies of what they need: the body (megabytes for a large batch)
    // is not held through the commit.
    drop(bytes);
    let events = stamp_all(new_events, received_at_ms)?;
    match state.ingest.submit(events).await? {
        Outcome::Stored(appended) => {
            let replayed = appended
                .iter()
                .filter(|appended| appended.replayed())
                .count();
            let answer = BatchAnswer {
                stored: appended.len() - replayed,
                replayed,
                ids: appended.iter().map(|appended| appended.id).collect(),
            };
            let status = if answer.stored > 0 || answer.ids.is_empty() {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok((status, Json(answer)).into_response())
        }
        Outcome::Conflict { index, id } => Err(ApiError::conflict(Some(index), id)),
        Outcome::Suppressed { index, contact_id } => {
            Err(ApiError::suppressed(Some(index), &contact_id))
        }
    }
}

/// Stamps every event with the same receive time; a batch is refused whole if any
/// event's clock correction fails.
fn stamp_all(
    new_events: Vec<event::NewEvent>,
    received_at_ms: i64,
) -> Result<Vec<Event>, ApiError> {
    let mut events = Vec::with_capacity(new_events.len());
    let mut errors = Vec::new();
    for (index, new_event) in new_events.into_iter().enumerate() {
        match new_event.stamp(received_at_ms, Uuid::now_v7()) {
            Ok(event) => events.push(event),
            Err(error) => errors.push(ItemError {
                index,
                code: error.code,
                field: Some(error.field),
                detail: error.detail,
            }),
        }
    }
    if errors.is_empty() {
        return Ok(events);
    }
    let count = errors.len();
    errors.truncate(batch::ITEM_ERRORS_LISTED_MAX);
    Err(BatchError::Items { errors, count }.into())
}

#[derive(Serialize)]
struct PageAnswer {
    events: Vec<Event>,
    next_offset: Option<String>,
}

async fn get_events(
    State(state): State<AppState>,
    pairs: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let pairs = super::query_pairs(pairs)?;
    let query = PageQuery::from_pairs(
        pairs
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str())),
        &state.config.limits,
    )?;
    answer_page(&state, query).await
}

/// `POST /api/events/query`: a read in the JSON form, answered as `GET /api/events`.
async fn query_events(
    State(state): State<AppState>,
    grant: Option<Extension<ContactGrant>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    body::format(&headers, Accepts::Json)?;
    let bytes = body::read(body, QUERY_BODY_BYTES_MAX).await?;
    let json: serde_json::Value = serde_json::from_slice(&bytes).map_err(|error| {
        ApiError::new(
            ErrorCode::MalformedJson,
            format!("the query is not JSON: {error}"),
        )
    })?;
    let query = PageQuery::from_json(&json, &state.config.limits)?;
    ContactGrant::check(
        grant.as_ref().map(|Extension(grant)| grant),
        query.filter.contact_id.as_deref(),
    )?;
    answer_page(&state, query).await
}

async fn answer_page(state: &AppState, query: PageQuery) -> Result<Response, ApiError> {
    let page = state
        .store
        .page(query)
        .await
        .map_err(|error| ApiError::storage(&error))?;
    let answer = PageAnswer {
        events: page.events,
        next_offset: page.next.map(|cursor| cursor.encode()),
    };
    Ok(Json(answer).into_response())
}
