//! The per-second timeline ([`Slot`] per second of the run clock) and its sums over a
//! span of seconds ([`Window`]): what the live view, the CSV history, trailing-window
//! thresholds and the hunt read. Open slots keep their histograms; older ones shrink
//! to a [`SlotSummary`].

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;

use barrage_common::metrics::Accum;

use super::totals::EndpointKey;

/// How long a worker's report may take to arrive: a second of the timeline is
/// complete this long after it ends. The CSV history, live thresholds and the hunt
/// judge only complete seconds ([`super::Aggregator::complete_end`]).
pub const REPORT_LAG: Duration = Duration::from_secs(2);

/// Slots older than this (seconds behind the newest) are compacted to summaries.
pub(crate) const OPEN_SLOTS: i64 = 15;

/// One second of the cluster timeline.
#[derive(Debug, Clone, Default)]
pub struct Slot {
    /// Requests whose interval started in the second, every row.
    pub requests: u64,
    /// Of which failed.
    pub failures: u64,
    /// Requests that met their task's goodput objectives (`Counts::good`).
    pub good: u64,
    /// Requests of the rows with goodput objectives: what `good` is a share of.
    pub slo_requests: u64,
    /// SSE events received.
    pub events: u64,
    /// Streams opened.
    pub streams_started: u64,
    /// Connections opened.
    pub connections_opened: u64,
    /// Response body bytes received.
    pub bytes: u64,
    /// Sum over workers of their time-averaged users.
    pub users: f64,
    /// Sum over workers of their time-averaged active streams.
    pub active_streams: f64,
    /// Sum over workers of their peak active streams within the second.
    pub active_streams_max: i64,
    /// Highest saturation figure of any worker in the second: its busiest load
    /// thread's CPU percent ([`super::saturation_cpu`]).
    pub worker_cpu_max: f64,
    /// Worst worker timer lag (p99 of a report) in the second, µs.
    pub sched_lag_max_us: u64,
    /// HTTP 429 answers in the second, failures and declared outcomes alike, and the app
    /// concurrency limit in any status (`EndpointStats::status_429`).
    pub status_429: u64,
    /// Open model: arrivals dropped at the in-flight cap in the second.
    pub dropped_iterations: u64,
    /// Reports merged into the second (one per worker, more after a late resend).
    pub reports: u32,
    /// Times to first event of the second, while the slot is open.
    pub(super) ttfe: Option<Accum>,
    /// Response times of the second, while the slot is open.
    pub(super) response_time: Option<Accum>,
    /// Filled when the slot is compacted (or on demand).
    pub summary: Option<SlotSummary>,
    /// Each endpoint's share of the second, kept only when asked for
    /// ([`super::Aggregator::keep_endpoint_seconds`]) and only while the slot is open.
    pub(super) endpoints: BTreeMap<EndpointKey, EndpointSecond>,
}

/// One endpoint's requests, failures and response times within some seconds.
#[derive(Debug, Clone, Default)]
pub struct EndpointSecond {
    /// Requests of the endpoint in those seconds.
    pub requests: u64,
    /// Of which failed.
    pub failures: u64,
    /// Of which met their task's goodput objectives.
    pub good: u64,
    /// Their response times (µs buckets).
    pub response_time: Accum,
}

/// A second's latency figures, µs, kept once its histograms are dropped (0 where the
/// second had none).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct SlotSummary {
    /// Mean time to first event.
    pub ttfe_mean_us: f64,
    /// Median time to first event.
    pub ttfe_p50_us: u64,
    /// 95th percentile of the time to first event.
    pub ttfe_p95_us: u64,
    /// 99th percentile of the time to first event.
    pub ttfe_p99_us: u64,
    /// Streams with a first event in the second.
    pub ttfe_count: u64,
    /// Mean response time.
    pub rt_mean_us: f64,
    /// Median response time.
    pub rt_p50_us: u64,
    /// 95th percentile of the response time.
    pub rt_p95_us: u64,
    /// 99th percentile of the response time.
    pub rt_p99_us: u64,
}

impl Slot {
    /// Its summary: the stored one once compacted, else computed from the histograms.
    pub(super) fn summarize(&self) -> SlotSummary {
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

    /// The second's latency figures (kept after its histograms are dropped).
    pub fn summary(&self) -> SlotSummary {
        self.summarize()
    }
}

/// The timeline's sums over a span of seconds: what trailing-window thresholds see.
#[derive(Debug, Default)]
pub struct Window {
    /// Seconds in the span (rates divide by it).
    pub seconds: i64,
    /// Requests in the span.
    pub requests: u64,
    /// Of which failed.
    pub failures: u64,
    /// Requests that met their task's goodput objectives.
    pub good: u64,
    /// Requests of the rows with goodput objectives (see [`Slot::slo_requests`]).
    pub slo_requests: u64,
    /// SSE events received.
    pub events: u64,
    /// HTTP 429 answers (see [`Slot::status_429`]).
    pub status_429: u64,
    /// Open model: arrivals dropped at the in-flight cap.
    pub dropped_iterations: u64,
    /// Time-averaged users (mean over the seconds).
    pub users: f64,
    /// Highest saturation figure of any worker in the span, percent of one core.
    pub worker_cpu_max: f64,
    /// Worst worker timer lag (p99 of a report) in the span, µs.
    pub sched_lag_max_us: u64,
    /// Times to first event of the open seconds (µs buckets).
    pub ttfe: Accum,
    /// Response times of the open seconds (µs buckets).
    pub response_time: Accum,
    /// False when a second in the span had already dropped its histograms.
    pub complete: bool,
}

/// The seconds `from..to` of `timeline` summed.
pub(crate) fn window(timeline: &BTreeMap<i64, Slot>, from: i64, to: i64) -> Window {
    let mut w = Window {
        seconds: (to - from).max(0),
        complete: true,
        ..Default::default()
    };
    for (_, slot) in timeline.range(from..to.max(from)) {
        w.requests += slot.requests;
        w.failures += slot.failures;
        w.good += slot.good;
        w.slo_requests += slot.slo_requests;
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

/// Each endpoint's figures over the seconds `from..to` of `timeline` (compacted seconds
/// add nothing).
pub(crate) fn endpoint_window(
    timeline: &BTreeMap<i64, Slot>,
    from: i64,
    to: i64,
) -> BTreeMap<EndpointKey, EndpointSecond> {
    let mut out: BTreeMap<EndpointKey, EndpointSecond> = BTreeMap::new();
    for (_, slot) in timeline.range(from..to.max(from)) {
        for (key, e) in &slot.endpoints {
            let into = out.entry(key.clone()).or_default();
            into.requests += e.requests;
            into.failures += e.failures;
            into.good += e.good;
            into.response_time.merge(&e.response_time);
        }
    }
    out
}
