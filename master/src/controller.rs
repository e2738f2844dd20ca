//! Drives one run: wait for workers, start, keep every worker's absolute targets
//! right as workers join or are lost, show the live view, stop, collect the final
//! reports, and hand back the merged result.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use barrage_proto::v1::{self, master_message::Kind as MKind};

use crate::cluster::{Cluster, Phase};
use crate::hunt::{Action, Hunt};
use crate::partition::{class_totals, partition_totals};
use crate::report::console;
use crate::thresholds::{ThresholdRow, Thresholds};
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

/// How the run ended, for the report.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub duration: Duration,
    pub stop_reason: String,
    /// Workers whose final report never arrived (lost or timed out).
    pub missing_finals: Vec<String>,
    /// Why the run ended as a cluster error (exit code 3): a worker lost under
    /// `--on-worker-loss abort`, or every worker lost.
    pub aborted: Option<String>,
    /// The `abort_on_fail` threshold that stopped the run, as it stood then.
    pub threshold_abort: Option<ThresholdRow>,
    /// The open model's schedule as it ended (rate changes included).
    pub arrival: Option<barrage_common::scenario::Arrival>,
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
        let joined = cluster.registry().workers.values().filter(|w| w.tx.is_some()).count();
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
            cluster.registry().phase = Phase::Done;
            return Err(RunError::NotEnoughWorkers {
                joined,
                expected: cfg.expect_workers,
                waited: max,
            });
        }
        if Instant::now() >= next_wait_heartbeat {
            next_wait_heartbeat = Instant::now() + cluster.opts.heartbeat_interval;
            send_heartbeats(&cluster, Duration::ZERO);
        }
        tokio::select! {
            _ = cluster.changed.notified() => {}
            _ = tokio::time::sleep(TICK) => {}
            _ = &mut shutdown => {
                cluster.registry().phase = Phase::Done;
                return Err(RunError::Interrupted);
            }
        }
    }

    // 2. Start.
    let start = Instant::now();
    {
        let mut reg = cluster.registry();
        reg.phase = Phase::Running;
        reg.run_start = Some(start);
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
        let lost = declare_lost(&cluster, cfg.liveness_timeout);
        if let Some(id) = lost.first()
            && cfg.on_worker_loss == WorkerLossPolicy::Abort
        {
            stop_reason = format!("worker {id} lost (--on-worker-loss abort)");
            aborted = Some(format!("worker {id} was lost and --on-worker-loss is abort"));
            break;
        }
        let membership = cluster.registry().membership;
        if !lost.is_empty() && cfg.on_worker_loss == WorkerLossPolicy::Continue {
            // Keep the others' targets: the lost users are not replaced.
            balanced_at = membership;
        }
        // With no worker left the run cannot go on; the report is still written.
        if cluster.registry().workers.values().all(|w| w.lost) {
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
                cluster.registry().events.push((elapsed, format!("{why}: {what}")));
            }
            balanced_at = membership;
            rebalance(&cluster, &cfg, &target);
            sent_target = Some(target);
        }
        if now >= next_heartbeat {
            next_heartbeat = now + cluster.opts.heartbeat_interval;
            send_heartbeats(&cluster, now.duration_since(start));
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
            csv.history_row(&cluster, now.duration_since(start));
        }
        if let (Some(at), Some(every)) = (next_console, cfg.console_every)
            && now >= at
        {
            next_console = Some(at + every);
            if cfg.progress_line {
                console::clear_progress();
            }
            console::print_live(&cluster, now.duration_since(start), every);
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
            console::print_progress(&cluster, now.duration_since(start), cfg.run_time, target);
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
            _ = cluster.changed.notified() => {}
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
    let expecting: Vec<String> = {
        let mut reg = cluster.registry();
        reg.phase = Phase::Stopping;
        reg.command_seq += 1;
        let stop = v1::Stop {
            epoch: cluster.epoch,
            command_seq: reg.command_seq,
            stop_timeout_ms: cfg.stop_timeout.as_millis() as u64,
            reason: stop_reason.clone(),
            exit: true,
        };
        reg.stop = Some(stop.clone());
        let mut ids = Vec::new();
        for w in reg.workers.values_mut().filter(|w| !w.lost) {
            w.send(MKind::Stop(stop.clone()));
            ids.push(w.id.clone());
        }
        ids
    };
    // Users get stop_timeout to finish; then a report interval and some slack.
    let deadline = Instant::now() + cfg.stop_timeout + Duration::from_secs(5);
    // Heartbeats on their own interval: this loop wakes on every final report, and a
    // heartbeat to every worker per wake-up is N^2 messages (1,000 workers overflowed
    // their queues and lost their final acks in the simulated-worker benchmark).
    let mut next_heartbeat = Instant::now();
    let missing_finals = loop {
        let (missing, closing) = {
            let agg = cluster.aggregator();
            let reg = cluster.registry();
            let missing: Vec<String> = expecting
                .iter()
                .filter(|id| !agg.workers.get(*id).is_some_and(|p| p.final_seen))
                .filter(|id| reg.workers.get(*id).is_some_and(|w| !w.lost))
                .cloned()
                .collect();
            // Fenced workers still talking may yet hand in their closing report.
            let closing = reg.workers.values().any(|w| {
                w.lost
                    && w.last_seen.elapsed() < cfg.liveness_timeout
                    && agg
                        .workers
                        .get(&w.id)
                        .is_some_and(|p| p.fenced && p.had_load && !p.final_seen)
            });
            (missing, closing)
        };
        if (missing.is_empty() && !closing) || Instant::now() >= deadline {
            break missing;
        }
        declare_lost(&cluster, cfg.liveness_timeout);
        if Instant::now() >= next_heartbeat {
            next_heartbeat = Instant::now() + cluster.opts.heartbeat_interval;
            send_heartbeats(&cluster, duration);
        }
        tokio::select! {
            _ = cluster.changed.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    };
    if !missing_finals.is_empty() {
        warn!(workers = ?missing_finals, "no final report from some workers; their last interval is missing");
    }
    cluster.registry().phase = Phase::Done;
    Ok(RunSummary {
        arrival,
        aborted,
        threshold_abort,
        duration,
        stop_reason,
        missing_finals,
    })
}

/// One heartbeat to every connected worker.
fn send_heartbeats(cluster: &Cluster, elapsed: Duration) {
    let hb = v1::MasterHeartbeat {
        epoch: cluster.epoch,
        run_elapsed_us: micros(elapsed),
    };
    for w in cluster.registry().workers.values_mut().filter(|w| w.tx.is_some()) {
        w.send(MKind::Heartbeat(hb));
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// Marks workers silent or disconnected for longer than `timeout` as lost; returns
/// their ids.
fn declare_lost(cluster: &Cluster, timeout: Duration) -> Vec<String> {
    let mut lost = Vec::new();
    {
        let mut reg = cluster.registry();
        for w in reg.workers.values_mut().filter(|w| !w.lost) {
            let silent = w.last_seen.elapsed();
            let gone = w.disconnected_at.is_some_and(|d| d.elapsed() >= timeout);
            if gone || silent >= timeout {
                // Its session ends here: on a stream still open (a paused process),
                // Fence makes it stop its load and hand in what it holds; nothing it
                // sends after that counts, and its share goes to the others.
                w.send(MKind::Fence(v1::Fence {
                    epoch: cluster.epoch,
                    reason: format!("declared lost after {silent:.1?} of silence"),
                    close: true,
                }));
                let had_load = w.last_assign.is_some() || w.heartbeat.users > 0;
                w.lost = true;
                w.tx = None;
                w.last_assign = None;
                lost.push((w.id.clone(), silent, had_load));
            }
        }
    }
    if lost.is_empty() {
        return Vec::new();
    }
    // The aggregator is locked after the registry is released (never both at once here).
    let covered: Vec<f64> = {
        let mut agg = cluster.aggregator();
        for (id, _, had_load) in &lost {
            agg.fence(id, *had_load);
        }
        lost.iter()
            .map(|(id, _, _)| agg.workers.get(id).map_or(0.0, |p| p.last_interval_end_us as f64 / 1e6))
            .collect()
    };
    let mut reg = cluster.registry();
    let elapsed = reg.run_start.map_or(Duration::ZERO, |s| s.elapsed());
    for ((id, silent, _), covered) in lost.iter().zip(covered) {
        warn!(worker = %id, silent = ?silent, "worker lost");
        reg.events.push((
            elapsed,
            format!(
                "worker {id} lost after {silent:.1?} of silence and fenced: its figures count up to {covered:.1}s of the run (its last merged report), plus what it hands in when it closes its session"
            ),
        ));
        reg.membership += 1;
    }
    lost.into_iter().map(|(id, _, _)| id).collect()
}

/// Sends every active worker its absolute targets (nothing when none is left).
/// What the workers are to run: users (and their spawn rate), or arrivals.
#[derive(Debug, Clone, PartialEq)]
enum Load {
    Users(u32, f64),
    Arrivals(barrage_common::scenario::Arrival),
}

fn rebalance(cluster: &Cluster, cfg: &RunConfig, load: &Load) {
    let (users, spawn_rate, arrival) = match load {
        Load::Users(users, rate) => (*users, *rate, None),
        Load::Arrivals(a) => (0, cfg.spawn_rate, Some(a)),
    };
    match arrival {
        None => cluster.set_target(users, spawn_rate),
        Some(a) => cluster.set_target(0, a.schedule.rate_at(cluster.run_elapsed().as_secs_f64())),
    }
    let mut reg = cluster.registry();
    let elapsed = reg.run_start.map_or(Duration::ZERO, |s| s.elapsed());
    let ids: Vec<String> = reg
        .workers
        .values()
        .filter(|w| w.is_active())
        .map(|w| w.id.clone())
        .collect();
    if ids.is_empty() {
        return;
    }
    let weights: Vec<u32> = ids.iter().map(|id| reg.workers[id].capacity()).collect();
    // Open model: each worker its segment of the arrivals and its share of the cap,
    // from the arrival due now on (a re-split after a join or a loss).
    let arrival_shares: Option<Vec<v1::ArrivalShare>> = arrival.map(|a| {
        let from_index = a.schedule.cumulative(elapsed.as_secs_f64()).ceil().max(0.0) as u64;
        let caps = crate::partition::apportion(a.max_in_flight, &weights);
        barrage_common::arrival_schedule::Segment::split(&weights)
            .into_iter()
            .zip(caps)
            .map(|(seg, cap)| v1::ArrivalShare {
                segment_start_num: seg.start,
                segment_end_num: seg.end,
                segment_den: seg.den,
                rate_per_s: a.schedule.start_rate,
                max_in_flight: cap.max(1),
                stages: a
                    .schedule
                    .stages
                    .iter()
                    .map(|s| v1::RateStage {
                        duration_us: micros(s.duration),
                        rate_per_s: s.rate,
                    })
                    .collect(),
                from_index,
                until_us: cfg.run_time.map_or(0, micros),
            })
            .collect()
    });
    let class_weights: Vec<u32> = cfg.classes.iter().map(|(_, w, _)| *w).collect();
    let fixed: Vec<Option<u32>> = cfg.classes.iter().map(|(_, _, f)| *f).collect();
    let totals = class_totals(users, &class_weights, &fixed);
    let p = partition_totals(&totals, spawn_rate, &weights);
    reg.command_seq += 1;
    let seq = reg.command_seq;
    // Per class, the cluster-wide index of each worker's first user: the users of the
    // workers before it. Workers place users on replicas by it, so the spread over a
    // host's addresses is even whatever the number of workers.
    let mut first_user = vec![0u64; cfg.classes.len()];
    for (i, id) in ids.iter().enumerate() {
        let firsts = first_user.clone();
        for (f, &n) in first_user.iter_mut().zip(&p.matrix[i]) {
            *f += u64::from(n);
        }
        let assign = v1::Assign {
            epoch: cluster.epoch,
            command_seq: seq,
            classes: cfg
                .classes
                .iter()
                .zip(&p.matrix[i])
                .zip(&firsts)
                .map(|(((name, _, _), &users), &first_user)| v1::ClassTarget {
                    class_name: name.clone(),
                    users,
                    first_user,
                })
                .collect(),
            spawn_rate: p.spawn_rates[i],
            run_elapsed_us: micros(elapsed),
            arrival: arrival_shares.as_ref().map(|s| s[i].clone()),
            host: cfg.host.clone().unwrap_or_default(),
        };
        if let Some(w) = reg.workers.get_mut(id) {
            w.last_assign = Some(assign.clone());
            w.send(MKind::Assign(assign));
        }
    }
    info!(workers = ids.len(), seq, "targets sent");
}
