//! Hostile request bodies through the real HTTP stack, in this process and without a
//! socket: the fuzz targets of `fuzz/` call these, and so does their regression test on
//! stable Rust (`tests/it/hostile.rs`), which replays the corpus. Every answer must be a
//! 2xx or a 4xx: a 5xx or a panic is a failure.

use std::net::SocketAddr;
use std::sync::OnceLock;

use axum::body::Body;
use axum::extract::ConnectInfo;
use eventline_server::{App, Config};
use eventline_store::log::LogOptions;
use eventline_store::{Durability, StoreConfig};
use http_body_util::BodyExt;
use tower::ServiceExt;

struct Target {
    runtime: tokio::runtime::Runtime,
    router: axum::Router,
    _app: App,
    _dir: tempfile::TempDir,
}

fn target() -> &'static Target {
    static TARGET: OnceLock<Target> = OnceLock::new();
    TARGET.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("temporary directory");
        let app = runtime.block_on(async {
            // The default embedded store. Durability is not under test here; speed is.
            let store = eventline_store::open(StoreConfig::Embedded {
                data_dir: dir.path().to_owned(),
                options: LogOptions {
                    durability: Durability::Normal,
                    ..LogOptions::default()
                },
            })
            .await
            .expect("store");
            let mut config = Config::new(dir.path().to_owned());
            config.rate_limits.per_ip_per_second = 0;
            App::with_store(config, store).expect("app")
        });
        let router = app.router();
        Target {
            runtime,
            router,
            _app: app,
            _dir: dir,
        }
    })
}

/// Sends one request and returns its status; panics on a 5xx.
pub fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> u16 {
    let target = target();
    let mut request = axum::http::Request::builder().method(method).uri(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut request = request
        .body(Body::from(body.to_vec()))
        .expect("a well-formed request");
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 9))));
    let (status, answer) = target.runtime.block_on(async {
        let response = target
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("infallible");
        let status = response.status().as_u16();
        let answer = response
            .into_body()
            .collect()
            .await
            .map(|body| body.to_bytes())
            .unwrap_or_default();
        (status, answer)
    });
    assert!(
        status < 500,
        "{method} {path} answered {status}: {}",
        String::from_utf8_lossy(&answer)
    );
    status
}

/// A single event's JSON body.
pub fn event_json(data: &[u8]) {
    request(
        "POST",
        "/api/events",
        &[("content-type", "application/json")],
        data,
    );
}

/// A batch as a JSON array or `{"events": [...]}`.
pub fn batch_json(data: &[u8]) {
    request(
        "POST",
        "/api/events/batch",
        &[("content-type", "application/json")],
        data,
    );
}

/// A batch as NDJSON.
pub fn batch_ndjson(data: &[u8]) {
    request(
        "POST",
        "/api/events/batch",
        &[("content-type", "application/x-ndjson")],
        data,
    );
}

/// A gzip-encoded body (valid or not) for the route its first byte picks.
pub fn gzip_body(data: &[u8]) {
    let Some((pick, body)) = data.split_first() else {
        return;
    };
    let (path, content_type) = match pick % 3 {
        0 => ("/api/events", "application/json"),
        1 => ("/api/events/batch", "application/json"),
        _ => ("/api/events/batch", "application/x-ndjson"),
    };
    request(
        "POST",
        path,
        &[("content-type", content_type), ("content-encoding", "gzip")],
        body,
    );
}
