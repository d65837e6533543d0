//! A client for an Eventline server: post events one at a time or in batches, read pages,
//! iterate over every page, stream an export, and follow new events live.
//!
//! ```no_run
//! # async fn run() -> Result<(), eventline_client::Error> {
//! use eventline_client::{Client, Query};
//! let client = Client::new("http://127.0.0.1:7070")?.with_key("wk_…");
//! let stored = client
//!     .post(&serde_json::json!({"event_type": "new_order", "content": {"total": 12}}))
//!     .await?;
//! let page = client.page(&Query::default().event_types(["new_order"])).await?;
//! # Ok(()) }
//! ```
//!
//! Errors the server answers carry its problem details ([`Error::Problem`]).

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An event as the server stored it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: String,
    pub event_type: String,
    pub content: Value,
    pub contact_id: Option<String>,
    pub scope: String,
    /// Unix milliseconds.
    pub timestamp: i64,
    /// Unix milliseconds, the server's clock.
    pub received_at: i64,
}

/// One page of a read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page {
    pub events: Vec<Event>,
    /// The cursor of the next page; None when there is nothing more.
    pub next_offset: Option<String>,
}

/// The answer to a batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchAnswer {
    pub stored: usize,
    pub replayed: usize,
    pub ids: Vec<String>,
}

/// RFC 9457 problem details, as the server sends them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    pub code: String,
    #[serde(default)]
    pub field: Option<String>,
    #[serde(default)]
    pub parameter: Option<String>,
    #[serde(default)]
    pub line: Option<usize>,
    #[serde(default)]
    pub column: Option<usize>,
    #[serde(default)]
    pub errors: Vec<ProblemItem>,
}

/// One refused event of a batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProblemItem {
    pub index: usize,
    pub code: String,
    #[serde(default)]
    pub field: Option<String>,
    pub detail: String,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid server URL {0:?}")]
    Url(String),
    #[error("cannot reach the server")]
    Http(#[from] reqwest::Error),
    #[error("{} ({}): {}", .problem.title, .problem.status, .problem.detail)]
    Problem { problem: Box<Problem> },
    #[error("the server answered {status} without problem details: {body}")]
    Status { status: u16, body: String },
    #[error("the server's answer is not what was expected")]
    Decode(#[from] serde_json::Error),
    #[error("the live stream is broken: {0}")]
    Stream(String),
}

impl Error {
    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Problem { problem } => Some(problem.status),
            Error::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// The parameters of a read, an iteration or an export (the `getEvents` parameters).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// Unix seconds, milliseconds or RFC 3339, as the server takes them.
    pub since: Option<String>,
    pub until: Option<String>,
    pub contact_id: Option<String>,
    pub scope: Option<String>,
    pub event_types: Vec<String>,
    /// A count to skip, or a `next_offset` cursor.
    pub offset: Option<String>,
    pub limit: Option<u32>,
    /// `asc` or `desc`.
    pub order: Option<String>,
    /// Conditions on `content`, all of which hold.
    pub content: Vec<ContentCondition>,
}

/// One condition on an event's `content`, sent as `content.PATH[op]=VALUE`
/// (`docs/api.md`, "Content filters").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentCondition {
    /// A dot path of object keys: `address.city`.
    pub path: String,
    /// `eq`, `ne`, `gt`, `gte`, `lt`, `lte`, `in`, `exists`, `contains` or `icontains`.
    pub op: String,
    /// As the URL form takes it: text, or a JSON array for `in`.
    pub value: String,
}

impl ContentCondition {
    /// Reads `store_id=appmachine`, `total>=100`, `plan!=free`, `total<5`, or any
    /// operator as `tags[contains]=vip`. What the server refuses it names.
    pub fn parse(expression: &str) -> Result<ContentCondition, String> {
        let at = expression.find(['=', '!', '<', '>']).ok_or_else(|| {
            format!(
                "{expression:?} has no comparison: write PATH=VALUE, PATH>=N, or PATH[op]=VALUE"
            )
        })?;
        let (path, rest) = expression.split_at(at);
        let (path, op, value) = match path
            .strip_suffix(']')
            .and_then(|path| path.rsplit_once('['))
        {
            Some((path, op)) => {
                let value = rest
                    .strip_prefix('=')
                    .ok_or_else(|| format!("{expression:?}: PATH[{op}] is followed by =VALUE"))?;
                (path, op, value)
            }
            None => {
                let (op, value) = [
                    ("!=", "ne"),
                    (">=", "gte"),
                    ("<=", "lte"),
                    ("=", "eq"),
                    (">", "gt"),
                    ("<", "lt"),
                ]
                .into_iter()
                .find_map(|(symbol, op)| rest.strip_prefix(symbol).map(|value| (op, value)))
                .ok_or_else(|| format!("{expression:?}: unknown comparison"))?;
                (path, op, value)
            }
        };
        let path = path.trim();
        if path.is_empty() {
            return Err(format!("{expression:?} names no path"));
        }
        Ok(ContentCondition {
            path: path.to_owned(),
            op: op.to_owned(),
            value: value.to_owned(),
        })
    }

    fn pair(&self) -> (String, String) {
        (
            format!("content.{}[{}]", self.path, self.op),
            self.value.clone(),
        )
    }
}

impl Query {
    /// Adds a condition on `content`.
    pub fn content(
        mut self,
        path: impl Into<String>,
        op: impl Into<String>,
        value: impl Into<String>,
    ) -> Query {
        self.content.push(ContentCondition {
            path: path.into(),
            op: op.into(),
            value: value.into(),
        });
        self
    }

    pub fn since(mut self, since: impl Into<String>) -> Query {
        self.since = Some(since.into());
        self
    }

    pub fn until(mut self, until: impl Into<String>) -> Query {
        self.until = Some(until.into());
        self
    }

    pub fn contact_id(mut self, contact_id: impl Into<String>) -> Query {
        self.contact_id = Some(contact_id.into());
        self
    }

    pub fn event_types<T: Into<String>>(mut self, types: impl IntoIterator<Item = T>) -> Query {
        self.event_types = types.into_iter().map(Into::into).collect();
        self
    }

    pub fn limit(mut self, limit: u32) -> Query {
        self.limit = Some(limit);
        self
    }

    /// The filters alone, for the live stream.
    fn filter_pairs(&self) -> Vec<(String, String)> {
        let mut pairs = self.pairs(false);
        pairs.retain(|(name, _)| !matches!(name.as_str(), "offset" | "order"));
        pairs
    }

    fn pairs(&self, with_limit: bool) -> Vec<(String, String)> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        let mut add = |name: &str, value: Option<&String>| {
            if let Some(value) = value.filter(|value| !value.is_empty()) {
                pairs.push((name.to_owned(), value.clone()));
            }
        };
        add("since", self.since.as_ref());
        add("until", self.until.as_ref());
        add("contact_id", self.contact_id.as_ref());
        add("scope", self.scope.as_ref());
        add("offset", self.offset.as_ref());
        add("order", self.order.as_ref());
        if !self.event_types.is_empty() {
            pairs.push(("event_types".to_owned(), self.event_types.join(",")));
        }
        if let (true, Some(limit)) = (with_limit, self.limit) {
            pairs.push(("limit".to_owned(), limit.to_string()));
        }
        pairs.extend(self.content.iter().map(ContentCondition::pair));
        pairs
    }
}

/// A connection to one Eventline server. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base_url: String,
    key: Option<String>,
}

impl Client {
    /// `base_url` is the server's address, such as `http://127.0.0.1:7070`.
    pub fn new(base_url: &str) -> Result<Client, Error> {
        let base_url = base_url.trim_end_matches('/');
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(Error::Url(base_url.to_owned()));
        }
        let http = reqwest::Client::builder()
            // Shorter than the server's idle deadline (30 s by default), so that a pooled
            // connection is never reused just as the server closes it.
            .pool_idle_timeout(std::time::Duration::from_secs(20))
            .build()
            .map_err(Error::Http)?;
        Ok(Client {
            http,
            base_url: base_url.to_owned(),
            key: None,
        })
    }

    /// Sends `key` (a write key, secret key or contact token) with every request.
    pub fn with_key(mut self, key: impl Into<String>) -> Client {
        self.key = Some(key.into()).filter(|key: &String| !key.is_empty());
        self
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self
            .http
            .request(method, format!("{}{path}", self.base_url));
        match &self.key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
    }

    /// Posts one event (a JSON object); the stored event.
    pub async fn post(&self, event: &Value) -> Result<Event, Error> {
        let response = self
            .request(reqwest::Method::POST, "/api/events")
            .json(event)
            .send()
            .await?;
        json(response).await
    }

    /// Posts events as one batch: stored whole or not at all.
    pub async fn post_batch(&self, events: &[Value]) -> Result<BatchAnswer, Error> {
        let response = self
            .request(reqwest::Method::POST, "/api/events/batch")
            .json(events)
            .send()
            .await?;
        json(response).await
    }

    /// Posts a batch already encoded as NDJSON (one event per line).
    pub async fn post_ndjson(&self, body: Bytes) -> Result<BatchAnswer, Error> {
        let response = self
            .request(reqwest::Method::POST, "/api/events/batch")
            .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
            .body(body)
            .send()
            .await?;
        json(response).await
    }

    /// One page.
    pub async fn page(&self, query: &Query) -> Result<Page, Error> {
        let response = self
            .request(reqwest::Method::GET, "/api/events")
            .query(&query.pairs(true))
            .send()
            .await?;
        json(response).await
    }

    /// Every matching event, page after page, following `next_offset`.
    pub fn events(&self, query: &Query) -> impl Stream<Item = Result<Event, Error>> + '_ {
        let first = query.clone();
        futures::stream::try_unfold(Some(first), move |query| async move {
            let Some(mut query) = query else {
                return Ok::<_, Error>(None);
            };
            let page = self.page(&query).await?;
            let next = page.next_offset.map(|cursor| {
                query.offset = Some(cursor);
                query
            });
            Ok(Some((
                futures::stream::iter(page.events.into_iter().map(Ok)),
                next,
            )))
        })
        .try_flatten()
    }

    /// Every matching event as NDJSON bytes, streamed as the server sends them
    /// (`limit` is not sent: an export has none).
    pub async fn export(
        &self,
        query: &Query,
    ) -> Result<impl Stream<Item = Result<Bytes, Error>> + use<>, Error> {
        let response = self
            .request(reqwest::Method::GET, "/api/events/export")
            .query(&query.pairs(false))
            .send()
            .await?;
        let response = checked(response).await?;
        Ok(response
            .bytes_stream()
            .map(|chunk| chunk.map_err(Error::from)))
    }
}

/// A message of the live stream.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamMessage {
    /// A new event and its stream id (its place in commit order).
    Event { id: String, event: Event },
    /// Nothing new up to here; sent first and when the stream is quiet.
    Position { id: String },
    /// The server ended the stream: `subscriber-too-slow`, `shutting-down` or
    /// `storage-unavailable`. Reconnecting with the last id continues without a gap.
    Closed { code: String, detail: String },
}

#[derive(Deserialize)]
struct ClosedData {
    code: String,
    detail: String,
}

/// How long [`Client::tail`] waits before it reconnects.
const RECONNECT_DELAY: std::time::Duration = std::time::Duration::from_secs(1);

impl Client {
    /// One connection to the live stream of events matching `query`'s filters,
    /// starting after `last_event_id` (a stream id received before), or with the events
    /// stored from now on.
    pub async fn stream(
        &self,
        query: &Query,
        last_event_id: Option<&str>,
    ) -> Result<impl Stream<Item = Result<StreamMessage, Error>> + use<>, Error> {
        let mut request = self
            .request(reqwest::Method::GET, "/api/events/stream")
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .query(&query.filter_pairs());
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = checked(request.send().await?).await?;
        Ok(
            eventsource_stream::Eventsource::eventsource(response.bytes_stream()).map(|message| {
                let message = message.map_err(|error| match error {
                    eventsource_stream::EventStreamError::Transport(error) => Error::Http(error),
                    other => Error::Stream(other.to_string()),
                })?;
                Ok(match message.event.as_str() {
                    "closed" => {
                        let closed: ClosedData = serde_json::from_str(&message.data)?;
                        StreamMessage::Closed {
                            code: closed.code,
                            detail: closed.detail,
                        }
                    }
                    "position" => StreamMessage::Position { id: message.id },
                    _ => StreamMessage::Event {
                        event: serde_json::from_str(&message.data)?,
                        id: message.id,
                    },
                })
            }),
        )
    }

    /// Every new event matching `query`'s filters, as it is stored, with its stream id;
    /// after `after` when given. Reconnects by itself (a second later) when the
    /// connection drops or the server closes the stream, continuing after the last id
    /// received: no event is missed or repeated. Ends with the error when the server
    /// refuses the request itself (a bad parameter or key).
    pub fn tail(
        &self,
        query: &Query,
        after: Option<String>,
    ) -> impl Stream<Item = Result<(String, Event), Error>> + '_ {
        struct Tail<S> {
            last_id: Option<String>,
            connection: Option<S>,
            reconnecting: bool,
        }
        let query = query.clone();
        let start = Tail {
            last_id: after,
            connection: None,
            reconnecting: false,
        };
        futures::stream::unfold(Some(start), move |tail| {
            let query = query.clone();
            async move {
                let mut tail = tail?;
                loop {
                    let Some(connection) = tail.connection.as_mut() else {
                        if std::mem::take(&mut tail.reconnecting) {
                            tokio::time::sleep(RECONNECT_DELAY).await;
                        }
                        match self.stream(&query, tail.last_id.as_deref()).await {
                            Ok(connection) => tail.connection = Some(Box::pin(connection)),
                            Err(error) if refused(&error) => return Some((Err(error), None)),
                            Err(_) => tail.reconnecting = true,
                        }
                        continue;
                    };
                    match connection.next().await {
                        Some(Ok(StreamMessage::Event { id, event })) => {
                            tail.last_id = Some(id.clone());
                            return Some((Ok((id, event)), Some(tail)));
                        }
                        Some(Ok(StreamMessage::Position { id })) => tail.last_id = Some(id),
                        Some(Ok(StreamMessage::Closed { .. })) | Some(Err(_)) | None => {
                            tail.connection = None;
                            tail.reconnecting = true;
                        }
                    }
                }
            }
        })
    }
}

/// Whether the server refused the request itself, so that trying again cannot help.
fn refused(error: &Error) -> bool {
    matches!(error.status(), Some(status) if (400..500).contains(&status) && status != 408 && status != 429)
}

/// The response if it is a success, else its problem as an error.
async fn checked(response: reqwest::Response) -> Result<reqwest::Response, Error> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = response.text().await?;
    match serde_json::from_str::<Problem>(&body) {
        Ok(problem) => Err(Error::Problem {
            problem: Box::new(problem),
        }),
        Err(_) => Err(Error::Status {
            status: status.as_u16(),
            body,
        }),
    }
}

async fn json<T: serde::de::DeserializeOwned>(response: reqwest::Response) -> Result<T, Error> {
    let response = checked(response).await?;
    let bytes = response.bytes().await?;
    Ok(serde_json::from_slice(&bytes)?)
}

#[cfg(test)]
mod tests {
    use super::ContentCondition;

    fn parsed(expression: &str) -> (String, String, String) {
        let condition = ContentCondition::parse(expression).expect("a condition");
        let (name, value) = condition.pair();
        (name, value, condition.path)
    }

    #[test]
    fn conditions_read_as_the_url_form() {
        let cases = [
            ("store_id=appmachine", "content.store_id[eq]", "appmachine"),
            ("total>=100", "content.total[gte]", "100"),
            ("total>100", "content.total[gt]", "100"),
            ("total<=5", "content.total[lte]", "5"),
            ("total<5", "content.total[lt]", "5"),
            ("plan!=free", "content.plan[ne]", "free"),
            ("address.city=Paris", "content.address.city[eq]", "Paris"),
            ("tags[contains]=vip", "content.tags[contains]", "vip"),
            (
                r#"store_id[in]=["a","b"]"#,
                "content.store_id[in]",
                r#"["a","b"]"#,
            ),
            ("note=a=b", "content.note[eq]", "a=b"),
            ("empty=", "content.empty[eq]", ""),
        ];
        for (expression, name, value) in cases {
            let (got_name, got_value, _) = parsed(expression);
            assert_eq!(
                (got_name.as_str(), got_value.as_str()),
                (name, value),
                "{expression}"
            );
        }
        for bad in ["total", "=5", "total[gt]5", "total!5"] {
            assert!(ContentCondition::parse(bad).is_err(), "{bad}");
        }
    }
}
