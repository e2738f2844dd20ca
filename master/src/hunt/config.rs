//! `barrage hunt`'s settings ([`HuntConfig`]), checked against what a step can judge.

use std::time::Duration;

use barrage_common::threshold::Threshold;

use crate::aggregate::REPORT_LAG;

/// `barrage hunt`'s settings, from its flags.
#[derive(Debug, Clone)]
pub struct HuntConfig {
    /// The first level (`--start`).
    pub start: u32,
    /// How much each climbing step adds (`--step`).
    pub step: u32,
    /// How long each step runs (`--step-time`).
    pub step_time: Duration,
    /// The first part of each step that is not judged (users starting, caches warming).
    pub warmup: Duration,
    /// The highest level tried (`--max`).
    pub max: u32,
    /// What a step must meet (`--slo`), whole-cluster figures without a window.
    pub slos: Vec<Threshold>,
    /// (users up by at least this %, throughput up by less than this %): a stall.
    pub stall: Option<(f64, f64)>,
    /// Rounds of bisection between the last good and the first bad level.
    pub bisect: u32,
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
        if self.max < self.start.max(1) {
            return Err(format!("--max {}: below --start {}", self.max, self.start));
        }
        if self.step == 0 {
            return Err("--step: at least 1 user".into());
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

    /// The longest the search can take: every step, every bisection round, their lags.
    pub fn bound(&self) -> Duration {
        let steps = (self.max.saturating_sub(self.start)).div_ceil(self.step) + 1;
        // A step, its reports in flight, and a second to judge it.
        let each = self.step_time + REPORT_LAG + Duration::from_secs(1);
        each * (steps + self.bisect + 1)
    }
}
