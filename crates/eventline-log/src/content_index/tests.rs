use eventline_core::content_filter::from_json;
use proptest::prelude::*;
use serde_json::json;

use super::*;

/// Builds an index of `events` (block, content), its postings kept in a list.
fn index(blocks_len: u32, events: &[(u32, String)]) -> (ContentIndex, Vec<Vec<u8>>) {
    let mut builder = ContentIndexBuilder::default();
    let mut numbers = NumbersBuilder::default();
    for (event, (block, content)) in events.iter().enumerate() {
        builder.add(*block, event as u32, 0, content, &mut numbers);
    }
    let mut written: Vec<Vec<u8>> = Vec::new();
    let index = builder
        .finish(
            blocks_len,
            Columns {
                group_blocks: 1,
                groups: Vec::new(),
                lens: Vec::new(),
                kinds: Vec::new(),
            },
            |bytes| {
                written.push(bytes.to_vec());
                Ok::<_, ()>(PostingsRef {
                    offset: written.len() as u64 - 1,
                    len: bytes.len() as u32,
                })
            },
        )
        .expect("built");
    (index, written)
}

fn blocks_of(
    index: &ContentIndex,
    written: &[Vec<u8>],
    blocks_len: u32,
    filter: &serde_json::Value,
) -> Option<Vec<usize>> {
    let filter = from_json(filter).expect("a filter");
    index
        .blocks(&filter, blocks_len, &mut |postings| {
            decode_postings(&written[postings.offset as usize], blocks_len).ok_or(())
        })
        .expect("postings read")
        .map(|set| {
            (0..blocks_len as usize)
                .filter(|block| set.contains(*block))
                .collect()
        })
}

#[test]
fn lookups_narrow_to_the_blocks_that_may_match() {
    let events: Vec<(u32, String)> = vec![
        (0, json!({"store": "a", "n": 1}).to_string()),
        (0, json!({"store": "b", "o": {"k": true}}).to_string()),
        (2, json!({"store": "a", "n": 2.0}).to_string()),
        (3, json!({"store": "c", "list": [1]}).to_string()),
    ];
    let (index, written) = index(5, &events);
    let cases = [
        (json!({"path": "store", "value": "a"}), Some(vec![0, 2])),
        (json!({"path": "store", "value": "z"}), Some(vec![])),
        (
            json!({"path": "store", "op": "in", "value": ["b", "c"]}),
            Some(vec![0, 3]),
        ),
        (json!({"path": "n", "value": 2}), Some(vec![2])),
        (
            json!({"path": "n", "op": "gt", "value": 0}),
            Some(vec![0, 2]),
        ),
        (json!({"path": "o.k", "value": true}), Some(vec![0])),
        (
            json!({"path": "list", "op": "contains", "value": 1}),
            Some(vec![3]),
        ),
        (json!({"path": "missing", "value": 1}), Some(vec![])),
        (
            json!({"path": "missing", "op": "exists", "value": false}),
            None,
        ),
        (
            json!([{"path": "store", "value": "a"}, {"path": "n", "value": 1}]),
            Some(vec![0]),
        ),
        (
            json!({"or": [{"path": "store", "value": "c"}, {"path": "n", "value": 1}]}),
            Some(vec![0, 3]),
        ),
        (
            json!({"or": [{"path": "store", "value": "c"}, {"not": {"path": "n", "value": 1}}]}),
            None,
        ),
    ];
    for (filter, expected) in cases {
        assert_eq!(
            blocks_of(&index, &written, 5, &filter),
            expected,
            "{filter}"
        );
    }
}

#[test]
fn a_path_of_too_many_or_too_long_values_lists_only_its_blocks() {
    let mut events: Vec<(u32, String)> = (0..=VALUES_MAX as u32)
        .map(|n| (n / 100, json!({"id": n, "long": "x"}).to_string()))
        .collect();
    events.push((
        11,
        json!({"long": "y".repeat(VALUE_KEY_BYTES_MAX)}).to_string(),
    ));
    let (index, written) = index(12, &events);
    assert!(index.path(&["id".to_owned()]).expect("id").values.is_none());
    assert!(
        index
            .path(&["long".to_owned()])
            .expect("long")
            .values
            .is_none()
    );
    assert_eq!(
        blocks_of(&index, &written, 12, &json!({"path": "id", "value": 5})),
        Some((0..=10).collect())
    );
}

#[test]
fn a_segment_of_too_many_paths_is_not_complete() {
    let events: Vec<(u32, String)> = (0..=PATHS_MAX)
        .map(|n| (0, json!({ format!("p{n}"): 1 }).to_string()))
        .collect();
    let (index, written) = index(1, &events);
    assert!(!index.complete);
    assert_eq!(index.paths.len(), PATHS_MAX);
    assert_eq!(
        blocks_of(&index, &written, 1, &json!({"path": "unseen", "value": 1})),
        None
    );
}

#[test]
fn damaged_postings_are_refused() {
    let mut list = BlockList::default();
    for block in [1, 5, 9] {
        list.add(block);
    }
    let bytes = list.encode(1_000);
    assert_eq!(bytes[0], KIND_NUMBERS);
    assert!(decode_postings(&bytes, 1_000).is_some());
    assert!(decode_postings(&bytes, 9).is_none(), "a block past the end");
    for bit in 0..bytes.len() * 8 {
        let mut damaged = bytes.clone();
        damaged[bit / 8] ^= 1 << (bit % 8);
        assert!(decode_postings(&damaged, 1_000).is_none(), "bit {bit}");
    }
    for len in 0..bytes.len() {
        assert!(
            decode_postings(&bytes[..len], 1_000).is_none(),
            "cut at {len}"
        );
    }
}

proptest! {
    /// Whatever blocks a list holds, it reads back as them, in the kind that is
    /// shorter.
    #[test]
    fn postings_read_back(
        blocks in prop::collection::btree_set(0..300_u32, 0..200),
        extra in 0..50_u32,
    ) {
        let blocks_len = blocks.last().map_or(1, |last| last + 1) + extra;
        let mut list = BlockList::default();
        for block in &blocks {
            list.add(*block);
            list.add(*block);
        }
        let bytes = list.encode(blocks_len);
        prop_assert!(bytes.len() <= (blocks_len as usize).div_ceil(8) + 5);
        let set = decode_postings(&bytes, blocks_len).expect("postings");
        let read: Vec<u32> = (0..blocks_len).filter(|block| set.contains(*block as usize)).collect();
        prop_assert_eq!(read, blocks.into_iter().collect::<Vec<u32>>());
    }
}
