//! What a hunt found, as saved in the report ([`HuntReport`]): each judged step
//! ([`StepResult`]) with its verdict, and the capacity, knee and validity; how sure the
//! capacity is ([`SloConfidence`]) and how the SLO margin fell ([`MarginShape`]).

use serde::{Deserialize, Serialize};

use crate::aggregate::{LAG_SATURATED_US, cpu_saturated};

/// A judged step's verdict, saved as `ok`, `slo` or `stall`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StepVerdict {
    /// Every SLO held and throughput grew.
    Ok,
    /// An SLO broke (see [`StepResult::broken`]).
    Slo,
    /// Every SLO held, but throughput stopped growing with the level (`--stall`).
    Stall,
}

/// What a hunt's level counts, saved as `users` or `arrivals/s`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub enum HuntLevel {
    /// Users (the closed model).
    #[default]
    #[serde(rename = "users")]
    Users,
    /// Arrivals per second (the open model, `--arrival`).
    #[serde(rename = "arrivals/s")]
    ArrivalsPerSecond,
}

impl HuntLevel {
    /// The unit as saved and printed (`users`, `arrivals/s`).
    pub fn as_str(self) -> &'static str {
        match self {
            HuntLevel::Users => "users",
            HuntLevel::ArrivalsPerSecond => "arrivals/s",
        }
    }
}

impl std::fmt::Display for HuntLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One judged step.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepResult {
    /// The step's level: users, or arrivals per second (see [`HuntReport::level`]).
    pub users: u32,
    /// The seconds judged, run clock: [from, to).
    pub from_s: i64,
    /// See `from_s`.
    pub to_s: i64,
    /// Users running on average over the judged seconds.
    pub users_avg: f64,
    /// Requests per second.
    pub rps: f64,
    /// SSE events per second.
    pub events_per_s: f64,
    /// Failed requests / requests (a fraction).
    pub error_rate: f64,
    /// HTTP 429 answers in the judged seconds.
    pub status_429: u64,
    /// Time to first event, median, ms (None without streams).
    pub ttfe_p50_ms: Option<f64>,
    /// Time to first event, 95th percentile, ms.
    pub ttfe_p95_ms: Option<f64>,
    /// Time to first event, 99th percentile, ms.
    pub ttfe_p99_ms: Option<f64>,
    /// Response time, median, ms (None without requests).
    pub response_time_p50_ms: Option<f64>,
    /// Response time, 95th percentile, ms.
    pub response_time_p95_ms: Option<f64>,
    /// Response time, mean, ms.
    pub response_time_avg_ms: Option<f64>,
    /// users / (mean response time + mean wait): the throughput Little's law expects.
    pub little_rps: Option<f64>,
    /// The busiest load thread of any worker, CPU percent of one core (the
    /// saturation figure, `aggregate::saturation_cpu`).
    pub worker_cpu_max: f64,
    /// The worst worker timer lag (p99 of a report) in the judged seconds, ms.
    pub sched_lag_max_ms: f64,
    /// Whether the step met every SLO, broke one, or stalled.
    pub verdict: StepVerdict,
    /// The SLOs that broke, with what was seen: `p95(ttfe) < 500ms: 812.00ms`.
    pub broken: Vec<String>,
    /// Run while bisecting (never judged as a stall).
    pub bisecting: bool,
    /// How the step ended: stable, or at the longest step time (absent in files saved
    /// before steps could end stable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<StepStop>,
    /// The boundary's re-measure after the search (never judged as a stall).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub remeasure: bool,
}

/// How a step ended ([`super::stable`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepStop {
    /// True: the step ended once its p95 was stable; false: it ran to `--step-time`.
    pub stable: bool,
    /// How long the step ran, up to the end of its judged seconds, s.
    pub after_s: f64,
    /// The last 95 % half-width of the windowed p95 of the key metric, a fraction of
    /// that p95 (0.03 is ±3 %); None before three seconds with data.
    pub half_width: Option<f64>,
}

impl StepResult {
    /// A worker was saturated (CPU or timer lag) in the step: its figures may be the
    /// generator's limit, not the target's.
    pub(crate) fn generator_saturated(&self) -> bool {
        cpu_saturated(self.worker_cpu_max) || self.sched_lag_max_ms * 1000.0 > LAG_SATURATED_US as f64
    }
}

/// The search's outcome, for the report.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct HuntReport {
    /// What a step's level counts: users, or arrivals per second (`--arrival`).
    pub level: HuntLevel,
    /// Each judged step; `users` is the step's level (arrivals/s with `--arrival`).
    pub steps: Vec<StepResult>,
    /// The highest level that met every SLO (None: not even the first step did).
    pub sustainable_users: Option<u32>,
    /// The req/s of that level's step.
    pub sustainable_rps: Option<f64>,
    /// The first level that broke an SLO.
    pub first_bad_users: Option<u32>,
    /// Where throughput peaked before it stopped growing (a stall), if it did.
    pub knee_users: Option<u32>,
    /// What broke first, in words: "error_rate < 1%: 12.500% (429s: 310)".
    pub broke_first: Option<String>,
    /// Why the search ended.
    pub ended: String,
    /// Little's law at the sustainable level: observed / expected throughput.
    pub little_ratio: Option<f64>,
    /// False when a worker was saturated during a deciding step: the limit found may be
    /// the generator's.
    pub valid: bool,
    /// Why the result is valid or not, in words (which worker was saturated, where).
    pub validity: String,
    /// The sustainable level's key SLO figure with its bootstrap interval (absent in
    /// files saved before it existed, and when no step met the SLOs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<SloConfidence>,
    /// Whether the key SLO's margin fell off a cliff or bent at a knee (absent in older
    /// files, and when the hunt cannot tell: see [`MarginShape`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub margin_shape: Option<MarginShape>,
    /// Dify endpoints: each node's figures at each step (see [`super::nodes`]); absent
    /// without node data.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_steps: Vec<super::nodes::NodeStepRow>,
    /// The nodes whose p95 grew fastest from the first level to the first bad one,
    /// fastest first (at most three); absent without them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes_grew: Vec<super::nodes::NodeGrowth>,
    /// How the search went: its kind, budget, probes spent (absent in older files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search: Option<SearchSummary>,
    /// The boundary measured a second time after the search (absent in older files,
    /// with `--no-remeasure`, and when no level was good).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remeasure: Option<Remeasure>,
}

/// How the search went ([`super::search`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SearchSummary {
    /// `geometric` or `linear`.
    pub kind: String,
    /// Geometric: the factor each climbing step multiplied the level by (the gentlest
    /// that fits the budget over the range).
    pub growth: f64,
    /// How close the last good and the first bad level had to be: `5%` or `5`.
    pub resolution: String,
    /// The probes the search could spend (`--max-probes`, less the re-measure).
    pub budget: u32,
    /// The probes it judged.
    pub probes: u32,
    /// Each step's stop rule in words: `stable within 5 % (10s to 60s)` or `60s each`.
    pub stop_rule: String,
}

/// The boundary's second measurement.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Remeasure {
    /// The level measured again (the search's last good level).
    pub level: u32,
    /// Every SLO held again: the verdict counts both measurements' seconds.
    pub confirmed: bool,
    /// The key SLO (as in [`SloConfidence`]).
    pub slo: String,
    /// Its figure in the first measurement, the SLO's base units.
    pub first: Option<f64>,
    /// Its figure in the second.
    pub second: Option<f64>,
    /// Both figures as people read them: `20.02ms then 19.98ms`.
    pub shown: String,
    /// Not confirmed: the sustainable level moved down to the next good probe (None
    /// when there was none).
    pub moved_to: Option<u32>,
}

/// The key SLO at the sustainable level (the boundary step, the last good one): its
/// figure over the step's judged seconds (pooled with the re-measure's when that
/// confirmed it), a 95 % percentile bootstrap interval over those seconds resampled
/// ([`super::confidence`]), and the margin to the limit.
///
/// The key SLO is the one that broke worst (least margin) at the first bad step, or,
/// when none broke, the one with the least margin at the boundary step.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SloConfidence {
    /// The SLO as written: `p95(ttfe) < 500ms`.
    pub slo: String,
    /// The boundary step's level.
    pub level: u32,
    /// The figure over the step's judged seconds, in the SLO's base units (µs for
    /// latencies, a fraction for `error_rate`, per second for rates).
    pub figure: f64,
    /// Low end of the 95 % interval, same units.
    pub low: f64,
    /// High end of the 95 % interval, same units.
    pub high: f64,
    /// The figure and interval as people read them: `20.10ms (95 % CI 19.80ms to 21.02ms)`.
    pub shown: String,
    /// (limit - figure) / limit, sign flipped for `>` SLOs: 0.4 is 40 % of headroom.
    pub margin: f64,
    /// The margin at the interval's worse end.
    pub margin_low: f64,
    /// The margin at the interval's better end.
    pub margin_high: f64,
    /// `confident` when the whole interval meets the SLO, `marginal` when it crosses
    /// the limit.
    pub call: String,
    /// The seconds resampled: the boundary step's judged seconds, and the
    /// re-measure's when it confirmed the boundary.
    pub seconds: u32,
    /// How many resamples were drawn.
    pub resamples: u32,
    /// The measurements of the level whose seconds are pooled: 2 when the re-measure
    /// confirmed the boundary (absent in older files: one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measurements: Option<u32>,
}

/// How the key SLO's margin behaved over the levels up to the first bad step.
///
/// The rule ([`super::cliff::call`]): with at least two good levels and a first bad
/// level that broke an SLO, a **cliff** when the last good level kept more than half
/// of the first level's margin (`last_good_margin > 0.5 x first_margin`): the target
/// was comfortable until it suddenly was not; else a **knee**: the margin was already
/// being used up step by step.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MarginShape {
    /// `cliff` or `knee`.
    pub call: String,
    /// The SLO whose margin was followed (the key SLO, as in [`SloConfidence`]).
    pub slo: String,
    /// The margin at the lowest level.
    pub first_margin: f64,
    /// The margin at the last good level.
    pub last_good_margin: f64,
    /// last_good_margin / first_margin.
    pub kept: f64,
    /// (level, margin) from the lowest level to the first bad one, in level order.
    pub margins: Vec<(u32, f64)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Saved reports (and the HTML report's script) read these strings.
    #[test]
    fn verdicts_and_levels_are_saved_as_before() {
        for (verdict, text) in [
            (StepVerdict::Ok, "\"ok\""),
            (StepVerdict::Slo, "\"slo\""),
            (StepVerdict::Stall, "\"stall\""),
        ] {
            assert_eq!(serde_json::to_string(&verdict).unwrap(), text);
            assert_eq!(serde_json::from_str::<StepVerdict>(text).unwrap(), verdict);
        }
        for (level, text) in [
            (HuntLevel::Users, "\"users\""),
            (HuntLevel::ArrivalsPerSecond, "\"arrivals/s\""),
        ] {
            assert_eq!(serde_json::to_string(&level).unwrap(), text);
            assert_eq!(serde_json::from_str::<HuntLevel>(text).unwrap(), level);
            assert_eq!(format!("\"{level}\""), text, "printed as saved");
        }
    }
}
