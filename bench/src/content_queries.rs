//! P7–P9: reads that filter on `content`, Eventline and ClickHouse on the same events.
//! ClickHouse keeps `content` as a JSON string, as PostHog keeps properties, and reads a
//! key with `visitParamExtract*`.
//!
//! - P7, a needle: 30 days, `content.store_id` equal to a store of at most 10 events
//!   (ClickHouse picks it: the store with the most events among those with at most 10),
//!   limit 50.
//! - P8, a common filter: a 7-day window, `content.plan=pro` (about 11 % of events),
//!   limit 50.
//! - P9, a filtered count: 30 days, `content.amount >= 500`, counted (stats for Eventline,
//!   `count()` for ClickHouse), and the two counts must be equal.

use anyhow::{Context, ensure};
use rand::RngExt;
use rand::rngs::StdRng;

use crate::dataset::{TIME_SPAN_MS, TIME_START_MS};
use crate::measure::{Goal, Row, latencies_after, percentile};
use crate::peers::ClickHouse;

const WEEK_MS: i64 = 7 * 24 * 3_600_000;
const LIMIT: u32 = 50;
/// Each system's runs of each query, after a few not counted: a scan takes seconds.
const RUNS: usize = 20;
const WARM_UP: usize = 3;

/// What ClickHouse measured, and the needle it chose.
pub struct Reference {
    pub needle: String,
    pub needle_events: u64,
    needle_ms: Vec<f64>,
    common_ms: Vec<f64>,
    count_ms: Vec<f64>,
    count: u64,
}

pub struct Measured {
    needle_ms: Vec<f64>,
    common_ms: Vec<f64>,
    count_ms: Vec<f64>,
    count: u64,
}

fn week_since(rng: &mut StdRng) -> i64 {
    TIME_START_MS + rng.random_range(0..=(TIME_SPAN_MS - WEEK_MS) / 1000) * 1000
}

pub fn clickhouse(clickhouse: &ClickHouse) -> anyhow::Result<Reference> {
    let until = TIME_START_MS + TIME_SPAN_MS;
    let store = "visitParamExtractString(content, 'store_id')";
    let answer = clickhouse
        .query(&format!(
            "SELECT {store} AS store, count() AS n FROM events GROUP BY store \
             HAVING n <= 10 ORDER BY n DESC, store LIMIT 1 FORMAT TabSeparated"
        ))
        .map_err(anyhow::Error::msg)?;
    let (needle, needle_events) = answer
        .trim()
        .split_once('\t')
        .context("no store has at most 10 events: the data set is too small for a needle")?;
    let (needle, needle_events) = (needle.to_owned(), needle_events.parse()?);
    let page = |condition: &str, since: i64, until: i64| {
        clickhouse.query_url(&format!(
            "SELECT * FROM events WHERE timestamp_ms >= {since} AND timestamp_ms < {until} \
             AND {condition} ORDER BY timestamp_ms, id LIMIT {LIMIT} FORMAT JSON"
        ))
    };
    let needle_ms = latencies_after(WARM_UP, RUNS, |_| {
        page(&format!("{store} = '{needle}'"), TIME_START_MS, until)
    })?;
    let common_ms = latencies_after(WARM_UP, RUNS, |rng| {
        let since = week_since(rng);
        page(
            "visitParamExtractString(content, 'plan') = 'pro'",
            since,
            since + WEEK_MS,
        )
    })?;
    let count_sql = format!(
        "SELECT count() FROM events WHERE timestamp_ms >= {TIME_START_MS} AND timestamp_ms < {until} \
         AND visitParamHas(content, 'amount') AND visitParamExtractFloat(content, 'amount') >= 500"
    );
    let count_ms = latencies_after(WARM_UP, RUNS, |_| {
        clickhouse.query_url(&format!("{count_sql} FORMAT JSON"))
    })?;
    let count = clickhouse
        .query(&format!("{count_sql} FORMAT TabSeparated"))
        .map_err(anyhow::Error::msg)?
        .trim()
        .parse()?;
    Ok(Reference {
        needle,
        needle_events,
        needle_ms,
        common_ms,
        count_ms,
        count,
    })
}

pub fn eventline(url: &str, reference: &Reference) -> anyhow::Result<Measured> {
    let until = TIME_START_MS + TIME_SPAN_MS;
    let needle_url = format!(
        "{url}/api/events?since={TIME_START_MS}&until={until}&limit={LIMIT}&content.store_id={}",
        reference.needle
    );
    let found: serde_json::Value = reqwest::blocking::get(&needle_url)?.json()?;
    let found = found["events"].as_array().map_or(0, Vec::len);
    ensure!(
        found as u64 == reference.needle_events.min(u64::from(LIMIT)),
        "eventline found {found} events of store {}, ClickHouse {}",
        reference.needle,
        reference.needle_events
    );
    let needle_ms = latencies_after(WARM_UP, RUNS, |_| needle_url.clone())?;
    let common_ms = latencies_after(WARM_UP, RUNS, |rng| {
        let since = week_since(rng);
        format!(
            "{url}/api/events?since={since}&until={}&limit={LIMIT}&content.plan=pro",
            since + WEEK_MS
        )
    })?;
    let count_url = format!(
        "{url}/api/stats?since={TIME_START_MS}&until={until}&bucket=day&content.amount[gte]=500"
    );
    let count_ms = latencies_after(WARM_UP, RUNS, |_| count_url.clone())?;
    let stats: serde_json::Value = reqwest::blocking::get(&count_url)?.json()?;
    let count = stats["total"].as_u64().context("stats without a total")?;
    ensure!(
        count == reference.count,
        "eventline counted {count} events with amount >= 500, ClickHouse {}",
        reference.count
    );
    Ok(Measured {
        needle_ms,
        common_ms,
        count_ms,
        count,
    })
}

pub fn rows(reference: &Reference, measured: &Measured) -> Vec<Row> {
    let clickhouse = |figure: f64| Some(("ClickHouse".to_owned(), figure));
    // P7 has two goals: a bound, and a ratio to ClickHouse.
    let needle = |figure: String, goal: Goal| Row {
        target: "P7",
        figure,
        eventline: percentile(&measured.needle_ms, 99),
        reference: clickhouse(percentile(&reference.needle_ms, 99)),
        goal,
    };
    vec![
        needle(
            format!(
                "needle p99 ms ({} events, 30 days)",
                reference.needle_events
            ),
            Goal::AtMost(25.0),
        ),
        needle(
            "needle p99, to ClickHouse's".to_owned(),
            Goal::RatioAtMost(0.1),
        ),
        Row {
            target: "P8",
            figure: "common filter (11 %), 7 days, p99 ms".to_owned(),
            eventline: percentile(&measured.common_ms, 99),
            reference: clickhouse(percentile(&reference.common_ms, 99)),
            goal: Goal::AtMost(5.0),
        },
        Row {
            target: "P9",
            figure: format!("count amount >= 500 ({}), median ms", measured.count),
            eventline: percentile(&measured.count_ms, 50),
            reference: clickhouse(percentile(&reference.count_ms, 50)),
            goal: Goal::RatioAtMost(1.0),
        },
    ]
}
