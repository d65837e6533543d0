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
