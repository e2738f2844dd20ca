//! The load source: what should run now. One answer for every way a run's load is
//! set: constant users, a shape over time, an arrival rate (the open model), the
//! hunt's steps, a start from the web UI, and retargets from the web API.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use barrage_common::scenario::Arrival;
use barrage_common::shape::Shape;

use super::RunConfig;
use super::steering::{Retarget, Start};
use crate::cluster::Cluster;
use crate::hunt::{Action, Hunt};

/// What the workers are to run: users (and their spawn rate), or arrivals.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Load {
    /// Users cluster-wide and their spawn rate (users/s).
    Users(u32, f64),
    /// Arrivals on a schedule (the open model).
    Arrivals(Arrival),
}

/// What changed the load, as the event line names it.
pub(crate) type Why = &'static str;

/// The run's load over time, as configured and as changed since.
#[derive(Debug)]
pub(crate) struct LoadSource {
    /// Constant users (the peak when shaped).
    users: u32,
    /// Users started per second.
    spawn_rate: f64,
    /// Users over time; None = `users` throughout.
    shape: Option<Shape>,
    /// The open model's schedule, with the rate changes made during the run.
    arrival: Option<Arrival>,
    /// Users set by the hunt or the web API: they replace the shape from then on.
    fixed: Option<(u32, f64)>,
    /// `barrage hunt`: the search decides the users, step by step, and when to stop.
    hunt: Option<Arc<Mutex<Hunt>>>,
    /// The hunt's level last applied.
    hunt_level: Option<u32>,
}

impl LoadSource {
    /// The load as configured.
    pub(crate) fn new(cfg: &RunConfig) -> LoadSource {
        LoadSource {
            users: cfg.users,
            spawn_rate: cfg.spawn_rate,
            shape: cfg.shape.clone(),
            arrival: cfg.arrival.clone(),
            fixed: None,
            hunt: cfg.hunt.clone(),
            hunt_level: None,
        }
    }

    /// A start from the web UI: its users, constant, whatever the file said.
    pub(crate) fn started_from_ui(cfg: &RunConfig, start: &Start) -> LoadSource {
        LoadSource {
            users: start.users,
            spawn_rate: start.spawn_rate,
            shape: None,
            arrival: None,
            ..LoadSource::new(cfg)
        }
    }

    /// The spawn rate as configured (sent with arrivals too).
    pub(crate) fn spawn_rate(&self) -> f64 {
        self.spawn_rate
    }

    /// The users as configured (the peak when shaped; 0 in the open model).
    pub(crate) fn users(&self) -> u32 {
        self.users
    }

    /// Asks the hunt (if any) for its step at `elapsed`: Err to stop the run with
    /// this reason, Ok(Some) when the load changed. `sent`: whether targets were sent
    /// already (a rate change needs a running schedule).
    pub(crate) fn hunt(&mut self, elapsed: Duration, cluster: &Cluster, sent: bool) -> Result<Option<Why>, String> {
        let Some(hunt) = &self.hunt else {
            return Ok(None);
        };
        let action = {
            let agg = cluster.aggregator();
            hunt.lock().map_or(Action::Stop("hunt state poisoned".into()), |mut h| {
                h.tick(elapsed, &agg)
            })
        };
        match action {
            Action::Stop(why) => Err(format!("hunt: {why}")),
            Action::Users(level) if self.hunt_level != Some(level) => {
                self.hunt_level = Some(level);
                match &mut self.arrival {
                    // Rate mode: the level is arrivals per second from now on.
                    Some(a) if sent => a.schedule = a.schedule.with_rate_from(elapsed, f64::from(level)),
                    Some(_) => {}
                    None => self.fixed = Some((level, self.spawn_rate)),
                }
                Ok(Some("hunt"))
            }
            Action::Users(_) => Ok(None),
        }
    }

    /// Applies a retarget from the web API at `elapsed`; `sent` is the load the
    /// workers run now.
    pub(crate) fn retarget(&mut self, r: Retarget, elapsed: Duration, sent: Option<&Load>) -> Why {
        match &mut self.arrival {
            Some(a) => {
                if let Some(rate) = r.arrival_rate {
                    a.schedule = a.schedule.with_rate_from(elapsed, rate);
                }
            }
            None => {
                let now_running = match sent {
                    Some(Load::Users(u, r)) => (*u, *r),
                    _ => (self.users, self.spawn_rate),
                };
                let (users, rate) = self.fixed.unwrap_or(now_running);
                self.fixed = Some((r.users.unwrap_or(users), r.spawn_rate.unwrap_or(rate)));
            }
        }
        "web API"
    }

    /// What should run at `elapsed`.
    pub(crate) fn at(&self, elapsed: Duration) -> Load {
        match (&self.arrival, self.fixed, &self.shape) {
            (Some(a), _, _) => Load::Arrivals(a.clone()),
            (None, Some((users, rate)), _) => Load::Users(users, rate),
            (None, None, Some(shape)) => shape
                .target_at(elapsed)
                .map_or(Load::Users(self.users, self.spawn_rate), |t| {
                    Load::Users(t.users, t.spawn_rate)
                }),
            (None, None, None) => Load::Users(self.users, self.spawn_rate),
        }
    }

    /// The next time after `elapsed` the shape changes the load, if it does.
    pub(crate) fn next_change_after(&self, elapsed: Duration) -> Option<Duration> {
        self.shape.as_ref().and_then(|s| s.next_change_after(elapsed))
    }

    /// The open model's schedule as it ended (rate changes included).
    pub(crate) fn into_arrival(self) -> Option<Arrival> {
        self.arrival
    }
}

impl Load {
    /// The load in words, for the log and the report's events.
    pub(crate) fn describe(&self, elapsed: Duration) -> String {
        match self {
            Load::Users(users, rate) => format!("{users} users at {rate:.4} users/s"),
            Load::Arrivals(a) => format!("{:.2} arrivals/s", a.schedule.rate_at(elapsed.as_secs_f64() + 0.01)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use barrage_common::shape::Stage;

    fn cfg(shape: Option<Shape>) -> RunConfig {
        RunConfig {
            users: 10,
            spawn_rate: 2.0,
            shape,
            arrival: None,
            run_time: None,
            expect_workers: 1,
            expect_workers_max_wait: None,
            stop_timeout: Duration::from_secs(1),
            liveness_timeout: Duration::from_secs(5),
            host: None,
            start_from_ui: false,
            console_every: None,
            progress_line: false,
            classes: vec![("a".into(), 1, None)],
            on_worker_loss: super::super::WorkerLossPolicy::Rebalance,
            thresholds: Arc::default(),
            hunt: None,
            csv_history: None,
        }
    }

    fn two_stages() -> Shape {
        Shape {
            stages: vec![
                Stage {
                    duration: Duration::from_secs(10),
                    users: 4,
                    spawn_rate: Some(1.0),
                },
                Stage {
                    duration: Duration::from_secs(10),
                    users: 8,
                    spawn_rate: Some(3.0),
                },
            ],
        }
    }

    #[test]
    fn what_runs_now_comes_from_the_constant_load_or_the_shape() {
        let constant = LoadSource::new(&cfg(None));
        assert_eq!(constant.at(Duration::from_secs(99)), Load::Users(10, 2.0));
        assert_eq!(constant.next_change_after(Duration::ZERO), None);
        let shaped = LoadSource::new(&cfg(Some(two_stages())));
        assert_eq!(shaped.at(Duration::from_secs(1)), Load::Users(4, 1.0));
        assert_eq!(shaped.at(Duration::from_secs(11)), Load::Users(8, 3.0));
        assert_eq!(
            shaped.next_change_after(Duration::from_secs(1)),
            Some(Duration::from_secs(10))
        );
    }

    #[test]
    fn a_retarget_replaces_the_shape_and_keeps_what_it_does_not_name() {
        let mut load = LoadSource::new(&cfg(Some(two_stages())));
        let running = load.at(Duration::from_secs(1));
        let why = load.retarget(
            Retarget {
                users: Some(20),
                spawn_rate: None,
                arrival_rate: None,
            },
            Duration::from_secs(1),
            Some(&running),
        );
        assert_eq!(why, "web API");
        // The rate in force (the first stage's) stays; the shape no longer applies.
        assert_eq!(load.at(Duration::from_secs(15)), Load::Users(20, 1.0));
        load.retarget(
            Retarget {
                users: None,
                spawn_rate: Some(5.0),
                arrival_rate: None,
            },
            Duration::from_secs(2),
            Some(&Load::Users(20, 1.0)),
        );
        assert_eq!(load.at(Duration::from_secs(15)), Load::Users(20, 5.0));
    }

    #[test]
    fn a_start_from_the_web_ui_runs_its_users_whatever_the_file_said() {
        let start = Start {
            users: 3,
            spawn_rate: 100.0,
            host: None,
            run_time_s: Some(2.0),
        };
        let load = LoadSource::started_from_ui(&cfg(Some(two_stages())), &start);
        assert_eq!(load.at(Duration::from_secs(15)), Load::Users(3, 100.0));
        assert_eq!((load.users(), load.spawn_rate()), (3, 100.0));
        assert!(load.into_arrival().is_none());
    }

    #[test]
    fn a_load_in_words_names_users_and_rate() {
        assert_eq!(
            Load::Users(5, 1.5).describe(Duration::ZERO),
            "5 users at 1.5000 users/s"
        );
    }
}
