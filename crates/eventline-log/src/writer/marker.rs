//! Marks the log acknowledged when commits pause. A commit carries the mark of the
//! commits before it, so under load every answered commit is marked by the next one;
//! the last commit before a pause is marked here, a moment later, with a sync of its
//! own, so that a disk damaging it afterwards is told from a torn write
//! (`docs/format.md`, "Torn writes and damage").

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Condvar, Mutex, PoisonError, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use eventline_core::error_chain::ErrorChain;

use super::Writer;

/// How long commits must pause before the marker writes a mark of its own. Under load
/// commits come closer than this and carry the marks; a longer wait leaves a commit
/// unmarked longer, a shorter one adds syncs between commits that come a little apart.
const PAUSE: Duration = Duration::from_millis(5);

/// What the writer tells the marker.
#[derive(Default)]
pub(crate) struct Signal {
    state: Mutex<SignalState>,
    wake: Condvar,
}

#[derive(Default)]
struct SignalState {
    /// Durable commits so far.
    commits: u64,
    stop: bool,
}

impl Signal {
    /// A commit is durable and answered.
    pub fn committed(&self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.commits += 1;
        self.wake.notify_one();
    }
}

/// The marker's thread.
pub(crate) struct Marker {
    signal: Arc<Signal>,
    thread: Option<JoinHandle<()>>,
}

impl Marker {
    /// Starts the marker of the writer's log. If no thread can be had, commits are
    /// still marked by the next commit and at close.
    pub fn start(
        signal: Arc<Signal>,
        writer: Weak<Mutex<Writer>>,
        sync_failed: Arc<AtomicBool>,
    ) -> Marker {
        let thread_signal = Arc::clone(&signal);
        let thread = std::thread::Builder::new()
            .name("eventline-marker".to_owned())
            .spawn(move || run(&thread_signal, &writer, &sync_failed))
            .inspect_err(|error| tracing::warn!(%error, "no thread for the log's marker"))
            .ok();
        Marker { signal, thread }
    }

    /// Stops the thread and waits for it.
    pub fn stop(mut self) {
        {
            let mut state = self
                .signal
                .state
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            state.stop = true;
            self.signal.wake.notify_one();
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(signal: &Signal, writer: &Weak<Mutex<Writer>>, sync_failed: &AtomicBool) {
    let mut marked = 0;
    loop {
        let mut state = signal.state.lock().unwrap_or_else(PoisonError::into_inner);
        while state.commits == marked && !state.stop {
            state = signal
                .wake
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        // Until commits pause.
        loop {
            if state.stop {
                return;
            }
            marked = state.commits;
            state = signal
                .wake
                .wait_timeout(state, PAUSE)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            if state.commits == marked && !state.stop {
                break;
            }
        }
        drop(state);
        let Some(writer) = writer.upgrade() else {
            return;
        };
        let mut writer = writer.lock().unwrap_or_else(PoisonError::into_inner);
        if let Err(error) = writer.mark_acknowledged(sync_failed, false) {
            tracing::warn!(error = %ErrorChain(&error), "the log's end could not be marked acknowledged");
        }
    }
}
