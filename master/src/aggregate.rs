//! Merges worker reports into cluster-wide totals and a per-second timeline.
//!
//! Each report is a delta keyed by (worker, epoch, seq); it is merged exactly once
//! (duplicates after a resend are acknowledged again but not counted) and placed in the
//! timeline by the worker's own interval times on the run clock, not by arrival time.
//! Timeline slots keep their histograms while reports for them can still arrive, then
//! shrink to summary figures so a long run's memory stays flat.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use hdrhistogram::Histogram;

use barrage_common::metrics::{Accum, EndpointStats, METRIC_COUNT, Metric};
use barrage_common::plan::TaskKindTag;
use barrage_common::wire::{DeltaBuckets, endpoint_from_proto_sparse};
use barrage_proto::v1;

/// Reports further ahead than this many seqs of the last merged one are refused.
const MAX_SEQ_AHEAD: u64 = 10_000;
/// Slots older than this (seconds behind the newest) are compacted to summaries.
const OPEN_SLOTS: i64 = 15;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EndpointKey {
    pub name: String,
    pub method: String,
}

#[derive(Debug, Clone)]
pub struct EndpointTotals {
    pub kind: TaskKindTag,
    pub totals: Totals,
}

impl EndpointTotals {
    /// The merged figures, histograms included.
    pub fn stats(&self) -> EndpointStats {
        self.totals.stats()
    }
}

/// Merged deltas: the counters, and the histograms as [`Accum`]s (an array increment
/// per bucket of a delta; dense histograms are built only when a report is drawn).
#[derive(Debug, Clone, Default)]
pub struct Totals {
    /// Every figure but the histograms (its own histograms stay empty).
    pub counters: EndpointStats,
    hists: [Accum; METRIC_COUNT],
}

impl Totals {
    fn merge(&mut self, counters: &EndpointStats, buckets: &DeltaBuckets) {
        self.counters.merge(counters);
        for (mine, theirs) in self.hists.iter_mut().zip(buckets) {
            if let Some(theirs) = theirs {
                mine.add(theirs);
            }
        }
    }

    /// The merged figures, histograms included.
    pub fn stats(&self) -> EndpointStats {
        let mut stats = self.counters.clone();
        for (h, accum) in stats.histograms.iter_mut().zip(&self.hists) {
            if !accum.is_empty() {
                *h = Some(accum.to_histogram());
            }
        }
        stats
    }
}

/// One second of the cluster timeline.
#[derive(Debug, Clone, Default)]
pub struct Slot {
    pub requests: u64,
    pub failures: u64,
    pub events: u64,
    pub streams_started: u64,
    pub connections_opened: u64,
    pub bytes: u64,
    /// Sum over workers of their time-averaged users / active streams.
    pub users: f64,
    pub active_streams: f64,
    /// Sum over workers of their peak active streams within the second.
    pub active_streams_max: i64,
    /// Highest worker CPU percent seen in the second.
    pub worker_cpu_max: f64,
    /// Worst worker timer lag (p99 of a report) in the second, µs.
    pub sched_lag_max_us: u64,
    /// HTTP 429 answers in the second, failures and declared outcomes alike.
    pub status_429: u64,
    /// Open model: arrivals dropped at the in-flight cap in the second.
    pub dropped_iterations: u64,
    pub reports: u32,
    ttfe: Option<Accum>,
    response_time: Option<Accum>,
    /// Filled when the slot is compacted (or on demand).
    pub summary: Option<SlotSummary>,
    /// Each endpoint's share of the second, kept only when asked for
    /// ([`Aggregator::keep_endpoint_seconds`]) and only while the slot is open.
    endpoints: BTreeMap<EndpointKey, EndpointSecond>,
}

/// One endpoint's requests, failures and response times within some seconds.
#[derive(Debug, Clone, Default)]
pub struct EndpointSecond {
    pub requests: u64,
    pub failures: u64,
    pub response_time: Accum,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct SlotSummary {
    pub ttfe_mean_us: f64,
    pub ttfe_p50_us: u64,
    pub ttfe_p95_us: u64,
    pub ttfe_p99_us: u64,
    pub ttfe_count: u64,
    pub rt_mean_us: f64,
    pub rt_p50_us: u64,
    pub rt_p95_us: u64,
    pub rt_p99_us: u64,
}

impl Slot {
    fn summarize(&self) -> SlotSummary {
        if let Some(s) = self.summary {
            return s;
        }
        let dense = |a: &Option<Accum>| a.as_ref().filter(|a| !a.is_empty()).map(Accum::to_histogram);
        let (ttfe, rt) = (dense(&self.ttfe), dense(&self.response_time));
        let q = |h: &Option<Histogram<u64>>, p: f64| h.as_ref().map_or(0, |h| h.value_at_quantile(p));
        let mean = |h: &Option<Histogram<u64>>| h.as_ref().map_or(0.0, |h| h.mean());
        SlotSummary {
            ttfe_mean_us: mean(&ttfe),
            ttfe_p50_us: q(&ttfe, 0.5),
            ttfe_p95_us: q(&ttfe, 0.95),
            ttfe_p99_us: q(&ttfe, 0.99),
            ttfe_count: ttfe.as_ref().map_or(0, |h| h.len()),
            rt_mean_us: mean(&rt),
            rt_p50_us: q(&rt, 0.5),
            rt_p95_us: q(&rt, 0.95),
            rt_p99_us: q(&rt, 0.99),
        }
    }

    pub fn summary(&self) -> SlotSummary {
        self.summarize()
    }
}

/// What a worker has delivered.
#[derive(Debug, Clone, Default)]
pub struct WorkerProgress {
    pub epoch: u64,
    /// Every seq <= acked has been merged.
    pub acked: u64,
    /// Merged seqs above `acked` (out of order).
    above: BTreeSet<u64>,
    pub reports: u64,
    pub final_seen: bool,
    pub last_interval_end_us: i64,
    pub cpu_percent: f64,
    pub cpu_max: f64,
    pub rss_bytes: u64,
    pub sched_lag_p99_us: u64,
    /// Worst per-interval lag p99, and the run second it was seen in.
    pub sched_lag_max_us: u64,
    pub sched_lag_max_at_s: i64,
}

/// Most target addresses whose users the aggregator keeps (a hostile worker cannot
/// grow the map without bound).
const MAX_PEER_USERS: usize = 256;

#[derive(Debug, Clone, PartialEq)]
pub enum Merge {
    /// Counted; acknowledge up to `acked`.
    Merged { acked: u64 },
    /// Already counted before; acknowledge again.
    Duplicate { acked: u64 },
    /// Not counted, with the reason (wrong epoch, impossible content, ...).
    Rejected(String),
}

#[derive(Debug, Default)]
pub struct Aggregator {
    pub epoch: u64,
    pub endpoints: BTreeMap<EndpointKey, EndpointTotals>,
    pub timeline: BTreeMap<i64, Slot>,
    /// Per target address, when workers spread users over a host's addresses.
    pub peers: BTreeMap<(EndpointKey, String), Totals>,
    /// Per target address: each worker's peak users pinned to it (`Report.peer_users`).
    pub peer_users: BTreeMap<String, BTreeMap<String, i64>>,
    pub workers: HashMap<String, WorkerProgress>,
    pub rejected: u64,
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
}

/// The timeline's sums over a span of seconds: what trailing-window thresholds see.
#[derive(Debug, Default)]
pub struct Window {
    pub seconds: i64,
    pub requests: u64,
    pub failures: u64,
    pub events: u64,
    pub status_429: u64,
    pub dropped_iterations: u64,
    /// Time-averaged users (mean over the seconds), highest worker CPU and timer lag.
    pub users: f64,
    pub worker_cpu_max: f64,
    pub sched_lag_max_us: u64,
    pub ttfe: Accum,
    pub response_time: Accum,
    /// False when a second in the span had already dropped its histograms.
    pub complete: bool,
}

impl Aggregator {
    pub fn new(epoch: u64) -> Self {
        Aggregator {
            epoch,
            keep_histograms_s: OPEN_SLOTS,
            ..Default::default()
        }
    }

    /// Open slots also keep each endpoint's requests, failures and response times, for
    /// [`Aggregator::endpoint_window`]. Off by default: it costs a map per second.
    pub fn keep_endpoint_seconds(&mut self) {
        self.endpoint_seconds = true;
    }

    /// Each endpoint's figures over the seconds `from..to` (needs
    /// [`Aggregator::keep_endpoint_seconds`]; compacted seconds add nothing).
    pub fn endpoint_window(&self, from: i64, to: i64) -> BTreeMap<EndpointKey, EndpointSecond> {
        let mut out: BTreeMap<EndpointKey, EndpointSecond> = BTreeMap::new();
        for (_, slot) in self.timeline.range(from..to.max(from)) {
            for (key, e) in &slot.endpoints {
                let into = out.entry(key.clone()).or_default();
                into.requests += e.requests;
                into.failures += e.failures;
                into.response_time.merge(&e.response_time);
            }
        }
        out
    }

    /// Keeps per-second histograms for at least `seconds` behind the newest report.
    pub fn keep_histograms_for(&mut self, seconds: i64) {
        self.keep_histograms_s = self.keep_histograms_s.max(seconds).max(OPEN_SLOTS);
    }

    /// The timeline seconds `from..to` (run clock) summed.
    pub fn window(&self, from: i64, to: i64) -> Window {
        let mut w = Window {
            seconds: (to - from).max(0),
            complete: true,
            ..Default::default()
        };
        for (_, slot) in self.timeline.range(from..to.max(from)) {
            w.requests += slot.requests;
            w.failures += slot.failures;
            w.events += slot.events;
            w.status_429 += slot.status_429;
            w.dropped_iterations += slot.dropped_iterations;
            w.users += slot.users / w.seconds.max(1) as f64;
            w.worker_cpu_max = w.worker_cpu_max.max(slot.worker_cpu_max);
            w.sched_lag_max_us = w.sched_lag_max_us.max(slot.sched_lag_max_us);
            if slot.summary.is_some() && slot.requests > 0 {
                w.complete = false;
            }
            if let Some(a) = &slot.ttfe {
                w.ttfe.merge(a);
            }
            if let Some(a) = &slot.response_time {
                w.response_time.merge(a);
            }
        }
        w
    }

    /// Highest acknowledged seq of a worker (for Welcome on resume).
    pub fn acked(&self, worker: &str) -> u64 {
        self.workers.get(worker).map_or(0, |w| w.acked)
    }

    pub fn merge(&mut self, r: &v1::Report) -> Merge {
        if r.epoch != self.epoch {
            self.rejected += 1;
            return Merge::Rejected(format!("report of epoch {} in epoch {}", r.epoch, self.epoch));
        }
        let progress = self
            .workers
            .entry(r.worker_id.clone())
            .or_insert_with(|| WorkerProgress {
                epoch: r.epoch,
                ..Default::default()
            });
        if r.seq == 0 || r.seq <= progress.acked || progress.above.contains(&r.seq) {
            return Merge::Duplicate { acked: progress.acked };
        }
        if r.seq > progress.acked + MAX_SEQ_AHEAD {
            self.rejected += 1;
            return Merge::Rejected(format!("seq {} is far ahead of {}", r.seq, progress.acked));
        }
        if r.interval_end_us < r.interval_start_us || r.interval_start_us < 0 {
            self.rejected += 1;
            return Merge::Rejected(format!(
                "interval {}..{} is impossible",
                r.interval_start_us, r.interval_end_us
            ));
        }
        // Decode everything before touching totals: a bad report changes nothing.
        let mut decoded = Vec::with_capacity(r.endpoints.len());
        for d in &r.endpoints {
            if d.peer.len() > 256 {
                self.rejected += 1;
                return Merge::Rejected("peer address too long".into());
            }
            match endpoint_from_proto_sparse(d) {
                Ok((endpoint, stats, buckets)) => decoded.push((endpoint, stats, buckets, d.peer.clone())),
                Err(e) => {
                    self.rejected += 1;
                    return Merge::Rejected(e.to_string());
                }
            }
        }
        let gauge = |g: &Option<v1::Gauge>| g.unwrap_or_default();
        let (users, streams) = (gauge(&r.users), gauge(&r.active_streams));
        if users.last < 0
            || streams.last < 0
            || streams.max < 0
            || streams.time_avg.is_nan()
            || streams.time_avg < 0.0
            || users.time_avg.is_nan()
            || users.time_avg < 0.0
        {
            self.rejected += 1;
            return Merge::Rejected("negative gauge".into());
        }

        // Record progress.
        progress.above.insert(r.seq);
        while progress.above.remove(&(progress.acked + 1)) {
            progress.acked += 1;
        }
        progress.reports += 1;
        progress.final_seen |= r.r#final;
        progress.last_interval_end_us = progress.last_interval_end_us.max(r.interval_end_us);
        progress.cpu_percent = r.cpu_percent;
        progress.cpu_max = progress.cpu_max.max(r.cpu_percent);
        progress.rss_bytes = r.rss_bytes;
        progress.sched_lag_p99_us = r.sched_lag_p99_us;
        if r.sched_lag_p99_us > progress.sched_lag_max_us {
            progress.sched_lag_max_us = r.sched_lag_p99_us;
            progress.sched_lag_max_at_s = r.interval_start_us / 1_000_000;
        }
        let acked = progress.acked;
        // Users per replica: what does not fit a sane address or gauge is skipped.
        for u in r.peer_users.iter().take(MAX_PEER_USERS) {
            if u.peer.is_empty() || u.peer.len() > 256 || u.max < 0 {
                continue;
            }
            if !self.peer_users.contains_key(&u.peer) && self.peer_users.len() >= MAX_PEER_USERS {
                continue;
            }
            let peak = self
                .peer_users
                .entry(u.peer.clone())
                .or_default()
                .entry(r.worker_id.clone())
                .or_default();
            *peak = (*peak).max(u.max);
        }

        let second = r.interval_start_us / 1_000_000;
        let endpoint_seconds = self.endpoint_seconds;
        let slot = self.timeline.entry(second).or_default();
        slot.reports += 1;
        // A partial interval (a final report) weighs its gauges by its share of a second.
        let span = ((r.interval_end_us - r.interval_start_us) as f64 / 1e6).clamp(0.0, 1.0);
        slot.users += users.time_avg * span;
        slot.active_streams += streams.time_avg * span;
        slot.active_streams_max += streams.max;
        slot.worker_cpu_max = slot.worker_cpu_max.max(r.cpu_percent);
        slot.sched_lag_max_us = slot.sched_lag_max_us.max(r.sched_lag_p99_us);
        slot.dropped_iterations += r.dropped_iterations;
        self.dropped_iterations += r.dropped_iterations;
        // An arrival handled within the interval was due by its end.
        let last_due = r.last_arrival_due_us.min(r.interval_end_us);
        self.last_arrival_due_us = self.last_arrival_due_us.max(last_due);
        for (endpoint, stats, buckets, peer) in decoded {
            slot.requests += stats.requests;
            slot.failures += stats.failures;
            slot.events += stats.events;
            slot.streams_started += stats.streams_started;
            slot.connections_opened += stats.connections_opened;
            slot.bytes += stats.bytes_received;
            slot.status_429 += stats.status_429();
            if slot.summary.is_none() {
                for (metric, into) in [
                    (Metric::Ttfe, &mut slot.ttfe),
                    (Metric::ResponseTime, &mut slot.response_time),
                ] {
                    if let Some(b) = &buckets[metric as usize] {
                        into.get_or_insert_with(Accum::default).add(b);
                    }
                }
            }
            let key = EndpointKey {
                name: endpoint.name,
                method: endpoint.method,
            };
            if endpoint_seconds && slot.summary.is_none() {
                let e = slot.endpoints.entry(key.clone()).or_default();
                e.requests += stats.requests;
                e.failures += stats.failures;
                if let Some(b) = &buckets[Metric::ResponseTime as usize] {
                    e.response_time.add(b);
                }
            }
            if !peer.is_empty() {
                self.peers
                    .entry((key.clone(), peer))
                    .or_default()
                    .merge(&stats, &buckets);
            }
            let totals = self.endpoints.entry(key).or_insert_with(|| EndpointTotals {
                kind: endpoint.kind,
                totals: Totals::default(),
            });
            totals.totals.merge(&stats, &buckets);
        }
        self.compact(second);
        Merge::Merged { acked }
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

    /// Everything merged into one row (Locust's "Aggregated").
    /// Starts the totals again (the web UI's "reset statistics", as in Locust): the
    /// tables and rates count from `at_s`; the per-second timeline and what each
    /// worker has delivered (the deduplication) stay.
    pub fn reset_stats(&mut self, at_s: f64) {
        self.endpoints.clear();
        self.peers.clear();
        self.dropped_iterations = 0;
        self.stats_since_s = at_s;
    }

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
        self.peer_users.clear();
        self.dropped_iterations = 0;
        self.last_arrival_due_us = 0;
        self.endpoints.clear();
        self.timeline.clear();
        self.peers.clear();
        self.compacted_below = 0;
    }
}

/// Reports made up for unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use barrage_common::metrics::EndpointStats;
    use barrage_common::plan::{Endpoint, TaskKindTag};
    use barrage_common::wire::endpoint_to_proto;
    use barrage_proto::v1;

    /// Worker `w`'s report number `seq` for second `at` of the run: `stats` as the one
    /// endpoint `POST name`.
    pub(crate) fn one_second(
        epoch: u64,
        seq: u64,
        at: i64,
        name: &str,
        kind: TaskKindTag,
        stats: &EndpointStats,
    ) -> v1::Report {
        let ep = Endpoint {
            name: name.into(),
            method: "POST".into(),
            kind,
        };
        v1::Report {
            worker_id: "w".into(),
            epoch,
            seq,
            interval_start_us: at * 1_000_000,
            interval_end_us: (at + 1) * 1_000_000,
            endpoints: vec![endpoint_to_proto(&ep, stats)],
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(seq: u64, start_s: i64, requests: u64) -> v1::Report {
        let mut s = EndpointStats {
            requests,
            ..Default::default()
        };
        s.record(Metric::ResponseTime, 1000);
        let mut r = testing::one_second(7, seq, start_s, "/x", TaskKindTag::Http, &s);
        r.worker_id = "w1".into();
        r
    }

    #[test]
    fn each_seq_counts_once_in_any_order() {
        let mut a = Aggregator::new(7);
        assert_eq!(a.merge(&report(1, 0, 5)), Merge::Merged { acked: 1 });
        assert_eq!(a.merge(&report(3, 2, 5)), Merge::Merged { acked: 1 });
        assert_eq!(a.merge(&report(3, 2, 5)), Merge::Duplicate { acked: 1 });
        assert_eq!(a.merge(&report(2, 1, 5)), Merge::Merged { acked: 3 });
        assert_eq!(a.merge(&report(1, 0, 5)), Merge::Duplicate { acked: 3 });
        assert_eq!(a.aggregated().requests, 15);
        assert_eq!(a.timeline.len(), 3);
        assert_eq!(a.timeline[&2].requests, 5, "placed by interval, not arrival");
    }

    #[test]
    fn the_worst_timer_lag_and_its_second_are_kept() {
        let mut a = Aggregator::new(7);
        for (seq, lag) in [(1, 300), (2, 7_000), (3, 900)] {
            let mut r = report(seq, seq as i64 - 1, 1);
            r.sched_lag_p99_us = lag;
            a.merge(&r);
        }
        let p = &a.workers["w1"];
        assert_eq!(
            (p.sched_lag_max_us, p.sched_lag_max_at_s, p.sched_lag_p99_us),
            (7_000, 1, 900)
        );
    }

    #[test]
    fn old_slots_shrink_to_summaries_and_keep_their_figures() {
        let mut a = Aggregator::new(7);
        for seq in 1..=40u64 {
            a.merge(&report(seq, seq as i64 - 1, 2));
        }
        let old = &a.timeline[&0];
        assert!(old.summary.is_some() && old.ttfe.is_none() && old.response_time.is_none());
        assert_eq!((old.requests, old.summary().rt_p50_us), (2, 1000));
        assert!(
            a.timeline[&39].summary.is_none(),
            "the open window keeps its histograms"
        );
        // A late report for a compacted second still counts (not its percentiles).
        a.merge(&report(41, 0, 3));
        assert_eq!(a.timeline[&0].requests, 5);
        assert_eq!(a.aggregated().requests, 83);
    }

    #[test]
    fn endpoint_seconds_are_kept_only_when_asked_and_only_while_open() {
        let mut off = Aggregator::new(7);
        off.merge(&report(1, 0, 2));
        assert!(off.endpoint_window(0, 1).is_empty());

        let mut a = Aggregator::new(7);
        a.keep_endpoint_seconds();
        for seq in 1..=20u64 {
            a.merge(&report(seq, seq as i64 - 1, seq));
        }
        let key = EndpointKey {
            name: "/x".into(),
            method: "POST".into(),
        };
        // Seconds 15..20 hold seqs 16..=20: their requests, and their response times.
        let open = a.endpoint_window(15, 20);
        let x = &open[&key];
        assert_eq!((x.requests, x.failures), (16 + 17 + 18 + 19 + 20, 0));
        assert_eq!(x.response_time.to_histogram().len(), 5);
        assert_eq!(x.requests, a.window(15, 20).requests);
        // Compacted seconds no longer keep them.
        assert!(a.endpoint_window(0, 4).is_empty());
    }

    #[test]
    fn bad_reports_change_nothing() {
        let mut a = Aggregator::new(7);
        let mut wrong_epoch = report(1, 0, 5);
        wrong_epoch.epoch = 8;
        assert!(matches!(a.merge(&wrong_epoch), Merge::Rejected(_)));
        let mut bad = report(1, 0, 5);
        bad.endpoints[0].failures = 9;
        assert!(matches!(a.merge(&bad), Merge::Rejected(_)));
        assert!(matches!(a.merge(&report(50_000, 0, 5)), Merge::Rejected(_)));
        assert_eq!(a.aggregated().requests, 0);
        assert_eq!(a.acked("w1"), 0);
        assert_eq!(a.rejected, 3);
    }
}
