//! Every input rule of SPEC §1–§4: the bad input, the answer's status, problem code and
//! field, and that nothing was stored.

use std::io::Write;

use serde_json::{Value, json};

use crate::{TestApp, assert_problem};

fn valid() -> Value {
    json!({"event_type": "new_order", "content": {"order": 1}})
}

fn with(field: &str, value: Value) -> Value {
    let mut event = valid();
    event[field] = value;
    event
}

fn without(field: &str) -> Value {
    let mut event = valid();
    event.as_object_mut().expect("object").remove(field);
    event
}

#[tokio::test]
async fn invalid_events_are_refused_by_field_and_nothing_is_stored() {
    let app = TestApp::spawn_with(|config| {
        config.limits = config.limits.clone().with_content_bytes_max(100)
    })
    .await;
    let long = |chars: usize| Value::String("x".repeat(chars));
    let cases: Vec<(Value, &str, Option<&str>)> = vec![
        (without("event_type"), "invalid-field", Some("event_type")),
        (
            with("event_type", json!("")),
            "invalid-field",
            Some("event_type"),
        ),
        (
            with("event_type", long(129)),
            "invalid-field",
            Some("event_type"),
        ),
        (
            with("event_type", json!("a,b")),
            "invalid-field",
            Some("event_type"),
        ),
        (
            with("event_type", json!("a\u{0007}b")),
            "invalid-field",
            Some("event_type"),
        ),
        (
            with("event_type", json!(" padded")),
            "invalid-field",
            Some("event_type"),
        ),
        (
            with("event_type", json!(5)),
            "invalid-field",
            Some("event_type"),
        ),
        (without("content"), "invalid-field", Some("content")),
        (
            with("content", json!([1, 2])),
            "invalid-field",
            Some("content"),
        ),
        (
            with("content", json!("text")),
            "invalid-field",
            Some("content"),
        ),
        (with("content", json!(3)), "invalid-field", Some("content")),
        (
            with("content", json!(null)),
            "invalid-field",
            Some("content"),
        ),
        (
            with("content", json!({"big": "y".repeat(100)})),
            "invalid-field",
            Some("content"),
        ),
        (
            with("contact_id", long(257)),
            "invalid-field",
            Some("contact_id"),
        ),
        (
            with("contact_id", json!(12)),
            "invalid-field",
            Some("contact_id"),
        ),
        (with("scope", json!("web")), "invalid-field", Some("scope")),
        (with("scope", json!("")), "invalid-field", Some("scope")),
        (with("id", json!("not-a-uuid")), "invalid-field", Some("id")),
        (with("id", json!(42)), "invalid-field", Some("id")),
        (
            with("timestamp", json!("yesterday")),
            "invalid-field",
            Some("timestamp"),
        ),
        (
            with("timestamp", json!(-1)),
            "invalid-field",
            Some("timestamp"),
        ),
        (
            with("timestamp", json!(true)),
            "invalid-field",
            Some("timestamp"),
        ),
        (
            with("timestamp", json!("10000-01-01T00:00:00Z")),
            "invalid-field",
            Some("timestamp"),
        ),
        (with("sent_at", json!({})), "invalid-field", Some("sent_at")),
        (
            with("event_typ", json!("typo")),
            "unknown-field",
            Some("event_typ"),
        ),
        (with("Content", json!({})), "unknown-field", Some("Content")),
        (json!([valid()]), "not-an-object", None),
        (json!("event"), "not-an-object", None),
        (json!(null), "not-an-object", None),
    ];
    for (body, code, field) in cases {
        for path in ["/api/events/post", "/api/events"] {
            let (status, problem) = app.post(path, &body).await;
            assert_eq!(status, 400, "{body}: {problem}");
            assert_eq!(problem["code"], code, "{body}: {problem}");
            assert_eq!(problem["type"], format!("/problems/{code}"));
            assert_eq!(problem["status"], 400);
            assert_eq!(problem["field"].as_str(), field, "{body}: {problem}");
            assert!(
                problem["detail"]
                    .as_str()
                    .is_some_and(|detail| !detail.is_empty())
            );
        }
    }
    // A key given twice is refused too, though serde_json would keep the last.
    let (status, problem) = app
        .post_raw(
            "/api/events",
            Some("application/json"),
            r#"{"event_type":"a","event_type":"b","content":{}}"#,
        )
        .await;
    assert_eq!(
        (status, problem["field"].clone()),
        (400, json!("event_type")),
        "{problem}"
    );
    // The largest valid content is accepted at exactly the limit.
    let exact = format!(r#"{{"k":"{}"}}"#, "y".repeat(100 - 8));
    assert_eq!(exact.len(), 100);
    let (status, _) = app
        .post_raw(
            "/api/events",
            None,
            format!(r#"{{"event_type":"a","content":{exact}}}"#),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(
        app.all_events().await.len(),
        1,
        "only the valid event is stored"
    );
}

#[tokio::test]
async fn malformed_json_says_where() {
    let app = TestApp::spawn().await;
    let cases = [
        (
            "{\"event_type\": \"a\",\n  \"content\": {\"x\": }\n}",
            2,
            20,
        ),
        ("{\"event_type\": \"a\"", 1, 18),
        ("", 1, 0),
        ("{]", 1, 2),
    ];
    for (body, line, column) in cases {
        let (status, problem) = app
            .post_raw("/api/events/post", Some("application/json"), body)
            .await;
        assert_eq!(status, 400, "{body:?}: {problem}");
        assert_eq!(problem["code"], "malformed-json");
        assert_eq!(
            (problem["line"].as_u64(), problem["column"].as_u64()),
            (Some(line), Some(column)),
            "{body:?}: {problem}"
        );
        assert!(
            problem["detail"]
                .as_str()
                .is_some_and(|detail| detail.contains(&format!("line {line}")))
        );
    }
    assert_problem(
        &app.post_raw("/api/events/batch", Some("application/json"), "[{}, {")
            .await,
        400,
        "malformed-json",
    );
    assert_eq!(app.all_events().await.len(), 0);
}

#[tokio::test]
async fn a_batch_with_bad_events_lists_every_bad_index_and_stores_nothing() {
    let app = TestApp::spawn().await;
    let mut events: Vec<Value> = (0..300)
        .map(|n| json!({"event_type": "t", "content": {"n": n}}))
        .collect();
    events[3] = json!({"event_type": "t"});
    events[7] = json!({"event_type": "t", "content": [], "extra": 1});
    let (status, problem) = app
        .post("/api/events/batch", &json!({"events": events.clone()}))
        .await;
    assert_eq!(status, 400, "{problem}");
    assert_eq!(problem["code"], "invalid-batch");
    assert_eq!(problem["error_count"], 2);
    assert_eq!(
        problem["errors"],
        json!([
            {"index": 3, "code": "invalid-field", "field": "content", "detail": "content: is required and must be a JSON object"},
            {"index": 7, "code": "unknown-field", "field": "extra", "detail": problem["errors"][1]["detail"]},
        ])
    );

    // More than 100 bad events: the first 100 are listed, all are counted.
    for event in events.iter_mut().skip(100) {
        event["scope"] = json!("nowhere");
    }
    let (status, problem) = app.post("/api/events/batch", &json!(events)).await;
    assert_eq!(status, 400);
    assert_eq!(problem["error_count"], 202);
    let listed = problem["errors"].as_array().expect("errors");
    assert_eq!(listed.len(), 100);
    assert_eq!(listed[2]["index"], 100);
    assert_eq!(listed[2]["field"], "scope");

    // NDJSON reports the line of each bad event.
    let ndjson = "{\"event_type\":\"t\",\"content\":{}}\n\n{\"event_type\":\"t\"\n";
    let (status, problem) = app
        .post_raw("/api/events/batch", Some("application/x-ndjson"), ndjson)
        .await;
    assert_eq!(status, 400, "{problem}");
    assert_eq!(problem["errors"][0]["index"], 1);
    assert!(
        problem["errors"][0]["detail"]
            .as_str()
            .is_some_and(|detail| detail.starts_with("line 3:")),
        "{problem}"
    );

    for not_a_batch in [
        json!({"event": []}),
        json!(5),
        json!({"events": [], "more": 1}),
    ] {
        assert_problem(
            &app.post("/api/events/batch", &not_a_batch).await,
            400,
            "invalid-batch",
        );
    }
    assert_eq!(app.all_events().await.len(), 0);
}

#[tokio::test]
async fn limits_on_bodies_batches_and_encodings() {
    let app = TestApp::spawn_with(|config| {
        config.limits.batch_len_max = 10;
        config.limits.batch_body_bytes_max = 4_096;
    })
    .await;
    let event = json!({"event_type": "t", "content": {}});
    let eleven: Vec<Value> = vec![event.clone(); 11];
    assert_problem(
        &app.post("/api/events/batch", &json!(eleven)).await,
        413,
        "body-too-large",
    );
    let ndjson = format!("{event}\n").repeat(11);
    let (status, _) = app
        .post_raw("/api/events/batch", Some("application/x-ndjson"), ndjson)
        .await;
    assert_eq!(status, 413);

    let big_batch = json!([{"event_type": "t", "content": {"x": "y".repeat(5_000)}}]);
    assert_problem(
        &app.post("/api/events/batch", &big_batch).await,
        413,
        "body-too-large",
    );
    // A single event body is bounded by the content limit plus a small envelope.
    let big_event = json!({"event_type": "t", "content": {"x": "y".repeat(80 * 1024)}});
    assert_problem(
        &app.post("/api/events", &big_event).await,
        413,
        "body-too-large",
    );

    // A gzip bomb: 64 MiB of zeros in a few KiB; cut off at the limit.
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![b' '; 1024 * 1024];
    for _ in 0..64 {
        encoder.write_all(&zeros).expect("gzip");
    }
    let bomb = encoder.finish().expect("gzip");
    assert!(bomb.len() < 200_000);
    for path in ["/api/events", "/api/events/batch"] {
        assert_problem(
            &app.post_encoded(path, "gzip", bomb.clone()).await,
            413,
            "body-too-large",
        );
    }
    let corrupt = b"\x1f\x8b\x08\x00garbage".to_vec();
    assert_problem(
        &app.post_encoded("/api/events", "gzip", corrupt).await,
        400,
        "invalid-gzip",
    );

    for (content_type, path) in [
        ("application/x-www-form-urlencoded", "/api/events"),
        ("multipart/form-data; boundary=x", "/api/events"),
        ("application/xml", "/api/events/batch"),
        ("application/x-ndjson", "/api/events/post"),
    ] {
        assert_problem(
            &app.post_raw(path, Some(content_type), event.to_string())
                .await,
            415,
            "unsupported-media-type",
        );
    }
    let brotli = app
        .post_encoded("/api/events", "br", event.to_string().into_bytes())
        .await;
    assert_problem(&brotli, 415, "unsupported-media-type");
    assert_eq!(app.all_events().await.len(), 0);
}

#[tokio::test]
async fn bad_query_parameters_are_named() {
    let app = TestApp::spawn().await;
    let cases = [
        ("since=yesterday", "since"),
        ("until=2017-13-01T00:00:00Z", "until"),
        ("since=2000&until=1000", "since"),
        ("scope=web", "scope"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("limit=-5", "limit"),
        ("offset=-1", "offset"),
        ("offset=abc", "offset"),
        ("offset=100001", "offset"),
        ("order=newest", "order"),
        ("contactid=c1", "contactid"),
        ("limit=5&limit=6", "limit"),
        ("contact_id=a&contactId=b", "contact_id"),
        (
            &format!(
                "event_types={}",
                (0..101)
                    .map(|n| format!("t{n}"))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            "event_types",
        ),
    ];
    for (query, parameter) in cases {
        for path in ["/api/events/get", "/api/events"] {
            let (status, problem) = app.get(&format!("{path}?{query}")).await;
            assert_eq!(status, 400, "{query}: {problem}");
            assert_eq!(problem["code"], "invalid-parameter", "{query}");
            assert_eq!(problem["parameter"], parameter, "{query}: {problem}");
        }
    }
    let (_, problem) = app.get("/api/events?limit=1001").await;
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|detail| detail.contains("1000")),
        "names the maximum: {problem}"
    );
}

#[tokio::test]
async fn every_error_is_problem_json() {
    let app = TestApp::spawn().await;
    for (method, path) in [
        ("GET", "/nowhere"),
        ("DELETE", "/api/events"),
        ("GET", "/api/events/batch"),
        ("PUT", "/healthz"),
    ] {
        let response = app
            .client
            .request(method.parse().expect("method"), app.url(path))
            .send()
            .await
            .expect("request");
        let content_type = response.headers()["content-type"]
            .to_str()
            .expect("header")
            .to_owned();
        let (status, problem) = crate::answer(response).await;
        assert!(status == 404 || status == 405, "{method} {path}: {status}");
        assert_eq!(content_type, "application/problem+json");
        assert_eq!(problem["status"], status);
    }
}

#[tokio::test]
async fn the_nul_character_is_refused_alike_by_both_stores() {
    let app = TestApp::spawn().await;
    let answer = app
        .post_raw(
            "/api/events",
            Some("application/json"),
            br#"{"event_type":"t","content":{"name":"a\u0000b"}}"#.to_vec(),
        )
        .await;
    assert_problem(&answer, 400, "invalid-field");
    assert_eq!(answer.1["field"], "content");
    // A backslash followed by the text u0000 is not the character.
    let answer = app
        .post_raw(
            "/api/events",
            Some("application/json"),
            br#"{"event_type":"t","content":{"path":"C:\\u0000"}}"#.to_vec(),
        )
        .await;
    assert_eq!(answer.0, 201, "{}", answer.1);
    assert_eq!(answer.1["content"]["path"], "C:\\u0000");
    app.stop().await;
}

#[tokio::test]
async fn a_replay_is_the_same_event_whatever_the_number_spelling() {
    let app = TestApp::spawn().await;
    let id = uuid::Uuid::now_v7();
    let post = |content: &'static str| {
        let body = format!(r#"{{"id":"{id}","event_type":"t","content":{content}}}"#);
        app.post_raw("/api/events", Some("application/json"), body.into_bytes())
    };
    assert_eq!(post(r#"{"x":1e2,"y":[0.5]}"#).await.0, 201);
    assert_eq!(post(r#"{"x":1e2,"y":[0.5]}"#).await.0, 200);
    assert_eq!(post(r#"{"y":[5e-1],"x":100}"#).await.0, 200);
    assert_eq!(post(r#"{"x":101,"y":[0.5]}"#).await.0, 409);
    app.stop().await;
}
