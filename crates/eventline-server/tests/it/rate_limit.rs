//! Rate limits: a flooding key gets its rate and no more, every refusal says when to come
//! back, and another key (or address) posting at the same time is not slowed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use eventline_core::access::Keys;
use serde_json::json;

use crate::TestApp;

const KEY_A: &str = "wk_flooding_0123456789";
const KEY_B: &str = "wk_steady_0123456789ab";
const FLOOD: Duration = Duration::from_secs(2);

#[derive(Default)]
struct Tally {
    accepted: AtomicUsize,
    refused: AtomicUsize,
}

/// Posts as fast as `workers` connections allow until `FLOOD` has passed; each request
/// made by `request`. Every 429 must carry Retry-After and the RateLimit headers.
async fn flood(
    app: &TestApp,
    workers: usize,
    request: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder + Send + Sync + 'static,
) -> (Arc<Tally>, Duration) {
    let tally = Arc::new(Tally::default());
    let request = Arc::new(request);
    let started = Instant::now();
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let (client, tally, request) =
                (app.client.clone(), Arc::clone(&tally), Arc::clone(&request));
            tokio::spawn(async move {
                while started.elapsed() < FLOOD {
                    let response = request(&client).send().await.expect("post");
                    match response.status().as_u16() {
                        201 => tally.accepted.fetch_add(1, Ordering::Relaxed),
                        429 => {
                            let headers = response.headers();
                            let retry_after: u64 = headers["retry-after"]
                                .to_str()
                                .expect("ascii")
                                .parse()
                                .expect("seconds");
                            assert!(retry_after >= 1);
                            for name in
                                ["ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"]
                            {
                                assert!(headers.contains_key(name), "429 without {name}");
                            }
                            tally.refused.fetch_add(1, Ordering::Relaxed)
                        }
                        status => panic!("unexpected answer {status}"),
                    };
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("worker");
    }
    (tally, started.elapsed())
}

fn event() -> serde_json::Value {
    json!({"event_type": "rate", "content": {}})
}

/// Requests a steady client makes, paced under its limit, during the flood; all must pass.
async fn steady(
    app: &TestApp,
    request: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
) -> usize {
    let mut every = tokio::time::interval(Duration::from_millis(100));
    let started = Instant::now();
    let mut sent = 0;
    while started.elapsed() < FLOOD {
        every.tick().await;
        let response = request(&app.client).send().await.expect("post");
        assert_eq!(
            response.status().as_u16(),
            201,
            "the steady client was slowed"
        );
        sent += 1;
    }
    sent
}

fn assert_within_ten_percent(accepted: usize, rate: u32, burst: u32, elapsed: Duration) {
    let expected = f64::from(burst) + f64::from(rate) * elapsed.as_secs_f64();
    let ratio = accepted as f64 / expected;
    println!("{accepted} accepted in {elapsed:?}, expected {expected:.0}: ratio {ratio:.3}");
    assert!(
        (0.9..=1.1).contains(&ratio),
        "{accepted} accepted in {elapsed:?}, expected {expected:.0} (ratio {ratio:.3})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_key_gets_its_rate_and_another_key_is_unaffected() {
    let app = TestApp::spawn_with(|config| {
        config.keys = Keys::new(&[KEY_A.to_owned(), KEY_B.to_owned()], &[], None);
        config.rate_limits.per_write_key_per_second = 100;
        config.rate_limits.per_write_key_burst = 100;
    })
    .await;
    let url = app.url("/api/events");
    let flood_url = url.clone();
    let ((tally, elapsed), steady_sent) = tokio::join!(
        flood(&app, 8, move |client| client
            .post(&flood_url)
            .bearer_auth(KEY_A)
            .json(&event())),
        steady(&app, |client| client
            .post(&url)
            .bearer_auth(KEY_B)
            .json(&event())),
    );
    let accepted = tally.accepted.load(Ordering::Relaxed);
    assert!(
        tally.refused.load(Ordering::Relaxed) > 0,
        "the flood was never limited"
    );
    assert_within_ten_percent(accepted, 100, 100, elapsed);
    assert!(steady_sent >= 15);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_address_gets_its_rate_and_another_address_is_unaffected() {
    let app = TestApp::spawn_with(|config| {
        config.rate_limits.per_ip_per_second = 100;
        config.rate_limits.per_ip_burst = 100;
        config.rate_limits.trust_proxy = true;
    })
    .await;
    let url = app.url("/api/events");
    let flood_url = url.clone();
    let ((tally, elapsed), _) = tokio::join!(
        flood(&app, 8, move |client| client
            .post(&flood_url)
            .header("x-forwarded-for", "198.51.100.7, 203.0.113.1")
            .json(&event())),
        steady(&app, |client| client
            .post(&url)
            .header("x-forwarded-for", "203.0.113.2")
            .json(&event())),
    );
    assert!(
        tally.refused.load(Ordering::Relaxed) > 0,
        "the flood was never limited"
    );
    assert_within_ten_percent(tally.accepted.load(Ordering::Relaxed), 100, 100, elapsed);
    app.stop().await;
}

/// Past `requests_in_flight_max` API requests being answered, another is refused at once
/// with 429 `server-busy` and `Retry-After`, and admitted again once one is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_past_the_in_flight_bound_are_refused_at_once() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn_with(|config| config.requests_in_flight_max = 1).await;
    // A post whose body is still arriving holds the one place. It may itself be refused
    // (a read held the place when it arrived) or not yet be read: then try again.
    let body = serde_json::to_vec(&crate::seed_event()).expect("json");
    let head = format!(
        "POST /api/events HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let until = Instant::now() + Duration::from_secs(30);
    let (mut slow, refused) = loop {
        let mut slow = tokio::net::TcpStream::connect(app.address)
            .await
            .expect("connect");
        slow.write_all(head.as_bytes()).await.expect("write");
        slow.write_all(&body[..10]).await.expect("write");
        let response = app
            .client
            .get(app.url("/api/events"))
            .send()
            .await
            .expect("get");
        if response.status() == 429 {
            break (slow, response);
        }
        assert!(Instant::now() < until, "never refused");
    };
    assert!(refused.headers().contains_key("retry-after"));
    let answer = crate::answer(refused).await;
    crate::assert_problem(&answer, 429, "server-busy");
    slow.write_all(&body[10..]).await.expect("write");
    let mut head = [0_u8; 12];
    slow.read_exact(&mut head).await.expect("read");
    assert_eq!(&head, b"HTTP/1.1 201");
    assert_eq!(app.get("/api/events").await.0, 200);
}
