//! `barrage hunt`: one continuous run that steps the users up until an SLO breaks or
//! throughput stops growing, optionally bisects between the last good and the first bad
//! level, and says what the sustainable capacity is and what broke first.
//!
//! The controller asks [`Hunt::tick`] for the users to run every tick. Each step is
//! judged on its own seconds of the timeline (after its warm-up), once those seconds'
//! reports are in; while a climbing step is judged the next one already runs, so the
//! search costs no idle time. Only SLOs a window can compute are accepted.

use std::time::Duration;

use barrage_common::metrics::Metric;
use barrage_common::threshold::{Stat, Threshold};
use serde::{Deserialize, Serialize};

use crate::aggregate::{Aggregator, LAG_SATURATED_US, REPORT_LAG, cpu_saturated};
use crate::thresholds::{holds, window_value};

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
                    "--slo {}: a hunt judges each step's own seconds, so an SLO is a whole-cluster figure without [window] or {{name}}: response_time / ttfe statistics, error_rate, rps, events_per_s",
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
}

impl StepResult {
    fn generator_saturated(&self) -> bool {
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
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Climbing,
    Bisecting {
        good: Option<u32>,
        bad: u32,
        rounds_left: u32,
    },
}

/// What the controller should do now.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Run this level (users, or arrivals per second).
    Users(u32),
    /// The search is over: stop the run, for this reason.
    Stop(String),
}

/// The search in progress: the step running, the steps waiting to be judged, and the
/// results so far.
#[derive(Debug)]
pub struct Hunt {
    cfg: HuntConfig,
    phase: Phase,
    /// The step running: its users and start (run clock).
    current: (u32, Duration),
    /// Steps that ended and wait for their seconds to be complete.
    pending: Vec<(u32, Duration, bool)>,
    results: Vec<StepResult>,
    ended: Option<String>,
}

impl Hunt {
    /// A search starting at `cfg.start`, climbing.
    pub fn new(cfg: HuntConfig) -> Hunt {
        Hunt {
            current: (cfg.start.max(1).min(cfg.max), Duration::ZERO),
            cfg,
            phase: Phase::Climbing,
            pending: Vec::new(),
            results: Vec::new(),
            ended: None,
        }
    }

    /// What a level counts.
    fn unit(&self) -> HuntLevel {
        if self.cfg.rate_mode {
            HuntLevel::ArrivalsPerSecond
        } else {
            HuntLevel::Users
        }
    }

    /// How long each step runs.
    pub fn step_time(&self) -> Duration {
        self.cfg.step_time
    }

    /// Called every controller tick with the run's elapsed time.
    pub fn tick(&mut self, elapsed: Duration, agg: &Aggregator) -> Action {
        if let Some(why) = &self.ended {
            return Action::Stop(why.clone());
        }
        let (users, began) = self.current;
        let bisecting = matches!(self.phase, Phase::Bisecting { .. });
        // A climbing step that ended: judge it later, climb now.
        if !bisecting && elapsed >= began + self.cfg.step_time {
            self.pending.push((users, began, false));
            let next = users.saturating_add(self.cfg.step).min(self.cfg.max);
            if users >= self.cfg.max {
                // Hold the top level while it is judged.
                self.current = (users, began + self.cfg.step_time);
            } else {
                self.current = (next, began + self.cfg.step_time);
            }
        }
        // A bisection step ends when it has been judged (the next level depends on it).
        if bisecting && elapsed >= began + self.cfg.step_time && !self.pending.iter().any(|p| p.1 == began) {
            self.pending.push((users, began, true));
        }
        // Judge every pending step whose seconds are complete, in order.
        while let Some(&(level, start, in_bisection)) = self.pending.first() {
            let end = start + self.cfg.step_time;
            // Its figures are complete once its reports are in.
            if elapsed < end + REPORT_LAG {
                break;
            }
            self.pending.remove(0);
            let result = self.judge(level, start, in_bisection, agg);
            let verdict = result.verdict;
            let good = verdict == StepVerdict::Ok;
            self.results.push(result);
            match self.phase {
                Phase::Climbing if good && level >= self.cfg.max => {
                    return self.end(format!(
                        "reached --max {} {} without breaking an SLO",
                        self.cfg.max,
                        self.unit()
                    ));
                }
                Phase::Climbing if good => {}
                Phase::Climbing => {
                    // The first bad level: stop, or bisect below it.
                    self.pending.clear();
                    let good_level = self.last_good();
                    let why = if verdict == StepVerdict::Stall {
                        format!("throughput stopped growing at {level} {}", self.unit())
                    } else {
                        format!("an SLO broke at {level} {}", self.unit())
                    };
                    if self.cfg.bisect == 0 || good_level.is_some_and(|g| level <= g + 1) {
                        return self.end(why);
                    }
                    self.phase = Phase::Bisecting {
                        good: good_level,
                        bad: level,
                        rounds_left: self.cfg.bisect,
                    };
                    return self.next_bisection(elapsed, why);
                }
                Phase::Bisecting {
                    mut good,
                    mut bad,
                    rounds_left,
                } => {
                    if verdict == StepVerdict::Ok {
                        good = Some(level);
                    } else {
                        bad = level;
                    }
                    self.phase = Phase::Bisecting {
                        good,
                        bad,
                        rounds_left: rounds_left.saturating_sub(1),
                    };
                    return self.next_bisection(elapsed, "bisection done".into());
                }
            }
        }
        Action::Users(self.current.0)
    }

    fn next_bisection(&mut self, elapsed: Duration, why: String) -> Action {
        let Phase::Bisecting { good, bad, rounds_left } = self.phase else {
            return Action::Users(self.current.0);
        };
        let low = good.unwrap_or(0);
        if rounds_left == 0 || bad <= low + 1 {
            return self.end(format!("{why}; bisected between {low} and {bad} {}", self.unit()));
        }
        let mid = low + (bad - low) / 2;
        self.current = (mid.max(1), elapsed);
        Action::Users(self.current.0)
    }

    fn end(&mut self, why: String) -> Action {
        self.ended = Some(why.clone());
        Action::Stop(why)
    }

    fn last_good(&self) -> Option<u32> {
        self.results
            .iter()
            .filter(|r| r.verdict == StepVerdict::Ok)
            .map(|r| r.users)
            .max()
    }

    fn judge(&self, users: u32, start: Duration, bisecting: bool, agg: &Aggregator) -> StepResult {
        let from = (start + self.cfg.warmup).as_secs_f64().ceil() as i64;
        let to = (start + self.cfg.step_time).as_secs_f64().floor() as i64;
        let w = agg.window(from, to.max(from + 1));
        let value = |stat: Stat| window_value(stat, &w);
        let ms = |v: Option<f64>| v.map(|us| us / 1000.0);
        let rps = value(Stat::Rps).unwrap_or(0.0);
        let rt_avg = value(Stat::Avg(Metric::ResponseTime));
        // Little's law holds for users in a closed loop; an arrival rate is offered
        // load, which the achieved req/s is compared with directly.
        let little_rps = rt_avg.filter(|_| !self.cfg.rate_mode).map(|rt_us| {
            let cycle = rt_us / 1e6 + self.cfg.mean_wait.as_secs_f64();
            f64::from(users) / cycle.max(1e-6)
        });
        let broken: Vec<String> = self
            .cfg
            .slos
            .iter()
            .filter_map(|slo| {
                let seen = window_value(slo.stat, &w);
                (!holds(slo, seen)).then(|| {
                    let shown = seen.map_or_else(|| "no data".to_string(), |v| slo.stat.show(v));
                    format!("{}: {shown}", slo.text)
                })
            })
            .collect();
        let stalled = broken.is_empty() && !bisecting && self.stalled(users, rps);
        StepResult {
            users,
            from_s: from,
            to_s: to,
            users_avg: w.users,
            rps,
            events_per_s: value(Stat::EventsPerS).unwrap_or(0.0),
            error_rate: value(Stat::ErrorRate).unwrap_or(0.0),
            status_429: w.status_429,
            ttfe_p50_ms: ms(value(Stat::Percentile(50.0, Metric::Ttfe))),
            ttfe_p95_ms: ms(value(Stat::Percentile(95.0, Metric::Ttfe))),
            ttfe_p99_ms: ms(value(Stat::Percentile(99.0, Metric::Ttfe))),
            response_time_p50_ms: ms(value(Stat::Percentile(50.0, Metric::ResponseTime))),
            response_time_p95_ms: ms(value(Stat::Percentile(95.0, Metric::ResponseTime))),
            response_time_avg_ms: ms(rt_avg),
            little_rps,
            worker_cpu_max: w.worker_cpu_max,
            sched_lag_max_ms: w.sched_lag_max_us as f64 / 1000.0,
            verdict: if !broken.is_empty() {
                StepVerdict::Slo
            } else if stalled {
                StepVerdict::Stall
            } else {
                StepVerdict::Ok
            },
            broken,
            bisecting,
        }
    }

    /// Users up by at least X % over an earlier good step, throughput up by less than Y %.
    fn stalled(&self, users: u32, rps: f64) -> bool {
        let Some((more_users, more_rps)) = self.cfg.stall else {
            return false;
        };
        self.results
            .iter()
            .rev()
            .filter(|r| r.verdict == StepVerdict::Ok && !r.bisecting)
            .find(|r| f64::from(users) >= f64::from(r.users) * (1.0 + more_users / 100.0))
            .is_some_and(|r| rps < r.rps * (1.0 + more_rps / 100.0))
    }

    /// The outcome so far (complete once the run has ended).
    pub fn report(&self) -> HuntReport {
        let good: Vec<&StepResult> = self.results.iter().filter(|r| r.verdict == StepVerdict::Ok).collect();
        let best_good = good.iter().max_by_key(|r| r.users).copied();
        let first_bad = self
            .results
            .iter()
            .filter(|r| r.verdict != StepVerdict::Ok)
            .min_by_key(|r| r.users);
        let knee = self
            .results
            .iter()
            .any(|r| r.verdict == StepVerdict::Stall)
            .then(|| {
                self.results
                    .iter()
                    .filter(|r| r.verdict != StepVerdict::Slo)
                    .max_by(|a, b| a.rps.total_cmp(&b.rps))
                    .map(|r| r.users)
            })
            .flatten();
        let broke_first = first_bad.map(|r| {
            if r.verdict == StepVerdict::Stall {
                format!(
                    "throughput stopped growing: {:.1} req/s at {} {}",
                    r.rps,
                    r.users,
                    self.unit()
                )
            } else {
                let mut s = r.broken.join("; ");
                if r.status_429 > 0 {
                    s.push_str(&format!(" (429s: {})", r.status_429));
                }
                s
            }
        });
        let deciding: Vec<&StepResult> = best_good.into_iter().chain(first_bad).collect();
        let saturated: Vec<String> = deciding
            .iter()
            .filter(|r| r.generator_saturated())
            .map(|r| {
                format!(
                    "at {} {} a worker's busiest load thread reached {:.0}% CPU / {:.1} ms timer lag",
                    r.users,
                    self.unit(),
                    r.worker_cpu_max,
                    r.sched_lag_max_ms
                )
            })
            .collect();
        HuntReport {
            level: self.unit(),
            sustainable_users: best_good.map(|r| r.users),
            sustainable_rps: best_good.map(|r| r.rps),
            first_bad_users: first_bad.map(|r| r.users),
            knee_users: knee,
            broke_first,
            ended: self.ended.clone().unwrap_or_else(|| "the run stopped".into()),
            little_ratio: best_good.and_then(|r| r.little_rps.filter(|l| *l > 0.0).map(|l| r.rps / l)),
            valid: saturated.is_empty(),
            validity: if saturated.is_empty() {
                "the workers had CPU and timer headroom in the deciding steps".into()
            } else {
                format!(
                    "not valid: the generators were saturated in a deciding step ({}); add workers and hunt again",
                    saturated.join("; ")
                )
            },
            steps: self.results.clone(),
        }
    }
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
