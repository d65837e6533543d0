//! The one HTTP error type. Every error answer is RFC 9457 `application/problem+json`, its
//! code taken from the core's table; internal causes are logged here, once, and never sent.

use axum::http::header::{CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use eventline_core::batch::{BatchError, ItemError};
use eventline_core::event::{EventError, FieldError};
use eventline_core::problem::ErrorCode;
use eventline_core::query::ParamError;
use serde::Serialize;

use super::rate_limit;
use crate::ingest::{ErrorChain, IngestError};

const PROBLEM_JSON: &str = "application/problem+json";
/// How long a client should wait before retrying an overloaded or failing server.
const RETRY_AFTER_SECONDS: u32 = 1;

/// Boxed: errors are rare, and a small `Result` keeps the request path lean.
#[derive(Debug)]
pub struct ApiError(Box<ProblemDetails>);

#[derive(Debug)]
struct ProblemDetails {
    code: ErrorCode,
    detail: String,
    field: Option<String>,
    parameter: Option<String>,
    position: Option<(usize, usize)>,
    errors: Vec<ItemError>,
    error_count: Option<usize>,
    /// For a rate limit: its rate per second, and when to come back.
    rate_limit: Option<(u32, u64)>,
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    problem_type: String,
    title: &'static str,
    status: u16,
    detail: &'a str,
    code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameter: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    column: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_count: Option<usize>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<ProblemItem<'a>>,
}

#[derive(Serialize)]
struct ProblemItem<'a> {
    index: usize,
    code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    detail: &'a str,
}

impl ApiError {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> ApiError {
        ApiError(Box::new(ProblemDetails {
            code,
            detail: detail.into(),
            field: None,
            parameter: None,
            position: None,
            errors: Vec::new(),
            error_count: None,
            rate_limit: None,
        }))
    }

    /// 429 for a client over its rate limit of `per_second`, to retry in `retry_after_s`.
    pub fn rate_limited(what: &str, per_second: u32, retry_after_s: u64) -> ApiError {
        let mut api_error = ApiError::new(
            ErrorCode::RateLimited,
            format!(
                "{what} is over its limit of {per_second} requests per second; retry in {retry_after_s} s"
            ),
        );
        api_error.0.rate_limit = Some((per_second, retry_after_s));
        api_error
    }

    pub fn code(&self) -> ErrorCode {
        self.0.code
    }

    /// A store failure: logged with its causes, answered as a retryable 503.
    pub fn storage(error: &eventline_store::Error) -> ApiError {
        tracing::error!(error = %ErrorChain(error), "store failed");
        metrics::counter!(crate::telemetry::STORE_ERRORS, "operation" => "request").increment(1);
        ApiError::new(
            ErrorCode::StorageUnavailable,
            "the store cannot serve this request now; retry later",
        )
    }

    pub fn conflict(index: Option<usize>, id: uuid::Uuid) -> ApiError {
        let detail = format!("an event with id {id} is already stored with different fields");
        ApiError::refused_event(ErrorCode::IdConflict, index, "id", detail)
    }

    pub fn suppressed(index: Option<usize>, contact_id: &str) -> ApiError {
        let detail = format!(
            "contact {contact_id:?} was erased with suppression; its events are refused until it is unsuppressed"
        );
        ApiError::refused_event(ErrorCode::ContactSuppressed, index, "contact_id", detail)
    }

    /// One event refused by the store: alone, or at `index` of a batch.
    fn refused_event(
        code: ErrorCode,
        index: Option<usize>,
        field: &str,
        detail: String,
    ) -> ApiError {
        match index {
            None => {
                let mut api_error = ApiError::new(code, detail);
                api_error.0.field = Some(field.to_owned());
                api_error
            }
            Some(index) => {
                let mut api_error = ApiError::new(
                    code,
                    format!("event {index}: {detail}; nothing of this batch was stored"),
                );
                api_error.0.errors = vec![ItemError {
                    index,
                    code,
                    field: Some(field.to_owned()),
                    detail,
                }];
                api_error.0.error_count = Some(1);
                api_error
            }
        }
    }
}

impl From<EventError> for ApiError {
    fn from(error: EventError) -> ApiError {
        let mut api_error = ApiError::new(error.code(), error.detail());
        match error {
            EventError::Malformed { line, column, .. } => {
                api_error.0.position = Some((line, column))
            }
            EventError::Field(FieldError { field, .. }) => api_error.0.field = Some(field),
            EventError::NotAnObject => {}
        }
        api_error
    }
}

impl From<FieldError> for ApiError {
    fn from(error: FieldError) -> ApiError {
        EventError::Field(error).into()
    }
}

impl From<BatchError> for ApiError {
    fn from(error: BatchError) -> ApiError {
        let mut api_error = ApiError::new(error.code(), error.detail());
        match error {
            BatchError::Malformed { line, column, .. } => {
                api_error.0.position = Some((line, column))
            }
            BatchError::Items { errors, count } => {
                api_error.0.errors = errors;
                api_error.0.error_count = Some(count);
            }
            BatchError::NotABatch | BatchError::TooMany { .. } => {}
        }
        api_error
    }
}

impl From<ParamError> for ApiError {
    fn from(error: ParamError) -> ApiError {
        let detail = format!("{}: {}", error.parameter, error.detail);
        let mut api_error = ApiError::new(ErrorCode::InvalidParameter, detail);
        api_error.0.parameter = Some(error.parameter);
        api_error
    }
}

impl From<IngestError> for ApiError {
    fn from(error: IngestError) -> ApiError {
        let code = match error {
            IngestError::Overloaded => ErrorCode::IngestOverloaded,
            IngestError::ShuttingDown => ErrorCode::ShuttingDown,
            IngestError::Store => ErrorCode::StorageUnavailable,
        };
        ApiError::new(code, format!("{error}; nothing was stored, retry later"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = *self.0;
        let status = StatusCode::from_u16(problem.code.status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = Problem {
            problem_type: problem.code.problem_type(),
            title: problem.code.title(),
            status: status.as_u16(),
            detail: &problem.detail,
            code: problem.code.name(),
            field: problem.field.as_deref(),
            parameter: problem.parameter.as_deref(),
            line: problem.position.map(|(line, _)| line),
            column: problem.position.map(|(_, column)| column),
            error_count: problem.error_count,
            errors: problem
                .errors
                .iter()
                .map(|item| ProblemItem {
                    index: item.index,
                    code: item.code.name(),
                    field: item.field.as_deref(),
                    detail: &item.detail,
                })
                .collect(),
        };
        let body = serde_json::to_vec(&body).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        match problem.rate_limit {
            Some((per_second, retry_after_s)) => {
                headers.insert(RETRY_AFTER, HeaderValue::from(retry_after_s));
                headers.insert(rate_limit::RATELIMIT_LIMIT, HeaderValue::from(per_second));
                headers.insert(rate_limit::RATELIMIT_REMAINING, HeaderValue::from(0));
                headers.insert(
                    rate_limit::RATELIMIT_RESET,
                    HeaderValue::from(retry_after_s),
                );
            }
            None if status == StatusCode::SERVICE_UNAVAILABLE
                || status == StatusCode::TOO_MANY_REQUESTS =>
            {
                headers.insert(RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
            }
            None => {}
        }
        response
    }
}

/// Gives a problem body to the error answers made outside the handlers (no route, wrong
/// method, unsupported encoding, body timeout), so that every error has the same shape.
pub(super) async fn problem_for_bare_errors(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_problem = response
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes() == PROBLEM_JSON.as_bytes());
    if is_problem {
        return response;
    }
    let code = match status {
        StatusCode::NOT_FOUND => ErrorCode::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::BodyTooLarge,
        StatusCode::REQUEST_TIMEOUT => ErrorCode::RequestTimeout,
        // No layer makes other errors; were one added, its answer should get a code of
        // its own rather than a mislabelled one.
        _ => return response,
    };
    let detail = match code {
        ErrorCode::NotFound => "no such route; the API is under /api/events".to_owned(),
        ErrorCode::UnsupportedMediaType => "only gzip is accepted as Content-Encoding".to_owned(),
        _ => code.title().to_owned(),
    };
    let mut problem = ApiError::new(code, detail).into_response();
    if let Some(allow) = response.headers().get(axum::http::header::ALLOW) {
        problem
            .headers_mut()
            .insert(axum::http::header::ALLOW, allow.clone());
    }
    problem
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overload_and_store_failures_ask_to_retry() {
        for error in [
            IngestError::Overloaded,
            IngestError::Store,
            IngestError::ShuttingDown,
        ] {
            let response = ApiError::from(error).into_response();
            let status = match error {
                IngestError::Overloaded => StatusCode::TOO_MANY_REQUESTS,
                IngestError::Store | IngestError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            };
            assert_eq!(response.status(), status);
            assert_eq!(response.headers()[RETRY_AFTER], "1");
            assert_eq!(response.headers()[CONTENT_TYPE], PROBLEM_JSON);
        }
        let response = ApiError::new(ErrorCode::InvalidField, "x").into_response();
        assert!(response.headers().get(RETRY_AFTER).is_none());
    }
}
