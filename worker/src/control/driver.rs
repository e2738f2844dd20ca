//! The control loop: one task owns all state (no locks) and waits, in one `select!`,
//! on the shutdown signal, the link to the master (down / connecting / up), a 50 ms
//! housekeeping tick (heartbeats, reports aligned to the run clock, the master
//! timeout) and the engine's stop.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use tokio::time::Interval;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use barrage_proto::v1;

use crate::error::{Error, Result};
use crate::sys::{CpuMeter, LagProbe};

use super::config::{Exit, WorkerConfig};
use super::connect::{UNAUTHENTICATED, connect, hello, master_url, next_backoff};
use super::handling::handle;
use super::link::{Joined, Link};
use super::session::{Session, StopPhase};

/// A connection that has not produced Welcome within this long is abandoned.
const WELCOME_TIMEOUT: Duration = Duration::from_secs(10);
/// The housekeeping period: heartbeats, reports and timeouts are checked this often.
const TICK: Duration = Duration::from_millis(50);
/// On SIGINT/SIGTERM: time for users to stop (5 s) plus the final report's round trip.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Runs a worker: joins the master at `cfg.master`, follows its commands and reports
/// until the run ends, `shutdown` completes (then stops the load and hands in a final
/// report), or no master is reachable for `cfg.give_up_after`.
pub async fn run(cfg: WorkerConfig, shutdown: impl Future<Output = ()>) -> Result<Exit> {
    // One socket per open stream: a soft limit of 1,024 would cap a worker far below
    // what it can drive. The hard limit is the operator's (see README, sizing workers).
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => info!(open_files = limit, "open-file limit"),
        Err(e) => warn!("could not raise the open-file limit: {e}"),
    }
    let endpoint_url = master_url(&cfg.master, cfg.tls.is_some())?;
    let probe_stop = CancellationToken::new();
    let _probe_guard = probe_stop.clone().drop_guard();
    let lag = LagProbe::start(probe_stop);
    let mut driver = Driver::new(cfg, endpoint_url, lag);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    info!(worker = %driver.cfg.worker_id, master = %driver.cfg.master, "worker starting");
    loop {
        let event = driver.next_event(shutdown.as_mut(), &mut tick).await;
        if let Some(end) = driver.on_event(event).await {
            return end;
        }
    }
}

/// What woke the control loop.
enum Ev {
    /// Our shutdown signal.
    Shutdown,
    /// The users' stop running in the background has finished.
    StopDone,
    /// A connection attempt ended.
    Connected(std::result::Result<Joined, String>),
    /// The master's stream: a message, its end (None), or its failure.
    Msg(std::result::Result<Option<v1::MasterMessage>, String>),
    /// The housekeeping tick.
    Tick,
}

/// The control loop's state.
struct Driver {
    cfg: WorkerConfig,
    /// The master's gRPC URL, from `cfg.master`.
    endpoint_url: String,
    /// Scheduling lag of the load threads, reported with heartbeats and reports.
    lag: LagProbe,
    /// CPU over each report's interval.
    cpu: CpuMeter,
    /// CPU over each heartbeat's interval.
    hb_cpu: CpuMeter,
    /// The run this worker is in, kept across reconnects.
    session: Option<Session>,
    link: Link,
    /// The last message from the master (any kind).
    last_contact: Instant,
    /// The users' stop running in the background, if any.
    stopping_task: Option<tokio::task::JoinHandle<()>>,
    /// Our shutdown signal has come.
    shutting_down: bool,
    /// After a shutdown signal, leave by this time even if the final ack never comes.
    shutdown_deadline: Option<Instant>,
    /// Pause before the next attempt if the current one fails (doubles up to max_backoff).
    pending_backoff: Duration,
    /// The last reason a connection failed, said once rather than every retry.
    last_connect_error: Option<String>,
}

impl Driver {
    fn new(cfg: WorkerConfig, endpoint_url: String, lag: LagProbe) -> Self {
        Driver {
            cfg,
            endpoint_url,
            lag,
            // Reports and heartbeats each measure CPU over their own interval.
            cpu: CpuMeter::default(),
            hb_cpu: CpuMeter::default(),
            session: None,
            link: Link::down(Instant::now(), Duration::from_millis(100)),
            last_contact: Instant::now(),
            stopping_task: None,
            shutting_down: false,
            shutdown_deadline: None,
            pending_backoff: Duration::from_millis(100),
            last_connect_error: None,
        }
    }

    /// Waits for what the link's state can bring, the shutdown signal (once), the
    /// users' stop, or the tick.
    async fn next_event<S: Future<Output = ()>>(&mut self, mut shutdown: Pin<&mut S>, tick: &mut Interval) -> Ev {
        let shutting_down = self.shutting_down;
        let stopping_task = &mut self.stopping_task;
        match &mut self.link {
            Link::Up { rx, .. } => tokio::select! {
                biased;
                _ = shutdown.as_mut(), if !shutting_down => Ev::Shutdown,
                _ = wait_opt(stopping_task) => Ev::StopDone,
                msg = rx.message() => Ev::Msg(msg.map_err(|s| s.message().to_string())),
                _ = tick.tick() => Ev::Tick,
            },
            Link::Connecting { fut, .. } => tokio::select! {
                biased;
                _ = shutdown.as_mut(), if !shutting_down => Ev::Shutdown,
                _ = wait_opt(stopping_task) => Ev::StopDone,
                r = fut => Ev::Connected(r),
                _ = tick.tick() => Ev::Tick,
            },
            Link::Down { .. } => tokio::select! {
                biased;
                _ = shutdown.as_mut(), if !shutting_down => Ev::Shutdown,
                _ = wait_opt(stopping_task) => Ev::StopDone,
                _ = tick.tick() => Ev::Tick,
            },
        }
    }

    /// Acts on one event; Some: the worker ends with this.
    async fn on_event(&mut self, event: Ev) -> Option<Result<Exit>> {
        match event {
            Ev::Shutdown => self.on_shutdown(),
            Ev::StopDone => self.on_stop_done(),
            Ev::Connected(Ok((tx, rx))) => {
                debug!("stream open, waiting for welcome");
                self.link = Link::Up {
                    tx,
                    rx: Box::new(rx),
                    welcomed: false,
                    since: Instant::now(),
                    sent_upto: 0,
                };
                None
            }
            Ev::Connected(Err(e)) => self.on_connect_failed(e),
            Ev::Msg(Ok(Some(msg))) => {
                self.last_contact = Instant::now();
                let kind = msg.kind?;
                let exit = handle(
                    kind,
                    &self.cfg,
                    &mut self.session,
                    &mut self.link,
                    &mut self.stopping_task,
                    &self.lag,
                )
                .await;
                exit.transpose()
            }
            Ev::Msg(end) => {
                match end {
                    Err(e) => warn!(error = %e, "lost the master stream; reconnecting"),
                    Ok(_) => warn!("the master closed the stream; reconnecting"),
                }
                self.link = Link::down(Instant::now() + Duration::from_millis(200), Duration::from_millis(200));
                self.shutting_down.then_some(Ok(Exit::Shutdown))
            }
            Ev::Tick => self.on_tick().await,
        }
    }

    /// Our shutdown signal: stop the users and send a final report, or leave now when
    /// nothing runs.
    fn on_shutdown(&mut self) -> Option<Result<Exit>> {
        self.shutting_down = true;
        self.shutdown_deadline = Some(Instant::now() + SHUTDOWN_GRACE);
        info!("shutdown requested: stopping users and sending a final report");
        match &mut self.session {
            Some(s) if s.engine.is_some() && s.stop == StopPhase::Running => {
                s.stop = StopPhase::Stopping { exit: true };
                self.stopping_task = Some(s.spawn_stop(Duration::from_secs(5)));
                None
            }
            _ => Some(Ok(Exit::Shutdown)),
        }
    }

    /// The users have stopped: the final report goes out.
    fn on_stop_done(&mut self) -> Option<Result<Exit>> {
        self.stopping_task = None;
        if let Some(s) = &mut self.session
            && let StopPhase::Stopping { exit } = s.stop
        {
            let report = s.make_report(&self.cfg.worker_id, &mut self.cpu, &self.lag, true);
            let seq = report.seq;
            s.engine = None;
            s.stop = StopPhase::Final { seq, exit };
            s.outbox.push(report, &mut self.link);
            if matches!(self.link, Link::Down { .. }) && self.shutting_down {
                return Some(Ok(Exit::Shutdown));
            }
        }
        None
    }

    /// A connection attempt failed: a refused token ends the worker, anything else is
    /// retried after the backoff.
    fn on_connect_failed(&mut self, e: String) -> Option<Result<Exit>> {
        if e.starts_with(UNAUTHENTICATED) {
            // A wrong or missing cluster token does not fix itself: stop here.
            return Some(Err(Error::Refused(format!(
                "{e} (set BARRAGE_CLUSTER_TOKEN or BARRAGE_CLUSTER_TOKEN_FILE)"
            ))));
        }
        // Say each new reason once (a wrong CA or a master not up yet), not every retry.
        if self.last_connect_error.as_deref() != Some(e.as_str()) {
            warn!(master = %self.cfg.master, error = %e, "cannot reach the master; retrying");
            self.last_connect_error = Some(e.clone());
        }
        self.link = Link::down(Instant::now() + self.pending_backoff, self.pending_backoff);
        None
    }

    /// Housekeeping: the shutdown deadline, the master timeout, heartbeats and
    /// reports, the fence's wait, a silent stream, giving up, and the next dial.
    async fn on_tick(&mut self) -> Option<Result<Exit>> {
        let now = Instant::now();
        if self.shutdown_deadline.is_some_and(|d| now >= d) {
            warn!("no acknowledgement of the final report in time; leaving anyway");
            return Some(Ok(Exit::Shutdown));
        }
        if let Some(s) = &mut self.session {
            // Master timeout: no message for too long stops the load.
            if s.engine.is_some()
                && now.duration_since(self.last_contact) > s.master_timeout
                && s.stop == StopPhase::Running
            {
                warn!(silent_for = ?now.duration_since(self.last_contact), "no word from the master: stopping all load");
                if let Some(engine) = s.engine.take() {
                    engine.abort().await;
                    let report = s.make_report_from(&engine, &self.cfg.worker_id, &mut self.cpu, &self.lag, false);
                    s.outbox.push(report, &mut self.link);
                }
            }
            s.housekeeping(
                now,
                &self.cfg.worker_id,
                (&mut self.cpu, &mut self.hb_cpu),
                &self.lag,
                &mut self.link,
            );
            s.outbox.flush(&mut self.link);
        }
        if let Some(StopPhase::Fenced { until, .. }) = self.session.as_ref().map(|s| s.stop)
            && now >= until
        {
            warn!("no acknowledgement of the closing report in time: joining again as a new session");
            self.session = None;
            self.link = Link::down(now, Duration::from_millis(200));
        }
        // A stream that carries nothing for the master timeout is dead even if
        // TCP says otherwise: drop it and reconnect (the give-up clock runs on).
        let silence_limit = self
            .session
            .as_ref()
            .map_or(Duration::from_secs(15), |s| s.master_timeout);
        if matches!(self.link, Link::Up { welcomed: true, .. }) && now.duration_since(self.last_contact) > silence_limit
        {
            warn!(silent_for = ?now.duration_since(self.last_contact), "the master stream is silent; reconnecting");
            self.link = Link::down(now, Duration::from_millis(200));
        }
        if let Some(end) = self.give_up(now).await {
            return Some(end);
        }
        self.advance_link(now);
        None
    }

    /// Ends the worker when no master was reachable for `give_up_after`. (`&mut`: a
    /// `&self` held across the await would need the loop's state to be `Sync`.)
    async fn give_up(&mut self, now: Instant) -> Option<Result<Exit>> {
        let limit = self.cfg.give_up_after?;
        if now.duration_since(self.last_contact) <= limit || matches!(self.link, Link::Up { welcomed: true, .. }) {
            return None;
        }
        if let Some(s) = &self.session
            && let Some(engine) = &s.engine
        {
            engine.abort().await;
        }
        Some(Err(Error::MasterLost {
            master: self.cfg.master.clone(),
            waited: limit,
        }))
    }

    /// Dials when a down link's retry is due; abandons a connection that has not been
    /// welcomed in time.
    fn advance_link(&mut self, now: Instant) {
        match &self.link {
            Link::Down { retry_at, backoff } if now >= *retry_at && !self.shutting_down => {
                let hello = hello(&self.cfg, self.session.as_ref().map(Session::resume));
                let next = next_backoff(*backoff, self.cfg.max_backoff);
                self.link = Link::Connecting {
                    fut: Box::pin(connect(
                        self.endpoint_url.clone(),
                        hello,
                        self.cfg.token.clone(),
                        self.cfg.tls.clone(),
                    )),
                    since: now,
                };
                self.pending_backoff = next;
            }
            Link::Connecting { since, .. }
            | Link::Up {
                welcomed: false, since, ..
            } if now.duration_since(*since) > WELCOME_TIMEOUT => {
                warn!("no welcome from the master in time; retrying");
                self.link = Link::down(now, Duration::from_millis(500));
            }
            _ => {}
        }
    }
}

/// Waits for `task` to end; never, when there is none.
async fn wait_opt(task: &mut Option<tokio::task::JoinHandle<()>>) {
    match task {
        Some(t) => {
            let _ = t.await;
        }
        None => std::future::pending().await,
    }
}
