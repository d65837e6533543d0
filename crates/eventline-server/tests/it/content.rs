//! Content filters over HTTP (SPEC §8): the URL form on every read, the JSON form of
//! `POST /api/events/query`, and every malformed filter refused naming it. The stores'
//! agreement on every operator and type is the conformance suite's
//! (`eventline-store/tests/it/content.rs`).

use serde_json::{Value, json};

use crate::{TestApp, assert_problem};

const SINCE: i64 = 1_700_000_000_000;

/// Six orders: two stores, totals 10 to 60, a nested address, one without a store.
async fn orders(app: &TestApp) {
    let events: Vec<Value> = (0..6)
        .map(|n| {
            let mut content = json!({
                "total": (n + 1) * 10,
                "address": {"city": if n % 2 == 0 { "Paris" } else { "Lyon" }},
            });
            if n != 5 {
                content["store_id"] = json!(if n < 3 { "appmachine" } else { "other" });
            }
            json!({
                "event_type": "new_order",
                "content": content,
                "contact_id": format!("c-{}", n % 2),
                "timestamp": SINCE + n * 60_000,
            })
        })
        .collect();
    let (status, answer) = app.post("/api/events/batch", &json!(events)).await;
    assert_eq!(status, 201, "{answer}");
}

fn totals(page: &Value) -> Vec<i64> {
    page["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|event| event["content"]["total"].as_i64().expect("total"))
        .collect()
}

#[tokio::test]
async fn every_read_takes_content_filters_in_the_url() {
    let app = TestApp::spawn().await;
    orders(&app).await;
    let (status, page) = app
        .get("/api/events?content.store_id=appmachine&content.total[gte]=20")
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(totals(&page), [20, 30]);
    let (_, page) = app
        .get("/api/events/get?content.address.city=Lyon&order=desc")
        .await;
    assert_eq!(totals(&page), [60, 40, 20]);
    let (_, page) = app.get("/api/events?content.store_id[exists]=false").await;
    assert_eq!(totals(&page), [60]);
    let (_, page) = app
        .get("/api/events?content.store_id[in]=%5B%22other%22%5D&limit=1")
        .await;
    assert_eq!(totals(&page), [40]);
    let next = page["next_offset"].as_str().expect("a next page");
    let (_, page) = app
        .get(&format!(
            "/api/events?content.store_id[in]=%5B%22other%22%5D&limit=1&offset={next}"
        ))
        .await;
    assert_eq!(
        totals(&page),
        [50],
        "the cursor continues the filtered read"
    );
    // A key no event has: an empty page, not an error.
    let (status, page) = app.get("/api/events?content.nothing=here").await;
    assert_eq!((status, totals(&page)), (200, vec![]));

    let (status, stats) = app
        .get(&format!(
            "/api/stats?since={SINCE}&until={}&bucket=day&content.total[lt]=35",
            SINCE + 86_400_000
        ))
        .await;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["buckets"][0]["counts"]["new_order"], 3, "{stats}");

    let export = app
        .client
        .get(app.url("/api/events/export?content.address.city=Paris"))
        .send()
        .await
        .expect("export")
        .text()
        .await
        .expect("body");
    let exported: Vec<i64> = export
        .lines()
        .map(|line| {
            let event: Value = serde_json::from_str(line).expect("json");
            event["content"]["total"].as_i64().expect("total")
        })
        .collect();
    assert_eq!(exported, [10, 30, 50]);
}

#[tokio::test]
async fn the_json_form_takes_trees_and_types() {
    let app = TestApp::spawn().await;
    orders(&app).await;
    let mut query = json!({
        "since": SINCE,
        "event_types": ["new_order"],
        "limit": 2,
        "where": {"or": [
            {"path": ["address", "city"], "value": "Lyon"},
            {"not": {"path": "total", "op": "gte", "value": 20}},
        ]},
    });
    let (status, page) = app.post("/api/events/query", &query).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(totals(&page), [10, 20]);
    // The same query with the page's next_offset continues it.
    query["offset"] = page["next_offset"].clone();
    assert!(query["offset"].is_string(), "a next page");
    let (_, page) = app.post("/api/events/query", &query).await;
    assert_eq!(totals(&page), [40, 60]);
    // Typed: the string "10" is not the number 10.
    let (_, page) = app
        .post(
            "/api/events/query",
            &json!({"where": [{"path": "total", "value": "10"}]}),
        )
        .await;
    assert_eq!(totals(&page), Vec::<i64>::new());
    let (_, page) = app
        .post(
            "/api/events/query",
            &json!({"where": [{"path": "total", "value": 10}]}),
        )
        .await;
    assert_eq!(totals(&page), [10]);
}

#[tokio::test]
async fn a_bad_filter_is_refused_naming_it() {
    let app = TestApp::spawn().await;
    let cases = [
        ("content.total[between]=1", "content.total[between]"),
        ("content.total[exists]=maybe", "content.total[exists]"),
        ("content.store[in]=a,b", "content.store[in]"),
        ("content..x=1", "content..x"),
        ("contents.x=1", "contents.x"),
    ];
    for (query, parameter) in cases {
        let answer = app.get(&format!("/api/events?{query}")).await;
        assert_problem(&answer, 400, "invalid-parameter");
        assert_eq!(answer.1["parameter"], parameter, "{query}: {}", answer.1);
    }
    let many: String = (0..21).map(|n| format!("&content.k{n}=1")).collect();
    let answer = app.get(&format!("/api/events?limit=1{many}")).await;
    assert_problem(&answer, 400, "invalid-parameter");
    assert!(
        answer.1["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("at most 20")
    );

    let bodies = [
        (
            json!({"where": [{"path": "a", "value": 1}, {"path": "a", "op": "gt", "value": [1]}]}),
            "where[1].value",
        ),
        (
            json!({"where": [{"path": "a", "op": "near", "value": 1}]}),
            "where[0].op",
        ),
        (json!({"where": [{"value": 1}]}), "where[0].path"),
        (
            json!({"where": {"and": [{"not": {"or": [{"not": {"and": [{"path": "a", "value": 1}]}}]}}]}}),
            "where.and[0].not.or[0].not.and",
        ),
        (json!({"limit": 0}), "limit"),
        (json!({"color": "red"}), "color"),
        (json!([]), "body"),
    ];
    for (body, parameter) in bodies {
        let answer = app.post("/api/events/query", &body).await;
        assert_problem(&answer, 400, "invalid-parameter");
        assert_eq!(answer.1["parameter"], parameter, "{body}: {}", answer.1);
    }
    let answer = app
        .post_raw("/api/events/query", Some("application/json"), "{not json")
        .await;
    assert_problem(&answer, 400, "malformed-json");
    let huge =
        json!({"where": [{"path": "a", "op": "in", "value": vec!["x".repeat(1_100); 1_000]}]});
    let answer = app.post("/api/events/query", &huge).await;
    assert_eq!(answer.0, 413, "{}", answer.1);
}

#[tokio::test]
async fn discovery_lists_paths_and_values_and_names_bad_parameters() {
    let app = TestApp::spawn().await;
    orders(&app).await;
    let (status, answer) = app.get("/api/properties?event_type=new_order").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["complete"], true);
    assert_eq!(
        answer["properties"],
        json!([
            {"path": "address", "keys": ["address"], "events": 6, "types": {"object": 6}},
            {"path": "address.city", "keys": ["address", "city"], "events": 6, "types": {"string": 6}},
            {"path": "total", "keys": ["total"], "events": 6, "types": {"number": 6}},
            {"path": "store_id", "keys": ["store_id"], "events": 5, "types": {"string": 5}},
        ])
    );
    let (_, none) = app.get("/api/properties?event_type=nothing").await;
    assert_eq!(none["properties"], json!([]));
    let (status, values) = app
        .get("/api/properties/values?path=store_id&limit=1")
        .await;
    assert_eq!(status, 200, "{values}");
    assert_eq!(
        values,
        json!({"path": "store_id", "values": [{"value": "appmachine", "events": 3}], "complete": true})
    );
    let (_, values) = app.get("/api/properties/values?path=total").await;
    assert_eq!(values["values"].as_array().map(Vec::len), Some(6));
    assert_eq!(values["values"][0], json!({"value": 10, "events": 1}));
    for (url, parameter) in [
        ("/api/properties/values", "path"),
        ("/api/properties/values?path=a..b", "path"),
        ("/api/properties/values?path=a&limit=0", "limit"),
        ("/api/properties/values?path=a&limit=101", "limit"),
        ("/api/properties?bucket=day", "bucket"),
    ] {
        let answer = app.get(url).await;
        assert_problem(&answer, 400, "invalid-parameter");
        assert!(
            answer.1["detail"]
                .as_str()
                .is_some_and(|detail| detail.starts_with(parameter)),
            "{url}: {}",
            answer.1
        );
    }
}
