//! HTTP integration tests: each spawns the real server on 127.0.0.1:0 with a temporary
//! data directory and talks to it over loopback.
//!
//! With `EVENTLINE_TEST_STORE=postgres` every test runs on a fresh PostgreSQL database
//! instead of the embedded log store (scripts/test runs this binary both ways).

mod access;
mod browser;
mod content;
mod export;
mod openapi;
mod paging;
mod posting;
mod rate_limit;
mod reading;
mod stats;
mod stream;
mod validation;

use std::net::SocketAddr;

use eventline_server::{App, Config};
use serde_json::Value;
use tokio::sync::oneshot;

pub struct TestApp {
    pub address: SocketAddr,
    pub client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<Result<(), eventline_server::Error>>>,
    storage: Storage,
}

/// Where a test server keeps its events; kept across a restart.
pub struct Storage {
    data_dir: tempfile::TempDir,
    database_url: Option<String>,
}

impl Storage {
    /// Fresh storage of the kind `EVENTLINE_TEST_STORE` asks for (default: embedded).
    pub async fn new() -> Storage {
        let data_dir = tempfile::tempdir().expect("temporary directory");
        let database_url = match std::env::var("EVENTLINE_TEST_STORE").as_deref() {
            Ok("postgres") => Some(eventline_testkit::database().await),
            Ok("log") | Ok("") | Err(_) => None,
            Ok(other) => panic!("EVENTLINE_TEST_STORE={other}: expected log or postgres"),
        };
        Storage {
            data_dir,
            database_url,
        }
    }
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        TestApp::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(configure: impl FnOnce(&mut Config)) -> TestApp {
        TestApp::spawn_in(Storage::new().await, configure).await
    }

    /// Starts a server on an existing data directory, as after a restart.
    pub async fn spawn_in(storage: Storage, configure: impl FnOnce(&mut Config)) -> TestApp {
        if std::env::var_os("TEST_LOG").is_some() {
            // Several tests in one binary: only the first installs the subscriber.
            let _ = tracing_subscriber::fmt()
                .with_env_filter("debug")
                .with_test_writer()
                .try_init();
        }
        let mut config = Config::new(storage.data_dir.path().to_owned());
        config.database_url = storage.database_url.clone();
        configure(&mut config);
        let app = App::open(config).await.expect("open app");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let (shutdown, shutdown_requested) = oneshot::channel::<()>();
        let server = tokio::spawn(app.serve(listener, async move {
            let _ = shutdown_requested.await;
        }));
        let client = reqwest::Client::builder()
            .no_gzip()
            .build()
            .expect("client");
        TestApp {
            address,
            client,
            shutdown: Some(shutdown),
            server: Some(server),
            storage,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = self
            .client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("post");
        answer(response).await
    }

    pub async fn post_raw(
        &self,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> (u16, Value) {
        let mut request = self.client.post(self.url(path)).body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        answer(request.send().await.expect("post")).await
    }

    /// Posts a body sent with a `Content-Encoding`, as JSON.
    pub async fn post_encoded(&self, path: &str, encoding: &str, body: Vec<u8>) -> (u16, Value) {
        let request = self
            .client
            .post(self.url(path))
            .header("content-type", "application/json")
            .header("content-encoding", encoding)
            .body(body);
        answer(request.send().await.expect("post")).await
    }

    pub async fn get(&self, path_and_query: &str) -> (u16, Value) {
        answer(
            self.client
                .get(self.url(path_and_query))
                .send()
                .await
                .expect("get"),
        )
        .await
    }

    /// Every stored event, oldest first, read through the API.
    pub async fn all_events(&self) -> Vec<Value> {
        self.all_events_where("").await
    }

    /// Every event matching `query` (read parameters), page by page through the API.
    pub async fn all_events_where(&self, query: &str) -> Vec<Value> {
        let mut events = Vec::new();
        let mut offset = String::new();
        loop {
            let (status, page) = self
                .get(&format!("/api/events?limit=1000&offset={offset}&{query}"))
                .await;
            assert_eq!(status, 200, "{page}");
            events.extend(page["events"].as_array().expect("events").iter().cloned());
            match page["next_offset"].as_str() {
                Some(next) => offset = next.to_owned(),
                None => return events,
            }
        }
    }

    /// Stops the server the way SIGTERM does, waits until it has drained, and hands back
    /// the data directory.
    pub async fn stop(mut self) -> Storage {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("server");
        }
        self.storage
    }
}

pub async fn answer(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, body)
}

/// The seed's own example event.
pub fn seed_event() -> Value {
    serde_json::json!({
        "event_type": "store_purchase",
        "content": {
            "store_id": "appmachine",
            "card_id": "09102017133515",
            "order_number": "61017114657"
        }
    })
}

/// Asserts that an answer is a problem with this status and code.
#[track_caller]
pub fn assert_problem(answer: &(u16, Value), status: u16, code: &str) {
    let (actual_status, problem) = answer;
    assert_eq!(
        (*actual_status, problem["code"].as_str()),
        (status, Some(code)),
        "{problem}"
    );
}
