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

pub mod ledger;
pub mod load;
pub mod node;

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
    pub rss_peak_kb: u64,
    /// What else the test counted (kills, requests, retries…).
    pub notes: String,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "| {} | {} | {} | {} | {} | {} | {} MB | {} |",
            self.test,
            self.store,
            self.acknowledged,
            self.lost,
            self.duplicated,
            self.server_errors,
            self.rss_peak_kb / 1024,
            self.notes
        )
    }
}
