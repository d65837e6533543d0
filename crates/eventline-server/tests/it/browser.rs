//! What web pages on other origins need: CORS answers, the origin guard, the SDK files,
//! the seed documentation's example path, and the dashboard.

use eventline_core::access::Keys;
use eventline_server::CorsOrigins;
use serde_json::json;

use crate::{TestApp, assert_problem, seed_event};

const PAGE_ORIGIN: &str = "http://shop.example:8080";

#[tokio::test]
async fn open_server_lets_any_page_post_and_read_without_preflight() {
    let app = TestApp::spawn().await;
    // A CORS-simple post: text/plain, no custom header, as the SDK sends it.
    let response = app
        .client
        .post(app.url("/api/events/post"))
        .header("origin", PAGE_ORIGIN)
        .header("content-type", "text/plain;charset=UTF-8")
        .body(seed_event().to_string())
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 201);
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        PAGE_ORIGIN
    );
    let exposed = response.headers()["access-control-expose-headers"]
        .to_str()
        .expect("ascii")
        .to_ascii_lowercase();
    assert!(exposed.contains("retry-after"), "{exposed}");

    let response = app
        .client
        .get(app.url("/api/events/get?scope=app"))
        .header("origin", PAGE_ORIGIN)
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        PAGE_ORIGIN
    );

    // Errors carry the header too, so a page can read the problem details.
    let response = app
        .client
        .post(app.url("/api/events/post"))
        .header("origin", PAGE_ORIGIN)
        .body("{")
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        PAGE_ORIGIN
    );
    app.stop().await;
}

#[tokio::test]
async fn preflight_allows_json_and_gzip_posts() {
    let app = TestApp::spawn().await;
    for path in ["/api/events/post", "/api/events", "/api/events/batch"] {
        let response = app
            .client
            .request(reqwest::Method::OPTIONS, app.url(path))
            .header("origin", PAGE_ORIGIN)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type,content-encoding",
            )
            .send()
            .await
            .expect("preflight");
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        let headers = response.headers();
        assert_eq!(headers["access-control-allow-origin"], PAGE_ORIGIN);
        let methods = headers["access-control-allow-methods"]
            .to_str()
            .expect("ascii");
        assert!(methods.contains("POST"), "{methods}");
        let allowed = headers["access-control-allow-headers"]
            .to_str()
            .expect("ascii")
            .to_ascii_lowercase();
        assert!(allowed.contains("content-type") && allowed.contains("content-encoding"));
        assert!(headers.contains_key("access-control-max-age"));
    }
    app.stop().await;
}

#[tokio::test]
async fn listed_origins_are_served_and_others_refused() {
    let app = TestApp::spawn_with(|config| {
        config.cors_origins = CorsOrigins::parse(&[
            "https://other.example".to_owned(),
            "http://SHOP.example:8080".to_owned(),
        ])
        .expect("origins");
    })
    .await;
    let post_from = |origin: Option<&'static str>| {
        let mut request = app
            .client
            .post(app.url("/api/events/post"))
            .json(&seed_event());
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        request.send()
    };
    let response = post_from(Some(PAGE_ORIGIN)).await.expect("post");
    assert_eq!(response.status(), 201);
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        PAGE_ORIGIN
    );

    let response = post_from(Some("https://evil.example")).await.expect("post");
    let answer = crate::answer(response).await;
    assert_problem(&answer, 403, "origin-not-allowed");
    assert!(
        answer.1["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("evil.example")
    );

    // No Origin header: a server or the CLI, not a page.
    let response = post_from(None).await.expect("post");
    assert_eq!(response.status(), 201);
    assert_eq!(
        app.all_events().await.len(),
        2,
        "the refused post stored nothing"
    );
    app.stop().await;
}

#[test]
fn cors_origins_are_checked_at_start() {
    assert!(CorsOrigins::parse(&[]).expect("none").is_empty());
    for bad in [
        "*",
        "shop.example",
        "https://shop.example/",
        "ftp://x",
        "https://",
    ] {
        assert!(
            CorsOrigins::parse(&[bad.to_owned()]).is_err(),
            "{bad:?} was accepted"
        );
    }
}

#[tokio::test]
async fn with_secret_keys_pages_may_post_but_read_only_from_configured_origins() {
    let secret = "sk_test_0123456789abcdef";
    let app = TestApp::spawn_with(|config| {
        config.keys = Keys::new(&[], &[secret.to_owned()], None);
    })
    .await;
    let response = app
        .client
        .post(app.url("/api/events/post"))
        .header("origin", PAGE_ORIGIN)
        .json(&seed_event())
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 201);
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        PAGE_ORIGIN
    );
    // No origin configured for reading: the answer carries no CORS header, so a page
    // cannot read it, even with the key.
    let response = app
        .client
        .get(app.url("/api/events"))
        .header("origin", PAGE_ORIGIN)
        .bearer_auth(secret)
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), 200);
    assert!(
        !response
            .headers()
            .contains_key("access-control-allow-origin")
    );
    app.stop().await;
}

#[tokio::test]
async fn serves_the_sdk_builds_with_revalidation() {
    let app = TestApp::spawn().await;
    for (path, marker) in [
        ("/sdk/builder.js", "Builder"),
        ("/sdk/builder.mjs", "export"),
    ] {
        let response = app
            .client
            .get(app.url(path))
            .header("origin", PAGE_ORIGIN)
            .send()
            .await
            .expect("get");
        assert_eq!(response.status(), 200);
        let headers = response.headers().clone();
        assert_eq!(headers["content-type"], "text/javascript; charset=utf-8");
        // A module script from another origin is fetched with CORS.
        assert_eq!(headers["access-control-allow-origin"], PAGE_ORIGIN);
        let body = response.text().await.expect("body");
        assert!(body.contains(marker), "{path}");

        let etag = headers["etag"].clone();
        let response = app
            .client
            .get(app.url(path))
            .header("if-none-match", etag)
            .send()
            .await
            .expect("revalidate");
        assert_eq!(response.status(), 304);
    }
    app.stop().await;
}

#[tokio::test]
async fn the_seed_example_path_reads_events() {
    let app = TestApp::spawn().await;
    let (status, _) = app
        .post(
            "/api/events/post",
            &json!({"event_type": "new_order", "content": {}, "contact_id": "c-1"}),
        )
        .await;
    assert_eq!(status, 201);
    let (status, page) = app
        .get("/api/contacts/get?contactId=c-1&eventTypes=new_order,new_contact&offset=0")
        .await;
    assert_eq!(status, 200);
    assert_eq!(page["events"].as_array().map(Vec::len), Some(1));
    app.stop().await;
}

/// The dashboard comes from the binary, with a policy that keeps every script and
/// connection on this server, and revalidates cheaply.
#[tokio::test]
async fn the_dashboard_is_served_from_the_binary() {
    let app = TestApp::spawn().await;
    let page = app.client.get(app.url("/")).send().await.expect("get /");
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .expect("policy");
    assert!(policy.starts_with("default-src 'self'"), "{policy}");
    let html = page.text().await.expect("html");
    assert!(html.contains("/dashboard/app.js") && html.contains("uPlot.iife.min.js"));
    for file in [
        "app.js",
        "style.css",
        "vendor/uplot/uPlot.iife.min.js",
        "vendor/uplot/LICENSE",
    ] {
        let answer = app
            .client
            .get(app.url(&format!("/dashboard/{file}")))
            .send()
            .await
            .expect("get");
        assert_eq!(answer.status(), 200, "{file}");
        let etag = answer.headers()["etag"].clone();
        let again = app
            .client
            .get(app.url(&format!("/dashboard/{file}")))
            .header("if-none-match", etag)
            .send()
            .await
            .expect("get");
        assert_eq!(again.status(), 304, "{file}");
    }
    let (status, problem) = app.get("/dashboard/nothing.js").await;
    assert_eq!(status, 404);
    assert_eq!(problem["code"], "not-found");
}
