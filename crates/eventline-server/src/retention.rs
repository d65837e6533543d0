//! Retention: events whose `timestamp` is older than the configured age are deleted,
//! continuously, in small steps, so that ingest never waits behind a large delete.

use std::sync::Arc;
use std::time::Duration;

use eventline_store::Store;

use crate::ingest::ErrorChain;

/// Events deleted per step: one short transaction each.
pub const STEP_EVENTS_MAX: u32 = 1_000;
/// Between steps while old events remain: the writer is free for ingest meanwhile.
const PAUSE_BETWEEN_STEPS: Duration = Duration::from_millis(20);
/// Between sweeps once nothing old is left.
const PAUSE_BETWEEN_SWEEPS: Duration = Duration::from_secs(60);

/// Runs until dropped (the server aborts it at shutdown).
pub async fn run(store: Arc<dyn Store>, max_age: Duration) {
    let max_age_ms = i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX);
    loop {
        let cutoff_ms = crate::now_ms().saturating_sub(max_age_ms);
        let pause = match store.delete_before(cutoff_ms, STEP_EVENTS_MAX).await {
            Ok(deleted) if deleted >= u64::from(STEP_EVENTS_MAX) => {
                tracing::debug!(deleted, "retention step");
                PAUSE_BETWEEN_STEPS
            }
            Ok(deleted) => {
                if deleted > 0 {
                    tracing::debug!(deleted, "retention step");
                }
                PAUSE_BETWEEN_SWEEPS
            }
            Err(error) => {
                tracing::warn!(error = %ErrorChain(&error), "retention step failed; retrying later");
                PAUSE_BETWEEN_SWEEPS
            }
        };
        tokio::time::sleep(pause).await;
    }
}
