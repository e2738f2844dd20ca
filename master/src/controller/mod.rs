//! Drives one run: wait for workers, start, keep every worker's absolute targets
//! right as workers join or are lost, feed the live view, stop, collect the final
//! reports, and hand back the run's summary.
//!
//! The `Controller` goes through three phases, one file each: `waiting` (for the
//! workers, or a start from the web UI), `drive` (a tick every 250 ms or sooner:
//! losses, the `load` source's answer to "what should run now", the `sinks` fed
//! each second), and `collect` (stop, then every worker's final report). Web
//! commands arrive over the [`steering`] channel into its `select!`.

mod collect;
mod drive;
pub mod load;
mod replay;
mod sinks;
pub mod steering;
mod waiting;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tracing::warn;

use crate::cluster::Cluster;
use crate::hunt::Hunt;
use crate::report::RunSummary;
use crate::threshold_eval::Thresholds;
use barrage_common::shape::Shape;

pub use steering::{Retarget, Start, Steered, Steering};

/// How one run is to go: its load, its length, its workers, what it shows.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Constant load: users and spawn rate (users is the peak when `shape` is set).
    pub users: u32,
    /// Users started per second, cluster-wide.
    pub spawn_rate: f64,
    /// Users over time (stages, step, spike); None = `users` throughout.
    pub shape: Option<Shape>,
    /// The open model: arrivals on a schedule instead of users (`users` is 0).
    pub arrival: Option<barrage_common::scenario::Arrival>,
    /// How long the load runs (None = until stopped).
    pub run_time: Option<Duration>,
    /// Workers to wait for before the start (at least one).
    pub expect_workers: u32,
    /// How long to wait for them (None = as long as it takes).
    pub expect_workers_max_wait: Option<Duration>,
    /// How long users get to finish once stopped.
    pub stop_timeout: Duration,
    /// Silence (or a disconnect) after which a worker is declared lost.
    pub liveness_timeout: Duration,
    /// Host override sent with every assignment ("" = scenario's).
    pub host: Option<String>,
    /// Wait for a start from the web UI (`--start-from-ui`) once the workers are in.
    pub start_from_ui: bool,
    /// Print the live view every `console_every` (None = quiet).
    pub console_every: Option<Duration>,
    /// Redraw a one-line progress (elapsed, remaining, users, req/s) every second:
    /// when stdout is a terminal and the live view is on.
    pub progress_line: bool,
    /// Class names, weights and fixed counts from the plan, in plan order.
    pub classes: Vec<(String, u32, Option<u32>)>,
    /// What the run does when a worker is lost.
    pub on_worker_loss: WorkerLossPolicy,
    /// Pass/fail criteria; those with `abort_on_fail` are watched during the run.
    pub thresholds: Arc<Thresholds>,
    /// `barrage hunt`: the search decides the users, step by step, and when to stop.
    pub hunt: Option<Arc<std::sync::Mutex<Hunt>>>,
    /// `--csv`: the stats history, a row appended every second of the run.
    pub csv_history: Option<crate::report::csv::Csv>,
}

/// What the run does when a worker is lost (`--on-worker-loss`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum WorkerLossPolicy {
    /// Give the lost worker's users to the others: the load stays as asked.
    #[default]
    Rebalance,
    /// Carry on with the remaining workers' users only.
    Continue,
    /// Stop the run; exit code 3.
    Abort,
}

/// Why a run could not start (or, for [`RunError::AllWorkersLost`], go on).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Too few workers joined within `--expect-workers-max-wait`.
    #[error("only {joined} of {expected} workers joined within {waited:?}")]
    NotEnoughWorkers {
        /// Workers connected when the wait ended.
        joined: usize,
        /// Workers expected.
        expected: u32,
        /// How long it waited.
        waited: Duration,
    },
    /// Every worker was lost during the run (the report is still written).
    #[error("every worker was lost; nothing left to run the load")]
    AllWorkersLost,
    /// A signal or the web API stopped it before the start.
    #[error("interrupted before the run started")]
    Interrupted,
}

/// The longest the controller sleeps between two looks at the run.
const TICK: Duration = Duration::from_millis(250);

/// One run's driver: the cluster it steers, the configuration (with a web UI start
/// folded in), and the web API's commands.
pub(crate) struct Controller {
    cluster: Arc<Cluster>,
    cfg: RunConfig,
    steered: Steered,
    /// A retarget from the web API not applied yet.
    retarget: Option<Retarget>,
}

/// Runs the load test on `cluster` to its end: waits for the workers, drives the
/// load, stops and collects the final reports. `steered` brings the web API's
/// commands; `shutdown` (a signal) stops the run.
pub async fn run(
    cluster: Arc<Cluster>,
    cfg: RunConfig,
    steered: Steered,
    shutdown: impl Future<Output = ()>,
) -> Result<RunSummary, RunError> {
    tokio::pin!(shutdown);
    let mut c = Controller {
        cluster,
        cfg,
        steered,
        retarget: None,
    };
    let load = match c.wait_for_workers(&mut shutdown).await? {
        Some(start) => c.started_from_ui(&start),
        None => load::LoadSource::new(&c.cfg),
    };
    let start = c.begin(&load);
    let (ended, load) = c.drive(start, load, &mut shutdown).await;
    let duration = start.elapsed();
    let missing_finals = c.stop_and_collect(&ended.stop_reason, duration).await;
    if !missing_finals.is_empty() {
        warn!(workers = ?missing_finals, "no final report from some workers; their last interval is missing");
    }
    c.cluster.registry().set_phase(crate::cluster::Phase::Done);
    Ok(RunSummary {
        arrival: load.into_arrival(),
        aborted: ended.aborted,
        threshold_abort: ended.threshold_abort,
        duration,
        stop_reason: ended.stop_reason,
        missing_finals,
    })
}

impl Controller {
    /// Folds a web UI start into the configuration: its host and run time (without
    /// one it runs until stopped, whatever the file said); the load it asked for.
    fn started_from_ui(&mut self, start: &Start) -> load::LoadSource {
        if start.host.is_some() {
            self.cfg.host = start.host.clone();
        }
        self.cfg.run_time = start.run_time_s.map(Duration::from_secs_f64);
        load::LoadSource::started_from_ui(&self.cfg, start)
    }
}
