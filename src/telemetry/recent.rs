//! The last few failed calls, for the status page: route names, outcome kinds and request ids
//! only (never a body or a caller's data), so nothing here needs masking.

use std::collections::VecDeque;
use std::sync::Mutex;

/// How many failures are kept.
pub const KEEP: usize = 20;

/// One failed call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecentError {
    /// Unix milliseconds.
    pub at_ms: u64,
    pub direction: String,
    pub route: String,
    pub outcome: String,
    pub status: u16,
    pub request_id: String,
}

static RECENT: Mutex<VecDeque<RecentError>> = Mutex::new(VecDeque::new());

/// Remembers a failed call, forgetting the oldest past `KEEP`. Only failures come here
/// (`Outcome::failed`): during an outage the queued calls would push the real errors out.
pub fn record(e: RecentError) {
    let mut q = RECENT.lock().unwrap_or_else(|p| p.into_inner());
    if q.len() == KEEP {
        q.pop_front();
    }
    q.push_back(e);
}

/// The remembered failures, newest first.
pub fn snapshot() -> Vec<RecentError> {
    let q = RECENT.lock().unwrap_or_else(|p| p.into_inner());
    q.iter().rev().cloned().collect()
}
