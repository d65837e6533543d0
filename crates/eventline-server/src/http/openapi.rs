//! The OpenAPI 3.1 document at `/openapi.json` and its Swagger UI at `/docs` (assets
//! compiled in: nothing is loaded from elsewhere).
//!
//! The document is written here, in one place, with schemas for the wire format. Tests
//! keep it true: each documented route is called and must answer one of its documented
//! statuses, and real answers must have exactly the documented fields.

// The functions below exist only to carry their `#[utoipa::path]` documentation.
#![allow(dead_code)]

use serde::Serialize;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, IntoResponses, Modify, OpenApi, ToSchema};

/// An event as posted. Only `event_type` and `content` are required; any other member is
/// refused by name.
#[derive(Serialize, ToSchema)]
#[schema(as = NewEvent)]
pub struct NewEventDoc {
    /// UUID; the idempotency key. The server assigns a UUIDv7 when absent.
    #[schema(format = Uuid)]
    id: Option<String>,
    /// 1–128 characters, no comma, no control characters.
    #[schema(min_length = 1, max_length = 128)]
    event_type: String,
    /// Any JSON object (64 KiB by default).
    content: serde_json::Map<String, serde_json::Value>,
    /// 1–256 characters; absent, null or empty means no contact.
    contact_id: Option<String>,
    /// `app` (default) or `site`.
    scope: Option<ScopeDoc>,
    /// Unix seconds, Unix milliseconds, or RFC 3339. Default: the receive time.
    #[schema(value_type = Option<Object>)]
    timestamp: Option<serde_json::Value>,
    /// The device clock when sent (same formats); corrects a skewed clock. Not stored.
    #[schema(value_type = Option<Object>)]
    sent_at: Option<serde_json::Value>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = Scope)]
#[serde(rename_all = "lowercase")]
pub enum ScopeDoc {
    App,
    Site,
}

/// An event as stored.
#[derive(Serialize, ToSchema)]
#[schema(as = Event)]
pub struct EventDoc {
    #[schema(format = Uuid)]
    id: String,
    event_type: String,
    content: serde_json::Map<String, serde_json::Value>,
    contact_id: Option<String>,
    scope: ScopeDoc,
    /// Event time, Unix milliseconds.
    timestamp: i64,
    /// The server's clock when it received the event, Unix milliseconds.
    received_at: i64,
}

/// A page of events.
#[derive(Serialize, ToSchema)]
#[schema(as = Page)]
pub struct PageDoc {
    events: Vec<EventDoc>,
    /// Pass it back as `offset` for the next page; null when nothing more matches.
    next_offset: Option<String>,
}

/// The answer to a batch.
#[derive(Serialize, ToSchema)]
#[schema(as = BatchAnswer)]
pub struct BatchAnswerDoc {
    /// Events stored by this request.
    stored: usize,
    /// Events whose id was already stored with the same fields.
    replayed: usize,
    /// Every event's id, in the order sent.
    ids: Vec<String>,
}

/// An erasure's answer.
#[derive(Serialize, ToSchema)]
#[schema(as = Erased)]
pub struct ErasedDoc {
    contact_id: String,
    erased: u64,
    suppressed: bool,
}

/// An unsuppression's answer.
#[derive(Serialize, ToSchema)]
#[schema(as = Unsuppressed)]
pub struct UnsuppressedDoc {
    contact_id: String,
    was_suppressed: bool,
}

/// The health check's answer.
#[derive(Serialize, ToSchema)]
#[schema(as = Health)]
pub struct HealthDoc {
    status: String,
}

/// RFC 9457 problem details: every error answer.
#[derive(Serialize, ToSchema)]
#[schema(as = Problem)]
pub struct ProblemDoc {
    /// `/problems/<code>`.
    #[serde(rename = "type")]
    problem_type: String,
    title: String,
    status: u16,
    detail: String,
    /// The stable machine-readable name of the error (see docs/api.md).
    code: String,
    /// The event member at fault.
    field: Option<String>,
    /// The query parameter at fault.
    parameter: Option<String>,
    /// Where malformed JSON went wrong (1-based).
    line: Option<usize>,
    column: Option<usize>,
    /// Batches: how many events were refused, and up to 100 of them.
    error_count: Option<usize>,
    errors: Option<Vec<ProblemItemDoc>>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = ProblemItem)]
pub struct ProblemItemDoc {
    index: usize,
    code: String,
    field: Option<String>,
    detail: String,
}

/// A read in the JSON form: the parameters of `GET /api/events` as JSON values, and
/// `where`. Answered as `GET /api/events`; `next_offset` continues the same query.
#[derive(Serialize, ToSchema)]
#[schema(as = Query)]
pub struct QueryDoc {
    /// Unix seconds or milliseconds (a number), or RFC 3339.
    #[schema(value_type = Option<Object>)]
    since: Option<serde_json::Value>,
    #[schema(value_type = Option<Object>)]
    until: Option<serde_json::Value>,
    contact_id: Option<String>,
    /// `app` or `site`.
    scope: Option<String>,
    event_types: Option<Vec<String>>,
    /// A count of events to skip or a `next_offset` cursor.
    #[schema(value_type = Option<Object>)]
    offset: Option<serde_json::Value>,
    /// 1–1,000; default 50.
    limit: Option<u32>,
    /// `asc` (default) or `desc`.
    order: Option<String>,
    /// Content filters: a list that holds together, or a tree of `{"and": […]}`,
    /// `{"or": […]}` and `{"not": …}` (4 deep at most); each filter is `{"path": "a.b"
    /// or ["a", "b"], "op": "eq|ne|gt|gte|lt|lte|in|exists|contains|icontains", "value":
    /// …}`, values compared with their JSON type; at most 20 filters.
    #[serde(rename = "where")]
    #[schema(value_type = Option<Object>)]
    where_: Option<serde_json::Value>,
}

/// The parameters of a read (and of an export, without `limit`). Content filters are
/// parameters too, `content.PATH[op]=V` (`docs/api.md`), not listed here.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReadParams {
    /// Inclusive lower bound on `timestamp`: Unix seconds, milliseconds or RFC 3339.
    since: Option<String>,
    /// Exclusive upper bound on `timestamp`.
    until: Option<String>,
    /// One contact (alias `contactId`); empty means all.
    contact_id: Option<String>,
    /// `app` or `site`; empty means both.
    scope: Option<String>,
    /// Comma-separated event types (alias `eventTypes`); empty means all.
    event_types: Option<String>,
    /// A count of events to skip (at most 100,000) or a `next_offset` cursor.
    offset: Option<String>,
    /// 1–1,000; default 50.
    limit: Option<u32>,
    /// `asc` (default) or `desc`.
    order: Option<String>,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EraseParams {
    /// `true`: refuse the contact's new events until unsuppressed.
    suppress: Option<bool>,
}

/// The errors of a post (one event or a batch).
#[derive(IntoResponses)]
pub enum PostErrors {
    #[response(
        status = 400,
        description = "Malformed JSON or invalid events (each listed by index in a batch)",
        content_type = "application/problem+json"
    )]
    Invalid(ProblemDoc),
    #[response(
        status = 401,
        description = "A write key is required, or the key is invalid",
        content_type = "application/problem+json"
    )]
    KeyRequired(ProblemDoc),
    #[response(
        status = 403,
        description = "The key may not post, the origin is not allowed, or the contact is suppressed",
        content_type = "application/problem+json"
    )]
    Forbidden(ProblemDoc),
    #[response(
        status = 409,
        description = "An id is stored with different fields",
        content_type = "application/problem+json"
    )]
    Conflict(ProblemDoc),
    #[response(
        status = 413,
        description = "The body is too large",
        content_type = "application/problem+json"
    )]
    TooLarge(ProblemDoc),
    #[response(
        status = 415,
        description = "Unsupported content type or encoding",
        content_type = "application/problem+json"
    )]
    Unsupported(ProblemDoc),
    #[response(
        status = 429,
        description = "Rate limited or overloaded; see Retry-After",
        content_type = "application/problem+json"
    )]
    TooMany(ProblemDoc),
    #[response(
        status = 503,
        description = "The store is unavailable; see Retry-After",
        content_type = "application/problem+json"
    )]
    Unavailable(ProblemDoc),
}

/// The errors of a read, an export or a live stream.
#[derive(IntoResponses)]
pub enum ReadErrors {
    #[response(
        status = 400,
        description = "A parameter is invalid, unknown or repeated",
        content_type = "application/problem+json"
    )]
    Invalid(ProblemDoc),
    #[response(
        status = 401,
        description = "A secret key or contact token is required, or it is invalid",
        content_type = "application/problem+json"
    )]
    KeyRequired(ProblemDoc),
    #[response(
        status = 403,
        description = "The key may not read this",
        content_type = "application/problem+json"
    )]
    Forbidden(ProblemDoc),
    #[response(
        status = 429,
        description = "Rate limited; see Retry-After",
        content_type = "application/problem+json"
    )]
    TooMany(ProblemDoc),
    #[response(
        status = 503,
        description = "The store is unavailable, or (live stream) every stream place is taken; see Retry-After",
        content_type = "application/problem+json"
    )]
    Unavailable(ProblemDoc),
}

/// The errors of what needs a secret key.
#[derive(IntoResponses)]
pub enum AdminErrors {
    #[response(
        status = 401,
        description = "A secret key is required, or the key is invalid",
        content_type = "application/problem+json"
    )]
    KeyRequired(ProblemDoc),
    #[response(
        status = 403,
        description = "The key may not do this",
        content_type = "application/problem+json"
    )]
    Forbidden(ProblemDoc),
    #[response(
        status = 503,
        description = "The store is unavailable; see Retry-After",
        content_type = "application/problem+json"
    )]
    Unavailable(ProblemDoc),
}

#[utoipa::path(post, path = "/api/events", tag = "posting",
    request_body(content = NewEventDoc, description = "One event, as JSON (also text/plain)"),
    responses(
        (status = 201, description = "Stored", body = EventDoc),
        (status = 200, description = "A replay of a stored id: the stored event", body = EventDoc),
        PostErrors,
    ),
    security((), ("bearer" = []), ("key" = [])))]
fn post_event() {}

#[utoipa::path(post, path = "/api/events/post", tag = "posting",
    description = "The path of the Builder SDK documentation; the same as POST /api/events.",
    request_body(content = NewEventDoc),
    responses(
        (status = 201, description = "Stored", body = EventDoc),
        (status = 200, description = "A replay", body = EventDoc),
        PostErrors,
    ),
    security((), ("bearer" = []), ("key" = [])))]
fn post_event_seed_path() {}

#[utoipa::path(post, path = "/api/events/batch", tag = "posting",
    description = "A JSON array, `{\"events\": [...]}`, or NDJSON (`application/x-ndjson`); stored whole or not at all.",
    request_body(content = Vec<NewEventDoc>),
    responses(
        (status = 201, description = "Stored (some events may be replays)", body = BatchAnswerDoc),
        (status = 200, description = "Every event was a replay", body = BatchAnswerDoc),
        PostErrors,
    ),
    security((), ("bearer" = []), ("key" = [])))]
fn post_batch() {}

#[utoipa::path(get, path = "/api/events", tag = "reading", params(ReadParams),
    responses(
        (status = 200, description = "A page in (timestamp, id) order", body = PageDoc),
        ReadErrors,
    ),
    security((), ("bearer" = []), ("key" = [])))]
fn get_events() {}

#[utoipa::path(post, path = "/api/events/query", tag = "reading",
    description = "A read in the JSON form, with content filters as a list or a tree of and, or and not.",
    request_body(content = QueryDoc),
    responses(
        (status = 200, description = "A page in (timestamp, id) order", body = PageDoc),
        (status = 413, description = "The body is over 1 MiB", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON", body = ProblemDoc, content_type = "application/problem+json"),
        ReadErrors,
    ),
    security((), ("bearer" = []), ("key" = [])))]
fn query_events() {}

#[utoipa::path(get, path = "/api/events/get", tag = "reading", params(ReadParams),
    description = "The path of the Builder SDK documentation; the same as GET /api/events.",
    responses(
        (status = 200, description = "A page", body = PageDoc),
        ReadErrors,
    ),
    security((), ("bearer" = []), ("key" = [])))]
fn get_events_seed_path() {}

#[utoipa::path(get, path = "/api/contacts/get", tag = "reading", params(ReadParams),
    description = "The path of the Builder SDK documentation's getEvents example; the same as GET /api/events.",
    responses(
        (status = 200, description = "A page", body = PageDoc),
        ReadErrors,
    ),
    security((), ("bearer" = []), ("key" = [])))]
fn get_events_example_path() {}

#[utoipa::path(get, path = "/api/events/export", tag = "reading", params(ReadParams),
    description = "Every matching event as NDJSON, streamed; `limit` is refused.",
    responses(
        (status = 200, description = "One event per line", content_type = "application/x-ndjson", body = String),
        ReadErrors,
    ),
    security((), ("bearer" = []), ("key" = [])))]
fn export() {}

/// The filters of a live stream and where it starts.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamParams {
    /// Inclusive lower bound on `timestamp`: Unix seconds, milliseconds or RFC 3339.
    since: Option<String>,
    /// Exclusive upper bound on `timestamp`.
    until: Option<String>,
    /// One contact (alias `contactId`); empty means all.
    contact_id: Option<String>,
    /// `app` or `site`; empty means both.
    scope: Option<String>,
    /// Comma-separated event types (alias `eventTypes`); empty means all.
    event_types: Option<String>,
    /// Continue after this stream id (an `id:` the stream sent); the `Last-Event-ID`
    /// header wins over it. Without either, the stream sends the events stored from now on.
    after: Option<String>,
}

#[utoipa::path(get, path = "/api/events/stream", tag = "reading",
    params(StreamParams, ("Last-Event-ID" = Option<String>, Header,
        description = "The last stream id received, as `EventSource` sends it when it reconnects")),
    description = "Matching events as they are stored, as Server-Sent Events in commit order. \
Each event message has the event as its `data` and its place in commit order as its `id`; \
reconnecting with `Last-Event-ID` continues right after it, with no gap and no repeat. \
A `position` message (its `data` is the id) comes first and after 15 s of quiet. \
A `closed` message (`{\"code\", \"detail\"}`) ends the stream when the subscriber fell too far \
behind (`subscriber-too-slow`), the server stops (`shutting-down`) or the store fails \
(`storage-unavailable`). `offset`, `limit` and `order` are refused.",
    responses(
        // `data` is an event object, a stream id or a `closed` object by message kind:
        // any JSON value.
        (status = 200, description = "An endless stream of events", content_type = "text/event-stream", body = serde_json::Value),
        ReadErrors,
    ),
    security((), ("bearer" = []), ("key" = [])))]
fn stream() {}

/// Counts of one bucket.
#[derive(Serialize, ToSchema)]
#[schema(as = BucketCounts)]
pub struct BucketCountsDoc {
    /// The bucket's start, Unix milliseconds (UTC-aligned).
    start: i64,
    total: u64,
    /// Count per event type.
    counts: std::collections::BTreeMap<String, u64>,
}

/// Counts over a window.
#[derive(Serialize, ToSchema)]
#[schema(as = Stats)]
pub struct StatsDoc {
    /// `minute`, `hour` or `day`.
    bucket: String,
    since: i64,
    until: i64,
    /// The non-empty buckets, oldest first.
    buckets: Vec<BucketCountsDoc>,
    /// Count per event type over the window.
    types: std::collections::BTreeMap<String, u64>,
    total: u64,
}

#[derive(Serialize, ToSchema)]
#[schema(as = EventTypeCount)]
pub struct EventTypeCountDoc {
    event_type: String,
    count: u64,
}

#[derive(Serialize, ToSchema)]
#[schema(as = EventTypes)]
pub struct EventTypesDoc {
    event_types: Vec<EventTypeCountDoc>,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsParams {
    /// Required: the window's start (Unix seconds, milliseconds or RFC 3339).
    since: String,
    /// The window's end, exclusive; default now.
    until: Option<String>,
    /// `minute`, `hour` (default) or `day`; at most 10,000 buckets.
    bucket: Option<String>,
    contact_id: Option<String>,
    scope: Option<String>,
    event_types: Option<String>,
}

#[utoipa::path(get, path = "/api/stats", tag = "reading", params(StatsParams),
    responses((status = 200, description = "Counts per bucket and type", body = StatsDoc), ReadErrors),
    security((), ("bearer" = []), ("key" = [])))]
fn stats() {}

#[utoipa::path(get, path = "/api/event-types", tag = "reading",
    responses((status = 200, description = "Every type with events, and its count", body = EventTypesDoc), AdminErrors),
    security((), ("bearer" = []), ("key" = [])))]
fn event_types() {}

#[utoipa::path(delete, path = "/api/contacts/{contact_id}/events", tag = "privacy",
    params(("contact_id" = String, Path, description = "The contact to erase"), EraseParams),
    responses(
        (status = 200, description = "Erased; how many", body = ErasedDoc),
        (status = 400, description = "A parameter is invalid or unknown", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited; see Retry-After", body = ProblemDoc, content_type = "application/problem+json"),
        AdminErrors,
    ),
    security((), ("bearer" = []), ("key" = [])))]
fn erase() {}

#[utoipa::path(delete, path = "/api/contacts/{contact_id}/suppression", tag = "privacy",
    params(("contact_id" = String, Path, description = "The contact to accept again")),
    responses(
        (status = 200, description = "Accepted again", body = UnsuppressedDoc),
        (status = 429, description = "Rate limited; see Retry-After", body = ProblemDoc, content_type = "application/problem+json"),
        AdminErrors,
    ),
    security((), ("bearer" = []), ("key" = [])))]
fn unsuppress() {}

#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses(
        (status = 200, description = "The store answers", body = HealthDoc),
        (status = 503, description = "The store does not answer", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
fn healthz() {}

#[utoipa::path(get, path = "/metrics", tag = "operations",
    description = "Prometheus text format.",
    responses(
        (status = 200, description = "The metrics", content_type = "text/plain", body = String),
        AdminErrors,
    ),
    security((), ("bearer" = []), ("key" = [])))]
fn metrics() {}

#[utoipa::path(get, path = "/sdk/builder.js", tag = "sdk",
    description = "The JavaScript SDK as a classic script (defines `window.Builder`).",
    responses(
        (status = 200, description = "JavaScript", content_type = "text/javascript", body = String),
        (status = 304, description = "Not modified (If-None-Match)"),
    ))]
fn sdk_script() {}

#[utoipa::path(get, path = "/sdk/builder.mjs", tag = "sdk",
    description = "The JavaScript SDK as an ES module.",
    responses(
        (status = 200, description = "JavaScript", content_type = "text/javascript", body = String),
        (status = 304, description = "Not modified (If-None-Match)"),
    ))]
fn sdk_module() {}

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "key",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::new("key"))),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Eventline",
        description = "A self-hostable events service: post business events, read them back by time window, contact, scope and event type. Keys travel as `Authorization: Bearer` or `?key=`; see docs/access.md.",
    ),
    paths(
        post_event, post_event_seed_path, post_batch, get_events, query_events, get_events_seed_path,
        get_events_example_path, export, stream, stats, event_types, super::properties::properties,
        super::properties::values, erase, unsuppress, healthz, metrics, sdk_script, sdk_module,
    ),
    components(schemas(
        NewEventDoc, EventDoc, PageDoc, QueryDoc, StatsDoc, BucketCountsDoc, EventTypesDoc, EventTypeCountDoc, BatchAnswerDoc, ErasedDoc, UnsuppressedDoc, HealthDoc,
        ProblemDoc, ProblemItemDoc, ScopeDoc, super::properties::PropertiesAnswer,
        super::properties::PropertyAnswer, super::properties::ValuesAnswer, super::properties::ValueAnswer,
    )),
    modifiers(&Security),
)]
pub struct ApiDoc;

/// `/openapi.json` and the Swagger UI at `/docs`.
pub(super) fn router() -> axum::Router<super::AppState> {
    axum::Router::from(
        utoipa_swagger_ui::SwaggerUi::new("/docs").url("/openapi.json", ApiDoc::openapi()),
    )
}
