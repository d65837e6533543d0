//! The store conformance suite: one set of behaviours, run against every store.

mod conformance;
mod content;
mod discovery;
mod log_files;
mod segments;

use std::sync::Arc;

use eventline_store::Store;
use eventline_store::log::{LogOptions, LogStore};
use eventline_store::postgres::{PostgresOptions, PostgresStore};

/// A store on fresh storage: a temporary directory removed when dropped, or a new
/// PostgreSQL database.
pub struct TestStore {
    pub store: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
}

pub fn log() -> TestStore {
    log_with(&LogOptions::default())
}

/// The log store with a memtable of a few events: nearly every event is read from a
/// segment, and commits of more than a few events flush.
pub fn log_segments() -> TestStore {
    log_with(&LogOptions {
        memtable_bytes_max: 4 << 10,
        merged_events_max: 40,
        ..LogOptions::default()
    })
}

fn log_with(options: &LogOptions) -> TestStore {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = LogStore::open(dir.path(), options).expect("open log store");
    TestStore {
        store: Arc::new(store),
        _dir: Some(dir),
    }
}

pub async fn postgres() -> TestStore {
    let url = eventline_testkit::database().await;
    let store = PostgresStore::connect(&url, &PostgresOptions::default())
        .await
        .expect("connect postgres store");
    TestStore {
        store: Arc::new(store),
        _dir: None,
    }
}

/// Runs one conformance check against every store.
#[macro_export]
macro_rules! conformance {
    ($module:ident: $($name:ident),* $(,)?) => {
        mod log {
            $(
                #[tokio::test]
                async fn $name() {
                    let test_store = $crate::log();
                    $crate::$module::$name(test_store.store.as_ref()).await;
                }
            )*
        }
        mod log_segments {
            $(
                #[tokio::test]
                async fn $name() {
                    let test_store = $crate::log_segments();
                    $crate::$module::$name(test_store.store.as_ref()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let test_store = $crate::postgres().await;
                    $crate::$module::$name(test_store.store.as_ref()).await;
                }
            )*
        }
    };
}

conformance!(
    conformance:
    stores_and_reads_back,
    replay_returns_stored_event_and_conflict_stores_nothing,
    conflict_in_a_submission_undoes_only_that_submission,
    an_id_twice_in_one_submission,
    filters_match_the_reference,
    cursor_walk_yields_each_event_once_in_both_orders,
    numeric_offset_skips,
    stats_match_the_reference,
    stream_reads_in_commit_order,
    stream_positions_survive_deleting_the_newest,
);

/// Content filters (SPEC §8).
mod content_filters {
    crate::conformance!(
        content: content_filters_match_the_reference,
        content_cursors_hold_while_events_arrive,
    );
}

/// Discovery: content paths and values.
mod properties {
    crate::conformance!(discovery: properties_and_values_are_counted);
}

#[test]
fn second_process_on_same_directory_is_refused() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let _first = LogStore::open(dir.path(), &LogOptions::default()).expect("first open");
    let second = LogStore::open(dir.path(), &LogOptions::default());
    assert!(matches!(
        second,
        Err(eventline_store::log::Error::DataDirLocked(_))
    ));
}
