//! Merges worker reports into cluster-wide totals and a per-second timeline.
//!
//! Each report is a delta keyed by (worker, epoch, seq); it is merged exactly once
//! (duplicates after a resend are acknowledged again but not counted) and placed in the
//! timeline by the worker's own interval times on the run clock, not by arrival time.
//! Timeline slots keep their histograms while reports for them can still arrive, then
//! shrink to summary figures so a long run's memory stays flat.
//!
//! The [`Aggregator`] is here; merging a report in [`merge`], the rows' totals in
//! [`totals`], the timeline and its windows in [`timeline`], each worker's progress and
//! load in [`progress`].

pub mod live;
pub mod merge;
pub mod progress;
pub mod timeline;
pub mod totals;

#[cfg(test)]
pub(crate) mod testing;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use barrage_common::metrics::EndpointStats;
use barrage_common::plan::TaskKindTag;

pub use live::{LIVE_EVERY, LiveTotals};
pub use merge::{DecodedReport, Merge, Planned};
pub use progress::{CPU_SATURATED_PERCENT, LAG_SATURATED_US, WorkerProgress, cpu_saturated, saturation_cpu};
use timeline::OPEN_SLOTS;
pub use timeline::{EndpointSecond, REPORT_LAG, Slot, SlotSummary, Window};
pub use totals::{EndpointKey, EndpointTotals, MAX_PEER_ROWS, Totals, business_events, events_per_request_of};

/// The cluster's merged figures for one run (epoch): totals per stats row and per
/// target address, the per-second timeline, and what each worker has delivered.
#[derive(Debug, Default)]
pub struct Aggregator {
    /// The run's epoch: reports of any other are refused.
    pub epoch: u64,
    /// The totals per stats row, since the last reset of the statistics.
    pub endpoints: BTreeMap<EndpointKey, EndpointTotals>,
    /// Every second of the run clock that reports were placed in.
    pub timeline: BTreeMap<i64, Slot>,
    /// Per target address, when workers spread users over a host's addresses.
    pub peers: BTreeMap<(EndpointKey, String), Totals>,
    /// Per target address: each worker's peak users pinned to it (`Report.peer_users`).
    pub peer_users: BTreeMap<String, BTreeMap<String, i64>>,
    /// What each worker (by id) has delivered, and its load.
    pub workers: HashMap<String, WorkerProgress>,
    /// Whole reports that could not be used (see [`Merge::Rejected`]): lost data.
    pub lost_reports: u64,
    /// Endpoint deltas refused inside usable reports (an endpoint the plan does not
    /// have, impossible counts), and the requests they claimed: lost data.
    pub refused_deltas: u64,
    /// See `refused_deltas`.
    pub refused_requests: u64,
    /// Fields refused or clipped without losing a count: texts cut to their bounds,
    /// keys folded into `(other)`, non-finite or negative gauges, intervals outside
    /// the run clock (their counts kept in the totals, not placed in the timeline).
    pub clipped: u64,
    /// Data known lost for good (a worker written off before its data arrived), one
    /// line each, for the report's verdict.
    pub lost_data: Vec<String>,
    /// The endpoints of the plan: a delta for any other is refused (shared with the
    /// sessions, which decode reports before taking this aggregator's lock).
    planned: Arc<Planned>,
    /// The run's start on this machine, to refuse intervals far beyond the run clock.
    run_start: Option<std::time::Instant>,
    /// Open model: arrivals the workers dropped at their in-flight cap.
    pub dropped_iterations: u64,
    /// Open model: the latest due time (run clock, µs) of an arrival any worker
    /// started or dropped.
    pub last_arrival_due_us: i64,
    /// When the totals were last reset (web UI), seconds into the run: rates divide by
    /// the time since.
    pub stats_since_s: f64,
    /// Every slot before this second is compacted (see `compact`).
    compacted_below: i64,
    /// Seconds behind the newest whose histograms are kept (trailing-window
    /// thresholds need theirs); at least [`OPEN_SLOTS`].
    keep_histograms_s: i64,
    /// Whether open slots keep each endpoint's share (`--csv-full-history`).
    endpoint_seconds: bool,
    /// The stats rows whose tasks have goodput objectives: the report shows goodput
    /// for these only, and the timeline's good share is of their requests.
    goodput_rows: BTreeSet<EndpointKey>,
    /// The live view's snapshot of the totals ([`Aggregator::live`]). A mutex of its
    /// own because readers hold the aggregator shared (`&self`); it is only ever taken
    /// under the aggregator's lock, so it never waits.
    live: std::sync::Mutex<Option<Arc<LiveTotals>>>,
    /// Bumped when the live snapshot must not wait its second (a reset, a final report).
    live_generation: u64,
}

impl Aggregator {
    /// An empty aggregate for the run of `epoch`.
    pub fn new(epoch: u64) -> Self {
        Aggregator {
            epoch,
            keep_histograms_s: OPEN_SLOTS,
            ..Default::default()
        }
    }

    /// Refuse deltas of endpoints the plan does not have (name and method).
    pub fn plan_endpoints<'a>(&mut self, endpoints: impl IntoIterator<Item = (&'a str, &'a str)>) {
        self.planned = Arc::new(Planned::new(endpoints));
    }

    /// The plan's endpoints as [`Aggregator::plan_endpoints`] set them, for decoding
    /// reports outside the lock ([`merge::DecodedReport::decode`]).
    pub fn planned(&self) -> Arc<Planned> {
        self.planned.clone()
    }

    /// The stats rows (name, method) whose tasks have goodput objectives.
    pub fn plan_goodput<'a>(&mut self, rows: impl IntoIterator<Item = (&'a str, &'a str)>) {
        self.goodput_rows = rows
            .into_iter()
            .map(|(name, method)| EndpointKey {
                name: name.to_string(),
                method: method.to_string(),
            })
            .collect();
    }

    /// Whether stats row `key` has goodput objectives (see [`Aggregator::plan_goodput`]).
    pub fn has_goodput(&self, key: &EndpointKey) -> bool {
        self.goodput_rows.contains(key)
    }

    /// Whether any stats row has goodput objectives.
    pub fn any_goodput(&self) -> bool {
        !self.goodput_rows.is_empty()
    }

    /// The run started at `at` (this machine's clock): intervals ending far beyond the
    /// run clock are not placed in the timeline.
    pub fn start_clock(&mut self, at: std::time::Instant) {
        self.run_start = Some(at);
    }

    /// Marks a worker as fenced (declared lost): its reports count until its closing
    /// one, and if that never comes and it had load (`had_load`: it was assigned some,
    /// or reported some), the run's data is incomplete.
    pub fn fence(&mut self, worker: &str, had_load: bool) {
        let p = self
            .workers
            .entry(worker.to_string())
            .or_insert_with(|| WorkerProgress {
                epoch: self.epoch,
                ..Default::default()
            });
        p.fenced = true;
        p.had_load |= had_load;
    }

    /// Forgets a worker's progress (it joins again as a new session, seqs from 1).
    /// What it delivered stays counted; if it was written off before its closing
    /// report arrived, that loss is noted for the verdict.
    pub fn forget(&mut self, worker: &str, why: &str) {
        if let Some(p) = self.workers.remove(worker)
            && p.had_load
            && !p.final_seen
        {
            self.lost_data.push(format!(
                "worker {worker} {why}: what it did after {:.1}s of the run never arrived",
                p.last_interval_end_us as f64 / 1e6
            ));
        }
    }

    /// Why the merged figures are not the whole truth; empty when nothing was lost.
    /// `written_off`: workers now declared lost (the registry's view).
    pub fn data_loss<'a>(&self, written_off: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let mut why = self.lost_data.clone();
        if self.lost_reports > 0 {
            why.push(format!(
                "{} report(s) could not be used (wrong run, impossible sequence, or sent after a fence)",
                self.lost_reports
            ));
        }
        if self.refused_deltas > 0 {
            why.push(format!(
                "{} endpoint record(s) refused (an endpoint the plan does not have, or impossible counts), claiming {} request(s)",
                self.refused_deltas, self.refused_requests
            ));
        }
        let mut holes: Vec<_> = self
            .workers
            .iter()
            .filter(|(_, p)| !p.above.is_empty())
            .map(|(id, p)| {
                format!(
                    "worker {id}: report(s) {}..{} never arrived",
                    p.acked + 1,
                    p.above.first().copied().unwrap_or(0) - 1
                )
            })
            .collect();
        holes.sort();
        why.extend(holes);
        let mut fenced: Vec<_> = written_off
            .into_iter()
            .filter_map(|id| self.workers.get(id).map(|p| (id, p)))
            .filter(|(_, p)| p.had_load && !p.final_seen)
            .map(|(id, p)| {
                format!(
                    "worker {id} was lost: what it did after {:.1}s of the run never arrived",
                    p.last_interval_end_us as f64 / 1e6
                )
            })
            .collect();
        fenced.sort();
        why.extend(fenced);
        why
    }

    /// Open slots also keep each endpoint's requests, failures and response times, for
    /// [`Aggregator::endpoint_window`]. Off by default: it costs a map per second.
    pub fn keep_endpoint_seconds(&mut self) {
        self.endpoint_seconds = true;
    }

    /// Each endpoint's figures over the seconds `from..to` (needs
    /// [`Aggregator::keep_endpoint_seconds`]; compacted seconds add nothing).
    pub fn endpoint_window(&self, from: i64, to: i64) -> BTreeMap<EndpointKey, EndpointSecond> {
        timeline::endpoint_window(&self.timeline, from, to)
    }

    /// Keeps per-second histograms for at least `seconds` behind the newest report.
    pub fn keep_histograms_for(&mut self, seconds: i64) {
        self.keep_histograms_s = self.keep_histograms_s.max(seconds).max(OPEN_SLOTS);
    }

    /// The end (exclusive) of the timeline's complete seconds `elapsed` into the run:
    /// every second before it has all its reports in ([`REPORT_LAG`] after it ended).
    pub fn complete_end(&self, elapsed: Duration) -> i64 {
        elapsed.as_secs() as i64 - REPORT_LAG.as_secs() as i64
    }

    /// The timeline seconds `from..to` (run clock) summed.
    pub fn window(&self, from: i64, to: i64) -> Window {
        timeline::window(&self.timeline, from, to)
    }

    /// Highest acknowledged seq of a worker (for Welcome on resume).
    pub fn acked(&self, worker: &str) -> u64 {
        self.workers.get(worker).map_or(0, |w| w.acked)
    }

    /// Summarises the slots that fell out of the open window. Only slots not yet
    /// compacted are visited, so a merge costs the same at the end of a long run as at
    /// its start.
    fn compact(&mut self, newest: i64) {
        let below = newest - self.keep_histograms_s.max(OPEN_SLOTS);
        if below <= self.compacted_below {
            return;
        }
        for (_, slot) in self.timeline.range_mut(self.compacted_below..below) {
            if slot.summary.is_none() {
                slot.summary = Some(slot.summarize());
                slot.ttfe = None;
                slot.response_time = None;
                slot.endpoints = BTreeMap::new();
            }
        }
        self.compacted_below = below;
    }

    /// Starts the totals again (the web UI's "reset statistics", as in Locust): the
    /// tables and rates count from `at_s` (reports of intervals that ended by then,
    /// still arriving, go to the timeline only); the per-second timeline and what
    /// each worker has delivered (the deduplication) stay.
    pub fn reset_stats(&mut self, at_s: f64) {
        self.live_changed();
        self.endpoints.clear();
        self.peers.clear();
        self.dropped_iterations = 0;
        self.stats_since_s = at_s;
    }

    /// Everything merged into one row (Locust's "Aggregated").
    pub fn aggregated(&self) -> EndpointStats {
        let mut all = EndpointStats::default();
        for t in self.endpoints.values() {
            all.merge(&t.stats());
        }
        all
    }

    /// Only the SSE endpoints merged (for the TTFE table).
    pub fn sse_aggregated(&self) -> EndpointStats {
        let mut all = EndpointStats::default();
        for t in self.endpoints.values().filter(|t| t.kind == TaskKindTag::Sse) {
            all.merge(&t.stats());
        }
        all
    }

    /// Peak users pinned to `peer`: the sum of each worker's peak.
    pub fn users_on(&self, peer: &str) -> u64 {
        self.peer_users
            .get(peer)
            .map_or(0, |w| w.values().map(|&n| n.max(0) as u64).sum())
    }

    /// Forgets everything counted so far (web UI "reset stats", later issues).
    pub fn reset(&mut self) {
        self.live_changed();
        self.peer_users.clear();
        self.dropped_iterations = 0;
        self.last_arrival_due_us = 0;
        self.endpoints.clear();
        self.timeline.clear();
        self.peers.clear();
        self.compacted_below = 0;
    }
}

#[cfg(test)]
mod tests;
