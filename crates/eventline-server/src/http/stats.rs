//! `GET /api/stats` (counts per time bucket and event type, for charts) and
//! `GET /api/event-types` (every type with its count). Both read the counts the store
//! keeps at ingest, so they stay fast over millions of events.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use eventline_core::stats::StatsQuery;
use serde::Serialize;

use super::{ApiError, AppState};

#[derive(Serialize)]
struct StatsAnswer {
    bucket: &'static str,
    since: i64,
    until: i64,
    /// Every non-empty bucket, oldest first.
    buckets: Vec<BucketCounts>,
    /// The window's count per type.
    types: BTreeMap<String, u64>,
    total: u64,
}

#[derive(Serialize)]
struct BucketCounts {
    /// The bucket's start, Unix milliseconds (UTC-aligned).
    start: i64,
    total: u64,
    counts: BTreeMap<String, u64>,
}

pub(super) async fn stats(
    State(state): State<AppState>,
    pairs: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let pairs = super::query_pairs(pairs)?;
    let query = StatsQuery::from_pairs(
        pairs
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str())),
        &state.config.limits,
        crate::now_ms(),
    )?;
    let (bucket, since, until) = (
        query.bucket.name(),
        query.filter.since_ms.unwrap_or_default(),
        query.filter.until_ms.unwrap_or_default(),
    );
    let rows = state
        .store
        .stats(query)
        .await
        .map_err(|error| ApiError::storage(&error))?;
    let mut buckets: Vec<BucketCounts> = Vec::new();
    let mut types: BTreeMap<String, u64> = BTreeMap::new();
    for row in rows {
        *types.entry(row.event_type.clone()).or_default() += row.count;
        match buckets.last_mut() {
            Some(last) if last.start == row.start_ms => {
                last.total += row.count;
                last.counts.insert(row.event_type, row.count);
            }
            _ => buckets.push(BucketCounts {
                start: row.start_ms,
                total: row.count,
                counts: BTreeMap::from([(row.event_type, row.count)]),
            }),
        }
    }
    let total = types.values().sum();
    Ok(Json(StatsAnswer {
        bucket,
        since,
        until,
        buckets,
        types,
        total,
    })
    .into_response())
}

#[derive(Serialize)]
struct EventTypesAnswer {
    event_types: Vec<EventTypeCount>,
}

#[derive(Serialize)]
struct EventTypeCount {
    event_type: String,
    count: u64,
}

pub(super) async fn event_types(State(state): State<AppState>) -> Result<Response, ApiError> {
    let types = state
        .store
        .event_types()
        .await
        .map_err(|error| ApiError::storage(&error))?;
    Ok(Json(EventTypesAnswer {
        event_types: types
            .into_iter()
            .map(|(event_type, count)| EventTypeCount { event_type, count })
            .collect(),
    })
    .into_response())
}
