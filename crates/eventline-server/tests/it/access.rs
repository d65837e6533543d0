//! SPEC §5: the authorization matrix (every endpoint × every kind of credential, by
//! header and by `?key=`), contact tokens, and erasure with suppression.

use eventline_core::access::{Keys, TokenClaims, mint_token};
use serde_json::{Value, json};

use crate::TestApp;

const WRITE_KEY: &str = "wk_test_0123456789abcdef";
const SECRET_KEY: &str = "sk_test_0123456789abcdef";
const TOKEN_SECRET: &str = "token-secret-0123456789abcdef";

#[derive(Debug, Clone, Copy)]
enum Credential {
    None,
    Write,
    Secret,
    Wrong,
    TokenSameContact,
    TokenOtherContact,
    TokenExpired,
    TokenTampered,
}

const CREDENTIALS: [Credential; 8] = [
    Credential::None,
    Credential::Write,
    Credential::Secret,
    Credential::Wrong,
    Credential::TokenSameContact,
    Credential::TokenOtherContact,
    Credential::TokenExpired,
    Credential::TokenTampered,
];

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

fn token(contact_id: &str, exp: i64) -> String {
    mint_token(
        TOKEN_SECRET.as_bytes(),
        &TokenClaims {
            contact_id: contact_id.to_owned(),
            exp,
        },
    )
}

impl Credential {
    fn value(self) -> Option<String> {
        match self {
            Credential::None => None,
            Credential::Write => Some(WRITE_KEY.to_owned()),
            Credential::Secret => Some(SECRET_KEY.to_owned()),
            Credential::Wrong => Some("sk_test_not_a_key_of_this_server".to_owned()),
            Credential::TokenSameContact => Some(token("c-1", now_s() + 3600)),
            Credential::TokenOtherContact => Some(token("c-2", now_s() + 3600)),
            Credential::TokenExpired => Some(token("c-1", now_s() - 1)),
            Credential::TokenTampered => {
                // c-1's signature on claims rewritten to c-2.
                let genuine = token("c-1", now_s() + 3600);
                let (_, signature) = genuine.rsplit_once('.').expect("signature");
                let forged = token("c-2", now_s() + 3600);
                let (claims, _) = forged.rsplit_once('.').expect("claims");
                Some(format!("{claims}.{signature}"))
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Post,
    ReadOwnContact,
    ReadAll,
    Erase,
    Public,
}

const ENDPOINTS: [(&str, &str, Kind); 23] = [
    ("POST", "/api/events/post", Kind::Post),
    ("POST", "/api/events", Kind::Post),
    ("POST", "/api/events/batch", Kind::Post),
    ("GET", "/api/events?contact_id=c-1", Kind::ReadOwnContact),
    ("GET", "/api/events/get?contactId=c-1", Kind::ReadOwnContact),
    (
        "GET",
        "/api/contacts/get?contact_id=c-1&eventTypes=x",
        Kind::ReadOwnContact,
    ),
    ("GET", "/api/events", Kind::ReadAll),
    // The query string only tells the two bodies apart: the contact is in the body.
    ("POST", "/api/events/query?own", Kind::ReadOwnContact),
    ("POST", "/api/events/query?all", Kind::ReadAll),
    (
        "GET",
        "/api/events/export?contact_id=c-1",
        Kind::ReadOwnContact,
    ),
    ("GET", "/api/events/export", Kind::ReadAll),
    (
        "GET",
        "/api/events/stream?contact_id=c-1",
        Kind::ReadOwnContact,
    ),
    ("GET", "/api/events/stream", Kind::ReadAll),
    (
        "GET",
        "/api/stats?since=1700000000000&bucket=day&contact_id=c-1",
        Kind::ReadOwnContact,
    ),
    (
        "GET",
        "/api/stats?since=1700000000000&bucket=day",
        Kind::ReadAll,
    ),
    ("GET", "/api/event-types", Kind::Erase),
    ("GET", "/api/properties", Kind::Erase),
    ("GET", "/api/properties/values?path=store_id", Kind::Erase),
    ("DELETE", "/api/contacts/c-9/events", Kind::Erase),
    ("DELETE", "/api/contacts/c-9/suppression", Kind::Erase),
    ("GET", "/metrics", Kind::Erase),
    ("GET", "/healthz", Kind::Public),
    ("GET", "/sdk/builder.js", Kind::Public),
];

/// The status each credential must get, on a server with write keys, secret keys and a
/// token secret.
fn expected(kind: Kind, credential: Credential) -> u16 {
    use Credential as C;
    match (kind, credential) {
        (Kind::Public, _) => 200,
        (_, C::None) => 401,
        (_, C::Wrong | C::TokenExpired | C::TokenTampered) => 401,
        (_, C::Secret) => match kind {
            Kind::Post => 201,
            _ => 200,
        },
        (Kind::Post, C::Write) => 201,
        (_, C::Write) => 403,
        (Kind::ReadOwnContact, C::TokenSameContact) => 200,
        (_, C::TokenSameContact | C::TokenOtherContact) => 403,
    }
}

fn body_for(path: &str) -> Option<Value> {
    let event = json!({"event_type": "access", "content": {}, "contact_id": "c-1"});
    match path {
        "/api/events/batch" => Some(json!([event])),
        "/api/events/post" | "/api/events" => Some(event),
        "/api/events/query?own" => Some(
            json!({"contact_id": "c-1", "where": [{"path": "a", "op": "exists", "value": false}]}),
        ),
        "/api/events/query?all" => Some(json!({"where": []})),
        _ => None,
    }
}

async fn send(
    app: &TestApp,
    method: &str,
    path: &str,
    credential: Option<&str>,
    by_query: bool,
) -> (u16, Value) {
    let mut path = path.to_owned();
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut request_path = path.clone();
    if let (Some(credential), true) = (credential, by_query) {
        let separator = if path.contains('?') { '&' } else { '?' };
        request_path = format!("{path}{separator}key={credential}");
    }
    let mut request = app.client.request(method, app.url(&request_path));
    if let (Some(credential), false) = (credential, by_query) {
        request = request.bearer_auth(credential);
    }
    let body = body_for(&path).or_else(|| body_for(path.split('?').next().unwrap_or_default()));
    if let Some(body) = body {
        request = request.json(&body);
    }
    path.clear();
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    if status == 200 && response.headers()["content-type"] == "text/event-stream" {
        // A live stream never ends: its status is the answer.
        return (status, Value::Null);
    }
    let body = response.json::<Value>().await.unwrap_or(Value::Null);
    (status, body)
}

#[tokio::test]
async fn every_endpoint_with_every_credential_by_header_and_by_query() {
    let app = TestApp::spawn_with(|config| {
        config.keys = Keys::new(
            &[WRITE_KEY.to_owned()],
            &[SECRET_KEY.to_owned()],
            Some(TOKEN_SECRET),
        );
    })
    .await;
    let mut checked = 0;
    let mut wrong = Vec::new();
    for by_query in [false, true] {
        for (method, path, kind) in ENDPOINTS {
            for credential in CREDENTIALS {
                let value = credential.value();
                let (status, body) = send(&app, method, path, value.as_deref(), by_query).await;
                let want = expected(kind, credential);
                checked += 1;
                if status != want {
                    wrong.push(format!(
                        "{method} {path} with {credential:?} (query: {by_query}): {status}, expected {want}: {body}"
                    ));
                    continue;
                }
                // Refusals are problem+json naming what is missing or wrong.
                let code = body["code"].as_str().unwrap_or_default();
                let code_ok = match status {
                    401 => code == "key-required" || code == "key-invalid",
                    403 => code == "forbidden",
                    _ => true,
                };
                if !code_ok {
                    wrong.push(format!(
                        "{method} {path} with {credential:?}: code {code:?}"
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {checked} wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert_eq!(checked, 2 * ENDPOINTS.len() * CREDENTIALS.len());
    app.stop().await;
}

#[tokio::test]
async fn open_mode_lets_anyone_in_but_refuses_a_wrong_key() {
    let app = TestApp::spawn().await;
    for (method, path, kind) in ENDPOINTS {
        let (status, _) = send(&app, method, path, None, false).await;
        let want = if kind == Kind::Post { 201 } else { 200 };
        assert_eq!(status, want, "{method} {path} open");
        if kind != Kind::Public {
            let (status, body) = send(&app, method, path, Some("not-a-key-here"), false).await;
            assert_eq!(status, 401, "{method} {path} with a wrong key: {body}");
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn write_keys_alone_guard_posting_and_leave_reading_open_on_loopback() {
    let app = TestApp::spawn_with(|config| {
        config.keys = Keys::new(&[WRITE_KEY.to_owned()], &[], None);
    })
    .await;
    let (status, body) = send(&app, "POST", "/api/events", None, false).await;
    assert_eq!(status, 401);
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("write key")
    );
    let (status, _) = send(&app, "POST", "/api/events", Some(WRITE_KEY), false).await;
    assert_eq!(status, 201);
    let (status, _) = send(&app, "GET", "/api/events", None, false).await;
    assert_eq!(status, 200);
    app.stop().await;
}

#[tokio::test]
async fn erasure_deletes_a_contacts_events_and_suppression_refuses_new_ones() {
    let app = TestApp::spawn().await;
    for contact in ["c-1", "c-1", "c-2"] {
        let (status, _) = app
            .post(
                "/api/events",
                &json!({"event_type": "e", "content": {}, "contact_id": contact}),
            )
            .await;
        assert_eq!(status, 201);
    }
    let (status, answer) = send(
        &app,
        "DELETE",
        "/api/contacts/c-1/events?suppress=true",
        None,
        false,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer,
        json!({"contact_id": "c-1", "erased": 2, "suppressed": true})
    );
    let (_, page) = app.get("/api/events?contact_id=c-1").await;
    assert_eq!(page["events"], json!([]));
    assert_eq!(app.all_events().await.len(), 1, "c-2 keeps its event");

    let suppressed = json!({"event_type": "e", "content": {}, "contact_id": "c-1"});
    let answer = app.post("/api/events", &suppressed).await;
    crate::assert_problem(&answer, 403, "contact-suppressed");
    assert_eq!(answer.1["field"], "contact_id");
    let answer = app
        .post(
            "/api/events/batch",
            &json!([{"event_type": "e", "content": {}}, suppressed]),
        )
        .await;
    crate::assert_problem(&answer, 403, "contact-suppressed");
    assert_eq!(answer.1["errors"][0]["index"], 1);
    assert_eq!(
        app.all_events().await.len(),
        1,
        "nothing of the batch was stored"
    );

    let (status, answer) = send(&app, "DELETE", "/api/contacts/c-1/suppression", None, false).await;
    assert_eq!(status, 200);
    assert_eq!(answer["was_suppressed"], true);
    assert_eq!(app.post("/api/events", &suppressed).await.0, 201);

    let (status, answer) = send(
        &app,
        "DELETE",
        "/api/contacts/c-1/events?supress=true",
        None,
        false,
    )
    .await;
    assert_eq!(status, 400, "a misspelt parameter is refused: {answer}");
    app.stop().await;
}

#[tokio::test]
async fn retention_deletes_old_events_in_steps_and_keeps_recent_ones() {
    let app = TestApp::spawn().await;
    let day_ms = 86_400_000_i64;
    let now_ms = now_s() * 1000;
    // More old events than one retention step deletes.
    let old: Vec<Value> = (0..2_500)
        .map(
            |n| json!({"event_type": "old", "content": {"n": n}, "timestamp": now_ms - 3 * day_ms}),
        )
        .collect();
    assert_eq!(app.post("/api/events/batch", &json!(old)).await.0, 201);
    let recent = json!({"event_type": "recent", "content": {}, "timestamp": now_ms - day_ms / 2});
    assert_eq!(app.post("/api/events", &recent).await.0, 201);
    let storage = app.stop().await;

    let app = TestApp::spawn_in(storage, |config| {
        config.retention = Some(std::time::Duration::from_secs(86_400));
    })
    .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (_, page) = app.get("/api/events?event_types=old&limit=1").await;
        if page["events"].as_array().is_some_and(Vec::is_empty) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "old events are still there"
        );
        tokio::task::yield_now().await;
    }
    let (_, page) = app.get("/api/events?event_types=recent").await;
    assert_eq!(page["events"].as_array().map(Vec::len), Some(1));
    app.stop().await;
}

#[tokio::test]
async fn metrics_count_requests_events_and_commits() {
    let app = TestApp::spawn().await;
    for _ in 0..3 {
        let (status, _) = app
            .post(
                "/api/events",
                &json!({"event_type": "metered", "content": {}}),
            )
            .await;
        assert_eq!(status, 201);
    }
    let response = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics");
    assert_eq!(response.status(), 200);
    let text = response.text().await.expect("text");
    // Tests share the process's recorder: check presence and shape, not exact totals.
    for expected in [
        "eventline_events_stored_total ",
        "eventline_http_requests_total{route=\"/api/events\",method=\"POST\",status=\"201\"}",
        "eventline_http_request_duration_seconds_bucket{route=\"/api/events\"",
        "eventline_commit_duration_seconds_bucket",
        "eventline_commit_events_bucket",
        "eventline_ingest_queue_events ",
    ] {
        assert!(text.contains(expected), "no {expected} in:\n{text}");
    }
    app.stop().await;
}
