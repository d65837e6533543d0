//! Counts of events per time bucket and event type: the query a chart asks.

use crate::limits::Limits;
use crate::query::{Filter, PageQuery, ParamError};

/// The width of a bucket, aligned on UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    Minute,
    Hour,
    Day,
}

impl Bucket {
    pub fn ms(self) -> i64 {
        match self {
            Bucket::Minute => 60_000,
            Bucket::Hour => 3_600_000,
            Bucket::Day => 86_400_000,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Bucket::Minute => "minute",
            Bucket::Hour => "hour",
            Bucket::Day => "day",
        }
    }
}

/// A chart has at most this many buckets; a wider window needs a wider bucket.
pub const STATS_BUCKETS_MAX: i64 = 10_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsQuery {
    /// `since_ms` and `until_ms` are always set.
    pub filter: Filter,
    pub bucket: Bucket,
}

/// One count: events of `event_type` whose `timestamp` falls in the bucket starting at
/// `start_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsRow {
    pub start_ms: i64,
    pub event_type: String,
    pub count: u64,
}

impl StatsQuery {
    /// The read filters (`since` required; `until` defaults to `now_ms`) and `bucket`
    /// (`minute`, `hour` (default) or `day`).
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
        limits: &Limits,
        now_ms: i64,
    ) -> Result<StatsQuery, ParamError> {
        let mut bucket = None;
        let mut filters = Vec::new();
        for (name, value) in pairs {
            match name {
                "bucket" => {
                    if bucket.is_some() {
                        return Err(ParamError::new("bucket", "is given more than once"));
                    }
                    bucket = Some(match value.trim() {
                        "minute" => Bucket::Minute,
                        "hour" | "" => Bucket::Hour,
                        "day" => Bucket::Day,
                        _ => return Err(ParamError::new("bucket", "must be minute, hour or day")),
                    });
                }
                "offset" | "limit" | "order" => {
                    return Err(ParamError::new(name, "does not apply to stats"));
                }
                _ => filters.push((name, value)),
            }
        }
        let mut filter = PageQuery::from_pairs(filters, limits)?.filter;
        let since_ms = filter
            .since_ms
            .ok_or_else(|| ParamError::new("since", "is required: stats count over a window"))?;
        let until_ms = *filter.until_ms.get_or_insert(now_ms);
        if since_ms > until_ms {
            return Err(ParamError::new("since", "is later than until"));
        }
        let bucket = bucket.unwrap_or(Bucket::Hour);
        let buckets = (until_ms - since_ms) / bucket.ms() + 1;
        if buckets > STATS_BUCKETS_MAX {
            return Err(ParamError::new(
                "bucket",
                format!(
                    "makes {buckets} buckets over this window; at most {STATS_BUCKETS_MAX}: choose a wider bucket"
                ),
            ));
        }
        Ok(StatsQuery { filter, bucket })
    }
}

/// Where one part of a stats window is counted from: the events themselves, or the
/// counts per minute or per hour. Bounds in Unix milliseconds, `[from_ms, to_ms)`,
/// whole minutes or hours for the counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatsPart {
    Events { from_ms: i64, to_ms: i64 },
    Minutes { from_ms: i64, to_ms: i64 },
    Hours { from_ms: i64, to_ms: i64 },
}

/// How every store that keeps counts splits a stats window: whole hours from the hourly
/// counts when `hourly` and the buckets are whole hours, whole minutes from the counts
/// per minute, the partial minutes at the window's edges and a query for one contact
/// from the events (a contact's events are few). Thirty days by hour read 720 hours per
/// type and scope instead of 43,200 minutes. Counts know nothing of `content`: a query
/// with content filters is counted from the events.
pub fn stats_parts(query: &StatsQuery, hourly: bool) -> Vec<StatsPart> {
    const MINUTE_MS: i64 = 60_000;
    const HOUR_MS: i64 = 3_600_000;
    let filter = &query.filter;
    let (since_ms, until_ms) = (filter.since_ms.unwrap_or(0), filter.until_ms.unwrap_or(0));
    let first_minute =
        since_ms.div_euclid(MINUTE_MS) + i64::from(since_ms.rem_euclid(MINUTE_MS) != 0);
    let end_minute = until_ms.div_euclid(MINUTE_MS);
    if filter.contact_id.is_some() || filter.content.is_some() || first_minute >= end_minute {
        return vec![StatsPart::Events {
            from_ms: since_ms,
            to_ms: until_ms,
        }];
    }
    let (minutes_from, minutes_to) = (first_minute * MINUTE_MS, end_minute * MINUTE_MS);
    let mut parts = Vec::new();
    let first_hour = first_minute.div_euclid(60) + i64::from(first_minute.rem_euclid(60) != 0);
    let end_hour = end_minute.div_euclid(60);
    if hourly && query.bucket.ms() % HOUR_MS == 0 && first_hour < end_hour {
        let (hours_from, hours_to) = (first_hour * HOUR_MS, end_hour * HOUR_MS);
        parts.push(StatsPart::Hours {
            from_ms: hours_from,
            to_ms: hours_to,
        });
        for (from_ms, to_ms) in [(minutes_from, hours_from), (hours_to, minutes_to)] {
            if from_ms < to_ms {
                parts.push(StatsPart::Minutes { from_ms, to_ms });
            }
        }
    } else {
        parts.push(StatsPart::Minutes {
            from_ms: minutes_from,
            to_ms: minutes_to,
        });
    }
    if since_ms < minutes_from {
        parts.push(StatsPart::Events {
            from_ms: since_ms,
            to_ms: minutes_from,
        });
    }
    if minutes_to < until_ms {
        parts.push(StatsPart::Events {
            from_ms: minutes_to,
            to_ms: until_ms,
        });
    }
    parts
}
