//! Property tests of the codecs against models: whatever events a commit or a segment
//! holds, they read back as written, and segments merged read back as the model's
//! sorted union. The unit tests beside each codec cover its error paths byte by byte.

use std::collections::BTreeMap;

use eventline_core::event::{Event, Scope};
use proptest::prelude::*;
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::disk::RealDisk;
use crate::header::{self, Header, Mark};
use crate::record::{self, Stored, TimeKey};
use crate::segment::{self, Segment};
use crate::{bloom::Bloom, framed};

/// What an event is, for comparing: `Event` holds a `RawValue`, which has no `Eq`.
type Shape = (
    Uuid,
    String,
    String,
    Option<String>,
    Scope,
    i64,
    i64,
    Option<i64>,
);

fn shape(event: &Event) -> Shape {
    (
        event.id,
        event.event_type.clone(),
        event.content.get().to_owned(),
        event.contact_id.clone(),
        event.scope,
        event.timestamp_ms,
        event.received_at_ms,
        event.client_timestamp_ms,
    )
}

/// Events with few distinct timestamps, contacts and types, so that runs of equal keys
/// cross frames and blocks; ids unique by their low bits.
fn events(len: std::ops::Range<usize>) -> impl Strategy<Value = Vec<Event>> {
    prop::collection::vec(
        (
            any::<u64>(),
            0..40_i64,
            prop::option::of(0..12_u8),
            any::<bool>(),
            "[a-z_]{1,12}",
            "[ -~]{0,200}",
            prop::option::of(any::<i64>()),
        ),
        len,
    )
    .prop_map(|drawn| {
        drawn
            .into_iter()
            .enumerate()
            .map(
                |(n, (high, timestamp, contact, app, event_type, text, client))| Event {
                    id: Uuid::from_u128((u128::from(high) << 32) | n as u128),
                    event_type,
                    content: RawValue::from_string(
                        serde_json::to_string(&serde_json::json!({ "text": text, "n": n }))
                            .expect("json"),
                    )
                    .expect("json"),
                    contact_id: contact.map(|contact| format!("contact-{contact}")),
                    scope: if app { Scope::App } else { Scope::Site },
                    timestamp_ms: 1_700_000_000_000 + timestamp * 997,
                    received_at_ms: 1_700_000_000_000 + timestamp,
                    client_timestamp_ms: client,
                },
            )
            .collect()
    })
}

fn key(event: &Event) -> TimeKey {
    (event.timestamp_ms, event.id)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// A commit block holds any events, compressed or not, with room for positions an
    /// erasure left empty.
    #[test]
    fn a_commit_block_reads_back_as_written(
        events in events(0..300),
        seq_first in 0..u64::MAX / 2,
        spare in 0..5_u32,
        compress in any::<bool>(),
    ) {
        let stored: Vec<Stored> = events
            .into_iter()
            .enumerate()
            .map(|(n, event)| Stored { seq: seq_first + n as u64, event })
            .collect();
        let seq_len = stored.len() as u32 + spare;
        let mut compressor = zstd::bulk::Compressor::new(record::ZSTD_LEVEL).expect("zstd");
        let mut bytes = vec![7; 3];
        record::encode_block(
            &mut bytes,
            seq_first,
            seq_len,
            &stored,
            compress.then_some(&mut compressor),
        );
        let (block, len) = record::decode_block(&bytes[3..]).expect("block");
        prop_assert_eq!(len, bytes.len() - 3);
        prop_assert_eq!((block.seq_first, block.seq_len), (seq_first, seq_len));
        let read: Vec<(u64, Shape)> =
            block.events.iter().map(|stored| (stored.seq, shape(&stored.event))).collect();
        let written: Vec<(u64, Shape)> =
            stored.iter().map(|stored| (stored.seq, shape(&stored.event))).collect();
        prop_assert_eq!(read, written);
    }

    /// Marks written one after another: whichever slot a power cut tears, or leaves as
    /// zeros, the file's mark is the newest whole one.
    #[test]
    fn the_newest_whole_mark_survives_a_torn_slot(
        marks in prop::collection::vec((0..1_u64 << 40, any::<u64>()), 1..8),
        torn_at in 0..32_usize,
        torn_byte in any::<u8>(),
        zeroed in any::<bool>(),
    ) {
        let marks: Vec<Mark> = marks
            .into_iter()
            .enumerate()
            .map(|(n, (acked, seq_end))| Mark {
                counter: n as u64 + 1,
                acked_len: header::HEADER_LEN as u64 + acked,
                seq_end,
            })
            .collect();
        let mut file = header::encode_header(&marks[0]);
        for mark in &marks[1..] {
            let (offset, slot) = header::encode_slot(mark);
            file[offset..offset + slot.len()].copy_from_slice(&slot);
        }
        let newest = marks[marks.len() - 1];
        prop_assert_eq!(header::decode_header(&file), Ok(Header::V2(Some(newest))));
        // The newest mark's write is torn.
        let (offset, slot) = header::encode_slot(&newest);
        if zeroed {
            file[offset..offset + slot.len()].fill(0);
        } else if file[offset + torn_at] != torn_byte {
            file[offset + torn_at] = torn_byte;
        } else {
            return Ok(());
        }
        let before = (marks.len() > 1).then(|| marks[marks.len() - 2]);
        prop_assert_eq!(header::decode_header(&file), Ok(Header::V2(before)));
    }

    /// A segment block's frames give back every event, and exactly the ones asked for.
    #[test]
    fn a_segment_block_reads_back_every_event_and_each_one_asked_for(
        events in events(1..200),
        asked in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
    ) {
        let mut events: Vec<(u64, Event)> =
            events.into_iter().enumerate().map(|(n, event)| (50 + n as u64, event)).collect();
        events.sort_by_key(|(_, event)| key(event));
        let mut compressor = zstd::bulk::Compressor::new(3).expect("zstd");
        let mut bytes = Vec::new();
        framed::encode_block(&mut bytes, 50, events.len() as u32, &events, &mut compressor)
            .expect("encode");
        let dictionary = zstd::dict::DecoderDictionary::copy(&[]);
        let all = framed::decode_block(&bytes, &dictionary, None).expect("block");
        let read: Vec<(u64, Shape)> =
            all.iter().map(|stored| (stored.seq, shape(&stored.event))).collect();
        let written: Vec<(u64, Shape)> =
            events.iter().map(|(seq, event)| (*seq, shape(event))).collect();
        prop_assert_eq!(read, written);
        let mut wanted: Vec<TimeKey> =
            asked.iter().map(|index| key(&events[index.index(events.len())].1)).collect();
        wanted.sort();
        wanted.dedup();
        let found = framed::decode_block(&bytes, &dictionary, Some(&wanted)).expect("block");
        let found: Vec<TimeKey> = found.iter().map(|stored| key(&stored.event)).collect();
        prop_assert_eq!(found, wanted);
    }

    /// A Bloom filter holds every key put in it.
    #[test]
    fn a_bloom_filter_has_no_false_negatives(keys in prop::collection::vec(any::<Vec<u8>>(), 0..300)) {
        let mut bloom = Bloom::with_keys(keys.len());
        for key in &keys {
            bloom.insert(key);
        }
        for key in &keys {
            prop_assert!(bloom.may_hold(key));
        }
    }
}

proptest! {
    // Each case writes segments to a real directory.
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// Segments written from consecutive runs of commits, then merged: the merged
    /// segment holds the model's events, the sorted union, each at its position; each
    /// input and the merge find every event by id and every contact's keys, and verify
    /// whole.
    #[test]
    fn merged_segments_hold_the_sorted_union_of_their_events(
        events in events(1..3_000),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 1..4),
    ) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let disk = RealDisk::default();
        let seq_first = 1_000_u64;
        let mut bounds: Vec<usize> = cuts.iter().map(|cut| cut.index(events.len())).collect();
        bounds.extend([0, events.len()]);
        bounds.sort_unstable();
        bounds.dedup();
        let mut inputs = Vec::new();
        for (number, run) in bounds.windows(2).enumerate() {
            let mut part: Vec<(u64, &Event)> = (run[0]..run[1])
                .map(|n| (seq_first + n as u64, &events[n]))
                .collect();
            part.sort_by_key(|(_, event)| key(event));
            let path = dir.path().join(segment::segment_name(number as u32 + 1));
            let part_len = part.len();
            segment::write(
                &disk,
                &path,
                part.into_iter(),
                seq_first + run[0] as u64,
                seq_first + run[1] as u64,
                Vec::new(),
            )
            .expect("write");
            let (input, _) = Segment::open(&disk, number as u32 + 1, path, 0).expect("open");
            prop_assert_eq!(input.verify(&disk).expect("verify"), part_len as u64);
            inputs.push(input);
        }
        let merged_path = dir.path().join("merged.seg");
        segment::merge(&disk, &inputs, &merged_path).expect("merge");
        let (merged, _) = Segment::open(&disk, 99, merged_path, 1).expect("open");
        prop_assert_eq!(merged.verify(&disk).expect("verify"), events.len() as u64);
        prop_assert_eq!(
            (merged.seq_first, merged.seq_end),
            (seq_first, seq_first + events.len() as u64)
        );

        let mut model: Vec<(u64, &Event)> =
            events.iter().enumerate().map(|(n, event)| (seq_first + n as u64, event)).collect();
        model.sort_by_key(|(_, event)| key(event));
        let read = merged.events(&disk).expect("events");
        let read: Vec<(u64, Shape)> =
            read.iter().map(|stored| (stored.seq, shape(&stored.event))).collect();
        let expected: Vec<(u64, Shape)> =
            model.iter().map(|(seq, event)| (*seq, shape(event))).collect();
        prop_assert_eq!(read, expected);

        let mut by_contact: BTreeMap<&str, Vec<TimeKey>> = BTreeMap::new();
        for (_, event) in &model {
            let found = merged.get(&disk, &event.id).expect("get").map(|found| shape(&found));
            prop_assert_eq!(found, Some(shape(event)));
            if let Some(contact) = &event.contact_id {
                by_contact.entry(contact).or_default().push(key(event));
            }
        }
        prop_assert!(merged.get(&disk, &Uuid::from_u128(u128::MAX)).expect("get").is_none());
        for (contact, keys) in by_contact {
            let found: Vec<TimeKey> = merged
                .contact_keys(&disk, contact, None, None)
                .expect("contact keys")
                .into_iter()
                .map(|(key, _)| key)
                .collect();
            prop_assert_eq!(found, keys);
        }
    }
}
