//! The baseline: what axum alone costs for the same requests. It reads each body
//! completely and answers 201 with a small JSON object, and does nothing else.

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::post;

async fn read_body(body: Bytes) -> (StatusCode, &'static str) {
    std::hint::black_box(body.len());
    (StatusCode::CREATED, r#"{"ok":true}"#)
}

pub fn serve(listen: &str) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let router = Router::new()
            .route("/api/events/post", post(read_body))
            .route("/api/events/batch", post(read_body))
            .layer(axum::extract::DefaultBodyLimit::max(16 * 1024 * 1024));
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .context("bind")?;
        println!("listening on http://{}", listener.local_addr()?);
        axum::serve(listener, router).await.context("serve")
    })
}
