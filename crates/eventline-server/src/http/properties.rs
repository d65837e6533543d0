//! Discovery: `GET /api/properties` (the content paths events have, with their JSON
//! types and counts) and `GET /api/properties/values` (a path's most common values),
//! from the store's indexes; what the dashboard offers when a filter is added.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use eventline_core::properties;
use serde::Serialize;
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::openapi::{AdminErrors, ProblemDoc};
use super::{ApiError, AppState};

#[derive(Serialize, ToSchema)]
#[schema(as = Properties)]
pub struct PropertiesAnswer {
    /// The most common first; at most 1,000.
    properties: Vec<PropertyAnswer>,
    /// False when some events were not counted (PostgreSQL reads the newest 100,000).
    complete: bool,
}

#[derive(Serialize, ToSchema)]
#[schema(as = Property)]
pub struct PropertyAnswer {
    /// The dot path, as a filter names it (`address.city`).
    path: String,
    /// The path's keys, for a key holding a dot.
    keys: Vec<String>,
    /// Values at the path.
    events: u64,
    /// Values of each JSON type: `string`, `number`, `boolean`, `null`, `array`, `object`.
    #[schema(value_type = Object)]
    types: BTreeMap<&'static str, u64>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = PropertyValues)]
pub struct ValuesAnswer {
    path: String,
    /// The most common first.
    values: Vec<ValueAnswer>,
    /// False when the store does not count every value of the path: more than 1,024
    /// distinct ones or long ones in a segment (ids, free text), or a sample.
    complete: bool,
}

#[derive(Serialize, ToSchema)]
#[schema(as = PropertyValue)]
pub struct ValueAnswer {
    /// A string, number, boolean or null.
    value: Value,
    events: u64,
}

// The parameters' documentation: read by utoipa's derive, the handlers read the query.
#[allow(dead_code)]
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PropertiesParams {
    /// Only the paths of events of this type.
    event_type: Option<String>,
}

#[allow(dead_code)]
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ValuesParams {
    /// Required: the dot path (`address.city`).
    path: String,
    /// Values answered, 1 to 100; 20 by default.
    limit: Option<u32>,
}

#[utoipa::path(get, path = "/api/properties", tag = "reading", params(PropertiesParams),
    responses(
        (status = 200, description = "The content paths, with their types and counts", body = PropertiesAnswer),
        (status = 400, description = "A parameter is invalid or unknown", body = ProblemDoc, content_type = "application/problem+json"),
        AdminErrors,
    ),
    security((), ("bearer" = []), ("key" = [])))]
pub(super) async fn properties(
    State(state): State<AppState>,
    pairs: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let pairs = super::query_pairs(pairs)?;
    let event_type = properties::properties_query(
        pairs
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str())),
    )?;
    let found = state
        .store
        .properties(event_type.as_deref())
        .await
        .map_err(|error| ApiError::storage(&error))?;
    Ok(Json(PropertiesAnswer {
        properties: found
            .properties
            .into_iter()
            .map(|property| PropertyAnswer {
                path: property.keys.join("."),
                events: property.events(),
                types: property
                    .type_counts()
                    .map(|(json_type, count)| (json_type.name(), count))
                    .collect(),
                keys: property.keys,
            })
            .collect(),
        complete: found.complete,
    })
    .into_response())
}

#[utoipa::path(get, path = "/api/properties/values", tag = "reading", params(ValuesParams),
    responses(
        (status = 200, description = "The path's most common values", body = ValuesAnswer),
        (status = 400, description = "The path is missing or invalid, or a parameter unknown", body = ProblemDoc, content_type = "application/problem+json"),
        AdminErrors,
    ),
    security((), ("bearer" = []), ("key" = [])))]
pub(super) async fn values(
    State(state): State<AppState>,
    pairs: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let pairs = super::query_pairs(pairs)?;
    let (keys, limit) = properties::values_query(
        pairs
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str())),
    )?;
    let found = state
        .store
        .property_values(&keys, limit)
        .await
        .map_err(|error| ApiError::storage(&error))?;
    Ok(Json(ValuesAnswer {
        path: keys.join("."),
        values: found
            .values
            .into_iter()
            .map(|value| ValueAnswer {
                value: value.value,
                events: value.events,
            })
            .collect(),
        complete: found.complete,
    })
    .into_response())
}
