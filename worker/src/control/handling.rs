//! Handling the master's messages: Welcome (join or resume a session), Assign (start
//! the engine, set its targets), Ack (forget merged reports, end a stop or a fence),
//! Stop and Fence.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use barrage_common::plan::RunPlan;
use barrage_proto::MIN_PROTOCOL_VERSION;
use barrage_proto::v1::{self, master_message::Kind as MKind};

use crate::arrivals::ArrivalPlan;
use crate::error::{Error, Result};
use crate::runner::{Engine, Targets};
use crate::sys::{CpuMeter, LagProbe};

use super::config::{Exit, WorkerConfig};
use super::link::Link;
use super::report::ReportGrid;
use super::session::{Session, StopPhase};

/// How long a fenced session waits for its closing report's acknowledgement.
const FENCE_CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handles one master message. Returns Some(exit) when the worker should end.
/// `stopping_task`: the users' stop running in the background, if any.
pub(super) async fn handle(
    kind: MKind,
    cfg: &WorkerConfig,
    session: &mut Option<Session>,
    link: &mut Link,
    stopping_task: &mut Option<tokio::task::JoinHandle<()>>,
    lag: &LagProbe,
) -> Result<Option<Exit>> {
    match kind {
        MKind::Welcome(w) => on_welcome(w, session, link).await?,
        MKind::Refuse(r) => return Err(Error::Refused(r.message)),
        MKind::Assign(a) => {
            if let Some(s) = session.as_mut() {
                on_assign(a, cfg, s, lag).await?;
            }
        }
        MKind::Heartbeat(_) => {}
        MKind::Ack(ack) => return Ok(on_ack(ack, session, link)),
        MKind::Stop(stop) => {
            let Some(s) = session.as_mut() else {
                return Ok(Some(Exit::RunFinished));
            };
            on_stop(stop, cfg, s, link, stopping_task);
        }
        MKind::Fence(f) => on_fence(f, cfg, session, link, stopping_task, lag).await,
    }
    Ok(None)
}

/// Welcome: resume the session of the same epoch (resending what it has not
/// acknowledged), or drop the old one and join the new run.
async fn on_welcome(w: v1::Welcome, session: &mut Option<Session>, link: &mut Link) -> Result<()> {
    if w.protocol_version < MIN_PROTOCOL_VERSION {
        return Err(Error::Refused(format!(
            "master speaks protocol {} but this worker needs at least {MIN_PROTOCOL_VERSION}",
            w.protocol_version
        )));
    }
    let resumed = session.as_ref().is_some_and(|s| s.epoch == w.epoch);
    if resumed {
        let s = session.as_mut().ok_or_else(|| Error::BadPlan("no session".into()))?;
        s.outbox.acknowledge(w.acked_seq);
        info!(
            epoch = w.epoch,
            resend = s.outbox.len(),
            "rejoined the run; resending unacknowledged reports"
        );
    } else {
        if let Some(old) = session.take()
            && let Some(engine) = old.engine
        {
            info!(old_epoch = old.epoch, "new run epoch: dropping the old assignment");
            engine.abort().await;
        }
        let plan = RunPlan::from_json(&w.plan_json).map_err(|e| Error::BadPlan(e.to_string()))?;
        info!(
            index = w.worker_index,
            epoch = w.epoch,
            classes = plan.classes.len(),
            "joined the cluster"
        );
        *session = Some(Session::new(w.epoch, Arc::new(plan), &w));
    }
    if let Link::Up { welcomed, .. } = link {
        *welcomed = true;
    }
    if let Some(s) = session.as_ref() {
        s.outbox.flush(link);
    }
    Ok(())
}

/// Assign: the first one fixes the run clock and starts the engine; each sets the
/// users per class (or the arrivals) this worker runs.
async fn on_assign(a: v1::Assign, cfg: &WorkerConfig, s: &mut Session, lag: &LagProbe) -> Result<()> {
    if a.epoch != s.epoch || a.command_seq <= s.applied_cmd || s.stop != StopPhase::Running {
        debug!(seq = a.command_seq, "ignoring stale or foreign assign");
        return Ok(());
    }
    s.applied_cmd = a.command_seq;
    let now = Instant::now();
    if s.origin.is_none() {
        let grid = ReportGrid::new(now, a.run_elapsed_us, s.report_every);
        s.origin = Some(grid.origin);
        s.next_report_at = Some(grid.next_report_at);
        s.last_report_end_us = grid.elapsed_us;
    }
    if !a.host.is_empty() {
        s.host = Some(a.host.clone());
    }
    if s.engine.is_none() {
        let origin = s.origin.unwrap_or(now);
        let sources = cfg.source_addresses.clone();
        let engine = Engine::start_with_sources(
            s.plan.clone(),
            s.host.as_deref(),
            s.worker_index,
            origin,
            cfg.threads,
            sources,
        )
        .await
        .map_err(Error::BadPlan)?;
        for runtime in engine.runtimes() {
            lag.watch(runtime);
        }
        s.users_mark = engine.recorder().users.mark();
        s.streams_mark = engine.recorder().active_streams.mark();
        s.engine = Some(engine);
    }
    let mut users = vec![0u32; s.plan.classes.len()];
    let mut first_users = vec![0u64; s.plan.classes.len()];
    for t in &a.classes {
        if let Some(i) = s.plan.classes.iter().position(|c| c.name == t.class_name) {
            users[i] = t.users;
            first_users[i] = t.first_user;
        }
    }
    info!(
        seq = a.command_seq,
        users = users.iter().sum::<u32>(),
        rate = a.spawn_rate,
        "new target"
    );
    if let Some(engine) = &s.engine {
        engine.set_first_users(&first_users);
        engine.set_targets(Targets {
            users,
            spawn_rate: a.spawn_rate,
        });
        // Open model: arrivals instead of users (absent: none).
        engine.set_arrivals(a.arrival.as_ref().map(ArrivalPlan::from_proto));
    }
    Ok(())
}

/// Ack: forget the merged reports; an acknowledged closing report ends a fenced
/// session, an acknowledged final report ends the run (and the worker, if asked).
fn on_ack(ack: v1::Ack, session: &mut Option<Session>, link: &mut Link) -> Option<Exit> {
    let s = session.as_mut().filter(|s| ack.epoch == s.epoch)?;
    s.outbox.acknowledge(ack.acked_seq);
    if let StopPhase::Fenced { seq, .. } = s.stop
        && ack.acked_seq >= seq
    {
        info!("closing report acknowledged: joining again as a new session");
        *session = None;
        *link = Link::down(Instant::now(), Duration::from_millis(200));
        return None;
    }
    if let StopPhase::Final { seq, exit } = s.stop
        && ack.acked_seq >= seq
    {
        info!("final report acknowledged");
        if exit {
            return Some(Exit::RunFinished);
        }
        s.stop = StopPhase::Running;
        s.origin = None;
    }
    None
}

/// Stop: users finish their requests in the background, then a final report goes
/// (at once, empty, when nothing runs).
fn on_stop(
    stop: v1::Stop,
    cfg: &WorkerConfig,
    s: &mut Session,
    link: &mut Link,
    stopping_task: &mut Option<tokio::task::JoinHandle<()>>,
) {
    if stop.epoch != s.epoch || stop.command_seq <= s.applied_cmd {
        return;
    }
    s.applied_cmd = stop.command_seq;
    info!(reason = %stop.reason, "stop: finishing in-flight requests");
    match s.stop {
        StopPhase::Running if s.engine.is_some() => {
            s.stop = StopPhase::Stopping { exit: stop.exit };
            *stopping_task = Some(s.spawn_stop(Duration::from_millis(stop.stop_timeout_ms)));
        }
        StopPhase::Running => {
            // Nothing running: the final report is an empty one.
            let report = s.make_empty_final(&cfg.worker_id);
            s.stop = StopPhase::Final {
                seq: report.seq,
                exit: stop.exit,
            };
            s.outbox.push(report, link);
        }
        StopPhase::Stopping { .. } => s.stop = StopPhase::Stopping { exit: stop.exit },
        StopPhase::Final { seq, .. } => s.stop = StopPhase::Final { seq, exit: stop.exit },
        // Its session is closed; the run's end reaches it as a new session.
        StopPhase::Fenced { .. } => {}
    }
}

/// Fence (declared lost): abort the load; for this session with `close`, hand in what
/// was recorded in a closing report first, else drop the session outright.
async fn on_fence(
    f: v1::Fence,
    cfg: &WorkerConfig,
    session: &mut Option<Session>,
    link: &mut Link,
    stopping_task: &mut Option<tokio::task::JoinHandle<()>>,
    lag: &LagProbe,
) {
    match session.as_mut() {
        Some(s) if f.close && f.epoch == s.epoch => {
            if matches!(s.stop, StopPhase::Fenced { .. }) {
                return;
            }
            warn!(reason = %f.reason, "fenced by the master: stopping all load, handing in what was recorded");
            if let Some(task) = stopping_task.take() {
                task.abort();
            }
            let report = match s.engine.take() {
                Some(engine) => {
                    // In-flight requests are counted as cancelled, as at a hard stop.
                    engine.abort().await;
                    s.make_report_from(&engine, &cfg.worker_id, &mut CpuMeter::default(), lag, true)
                }
                None => s.make_empty_final(&cfg.worker_id),
            };
            s.stop = StopPhase::Fenced {
                seq: report.seq,
                until: Instant::now() + FENCE_CLOSE_TIMEOUT,
            };
            s.outbox.push(report, link);
        }
        _ => {
            warn!(epoch = f.epoch, reason = %f.reason, "fenced by the master: dropping all load");
            if let Some(old) = session.take()
                && let Some(engine) = old.engine
            {
                engine.abort().await;
            }
        }
    }
}
