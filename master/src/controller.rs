//! Drives one run: wait for workers, start, keep every worker's absolute targets
//! right as workers join or are lost, show the live view, stop, collect the final
//! reports, and hand back the merged result.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::cluster::{Cluster, Phase, Targets};
use crate::hunt::{Action, Hunt};
use crate::report::{RunSummary, console};
use crate::thresholds::Thresholds;
use barrage_common::shape::Shape;

#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Constant load: users and spawn rate (users is the peak when `shape` is set).
    pub users: u32,
    pub spawn_rate: f64,
    /// Users over time (stages, step, spike); None = `users` throughout.
    pub shape: Option<Shape>,
    /// The open model: arrivals on a schedule instead of users (`users` is 0).
    pub arrival: Option<barrage_common::scenario::Arrival>,
    pub run_time: Option<Duration>,
    pub expect_workers: u32,
    pub expect_workers_max_wait: Option<Duration>,
    pub stop_timeout: Duration,
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

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("only {joined} of {expected} workers joined within {waited:?}")]
    NotEnoughWorkers {
        joined: usize,
        expected: u32,
        waited: Duration,
    },
    #[error("every worker was lost; nothing left to run the load")]
    AllWorkersLost,
    #[error("interrupted before the run started")]
    Interrupted,
}

const TICK: Duration = Duration::from_millis(250);

pub async fn run(
    cluster: Arc<Cluster>,
    mut cfg: RunConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<RunSummary, RunError> {
    tokio::pin!(shutdown);
    // 1. Wait for workers.
    let wait_start = Instant::now();
    let mut announced = usize::MAX;
    // Workers that joined early hear from us while they wait for the others.
    let mut next_wait_heartbeat = Instant::now();
    loop {
        let joined = cluster.registry().connected();
        if joined != announced {
            info!(joined, expected = cfg.expect_workers, "waiting for workers");
            announced = joined;
        }
        let enough = joined >= cfg.expect_workers.max(1) as usize;
        if enough && !cfg.start_from_ui {
            break;
        }
        if enough && let Some(start) = cluster.take_start() {
            info!(?start, "started from the web UI");
            cfg.users = start.users;
            cfg.spawn_rate = start.spawn_rate;
            cfg.shape = None;
            cfg.arrival = None;
            if start.host.is_some() {
                cfg.host = start.host;
            }
            // Without a run time it runs until stopped, whatever the file said.
            cfg.run_time = start.run_time_s.map(Duration::from_secs_f64);
            break;
        }
        if !enough
            && let Some(max) = cfg.expect_workers_max_wait
            && wait_start.elapsed() >= max
        {
            cluster.registry().set_phase(Phase::Done);
            return Err(RunError::NotEnoughWorkers {
                joined,
                expected: cfg.expect_workers,
                waited: max,
            });
        }
        if Instant::now() >= next_wait_heartbeat {
            next_wait_heartbeat = Instant::now() + cluster.opts().heartbeat_interval;
            cluster.registry().heartbeat(Duration::ZERO);
        }
        tokio::select! {
            _ = cluster.changed().notified() => {}
            _ = tokio::time::sleep(TICK) => {}
            _ = &mut shutdown => {
                cluster.registry().set_phase(Phase::Done);
                return Err(RunError::Interrupted);
            }
        }
    }

    // 2. Start.
    let start = Instant::now();
    {
        cluster.registry().start_run(start);
    }
    cluster.aggregator().start_clock(start);
    info!(users = cfg.users, spawn_rate = cfg.spawn_rate, run_time = ?cfg.run_time, "run started");
    // What the workers were last told, and at which membership.
    let mut balanced_at = u64::MAX;
    let mut sent_target: Option<Load> = None;
    // The load in force when not shaped: changed by the hunt or the web API.
    let mut arrival = cfg.arrival.clone();
    let mut fixed: Option<(u32, f64)> = None;
    let mut hunt_level: Option<u32> = None;
    let mut next_console = cfg.console_every.map(|e| start + e);
    let mut next_heartbeat = start;
    let stop_reason;
    let mut aborted: Option<String> = None;
    let mut threshold_abort = None;
    let watch_thresholds = cfg.thresholds.list.iter().any(|t| t.abort_on_fail);
    let mut next_threshold_check = start + Duration::from_secs(1);
    // A history row at the start, then every second (Locust's CSV_STATS_INTERVAL_SEC).
    if let Some(csv) = &cfg.csv_history {
        csv.start();
    }
    let mut next_history_row = start;
    let mut next_progress = start + Duration::from_secs(1);
    loop {
        let now = Instant::now();
        if let Some(rt) = cfg.run_time
            && now.duration_since(start) >= rt
        {
            stop_reason = format!("run time of {} reached", barrage_common::duration::format(rt));
            break;
        }
        let lost = cluster.declare_lost(cfg.liveness_timeout);
        if let Some(id) = lost.first()
            && cfg.on_worker_loss == WorkerLossPolicy::Abort
        {
            stop_reason = format!("worker {id} lost (--on-worker-loss abort)");
            aborted = Some(format!("worker {id} was lost and --on-worker-loss is abort"));
            break;
        }
        let membership = cluster.registry().membership();
        if !lost.is_empty() && cfg.on_worker_loss == WorkerLossPolicy::Continue {
            // Keep the others' targets: the lost users are not replaced.
            balanced_at = membership;
        }
        // With no worker left the run cannot go on; the report is still written.
        if cluster.registry().all_lost() {
            stop_reason = "every worker was lost".to_string();
            aborted = Some(RunError::AllWorkersLost.to_string());
            break;
        }
        let hunted = cfg.hunt.as_ref().map(|h| {
            let agg = cluster.aggregator();
            h.lock().map_or(Action::Stop("hunt state poisoned".into()), |mut h| {
                h.tick(now.duration_since(start), &agg)
            })
        });
        let elapsed = now.duration_since(start);
        let mut why = "shape";
        match hunted {
            Some(Action::Stop(why)) => {
                stop_reason = format!("hunt: {why}");
                break;
            }
            Some(Action::Users(level)) if hunt_level != Some(level) => {
                hunt_level = Some(level);
                why = "hunt";
                match &mut arrival {
                    // Rate mode: the level is arrivals per second from now on.
                    Some(a) if sent_target.is_some() => {
                        a.schedule = a.schedule.with_rate_from(elapsed, f64::from(level))
                    }
                    Some(_) => {}
                    None => fixed = Some((level, cfg.spawn_rate)),
                }
            }
            _ => {}
        }
        if let Some(r) = cluster.take_retarget() {
            why = "web API";
            match &mut arrival {
                Some(a) => {
                    if let Some(rate) = r.arrival_rate {
                        a.schedule = a.schedule.with_rate_from(elapsed, rate);
                    }
                }
                None => {
                    let now_running = match &sent_target {
                        Some(Load::Users(u, r)) => (*u, *r),
                        _ => (cfg.users, cfg.spawn_rate),
                    };
                    let (users, rate) = fixed.unwrap_or(now_running);
                    fixed = Some((r.users.unwrap_or(users), r.spawn_rate.unwrap_or(rate)));
                }
            }
        }
        let target = match (&arrival, fixed, &cfg.shape) {
            (Some(a), _, _) => Load::Arrivals(a.clone()),
            (None, Some((users, rate)), _) => Load::Users(users, rate),
            (None, None, Some(shape)) => shape
                .target_at(elapsed)
                .map_or(Load::Users(cfg.users, cfg.spawn_rate), |t| {
                    Load::Users(t.users, t.spawn_rate)
                }),
            (None, None, None) => Load::Users(cfg.users, cfg.spawn_rate),
        };
        if membership != balanced_at || sent_target.as_ref() != Some(&target) {
            if sent_target.is_some() && sent_target.as_ref() != Some(&target) {
                let what = match &target {
                    Load::Users(users, rate) => format!("{users} users at {rate:.4} users/s"),
                    Load::Arrivals(a) => format!("{:.2} arrivals/s", a.schedule.rate_at(elapsed.as_secs_f64() + 0.01)),
                };
                info!(target = %what, "{why}: new target");
                cluster.registry().note_event_at(elapsed, format!("{why}: {what}"));
            }
            balanced_at = membership;
            rebalance(&cluster, &cfg, &target);
            sent_target = Some(target);
        }
        if now >= next_heartbeat {
            next_heartbeat = now + cluster.opts().heartbeat_interval;
            cluster.registry().heartbeat(now.duration_since(start));
        }
        if watch_thresholds && now >= next_threshold_check {
            next_threshold_check = now + Duration::from_secs(1);
            let failed = cfg
                .thresholds
                .first_abort(&cluster.aggregator(), now.duration_since(start));
            if let Some(failed) = failed {
                stop_reason = format!(
                    "threshold `{}` failed at {:.0}s ({}); abort_on_fail",
                    failed.threshold,
                    now.duration_since(start).as_secs_f64(),
                    failed.shown
                );
                warn!(reason = %stop_reason, "aborting the run");
                threshold_abort = Some(failed);
                break;
            }
        }
        if let Some(csv) = &cfg.csv_history
            && now >= next_history_row
        {
            next_history_row += Duration::from_secs(1);
            let users = cluster.live_users();
            csv.history_row(&cluster.aggregator(), users, now.duration_since(start));
        }
        if let (Some(at), Some(every)) = (next_console, cfg.console_every)
            && now >= at
        {
            next_console = Some(at + every);
            if cfg.progress_line {
                console::clear_progress();
            }
            let users = cluster.live_users();
            console::print_live(&cluster.aggregator(), users, now.duration_since(start), every);
        }
        if cfg.progress_line && now >= next_progress {
            next_progress += Duration::from_secs(1);
            let target = match &sent_target {
                Some(Load::Users(users, rate)) => console::Target::Users(*users, *rate),
                Some(Load::Arrivals(a)) => {
                    console::Target::Rate(a.schedule.rate_at(now.duration_since(start).as_secs_f64()))
                }
                None => console::Target::Users(0, 0.0),
            };
            let users = cluster.live_users();
            console::print_progress(
                &cluster.aggregator(),
                users,
                now.duration_since(start),
                cfg.run_time,
                target,
            );
        }
        // Wake at the next stage change rather than up to a tick after it.
        let elapsed = now.duration_since(start);
        let nap = cfg
            .shape
            .as_ref()
            .and_then(|s| s.next_change_after(elapsed))
            .map_or(TICK, |at| (at - elapsed).min(TICK));
        tokio::select! {
            _ = tokio::time::sleep(nap) => {}
            _ = cluster.changed().notified() => {}
            _ = &mut shutdown => {
                stop_reason = cluster.stop_requested().unwrap_or_else(|| "interrupted (Ctrl-C / SIGTERM)".to_string());
                break;
            }
        }
    }

    // 3. Stop and collect every worker's final report.
    let duration = start.elapsed();
    if cfg.progress_line {
        console::clear_progress();
    }
    info!(reason = %stop_reason, "stopping the run; collecting final reports");
    let expecting = cluster.registry().stop(cfg.stop_timeout, &stop_reason);
    // Users get stop_timeout to finish; then a report interval and some slack.
    let deadline = Instant::now() + cfg.stop_timeout + Duration::from_secs(5);
    // Heartbeats on their own interval: this loop wakes on every final report, and a
    // heartbeat to every worker per wake-up is N^2 messages (1,000 workers overflowed
    // their queues and lost their final acks in the simulated-worker benchmark).
    let mut next_heartbeat = Instant::now();
    let missing_finals = loop {
        let (missing, closing) = final_reports_due(&cluster, &expecting, cfg.liveness_timeout);
        if (missing.is_empty() && !closing) || Instant::now() >= deadline {
            break missing;
        }
        cluster.declare_lost(cfg.liveness_timeout);
        if Instant::now() >= next_heartbeat {
            next_heartbeat = Instant::now() + cluster.opts().heartbeat_interval;
            cluster.registry().heartbeat(duration);
        }
        tokio::select! {
            _ = cluster.changed().notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    };
    if !missing_finals.is_empty() {
        warn!(workers = ?missing_finals, "no final report from some workers; their last interval is missing");
    }
    cluster.registry().set_phase(Phase::Done);
    Ok(RunSummary {
        arrival,
        aborted,
        threshold_abort,
        duration,
        stop_reason,
        missing_finals,
    })
}

/// The workers asked to stop whose final report is still due (not lost meanwhile),
/// and whether a fenced worker still talking may yet hand in its closing report.
fn final_reports_due(cluster: &Cluster, expecting: &[String], liveness: Duration) -> (Vec<String>, bool) {
    // Copied out of the registry, then the aggregator is read: never both locks.
    let (active, talking) = {
        let reg = cluster.registry();
        (reg.active_ids(), reg.lost_but_talking(liveness))
    };
    let agg = cluster.aggregator();
    let missing = expecting
        .iter()
        .filter(|id| !agg.workers.get(*id).is_some_and(|p| p.final_seen))
        .filter(|id| active.contains(id))
        .cloned()
        .collect();
    let closing = talking.iter().any(|id| {
        agg.workers
            .get(id)
            .is_some_and(|p| p.fenced && p.had_load && !p.final_seen)
    });
    (missing, closing)
}

/// What the workers are to run: users (and their spawn rate), or arrivals.
#[derive(Debug, Clone, PartialEq)]
enum Load {
    Users(u32, f64),
    Arrivals(barrage_common::scenario::Arrival),
}

/// Sends every active worker its absolute targets (nothing when none is left).
fn rebalance(cluster: &Cluster, cfg: &RunConfig, load: &Load) {
    let (users, spawn_rate, arrival) = match load {
        Load::Users(users, rate) => (*users, *rate, None),
        Load::Arrivals(a) => (0, cfg.spawn_rate, Some(a)),
    };
    cluster.registry().assign(&Targets {
        users,
        spawn_rate,
        arrival,
        classes: &cfg.classes,
        host: cfg.host.as_deref().unwrap_or_default(),
        run_time: cfg.run_time,
    });
}
