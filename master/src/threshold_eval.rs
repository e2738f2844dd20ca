//! Evaluates thresholds on the merged figures: live (for `abort_on_fail`) and once
//! more on the final figures for the verdict and the exit code.
//!
//! Whole-run thresholds read the exact merged histograms of the aggregator; a trailing
//! window (`[60s]`) reads the per-second timeline (response time and TTFE histograms,
//! counts), which the aggregator keeps long enough for the longest window.

use std::collections::BTreeMap;
use std::time::Duration;

use barrage_common::metrics::{EndpointStats, Metric};
use barrage_common::threshold::{Stat, Threshold};
use serde::{Deserialize, Serialize};

use crate::aggregate::{Aggregator, Window};

/// One threshold's verdict, as the report shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ThresholdRow {
    /// The threshold as written in the scenario or on the command line.
    pub threshold: String,
    /// In the threshold's base unit (µs, a fraction, per second); None = no data.
    pub observed: Option<f64>,
    /// The observed value in the threshold's own unit, or "no data".
    pub shown: String,
    /// Whether it held (no data never does).
    pub passed: bool,
    /// Whether failing it stops the run at once.
    pub abort_on_fail: bool,
}

/// The run's thresholds and what evaluating them needs from the plan.
#[derive(Debug, Clone, Default)]
pub struct Thresholds {
    /// Every threshold of the run, in the order given.
    pub list: Vec<Threshold>,
    /// `events_per_request` by stats row (name, method), where not 1.
    pub events_per_request: BTreeMap<(String, String), u32>,
}

impl Thresholds {
    /// The longest trailing window, for the aggregator's histogram retention.
    pub fn longest_window(&self) -> Option<Duration> {
        self.list.iter().filter_map(|t| t.window).max()
    }

    /// Every threshold on the final figures of a run that lasted `elapsed`.
    pub fn verdicts(&self, agg: &Aggregator, elapsed: Duration) -> Vec<ThresholdRow> {
        let end = elapsed.as_secs_f64().ceil() as i64;
        self.list
            .iter()
            .map(|t| {
                let observed = self.observe(t, agg, elapsed, end);
                row(t, observed)
            })
            .collect()
    }

    /// The first `abort_on_fail` threshold that fails now, `elapsed` into the run.
    /// Windows are judged on complete seconds only, and not before the run is one
    /// window old; no data is not a failure yet.
    pub fn first_abort(&self, agg: &Aggregator, elapsed: Duration) -> Option<ThresholdRow> {
        let end = agg.complete_end(elapsed);
        self.list
            .iter()
            .filter(|t| t.abort_on_fail)
            .filter(|t| t.window.is_none_or(|w| end >= w.as_secs() as i64))
            .find_map(|t| {
                let observed = self.observe(t, agg, elapsed, end)?;
                let r = row(t, Some(observed));
                (!r.passed).then_some(r)
            })
    }

    fn observe(&self, t: &Threshold, agg: &Aggregator, elapsed: Duration, end: i64) -> Option<f64> {
        if let Some(w) = t.window {
            let span = w.as_secs().max(1) as i64;
            return window_value(t.stat, &agg.window((end - span).max(0), end));
        }
        let rows: Vec<(&crate::aggregate::EndpointKey, EndpointStats)> = agg
            .endpoints
            .iter()
            .filter(|(k, _)| t.endpoint.as_ref().is_none_or(|n| *n == k.name))
            .map(|(k, e)| (k, e.stats()))
            .collect();
        if rows.is_empty() {
            return None;
        }
        let mut all = EndpointStats::default();
        for (_, s) in &rows {
            all.merge(s);
        }
        // The totals count from the last "reset statistics", and so do their rates.
        let secs = (elapsed.as_secs_f64() - agg.stats_since_s).max(1e-3);
        let hist = |m: Metric| all.histogram(m).filter(|h| !h.is_empty());
        match t.stat {
            Stat::Percentile(_, m) | Stat::Avg(m) | Stat::Min(m) | Stat::Max(m) => hist(m).map(|h| latency(t.stat, h)),
            Stat::ErrorRate => {
                (all.counts.requests > 0).then(|| all.counts.failures as f64 / all.counts.requests as f64)
            }
            Stat::Rps => Some(all.counts.requests as f64 / secs),
            Stat::EventsPerS => Some(all.counts.events as f64 / secs),
            Stat::Requests => Some(all.counts.requests as f64),
            Stat::Failures => Some(all.counts.failures as f64),
            // Not per row: arrivals are dropped before they pick a task.
            Stat::Dropped => t.endpoint.is_none().then_some(agg.dropped_iterations as f64),
            Stat::Goodput | Stat::GoodRate => {
                let slo_rows: Vec<&EndpointStats> = rows
                    .iter()
                    .filter(|(k, _)| agg.has_goodput(k))
                    .map(|(_, s)| s)
                    .collect();
                let good = slo_rows.iter().map(|s| s.counts.good).sum();
                let requests = slo_rows.iter().map(|s| s.counts.requests).sum();
                good_figure(t.stat, good, requests, secs, !slo_rows.is_empty())
            }
            Stat::BusinessEventsPerS => {
                let events: u64 = rows
                    .iter()
                    .map(|(k, s)| {
                        let epr = crate::aggregate::events_per_request_of(&self.events_per_request, k);
                        crate::aggregate::business_events(s, epr)
                    })
                    .sum();
                Some(events as f64 / secs)
            }
        }
    }
}

/// A latency statistic (percentile, mean, min, max) of a non-empty histogram, in µs.
fn latency(stat: Stat, h: &hdrhistogram::Histogram<u64>) -> f64 {
    match stat {
        Stat::Percentile(q, _) => h.value_at_quantile(q / 100.0) as f64,
        Stat::Avg(_) => h.mean(),
        Stat::Min(_) => h.min() as f64,
        _ => h.max() as f64,
    }
}

/// A windowable figure over a span of the timeline.
pub fn window_value(stat: Stat, win: &Window) -> Option<f64> {
    let secs = win.seconds.max(1) as f64;
    let hist = |m: Metric| {
        let a = match m {
            Metric::Ttfe => &win.ttfe,
            _ => &win.response_time,
        };
        (!a.is_empty()).then(|| a.to_histogram())
    };
    match stat {
        Stat::Percentile(_, m) | Stat::Avg(m) | Stat::Min(m) | Stat::Max(m) => hist(m).map(|h| latency(stat, &h)),
        Stat::ErrorRate => (win.requests > 0).then(|| win.failures as f64 / win.requests as f64),
        Stat::Rps => Some(win.requests as f64 / secs),
        Stat::EventsPerS => Some(win.events as f64 / secs),
        Stat::Requests => Some(win.requests as f64),
        Stat::Failures => Some(win.failures as f64),
        Stat::Dropped => Some(win.dropped_iterations as f64),
        Stat::Goodput | Stat::GoodRate => good_figure(stat, win.good, win.slo_requests, secs, win.slo_requests > 0),
        // Refused at parse time: the timeline has no business events.
        Stat::BusinessEventsPerS => None,
    }
}

/// `goodput` (good per second) or `good_rate` (good / requests of the rows with
/// objectives); no data where no row of the selection has objectives (`with_slo`), and
/// for the share, without requests.
fn good_figure(stat: Stat, good: u64, requests: u64, secs: f64, with_slo: bool) -> Option<f64> {
    match stat {
        _ if !with_slo => None,
        Stat::GoodRate => (requests > 0).then(|| good as f64 / requests as f64),
        _ => Some(good as f64 / secs),
    }
}

/// Whether `observed` meets `t` (no data never does).
pub fn holds(t: &Threshold, observed: Option<f64>) -> bool {
    observed.is_some_and(|v| t.op.holds(v, t.limit))
}

fn row(t: &Threshold, observed: Option<f64>) -> ThresholdRow {
    ThresholdRow {
        threshold: t.text.clone(),
        observed,
        shown: observed.map_or_else(|| "no data".to_string(), |v| t.stat.show(v)),
        // No data cannot show that a criterion holds: a gate must not pass a run
        // that measured nothing.
        passed: holds(t, observed),
        abort_on_fail: t.abort_on_fail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use barrage_common::plan::TaskKindTag;
    use barrage_proto::v1;

    /// One second of a worker's figures: `requests` answered in `rt_ms` each (and
    /// their first events in `rt_ms / 2`), `failures` of them failed.
    fn second(seq: u64, at: i64, name: &str, requests: u64, failures: u64, rt_ms: u64) -> v1::Report {
        let mut s = EndpointStats {
            counts: barrage_common::metrics::Counts {
                requests,
                events: requests * 3,
                ..Default::default()
            },
            ..Default::default()
        };
        for _ in 0..failures {
            s.fail(barrage_common::metrics::FailureKind::HttpStatus, "500", || {
                "HTTP 500".into()
            });
        }
        for _ in 0..requests {
            s.record(Metric::ResponseTime, rt_ms * 1000);
            s.record(Metric::Ttfe, rt_ms * 500);
        }
        crate::aggregate::testing::one_second(1, seq, at, name, TaskKindTag::Sse, &s)
    }

    fn thresholds(list: &[(&str, bool)]) -> Thresholds {
        Thresholds {
            list: list
                .iter()
                .map(|(t, abort_on_fail)| Threshold {
                    abort_on_fail: *abort_on_fail,
                    ..Threshold::parse(t).unwrap()
                })
                .collect(),
            events_per_request: BTreeMap::new(),
        }
    }

    /// 20 s: 15 fast seconds (10 ms, no failures), then 5 slow ones (200 ms, half failed).
    fn slowing_run() -> Aggregator {
        let mut agg = Aggregator::new(1);
        agg.keep_histograms_for(30);
        for at in 0..20 {
            let (failures, rt) = if at < 15 { (0, 10) } else { (5, 200) };
            agg.merge(&second(at as u64 + 1, at, "/run", 10, failures, rt));
        }
        agg
    }

    /// After a reset at 15 s the whole-run rates cover the 5 s since: 50 requests in
    /// 5 s is 10 req/s (not 50 / 20 = 2.5).
    #[test]
    fn whole_run_rates_after_a_reset_divide_by_the_time_since_it() {
        let mut agg = Aggregator::new(1);
        for at in 0..20 {
            if at == 15 {
                agg.reset_stats(15.0);
            }
            agg.merge(&second(at as u64 + 1, at, "/run", 10, 0, 10));
        }
        let t = thresholds(&[("rps >= 10", false), ("requests > 49", false), ("rps < 10.001", false)]);
        let v = t.verdicts(&agg, Duration::from_secs(20));
        let got: Vec<(bool, Option<f64>)> = v.iter().map(|r| (r.passed, r.observed)).collect();
        assert_eq!(got, [(true, Some(10.0)), (true, Some(50.0)), (true, Some(10.0))]);
    }

    #[test]
    fn whole_run_verdicts_read_the_merged_figures() {
        let agg = slowing_run();
        let t = thresholds(&[
            ("p50(response_time) < 100ms", false),
            ("p95(response_time) < 100ms", false),
            ("avg(ttfe) < 50ms", false),
            ("error_rate < 15%", false),
            ("error_rate < 10%", false),
            ("rps >= 10", false),
            ("requests > 200", false),
            ("events_per_s > 29", false),
            ("p50(response_time){name=/run} < 100ms", false),
            ("p50(ttft) < 1s", false),
        ]);
        let v = t.verdicts(&agg, Duration::from_secs(20));
        let verdicts: Vec<(bool, &str)> = v.iter().map(|r| (r.passed, r.shown.as_str())).collect();
        assert_eq!(
            verdicts,
            [
                (true, "10.01ms"),
                (false, "200.06ms"),
                // (150 x 5 ms + 50 x 100 ms) / 200, to the histogram's precision.
                (true, "28.75ms"),
                (true, "12.500%"),
                (false, "12.500%"),
                (true, "10.00/s"),
                (false, "200"),
                (true, "30.00/s"),
                (true, "10.01ms"),
                // Nothing measured cannot pass.
                (false, "no data"),
            ]
        );
    }

    /// 20 s of two rows: `/run` with goodput objectives (10 requests a second, 9 good
    /// for 15 s then 3), `/health` without (10 a second, never good).
    #[test]
    fn goodput_and_good_rate_count_only_rows_with_objectives() {
        let mut agg = Aggregator::new(1);
        agg.keep_histograms_for(30);
        agg.plan_goodput([("/run", "POST")]);
        let mut seq = 0;
        for at in 0..20 {
            for (name, good) in [("/run", if at < 15 { 9 } else { 3 }), ("/health", 0)] {
                seq += 1;
                let mut r = second(seq, at, name, 10, 0, 10);
                r.endpoints[0].good = good;
                agg.merge(&r);
            }
        }
        let t = thresholds(&[
            ("good_rate > 90%", false),
            ("good_rate >= 75%", false),
            ("goodput > 7", false),
            ("good_rate[5s] > 50%", false),
            ("goodput[5s] < 4", false),
            ("good_rate{name=/health} > 0%", false),
        ]);
        let v = t.verdicts(&agg, Duration::from_secs(20));
        let verdicts: Vec<(bool, &str)> = v.iter().map(|r| (r.passed, r.shown.as_str())).collect();
        assert_eq!(
            verdicts,
            [
                // (15 x 9 + 5 x 3) / 200 of /run: /health does not dilute the share.
                (false, "75.000%"),
                (true, "75.000%"),
                (true, "7.50/s"),
                (false, "30.000%"),
                (true, "3.00/s"),
                // A row without objectives has no goodput, not 0 % or 100 %.
                (false, "no data"),
            ]
        );
        // A hunt judges good_rate on a step's seconds, and its bootstrap resamples
        // them with their good requests: seconds 15-19 are 3 good of 10 each.
        let slo = Threshold::parse("good_rate > 95%").unwrap();
        let step = crate::hunt::confidence::seconds(&agg, 15, 20);
        let (low, high) = crate::hunt::confidence::bootstrap(&slo, &step).unwrap();
        assert!((low - 0.3).abs() < 1e-9 && (high - 0.3).abs() < 1e-9, "{low} {high}");
        let mixed = crate::hunt::confidence::seconds(&agg, 10, 20);
        let (low, high) = crate::hunt::confidence::bootstrap(&slo, &mixed).unwrap();
        assert!(low < 0.6 && 0.6 < high && low >= 0.3 && high <= 0.9, "{low} {high}");
    }

    #[test]
    fn trailing_windows_see_only_their_seconds() {
        let agg = slowing_run();
        let t = thresholds(&[
            ("p50(response_time)[5s] < 100ms", false),
            ("p50(response_time)[10s] < 100ms", false),
            ("error_rate[5s] < 10%", false),
            ("rps[5s] > 9", false),
            ("p95(ttfe)[30s] < 150ms", false),
        ]);
        let v = t.verdicts(&agg, Duration::from_secs(20));
        let verdicts: Vec<(bool, &str)> = v.iter().map(|r| (r.passed, r.shown.as_str())).collect();
        assert_eq!(
            verdicts,
            [
                (false, "200.06ms"),
                // Seconds 10-19: five fast, five slow; the median is the fast side's top.
                (true, "10.01ms"),
                (false, "50.000%"),
                (true, "10.00/s"),
                (true, "100.03ms"),
            ]
        );
    }

    #[test]
    fn an_abort_threshold_fires_only_on_complete_seconds_and_old_enough_windows() {
        let agg = slowing_run();
        let t = thresholds(&[("p95(response_time)[5s] < 100ms", true), ("error_rate < 50%", false)]);
        // At 16 s the complete seconds end at 14: all fast.
        assert_eq!(t.first_abort(&agg, Duration::from_secs(16)), None);
        // At 19 s, seconds 12-16 include two slow ones: p95 is slow.
        let fired = t.first_abort(&agg, Duration::from_secs(19)).unwrap();
        assert_eq!(fired.threshold, "p95(response_time)[5s] < 100ms");
        assert!(!fired.passed);
        // A window longer than the run so far is not judged yet.
        let long = thresholds(&[("p95(response_time)[60s] < 100ms", true)]);
        assert_eq!(long.first_abort(&agg, Duration::from_secs(20)), None);
        // Without abort_on_fail nothing stops the run.
        let quiet = thresholds(&[("error_rate < 1%", false)]);
        assert_eq!(quiet.first_abort(&agg, Duration::from_secs(20)), None);
    }
}
