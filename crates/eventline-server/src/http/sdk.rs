//! `/sdk/builder.js` and `/sdk/builder.mjs`: the JavaScript SDK, built from `sdk/js` and
//! compiled into the binary, so a page can include it straight from its Eventline server
//! and always gets the SDK that matches the server's API.

use std::hash::{Hash, Hasher};
use std::sync::LazyLock;

use axum::Router;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::AppState;

/// The classic-script build: it defines the global `Builder`.
const CLASSIC_SCRIPT: &str = include_str!("../../../../sdk/js/dist/builder.js");
/// The ES module build: `import { Builder } from ".../sdk/builder.mjs"`.
const MODULE: &str = include_str!("../../../../sdk/js/dist/builder.mjs");

/// Short enough that a server upgrade reaches pages within minutes; the ETag makes each
/// revalidation a 304 with no body.
const CACHE_CONTROL_VALUE: &str = "public, max-age=300";

struct Asset {
    body: &'static str,
    etag: HeaderValue,
}

impl Asset {
    fn new(body: &'static str) -> Asset {
        // The hash only has to change when the file does; it is computed once per process.
        let mut hasher = std::hash::DefaultHasher::new();
        body.hash(&mut hasher);
        let etag = format!("\"{:016x}\"", hasher.finish());
        Asset {
            body,
            etag: HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"0\"")),
        }
    }

    fn answer(&self, request_headers: &HeaderMap) -> Response {
        let fresh = request_headers
            .get(IF_NONE_MATCH)
            .is_some_and(|value| value.as_bytes() == self.etag.as_bytes());
        let headers = [
            (
                CONTENT_TYPE,
                HeaderValue::from_static("text/javascript; charset=utf-8"),
            ),
            (CACHE_CONTROL, HeaderValue::from_static(CACHE_CONTROL_VALUE)),
            (ETAG, self.etag.clone()),
        ];
        if fresh {
            (StatusCode::NOT_MODIFIED, headers).into_response()
        } else {
            (headers, self.body).into_response()
        }
    }
}

static CLASSIC_SCRIPT_ASSET: LazyLock<Asset> = LazyLock::new(|| Asset::new(CLASSIC_SCRIPT));
static MODULE_ASSET: LazyLock<Asset> = LazyLock::new(|| Asset::new(MODULE));

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/sdk/builder.js",
            get(|headers: HeaderMap| async move { CLASSIC_SCRIPT_ASSET.answer(&headers) }),
        )
        .route(
            "/sdk/builder.mjs",
            get(|headers: HeaderMap| async move { MODULE_ASSET.answer(&headers) }),
        )
}
