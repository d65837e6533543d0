//! Eventline's fault harness. Every test here keeps a client-side [`ledger::Ledger`] in
//! which each request ends acknowledged (a 2xx), rejected (another answer) or
//! indeterminate (no answer: a timeout, a reset, a refused connection), and checks the
//! store against it afterwards: nothing acknowledged lost, nothing stored twice, nothing
//! stored that was never sent.
//!
//! The servers are the real `eventline` binary ([`node::Node`]) on loopback, on a
//! temporary data directory or a throwaway PostgreSQL database; the load
//! ([`load::Writers`]) stops by itself. [`Scale`] picks the short mode (CI, minutes) or
//! the long mode (`EVENTLINE_FAULTS=long`, release checks).

// Test support: a failure to set up is a failed run, said as plainly as possible.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod hostile;
pub mod inproc;
pub mod ledger;
pub mod load;
pub mod node;
pub mod sim_disk;

/// How much work each test does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// A few minutes for the whole suite, for every CI run.
    Short,
    /// The figures of `docs/reliability.md`, for release checks.
    Long,
}

impl Scale {
    /// `EVENTLINE_FAULTS=long` selects the long mode.
    pub fn from_env() -> Scale {
        match std::env::var("EVENTLINE_FAULTS").as_deref() {
            Ok("long") => Scale::Long,
            Ok("short") | Ok("") | Err(_) => Scale::Short,
            Ok(other) => panic!("EVENTLINE_FAULTS={other}: expected short or long"),
        }
    }

    /// `short` in the short mode, `long` in the long one.
    pub fn pick<T>(self, short: T, long: T) -> T {
        match self {
            Scale::Short => short,
            Scale::Long => long,
        }
    }
}

/// What a test saw, in the shape of `docs/reliability.md`'s table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub test: String,
    pub store: String,
    pub acknowledged: usize,
    pub lost: usize,
    pub duplicated: usize,
    pub server_errors: usize,
    /// The server process's peak resident memory; 0 when the server ran inside the
    /// test process, whose memory says nothing about it.
    pub rss_peak_kb: u64,
    /// What else the test counted (kills, requests, retries…).
    pub notes: String,
}

impl Report {
    /// The final check of a test that ends with `node` still running: reads the store
    /// back, holds it against the whole ledger, stops the node, and reports.
    pub async fn final_check(
        test: &str,
        storage: &node::Storage,
        ledger: &ledger::Ledger,
        node: node::Node,
        notes: &str,
    ) -> Report {
        let stored = node.stored(&reqwest::Client::new()).await;
        let mut node = node;
        node.sample_rss();
        let rss_peak_kb = node.peak_rss_kb();
        node.stop().await;
        Report::check(test, storage.name(), ledger, &stored, rss_peak_kb, notes)
    }

    /// Holds `stored` against the whole ledger and reports; panics on anything lost,
    /// duplicated, unexpected or altered.
    pub fn check(
        test: &str,
        store: &str,
        ledger: &ledger::Ledger,
        stored: &[(uuid::Uuid, u64)],
        rss_peak_kb: u64,
        notes: &str,
    ) -> Report {
        let check = ledger.check(stored, None);
        check.assert_clean(test);
        Report::new(
            test,
            store,
            ledger,
            &check,
            stored.len(),
            rss_peak_kb,
            notes,
        )
    }

    /// The report of `check` (the store held against `ledger`), clean or not.
    pub fn new(
        test: &str,
        store: &str,
        ledger: &ledger::Ledger,
        check: &ledger::Check,
        stored_len: usize,
        rss_peak_kb: u64,
        notes: &str,
    ) -> Report {
        let (statuses, unanswered, requests) = ledger.statuses();
        Report {
            test: test.to_owned(),
            store: store.to_owned(),
            acknowledged: check.acknowledged,
            lost: check.lost.len(),
            duplicated: check.duplicated.len(),
            server_errors: ledger.server_errors(),
            rss_peak_kb,
            notes: format!(
                "{notes}; {requests} requests: {statuses:?}, {unanswered} unanswered; {stored_len} stored"
            ),
        }
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rss = match self.rss_peak_kb {
            0 => "in process".to_owned(),
            kb => format!("{} MB", kb / 1024),
        };
        write!(
            f,
            "| {} | {} | {} | {} | {} | {} | {rss} | {} |",
            self.test,
            self.store,
            self.acknowledged,
            self.lost,
            self.duplicated,
            self.server_errors,
            self.notes
        )
    }
}
