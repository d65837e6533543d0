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
    /// A read whose parameters are in the body (`POST /api/events/query`): a contact
    /// token's contact is left in the request's [`ContactGrant`] for the handler to check.
    ReadInBody,
    /// Erasure and metrics: a secret key only.
    Admin,
}

/// The contact a contact token grants, on a read that checks it in its handler.
#[derive(Debug, Clone)]
pub(super) struct ContactGrant(pub String);

impl ContactGrant {
    /// Refuses a read of anything but the granted contact's events.
    pub(super) fn check(grant: Option<&ContactGrant>, asked: Option<&str>) -> Result<(), ApiError> {
        match grant {
            Some(ContactGrant(contact_id)) if asked != Some(contact_id.as_str()) => {
                Err(contact_only(contact_id))
            }
            _ => Ok(()),
        }
    }
}

fn contact_only(contact_id: &str) -> ApiError {
    ApiError::new(
        ErrorCode::Forbidden,
        format!(
            "this contact token reads only the events of contact {contact_id:?}; \
             add contact_id={contact_id} to the query"
        ),
    )
}

pub(super) async fn post(state: State<AppState>, request: Request, next: Next) -> Response {
    authorize(state, Need::Post, request, next).await
}

pub(super) async fn read(state: State<AppState>, request: Request, next: Next) -> Response {
    authorize(state, Need::Read, request, next).await
}

pub(super) async fn read_in_body(state: State<AppState>, request: Request, next: Next) -> Response {
    authorize(state, Need::ReadInBody, request, next).await
}

pub(super) async fn admin(state: State<AppState>, request: Request, next: Next) -> Response {
    authorize(state, Need::Admin, request, next).await
}

async fn authorize(
    State(state): State<AppState>,
    need: Need,
    mut request: Request,
    next: Next,
) -> Response {
    match check(&state, need, &request) {
        Ok(grant) => {
            if let Some(grant) = grant {
                request.extensions_mut().insert(grant);
            }
            next.run(request).await
        }
        Err(error) => error.into_response(),
    }
}

/// Whether the request may go on; with the contact its handler must check, if any.
fn check(
    state: &AppState,
    need: Need,
    request: &Request,
) -> Result<Option<ContactGrant>, ApiError> {
    let keys = &state.config.keys;
    let Some(credential) = credential(request)? else {
        let required = match need {
            Need::Post => keys.has_write_keys(),
            Need::Read | Need::ReadInBody | Need::Admin => keys.has_secret_keys(),
        };
        if !required {
            return Ok(None);
        }
        let what = match need {
            Need::Post => "posting needs a write key",
            Need::Read | Need::ReadInBody => "reading needs a secret key or a contact token",
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
        (Grant::Secret | Grant::Write, Need::Post) => {
            state.limiters.check_key(&credential).map(|()| None)
        }
        (Grant::Secret, _) => Ok(None),
        (Grant::Write, Need::Read | Need::ReadInBody | Need::Admin) => Err(ApiError::new(
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
                Ok(None)
            } else {
                Err(contact_only(&contact_id))
            }
        }
        (Grant::Contact(contact_id), Need::ReadInBody) => Ok(Some(ContactGrant(contact_id))),
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
