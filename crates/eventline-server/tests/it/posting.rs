use std::io::Write;

use serde_json::{Value, json};

use crate::{TestApp, seed_event};

#[tokio::test]
async fn seed_example_round_trip_in_milliseconds_and_seconds() {
    let app = TestApp::spawn().await;
    let (status, stored) = app.post("/api/events/post", &seed_event()).await;
    assert_eq!(status, 201, "{stored}");
    assert_eq!(stored["event_type"], "store_purchase");
    assert_eq!(stored["content"], seed_event()["content"]);
    assert_eq!(stored["scope"], "app");
    assert_eq!(stored["contact_id"], Value::Null);
    assert_eq!(stored["timestamp"], stored["received_at"]);
    assert!(
        stored["id"]
            .as_str()
            .is_some_and(|id| uuid::Uuid::parse_str(id).is_ok_and(|id| id.get_version_num() == 7))
    );

    // `new Date(2017, 6, 6).getTime()` in UTC, and now, as the seed's getEvents passes them.
    let since_ms = 1_499_299_200_000_i64;
    let until_ms = stored["received_at"].as_i64().expect("received_at") + 1;
    let query = |since: i64, until: i64| {
        format!(
            "/api/events/get?since={since}&until={until}&contactId=&scope=app&eventTypes=store_purchase,new_order&offset=0&limit=50"
        )
    };
    let (status, page_ms) = app.get(&query(since_ms, until_ms)).await;
    assert_eq!(status, 200, "{page_ms}");
    assert_eq!(page_ms["events"], json!([stored]));
    assert_eq!(page_ms["next_offset"], Value::Null);

    let (status, page_s) = app.get(&query(since_ms / 1000, until_ms / 1000 + 1)).await;
    assert_eq!(status, 200);
    assert_eq!(
        page_s, page_ms,
        "seconds and milliseconds select the same page"
    );
}

#[tokio::test]
async fn every_posting_path_and_body_form_is_accepted() {
    let app = TestApp::spawn().await;
    let body = seed_event().to_string();
    for (path, content_type) in [
        ("/api/events/post", Some("application/json")),
        ("/api/events", Some("application/json; charset=utf-8")),
        ("/api/events/post", Some("text/plain;charset=UTF-8")),
        ("/api/events/post", None),
        ("/api/events/post", Some("application/vnd.eventline+json")),
    ] {
        let (status, answer) = app.post_raw(path, content_type, body.clone()).await;
        assert_eq!(status, 201, "{path} {content_type:?}: {answer}");
    }
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(body.as_bytes()).expect("gzip");
    let gzipped = encoder.finish().expect("gzip");
    let (status, answer) = app.post_encoded("/api/events/post", "gzip", gzipped).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(app.all_events().await.len(), 6);
}

#[tokio::test]
async fn batch_accepts_wrapped_array_and_ndjson() {
    let app = TestApp::spawn().await;
    let event = |n: u32| json!({"event_type": "new_order", "content": {"n": n}, "contact_id": format!("c{n}")});
    let (status, answer) = app
        .post(
            "/api/events/batch",
            &json!({"events": [event(1), event(2)]}),
        )
        .await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["stored"], 2);
    assert_eq!(answer["ids"].as_array().map(Vec::len), Some(2));
    let (status, answer) = app.post("/api/events/batch", &json!([event(3)])).await;
    assert_eq!((status, answer["stored"].clone()), (201, json!(1)));
    let ndjson = format!("{}\n\n{}\n", event(4), event(5));
    let (status, answer) = app
        .post_raw("/api/events/batch", Some("application/x-ndjson"), ndjson)
        .await;
    assert_eq!(
        (status, answer["stored"].clone()),
        (201, json!(2)),
        "{answer}"
    );
    let contacts: Vec<Value> = app
        .all_events()
        .await
        .iter()
        .map(|event| event["contact_id"].clone())
        .collect();
    assert_eq!(contacts, vec!["c1", "c2", "c3", "c4", "c5"]);
}

#[tokio::test]
async fn replay_by_id_answers_the_stored_event_and_a_different_event_conflicts() {
    let app = TestApp::spawn().await;
    let id = "0190b3c4-4f1e-7cc0-8d2a-5e2b1c9d7f10";
    let event = json!({
        "id": id, "event_type": "new_order", "content": {"a": 1, "b": [1, 2]},
        "contact_id": "c1", "timestamp": 1_499_299_200, "sent_at": 1_499_299_300
    });
    let (status, first) = app.post("/api/events", &event).await;
    assert_eq!(status, 201, "{first}");

    // Sent again later, with another sent_at and the content's keys in another order.
    let mut again = event.clone();
    again["sent_at"] = json!(1_499_299_999);
    again["content"] = json!({"b": [1, 2], "a": 1});
    let (status, replay) = app.post("/api/events/post", &again).await;
    assert_eq!(status, 200, "{replay}");
    assert_eq!(replay, first, "the first stored copy is answered");

    let changes = [
        ("event_type", json!("new_contact")),
        ("content", json!({"a": 2, "b": [1, 2]})),
        ("contact_id", json!("c2")),
        ("scope", json!("site")),
        ("timestamp", json!(1_499_299_201)),
    ];
    for (field, value) in changes {
        let mut different = event.clone();
        different[field] = value;
        let (status, problem) = app.post("/api/events/post", &different).await;
        assert_eq!(status, 409, "{field}: {problem}");
        assert_eq!(problem["code"], "id-conflict");
        assert_eq!(problem["field"], "id");
    }
    // In a batch, a conflict refuses the whole batch.
    let new = json!({"event_type": "new_order", "content": {}});
    let mut conflicting = event.clone();
    conflicting["contact_id"] = json!("c9");
    let (status, problem) = app
        .post("/api/events/batch", &json!([new, conflicting]))
        .await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(problem["errors"][0]["index"], 1);
    // A batch of replays stores nothing new and says so.
    let (status, answer) = app.post("/api/events/batch", &json!([event, again])).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        (answer["stored"].clone(), answer["replayed"].clone()),
        (json!(0), json!(2))
    );

    let events = app.all_events().await;
    assert_eq!(events, vec![first]);
}

#[tokio::test]
async fn times_follow_the_seconds_milliseconds_rule_and_sent_at_corrects_skew() {
    let app = TestApp::spawn().await;
    let post_at = |timestamp: Value| {
        let app = &app;
        async move {
            let (status, stored) = app
                .post(
                    "/api/events",
                    &json!({"event_type": "t", "content": {}, "timestamp": timestamp}),
                )
                .await;
            assert_eq!(status, 201, "{stored}");
            stored["timestamp"].as_i64().expect("timestamp")
        }
    };
    assert_eq!(post_at(json!(1_499_299_200)).await, 1_499_299_200_000);
    assert_eq!(
        post_at(json!(1_499_299_200_123_i64)).await,
        1_499_299_200_123
    );
    assert_eq!(
        post_at(json!("2017-07-06T00:00:00.5Z")).await,
        1_499_299_200_500
    );
    assert_eq!(post_at(json!(99_999_999_999_i64)).await, 99_999_999_999_000);

    // A device whose clock is an hour slow: its timestamp is moved forward by the
    // difference between its sent_at and the server's receive time.
    let device_now_ms = now_ms() - 3_600_000;
    let event = json!({"event_type": "t", "content": {}, "timestamp": device_now_ms - 60_000, "sent_at": device_now_ms});
    let (status, stored) = app.post("/api/events", &event).await;
    assert_eq!(status, 201);
    let skew_ms = stored["received_at"].as_i64().expect("received_at") - device_now_ms;
    assert!((3_600_000..3_660_000).contains(&skew_ms), "{skew_ms}");
    assert_eq!(
        stored["timestamp"].as_i64(),
        Some(device_now_ms - 60_000 + skew_ms)
    );
}

fn now_ms() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock");
    since_epoch.as_millis() as i64
}

#[tokio::test]
async fn graceful_shutdown_commits_every_accepted_request() {
    let app = TestApp::spawn().await;
    let events: Vec<Value> = (0..2_000)
        .map(|n| json!({"event_type": "t", "content": {"n": n}}))
        .collect();
    let posts: Vec<_> = (0..8)
        .map(|_| {
            tokio::spawn(
                app.client
                    .post(app.url("/api/events/batch"))
                    .json(&events)
                    .send(),
            )
        })
        .collect();
    // Stop once the first batches are stored while the others are still arriving: each
    // is either answered 201 and stored, or refused before it was accepted.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while app.get("/api/events?limit=1").await.1["events"]
        .as_array()
        .is_none_or(Vec::is_empty)
    {
        assert!(std::time::Instant::now() < deadline, "no batch was stored");
        tokio::task::yield_now().await;
    }
    let storage = app.stop().await;
    let mut acknowledged = 0;
    for post in posts {
        if let Ok(response) = post.await.expect("task") {
            assert_eq!(response.status().as_u16(), 201);
            acknowledged += 2_000;
        }
    }
    let app = TestApp::spawn_in(storage, |_| {}).await;
    assert_eq!(app.all_events().await.len(), acknowledged);
}
