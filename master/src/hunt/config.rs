//! `barrage hunt`'s settings ([`HuntConfig`]), checked against what a step can judge.

use std::time::Duration;

use barrage_common::metrics::Metric;
use barrage_common::threshold::{Stat, Threshold};

use crate::aggregate::REPORT_LAG;

use super::search::{SearchKind, SearchPlan};
use super::stable::StopRule;

/// `barrage hunt`'s settings, from its flags.
#[derive(Debug, Clone)]
pub struct HuntConfig {
    /// Which levels to probe, how many at most, how close to get ([`super::search`]).
    pub search: SearchPlan,
    /// The longest a step runs (`--step-time`): every step without a stop rule.
    pub step_time: Duration,
    /// When a step may end before `step_time`: once stable (`--stable-within`,
    /// `--min-step-time`).
    pub stop: StopRule,
    /// The first part of each step that is not judged (users starting, caches warming).
    pub warmup: Duration,
    /// What a step must meet (`--slo`), whole-cluster figures without a window.
    pub slos: Vec<Threshold>,
    /// (users up by at least this %, throughput up by less than this %): a stall.
    pub stall: Option<(f64, f64)>,
    /// Run the boundary (the last good level) once more after the search, and count
    /// both measurements in the verdict (on unless `--no-remeasure`).
    pub remeasure: bool,
    /// The mean pause between a user's requests (its class's wait), for Little's law.
    pub mean_wait: Duration,
    /// Levels are arrivals per second (the open model), not users.
    pub rate_mode: bool,
}

impl HuntConfig {
    /// Checks the settings; the message names the flag.
    pub fn check(&self) -> Result<(), String> {
        if self.step_time < Duration::from_secs(2) {
            return Err("--step-time: at least 2s (a step is judged on whole seconds)".into());
        }
        if self.warmup + Duration::from_secs(1) > self.step_time {
            return Err("--warmup: leave at least 1s of each step to judge".into());
        }
        if self.stop.min > self.step_time {
            return Err("--min-step-time: at most --step-time (the longest a step runs)".into());
        }
        if let Some(w) = self.stop.within
            && !(w > 0.0 && w < 1.0)
        {
            return Err("--stable-within: a fraction between 0 and 1, e.g. 0.05 or 5%".into());
        }
        let s = &self.search;
        if s.max < s.start.max(1) {
            return Err(format!("--max {}: below --start {}", s.max, s.start));
        }
        if s.kind == SearchKind::Linear && s.step == 0 {
            return Err("--step: at least 1 user".into());
        }
        if s.budget == 0 {
            return Err("--max-probes: at least 2 with the boundary's re-measure, 1 without (--no-remeasure)".into());
        }
        if self.slos.is_empty() {
            return Err("--slo: give at least one, e.g. --slo 'p95(ttfe) < 500ms' --slo 'error_rate < 1%'".into());
        }
        for slo in &self.slos {
            if slo.window.is_some() || slo.endpoint.is_some() || !slo.stat.windowable() {
                return Err(format!(
                    "--slo {}: a hunt judges each step's own seconds, so an SLO is a whole-cluster figure without [window] or {{name}}: response_time / ttfe statistics, error_rate, rps, events_per_s, goodput, good_rate",
                    slo.text
                ));
            }
        }
        Ok(())
    }

    /// The metric whose per-second p95 decides when a step is stable: the first SLO's
    /// latency metric (TTFE or response time), else response time.
    pub fn stable_metric(&self) -> Metric {
        self.slos
            .iter()
            .find_map(|slo| match slo.stat {
                Stat::Percentile(_, m) | Stat::Avg(m) | Stat::Min(m) | Stat::Max(m)
                    if matches!(m, Metric::Ttfe | Metric::ResponseTime) =>
                {
                    Some(m)
                }
                _ => None,
            })
            .unwrap_or(Metric::ResponseTime)
    }

    /// The longest the search can take: every probe at its longest, the re-measure,
    /// their reports in flight.
    pub fn bound(&self) -> Duration {
        let probes = self.search.budget + u32::from(self.remeasure) + 1;
        // A step, its reports in flight, and a second to judge it.
        let each = self.step_time + REPORT_LAG + Duration::from_secs(1);
        each * probes
    }
}
