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
use barrage_common::plan::{Endpoint, TaskKindTag};
use barrage_common::wire::{DeltaBuckets, endpoint_from_proto_sparse};
use barrage_proto::v1;

/// Reports further ahead than this many seqs of the last merged one are refused.
const MAX_SEQ_AHEAD: u64 = 10_000;
/// Distinct (endpoint, peer address) rows kept; past it a peer counts as `(other)`.
pub const MAX_PEER_ROWS: usize = 1024;
/// Longest peer address kept (`[v6]:port` fits easily).
const MAX_PEER: usize = 64;
/// How far past the run clock a report's interval may end (clock skew between
/// machines is far smaller; a report from further ahead is not placed in the timeline).
const CLOCK_SLACK_US: i64 = 60_000_000;
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
    /// Highest saturation figure of any worker in the second: its busiest load
    /// thread's CPU percent ([`saturation_cpu`]).
    pub worker_cpu_max: f64,
    /// Worst worker timer lag (p99 of a report) in the second, µs.
    pub sched_lag_max_us: u64,
    /// HTTP 429 answers in the second, failures and declared outcomes alike, and the app
    /// concurrency limit in any status (`EndpointStats::status_429`).
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

/// Above this a load thread (one event loop) is saturated: its users wait for it.
pub const CPU_SATURATED_PERCENT: f64 = 90.0;

/// The figure saturation is judged on: the busiest load thread's CPU, percent of one
/// core. Each load thread is one single-threaded runtime, so one thread at 95 % delays
/// its users even when 15 other cores idle, and 16 threads at 6 % each (96 % of one
/// core for the process) are far from it. A worker of an older version
/// (`load_threads` 0) sent only the process figure, which stands in.
pub fn saturation_cpu(busiest_thread_percent: f64, load_threads: u32, process_percent: f64) -> f64 {
    let v = if load_threads > 0 {
        busiest_thread_percent
    } else {
        process_percent
    };
    if v.is_finite() { v.max(0.0) } else { 0.0 }
}

/// Whether a saturation figure ([`saturation_cpu`]) means the generator was saturated.
pub fn cpu_saturated(thread_percent: f64) -> bool {
    thread_percent > CPU_SATURATED_PERCENT
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
    /// Declared lost and sent Fence: its reports still count until its closing
    /// (final) one, none after.
    pub fenced: bool,
    /// It was given load or reported some: if its data stops short, data is lost.
    pub had_load: bool,
    pub last_interval_end_us: i64,
    /// Process CPU, percent of one core (all threads: may exceed 100).
    pub cpu_percent: f64,
    pub cpu_max: f64,
    /// The saturation figure ([`saturation_cpu`]), latest and highest.
    pub thread_cpu_percent: f64,
    pub thread_cpu_max: f64,
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
    /// Not counted, with the reason (wrong epoch, far-ahead seq, a fenced worker's
    /// report after its closing one): lost data, counted in
    /// [`Aggregator::lost_reports`]. Still acknowledged up to `acked` (which counts
    /// this seq as received when it could), so a worker's outbox never stalls on it.
    Rejected { acked: u64, why: String },
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
    /// Whole reports that could not be used (see [`Merge::Rejected`]): lost data.
    pub lost_reports: u64,
    /// Endpoint deltas refused inside usable reports (an endpoint the plan does not
    /// have, impossible counts), and the requests they claimed: lost data.
    pub refused_deltas: u64,
    pub refused_requests: u64,
    /// Fields refused or clipped without losing a count: texts cut to their bounds,
    /// keys folded into `(other)`, non-finite or negative gauges, intervals outside
    /// the run clock (their counts kept in the totals, not placed in the timeline).
    pub clipped: u64,
    /// Data known lost for good (a worker written off before its data arrived), one
    /// line each, for the report's verdict.
    pub lost_data: Vec<String>,
    /// The endpoints of the plan, name -> methods: a delta for any other is refused,
    /// never allocated (empty: not checked). Keyed by name so a lookup borrows the
    /// delta's strings instead of copying them for every delta of every report.
    planned: BTreeMap<String, Vec<String>>,
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

    /// Refuse deltas of endpoints the plan does not have (name and method).
    pub fn plan_endpoints<'a>(&mut self, endpoints: impl IntoIterator<Item = (&'a str, &'a str)>) {
        self.planned.clear();
        for (name, method) in endpoints {
            self.planned
                .entry(name.to_string())
                .or_default()
                .push(method.to_string());
        }
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
            self.lost_reports += 1;
            return Merge::Rejected {
                acked: 0,
                why: format!("report of epoch {} in epoch {}", r.epoch, self.epoch),
            };
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
            self.lost_reports += 1;
            return Merge::Rejected {
                acked: progress.acked,
                why: format!("seq {} is far ahead of {}", r.seq, progress.acked),
            };
        }
        // From here on the seq counts as received, whatever its content.
        progress.above.insert(r.seq);
        while progress.above.remove(&(progress.acked + 1)) {
            progress.acked += 1;
        }
        if progress.fenced && progress.final_seen {
            self.lost_reports += 1;
            return Merge::Rejected {
                acked: progress.acked,
                why: "a report after the closing report of a fenced session".into(),
            };
        }
        // Field by field: what cannot be used is refused and counted, the rest kept.
        let mut decoded = Vec::with_capacity(r.endpoints.len());
        for d in &r.endpoints {
            let planned = self.planned.is_empty()
                || self
                    .planned
                    .get(d.name.as_str())
                    .is_some_and(|methods| methods.contains(&d.method));
            if !planned {
                self.refused_deltas += 1;
                self.refused_requests = self
                    .refused_requests
                    .saturating_add(d.requests.min(barrage_common::wire::MAX_COUNT));
                continue;
            }
            match endpoint_from_proto_sparse(d, &mut self.clipped) {
                Ok((endpoint, stats, buckets)) => decoded.push((endpoint, stats, buckets, d.peer.as_str())),
                Err(_) => {
                    self.refused_deltas += 1;
                    self.refused_requests = self
                        .refused_requests
                        .saturating_add(d.requests.min(barrage_common::wire::MAX_COUNT));
                }
            }
        }
        let mut clipped = 0;
        let mut gauge = |g: &Option<v1::Gauge>| {
            let mut g = g.unwrap_or_default();
            if g.last < 0 || g.max < 0 || !g.time_avg.is_finite() || g.time_avg < 0.0 {
                clipped += 1;
                g = v1::Gauge::default();
            }
            g
        };
        let (users, streams) = (gauge(&r.users), gauge(&r.active_streams));
        let cpu_percent = if r.cpu_percent.is_finite() && r.cpu_percent >= 0.0 {
            r.cpu_percent
        } else {
            clipped += 1;
            0.0
        };
        let clock_us = self
            .run_start
            .map_or(0, |s| i64::try_from(s.elapsed().as_micros()).unwrap_or(i64::MAX));
        let placed = r.interval_start_us >= 0
            && r.interval_end_us >= r.interval_start_us
            && r.interval_end_us <= clock_us.saturating_add(CLOCK_SLACK_US);
        if !placed {
            clipped += 1;
        }
        self.clipped += clipped;

        progress.reports += 1;
        progress.had_load |= !r.endpoints.is_empty();
        progress.final_seen |= r.r#final;
        if placed {
            progress.last_interval_end_us = progress.last_interval_end_us.max(r.interval_end_us);
        }
        progress.cpu_percent = cpu_percent;
        progress.cpu_max = progress.cpu_max.max(cpu_percent);
        let thread_cpu = saturation_cpu(r.busiest_thread_cpu_percent, r.load_threads, cpu_percent);
        progress.thread_cpu_percent = thread_cpu;
        progress.thread_cpu_max = progress.thread_cpu_max.max(thread_cpu);
        progress.rss_bytes = r.rss_bytes;
        progress.sched_lag_p99_us = r.sched_lag_p99_us;
        if r.sched_lag_p99_us > progress.sched_lag_max_us && placed {
            progress.sched_lag_max_us = r.sched_lag_p99_us;
            progress.sched_lag_max_at_s = r.interval_start_us / 1_000_000;
        }
        let acked = progress.acked;
        // A report of an interval that ended before the last "reset statistics" (it was
        // on its way) belongs to the timeline, not to the totals that restarted there.
        let before_reset = placed && self.stats_since_s > 0.0 && r.interval_end_us as f64 <= self.stats_since_s * 1e6;
        if !before_reset {
            self.dropped_iterations += r.dropped_iterations.min(barrage_common::wire::MAX_COUNT);
        }
        // Users per replica: what does not fit a sane address or gauge is skipped.
        for u in r.peer_users.iter().take(MAX_PEER_USERS) {
            if u.peer.is_empty() || u.peer.len() > 256 || u.max < 0 {
                self.clipped += 1;
                continue;
            }
            if !self.peer_users.contains_key(&u.peer) && self.peer_users.len() >= MAX_PEER_USERS {
                self.clipped += 1;
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
        if !placed {
            // Counts kept, time unknown: totals only.
            for (endpoint, stats, buckets, peer) in decoded {
                self.add_totals(endpoint, &stats, &buckets, peer);
            }
            return Merge::Merged { acked };
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
        slot.worker_cpu_max = slot.worker_cpu_max.max(thread_cpu);
        slot.sched_lag_max_us = slot.sched_lag_max_us.max(r.sched_lag_p99_us);
        slot.dropped_iterations += r.dropped_iterations.min(barrage_common::wire::MAX_COUNT);
        // An arrival handled within the interval was due by its end.
        let last_due = r.last_arrival_due_us.min(r.interval_end_us);
        self.last_arrival_due_us = self.last_arrival_due_us.max(last_due);
        for (endpoint, stats, buckets, peer) in decoded {
            slot.requests += stats.counts.requests;
            slot.failures += stats.counts.failures;
            slot.events += stats.counts.events;
            slot.streams_started += stats.counts.streams_started;
            slot.connections_opened += stats.counts.connections_opened;
            slot.bytes += stats.counts.bytes_received;
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
                name: endpoint.name.clone(),
                method: endpoint.method.clone(),
            };
            if endpoint_seconds && slot.summary.is_none() {
                let e = slot.endpoints.entry(key.clone()).or_default();
                e.requests += stats.counts.requests;
                e.failures += stats.counts.failures;
                if let Some(b) = &buckets[Metric::ResponseTime as usize] {
                    e.response_time.add(b);
                }
            }
            if before_reset {
                continue;
            }
            totals_into(
                &mut self.endpoints,
                &mut self.peers,
                &mut self.clipped,
                (key, endpoint.kind),
                &stats,
                &buckets,
                peer,
            );
        }
        self.compact(second);
        Merge::Merged { acked }
    }

    /// Adds one decoded delta to the totals (and its peer's row) only.
    fn add_totals(&mut self, endpoint: Endpoint, stats: &EndpointStats, buckets: &DeltaBuckets, peer: &str) {
        let key = EndpointKey {
            name: endpoint.name,
            method: endpoint.method,
        };
        totals_into(
            &mut self.endpoints,
            &mut self.peers,
            &mut self.clipped,
            (key, endpoint.kind),
            stats,
            buckets,
            peer,
        );
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
    /// tables and rates count from `at_s` (reports of intervals that ended by then,
    /// still arriving, go to the timeline only); the per-second timeline and what
    /// each worker has delivered (the deduplication) stay.
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

/// Adds a delta to its endpoint's totals and, when it names a peer, to that peer's row
/// (bounded: a peer past [`MAX_PEER_ROWS`] rows or [`MAX_PEER`] bytes counts as
/// `(other)`).
fn totals_into(
    endpoints: &mut BTreeMap<EndpointKey, EndpointTotals>,
    peers: &mut BTreeMap<(EndpointKey, String), Totals>,
    clipped: &mut u64,
    (key, kind): (EndpointKey, TaskKindTag),
    stats: &EndpointStats,
    buckets: &DeltaBuckets,
    peer: &str,
) {
    if !peer.is_empty() {
        let mut row = (key.clone(), peer.to_string());
        if peer.len() > MAX_PEER || (!peers.contains_key(&row) && peers.len() >= MAX_PEER_ROWS) {
            *clipped += 1;
            row.1 = barrage_common::bounds::OTHER.to_string();
        }
        peers.entry(row).or_default().merge(stats, buckets);
    }
    endpoints
        .entry(key)
        .or_insert_with(|| EndpointTotals {
            kind,
            totals: Totals::default(),
        })
        .totals
        .merge(stats, buckets);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(seq: u64, start_s: i64, requests: u64) -> v1::Report {
        let mut s = EndpointStats {
            counts: barrage_common::metrics::Counts {
                requests,
                ..Default::default()
            },
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
        assert_eq!(a.aggregated().counts.requests, 15);
        assert_eq!(a.timeline.len(), 3);
        assert_eq!(a.timeline[&2].requests, 5, "placed by interval, not arrival");
    }

    /// A 16-thread worker at 6 % a thread (96 % of one core for the process) is not
    /// saturated; one whose busiest thread ran at 95 % is, whatever its other threads
    /// did. Live figures, the report's warning and the hunt's window all read this.
    #[test]
    fn saturation_is_judged_on_the_busiest_load_thread() {
        let mut a = Aggregator::new(7);
        let mut r = report(1, 0, 1);
        (r.cpu_percent, r.busiest_thread_cpu_percent, r.load_threads) = (96.0, 6.5, 16);
        a.merge(&r);
        let p = &a.workers["w1"];
        assert_eq!((p.cpu_max, p.thread_cpu_max), (96.0, 6.5));
        assert!(!cpu_saturated(p.thread_cpu_max));
        assert!(!cpu_saturated(a.window(0, 1).worker_cpu_max));
        let row = |p: &WorkerProgress| crate::report::WorkerRow {
            id: "w1".into(),
            index: 0,
            hostname: "h".into(),
            cores: 16,
            reports: p.reports,
            final_report: false,
            lost: false,
            cpu_max_percent: p.cpu_max,
            thread_cpu_max_percent: p.thread_cpu_max,
            rss_bytes: 0,
            sched_lag_max_ms: 0.0,
        };
        assert_eq!(crate::report::saturation_warning(&row(p)), None);

        // One hot thread among 16: the process says 110 % of a core (7 % of 16).
        let mut r = report(2, 1, 1);
        (r.cpu_percent, r.busiest_thread_cpu_percent, r.load_threads) = (110.0, 95.0, 16);
        a.merge(&r);
        let p = &a.workers["w1"];
        assert!(cpu_saturated(p.thread_cpu_max));
        assert!(cpu_saturated(a.window(1, 2).worker_cpu_max));
        let w = crate::report::saturation_warning(&row(p)).expect("a warning");
        assert!(w.contains("busiest load thread peaked at 95%"), "{w}");

        // An older worker sends only the process figure, which stands in.
        assert_eq!(saturation_cpu(0.0, 0, 93.0), 93.0);
        assert_eq!(saturation_cpu(f64::NAN, 4, 93.0), 0.0);
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
        assert_eq!(a.aggregated().counts.requests, 83);
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
    fn unusable_reports_count_nothing_and_are_lost_data() {
        let mut a = Aggregator::new(7);
        let mut wrong_epoch = report(1, 0, 5);
        wrong_epoch.epoch = 8;
        assert!(matches!(a.merge(&wrong_epoch), Merge::Rejected { .. }));
        assert!(matches!(a.merge(&report(50_000, 0, 5)), Merge::Rejected { .. }));
        assert_eq!(a.aggregated().counts.requests, 0);
        assert_eq!(a.acked("w1"), 0);
        assert_eq!(a.lost_reports, 2);
        assert_eq!(a.data_loss([]).len(), 1, "{:?}", a.data_loss([]));
    }

    #[test]
    fn an_impossible_delta_is_refused_and_acknowledged_the_rest_of_its_report_counts() {
        let mut a = Aggregator::new(7);
        let mut r = report(1, 0, 5);
        let mut bad = r.endpoints[0].clone();
        bad.name = "/y".into();
        bad.failures = 9;
        r.endpoints.push(bad);
        assert_eq!(
            a.merge(&r),
            Merge::Merged { acked: 1 },
            "acknowledged: the outbox drains"
        );
        assert_eq!(a.aggregated().counts.requests, 5, "the good delta counts");
        assert_eq!((a.refused_deltas, a.refused_requests), (1, 5));
        assert!(!a.data_loss([]).is_empty(), "a refused delta is lost data");
    }

    #[test]
    fn endpoints_the_plan_does_not_have_are_refused_never_stored() {
        let mut a = Aggregator::new(7);
        a.plan_endpoints([("/x", "POST")]);
        let mut r = report(1, 0, 5);
        for i in 0..1000 {
            let mut d = r.endpoints[0].clone();
            d.name = format!("/invented/{i}");
            r.endpoints.push(d);
        }
        assert_eq!(a.merge(&r), Merge::Merged { acked: 1 });
        assert_eq!(a.endpoints.len(), 1);
        assert_eq!(a.aggregated().counts.requests, 5);
        assert_eq!((a.refused_deltas, a.refused_requests), (1000, 5000));
    }

    #[test]
    fn odd_fields_are_clipped_and_every_count_kept() {
        let mut a = Aggregator::new(7);
        a.start_clock(std::time::Instant::now());
        let mut r = report(1, 0, 5);
        r.users = Some(v1::Gauge {
            last: -1,
            max: 3,
            time_avg: f64::NAN,
        });
        r.cpu_percent = f64::INFINITY;
        r.endpoints[0].failures = 2;
        r.endpoints[0].failure_kinds = vec![v1::FailureCount {
            kind: "terminal_status".into(),
            detail: "failed".repeat(100),
            count: 2,
            sample: "Traceback (most recent call last):\n".repeat(300),
            ..Default::default()
        }];
        r.endpoints[0].events_by_type = (0..500)
            .map(|i| v1::EventCount {
                event_type: format!("made-up-{i}-{}", "x".repeat(i)),
                count: 1,
            })
            .collect();
        r.endpoints[0].events = 500;
        r.endpoints[0].peer = "9".repeat(300);
        assert_eq!(a.merge(&r), Merge::Merged { acked: 1 });
        let s = a.aggregated();
        assert_eq!((s.counts.requests, s.counts.failures, s.counts.events), (5, 2, 500));
        assert_eq!(s.events_by_type.values().sum::<u64>(), 500);
        assert!(s.events_by_type.len() <= barrage_common::bounds::MAX_EVENT_TYPES + 1);
        assert!(
            s.events_by_type
                .keys()
                .all(|k| k.len() <= barrage_common::bounds::MAX_EVENT_TYPE)
        );
        let (_, f) = s.failure_kinds.iter().next().unwrap();
        assert!(f.sample.len() <= barrage_common::bounds::MAX_SAMPLE && f.sample.contains("clipped"));
        assert_eq!(a.peers.keys().next().unwrap().1, barrage_common::bounds::OTHER);
        assert!(a.clipped >= 5, "{}", a.clipped);
        assert!(a.data_loss([]).is_empty(), "clipping loses no count");
        assert_eq!(a.timeline[&0].users, 0.0);
    }

    #[test]
    fn an_interval_far_beyond_the_run_clock_counts_but_is_not_placed() {
        let mut a = Aggregator::new(7);
        a.start_clock(std::time::Instant::now());
        let far = report(1, 10_000_000, 5);
        assert_eq!(a.merge(&far), Merge::Merged { acked: 1 });
        assert_eq!(a.aggregated().counts.requests, 5);
        assert!(a.timeline.is_empty());
        assert_eq!(a.clipped, 1);
    }

    #[test]
    fn a_fenced_session_counts_until_its_closing_report_and_nothing_after() {
        let mut a = Aggregator::new(7);
        a.merge(&report(1, 0, 5));
        a.fence("w1", true);
        assert_eq!(a.data_loss(["w1"]).len(), 1, "written off before its data arrived");
        let mut closing = report(2, 1, 3);
        closing.r#final = true;
        assert_eq!(a.merge(&closing), Merge::Merged { acked: 2 });
        assert!(a.data_loss(["w1"]).is_empty(), "its closing report arrived");
        assert!(matches!(a.merge(&report(3, 2, 4)), Merge::Rejected { acked: 3, .. }));
        assert_eq!(a.aggregated().counts.requests, 8);
        assert_eq!(a.lost_reports, 1);
    }

    #[test]
    fn a_missing_seq_is_lost_data() {
        let mut a = Aggregator::new(7);
        a.merge(&report(1, 0, 5));
        a.merge(&report(3, 2, 5));
        assert_eq!(
            a.data_loss([]),
            vec!["worker w1: report(s) 2..2 never arrived".to_string()]
        );
        a.merge(&report(2, 1, 5));
        assert!(a.data_loss([]).is_empty());
    }

    #[test]
    fn forgetting_a_worker_that_never_closed_is_lost_data() {
        let mut a = Aggregator::new(7);
        a.merge(&report(1, 0, 5));
        a.forget("w1", "was replaced by a new process");
        assert_eq!(a.data_loss([]).len(), 1);
        assert_eq!(a.aggregated().counts.requests, 5, "what it delivered stays counted");
    }
}
