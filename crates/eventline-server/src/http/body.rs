//! Reading request bodies: the content types Eventline accepts, and the size limits.

use std::error::Error as _;

use axum::body::Body;
use axum::http::HeaderMap;
use axum::http::header::CONTENT_TYPE;
use bytes::Bytes;
use eventline_core::problem::ErrorCode;

use super::ApiError;

/// What the body holds, as its `Content-Type` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BodyFormat {
    Json,
    Ndjson,
}

/// Which formats a route takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Accepts {
    Json,
    JsonOrNdjson,
}

/// JSON is accepted as `application/json`, any `+json` type, `text/plain` (what
/// `navigator.sendBeacon` and CORS-simple requests send) or with no content type at all.
pub(super) fn format(headers: &HeaderMap, accepts: Accepts) -> Result<BodyFormat, ApiError> {
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return Ok(BodyFormat::Json);
    };
    let value = value.to_str().unwrap_or_default();
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let format = match essence.as_str() {
        "application/json" | "text/plain" | "" => Some(BodyFormat::Json),
        "application/x-ndjson"
        | "application/ndjson"
        | "application/jsonl"
        | "application/jsonlines" => Some(BodyFormat::Ndjson),
        other if other.starts_with("application/") && other.ends_with("+json") => {
            Some(BodyFormat::Json)
        }
        _ => None,
    };
    match (format, accepts) {
        (Some(BodyFormat::Json), _) | (Some(BodyFormat::Ndjson), Accepts::JsonOrNdjson) => {
            Ok(format.unwrap_or(BodyFormat::Json))
        }
        _ => {
            let accepted = match accepts {
                Accepts::Json => "application/json or text/plain",
                Accepts::JsonOrNdjson => "application/json, text/plain or application/x-ndjson",
            };
            Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                format!("content type {value:?} is not accepted here; send {accepted}"),
            ))
        }
    }
}

/// Reads the whole body, decoded, refusing it past `bytes_max`.
pub(super) async fn read(body: Body, bytes_max: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, bytes_max)
        .await
        .map_err(|error| {
            let mut source: Option<&(dyn std::error::Error + 'static)> = error.source();
            while let Some(cause) = source {
                if cause.is::<http_body_util::LengthLimitError>() {
                    return ApiError::new(
                        ErrorCode::BodyTooLarge,
                        format!("the body is larger than {bytes_max} bytes (after gzip decoding)"),
                    );
                }
                if cause.is::<tower_http::timeout::TimeoutError>() {
                    return ApiError::new(
                        ErrorCode::RequestTimeout,
                        "the body did not arrive in time",
                    );
                }
                if cause.is::<std::io::Error>() {
                    // The gzip decoder reports corrupt input as an IO error.
                    return ApiError::new(
                        ErrorCode::InvalidGzip,
                        format!("the gzip body cannot be decoded: {cause}"),
                    );
                }
                source = cause.source();
            }
            ApiError::new(
                ErrorCode::InvalidGzip,
                format!("the body cannot be read: {error}"),
            )
        })
}
