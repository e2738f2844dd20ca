//! The final report: one model ([`FinalReport`]) computed from the merged cluster
//! data, rendered to the console ([`console`]) and to JSON ([`json`]).
//!
//! Every figure comes from merged HDR histograms or exact counters; percentiles are
//! exact to the histograms' 3 significant digits, never rounded to two like Locust.

pub mod console;
pub mod csv;
pub mod html;
pub mod json;

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use barrage_common::metrics::{EndpointStats, FailureKind, Metric};
use barrage_common::plan::TaskKindTag;
use barrage_common::saved::SavedStats;

use crate::aggregate::Aggregator;
use crate::cluster::Cluster;
use crate::controller::RunSummary;

pub const SCHEMA_ID: &str = "barrage.report.v1";

/// Timer lateness (p99 per interval) above which the report warns that latencies
/// include the generator's own delay.
const LAG_WARNING_US: u64 = 5_000;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FinalReport {
    pub schema: String,
    pub scenario: String,
    pub host: Option<String>,
    pub users: u32,
    pub spawn_rate: f64,
    /// When the run started, Unix seconds.
    pub started_unix: f64,
    pub duration_s: f64,
    /// Seconds into the run the statistics were last reset from the web UI (0 without
    /// a reset): the tables and their rates cover `duration_s - stats_since_s`.
    pub stats_since_s: f64,
    pub stop_reason: String,
    pub endpoints: Vec<EndpointRow>,
    pub aggregated: EndpointRow,
    pub event_throughput: MaxAvgMin,
    pub ttfe_ms: Option<Percentiles>,
    pub connections: Connections,
    pub qps: Qps,
    pub failures: Vec<FailureRow>,
    pub outcomes: Vec<FailureRow>,
    /// Per target address (replica), when the host resolved to several.
    pub replicas: Vec<ReplicaRow>,
    pub workers: Vec<WorkerRow>,
    pub events: Vec<String>,
    pub warnings: Vec<String>,
    /// Whether these figures are everything the workers recorded (reports written
    /// before this existed read as complete).
    #[serde(default)]
    pub completeness: Completeness,
    pub timeline: Vec<TimelinePoint>,
    /// Each threshold with its observed value and verdict (empty without thresholds).
    pub thresholds: Vec<crate::thresholds::ThresholdRow>,
    /// `barrage hunt`: each step and the verdict (null for other runs).
    pub hunt: Option<crate::hunt::HuntReport>,
    /// The open model (null for users): arrivals due by the schedule over the run,
    /// and those dropped at the in-flight cap.
    pub arrivals: Option<ArrivalFigures>,
    /// Soak: the run's early third against its late third (null below 30 s).
    pub drift: Option<Drift>,
    /// The whole run's latency distributions (all rows merged), in log buckets.
    pub distributions: Option<Distributions>,
    /// The merged data the tables come from: each row's counters and HDR histograms,
    /// so a saved result can be re-rendered or merged again (`barrage report`).
    pub merged: Vec<MergedRow>,
}

/// Whether a report's figures are everything the workers recorded.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Completeness {
    pub verdict: Verdict,
    /// Why data is missing, one line each (empty when complete).
    pub reasons: Vec<String>,
    /// Fields bounded or refused without losing a count (texts past their bounds,
    /// keys past a cap, non-finite gauges, intervals off the run clock).
    pub clipped: u64,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    #[default]
    Complete,
    /// Some data was lost: the run's exit code is 3.
    Incomplete,
}

impl Completeness {
    pub fn new(reasons: Vec<String>, clipped: u64) -> Self {
        Completeness {
            verdict: if reasons.is_empty() {
                Verdict::Complete
            } else {
                Verdict::Incomplete
            },
            reasons,
            clipped,
        }
    }

    pub fn is_complete(&self) -> bool {
        self.verdict == Verdict::Complete
    }
}

/// One stats row's merged data, as saved.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MergedRow {
    pub kind: String,
    pub method: String,
    pub name: String,
    pub events_per_request: u32,
    pub stats: SavedStats,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Distributions {
    pub response_time: Vec<Bucket>,
    pub ttfe: Vec<Bucket>,
}

/// Values up to `le_ms` (and above the previous bucket's) seen `count` times.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Bucket {
    pub le_ms: f64,
    pub count: u64,
}

/// Buckets grow by 10^(1/5): five per decade, from 0.1 ms.
fn buckets(h: Option<&Histogram<u64>>) -> Vec<Bucket> {
    let Some(h) = h.filter(|h| !h.is_empty()) else {
        return Vec::new();
    };
    h.iter_log(100, 10f64.powf(0.2))
        .map(|v| Bucket {
            le_ms: v.value_iterated_to() as f64 / 1000.0,
            count: v.count_since_last_iteration(),
        })
        .skip_while(|b| b.count == 0)
        .collect()
}

/// The endpoint rows and the Aggregated row of saved merged data, computed the way a
/// run computes them. Also gives each row's stats, for the CSV files.
pub fn rows_from_merged(merged: &[MergedRow], duration_s: f64) -> barrage_common::Result<Recomputed> {
    let secs = duration_s.max(1e-3);
    let mut all = EndpointStats::default();
    let mut rows = Vec::with_capacity(merged.len());
    let mut stats = Vec::with_capacity(merged.len());
    for m in merged {
        let s = EndpointStats::try_from(&m.stats)?;
        all.merge(&s);
        rows.push(row(&m.kind, &m.method, &m.name, &s, secs, m.events_per_request));
        stats.push((m.method.clone(), m.name.clone(), s));
    }
    let mut aggregated = row("http", "", "Aggregated", &all, secs, 1);
    aggregated.business_events = rows.iter().map(|e| e.business_events).sum();
    aggregated.business_events_per_s = aggregated.business_events as f64 / secs;
    Ok(Recomputed {
        endpoints: rows,
        aggregated,
        stats,
    })
}

/// What [`rows_from_merged`] gives.
pub struct Recomputed {
    pub endpoints: Vec<EndpointRow>,
    pub aggregated: EndpointRow,
    /// (method, name, stats) of each row.
    pub stats: Vec<(String, String, EndpointStats)>,
}

/// How the figures moved over a long run: the first third of it (after its first 10 %,
/// the ramp) against the last third.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Drift {
    pub early_s: (i64, i64),
    pub late_s: (i64, i64),
    pub rows: Vec<DriftRow>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DriftRow {
    pub figure: String,
    pub early: f64,
    pub late: f64,
    /// (late - early) / early, in percent; null when early is 0.
    pub change_pct: Option<f64>,
}

/// Shortest run that gets a drift table.
const DRIFT_MIN_S: f64 = 30.0;

fn drift(agg: &Aggregator, duration: Duration) -> Option<Drift> {
    let secs = duration.as_secs_f64();
    if secs < DRIFT_MIN_S {
        return None;
    }
    let span = |from: f64, to: f64| ((secs * from).floor() as i64, (secs * to).floor() as i64);
    let (early, late) = (span(0.1, 0.4), span(0.6, 0.9));
    let figures = |(from, to): (i64, i64)| {
        let (mut requests, mut failures, mut events, mut users) = (0u64, 0u64, 0u64, 0.0);
        let (mut rt_sum, mut rt_n, mut rt95_sum, mut rt95_n, mut ttfe_sum, mut ttfe_n) =
            (0.0, 0u64, 0.0, 0u64, 0.0, 0u64);
        for (_, slot) in agg.timeline.range(from..to) {
            let s = slot.summary();
            requests += slot.requests;
            failures += slot.failures;
            events += slot.events;
            users += slot.users;
            if slot.requests > 0 {
                rt_sum += s.rt_mean_us * slot.requests as f64;
                rt_n += slot.requests;
                rt95_sum += s.rt_p95_us as f64;
                rt95_n += 1;
            }
            ttfe_sum += s.ttfe_mean_us * s.ttfe_count as f64;
            ttfe_n += s.ttfe_count;
        }
        let n = (to - from).max(1) as f64;
        let per = |sum: f64, count: u64| if count == 0 { 0.0 } else { sum / count as f64 };
        [
            ("users (avg)", users / n),
            ("req/s", requests as f64 / n),
            ("events/s", events as f64 / n),
            ("error rate %", per(failures as f64 * 100.0, requests)),
            ("response time mean ms", per(rt_sum, rt_n) / 1000.0),
            ("response time p95 ms (mean of seconds)", per(rt95_sum, rt95_n) / 1000.0),
            ("TTFE mean ms", per(ttfe_sum, ttfe_n) / 1000.0),
        ]
    };
    let rows = figures(early)
        .into_iter()
        .zip(figures(late))
        .map(|((figure, e), (_, l))| DriftRow {
            figure: figure.to_string(),
            early: e,
            late: l,
            change_pct: (e != 0.0).then(|| (l - e) / e * 100.0),
        })
        .collect();
    Some(Drift {
        early_s: early,
        late_s: late,
        rows,
    })
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ArrivalFigures {
    /// Arrivals the schedule put within the run (ceil of the rate's integral).
    pub due: u64,
    /// Arrivals not started because the in-flight cap was reached.
    pub dropped: u64,
    /// Cluster-wide cap on iterations in flight.
    pub max_in_flight: u32,
    /// The start rate, and each stage as (seconds, rate).
    pub start_rate: f64,
    pub stages: Vec<(f64, f64)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EndpointRow {
    pub kind: String,
    pub method: String,
    pub name: String,
    pub requests: u64,
    pub failures: u64,
    pub failure_ratio: f64,
    pub rps: f64,
    pub failures_per_s: f64,
    pub response_time_ms: Option<Percentiles>,
    pub ttfe_ms: Option<Percentiles>,
    pub ttft_ms: Option<Percentiles>,
    pub time_to_headers_ms: Option<Percentiles>,
    pub stream_duration_ms: Option<Percentiles>,
    pub event_gap_ms: Option<Percentiles>,
    pub chunk_gap_ms: Option<Percentiles>,
    pub server_elapsed_ms: Option<Percentiles>,
    /// HTTP 429 answers: the app's concurrency limit and the plan's quota.
    pub too_many_requests: u64,
    pub rate_limit_errors: u64,
    pub pings: u64,
    pub tokens_per_s: f64,
    pub streams_started: u64,
    pub streams_completed: u64,
    pub events: u64,
    pub events_by_type: std::collections::BTreeMap<String, u64>,
    pub bytes_received: u64,
    pub connections_opened: u64,
    /// Requests sent again on a fresh connection (not requests, not failures);
    /// absent in reports saved before they were counted.
    #[serde(default)]
    pub retries: u64,
    pub total_tokens: u64,
    /// Business events one successful request carries (the task's `events_per_request`).
    pub events_per_request: u32,
    /// Successful requests x `events_per_request`.
    pub business_events: u64,
    pub business_events_per_s: f64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub avg: f64,
    pub min: f64,
    pub max: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub p999: f64,
}

impl Percentiles {
    /// From a histogram in µs to milliseconds.
    pub fn from_us(h: &Histogram<u64>) -> Option<Self> {
        if h.is_empty() {
            return None;
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Some(Percentiles {
            count: h.len(),
            avg: h.mean() / 1000.0,
            min: ms(h.min()),
            max: ms(h.max()),
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p95: ms(h.value_at_quantile(0.95)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
        })
    }
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct MaxAvgMin {
    pub max: f64,
    pub avg: f64,
    pub min: f64,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Connections {
    pub max_concurrent: i64,
    pub avg_active: f64,
    pub total_streams: u64,
    pub connections_opened: u64,
    /// See [`EndpointRow::retries`].
    #[serde(default)]
    pub retries: u64,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Qps {
    pub max: f64,
    pub avg: f64,
    pub avg_duration_ms: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailureRow {
    pub method: String,
    pub name: String,
    pub kind: String,
    pub detail: String,
    pub count: u64,
    pub sample: String,
    /// When the pair was first and last recorded, unix ms (as Locust's `_failures.csv`
    /// First Seen / Last Seen); null when not known (workers or files from before).
    #[serde(default)]
    pub first_seen_unix_ms: Option<u64>,
    #[serde(default)]
    pub last_seen_unix_ms: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplicaRow {
    pub peer: String,
    pub method: String,
    pub name: String,
    /// Peak users pinned to this address (sum of each worker's peak; the same on each
    /// of the address's rows).
    #[serde(default)]
    pub users: u64,
    pub requests: u64,
    pub failures: u64,
    pub rps: f64,
    /// Every request, failures included.
    pub response_time_ms: Option<Percentiles>,
    /// Successful requests only: a dead replica fails fast and must not look fast.
    #[serde(default)]
    pub response_time_ok_ms: Option<Percentiles>,
    pub ttfe_ms: Option<Percentiles>,
    /// This address's failures by (kind, detail).
    #[serde(default)]
    pub failure_kinds: Vec<ReplicaFailure>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplicaFailure {
    pub kind: String,
    pub detail: String,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerRow {
    pub id: String,
    pub index: u32,
    pub hostname: String,
    pub cores: u32,
    pub reports: u64,
    pub final_report: bool,
    pub lost: bool,
    /// Process CPU, percent of one core (all load threads: up to 100 x cores).
    pub cpu_max_percent: f64,
    /// The busiest load thread's CPU, percent of one core: the saturation figure
    /// (absent in results saved before it existed).
    #[serde(default)]
    pub thread_cpu_max_percent: f64,
    pub rss_bytes: u64,
    /// Worst p99 lateness of the worker's timers in any interval (generator delay).
    pub sched_lag_max_ms: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TimelinePoint {
    /// Seconds since the run started (start of the 1 s slot).
    pub t: i64,
    pub users: f64,
    pub rps: u64,
    pub failures_per_s: u64,
    pub events_per_s: u64,
    pub streams_per_s: u64,
    pub active_streams: f64,
    pub active_streams_max: i64,
    pub ttfe_p50_ms: f64,
    pub ttfe_p95_ms: f64,
    pub ttfe_p99_ms: f64,
    pub response_time_p50_ms: f64,
    pub response_time_p95_ms: f64,
    pub response_time_p99_ms: f64,
}

/// What the run was asked to do.
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub scenario: String,
    pub host: Option<String>,
    pub users: u32,
    pub spawn_rate: f64,
    /// The open model's schedule and cap (None: closed model, users).
    pub arrival: Option<barrage_common::scenario::Arrival>,
    /// `events_per_request` of each stats row (name, method) that is not 1.
    pub events_per_request: std::collections::BTreeMap<(String, String), u32>,
}

impl RunInfo {
    fn events_per_request_of(&self, k: &crate::aggregate::EndpointKey) -> u32 {
        events_per_request_of(&self.events_per_request, k)
    }
}

/// The `events_per_request` of a stats row in a (name, method) map of those that are
/// not 1.
pub fn events_per_request_of(
    map: &std::collections::BTreeMap<(String, String), u32>,
    k: &crate::aggregate::EndpointKey,
) -> u32 {
    map.get(&(k.name.clone(), k.method.clone())).copied().unwrap_or(1)
}

impl ArrivalFigures {
    /// The figures of `arrival` (its schedule as it ran) over a run of `duration`, with
    /// what the workers reported.
    pub fn new(arrival: &barrage_common::scenario::Arrival, duration: Duration, agg: &Aggregator) -> Self {
        ArrivalFigures {
            due: arrivals_due(&arrival.schedule, duration, agg.last_arrival_due_us)
                .saturating_sub(arrivals_before(&arrival.schedule, agg.stats_since_s)),
            dropped: agg.dropped_iterations,
            max_in_flight: arrival.max_in_flight,
            start_rate: arrival.schedule.start_rate,
            stages: arrival
                .schedule
                .stages
                .iter()
                .map(|s| (s.duration.as_secs_f64(), s.rate))
                .collect(),
        }
    }
}

/// Arrivals the schedule made due in the run: those before the master's stop, and
/// any a worker still started or dropped after it (the Stop takes a moment to reach
/// the workers), so started + dropped never exceed it. Arrival `i` is due when the
/// rate's integral reaches `i`.
fn arrivals_due(schedule: &barrage_common::arrival_schedule::Schedule, duration: Duration, last_due_us: i64) -> u64 {
    let by_stop = schedule.cumulative(duration.as_secs_f64()).ceil().max(0.0) as u64;
    if last_due_us <= 0 {
        return by_stop;
    }
    // Through the last arrival handled: its index, plus one (a hair of slack for the
    // float integral landing just under a whole number).
    let through_last = (schedule.cumulative(last_due_us as f64 / 1e6) + 1e-6).floor().max(0.0) as u64 + 1;
    by_stop.max(through_last)
}

/// Arrivals due before `since_s` (a "reset statistics"): the started and dropped counts
/// start again there, so the due count does too. Arrival `i` is due when the integral
/// reaches `i`, so those before are the integral rounded up.
fn arrivals_before(schedule: &barrage_common::arrival_schedule::Schedule, since_s: f64) -> u64 {
    if since_s <= 0.0 {
        return 0;
    }
    schedule.cumulative(since_s).ceil().max(0.0) as u64
}

/// How much of second `t` of the timeline ([t, t + 1)) lies at or after `since_s`.
fn share_since(t: i64, since_s: f64) -> f64 {
    (t as f64 + 1.0 - since_s).clamp(0.0, 1.0)
}

/// A worker whose busiest load thread passed the saturation line: its users waited for
/// their event loop, so its latency figures include generator delay. Judged per
/// thread, never on the process figure: 16 threads at 6 % each are idle, one at 95 %
/// is not.
pub fn saturation_warning(w: &WorkerRow) -> Option<String> {
    crate::aggregate::cpu_saturated(w.thread_cpu_max_percent).then(|| {
        format!(
            "worker {}: its busiest load thread peaked at {:.0}% CPU (of one core; the process used {:.0}% over {} cores): latency figures include generator delay",
            w.id, w.thread_cpu_max_percent, w.cpu_max_percent, w.cores
        )
    })
}

/// Failures plus declared outcomes of one kind (a 429 may be either).
fn count_kind(s: &EndpointStats, kind: FailureKind) -> u64 {
    s.failure_kinds
        .iter()
        .chain(&s.outcomes)
        .filter(|((k, _), _)| k == kind.as_str())
        .map(|(_, e)| e.count)
        .sum()
}

/// Successful requests x `events_per_request`. Expected non-2xx outcomes (a declared
/// 429) carry no business events.
pub fn business_events(s: &EndpointStats, epr: u32) -> u64 {
    let expected: u64 = s.outcomes.values().map(|e| e.count).sum();
    s.counts
        .requests
        .saturating_sub(s.counts.failures)
        .saturating_sub(expected)
        * u64::from(epr)
}

fn kind_name(kind: TaskKindTag) -> &'static str {
    match kind {
        TaskKindTag::Http => "http",
        TaskKindTag::Sse => "sse",
    }
}

fn row(kind: &str, method: &str, name: &str, s: &EndpointStats, secs: f64, epr: u32) -> EndpointRow {
    let pct = |m: Metric| s.histogram(m).and_then(Percentiles::from_us);
    let business_events = business_events(s, epr);
    EndpointRow {
        kind: kind.to_string(),
        method: method.to_string(),
        name: name.to_string(),
        requests: s.counts.requests,
        failures: s.counts.failures,
        failure_ratio: if s.counts.requests > 0 {
            s.counts.failures as f64 / s.counts.requests as f64
        } else {
            0.0
        },
        rps: s.counts.requests as f64 / secs,
        failures_per_s: s.counts.failures as f64 / secs,
        response_time_ms: pct(Metric::ResponseTime),
        ttfe_ms: pct(Metric::Ttfe),
        ttft_ms: pct(Metric::Ttft),
        time_to_headers_ms: pct(Metric::TimeToHeaders),
        stream_duration_ms: pct(Metric::StreamDuration),
        event_gap_ms: pct(Metric::EventGap),
        chunk_gap_ms: pct(Metric::ChunkGap),
        server_elapsed_ms: pct(Metric::ServerElapsed),
        too_many_requests: count_kind(s, FailureKind::TooManyRequests),
        rate_limit_errors: count_kind(s, FailureKind::RateLimitError),
        pings: s.events_by_type.get("ping").copied().unwrap_or(0),
        tokens_per_s: s.counts.total_tokens as f64 / secs,
        streams_started: s.counts.streams_started,
        streams_completed: s.counts.streams_completed,
        events: s.counts.events,
        events_by_type: s.events_by_type.clone(),
        bytes_received: s.counts.bytes_received,
        connections_opened: s.counts.connections_opened,
        retries: s.counts.retries,
        total_tokens: s.counts.total_tokens,
        events_per_request: epr,
        business_events,
        business_events_per_s: business_events as f64 / secs,
    }
}

impl FinalReport {
    pub fn build(cluster: &Cluster, info: &RunInfo, summary: &RunSummary) -> FinalReport {
        let agg = cluster.aggregator();
        let mut report = Self::from_aggregator(&agg, info, summary.duration).with_merged(&agg, info);
        report.stop_reason = summary.stop_reason.clone();
        let reg = cluster.registry();
        report.workers = reg
            .workers
            .values()
            .map(|w| {
                let p = agg.workers.get(&w.id);
                WorkerRow {
                    id: w.id.clone(),
                    index: w.index,
                    hostname: w.hostname.clone(),
                    cores: w.cores,
                    reports: p.map_or(0, |p| p.reports),
                    final_report: p.is_some_and(|p| p.final_seen),
                    lost: w.lost,
                    cpu_max_percent: p.map_or(0.0, |p| p.cpu_max),
                    thread_cpu_max_percent: p.map_or(0.0, |p| p.thread_cpu_max),
                    rss_bytes: p.map_or(0, |p| p.rss_bytes),
                    sched_lag_max_ms: p.map_or(0.0, |p| p.sched_lag_max_us as f64 / 1000.0),
                }
            })
            .collect();
        report.workers.sort_by_key(|w| w.index);
        report.events = reg
            .events
            .iter()
            .map(|(t, e)| format!("{:>7.1}s {e}", t.as_secs_f64()))
            .collect();
        for w in &report.workers {
            if let Some(p) = agg.workers.get(&w.id).filter(|p| p.sched_lag_max_us > LAG_WARNING_US) {
                report.warnings.push(format!(
                    "worker {}: its timers ran up to {:.1} ms late (p99, around {}s of the run): latency figures include generator delay there",
                    w.id,
                    p.sched_lag_max_us as f64 / 1000.0,
                    p.sched_lag_max_at_s
                ));
            }
            if let Some(warning) = saturation_warning(w) {
                report.warnings.push(warning);
            }
        }
        let written_off = reg.workers.values().filter(|w| w.lost).map(|w| w.id.as_str());
        let mut lost = agg.data_loss(written_off);
        for id in &summary.missing_finals {
            lost.push(format!(
                "worker {id} sent no final report: its last interval is not counted"
            ));
        }
        if report.aggregated.requests == 0 && (info.users > 0 || info.arrival.is_some()) {
            lost.push("no request was reported, although the run was meant to send load".into());
        }
        if agg.clipped > 0 {
            report.warnings.push(format!(
                "{} field(s) from workers were clipped to their bounds or refused (long texts, keys past a cap, bad gauges); every count was kept",
                agg.clipped
            ));
        }
        report.completeness = Completeness::new(lost, agg.clipped);
        report
    }

    /// The figures alone, from merged data (also used by tests and re-rendering).
    /// Adds the merged data (counters and histograms of every row) that saved results
    /// carry.
    pub fn with_merged(mut self, agg: &Aggregator, info: &RunInfo) -> FinalReport {
        self.merged = agg
            .endpoints
            .iter()
            .map(|(k, t)| MergedRow {
                kind: kind_name(t.kind).to_string(),
                method: k.method.clone(),
                name: k.name.clone(),
                events_per_request: info.events_per_request_of(k),
                stats: SavedStats::from(&t.stats()),
            })
            .collect();
        self
    }

    pub fn from_aggregator(agg: &Aggregator, info: &RunInfo, duration: Duration) -> FinalReport {
        // After a reset of the statistics, rates count from the reset.
        let secs = (duration.as_secs_f64() - agg.stats_since_s).max(1e-3);
        let endpoints: Vec<EndpointRow> = agg
            .endpoints
            .iter()
            .map(|(k, t)| {
                let epr = info.events_per_request_of(k);
                row(kind_name(t.kind), &k.method, &k.name, &t.stats(), secs, epr)
            })
            .collect();
        let all = agg.aggregated();
        let sse = agg.sse_aggregated();
        let rows =
            |pick: fn(
                &EndpointStats,
            )
                -> &std::collections::BTreeMap<(String, String), barrage_common::metrics::FailureEntry>| {
                let mut out = Vec::new();
                for (k, t) in &agg.endpoints {
                    for ((kind, detail), e) in pick(&t.totals.counters) {
                        out.push(FailureRow {
                            method: k.method.clone(),
                            name: k.name.clone(),
                            kind: kind.clone(),
                            detail: detail.clone(),
                            count: e.count,
                            sample: e.sample.clone(),
                            first_seen_unix_ms: (e.first_seen_unix_ms != 0).then_some(e.first_seen_unix_ms),
                            last_seen_unix_ms: (e.last_seen_unix_ms != 0).then_some(e.last_seen_unix_ms),
                        });
                    }
                }
                out
            };
        let mut failures = rows(|s| &s.failure_kinds);
        let outcomes = rows(|s| &s.outcomes);
        failures.sort_by_key(|f| std::cmp::Reverse(f.count));

        // Per-second figures over the run's full seconds: from 0 (or the first whole
        // second after a reset of the statistics) to the last full second.
        let full_secs = duration.as_secs() as i64;
        let first_sec = agg.stats_since_s.ceil() as i64;
        let slots: Vec<(i64, &crate::aggregate::Slot)> = agg
            .timeline
            .iter()
            .filter(|(t, _)| **t < full_secs.max(first_sec + 1) && **t >= first_sec)
            .map(|(t, s)| (*t, s))
            .collect();
        let first_active = slots
            .iter()
            .find(|(_, s)| s.requests > 0 || s.events > 0)
            .map(|(t, _)| *t);
        let steady: Vec<&crate::aggregate::Slot> = slots
            .iter()
            .filter(|(t, _)| first_active.is_some_and(|f| *t >= f))
            .map(|(_, s)| *s)
            .collect();
        let max_avg_min = |f: &dyn Fn(&crate::aggregate::Slot) -> f64, total: f64| {
            if steady.is_empty() {
                return MaxAvgMin {
                    max: 0.0,
                    avg: total / secs,
                    min: 0.0,
                };
            }
            // Slots with no report at all are seconds nothing happened: they count as 0.
            let span = (steady.len() as i64).max(1);
            let values: Vec<f64> = steady.iter().map(|s| f(s)).collect();
            let missing = span as usize - values.len();
            MaxAvgMin {
                max: values.iter().cloned().fold(0.0, f64::max),
                avg: total / secs,
                min: if missing > 0 {
                    0.0
                } else {
                    values.iter().cloned().fold(f64::INFINITY, f64::min)
                },
            }
        };
        let event_throughput = max_avg_min(&|s| s.events as f64, all.counts.events as f64);
        let rps = max_avg_min(&|s| s.requests as f64, all.counts.requests as f64);
        let timeline = agg
            .timeline
            .iter()
            .map(|(t, s)| {
                let sum = s.summary();
                TimelinePoint {
                    t: *t,
                    users: s.users,
                    rps: s.requests,
                    failures_per_s: s.failures,
                    events_per_s: s.events,
                    streams_per_s: s.streams_started,
                    active_streams: s.active_streams,
                    active_streams_max: s.active_streams_max,
                    ttfe_p50_ms: sum.ttfe_p50_us as f64 / 1000.0,
                    ttfe_p95_ms: sum.ttfe_p95_us as f64 / 1000.0,
                    ttfe_p99_ms: sum.ttfe_p99_us as f64 / 1000.0,
                    response_time_p50_ms: sum.rt_p50_us as f64 / 1000.0,
                    response_time_p95_ms: sum.rt_p95_us as f64 / 1000.0,
                    response_time_p99_ms: sum.rt_p99_us as f64 / 1000.0,
                }
            })
            .collect();
        // Stream-seconds since the reset of the statistics (all of them without one),
        // over the same span as `secs`.
        let active_integral: f64 = agg
            .timeline
            .iter()
            .map(|(t, s)| s.active_streams * share_since(*t, agg.stats_since_s))
            .sum();
        FinalReport {
            schema: SCHEMA_ID.to_string(),
            scenario: info.scenario.clone(),
            host: info.host.clone(),
            users: info.users,
            spawn_rate: info.spawn_rate,
            started_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64())
                - duration.as_secs_f64(),
            duration_s: duration.as_secs_f64(),
            stats_since_s: agg.stats_since_s,
            stop_reason: String::new(),
            aggregated: {
                let mut r = row("http", "", "Aggregated", &all, secs, 1);
                r.business_events = endpoints.iter().map(|e| e.business_events).sum();
                r.business_events_per_s = r.business_events as f64 / secs;
                r
            },
            endpoints,
            event_throughput,
            ttfe_ms: sse.histogram(Metric::Ttfe).and_then(Percentiles::from_us),
            connections: Connections {
                max_concurrent: agg.timeline.values().map(|s| s.active_streams_max).max().unwrap_or(0),
                avg_active: active_integral / secs,
                total_streams: all.counts.streams_started,
                connections_opened: all.counts.connections_opened,
                retries: all.counts.retries,
            },
            qps: Qps {
                max: rps.max,
                avg: rps.avg,
                avg_duration_ms: all.histogram(Metric::ResponseTime).map_or(0.0, |h| h.mean() / 1000.0),
            },
            failures,
            outcomes,
            replicas: agg
                .peers
                .iter()
                .map(|((k, peer), totals)| (k, peer, totals.stats()))
                .map(|(k, peer, s)| ReplicaRow {
                    peer: peer.clone(),
                    method: k.method.clone(),
                    name: k.name.clone(),
                    users: agg.users_on(peer),
                    requests: s.counts.requests,
                    failures: s.counts.failures,
                    rps: s.counts.requests as f64 / secs,
                    response_time_ms: s.histogram(Metric::ResponseTime).and_then(Percentiles::from_us),
                    response_time_ok_ms: s.histogram(Metric::ResponseTimeOk).and_then(Percentiles::from_us),
                    ttfe_ms: s.histogram(Metric::Ttfe).and_then(Percentiles::from_us),
                    failure_kinds: s
                        .failure_kinds
                        .iter()
                        .map(|((kind, detail), e)| ReplicaFailure {
                            kind: kind.clone(),
                            detail: detail.clone(),
                            count: e.count,
                        })
                        .collect(),
                })
                .collect(),
            workers: Vec::new(),
            events: Vec::new(),
            warnings: Vec::new(),
            completeness: Completeness::default(),
            timeline,
            thresholds: Vec::new(),
            hunt: None,
            drift: drift(agg, duration),
            distributions: Some(Distributions {
                response_time: buckets(all.histogram(Metric::ResponseTime)),
                ttfe: buckets(all.histogram(Metric::Ttfe)),
            }),
            // Filled by `build` and for downloads (`with_merged`): the live view needs none.
            merged: Vec::new(),
            arrivals: info.arrival.as_ref().map(|a| ArrivalFigures::new(a, duration, agg)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use barrage_proto::v1;

    /// One second of a worker: `requests` answered in `rt_ms` each.
    fn second(at: i64, requests: u64, rt_ms: u64) -> v1::Report {
        let mut s = EndpointStats {
            counts: barrage_common::metrics::Counts {
                requests,
                ..Default::default()
            },
            ..Default::default()
        };
        for _ in 0..requests {
            s.record(Metric::ResponseTime, rt_ms * 1000);
        }
        crate::aggregate::testing::one_second(1, at as u64 + 1, at, "/x", TaskKindTag::Http, &s)
    }

    #[test]
    fn arrivals_due_cover_those_fired_after_the_stop() {
        let ten = barrage_common::arrival_schedule::Schedule::constant(10.0);
        let two_s = Duration::from_secs(2);
        // Arrivals 0..=19 are due before 2 s.
        assert_eq!(arrivals_due(&ten, two_s, 0), 20);
        assert_eq!(arrivals_due(&ten, two_s, 1_500_000), 20);
        // Arrival 23 (due at 2.3 s) was still fired: 0..=23 are due.
        assert_eq!(arrivals_due(&ten, two_s, 2_300_000), 24);
    }

    /// 20 s: 10 req/s with 6 streams open, then 4 req/s with 2 open; the statistics
    /// reset at 10 s, and second 9's report arrives just after the reset. Every rate,
    /// average and due count covers the 10 s since the reset.
    #[test]
    fn figures_after_a_reset_divide_by_the_time_since_it() {
        let tick = |at: i64, requests: u64, open: f64| {
            let mut r = second(at, requests, 5);
            r.active_streams = Some(v1::Gauge {
                last: open as i64,
                max: open as i64,
                time_avg: open,
            });
            r.dropped_iterations = 1;
            r
        };
        let mut agg = Aggregator::new(1);
        for at in 0..9 {
            agg.merge(&tick(at, 10, 6.0));
        }
        agg.reset_stats(10.0);
        for at in 9..20 {
            let (n, open) = if at < 10 { (10, 6.0) } else { (4, 2.0) };
            agg.merge(&tick(at, n, open));
        }
        let info = RunInfo {
            scenario: "t".into(),
            host: None,
            users: 0,
            spawn_rate: 0.0,
            arrival: Some(barrage_common::scenario::Arrival {
                schedule: barrage_common::arrival_schedule::Schedule::constant(5.0),
                max_in_flight: 10,
            }),
            events_per_request: Default::default(),
        };
        let r = FinalReport::from_aggregator(&agg, &info, Duration::from_secs(20));
        assert_eq!(r.aggregated.requests, 40, "only the seconds since the reset");
        assert!((r.aggregated.rps - 4.0).abs() < 1e-9, "req/s {}", r.aggregated.rps);
        assert!(
            (r.qps.avg - 4.0).abs() < 1e-9 && (r.qps.max - 4.0).abs() < 1e-9,
            "{:?}",
            r.qps
        );
        assert!(
            (r.connections.avg_active - 2.0).abs() < 1e-9,
            "avg active {}",
            r.connections.avg_active
        );
        let arrivals = r.arrivals.expect("open model");
        // 5/s: 100 due in the run, 50 of them before the reset.
        assert_eq!((arrivals.due, arrivals.dropped), (50, 10));

        // A reset within a second: that second counts for its share after the reset.
        let mut agg = Aggregator::new(1);
        for at in 0..4 {
            agg.merge(&tick(at, 1, if at < 2 { 10.0 } else { 4.0 }));
            if at == 1 {
                agg.reset_stats(1.5);
            }
        }
        let r = FinalReport::from_aggregator(&agg, &info, Duration::from_secs(4));
        // (0.5 x 10 + 4 + 4) stream-seconds over 2.5 s.
        assert!(
            (r.connections.avg_active - 13.0 / 2.5).abs() < 1e-9,
            "{}",
            r.connections.avg_active
        );
    }

    #[test]
    fn drift_compares_the_early_third_with_the_late_one() {
        // 60 s: 10 req/s at 10 ms for the first half, 8 req/s at 20 ms after.
        let mut agg = Aggregator::new(1);
        for at in 0..60 {
            let (n, rt) = if at < 30 { (10, 10) } else { (8, 20) };
            agg.merge(&second(at, n, rt));
        }
        let d = drift(&agg, Duration::from_secs(60)).unwrap();
        assert_eq!((d.early_s, d.late_s), ((6, 24), (36, 54)));
        let row = |f: &str| d.rows.iter().find(|r| r.figure == f).unwrap().clone();
        let rps = row("req/s");
        assert_eq!((rps.early, rps.late), (10.0, 8.0));
        assert!((rps.change_pct.unwrap() + 20.0).abs() < 1e-9);
        let rt = row("response time mean ms");
        assert!(
            (rt.early - 10.0).abs() < 0.05 && (rt.late - 20.0).abs() < 0.05,
            "{rt:?}"
        );
        assert!((rt.change_pct.unwrap() - 100.0).abs() < 1.0);
        // No TTFE in this run: no change to speak of.
        assert_eq!(row("TTFE mean ms").change_pct, None);
        // Short runs have none.
        assert!(drift(&agg, Duration::from_secs(20)).is_none());
    }
}
