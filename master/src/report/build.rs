//! Assembles the [`FinalReport`] from the aggregate: the stats rows, the per-second
//! figures (throughput, connections, the timeline), failures, replicas,
//! distributions and the percentile spectrum ([`FinalReport::from_aggregator`]; the
//! web UI's live report, [`FinalReport::live`], from the live view's totals of the second),
//! then for the end of a run the workers, warnings and completeness
//! ([`FinalReport::build`]).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;

use barrage_common::metrics::{EndpointStats, FailureEntry, Metric};
use barrage_common::saved::SavedStats;

use super::arrivals::ArrivalFigures;
use super::completeness::Completeness;
use super::drift::drift;
use super::goodput::Goodput;
use super::model::{
    Bucket, Connections, Distributions, FailureRow, FinalReport, MaxAvgMin, Qps, ReplicaFailure, ReplicaRow, SCHEMA_ID,
    TimelinePoint,
};
use super::rows::{EndpointRow, MergedRow, Percentiles, aggregated_row, kind_name, row};
use super::run::{Roster, RunInfo, RunSummary};
use super::spectrum::spectrum;
use super::workers::{generator_warnings, worker_rows};
use crate::aggregate::{Aggregator, LiveTotals, Slot};

impl FinalReport {
    /// The report at the end of a run: the figures with their merged data, how the run
    /// ended, its workers, the warnings and whether any data was lost.
    pub fn build(agg: &Aggregator, roster: &Roster, info: &RunInfo, summary: &RunSummary) -> FinalReport {
        // Every row's histograms built once, for its row, the sums and the merged data.
        let totals = LiveTotals::of(&agg.endpoints);
        let mut report = Self::from_totals(agg, &totals, info, summary.duration);
        report.merged = merged_rows(agg, &totals, info);
        report.stop_reason = summary.stop_reason.clone();
        report.workers = worker_rows(agg, roster);
        report.events = roster
            .events
            .iter()
            .map(|(t, e)| format!("{:>7.1}s {e}", t.as_secs_f64()))
            .collect();
        report.warnings = generator_warnings(agg, &report.workers);
        if agg.clipped > 0 {
            report.warnings.push(format!(
                "{} field(s) from workers were clipped to their bounds or refused (long texts, keys past a cap, bad gauges); every count was kept",
                agg.clipped
            ));
        }
        report.completeness = Completeness::of_run(agg, roster, info, summary, report.aggregated.requests);
        report
    }

    /// Adds the merged data (counters and histograms of every row) that saved results
    /// carry, so they can be re-rendered or merged again.
    pub fn with_merged(mut self, agg: &Aggregator, info: &RunInfo) -> FinalReport {
        self.merged = merged_rows(agg, &LiveTotals::of(&agg.endpoints), info);
        self
    }

    /// The figures alone, from merged data, `duration` into the run (used by tests):
    /// no workers, warnings, completeness or merged data yet.
    pub fn from_aggregator(agg: &Aggregator, info: &RunInfo, duration: Duration) -> FinalReport {
        Self::from_totals(agg, &LiveTotals::of(&agg.endpoints), info, duration)
    }

    /// [`FinalReport::from_aggregator`] from the live view's totals of this second
    /// ([`Aggregator::live`], shared with the other live readers): the web UI's report
    /// of the run so far.
    pub fn live(agg: &Aggregator, info: &RunInfo, duration: Duration) -> FinalReport {
        Self::from_totals(agg, &agg.live(), info, duration)
    }

    /// The figures from the rows' `totals` and the rest of the aggregate.
    fn from_totals(agg: &Aggregator, totals: &LiveTotals, info: &RunInfo, duration: Duration) -> FinalReport {
        // After a reset of the statistics, rates count from the reset.
        let secs = (duration.as_secs_f64() - agg.stats_since_s).max(1e-3);
        let stats = &totals.rows;
        let endpoints: Vec<EndpointRow> = stats
            .iter()
            .map(|(k, kind, s)| {
                let epr = info.events_per_request_of(k);
                let mut r = row(kind_name(*kind), &k.method, &k.name, s, secs, epr);
                r.goodput = agg
                    .has_goodput(k)
                    .then(|| Goodput::of(s.counts.good, s.counts.requests, secs));
                r
            })
            .collect();
        let (all, sse) = (&totals.all, &totals.sse);
        let spectrum = spectrum(
            all,
            stats.iter().map(|(k, _, s)| (k.method.as_str(), k.name.as_str(), s)),
        );
        let where_time_goes =
            super::nodes::where_time_goes(stats.iter().map(|(k, _, s)| (k.method.as_str(), k.name.as_str(), s)));
        let mut failures = failure_rows(agg, |s| &s.failure_kinds);
        let outcomes = failure_rows(agg, |s| &s.outcomes);
        failures.sort_by_key(|f| std::cmp::Reverse(f.count));
        let steady = steady_seconds(agg, duration);
        let event_throughput = max_avg_min(&steady, |s| s.events as f64, all.counts.events as f64, secs);
        let rps = max_avg_min(&steady, |s| s.requests as f64, all.counts.requests as f64, secs);
        FinalReport {
            schema: SCHEMA_ID.to_string(),
            scenario: info.scenario.clone(),
            host: info.host.clone(),
            users: info.users,
            spawn_rate: info.spawn_rate,
            started_unix: started_unix(duration),
            duration_s: duration.as_secs_f64(),
            stats_since_s: agg.stats_since_s,
            stop_reason: String::new(),
            aggregated: aggregated_row(all, &endpoints, secs),
            endpoints,
            event_throughput,
            ttfe_ms: sse.histogram(Metric::Ttfe).and_then(Percentiles::from_us),
            connections: connections(agg, all, secs),
            qps: Qps {
                max: rps.max,
                avg: rps.avg,
                avg_duration_ms: all.histogram(Metric::ResponseTime).map_or(0.0, |h| h.mean() / 1000.0),
            },
            failures,
            outcomes,
            replicas: replica_rows(agg, secs),
            workers: Vec::new(),
            events: Vec::new(),
            warnings: Vec::new(),
            completeness: Completeness::default(),
            timeline: timeline(agg),
            thresholds: Vec::new(),
            hunt: None,
            // Early against late says nothing when the load changed by design.
            drift: if info.load_varies { None } else { drift(agg, duration) },
            distributions: Some(Distributions {
                response_time: buckets(all.histogram(Metric::ResponseTime)),
                ttfe: buckets(all.histogram(Metric::Ttfe)),
            }),
            spectrum,
            where_time_goes,
            // Filled by `build` and for downloads (`with_merged`): the live view needs none.
            merged: Vec::new(),
            arrivals: info.arrival.as_ref().map(|a| ArrivalFigures::new(a, duration, agg)),
        }
    }
}

/// The merged data (counters and histograms of every row) saved results carry.
fn merged_rows(agg: &Aggregator, totals: &LiveTotals, info: &RunInfo) -> Vec<MergedRow> {
    totals
        .rows
        .iter()
        .map(|(k, kind, s)| MergedRow {
            kind: kind_name(*kind).to_string(),
            method: k.method.clone(),
            name: k.name.clone(),
            events_per_request: info.events_per_request_of(k),
            stats: SavedStats::from(s),
            goodput: agg.has_goodput(k),
        })
        .collect()
}

/// When the run started, Unix seconds: now, less its `duration`.
fn started_unix(duration: Duration) -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
        - duration.as_secs_f64()
}

/// One row per (stats row, kind, detail) of the map `pick` chooses (failures, or
/// declared outcomes), in the aggregate's order.
fn failure_rows(
    agg: &Aggregator,
    pick: fn(&EndpointStats) -> &std::collections::BTreeMap<(String, String), FailureEntry>,
) -> Vec<FailureRow> {
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
}

/// The run's full seconds from the first one with requests or events: from 0 (or the
/// first whole second after a reset of the statistics) to the last full second.
fn steady_seconds(agg: &Aggregator, duration: Duration) -> Vec<&Slot> {
    let full_secs = duration.as_secs() as i64;
    let first_sec = agg.stats_since_s.ceil() as i64;
    let slots: Vec<(i64, &Slot)> = agg
        .timeline
        .iter()
        .filter(|(t, _)| **t < full_secs.max(first_sec + 1) && **t >= first_sec)
        .map(|(t, s)| (*t, s))
        .collect();
    let first_active = slots
        .iter()
        .find(|(_, s)| s.requests > 0 || s.events > 0)
        .map(|(t, _)| *t);
    slots
        .iter()
        .filter(|(t, _)| first_active.is_some_and(|f| *t >= f))
        .map(|(_, s)| *s)
        .collect()
}

/// A per-second figure `f` over the `steady` seconds: the busiest and the quietest, and
/// `total` over `secs`.
fn max_avg_min(steady: &[&Slot], f: impl Fn(&Slot) -> f64, total: f64, secs: f64) -> MaxAvgMin {
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
}

/// Streams and connections: the peak second, and the stream-seconds since the reset of
/// the statistics (all of them without one) over the same span as `secs`.
fn connections(agg: &Aggregator, all: &EndpointStats, secs: f64) -> Connections {
    let active_integral: f64 = agg
        .timeline
        .iter()
        .map(|(t, s)| s.active_streams * share_since(*t, agg.stats_since_s))
        .sum();
    Connections {
        max_concurrent: agg.timeline.values().map(|s| s.active_streams_max).max().unwrap_or(0),
        avg_active: active_integral / secs,
        total_streams: all.counts.streams_started,
        connections_opened: all.counts.connections_opened,
        retries: all.counts.retries,
    }
}

/// How much of second `t` of the timeline ([t, t + 1)) lies at or after `since_s`.
fn share_since(t: i64, since_s: f64) -> f64 {
    (t as f64 + 1.0 - since_s).clamp(0.0, 1.0)
}

/// Every second of the timeline as a report point.
fn timeline(agg: &Aggregator) -> Vec<TimelinePoint> {
    agg.timeline
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
                good_per_s: agg.any_goodput().then_some(s.good),
            }
        })
        .collect()
}

/// One row per (stats row, target address), rates over `secs`.
fn replica_rows(agg: &Aggregator, secs: f64) -> Vec<ReplicaRow> {
    agg.peers
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
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::testing::requests_at;
    use barrage_proto::v1;

    /// 20 s: 10 req/s with 6 streams open, then 4 req/s with 2 open; the statistics
    /// reset at 10 s, and second 9's report arrives just after the reset. Every rate,
    /// average and due count covers the 10 s since the reset.
    #[test]
    fn figures_after_a_reset_divide_by_the_time_since_it() {
        let tick = |at: i64, requests: u64, open: f64| {
            let mut r = requests_at(at, requests, 5);
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
                process: Default::default(),
                seed: None,
                trace: None,
            }),
            events_per_request: Default::default(),
            load_varies: false,
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

    /// A run whose load changes by design (a shape, arrival stages, a hunt) gets no
    /// drift table: its early and late thirds ran different loads.
    #[test]
    fn a_run_whose_load_varies_by_design_has_no_drift_table() {
        let mut agg = Aggregator::new(1);
        for at in 0..60 {
            agg.merge(&requests_at(at, 10, 5));
        }
        let mut info = RunInfo {
            scenario: "t".into(),
            host: None,
            users: 10,
            spawn_rate: 1.0,
            arrival: None,
            events_per_request: Default::default(),
            load_varies: false,
        };
        let steady = FinalReport::from_aggregator(&agg, &info, Duration::from_secs(60));
        assert!(steady.drift.is_some(), "a constant 60 s run has its drift table");
        info.load_varies = true;
        let shaped = FinalReport::from_aggregator(&agg, &info, Duration::from_secs(60));
        assert!(shaped.drift.is_none(), "{:?}", shaped.drift);
    }
}
