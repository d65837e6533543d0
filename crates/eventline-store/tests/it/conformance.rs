use eventline_core::cursor::StreamCursor;
use eventline_core::event::{Event, Scope};
use eventline_core::query::{Filter, Order, PageQuery, Start};
use eventline_store::{Outcome, Store, Submission};
use serde_json::value::RawValue;
use uuid::Uuid;

fn event(
    n: u128,
    event_type: &str,
    contact_id: Option<&str>,
    scope: Scope,
    timestamp_ms: i64,
) -> Event {
    Event {
        id: Uuid::from_u128(n),
        event_type: event_type.to_owned(),
        content: RawValue::from_string(format!(r#"{{"n":{n}}}"#)).expect("json"),
        contact_id: contact_id.map(str::to_owned),
        scope,
        timestamp_ms,
        received_at_ms: 1_700_000_000_000,
        client_timestamp_ms: Some(timestamp_ms),
    }
}

/// 600 events over 4 types, 7 contacts, both scopes and many equal timestamps.
pub fn corpus() -> Vec<Event> {
    let types = ["new_order", "new_contact", "store_purchase", "page_view"];
    (0..600u128)
        .map(|n| {
            let contact = format!("contact-{}", n % 7);
            let contact_id = (n % 5 != 0).then_some(contact.as_str());
            let scope = if n % 4 == 0 { Scope::Site } else { Scope::App };
            event(
                n + 1,
                types[(n % 4) as usize],
                contact_id,
                scope,
                1_000_000 + (n as i64 / 3) * 1000,
            )
        })
        .collect()
}

pub async fn append_all(store: &dyn Store, events: Vec<Event>) {
    let outcomes = store
        .append(vec![Submission { events }])
        .await
        .expect("append");
    assert!(matches!(outcomes.as_slice(), [Outcome::Stored(_)]));
}

pub async fn walk(store: &dyn Store, filter: &Filter, order: Order, limit: u32) -> Vec<Uuid> {
    let events = walk_events(store, filter, order, limit).await;
    events.iter().map(|event| event.id).collect()
}

/// Every event matching `filter` in `order`, page after page of `limit`, each page
/// checked against the limit.
pub async fn walk_events(
    store: &dyn Store,
    filter: &Filter,
    order: Order,
    limit: u32,
) -> Vec<Event> {
    let mut events = Vec::new();
    let mut start = Start::First;
    for _ in 0..10_000 {
        let page = store
            .page(PageQuery {
                filter: filter.clone(),
                order,
                start,
                limit,
            })
            .await
            .expect("page");
        assert!(page.events.len() <= limit as usize);
        events.extend(page.events);
        match page.next {
            Some(cursor) => start = Start::After(cursor),
            None => return events,
        }
    }
    panic!("the walk did not end");
}

pub fn expected(events: &[Event], filter: &Filter, order: Order) -> Vec<Uuid> {
    let mut matching: Vec<&Event> = events
        .iter()
        .filter(|event| filter.matches(event))
        .collect();
    matching.sort_by_key(|event| (event.timestamp_ms, event.id));
    if order == Order::Desc {
        matching.reverse();
    }
    matching.into_iter().map(|event| event.id).collect()
}

pub async fn stores_and_reads_back(store: &dyn Store) {
    let original = event(
        7,
        "store_purchase",
        Some("c1"),
        Scope::App,
        1_499_299_200_000,
    );
    append_all(store, vec![original.clone()]).await;
    let page = store
        .page(PageQuery {
            filter: Filter::default(),
            order: Order::Asc,
            start: Start::First,
            limit: 10,
        })
        .await
        .expect("page");
    assert_eq!(page.events.len(), 1);
    assert!(page.next.is_none());
    let stored = &page.events[0];
    assert_eq!(stored.id, original.id);
    // The same JSON; its text may differ (PostgreSQL's jsonb spaces and orders keys).
    let json = |raw: &serde_json::value::RawValue| {
        serde_json::from_str::<serde_json::Value>(raw.get()).expect("content is JSON")
    };
    assert_eq!(json(&stored.content), json(&original.content));
    assert_eq!(stored.contact_id, original.contact_id);
    assert_eq!(stored.timestamp_ms, original.timestamp_ms);
    assert_eq!(stored.client_timestamp_ms, original.client_timestamp_ms);
}

pub async fn replay_returns_stored_event_and_conflict_stores_nothing(store: &dyn Store) {
    let first = event(1, "new_order", None, Scope::App, 5_000);
    append_all(store, vec![first.clone()]).await;

    let mut replay = first.clone();
    replay.received_at_ms += 99;
    replay.content = RawValue::from_string(r#"{ "n" : 1 }"#.to_owned()).expect("json");
    let outcomes = store
        .append(vec![Submission {
            events: vec![replay],
        }])
        .await
        .expect("append");
    let Outcome::Stored(appended) = &outcomes[0] else {
        panic!("replay refused: {outcomes:?}")
    };
    let stored = appended[0].replay_of.as_ref().expect("a replay");
    assert_eq!(
        stored.received_at_ms, first.received_at_ms,
        "the first copy is answered"
    );

    let mut different = first.clone();
    different.event_type = "new_contact".to_owned();
    let outcomes = store
        .append(vec![Submission {
            events: vec![different],
        }])
        .await
        .expect("append");
    assert!(matches!(outcomes[0], Outcome::Conflict { index: 0, .. }));

    let all = walk(store, &Filter::default(), Order::Asc, 10).await;
    assert_eq!(all, vec![first.id]);
}

pub async fn conflict_in_a_submission_undoes_only_that_submission(store: &dyn Store) {
    append_all(store, vec![event(1, "a", None, Scope::App, 1)]).await;
    let good = Submission {
        events: vec![
            event(2, "a", None, Scope::App, 2),
            event(3, "a", None, Scope::App, 3),
        ],
    };
    let bad = Submission {
        events: vec![
            event(4, "a", None, Scope::App, 4),
            event(1, "b", None, Scope::App, 1),
        ],
    };
    let also_good = Submission {
        events: vec![event(5, "a", None, Scope::App, 5)],
    };
    let outcomes = store
        .append(vec![good, bad, also_good])
        .await
        .expect("append");
    assert!(matches!(outcomes[0], Outcome::Stored(_)));
    assert!(matches!(outcomes[1], Outcome::Conflict { index: 1, .. }));
    assert!(matches!(outcomes[2], Outcome::Stored(_)));
    let all = walk(store, &Filter::default(), Order::Asc, 10).await;
    let ids: Vec<u128> = all.iter().map(|id| id.as_u128()).collect();
    assert_eq!(ids, vec![1, 2, 3, 5]);
}

/// An id given twice in one submission: the same event is a replay of its first copy; a
/// different one is a conflict that undoes the submission, and only it.
pub async fn an_id_twice_in_one_submission(store: &dyn Store) {
    let fresh = Submission {
        events: vec![
            event(1, "a", None, Scope::App, 1),
            event(2, "a", None, Scope::App, 2),
        ],
    };
    let repeated = Submission {
        events: vec![
            event(3, "a", None, Scope::App, 3),
            event(3, "a", None, Scope::App, 3),
        ],
    };
    let conflicting = Submission {
        events: vec![
            event(4, "a", None, Scope::App, 4),
            event(5, "a", None, Scope::App, 5),
            event(4, "b", None, Scope::App, 4),
        ],
    };
    let outcomes = store
        .append(vec![fresh, repeated, conflicting])
        .await
        .expect("append");
    assert!(matches!(outcomes[0], Outcome::Stored(_)));
    let Outcome::Stored(appended) = &outcomes[1] else {
        panic!("a repeated event was refused: {outcomes:?}")
    };
    let replayed: Vec<bool> = appended
        .iter()
        .map(|appended| appended.replayed())
        .collect();
    assert_eq!(replayed, vec![false, true]);
    assert!(matches!(outcomes[2], Outcome::Conflict { index: 2, .. }));
    let all = walk(store, &Filter::default(), Order::Asc, 10).await;
    let ids: Vec<u128> = all.iter().map(|id| id.as_u128()).collect();
    assert_eq!(ids, vec![1, 2, 3]);
}

pub async fn filters_match_the_reference(store: &dyn Store) {
    let events = corpus();
    append_all(store, events.clone()).await;
    let filters = [
        Filter::default(),
        Filter {
            since_ms: Some(1_050_000),
            until_ms: Some(1_120_000),
            ..Filter::default()
        },
        Filter {
            since_ms: Some(1_050_000),
            until_ms: Some(1_050_000),
            ..Filter::default()
        },
        Filter {
            contact_id: Some("contact-3".to_owned()),
            ..Filter::default()
        },
        Filter {
            contact_id: Some("nobody".to_owned()),
            ..Filter::default()
        },
        Filter {
            scope: Some(Scope::Site),
            ..Filter::default()
        },
        Filter {
            event_types: vec!["new_order".to_owned()],
            ..Filter::default()
        },
        Filter {
            event_types: vec!["new_order".to_owned(), "page_view".to_owned()],
            ..Filter::default()
        },
        Filter {
            since_ms: Some(1_010_000),
            until_ms: Some(1_150_000),
            contact_id: Some("contact-2".to_owned()),
            scope: Some(Scope::App),
            event_types: vec!["new_contact".to_owned(), "store_purchase".to_owned()],
            content: None,
        },
        Filter {
            since_ms: Some(1_010_000),
            scope: Some(Scope::App),
            event_types: vec![
                "new_contact".to_owned(),
                "store_purchase".to_owned(),
                "absent".to_owned(),
            ],
            ..Filter::default()
        },
    ];
    for filter in &filters {
        for order in [Order::Asc, Order::Desc] {
            for limit in [1, 7, 1000] {
                let got = walk(store, filter, order, limit).await;
                assert_eq!(
                    got,
                    expected(&events, filter, order),
                    "{filter:?} {order:?} limit {limit}"
                );
            }
        }
    }
}

pub async fn cursor_walk_yields_each_event_once_in_both_orders(store: &dyn Store) {
    let events = corpus();
    let (first_half, second_half) = events.split_at(300);
    append_all(store, first_half.to_vec()).await;
    // Events committed while a walk is under way, behind and ahead of its position,
    // must not make it skip or repeat any event.
    let filter = Filter::default();
    let mut start = Start::First;
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = store
            .page(PageQuery {
                filter: filter.clone(),
                order: Order::Asc,
                start,
                limit: 25,
            })
            .await
            .expect("page");
        seen.extend(
            page.events
                .iter()
                .map(|event| (event.timestamp_ms, event.id)),
        );
        pages += 1;
        if pages == 3 {
            append_all(store, second_half.to_vec()).await;
        }
        match page.next {
            Some(cursor) => start = Start::After(cursor),
            None => break,
        }
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, seen, "strictly increasing, no repeats");
    let expected_tail: Vec<_> = {
        let position = seen[3 * 25 - 1];
        let mut later: Vec<_> = events
            .iter()
            .map(|event| (event.timestamp_ms, event.id))
            .filter(|key| *key > position)
            .collect();
        later.sort();
        later
    };
    assert_eq!(
        &seen[75..],
        expected_tail.as_slice(),
        "everything after the cursor, once"
    );
    assert_eq!(
        walk(store, &filter, Order::Desc, 33).await,
        expected(&events, &filter, Order::Desc)
    );
}

pub async fn numeric_offset_skips(store: &dyn Store) {
    let events = corpus();
    append_all(store, events.clone()).await;
    let all = expected(&events, &Filter::default(), Order::Asc);
    let page = store
        .page(PageQuery {
            filter: Filter::default(),
            order: Order::Asc,
            start: Start::Skip(590),
            limit: 50,
        })
        .await
        .expect("page");
    let ids: Vec<Uuid> = page.events.iter().map(|event| event.id).collect();
    assert_eq!(ids, all[590..]);
    assert!(page.next.is_none());
    let filter = Filter {
        event_types: vec!["new_order".to_owned(), "page_view".to_owned()],
        ..Filter::default()
    };
    let all = expected(&events, &filter, Order::Desc);
    let page = store
        .page(PageQuery {
            filter,
            order: Order::Desc,
            start: Start::Skip(10),
            limit: 5,
        })
        .await
        .expect("page");
    let ids: Vec<Uuid> = page.events.iter().map(|event| event.id).collect();
    assert_eq!(ids, all[10..15]);
    assert!(page.next.is_some());
}

/// Counts per bucket and type, computed from the events themselves.
pub fn expected_stats(
    events: &[Event],
    query: &eventline_core::stats::StatsQuery,
) -> Vec<eventline_core::stats::StatsRow> {
    let mut counts: std::collections::BTreeMap<(i64, String), u64> = Default::default();
    for event in events.iter().filter(|event| query.filter.matches(event)) {
        let start = event.timestamp_ms.div_euclid(query.bucket.ms()) * query.bucket.ms();
        *counts.entry((start, event.event_type.clone())).or_default() += 1;
    }
    counts
        .into_iter()
        .map(
            |((start_ms, event_type), count)| eventline_core::stats::StatsRow {
                start_ms,
                event_type,
                count,
            },
        )
        .collect()
}

/// Stats over windows with partial minutes at both edges, with every filter, then after
/// an erasure and a retention step: always the counts of the events themselves.
pub async fn stats_match_the_reference(store: &dyn Store) {
    use eventline_core::stats::{Bucket, StatsQuery};
    let types = ["new_order", "new_contact", "store_purchase"];
    let mut events: Vec<Event> = (0..900u128)
        .map(|n| {
            let contact = format!("contact-{}", n % 5);
            event(
                n + 1,
                types[(n % 3) as usize],
                (n % 4 != 0).then_some(contact.as_str()),
                if n % 6 == 0 { Scope::Site } else { Scope::App },
                // 900 events over about 4 hours, in odd steps: minutes fill unevenly.
                3_600_000 + (n as i64) * 16_411,
            )
        })
        .collect();
    for chunk in events.chunks(200) {
        append_all(store, chunk.to_vec()).await;
    }
    let windows = [
        (3_600_000 + 45_123, 3_600_000 + 10_000_000 + 7_777),
        (0, 30_000_000),
        (3_700_000, 3_700_500),
    ];
    let filters = |since_ms, until_ms| {
        let window = Filter {
            since_ms: Some(since_ms),
            until_ms: Some(until_ms),
            ..Filter::default()
        };
        [
            window.clone(),
            Filter {
                scope: Some(Scope::Site),
                ..window.clone()
            },
            Filter {
                event_types: vec!["new_order".to_owned(), "store_purchase".to_owned()],
                ..window.clone()
            },
            Filter {
                contact_id: Some("contact-2".to_owned()),
                ..window
            },
        ]
    };
    let check = |events: Vec<Event>| async move {
        for (since_ms, until_ms) in windows {
            for filter in filters(since_ms, until_ms) {
                for bucket in [Bucket::Minute, Bucket::Hour, Bucket::Day] {
                    let query = StatsQuery {
                        filter: filter.clone(),
                        bucket,
                    };
                    let got = store.stats(query.clone()).await.expect("stats");
                    assert_eq!(got, expected_stats(&events, &query), "{query:?}");
                }
            }
        }
    };
    check(events.clone()).await;

    store
        .erase_contact("contact-1", false)
        .await
        .expect("erase");
    events.retain(|event| event.contact_id.as_deref() != Some("contact-1"));
    let cutoff_ms = 3_600_000 + 2_000_000;
    while store
        .delete_before(cutoff_ms, 100)
        .await
        .expect("retention")
        > 0
    {}
    events.retain(|event| event.timestamp_ms >= cutoff_ms);
    store.maintain().await.expect("maintain");
    check(events).await;
}

/// Every event once, in commit order, read from `after` `limit` at a time.
pub async fn stream_walk(
    store: &dyn Store,
    filter: &Filter,
    mut after: StreamCursor,
    limit: u32,
) -> (Vec<Uuid>, StreamCursor) {
    let mut ids = Vec::new();
    for _ in 0..10_000 {
        let chunk = store.stream(filter, after, limit).await.expect("stream");
        assert!(chunk.events.len() <= limit as usize);
        assert!(chunk.upto >= after, "the read went back");
        for (position, event) in &chunk.events {
            assert!(*position > after && *position <= chunk.upto);
            after = *position;
            ids.push(event.id);
        }
        let done = chunk.events.len() < limit as usize;
        after = chunk.upto;
        if done {
            return (ids, after);
        }
    }
    panic!("the stream walk did not end");
}

/// [`stream_walk`] until `len` events came. PostgreSQL shows a commit to streams once
/// every transaction older than it has ended, and other tests share the cluster: their
/// transactions can hold ours back for a moment.
pub async fn stream_walk_len(
    store: &dyn Store,
    filter: &Filter,
    after: StreamCursor,
    limit: u32,
    len: usize,
) -> (Vec<Uuid>, StreamCursor) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (ids, upto) = stream_walk(store, filter, after, limit).await;
        if ids.len() >= len || tokio::time::Instant::now() > deadline {
            return (ids, upto);
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
}

/// The live stream's reads: commit order whatever the timestamps, filters as in pages,
/// only what was committed after the start, and a position that moves past events that
/// do not match.
pub async fn stream_reads_in_commit_order(store: &dyn Store) {
    let before = store.stream_head().await.expect("head");
    let events = corpus();
    // Commits in an order unrelated to the timestamps: last timestamps first.
    let commits: Vec<Vec<Event>> = events.rchunks(50).map(<[Event]>::to_vec).collect();
    let committed: Vec<Event> = commits.iter().flatten().cloned().collect();
    for commit in commits {
        append_all(store, commit).await;
    }
    let filters = [
        Filter::default(),
        Filter {
            event_types: vec!["new_order".to_owned(), "page_view".to_owned()],
            scope: Some(Scope::App),
            ..Filter::default()
        },
        Filter {
            contact_id: Some("contact-3".to_owned()),
            since_ms: Some(1_050_000),
            ..Filter::default()
        },
    ];
    for filter in &filters {
        let expected: Vec<Uuid> = committed
            .iter()
            .filter(|event| filter.matches(event))
            .map(|event| event.id)
            .collect();
        for limit in [7, 1000] {
            let (ids, upto) = stream_walk_len(store, filter, before, limit, expected.len()).await;
            assert_eq!(ids, expected, "{filter:?} by {limit}");
            // Nothing is left after the end, which is at most the head.
            assert_eq!(
                stream_walk(store, filter, upto, limit).await.0,
                Vec::<Uuid>::new()
            );
            assert!(upto <= store.stream_head().await.expect("head"));
        }
    }
    // From the head: only what comes next.
    let head = store.stream_head().await.expect("head");
    let next = event(10_000, "new_order", None, Scope::App, 1);
    append_all(store, vec![next.clone()]).await;
    let (ids, _) = stream_walk_len(store, &Filter::default(), head, 10, 1).await;
    assert_eq!(ids, [next.id]);
}

/// A position is never given twice, even after the newest events are deleted: a reader
/// that stopped at a deleted event still gets the next one.
pub async fn stream_positions_survive_deleting_the_newest(store: &dyn Store) {
    let start = store.stream_head().await.expect("head");
    append_all(store, vec![event(1, "a", Some("keep"), Scope::App, 1)]).await;
    append_all(store, vec![event(2, "a", Some("erase"), Scope::App, 2)]).await;
    let (ids, reader) = stream_walk_len(store, &Filter::default(), start, 10, 2).await;
    assert_eq!(ids, [Uuid::from_u128(1), Uuid::from_u128(2)]);
    assert_eq!(store.erase_contact("erase", false).await.expect("erase"), 1);
    append_all(store, vec![event(3, "a", Some("keep"), Scope::App, 3)]).await;
    let (ids, _) = stream_walk_len(store, &Filter::default(), reader, 10, 1).await;
    assert_eq!(ids, [Uuid::from_u128(3)]);
}
