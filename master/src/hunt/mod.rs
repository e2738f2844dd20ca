//! `barrage hunt`: one continuous run that steps the users up until an SLO breaks or
//! throughput stops growing, optionally bisects between the last good and the first bad
//! level, and says what the sustainable capacity is and what broke first.
//!
//! The controller asks [`Hunt::tick`] for the users to run every tick. Each step is
//! judged on its own seconds of the timeline (after its warm-up), once those seconds'
//! reports are in; while a climbing step is judged the next one already runs, so the
//! search costs no idle time. Only SLOs a window can compute are accepted.
//!
//! The search is here; its settings in [`config`], what it found in [`outcome`]; how
//! sure the sustainable level is in [`confidence`], whether the SLO margin fell off a
//! cliff or bent at a knee in [`cliff`].

pub mod cliff;
pub mod confidence;
pub mod config;
pub mod nodes;
pub mod outcome;

use std::time::Duration;

use barrage_common::metrics::Metric;
use barrage_common::threshold::Stat;

pub use config::HuntConfig;
pub use outcome::{HuntLevel, HuntReport, MarginShape, SloConfidence, StepResult, StepVerdict};

use crate::aggregate::{Aggregator, REPORT_LAG, Window};
use crate::threshold_eval::{holds, window_value};

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
    /// Each result's figure of each SLO (in `cfg.slos` order), for the margins.
    figures: Vec<Vec<Option<f64>>>,
    /// The best good step so far: its level and its seconds, copied when it was
    /// judged (the timeline compacts their histograms later). The bootstrap runs on
    /// them once, when the report is built, never in the controller's tick.
    boundary: Option<(u32, Vec<Window>)>,
    ended: Option<String>,
    /// Where the time goes per Dify node at each step ([`nodes`]).
    nodes: nodes::NodeSteps,
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
            figures: Vec::new(),
            boundary: None,
            ended: None,
            nodes: nodes::NodeSteps::default(),
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
        let (warmup, step) = (self.cfg.warmup, self.cfg.step_time);
        self.nodes.observe(elapsed, self.current, warmup, step, agg);
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
            self.keep_figures(&result, agg);
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

    /// Keeps each SLO's figure of a judged step and, for a new best good step, each
    /// SLO's bootstrap interval over its seconds.
    fn keep_figures(&mut self, r: &StepResult, agg: &Aggregator) {
        let w = agg.window(r.from_s, r.to_s.max(r.from_s + 1));
        self.figures
            .push(self.cfg.slos.iter().map(|slo| window_value(slo.stat, &w)).collect());
        let better = self.boundary.as_ref().is_none_or(|(level, _)| r.users > *level);
        if r.verdict == StepVerdict::Ok && better {
            self.boundary = Some((r.users, confidence::seconds(agg, r.from_s, r.to_s)));
        }
    }

    /// The key SLO (by its index): the one with the least margin at the first step
    /// that broke an SLO, else at `boundary`; no figure counts as no margin at all.
    fn key_slo(&self, boundary: Option<usize>) -> Option<usize> {
        let first_broken = (0..self.results.len())
            .filter(|&i| self.results[i].verdict == StepVerdict::Slo)
            .min_by_key(|&i| self.results[i].users);
        let step = first_broken.or(boundary)?;
        let figures = self.figures.get(step)?;
        (0..self.cfg.slos.len()).min_by(|&a, &b| {
            let m = |k: usize| figures[k].map_or(f64::NEG_INFINITY, |v| confidence::margin(&self.cfg.slos[k], v));
            m(a).total_cmp(&m(b))
        })
    }

    /// The key SLO at the boundary step (result `boundary`) with its interval.
    fn confidence(&self, key: usize, boundary: usize) -> Option<SloConfidence> {
        let slo = &self.cfg.slos[key];
        let r = &self.results[boundary];
        let figure = self.figures.get(boundary)?.get(key).copied().flatten()?;
        let (level, seconds) = self.boundary.as_ref().filter(|(level, _)| *level == r.users)?;
        debug_assert_eq!(*level, r.users);
        let (low, high) = confidence::bootstrap(slo, seconds)?;
        let (a, b) = (confidence::margin(slo, low), confidence::margin(slo, high));
        let confident = holds(slo, Some(low)) && holds(slo, Some(high));
        Some(SloConfidence {
            slo: slo.text.clone(),
            level: r.users,
            figure,
            low,
            high,
            shown: format!(
                "{} (95 % CI {} to {})",
                slo.stat.show(figure),
                slo.stat.show(low),
                slo.stat.show(high)
            ),
            margin: confidence::margin(slo, figure),
            margin_low: a.min(b),
            margin_high: a.max(b),
            call: if confident { "confident" } else { "marginal" }.into(),
            seconds: (r.to_s.max(r.from_s + 1) - r.from_s) as u32,
            resamples: confidence::RESAMPLES,
        })
    }

    /// The key SLO's margin over the good levels below the first bad one, and that one,
    /// called a cliff or a knee.
    fn margin_shape(&self, key: usize) -> Option<MarginShape> {
        let slo = &self.cfg.slos[key];
        let bad = (0..self.results.len())
            .filter(|&i| self.results[i].verdict == StepVerdict::Slo)
            .min_by_key(|&i| self.results[i].users)?;
        let bad_level = self.results[bad].users;
        let mut steps: Vec<usize> = (0..self.results.len())
            .filter(|&i| self.results[i].verdict == StepVerdict::Ok && self.results[i].users < bad_level)
            .collect();
        steps.sort_by_key(|&i| self.results[i].users);
        steps.push(bad);
        let margins = steps
            .iter()
            .map(|&i| {
                let v = self.figures.get(i)?.get(key).copied().flatten()?;
                Some((self.results[i].users, confidence::margin(slo, v)))
            })
            .collect::<Option<Vec<_>>>()?;
        let (call, kept) = cliff::call(&margins)?;
        Some(MarginShape {
            call: call.into(),
            slo: slo.text.clone(),
            first_margin: margins[0].1,
            last_good_margin: margins[margins.len() - 2].1,
            kept,
            margins,
        })
    }

    /// The outcome so far (complete once the run has ended).
    pub fn report(&self) -> HuntReport {
        let boundary = (0..self.results.len())
            .filter(|&i| self.results[i].verdict == StepVerdict::Ok)
            .max_by_key(|&i| self.results[i].users);
        let best_good = boundary.map(|i| &self.results[i]);
        let key = self.key_slo(boundary);
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
            confidence: key.zip(boundary).and_then(|(k, b)| self.confidence(k, b)),
            margin_shape: key.and_then(|k| self.margin_shape(k)),
            node_steps: self.nodes.rows(),
            nodes_grew: self.nodes.growth(first_bad.map(|r| r.users)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::testing::requests_at;
    use barrage_common::threshold::Threshold;

    /// A hunt from 10 users in steps of 10 (4 s each, the first second not judged)
    /// against `p95(response_time) < 100ms`, over a timeline where every second's 20
    /// requests take `rt_ms(level, second)`; ticked until it stops.
    fn hunt_over(rt_ms: impl Fn(u32, i64) -> u64) -> HuntReport {
        let cfg = HuntConfig {
            start: 10,
            step: 10,
            step_time: Duration::from_secs(4),
            warmup: Duration::from_secs(1),
            max: 100,
            slos: vec![Threshold::parse("p95(response_time) < 100ms").unwrap()],
            stall: None,
            bisect: 0,
            mean_wait: Duration::ZERO,
            rate_mode: false,
        };
        let mut hunt = Hunt::new(cfg);
        let mut agg = Aggregator::new(1);
        for t in 0..60 {
            let level = 10 + 10 * (t / 4) as u32;
            agg.merge(&requests_at(t, 20, rt_ms(level, t)));
            if let Action::Stop(_) = hunt.tick(Duration::from_secs(t as u64), &agg) {
                return hunt.report();
            }
        }
        panic!("the hunt did not stop: {:#?}", hunt.report())
    }

    /// Latency growing with the level (2 ms per user, 3 ms more in odd seconds): the
    /// margin shrinks step by step, a knee; the interval at 40 users spans its seconds
    /// (80 and 83 ms) and brackets the step's own p95, wholly under the limit.
    #[test]
    fn a_latency_growing_with_load_is_a_knee_with_an_interval_around_the_boundary() {
        let h = hunt_over(|level, t| u64::from(level) * 2 + (t % 2) as u64 * 3);
        assert_eq!((h.sustainable_users, h.first_bad_users), (Some(40), Some(50)), "{h:#?}");
        let c = h.confidence.expect("an interval");
        assert_eq!(
            (c.slo.as_str(), c.level, c.seconds, c.resamples),
            ("p95(response_time) < 100ms", 40, 3, 1000)
        );
        let boundary = h.steps.iter().find(|s| s.users == 40).unwrap();
        assert!((c.figure / 1000.0 - boundary.response_time_p95_ms.unwrap()).abs() < 1e-9);
        assert!(c.low < c.high && c.low <= c.figure && c.figure <= c.high, "{c:?}");
        // HDR keeps 3 significant digits: 80 and 83 ms within 0.1 %.
        assert!(
            (c.low - 80_000.0).abs() < 100.0 && (c.high - 83_000.0).abs() < 100.0,
            "{c:?}"
        );
        assert_eq!(c.call, "confident");
        assert!(c.margin_low <= c.margin && c.margin <= c.margin_high, "{c:?}");
        let shape = h.margin_shape.expect("a call");
        assert_eq!(shape.call, "knee", "{shape:?}");
        let levels: Vec<u32> = shape.margins.iter().map(|m| m.0).collect();
        assert_eq!(levels, [10, 20, 30, 40, 50]);
    }

    /// 20 ms until 50 users, then 150 ms: the margin stays until it falls, a cliff.
    #[test]
    fn a_sudden_break_is_a_cliff() {
        let h = hunt_over(|level, _| if level < 50 { 20 } else { 150 });
        assert_eq!((h.sustainable_users, h.first_bad_users), (Some(40), Some(50)), "{h:#?}");
        let shape = h.margin_shape.expect("a call");
        assert_eq!(shape.call, "cliff", "{shape:?}");
        assert!((shape.kept - 1.0).abs() < 1e-9, "{shape:?}");
        let c = h.confidence.expect("an interval");
        assert_eq!((c.low, c.high), (c.figure, c.figure), "every second alike: {c:?}");
    }
}
