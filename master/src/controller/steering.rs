//! Web commands: how the web API steers the run. Commands (start, retarget, stop)
//! arrive over a bounded channel into the controller's `select!`; what the run was
//! started with goes back over a `watch` channel, for the web API's state and the
//! reports. The web side holds a [`Steering`], the controller a [`Steered`].

use tokio::sync::{mpsc, oneshot, watch};

use crate::report::RunInfo;

/// Commands waiting for the controller. A person clicking sends a few; the
/// controller takes them within a tick, so 16 is ample. A retarget or stop that finds
/// the queue full or closed is dropped: the controller is not listening then (the
/// run is stopping or over).
const COMMAND_QUEUE: usize = 16;

/// A start from the web UI (`--start-from-ui`): users and spawn rate (a constant-users
/// run, as in Locust), and optionally another host and a run time.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Start {
    /// Users to run, cluster-wide.
    pub users: u32,
    /// Users started per second.
    pub spawn_rate: f64,
    /// Another target host than the scenario's.
    pub host: Option<String>,
    /// Seconds; none runs until stopped.
    pub run_time_s: Option<f64>,
}

/// A change of load asked for during the run: users and spawn rate (closed model) or
/// the arrival rate (open model). It replaces any shape from then on.
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Retarget {
    /// New users cluster-wide (None = keep).
    pub users: Option<u32>,
    /// New spawn rate, users/s (None = keep).
    pub spawn_rate: Option<f64>,
    /// New arrival rate, arrivals/s (open model only).
    pub arrival_rate: Option<f64>,
}

/// One command from the web API to the controller.
#[derive(Debug)]
pub(crate) enum Command {
    /// `--start-from-ui`: start the run; the answer says whether this start was taken
    /// (false: a start was already asked for).
    Start(Start, oneshot::Sender<bool>),
    /// Change the load from now on.
    Retarget(Retarget),
    /// Stop the run, for this reason.
    Stop(String),
}

/// The web API's handle on the controller.
#[derive(Debug, Clone)]
pub struct Steering {
    commands: mpsc::Sender<Command>,
    started: watch::Receiver<Option<Start>>,
}

/// The controller's end of the [`Steering`] channels.
#[derive(Debug)]
pub struct Steered {
    pub(crate) commands: mpsc::Receiver<Command>,
    started: watch::Sender<Option<Start>>,
}

/// A connected pair: the web API's end and the controller's.
pub fn channel() -> (Steering, Steered) {
    let (commands_tx, commands) = mpsc::channel(COMMAND_QUEUE);
    let (started_tx, started) = watch::channel(None);
    (
        Steering {
            commands: commands_tx,
            started,
        },
        Steered {
            commands,
            started: started_tx,
        },
    )
}

impl Steering {
    /// Asks the controller to start the run (`--start-from-ui`); false when a start
    /// was already asked for (or the run is past starting).
    pub async fn start(&self, start: Start) -> bool {
        let (answer, accepted) = oneshot::channel();
        if self.commands.send(Command::Start(start, answer)).await.is_err() {
            return false;
        }
        accepted.await.unwrap_or(false)
    }

    /// Asks the controller for a new target (applied within a tick).
    pub fn retarget(&self, r: Retarget) {
        let _ = self.commands.try_send(Command::Retarget(r));
    }

    /// Asks the controller to stop the run, giving `reason` for the report.
    pub fn stop(&self, reason: &str) {
        let _ = self.commands.try_send(Command::Stop(reason.to_string()));
    }

    /// The run as asked for: `base` with a web UI start's users, rate and host.
    pub fn run_info(&self, base: &RunInfo) -> RunInfo {
        let mut info = base.clone();
        if let Some(s) = self.started.borrow().as_ref() {
            info.users = s.users;
            info.spawn_rate = s.spawn_rate;
            info.arrival = None;
            if let Some(host) = &s.host {
                info.host = Some(host.clone());
            }
        }
        info
    }
}

impl Steered {
    /// Publishes the start the run was started with, for the reports.
    pub(crate) fn started(&self, start: &Start) {
        self.started.send_replace(Some(start.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(users: u32, host: Option<&str>) -> Start {
        Start {
            users,
            spawn_rate: 5.0,
            host: host.map(str::to_string),
            run_time_s: None,
        }
    }

    #[tokio::test]
    async fn a_start_is_answered_by_the_controller_and_refused_once_it_is_gone() {
        let (steering, mut steered) = channel();
        let asked = tokio::spawn({
            let steering = steering.clone();
            async move { steering.start(start(3, None)).await }
        });
        let Some(Command::Start(s, answer)) = steered.commands.recv().await else {
            panic!("a start")
        };
        assert_eq!(s.users, 3);
        answer.send(true).unwrap();
        assert!(asked.await.unwrap());
        steering.retarget(Retarget {
            users: Some(4),
            spawn_rate: None,
            arrival_rate: None,
        });
        steering.stop("why");
        assert!(matches!(steered.commands.recv().await, Some(Command::Retarget(r)) if r.users == Some(4)));
        assert!(matches!(steered.commands.recv().await, Some(Command::Stop(why)) if why == "why"));
        drop(steered);
        assert!(!steering.start(start(3, None)).await, "no controller: no start");
        steering.stop("nobody listens");
    }

    #[test]
    fn the_run_info_shows_the_web_start_once_published() {
        let (steering, steered) = channel();
        let base = RunInfo {
            scenario: "s.toml".into(),
            users: 10,
            spawn_rate: 1.0,
            host: Some("http://file".into()),
            arrival: None,
            events_per_request: Default::default(),
            load_varies: false,
        };
        assert_eq!(steering.run_info(&base).users, 10);
        steered.started(&start(3, Some("http://ui")));
        let info = steering.run_info(&base);
        assert_eq!(
            (info.users, info.spawn_rate, info.host.as_deref()),
            (3, 5.0, Some("http://ui"))
        );
        drop(steered);
        assert_eq!(steering.run_info(&base).users, 3, "kept after the controller ends");
    }
}
