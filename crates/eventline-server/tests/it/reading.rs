use serde_json::{Value, json};

use crate::TestApp;

async fn ids(app: &TestApp, query: &str) -> Vec<i64> {
    let (status, page) = app.get(&format!("/api/events/get?{query}")).await;
    assert_eq!(status, 200, "{query}: {page}");
    page["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|event| event["content"]["n"].as_i64().expect("n"))
        .collect()
}

#[tokio::test]
async fn filters_aliases_order_and_offsets() {
    let app = TestApp::spawn().await;
    let events: Vec<Value> = (0..12)
        .map(|n| {
            let event_type = ["new_order", "new_contact", "store_purchase"][n % 3];
            json!({
                "event_type": event_type,
                "content": {"n": n},
                "contact_id": if n % 2 == 0 { json!("even") } else { json!("") },
                "scope": if n < 8 { "app" } else { "site" },
                "timestamp": 1_499_299_200 + n as i64,
            })
        })
        .collect();
    let (status, _) = app
        .post("/api/events/batch", &json!({"events": events}))
        .await;
    assert_eq!(status, 201);

    assert_eq!(ids(&app, "").await, (0..12).collect::<Vec<_>>());
    assert_eq!(
        ids(&app, "since=&until=&contactId=&scope=&eventTypes=&offset=").await,
        (0..12).collect::<Vec<_>>()
    );
    assert_eq!(
        ids(&app, "since=1499299202&until=1499299205").await,
        vec![2, 3, 4]
    );
    assert_eq!(
        ids(&app, "since=2017-07-06T00:00:02Z&until=1499299205000").await,
        vec![2, 3, 4]
    );
    assert_eq!(
        ids(&app, "since=1499299202&until=1499299202").await,
        Vec::<i64>::new()
    );
    assert_eq!(
        ids(&app, "contactId=even&scope=app").await,
        vec![0, 2, 4, 6]
    );
    assert_eq!(ids(&app, "contact_id=even&scope=site").await, vec![8, 10]);
    assert_eq!(ids(&app, "eventTypes=new_order").await, vec![0, 3, 6, 9]);
    assert_eq!(
        ids(&app, "event_types=%20new_contact%20,%20store_purchase,").await,
        vec![1, 2, 4, 5, 7, 8, 10, 11]
    );
    assert_eq!(
        ids(&app, "eventTypes=new_order&order=desc").await,
        vec![9, 6, 3, 0]
    );
    assert_eq!(
        ids(&app, "order=desc&offset=2&limit=3").await,
        vec![9, 8, 7]
    );
    assert_eq!(ids(&app, "offset=0&limit=2").await, vec![0, 1]);
    assert_eq!(ids(&app, "offset=10&limit=5").await, vec![10, 11]);
    assert_eq!(ids(&app, "offset=50").await, Vec::<i64>::new());
    assert_eq!(ids(&app, "eventTypes=absent").await, Vec::<i64>::new());

    // A page started at a numeric offset continues by cursor.
    let (_, page) = app.get("/api/events?offset=4&limit=3").await;
    let cursor = page["next_offset"].as_str().expect("cursor").to_owned();
    assert_eq!(
        ids(&app, &format!("offset={cursor}&limit=3")).await,
        vec![7, 8, 9]
    );
    assert_eq!(
        ids(&app, &format!("offset={cursor}&limit=3&order=desc")).await,
        vec![5, 4, 3]
    );
    let (_, last) = app.get("/api/events?offset=9&limit=3").await;
    assert_eq!(
        last["next_offset"],
        Value::Null,
        "nothing more after the last page"
    );
}

#[tokio::test]
async fn healthz_answers() {
    let app = TestApp::spawn().await;
    let (status, body) = app.get("/healthz").await;
    assert_eq!((status, body), (200, json!({"status": "ok"})));
}

#[tokio::test]
async fn responses_are_gzipped_when_asked() {
    let app = TestApp::spawn().await;
    let events: Vec<Value> = (0..100)
        .map(|n| json!({"event_type": "t", "content": {"n": n}}))
        .collect();
    app.post("/api/events/batch", &json!(events)).await;
    let response = app
        .client
        .get(app.url("/api/events?limit=100"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("get");
    assert_eq!(
        response
            .headers()
            .get("content-encoding")
            .map(|value| value.as_bytes()),
        Some(&b"gzip"[..])
    );
}
