//! The fault suite, short mode by default (`EVENTLINE_FAULTS=long` for the long one, in
//! a release build: see docs/reliability.md). Each test prints its line of the report.

mod corruption;
mod crash_loop;
mod disk;
mod hostile;
mod idempotency;
mod io_errors;
mod overload;
mod pagination;
mod power_loss;

use eventline_faults::Report;

/// Prints a report line (`cargo test -- --nocapture` shows them) and fails on loss,
/// duplicates or server errors.
pub fn conclude(report: &Report) {
    eprintln!("{report}");
    assert_eq!(report.lost, 0, "{report}");
    assert_eq!(report.duplicated, 0, "{report}");
    assert_eq!(report.server_errors, 0, "{report}");
}
