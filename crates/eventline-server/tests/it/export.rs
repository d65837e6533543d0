//! `GET /api/events/export`: every matching event as NDJSON, in page order, streamed.

use std::io::Read;

use serde_json::{Value, json};

use crate::{TestApp, assert_problem};

async fn export(app: &TestApp, query: &str, gzip: bool) -> (u16, Option<String>, Vec<Value>) {
    let mut request = app
        .client
        .get(app.url(&format!("/api/events/export{query}")));
    if gzip {
        request = request.header("accept-encoding", "gzip");
    }
    let response = request.send().await.expect("export");
    let status = response.status().as_u16();
    let encoding = response
        .headers()
        .get("content-encoding")
        .map(|value| value.to_str().expect("ascii").to_owned());
    let bytes = response.bytes().await.expect("body");
    let text = if encoding.as_deref() == Some("gzip") {
        let mut text = String::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_string(&mut text)
            .expect("gzip");
        text
    } else {
        String::from_utf8(bytes.to_vec()).expect("utf-8")
    };
    let events = text
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON event per line"))
        .collect();
    (status, encoding, events)
}

#[tokio::test]
async fn exports_every_matching_event_in_page_order_plain_or_gzip() {
    let app = TestApp::spawn().await;
    for chunk in 0..5 {
        let batch: Vec<Value> = (0..500)
            .map(|n| {
                let n = chunk * 500 + n;
                json!({
                    "event_type": (["a", "b", "c"][n % 3]),
                    "content": {"n": n},
                    "contact_id": format!("c{}", n % 7),
                    "timestamp": 1_700_000_000_000_i64 + (n as i64 * 7919) % 100_000,
                })
            })
            .collect();
        assert_eq!(app.post("/api/events/batch", &json!(batch)).await.0, 201);
    }
    for query in [
        "",
        "event_types=a,c",
        "contact_id=c3&order=desc",
        "since=1700000050000&scope=app",
    ] {
        let expected = app.all_events_where(query).await;
        let (status, encoding, plain) = export(&app, &format!("?{query}"), false).await;
        assert_eq!(status, 200);
        assert_eq!(encoding, None);
        assert_eq!(plain, expected, "export of {query:?}");
        let (_, encoding, unzipped) = export(&app, &format!("?{query}"), true).await;
        assert_eq!(encoding.as_deref(), Some("gzip"));
        assert_eq!(unzipped, expected, "gzip export of {query:?}");
    }
    assert_eq!(export(&app, "", false).await.2.len(), 2_500);
    let answer = app.get("/api/events/export?limit=10").await;
    assert_problem(&answer, 400, "invalid-parameter");
    let answer = app.get("/api/events/export?typo=1").await;
    assert_problem(&answer, 400, "invalid-parameter");
    app.stop().await;
}
