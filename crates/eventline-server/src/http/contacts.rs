//! `/api/contacts/{contact_id}/…`: erasing a contact's events (GDPR), and suppression.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::delete;
use axum::{Json, Router, middleware};
use serde::Serialize;

use super::{ApiError, AppState, auth};

pub(super) fn router(state: &AppState) -> Router<AppState> {
    let erasing = || middleware::from_fn_with_state(state.clone(), auth::admin);
    Router::new()
        .route(
            "/api/contacts/{contact_id}/events",
            delete(erase).route_layer(erasing()),
        )
        .route(
            "/api/contacts/{contact_id}/suppression",
            delete(unsuppress).route_layer(erasing()),
        )
}

#[derive(Serialize)]
struct Erased {
    contact_id: String,
    erased: u64,
    suppressed: bool,
}

async fn erase(
    State(state): State<AppState>,
    Path(contact_id): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let mut suppress = false;
    for (name, value) in pairs {
        match (name.as_str(), value.as_str()) {
            ("suppress", "true") => suppress = true,
            ("suppress", "false") => suppress = false,
            ("key", _) => {}
            ("suppress", _) => return Err(parameter_error("suppress", "must be true or false")),
            (other, _) => {
                return Err(parameter_error(
                    other,
                    "unknown parameter; this takes suppress",
                ));
            }
        }
    }
    let erased = state
        .store
        .erase_contact(&contact_id, suppress)
        .await
        .map_err(|error| ApiError::storage(&error))?;
    // The audit trail: one line per erasure, on its own target so it can be routed.
    tracing::info!(target: "eventline::audit", contact_id = %contact_id, erased, suppress, "contact erased");
    Ok(Json(Erased {
        contact_id,
        erased,
        suppressed: suppress,
    })
    .into_response())
}

#[derive(Serialize)]
struct Unsuppressed {
    contact_id: String,
    /// Whether the contact was suppressed before this request.
    was_suppressed: bool,
}

async fn unsuppress(
    State(state): State<AppState>,
    Path(contact_id): Path<String>,
) -> Result<Response, ApiError> {
    let was_suppressed = state
        .store
        .unsuppress_contact(&contact_id)
        .await
        .map_err(|error| ApiError::storage(&error))?;
    tracing::info!(target: "eventline::audit", contact_id = %contact_id, was_suppressed, "contact unsuppressed");
    Ok(Json(Unsuppressed {
        contact_id,
        was_suppressed,
    })
    .into_response())
}

fn parameter_error(parameter: &str, detail: &str) -> ApiError {
    ApiError::from(eventline_core::query::ParamError {
        parameter: parameter.to_owned(),
        detail: detail.to_owned(),
    })
}
