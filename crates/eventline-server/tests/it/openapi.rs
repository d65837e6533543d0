//! `/openapi.json` stays true: every documented operation answers one of its documented
//! statuses, real answers have exactly the documented fields, and `/docs` is served with
//! its own assets.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::TestApp;

fn properties(document: &Value, schema: &str) -> BTreeSet<String> {
    document["components"]["schemas"][schema]["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("no schema {schema}"))
        .keys()
        .cloned()
        .collect()
}

fn keys(value: &Value) -> BTreeSet<String> {
    value
        .as_object()
        .expect("an object")
        .keys()
        .cloned()
        .collect()
}

#[tokio::test]
async fn every_documented_operation_answers_as_documented() {
    let app = TestApp::spawn().await;
    let (status, document) = app.get("/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(document["openapi"], "3.1.0");
    let event = json!({"event_type": "documented", "content": {"a": 1}, "contact_id": "c-1"});
    let mut operations = 0;
    for (path, item) in document["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("operations") {
            let documented: Vec<u16> = operation["responses"]
                .as_object()
                .expect("responses")
                .keys()
                .map(|status| status.parse().expect("a status"))
                .collect();
            let mut url = app.url(&path.replace("{contact_id}", "c-9"));
            if path == "/api/stats" {
                url.push_str("?since=1700000000000&bucket=day");
            }
            if path == "/api/properties/values" {
                url.push_str("?path=a");
            }
            let method =
                reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let mut request = app.client.request(method.clone(), url);
            if method == reqwest::Method::POST {
                request = request.json(&if path.ends_with("/batch") {
                    json!([event])
                } else if path.ends_with("/query") {
                    json!({"where": [{"path": "a", "value": 1}]})
                } else {
                    event.clone()
                });
            }
            let status = request.send().await.expect("request").status().as_u16();
            assert!(
                documented.contains(&status),
                "{method} {path} answered {status}, documented {documented:?}"
            );
            operations += 1;
        }
    }
    assert_eq!(operations, 19, "every route is documented once");

    // Real answers have exactly the documented fields.
    let (_, stored) = app.post("/api/events", &event).await;
    assert_eq!(keys(&stored), properties(&document, "Event"));
    let (_, page) = app.get("/api/events").await;
    assert_eq!(keys(&page), properties(&document, "Page"));
    let (_, batch) = app.post("/api/events/batch", &json!([event])).await;
    assert_eq!(keys(&batch), properties(&document, "BatchAnswer"));
    let (_, problem) = app.post("/api/events", &json!([])).await;
    assert!(
        keys(&problem).is_subset(&properties(&document, "Problem")),
        "{problem}"
    );
    let (_, batch_problem) = app
        .post("/api/events/batch", &json!([{"event_type": ""}]))
        .await;
    assert!(keys(&batch_problem).is_subset(&properties(&document, "Problem")));
    for item in batch_problem["errors"].as_array().expect("errors") {
        assert!(keys(item).is_subset(&properties(&document, "ProblemItem")));
    }
    app.stop().await;
}

#[tokio::test]
async fn the_docs_page_is_served_with_its_own_assets() {
    let app = TestApp::spawn().await;
    let page = app
        .client
        .get(app.url("/docs/"))
        .send()
        .await
        .expect("docs");
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("html");
    assert!(html.contains("swagger-ui"), "{html}");
    assert!(
        !html.contains("https://"),
        "the page loads nothing from elsewhere:\n{html}"
    );
    for asset in [
        "swagger-ui.css",
        "swagger-ui-bundle.js",
        "swagger-initializer.js",
    ] {
        let response = app
            .client
            .get(app.url(&format!("/docs/{asset}")))
            .send()
            .await
            .expect("asset");
        assert_eq!(response.status(), 200, "{asset}");
    }
    app.stop().await;
}
