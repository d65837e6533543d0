//! `GET /api/stats` and `GET /api/event-types` over the HTTP API.

use serde_json::{Value, json};

use crate::{TestApp, assert_problem};

const HOUR_MS: i64 = 3_600_000;
const BASE_MS: i64 = 1_700_006_400_000; // an hour boundary

#[tokio::test]
async fn counts_per_bucket_and_type_and_the_known_types() {
    let app = TestApp::spawn().await;
    // Hour 0: 3 orders, 1 contact; hour 2: 2 orders; contact c-1 has 2 of them.
    let events: Vec<Value> = [
        (0, "new_order", Some("c-1")),
        (10, "new_order", None),
        (59, "new_order", Some("c-2")),
        (30, "new_contact", Some("c-1")),
        (125, "new_order", Some("c-1")),
        (179, "new_order", None),
    ]
    .into_iter()
    .map(|(minute, event_type, contact_id)| {
        json!({"event_type": event_type, "content": {}, "contact_id": contact_id,
               "timestamp": BASE_MS + minute * 60_000 + 1_234})
    })
    .collect();
    assert_eq!(app.post("/api/events/batch", &json!(events)).await.0, 201);

    let window = format!("since={BASE_MS}&until={}", BASE_MS + 3 * HOUR_MS);
    let (status, stats) = app.get(&format!("/api/stats?{window}&bucket=hour")).await;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(
        stats,
        json!({
            "bucket": "hour", "since": BASE_MS, "until": BASE_MS + 3 * HOUR_MS,
            "buckets": [
                {"start": BASE_MS, "total": 4, "counts": {"new_contact": 1, "new_order": 3}},
                {"start": BASE_MS + 2 * HOUR_MS, "total": 2, "counts": {"new_order": 2}},
            ],
            "types": {"new_contact": 1, "new_order": 5},
            "total": 6,
        })
    );
    let (_, one_contact) = app
        .get(&format!(
            "/api/stats?{window}&bucket=day&contactId=c-1&eventTypes=new_order"
        ))
        .await;
    assert_eq!(one_contact["total"], 2, "{one_contact}");
    assert_eq!(
        one_contact["buckets"][0]["start"],
        BASE_MS / 86_400_000 * 86_400_000
    );

    let (status, types) = app.get("/api/event-types").await;
    assert_eq!(status, 200);
    assert_eq!(
        types,
        json!({"event_types": [
            {"event_type": "new_contact", "count": 1},
            {"event_type": "new_order", "count": 5},
        ]})
    );

    assert_problem(
        &app.get("/api/stats?bucket=hour").await,
        400,
        "invalid-parameter",
    );
    let too_many = app
        .get(&format!(
            "/api/stats?since={BASE_MS}&until={}&bucket=minute",
            BASE_MS + 30 * 24 * HOUR_MS
        ))
        .await;
    assert_problem(&too_many, 400, "invalid-parameter");
    assert_eq!(too_many.1["parameter"], "bucket");
    assert_problem(
        &app.get(&format!("/api/stats?{window}&limit=5")).await,
        400,
        "invalid-parameter",
    );
    app.stop().await;
}
