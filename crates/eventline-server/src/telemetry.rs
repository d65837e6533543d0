//! Prometheus metrics: one recorder per process, rendered at `/metrics`.
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `eventline_http_requests_total` | counter | `route`, `method`, `status` |
//! | `eventline_http_request_duration_seconds` | histogram | `route` |
//! | `eventline_ingest_queue_events` | gauge | |
//! | `eventline_commit_events` | histogram (events per group commit) | |
//! | `eventline_commit_duration_seconds` | histogram | |
//! | `eventline_events_stored_total` | counter | |
//! | `eventline_events_replayed_total` | counter | |
//! | `eventline_store_errors_total` | counter | `operation` |
//! | `eventline_stream_subscribers` | gauge (open live streams) | |
//! | `eventline_stream_dropped_total` | counter (streams closed as too slow) | |

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const HTTP_REQUESTS: &str = "eventline_http_requests_total";
pub const HTTP_REQUEST_DURATION: &str = "eventline_http_request_duration_seconds";
pub const INGEST_QUEUE_EVENTS: &str = "eventline_ingest_queue_events";
pub const COMMIT_EVENTS: &str = "eventline_commit_events";
pub const COMMIT_DURATION: &str = "eventline_commit_duration_seconds";
pub const EVENTS_STORED: &str = "eventline_events_stored_total";
pub const EVENTS_REPLAYED: &str = "eventline_events_replayed_total";
pub const STORE_ERRORS: &str = "eventline_store_errors_total";
pub const STREAM_SUBSCRIBERS: &str = "eventline_stream_subscribers";
pub const STREAM_DROPPED: &str = "eventline_stream_dropped_total";
pub const CONNECTIONS_REFUSED: &str = "eventline_connections_refused_total";

const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const EVENTS_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 50.0, 100.0, 500.0, 1_000.0, 5_000.0, 20_000.0,
];

/// The process's recorder, installed on first use. Several servers in one process (the
/// tests) share it.
pub fn handle() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let install = || {
                PrometheusBuilder::new()
                    .set_buckets_for_metric(
                        Matcher::Suffix("_seconds".to_owned()),
                        SECONDS_BUCKETS,
                    )?
                    .set_buckets_for_metric(
                        Matcher::Full(COMMIT_EVENTS.to_owned()),
                        EVENTS_BUCKETS,
                    )?
                    .install_recorder()
            };
            match install() {
                Ok(handle) => Some(handle),
                Err(error) => {
                    tracing::warn!(%error, "metrics are off: cannot install the recorder");
                    None
                }
            }
        })
        .as_ref()
}
