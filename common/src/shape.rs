//! Load shapes of the closed model: how many users the cluster runs over time.
//!
//! Every shape is a list of [`Stage`]s (k6's ramping VUs, Locust's load shapes): during
//! a stage the cluster moves towards the stage's `users` at its `spawn_rate`, or, when
//! the stage gives none, at the rate that reaches the target exactly at the stage's end
//! (a linear ramp). Step load and spike are written as their own tables and expanded
//! into stages here, so the master drives one thing.

use std::time::Duration;

/// One stage of a shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    /// How long the stage lasts.
    pub duration: Duration,
    /// Users the cluster moves towards during the stage.
    pub users: u32,
    /// Users started (or stopped) per second, cluster-wide; None = ramp over the stage.
    pub spawn_rate: Option<f64>,
}

/// A whole shape: its stages, in order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Shape {
    /// The stages, run one after the other.
    pub stages: Vec<Stage>,
}

/// What the cluster should run at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Target {
    /// Users the cluster should be running (or ramping to).
    pub users: u32,
    /// Users started (or stopped) per second, cluster-wide, to get there.
    pub spawn_rate: f64,
    /// Index of the stage in force (the last one once the shape is over).
    pub stage: usize,
}

/// Slowest ramp we send: a ramp rate of 0 (a stage that keeps its users) still needs
/// a positive rate on the wire.
const MIN_RATE: f64 = 0.001;

impl Shape {
    /// The shape's whole length.
    pub fn duration(&self) -> Duration {
        self.stages.iter().map(|s| s.duration).sum()
    }

    /// The highest user count of any stage.
    pub fn peak_users(&self) -> u32 {
        self.stages.iter().map(|s| s.users).max().unwrap_or(0)
    }

    /// The target at `elapsed` into the run (the first stage ramps from 0); after the
    /// last stage, its target holds.
    pub fn target_at(&self, elapsed: Duration) -> Option<Target> {
        let mut from = 0u32;
        let mut begin = Duration::ZERO;
        for (i, stage) in self.stages.iter().enumerate() {
            let end = begin + stage.duration;
            if elapsed < end || i + 1 == self.stages.len() {
                let change = f64::from(stage.users.abs_diff(from));
                let secs = stage.duration.as_secs_f64();
                let rate = stage.spawn_rate.unwrap_or(if change == 0.0 {
                    // A hold: nothing to ramp, but users lost with a worker are replaced
                    // within a second.
                    f64::from(stage.users).max(1.0)
                } else if secs > 0.0 {
                    change / secs
                } else {
                    change * 1000.0
                });
                return Some(Target {
                    users: stage.users,
                    spawn_rate: rate.max(MIN_RATE),
                    stage: i,
                });
            }
            from = stage.users;
            begin = end;
        }
        None
    }

    /// When the stage after the one in force at `elapsed` begins (None: no more).
    pub fn next_change_after(&self, elapsed: Duration) -> Option<Duration> {
        let mut at = Duration::ZERO;
        for stage in &self.stages {
            at += stage.duration;
            if at > elapsed {
                return Some(at);
            }
        }
        None
    }

    /// Step load: `start` users, `step` more every `every`, up to `max` (held for one
    /// more `every`). Each step is reached at `spawn_rate` (None: within the step).
    pub fn step(start: u32, step: u32, every: Duration, max: u32, spawn_rate: Option<f64>) -> Shape {
        // Without a rate, each step (and the start) is reached within a tenth of a step.
        let rate = spawn_rate
            .unwrap_or_else(|| f64::from(start.max(step)) * 10.0 / every.as_secs_f64().max(0.001))
            .max(1.0);
        let mut stages = Vec::new();
        let mut users = start.min(max);
        loop {
            stages.push(Stage {
                duration: every,
                users,
                spawn_rate: Some(rate),
            });
            if users >= max || step == 0 {
                break;
            }
            users = users.saturating_add(step).min(max);
        }
        Shape { stages }
    }

    /// Spike: `users` for `before`, a jump to `peak` held for `hold`, back to `users`
    /// for `after`. The jump and the return happen at `spawn_rate` (None: as fast as the
    /// workers start users, within a second).
    pub fn spike(
        users: u32,
        peak: u32,
        before: Duration,
        hold: Duration,
        after: Duration,
        spawn_rate: Option<f64>,
    ) -> Shape {
        let jump = spawn_rate.unwrap_or(f64::from(peak.max(1)));
        Shape {
            stages: vec![
                Stage {
                    duration: before,
                    users,
                    spawn_rate: Some(jump),
                },
                Stage {
                    duration: hold,
                    users: peak,
                    spawn_rate: Some(jump),
                },
                Stage {
                    duration: after,
                    users,
                    spawn_rate: Some(jump),
                },
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn stages_ramp_to_their_target_by_their_end_or_at_their_rate() {
        let shape = Shape {
            stages: vec![
                Stage {
                    duration: s(10),
                    users: 20,
                    spawn_rate: None,
                },
                Stage {
                    duration: s(30),
                    users: 20,
                    spawn_rate: None,
                },
                Stage {
                    duration: s(5),
                    users: 0,
                    spawn_rate: Some(8.0),
                },
            ],
        };
        assert_eq!(shape.duration(), s(45));
        assert_eq!(shape.peak_users(), 20);
        let at = |t: u64| shape.target_at(s(t)).map(|t| (t.users, t.spawn_rate, t.stage));
        // 0 -> 20 over 10 s: 2 users/s.
        assert_eq!(at(0), Some((20, 2.0, 0)));
        assert_eq!(at(9), Some((20, 2.0, 0)));
        // Hold: no ramp; a lost worker's users come back within a second.
        assert_eq!(at(10), Some((20, 20.0, 1)));
        assert_eq!(at(40), Some((0, 8.0, 2)));
        // After the end the last target holds.
        assert_eq!(at(100), Some((0, 8.0, 2)));
        assert_eq!(shape.next_change_after(s(3)), Some(s(10)));
        assert_eq!(shape.next_change_after(s(10)), Some(s(40)));
        assert_eq!(shape.next_change_after(s(45)), None);
        assert_eq!(Shape::default().target_at(s(1)), None);
    }

    #[test]
    fn step_load_climbs_to_its_max_and_holds_one_step() {
        let shape = Shape::step(10, 20, s(120), 55, Some(5.0));
        let users: Vec<u32> = shape.stages.iter().map(|s| s.users).collect();
        assert_eq!(users, [10, 30, 50, 55]);
        assert_eq!(shape.duration(), s(480));
        assert!(shape.stages.iter().all(|s| s.spawn_rate == Some(5.0)));
        // No rate given: each step is reached within a tenth of its time.
        let fast = Shape::step(10, 10, s(10), 30, None);
        assert_eq!(fast.stages[1].spawn_rate, Some(10.0));
        assert_eq!(Shape::step(5, 0, s(1), 100, None).stages.len(), 1);
    }

    #[test]
    fn a_spike_jumps_and_returns() {
        let shape = Shape::spike(10, 200, s(60), s(30), s(60), None);
        let users: Vec<u32> = shape.stages.iter().map(|s| s.users).collect();
        assert_eq!(users, [10, 200, 10]);
        assert_eq!(shape.target_at(s(61)).unwrap().spawn_rate, 200.0);
        assert_eq!(shape.duration(), s(150));
    }
}
