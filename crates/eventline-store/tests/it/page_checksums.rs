//! Page checksums: damage anywhere in the database file, an index included, is refused
//! when read, never read around.

use eventline_core::query::{Filter, Order, PageQuery, Start};
use eventline_store::Store;
use eventline_store::sqlite::{DATABASE_FILE, SqliteOptions, SqliteStore};
use rusqlite::{Connection, OpenFlags};

use crate::conformance::{append_all, corpus};

const PAGE_LEN: usize = 4096;

/// The bytes of page `number` (counted from 1) in the database file.
fn page_range(number: u32) -> std::ops::Range<usize> {
    let start = (number as usize - 1) * PAGE_LEN;
    start..start + PAGE_LEN
}

/// The leaf pages of `name` (a table or an index), read with a plain connection.
fn leaf_pages(database: &std::path::Path, name: &str) -> Vec<u32> {
    let connection = Connection::open_with_flags(database, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open the database file");
    let mut statement = connection
        .prepare("SELECT pageno FROM dbstat WHERE name = ?1 AND pagetype = 'leaf' ORDER BY pageno")
        .expect("dbstat");
    statement
        .query_map([name], |row| row.get(0))
        .expect("leaf pages")
        .collect::<Result<_, _>>()
        .expect("page numbers")
}

fn flip_bit(database: &std::path::Path, at: usize) {
    let mut bytes = std::fs::read(database).expect("read");
    bytes[at] ^= 0x10;
    std::fs::write(database, bytes).expect("write");
}

fn all_events() -> PageQuery {
    PageQuery {
        filter: Filter::default(),
        order: Order::Asc,
        limit: 1000,
        start: Start::First,
    }
}

/// A bit flipped in a leaf of the time index could hide events from every read by
/// time, and no row's checksum would tell. The page's checksum does: the read fails,
/// naming the page, and `verify` (`eventline check`) reports it.
#[tokio::test]
async fn a_flipped_bit_in_an_index_page_is_refused_never_read_around() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let database = dir.path().join(DATABASE_FILE);
    {
        let store = SqliteStore::open(dir.path(), &SqliteOptions::default()).expect("open");
        append_all(&store, corpus()).await;
        let page = store.page(all_events()).await.expect("read before damage");
        assert_eq!(page.events.len(), 600);
    }
    let leaves = leaf_pages(&database, "events_by_time");
    assert!(leaves.len() > 1, "the index spans pages: {leaves:?}");
    let damaged_page = leaves[leaves.len() / 2];
    // Inside the cell content, which fills the end of a leaf page.
    flip_bit(&database, page_range(damaged_page).end - 100);

    let store = SqliteStore::open(dir.path(), &SqliteOptions::default()).expect("reopen");
    match store.page(all_events()).await {
        Err(eventline_store::Error::Corrupt(message)) => assert!(
            message.contains(&format!("page {damaged_page} ")),
            "{message}"
        ),
        other => panic!("a damaged index page was read: {other:?}"),
    }
    let verified = store.verify().expect("verify");
    assert!(
        verified
            .problems
            .iter()
            .any(|problem| problem.contains(&format!("page {damaged_page} "))),
        "{:?}",
        verified.problems
    );
}

/// The checksum covers the page's number: a page whole but in another page's place
/// (a misdirected write) is refused too.
#[tokio::test]
async fn a_page_in_another_pages_place_is_refused() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let database = dir.path().join(DATABASE_FILE);
    {
        let store = SqliteStore::open(dir.path(), &SqliteOptions::default()).expect("open");
        append_all(&store, corpus()).await;
    }
    let leaves = leaf_pages(&database, "events");
    assert!(leaves.len() > 1, "the table spans pages: {leaves:?}");
    let mut bytes = std::fs::read(&database).expect("read");
    let (from, to) = (leaves[0], leaves[1]);
    let copy = bytes[page_range(from)].to_vec();
    bytes[page_range(to)].copy_from_slice(&copy);
    std::fs::write(&database, bytes).expect("write");

    let store = SqliteStore::open(dir.path(), &SqliteOptions::default()).expect("reopen");
    match store.page(all_events()).await {
        Err(eventline_store::Error::Corrupt(message)) => {
            assert!(message.contains(&format!("page {to} ")), "{message}")
        }
        other => panic!("a misplaced page was read: {other:?}"),
    }
}
