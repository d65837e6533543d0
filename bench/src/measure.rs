//! What every figure of `bench/perf` is made of: a line of the table with its goal, and
//! latencies of GETs one at a time.

use std::time::Instant;

use anyhow::ensure;
use rand::SeedableRng;
use rand::rngs::StdRng;

/// Queries sent before those measured one at a time.
const WARM_UP_QUERIES: usize = 200;

/// One line of the table: a figure for Eventline, its reference, and the goal.
pub struct Row {
    pub target: &'static str,
    pub figure: String,
    pub eventline: f64,
    pub reference: Option<(String, f64)>,
    pub goal: Goal,
}

#[derive(Clone, Copy)]
pub enum Goal {
    /// Eventline ÷ reference at least this.
    RatioAtLeast(f64),
    /// Eventline ÷ reference at most this.
    RatioAtMost(f64),
    /// Eventline's figure at most this, in the figure's unit.
    AtMost(f64),
}

impl Row {
    fn ratio(&self) -> Option<f64> {
        self.reference
            .as_ref()
            .map(|(_, reference)| self.eventline / reference)
    }

    fn met(&self) -> bool {
        match (self.goal, self.ratio()) {
            (Goal::RatioAtLeast(goal), Some(ratio)) => ratio >= goal,
            (Goal::RatioAtMost(goal), Some(ratio)) => ratio <= goal,
            (Goal::AtMost(goal), _) => self.eventline <= goal,
            (_, None) => false,
        }
    }

    pub fn render(&self) -> String {
        let number = |value: f64| {
            if value >= 100.0 {
                format!("{value:.0}")
            } else {
                format!("{value:.2}")
            }
        };
        let (reference, ratio) = match (&self.reference, self.ratio()) {
            (Some((name, value)), Some(ratio)) => (
                format!("{} ({name})", number(*value)),
                format!("{ratio:.3}"),
            ),
            _ => ("–".to_owned(), "–".to_owned()),
        };
        let goal = match self.goal {
            Goal::RatioAtLeast(goal) => format!("ratio ≥ {goal}"),
            Goal::RatioAtMost(goal) => format!("ratio ≤ {goal}"),
            Goal::AtMost(goal) => format!("≤ {}", number(goal)),
        };
        format!(
            "{:<4} {:<44} {:>12} {:>28} {:>7} {:>12} {:>4}\n",
            self.target,
            self.figure,
            number(self.eventline),
            reference,
            ratio,
            goal,
            if self.met() { "yes" } else { "no" }
        )
    }
}

/// `count` GETs one after the other on one connection, after [`WARM_UP_QUERIES`] more
/// that are not counted (the first queries after a start open connections and fill
/// caches, for every system alike); their latencies in ms, sorted. The client runs on
/// this thread: no hand-off to a client thread in the figure. Any answer but 2xx fails
/// the run.
pub fn latencies(count: usize, url: impl FnMut(&mut StdRng) -> String) -> anyhow::Result<Vec<f64>> {
    latencies_after(WARM_UP_QUERIES, count, url)
}

/// [`latencies`] after `warm_up` queries not counted: fewer for queries that take seconds.
pub fn latencies_after(
    warm_up: usize,
    count: usize,
    mut url: impl FnMut(&mut StdRng) -> String,
) -> anyhow::Result<Vec<f64>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let mut rng = StdRng::seed_from_u64(0x71e);
        let mut latencies = Vec::with_capacity(count);
        for query in 0..warm_up + count {
            let url = url(&mut rng);
            let sent = Instant::now();
            let response = client.get(&url).send().await?;
            let status = response.status();
            let body = response.bytes().await?;
            if query >= warm_up {
                latencies.push(sent.elapsed().as_secs_f64() * 1e3);
            }
            ensure!(
                status.is_success(),
                "{url} answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        latencies.sort_unstable_by(f64::total_cmp);
        Ok(latencies)
    })
}

pub fn percentile(sorted: &[f64], percent: usize) -> f64 {
    sorted
        .get((sorted.len() * percent / 100).min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or(f64::NAN)
}
