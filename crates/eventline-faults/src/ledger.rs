//! The client-side ledger: what was sent, and how each request ended.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use uuid::Uuid;

/// How one request ended, as the client saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// A 2xx: every event of the request must be stored, once.
    Acknowledged,
    /// An answer that is not a 2xx: nothing of the request was stored by it.
    Rejected(u16),
    /// No answer: the events may or may not be stored.
    Indeterminate,
}

/// One sent event: its `n` (the content every copy of it carries) and whether a 2xx
/// covered it.
#[derive(Debug, Clone, Copy)]
struct Sent {
    n: u64,
    acknowledged: bool,
}

#[derive(Debug, Default)]
struct Entries {
    events: HashMap<Uuid, Sent>,
    /// Events a 2xx covered, kept as they come: polled often while writers run.
    acknowledged: usize,
    statuses: BTreeMap<u16, usize>,
    indeterminate: usize,
    requests: usize,
}

#[derive(Debug, Default)]
pub struct Ledger {
    entries: Mutex<Entries>,
}

/// The store held against the ledger.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Check {
    pub acknowledged: usize,
    /// Acknowledged and not stored.
    pub lost: Vec<Uuid>,
    /// Stored more than once.
    pub duplicated: Vec<Uuid>,
    /// Stored and never sent.
    pub unexpected: Vec<Uuid>,
    /// Stored with another content than was sent.
    pub altered: Vec<Uuid>,
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} lost, {} duplicated, {} unexpected, {} altered of {} acknowledged",
            self.lost.len(),
            self.duplicated.len(),
            self.unexpected.len(),
            self.altered.len(),
            self.acknowledged
        )
    }
}

impl Check {
    /// Panics, saying what was wrong and where (`context`), unless clean.
    pub fn assert_clean(&self, context: &str) {
        assert!(self.is_clean(), "{context}: {self}");
    }

    pub fn is_clean(&self) -> bool {
        self.lost.is_empty()
            && self.duplicated.is_empty()
            && self.unexpected.is_empty()
            && self.altered.is_empty()
    }
}

impl Ledger {
    /// Notes `events` (id and `n`) as sent, before their request goes out.
    pub fn sending(&self, events: &[(Uuid, u64)]) {
        let mut entries = self.entries.lock().unwrap();
        for (id, n) in events {
            let sent = entries.events.entry(*id).or_insert(Sent {
                n: *n,
                acknowledged: false,
            });
            assert_eq!(sent.n, *n, "the harness sent {id} with two contents");
        }
    }

    /// Records one request of `events` (id and `n`) and how it ended.
    pub fn record(&self, events: &[(Uuid, u64)], fate: Fate) {
        let mut entries = self.entries.lock().unwrap();
        entries.requests += 1;
        match fate {
            Fate::Acknowledged => *entries.statuses.entry(200).or_default() += 1,
            Fate::Rejected(status) => *entries.statuses.entry(status).or_default() += 1,
            Fate::Indeterminate => entries.indeterminate += 1,
        }
        for (id, n) in events {
            let sent = entries.events.entry(*id).or_insert(Sent {
                n: *n,
                acknowledged: false,
            });
            assert_eq!(sent.n, *n, "the harness sent {id} with two contents");
            let newly = fate == Fate::Acknowledged && !sent.acknowledged;
            sent.acknowledged |= newly;
            entries.acknowledged += usize::from(newly);
        }
    }

    pub fn acknowledged(&self) -> HashSet<Uuid> {
        let entries = self.entries.lock().unwrap();
        entries
            .events
            .iter()
            .filter(|(_, sent)| sent.acknowledged)
            .map(|(id, _)| *id)
            .collect()
    }

    pub fn acknowledged_len(&self) -> usize {
        self.entries.lock().unwrap().acknowledged
    }

    /// Requests answered with a 5xx.
    pub fn server_errors(&self) -> usize {
        self.server_errors_except(&[])
    }

    /// Requests answered with a 5xx other than `expected`: a test that provokes an
    /// honest "not now" (503 while the disk fails) counts those in `statuses` only.
    pub fn server_errors_except(&self, expected: &[u16]) -> usize {
        let entries = self.entries.lock().unwrap();
        entries
            .statuses
            .iter()
            .filter(|(status, _)| **status >= 500 && !expected.contains(status))
            .map(|(_, count)| count)
            .sum()
    }

    /// Requests by answer (`200` stands for every 2xx), and how many had none.
    pub fn statuses(&self) -> (BTreeMap<u16, usize>, usize, usize) {
        let entries = self.entries.lock().unwrap();
        (
            entries.statuses.clone(),
            entries.indeterminate,
            entries.requests,
        )
    }

    /// Holds the stored events (id and `n`, as read back) against the ledger.
    /// `acknowledged_before` limits the lost check to what was acknowledged at some
    /// earlier moment (a check while writers still run); `None`: everything.
    pub fn check(
        &self,
        stored: &[(Uuid, u64)],
        acknowledged_before: Option<&HashSet<Uuid>>,
    ) -> Check {
        let entries = self.entries.lock().unwrap();
        let mut seen: HashMap<Uuid, usize> = HashMap::with_capacity(stored.len());
        let mut check = Check::default();
        for (id, n) in stored {
            *seen.entry(*id).or_default() += 1;
            match entries.events.get(id) {
                None => check.unexpected.push(*id),
                Some(sent) if sent.n != *n => check.altered.push(*id),
                Some(_) => {}
            }
        }
        check.duplicated = seen
            .iter()
            .filter(|(_, count)| **count > 1)
            .map(|(id, _)| *id)
            .collect();
        let acknowledged: Vec<Uuid> = match acknowledged_before {
            Some(before) => before.iter().copied().collect(),
            None => entries
                .events
                .iter()
                .filter(|(_, sent)| sent.acknowledged)
                .map(|(id, _)| *id)
                .collect(),
        };
        check.acknowledged = acknowledged.len();
        check.lost = acknowledged
            .into_iter()
            .filter(|id| !seen.contains_key(id))
            .collect();
        check
    }
}
