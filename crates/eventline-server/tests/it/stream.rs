//! `GET /api/events/stream`: live events in commit order, resumed exactly with
//! `Last-Event-ID`, bounded in subscribers and in how far one may fall behind.

use std::collections::HashSet;
use std::time::Duration;

use eventline_client::{Client, Event, Query, StreamMessage};
use futures::{Stream, StreamExt};
use serde_json::json;

use crate::TestApp;

/// A bound on each wait, so that a broken stream fails the test instead of hanging it.
const WAIT: Duration = Duration::from_secs(60);

type Messages =
    std::pin::Pin<Box<dyn Stream<Item = Result<StreamMessage, eventline_client::Error>> + Send>>;

async fn connect(client: &Client, query: &Query, last_event_id: Option<&str>) -> Messages {
    Box::pin(client.stream(query, last_event_id).await.expect("stream"))
}

/// The next message, or a failure after [`WAIT`].
async fn next(stream: &mut Messages) -> StreamMessage {
    next_by(stream, tokio::time::Instant::now() + WAIT).await
}

async fn next_by(stream: &mut Messages, deadline: tokio::time::Instant) -> StreamMessage {
    tokio::time::timeout_at(deadline, stream.next())
        .await
        .expect("a message in time")
        .expect("the stream goes on")
        .expect("a message")
}

/// Events until `count` more arrived, within [`WAIT`] in all (position messages keep
/// coming while nothing else does); the last one's stream id.
async fn receive(stream: &mut Messages, count: usize, events: &mut Vec<Event>) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut last = String::new();
    let target = events.len() + count;
    while events.len() < target {
        match next_by(stream, deadline).await {
            StreamMessage::Event { id, event } => {
                events.push(event);
                last = id;
            }
            StreamMessage::Position { .. } => {}
            StreamMessage::Closed { code, detail } => panic!("closed: {code}: {detail}"),
        }
    }
    last
}

/// Posts `count` events from `writers` tasks at once, singly and in batches of 4, with
/// timestamps back and forth in time (the stream follows commits, not timestamps); the
/// ids stored.
async fn post_events(client: Client, count: usize, writers: usize) -> Vec<String> {
    let per_writer = count / writers;
    let tasks: Vec<_> = (0..writers)
        .map(|writer| {
            let client = client.clone();
            tokio::spawn(async move {
                let event = |n: usize| {
                    json!({
                        "event_type": if n.is_multiple_of(3) { "order" } else { "view" },
                        "content": {"writer": writer, "n": n},
                        "timestamp": 1_700_000_000_000_i64 + ((n * 7919) % 500) as i64 * 3_600_000,
                    })
                };
                let mut ids = Vec::new();
                let mut n = 0;
                while n < per_writer {
                    if n % 5 == 4 {
                        let batch: Vec<_> = (n..(n + 4).min(per_writer)).map(event).collect();
                        n += batch.len();
                        ids.extend(client.post_batch(&batch).await.expect("batch").ids);
                    } else {
                        ids.push(client.post(&event(n)).await.expect("post").id);
                        n += 1;
                    }
                }
                ids
            })
        })
        .collect();
    let mut ids = Vec::new();
    for task in tasks {
        ids.extend(task.await.expect("writer"));
    }
    ids
}

#[tokio::test]
async fn a_tail_that_reconnects_with_last_event_id_gets_every_event_once() {
    let app = TestApp::spawn().await;
    let client = Client::new(&app.url("")).expect("client");
    let mut first = connect(&client, &Query::default(), None).await;
    let mut orders = connect(&client, &Query::default().event_types(["order"]), None).await;
    let StreamMessage::Position { .. } = next(&mut first).await else {
        panic!("a stream starts with its position");
    };
    let writers = tokio::spawn(post_events(client.clone(), 1_200, 4));
    // Part way, the connection drops…
    let mut received = Vec::new();
    let last_id = receive(&mut first, 500, &mut received).await;
    drop(first);
    // …and comes back while the writers go on.
    let mut second = connect(&client, &Query::default(), Some(&last_id)).await;
    let posted = writers.await.expect("writers");
    assert_eq!(posted.len(), 1_200);
    receive(&mut second, posted.len() - received.len(), &mut received).await;
    let ids: Vec<&String> = received.iter().map(|event| &event.id).collect();
    let unique: HashSet<&String> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "an event came twice");
    assert_eq!(unique, posted.iter().collect::<HashSet<_>>());
    // Then only what comes next.
    let last = client
        .post(&json!({"event_type": "order", "content": {"last": true}}))
        .await
        .expect("post");
    let mut after = Vec::new();
    receive(&mut second, 1, &mut after).await;
    assert_eq!(after, [last]);
    received.extend(after);
    // The filtered stream saw exactly the orders, in the same (commit) order.
    let expected: Vec<&Event> = received
        .iter()
        .filter(|event| event.event_type == "order")
        .collect();
    let mut got = Vec::new();
    receive(&mut orders, expected.len(), &mut got).await;
    assert_eq!(got.iter().collect::<Vec<_>>(), expected);
}

#[tokio::test]
async fn a_subscriber_that_stops_reading_is_dropped_without_slowing_ingest() {
    let app = TestApp::spawn_with(|config| config.live.buffer_reads_max = 2).await;
    let client = Client::new(&app.url("")).expect("client");
    let mut stalled = connect(&client, &Query::default(), None).await;
    let StreamMessage::Position { id: start } = next(&mut stalled).await else {
        panic!("a stream starts with its position");
    };
    // 16 MB of events while the subscriber reads nothing: more than the sockets hold.
    let filler = "x".repeat(60_000);
    for n in 0..280 {
        client
            .post(&json!({"event_type": "big", "content": {"n": n, "filler": filler}}))
            .await
            .expect("ingest goes on");
    }
    let mut events = 0;
    let closed = loop {
        match next(&mut stalled).await {
            StreamMessage::Event { .. } => events += 1,
            StreamMessage::Position { .. } => {}
            StreamMessage::Closed { code, detail } => break (code, detail),
        }
    };
    assert_eq!(closed.0, "subscriber-too-slow", "{}", closed.1);
    assert!(closed.1.contains("Last-Event-ID"), "{}", closed.1);
    assert!(events < 280, "it was not behind: {events} events");
    assert!(
        tokio::time::timeout(WAIT, stalled.next())
            .await
            .expect("end")
            .is_none()
    );
    // Reconnecting from the start catches up from the store: every event, once.
    let mut again = connect(&client, &Query::default(), Some(&start)).await;
    let mut caught_up = Vec::new();
    receive(&mut again, 280, &mut caught_up).await;
    let numbers: Vec<i64> = caught_up
        .iter()
        .map(|event| event.content["n"].as_i64().expect("n"))
        .collect();
    assert_eq!(numbers, (0..280).collect::<Vec<_>>());
}

#[tokio::test]
async fn streams_are_bounded_and_end_at_shutdown() {
    let app = TestApp::spawn_with(|config| config.live.subscribers_max = 1).await;
    let client = Client::new(&app.url("")).expect("client");
    let mut open = connect(&client, &Query::default(), None).await;
    let response = app
        .client
        .get(app.url("/api/events/stream"))
        .send()
        .await
        .expect("second stream");
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let (_, problem) = crate::answer(response).await;
    assert_eq!(problem["code"], "streams-full");
    // Shutting down ends the stream with a final message; the server does not wait.
    let StreamMessage::Position { .. } = next(&mut open).await else {
        panic!("a stream starts with its position");
    };
    let stopping = tokio::spawn(app.stop());
    let StreamMessage::Closed { code, .. } = next(&mut open).await else {
        panic!("a final message");
    };
    assert_eq!(code, "shutting-down");
    tokio::time::timeout(WAIT, stopping)
        .await
        .expect("the server stops")
        .expect("task");
}

#[tokio::test]
async fn bad_stream_parameters_are_refused() {
    let app = TestApp::spawn().await;
    for (path, parameter) in [
        ("/api/events/stream?limit=5", "limit"),
        ("/api/events/stream?offset=5", "offset"),
        ("/api/events/stream?after=c123", "after"),
        ("/api/events/stream?scope=moon", "scope"),
    ] {
        let (status, problem) = app.get(path).await;
        assert_eq!(status, 400, "{path}: {problem}");
        assert_eq!(problem["parameter"], parameter, "{path}: {problem}");
    }
    let response = app
        .client
        .get(app.url("/api/events/stream"))
        .header("last-event-id", "nonsense")
        .send()
        .await
        .expect("get");
    let (status, problem) = crate::answer(response).await;
    assert_eq!(status, 400);
    assert_eq!(problem["parameter"], "Last-Event-ID");
}

/// Regression: the follower, idle while nobody listened, woke for the very commit that
/// followed a new subscription and started after it; the subscriber never saw that event
/// until some other commit came.
#[tokio::test]
async fn a_single_event_right_after_subscribing_arrives() {
    let app = TestApp::spawn().await;
    let client = Client::new(&app.url("")).expect("client");
    client
        .post(&json!({"event_type": "before", "content": {}}))
        .await
        .expect("post");
    let mut stream = connect(&client, &Query::default(), None).await;
    let only = client
        .post(&json!({"event_type": "only", "content": {}}))
        .await
        .expect("post");
    let mut received = Vec::new();
    receive(&mut stream, 1, &mut received).await;
    assert_eq!(received, [only]);
}
