//! The hunt's verdict ([`Hunt::report`]): the sustainable level (the highest good
//! level, unless its re-measure broke an SLO), what broke first, whether the
//! generators had headroom, the key SLO's interval over the boundary's seconds (both
//! measurements' when the re-measure confirmed it), and cliff or knee.

use std::time::Duration;

use super::outcome::{Remeasure, SearchSummary};
use super::search::SearchKind;
use super::{Hunt, HuntReport, MarginShape, SloConfidence, StepResult, StepVerdict, cliff, confidence};
use crate::aggregate::Window;
use crate::threshold_eval::holds;

impl Hunt {
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

    /// The key SLO at the boundary step (result `boundary`) with its interval, over
    /// its seconds and, when the re-measure confirmed it, the re-measure's too.
    fn confidence(&self, key: usize, boundary: usize) -> Option<SloConfidence> {
        let slo = &self.cfg.slos[key];
        let r = &self.results[boundary];
        let kept = |i: usize| self.kept.iter().find(|(k, _)| *k == i).map(|(_, s)| s.as_slice());
        let again = self
            .remeasure_step()
            .filter(|&i| self.results[i].verdict == StepVerdict::Ok && self.results[i].users == r.users);
        let mut seconds: Vec<&Window> = kept(boundary)?.iter().collect();
        if let Some(second) = again.and_then(kept) {
            seconds.extend(second);
        }
        let figure = match again {
            Some(_) => confidence::figure(slo, &seconds)?,
            None => self.figures.get(boundary)?.get(key).copied().flatten()?,
        };
        let (low, high) = confidence::bootstrap(slo, &seconds)?;
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
            seconds: seconds.len() as u32,
            resamples: confidence::RESAMPLES,
            measurements: Some(if again.is_some() { 2 } else { 1 }),
        })
    }

    /// The boundary's re-measure, if it ran (result index).
    fn remeasure_step(&self) -> Option<usize> {
        self.results.iter().position(|r| r.remeasure)
    }

    /// The re-measure in the report: confirmed or not, the key SLO's two figures.
    fn remeasure_summary(&self, key: Option<usize>, boundary: Option<usize>) -> Option<Remeasure> {
        let again = self.remeasure_step()?;
        let level = self.results[again].users;
        let first = self.results.iter().position(|r| !r.remeasure && r.users == level)?;
        let figure = |i: usize| key.and_then(|k| self.figures.get(i)?.get(k).copied().flatten());
        let confirmed = self.results[again].verdict == StepVerdict::Ok;
        let show = |v: Option<f64>| match (key, v) {
            (Some(k), Some(v)) => self.cfg.slos[k].stat.show(v),
            _ => "no data".to_string(),
        };
        Some(Remeasure {
            level,
            confirmed,
            slo: key.map(|k| self.cfg.slos[k].text.clone()).unwrap_or_default(),
            first: figure(first),
            second: figure(again),
            shown: format!("{} then {}", show(figure(first)), show(figure(again))),
            moved_to: if confirmed {
                None
            } else {
                boundary.map(|b| self.results[b].users)
            },
        })
    }

    /// The search's kind, budget and probes spent, and the stop rule, in the report.
    fn search_summary(&self) -> SearchSummary {
        let plan = &self.cfg.search;
        let secs = |d: Duration| barrage_common::duration::format(d);
        SearchSummary {
            kind: match plan.kind {
                SearchKind::Geometric => "geometric",
                SearchKind::Linear => "linear",
            }
            .into(),
            growth: plan.growth,
            resolution: plan.resolution.to_string(),
            budget: plan.budget,
            probes: self.search.probes(),
            stop_rule: match self.cfg.stop.within {
                Some(w) => format!(
                    "stable within {} % ({} to {})",
                    w * 100.0,
                    secs(self.cfg.stop.min),
                    secs(self.cfg.step_time)
                ),
                None => format!("{} each", secs(self.cfg.step_time)),
            },
        }
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
            .filter(|&i| {
                let r = &self.results[i];
                r.verdict == StepVerdict::Ok && !r.remeasure && r.users < bad_level
            })
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
        // A level whose re-measure broke an SLO is not sustainable.
        let refuted = self
            .remeasure_step()
            .filter(|&i| self.results[i].verdict != StepVerdict::Ok)
            .map(|i| self.results[i].users);
        let boundary = (0..self.results.len())
            .filter(|&i| {
                let r = &self.results[i];
                r.verdict == StepVerdict::Ok && !r.remeasure && Some(r.users) != refuted
            })
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
        let again = self.remeasure_step().map(|i| &self.results[i]);
        let deciding: Vec<&StepResult> = best_good.into_iter().chain(first_bad).chain(again).collect();
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
            search: Some(self.search_summary()),
            remeasure: self.remeasure_summary(key, boundary),
            node_steps: self.nodes.rows(),
            nodes_grew: self.nodes.growth(first_bad.map(|r| r.users)),
        }
    }
}
