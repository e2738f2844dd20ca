//! The plain counters of one endpoint ([`Counts`]), once: recorded by workers, merged
//! by adding, sent in `EndpointDelta` and saved as top-level numbers of `SavedStats`.

use serde::{Deserialize, Serialize};

/// Counters that merge by adding; a new counter is added here and nowhere else in
/// `EndpointStats`, `SavedStats` or their merges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Requests sent, failed or not (a retry on a fresh connection is not a new one).
    pub requests: u64,
    /// Requests that failed; each is also counted under its (kind, detail).
    pub failures: u64,
    /// Response bytes read.
    pub bytes_received: u64,
    /// Connections the worker opened to the target.
    pub connections_opened: u64,
    /// Requests sent a second time, on a fresh connection, because the kept-alive one
    /// was closed by the server before any byte of an answer (its idle timeout racing
    /// the request). Neither requests nor failures: the client's own connection
    /// handling, counted so that it shows. Absent in files saved before retries were
    /// counted.
    #[serde(default)]
    pub retries: u64,
    /// SSE streams whose response headers arrived.
    pub streams_started: u64,
    /// SSE streams that ended without a failure.
    pub streams_completed: u64,
    /// SSE events read; `EndpointStats::events_by_type` splits them by type.
    pub events: u64,
    /// LLM tokens the target reported using (Dify's `total_tokens`).
    pub total_tokens: u64,
    /// Requests that succeeded (not a failure, not an expected outcome) and met every
    /// goodput SLO of their task (`goodput = { ttfe = "500ms", .. }`); 0 for tasks
    /// without SLOs. Absent in files saved before goodput was counted, and left out
    /// when 0 so that runs without objectives save as before.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub good: u64,
}

/// Whether a counter is 0 (serde leaves such an optional counter out).
fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Counts {
    /// Adds every counter of `other`.
    pub fn add(&mut self, other: &Counts) {
        self.requests += other.requests;
        self.failures += other.failures;
        self.bytes_received += other.bytes_received;
        self.connections_opened += other.connections_opened;
        self.retries += other.retries;
        self.streams_started += other.streams_started;
        self.streams_completed += other.streams_completed;
        self.events += other.events;
        self.total_tokens += other.total_tokens;
        self.good += other.good;
    }

    /// Every counter, for checks that hold for each (a peer's counts are bounded).
    pub fn each(&self) -> [u64; 10] {
        [
            self.requests,
            self.failures,
            self.bytes_received,
            self.connections_opened,
            self.retries,
            self.streams_started,
            self.streams_completed,
            self.events,
            self.total_tokens,
            self.good,
        ]
    }
}
