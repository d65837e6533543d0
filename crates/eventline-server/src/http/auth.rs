//! Who may call what (SPEC §5). A write key posts; a secret key does everything; a
//! contact token reads one contact's events. Without secret keys the server is in open
//! mode, which `App::open` allows only on a loopback address.
//!
//! A credential travels as `Authorization: Bearer <key>` or as `?key=<key>`. It is never
//! logged: the request span holds the path only.

use axum::extract::{Query, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use eventline_core::access::Grant;
use eventline_core::problem::ErrorCode;

use super::{ApiError, AppState};

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Need {
    Post,
    Read,
    /// Erasure and metrics: a secret key only.
    Admin,
}

pub(super) async fn post(state: State<AppState>, request: Request, next: Next) -> Response {
    authorize(state, Need::Post, request, next).await
}

pub(super) async fn read(state: State<AppState>, request: Request, next: Next) -> Response {
    authorize(state, Need::Read, request, next).await
}

pub(super) async fn admin(state: State<AppState>, request: Request, next: Next) -> Response {
    authorize(state, Need::Admin, request, next).await
}

async fn authorize(
    State(state): State<AppState>,
    need: Need,
    request: Request,
    next: Next,
) -> Response {
    match check(&state, need, &request) {
        Ok(()) => next.run(request).await,
        Err(error) => error.into_response(),
    }
}

fn check(state: &AppState, need: Need, request: &Request) -> Result<(), ApiError> {
    let keys = &state.config.keys;
    let Some(credential) = credential(request)? else {
        let required = match need {
            Need::Post => keys.has_write_keys(),
            Need::Read | Need::Admin => keys.has_secret_keys(),
        };
        if !required {
            return Ok(());
        }
        let what = match need {
            Need::Post => "posting needs a write key",
            Need::Read => "reading needs a secret key or a contact token",
            Need::Admin => "this needs a secret key",
        };
        return Err(ApiError::new(
            ErrorCode::KeyRequired,
            format!("{what}: send it as `Authorization: Bearer <key>` or as `?key=<key>`"),
        ));
    };
    let grant = keys
        .check(&credential, crate::now_ms() / 1000)
        .map_err(|error| ApiError::new(ErrorCode::KeyInvalid, error.to_string()))?;
    match (grant, need) {
        (Grant::Secret | Grant::Write, Need::Post) => state.limiters.check_key(&credential),
        (Grant::Secret, _) => Ok(()),
        (Grant::Write, Need::Read | Need::Admin) => Err(ApiError::new(
            ErrorCode::Forbidden,
            "a write key may only post; this needs a secret key",
        )),
        (Grant::Contact(_), Need::Post | Need::Admin) => Err(ApiError::new(
            ErrorCode::Forbidden,
            "a contact token may only read its contact's events",
        )),
        (Grant::Contact(contact_id), Need::Read) => {
            let asked = asked_contacts(request);
            if !asked.is_empty() && asked.iter().all(|asked| *asked == contact_id) {
                Ok(())
            } else {
                Err(ApiError::new(
                    ErrorCode::Forbidden,
                    format!(
                        "this contact token reads only the events of contact {contact_id:?}; \
                         add contact_id={contact_id} to the query"
                    ),
                ))
            }
        }
    }
}

/// The request's key or token: the `Authorization: Bearer` header, else the `key` query
/// parameter.
fn credential(request: &Request) -> Result<Option<String>, ApiError> {
    if let Some(value) = request.headers().get(AUTHORIZATION) {
        let value = value.to_str().unwrap_or_default();
        let (scheme, key) = value.split_once(' ').unwrap_or((value, ""));
        if !scheme.eq_ignore_ascii_case("bearer") || key.trim().is_empty() {
            return Err(ApiError::new(
                ErrorCode::KeyInvalid,
                "the Authorization header must be `Bearer <key>`",
            ));
        }
        return Ok(Some(key.trim().to_owned()));
    }
    Ok(query_pairs(request)
        .into_iter()
        .find(|(name, _)| name == "key")
        .map(|(_, key)| key))
}

/// The contacts a read asks for, under either parameter name.
fn asked_contacts(request: &Request) -> Vec<String> {
    query_pairs(request)
        .into_iter()
        .filter(|(name, _)| name == "contact_id" || name == "contactId")
        .map(|(_, value)| value)
        .collect()
}

fn query_pairs(request: &Request) -> Vec<(String, String)> {
    Query::<Vec<(String, String)>>::try_from_uri(request.uri())
        .map(|Query(pairs)| pairs)
        .unwrap_or_default()
}
