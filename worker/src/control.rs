//! The worker's side of the protocol: join, follow commands, report, survive
//! disconnects, and stop the load when the master goes silent.
//!
//! One loop owns all state (no locks): a `select!` over the shutdown signal, the link
//! to the master (down / connecting / up), a 50 ms housekeeping tick (heartbeats,
//! reports aligned to the run clock, the master timeout) and the engine's stop.
//! The [`Session`] outlives connections: its unacknowledged reports are resent after
//! a reconnect, and the master merges each (worker, seq) once.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tracing::{debug, info, warn};

use barrage_common::metrics::EndpointStats;
use barrage_common::plan::RunPlan;
use barrage_common::wire::endpoint_to_proto;
use barrage_proto::v1::{self, master_message::Kind as MKind, worker_message::Kind as WKind};
use barrage_proto::{MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};

use crate::error::{Error, Result};
use crate::recorder::{GaugeInterval, GaugeMark};
use crate::runner::{Engine, Targets};
use crate::sys::{CpuMeter, LagProbe};

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// `HOST:PORT` or `http://HOST:PORT` of the master.
    pub master: String,
    /// Stable for the life of the process.
    pub worker_id: String,
    /// Random, never 0, the same across reconnects: the master tells this process from
    /// another one given the same `worker_id` by it.
    pub instance: u64,
    pub hostname: String,
    pub cpu_cores: u32,
    /// Relative capacity (0 = use cpu_cores).
    pub weight: u32,
    /// Exit after this long without any contact with a master (None = keep trying).
    pub give_up_after: Option<Duration>,
    /// Longest pause between connection attempts.
    pub max_backoff: Duration,
    /// Cluster token sent as `authorization: Bearer ...` (None = none).
    pub token: Option<String>,
    /// TLS to the master (None = plaintext).
    pub tls: Option<MasterTls>,
    /// Load threads, each a single-threaded runtime (0 = one per core).
    pub threads: usize,
}

/// How a worker reaches a master over TLS.
#[derive(Clone)]
pub struct MasterTls {
    /// PEM of the CA that signed the master's certificate.
    pub ca_pem: Vec<u8>,
    /// PEM certificate and key of this worker, for mutual TLS.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    /// Name the master's certificate must carry (default: the host of --master).
    pub domain: Option<String>,
}

impl std::fmt::Debug for MasterTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterTls")
            .field("mutual", &self.identity.is_some())
            .field("domain", &self.domain)
            .finish()
    }
}

impl WorkerConfig {
    pub fn new(master: impl Into<String>) -> Self {
        let hostname = gethostname::gethostname().to_string_lossy().into_owned();
        let cpu_cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        let worker_id = format!("{hostname}-{}-{:04x}", std::process::id(), rand::random::<u16>());
        WorkerConfig {
            master: master.into(),
            worker_id,
            instance: rand::random::<u64>() | 1,
            hostname,
            cpu_cores,
            weight: 0,
            give_up_after: None,
            max_backoff: Duration::from_secs(5),
            token: None,
            tls: None,
            threads: 0,
        }
    }
}

/// How a worker ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// The master ended the run and acknowledged our final report.
    RunFinished,
    /// Our own shutdown signal (SIGINT/SIGTERM): final report sent if we could.
    Shutdown,
}

/// Outgoing messages queued per connection. Reports are 1/s and heartbeats 1/s, so
/// 256 is minutes of backlog; a full queue means the link is stuck and is dropped
/// (everything unacknowledged is resent on the next connection).
const LINK_QUEUE: usize = 256;
/// Unacknowledged reports kept; beyond this the oldest are dropped with a warning.
const OUTBOX_LIMIT: usize = 3600;
/// A connection that has not produced Welcome within this long is abandoned.
const WELCOME_TIMEOUT: Duration = Duration::from_secs(10);
const TICK: Duration = Duration::from_millis(50);
/// Marks a connection error as the master's refusal of our token.
const UNAUTHENTICATED: &str = "unauthenticated: ";
/// On SIGINT/SIGTERM: time for users to stop (5 s) plus the final report's round trip.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

type Connecting = Pin<
    Box<
        dyn Future<
                Output = std::result::Result<(mpsc::Sender<v1::WorkerMessage>, Streaming<v1::MasterMessage>), String>,
            > + Send,
    >,
>;

enum Link {
    Down {
        retry_at: Instant,
        backoff: Duration,
    },
    Connecting {
        fut: Connecting,
        since: Instant,
    },
    Up {
        tx: mpsc::Sender<v1::WorkerMessage>,
        // Boxed: the decoder state is large and the link changes often.
        rx: Box<Streaming<v1::MasterMessage>>,
        welcomed: bool,
        since: Instant,
        /// The highest report seq written to this link: reports above it are sent
        /// as the queue has room (a full queue defers them, never drops them).
        sent_upto: u64,
    },
}

/// State of one epoch (one run of one master), kept across reconnects.
struct Session {
    epoch: u64,
    plan: Arc<RunPlan>,
    worker_index: u32,
    heartbeat_every: Duration,
    report_every: Duration,
    master_timeout: Duration,
    engine: Option<Engine>,
    /// Run clock origin on this machine: master's run start.
    origin: Option<Instant>,
    host: Option<String>,
    applied_cmd: u64,
    next_seq: u64,
    outbox: VecDeque<v1::Report>,
    last_report_end_us: i64,
    next_report_at: Option<Instant>,
    next_heartbeat_at: Instant,
    users_mark: GaugeMark,
    streams_mark: GaugeMark,
    stop: StopPhase,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum StopPhase {
    Running,
    /// Users are stopping; then a final report goes out.
    Stopping {
        exit: bool,
    },
    /// Final report `seq` sent; exit once it is acknowledged (if `exit`).
    Final {
        seq: u64,
        exit: bool,
    },
    /// Fenced (declared lost): users aborted, closing report `seq` sent; once it is
    /// acknowledged, or at `until`, the session is dropped and the worker joins again.
    Fenced {
        seq: u64,
        until: Instant,
    },
}

/// How long a fenced session waits for its closing report's acknowledgement.
const FENCE_CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn run(cfg: WorkerConfig, shutdown: impl Future<Output = ()>) -> Result<Exit> {
    // One socket per open stream: a soft limit of 1,024 would cap a worker far below
    // what it can drive. The hard limit is the operator's (see README, sizing workers).
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => info!(open_files = limit, "open-file limit"),
        Err(e) => warn!("could not raise the open-file limit: {e}"),
    }
    let endpoint_url = master_url(&cfg.master, cfg.tls.is_some())?;
    let probe_stop = tokio_util::sync::CancellationToken::new();
    let _probe_guard = probe_stop.clone().drop_guard();
    let lag = LagProbe::start(probe_stop);
    // Reports and heartbeats each measure CPU over their own interval.
    let mut cpu = CpuMeter::default();
    let mut hb_cpu = CpuMeter::default();
    let mut session: Option<Session> = None;
    let mut link = Link::Down {
        retry_at: Instant::now(),
        backoff: Duration::from_millis(100),
    };
    let mut last_contact = Instant::now();
    let mut stopping_task: Option<tokio::task::JoinHandle<()>> = None;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    let mut shutting_down = false;
    // After a shutdown signal, leave by this time even if the final ack never comes.
    let mut shutdown_deadline: Option<Instant> = None;
    // Pause before the next attempt if the current one fails (doubles up to max_backoff).
    let mut pending_backoff = Duration::from_millis(100);
    let mut last_connect_error: Option<String> = None;
    info!(worker = %cfg.worker_id, master = %cfg.master, "worker starting");

    loop {
        // Drive the link state machine.
        let event = match &mut link {
            Link::Up { rx, .. } => tokio::select! {
                biased;
                _ = &mut shutdown, if !shutting_down => Ev::Shutdown,
                _ = wait_opt(&mut stopping_task) => Ev::StopDone,
                msg = rx.message() => Ev::Msg(msg.map_err(|s| s.message().to_string())),
                _ = tick.tick() => Ev::Tick,
            },
            Link::Connecting { fut, .. } => tokio::select! {
                biased;
                _ = &mut shutdown, if !shutting_down => Ev::Shutdown,
                _ = wait_opt(&mut stopping_task) => Ev::StopDone,
                r = fut => Ev::Connected(r),
                _ = tick.tick() => Ev::Tick,
            },
            Link::Down { .. } => tokio::select! {
                biased;
                _ = &mut shutdown, if !shutting_down => Ev::Shutdown,
                _ = wait_opt(&mut stopping_task) => Ev::StopDone,
                _ = tick.tick() => Ev::Tick,
            },
        };

        match event {
            Ev::Shutdown => {
                shutting_down = true;
                shutdown_deadline = Some(Instant::now() + SHUTDOWN_GRACE);
                info!("shutdown requested: stopping users and sending a final report");
                match &mut session {
                    Some(s) if s.engine.is_some() && s.stop == StopPhase::Running => {
                        s.stop = StopPhase::Stopping { exit: true };
                        stopping_task = Some(spawn_stop(s, Duration::from_secs(5)));
                    }
                    _ => return Ok(Exit::Shutdown),
                }
            }
            Ev::StopDone => {
                stopping_task = None;
                if let Some(s) = &mut session
                    && let StopPhase::Stopping { exit } = s.stop
                {
                    let report = s.make_report(&cfg.worker_id, &mut cpu, &lag, true);
                    let seq = report.seq;
                    s.engine = None;
                    s.stop = StopPhase::Final { seq, exit };
                    s.push(report, &mut link);
                    if matches!(link, Link::Down { .. }) && shutting_down {
                        return Ok(Exit::Shutdown);
                    }
                }
            }
            Ev::Connected(Ok((tx, rx))) => {
                debug!("stream open, waiting for welcome");
                link = Link::Up {
                    tx,
                    rx: Box::new(rx),
                    welcomed: false,
                    since: Instant::now(),
                    sent_upto: 0,
                };
            }
            Ev::Connected(Err(e)) if e.starts_with(UNAUTHENTICATED) => {
                // A wrong or missing cluster token does not fix itself: stop here.
                return Err(Error::Refused(format!(
                    "{e} (set BARRAGE_CLUSTER_TOKEN or BARRAGE_CLUSTER_TOKEN_FILE)"
                )));
            }
            Ev::Connected(Err(e)) => {
                // Say each new reason once (a wrong CA or a master not up yet), not every retry.
                if last_connect_error.as_deref() != Some(e.as_str()) {
                    warn!(master = %cfg.master, error = %e, "cannot reach the master; retrying");
                    last_connect_error = Some(e.clone());
                }
                link = Link::Down {
                    retry_at: Instant::now() + pending_backoff,
                    backoff: pending_backoff,
                };
            }
            Ev::Msg(Ok(Some(msg))) => {
                last_contact = Instant::now();
                if let Some(kind) = msg.kind
                    && let Some(exit) = handle(kind, &cfg, &mut session, &mut link, &mut stopping_task, &lag).await?
                {
                    return Ok(exit);
                }
            }
            Ev::Msg(Ok(None)) | Ev::Msg(Err(_)) => {
                if let Ev::Msg(Err(e)) = &event {
                    warn!(error = %e, "lost the master stream; reconnecting");
                } else {
                    warn!("the master closed the stream; reconnecting");
                }
                link = Link::Down {
                    retry_at: Instant::now() + Duration::from_millis(200),
                    backoff: Duration::from_millis(200),
                };
                if shutting_down {
                    return Ok(Exit::Shutdown);
                }
            }
            Ev::Tick => {
                let now = Instant::now();
                if shutdown_deadline.is_some_and(|d| now >= d) {
                    warn!("no acknowledgement of the final report in time; leaving anyway");
                    return Ok(Exit::Shutdown);
                }
                // Master timeout: no message for too long stops the load.
                if let Some(s) = &mut session {
                    if s.engine.is_some()
                        && now.duration_since(last_contact) > s.master_timeout
                        && s.stop == StopPhase::Running
                    {
                        warn!(silent_for = ?now.duration_since(last_contact), "no word from the master: stopping all load");
                        if let Some(engine) = s.engine.take() {
                            engine.abort().await;
                            let report = s.make_report_from(&engine, &cfg.worker_id, &mut cpu, &lag, false);
                            s.push(report, &mut link);
                        }
                    }
                    s.housekeeping(now, &cfg.worker_id, (&mut cpu, &mut hb_cpu), &lag, &mut link);
                    s.flush(&mut link);
                }
                if let Some(StopPhase::Fenced { until, .. }) = session.as_ref().map(|s| s.stop)
                    && now >= until
                {
                    warn!("no acknowledgement of the closing report in time: joining again as a new session");
                    session = None;
                    link = Link::Down {
                        retry_at: now,
                        backoff: Duration::from_millis(200),
                    };
                }
                // A stream that carries nothing for the master timeout is dead even if
                // TCP says otherwise: drop it and reconnect (the give-up clock runs on).
                let silence_limit = session.as_ref().map_or(Duration::from_secs(15), |s| s.master_timeout);
                if matches!(link, Link::Up { welcomed: true, .. }) && now.duration_since(last_contact) > silence_limit {
                    warn!(silent_for = ?now.duration_since(last_contact), "the master stream is silent; reconnecting");
                    link = Link::Down {
                        retry_at: now,
                        backoff: Duration::from_millis(200),
                    };
                }
                if let Some(limit) = cfg.give_up_after
                    && now.duration_since(last_contact) > limit
                    && !matches!(link, Link::Up { welcomed: true, .. })
                {
                    if let Some(s) = &session
                        && let Some(engine) = &s.engine
                    {
                        engine.abort().await;
                    }
                    return Err(Error::MasterLost {
                        master: cfg.master.clone(),
                        waited: limit,
                    });
                }
                match &link {
                    Link::Down { retry_at, backoff } if now >= *retry_at && !shutting_down => {
                        let hello = hello(&cfg, session.as_ref());
                        let next = next_backoff(*backoff, cfg.max_backoff);
                        link = Link::Connecting {
                            fut: Box::pin(connect(endpoint_url.clone(), hello, cfg.token.clone(), cfg.tls.clone())),
                            since: now,
                        };
                        pending_backoff = next;
                    }
                    Link::Connecting { since, .. }
                    | Link::Up {
                        welcomed: false, since, ..
                    } if now.duration_since(*since) > WELCOME_TIMEOUT => {
                        warn!("no welcome from the master in time; retrying");
                        link = Link::Down {
                            retry_at: now,
                            backoff: Duration::from_millis(500),
                        };
                    }
                    _ => {}
                }
            }
        }
    }
}

enum Ev {
    Shutdown,
    StopDone,
    Connected(std::result::Result<(mpsc::Sender<v1::WorkerMessage>, Streaming<v1::MasterMessage>), String>),
    Msg(std::result::Result<Option<v1::MasterMessage>, String>),
    Tick,
}

async fn wait_opt(task: &mut Option<tokio::task::JoinHandle<()>>) {
    match task {
        Some(t) => {
            let _ = t.await;
        }
        None => std::future::pending().await,
    }
}

fn next_backoff(b: Duration, max: Duration) -> Duration {
    (b * 2).min(max)
}

fn master_url(master: &str, tls: bool) -> Result<String> {
    let scheme = if tls { "https" } else { "http" };
    let bare = master.trim_start_matches("http://").trim_start_matches("https://");
    let url = format!("{scheme}://{bare}");
    let authority = url.split_once("://").map(|(_, a)| a).unwrap_or("");
    if authority.is_empty() || !authority.contains(':') {
        return Err(Error::BadMasterAddress(master.to_string()));
    }
    Ok(url)
}

fn hello(cfg: &WorkerConfig, session: Option<&Session>) -> v1::WorkerMessage {
    v1::WorkerMessage {
        kind: Some(WKind::Hello(v1::Hello {
            protocol_version: PROTOCOL_VERSION,
            worker_id: cfg.worker_id.clone(),
            hostname: cfg.hostname.clone(),
            cpu_cores: cfg.cpu_cores,
            build_version: concat!("barrage ", env!("CARGO_PKG_VERSION")).to_string(),
            resume_epoch: session.map_or(0, |s| s.epoch),
            last_sent_seq: session.map_or(0, |s| s.next_seq.saturating_sub(1)),
            weight: cfg.weight,
            pid: std::process::id(),
            instance: cfg.instance,
        })),
    }
}

async fn connect(
    url: String,
    hello: v1::WorkerMessage,
    token: Option<String>,
    tls: Option<MasterTls>,
) -> std::result::Result<(mpsc::Sender<v1::WorkerMessage>, Streaming<v1::MasterMessage>), String> {
    let mut endpoint = tonic::transport::Endpoint::from_shared(url)
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(10));
    if let Some(tls) = tls {
        let mut config = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(&tls.ca_pem));
        if let Some((cert, key)) = &tls.identity {
            config = config.identity(tonic::transport::Identity::from_pem(cert, key));
        }
        if let Some(domain) = tls.domain {
            config = config.domain_name(domain);
        }
        endpoint = endpoint
            .tls_config(config)
            .map_err(|e| format!("TLS configuration: {e}"))?;
    }
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| format!("{e}: {:?}", std::error::Error::source(&e)))?;
    // The master's limit both ways: the plan in Welcome can be MiBs (inline data pools),
    // beyond tonic's 4 MiB default.
    let mut client = v1::coordinator_client::CoordinatorClient::new(channel)
        .max_decoding_message_size(barrage_proto::MAX_MESSAGE)
        .max_encoding_message_size(barrage_proto::MAX_MESSAGE);
    let (tx, rx) = mpsc::channel(LINK_QUEUE);
    tx.send(hello).await.map_err(|e| e.to_string())?;
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    if let Some(token) = token {
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| "the cluster token is not valid header text".to_string())?;
        request.metadata_mut().insert("authorization", value);
    }
    let response = client.join(request).await.map_err(|s| {
        if s.code() == tonic::Code::Unauthenticated {
            format!("{UNAUTHENTICATED}{}", s.message())
        } else {
            s.message().to_string()
        }
    })?;
    Ok((tx, response.into_inner()))
}

/// Where a worker's reports fall on the run clock, from the first Assign: the run's
/// origin on this machine's clock, the first report boundary after now (reports end
/// on whole multiples of `every` since the origin), and the run time now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportGrid {
    pub origin: Instant,
    pub next_report_at: Instant,
    pub elapsed_us: i64,
}

impl ReportGrid {
    /// `run_elapsed_us`: the run time the master stamped on the Assign.
    pub fn new(now: Instant, run_elapsed_us: i64, every: Duration) -> ReportGrid {
        let origin = now
            .checked_sub(Duration::from_micros(run_elapsed_us.max(0) as u64))
            .unwrap_or(now);
        let elapsed = now.duration_since(origin);
        let k = elapsed.as_micros() / every.as_micros().max(1) + 1;
        ReportGrid {
            origin,
            next_report_at: origin + every * k as u32,
            elapsed_us: elapsed.as_micros() as i64,
        }
    }
}

/// Handles one master message. Returns Some(exit) when the worker should end.
async fn handle(
    kind: MKind,
    cfg: &WorkerConfig,
    session: &mut Option<Session>,
    link: &mut Link,
    stopping_task: &mut Option<tokio::task::JoinHandle<()>>,
    lag: &LagProbe,
) -> Result<Option<Exit>> {
    match kind {
        MKind::Welcome(w) => {
            if w.protocol_version < MIN_PROTOCOL_VERSION {
                return Err(Error::Refused(format!(
                    "master speaks protocol {} but this worker needs at least {MIN_PROTOCOL_VERSION}",
                    w.protocol_version
                )));
            }
            let resumed = session.as_ref().is_some_and(|s| s.epoch == w.epoch);
            if resumed {
                let s = session.as_mut().ok_or_else(|| Error::BadPlan("no session".into()))?;
                s.outbox.retain(|r| r.seq > w.acked_seq);
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
                s.flush(link);
            }
        }
        MKind::Refuse(r) => return Err(Error::Refused(r.message)),
        MKind::Assign(a) => {
            let Some(s) = session.as_mut() else { return Ok(None) };
            if a.epoch != s.epoch || a.command_seq <= s.applied_cmd || s.stop != StopPhase::Running {
                debug!(seq = a.command_seq, "ignoring stale or foreign assign");
                return Ok(None);
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
                let engine = Engine::start(s.plan.clone(), s.host.as_deref(), s.worker_index, origin, cfg.threads)
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
                engine.set_arrivals(a.arrival.as_ref().map(crate::arrivals::ArrivalPlan::from_proto));
            }
        }
        MKind::Heartbeat(_) => {}
        MKind::Ack(ack) => {
            if let Some(s) = session.as_mut()
                && ack.epoch == s.epoch
            {
                s.outbox.retain(|r| r.seq > ack.acked_seq);
                if let StopPhase::Fenced { seq, .. } = s.stop
                    && ack.acked_seq >= seq
                {
                    info!("closing report acknowledged: joining again as a new session");
                    *session = None;
                    *link = Link::Down {
                        retry_at: Instant::now(),
                        backoff: Duration::from_millis(200),
                    };
                    return Ok(None);
                }
                if let StopPhase::Final { seq, exit } = s.stop
                    && ack.acked_seq >= seq
                {
                    info!("final report acknowledged");
                    if exit {
                        return Ok(Some(Exit::RunFinished));
                    }
                    s.stop = StopPhase::Running;
                    s.origin = None;
                }
            }
        }
        MKind::Stop(stop) => {
            let Some(s) = session.as_mut() else {
                return Ok(Some(Exit::RunFinished));
            };
            if stop.epoch != s.epoch || stop.command_seq <= s.applied_cmd {
                return Ok(None);
            }
            s.applied_cmd = stop.command_seq;
            info!(reason = %stop.reason, "stop: finishing in-flight requests");
            match s.stop {
                StopPhase::Running if s.engine.is_some() => {
                    s.stop = StopPhase::Stopping { exit: stop.exit };
                    *stopping_task = Some(spawn_stop(s, Duration::from_millis(stop.stop_timeout_ms)));
                }
                StopPhase::Running => {
                    // Nothing running: the final report is an empty one.
                    let report = s.make_empty_final(&cfg.worker_id);
                    s.stop = StopPhase::Final {
                        seq: report.seq,
                        exit: stop.exit,
                    };
                    s.push(report, link);
                }
                StopPhase::Stopping { .. } => s.stop = StopPhase::Stopping { exit: stop.exit },
                StopPhase::Final { seq, .. } => s.stop = StopPhase::Final { seq, exit: stop.exit },
                // Its session is closed; the run's end reaches it as a new session.
                StopPhase::Fenced { .. } => {}
            }
        }
        MKind::Fence(f) => match session.as_mut() {
            Some(s) if f.close && f.epoch == s.epoch => {
                if matches!(s.stop, StopPhase::Fenced { .. }) {
                    return Ok(None);
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
                s.push(report, link);
            }
            _ => {
                warn!(epoch = f.epoch, reason = %f.reason, "fenced by the master: dropping all load");
                if let Some(old) = session.take()
                    && let Some(engine) = old.engine
                {
                    engine.abort().await;
                }
            }
        },
    }
    Ok(None)
}

/// Stops the engine's users in the background (the loop keeps heartbeating).
fn spawn_stop(s: &mut Session, grace: Duration) -> tokio::task::JoinHandle<()> {
    // The engine stays in the session so its last counts can be reported; stopping
    // only needs its tokens.
    let handle = s.engine.as_ref().map(Engine::stop_handle);
    tokio::spawn(async move {
        if let Some(h) = handle {
            h.stop(grace).await;
        }
    })
}

fn wrap_report(r: v1::Report) -> v1::WorkerMessage {
    v1::WorkerMessage {
        kind: Some(WKind::Report(r)),
    }
}

impl Session {
    fn new(epoch: u64, plan: Arc<RunPlan>, w: &v1::Welcome) -> Self {
        let ms = |v: u64, default: u64| Duration::from_millis(if v == 0 { default } else { v });
        Session {
            epoch,
            plan,
            worker_index: w.worker_index,
            heartbeat_every: ms(w.heartbeat_interval_ms, 1000),
            report_every: ms(w.report_interval_ms, 1000),
            master_timeout: ms(w.master_timeout_ms, 15_000),
            engine: None,
            origin: None,
            host: None,
            applied_cmd: 0,
            next_seq: 1,
            outbox: VecDeque::new(),
            last_report_end_us: 0,
            next_report_at: None,
            next_heartbeat_at: Instant::now(),
            users_mark: GaugeMark::default(),
            streams_mark: GaugeMark::default(),
            stop: StopPhase::Running,
        }
    }

    fn run_us(&self) -> i64 {
        self.origin.map_or(0, |o| o.elapsed().as_micros() as i64)
    }

    fn housekeeping(
        &mut self,
        now: Instant,
        worker_id: &str,
        (cpu, hb_cpu): (&mut CpuMeter, &mut CpuMeter),
        lag: &LagProbe,
        link: &mut Link,
    ) {
        if now >= self.next_heartbeat_at {
            self.next_heartbeat_at = now + self.heartbeat_every;
            let tids = self.engine.as_ref().map(Engine::load_thread_ids).unwrap_or_default();
            let (cpu_percent, rss_bytes) = hb_cpu.sample();
            let (busiest_thread_cpu_percent, load_threads) = hb_cpu.threads.sample(&tids);
            let state = match (self.stop, &self.engine) {
                (StopPhase::Stopping { .. }, _) => v1::WorkerState::Stopping,
                (StopPhase::Final { .. }, _) => v1::WorkerState::Stopped,
                (_, None) => v1::WorkerState::Ready,
                (_, Some(_)) => v1::WorkerState::Running,
            };
            let hb = v1::WorkerHeartbeat {
                state: state as i32,
                users: self.engine.as_ref().map_or(0, Engine::users),
                cpu_percent,
                rss_bytes,
                applied_command_seq: self.applied_cmd,
                sched_lag_p99_us: lag.peek_p99_us(),
                busiest_thread_cpu_percent,
                load_threads,
            };
            if let Link::Up { tx, welcomed: true, .. } = link
                && tx
                    .try_send(v1::WorkerMessage {
                        kind: Some(WKind::Heartbeat(hb)),
                    })
                    .is_err()
            {
                *link = Link::Down {
                    retry_at: now,
                    backoff: Duration::from_millis(200),
                };
            }
        }
        if let Some(at) = self.next_report_at
            && now >= at
            && matches!(self.stop, StopPhase::Running | StopPhase::Stopping { .. })
        {
            self.next_report_at = Some(at + self.report_every);
            if self.engine.is_some() {
                let report = self.make_report(worker_id, cpu, lag, false);
                self.push(report, link);
            }
        }
    }

    fn make_report(&mut self, worker_id: &str, cpu: &mut CpuMeter, lag: &LagProbe, final_: bool) -> v1::Report {
        match self.engine.take() {
            Some(engine) => {
                let r = self.make_report_from(&engine, worker_id, cpu, lag, final_);
                self.engine = Some(engine);
                r
            }
            None => self.next_report(worker_id, final_),
        }
    }

    fn make_report_from(
        &mut self,
        engine: &Engine,
        worker_id: &str,
        cpu: &mut CpuMeter,
        lag: &LagProbe,
        final_: bool,
    ) -> v1::Report {
        let rec = engine.recorder();
        let endpoints = replica_rows(&self.plan, engine, rec.take());
        let gauge = |g: GaugeInterval| {
            Some(v1::Gauge {
                last: g.last,
                max: g.max,
                time_avg: g.time_avg,
            })
        };
        let (users, um) = rec.users.interval(self.users_mark);
        let (streams, sm) = rec.active_streams.interval(self.streams_mark);
        self.users_mark = um;
        self.streams_mark = sm;
        let (cpu_percent, rss_bytes) = cpu.sample();
        let (busiest_thread_cpu_percent, load_threads) = cpu.threads.sample(&engine.load_thread_ids());
        let mut report = self.next_report(worker_id, final_);
        report.endpoints = endpoints;
        report.users = gauge(users);
        report.active_streams = gauge(streams);
        report.cpu_percent = cpu_percent;
        report.busiest_thread_cpu_percent = busiest_thread_cpu_percent;
        report.load_threads = load_threads;
        report.rss_bytes = rss_bytes;
        report.sched_lag_p99_us = lag.take_p99_us();
        report.dropped_iterations = rec.dropped.swap(0, std::sync::atomic::Ordering::SeqCst);
        report.last_arrival_due_us = rec.last_due_us.swap(0, std::sync::atomic::Ordering::SeqCst);
        report.peer_users = engine
            .placement()
            .take_users()
            .into_iter()
            .map(|(addr, last, max)| v1::PeerUsers {
                peer: addr.to_string(),
                last,
                max,
            })
            .collect();
        report
    }

    fn make_empty_final(&mut self, worker_id: &str) -> v1::Report {
        self.next_report(worker_id, true)
    }

    /// A report with the next seq covering the time since the previous one.
    fn next_report(&mut self, worker_id: &str, final_: bool) -> v1::Report {
        let end = self.run_us().max(self.last_report_end_us);
        let report = v1::Report {
            worker_id: worker_id.to_string(),
            epoch: self.epoch,
            seq: self.next_seq,
            interval_start_us: self.last_report_end_us,
            interval_end_us: end,
            r#final: final_,
            ..Default::default()
        };
        self.next_seq += 1;
        self.last_report_end_us = end;
        report
    }

    /// Queues a report for delivery and sends it if the link is up.
    fn push(&mut self, report: v1::Report, link: &mut Link) {
        if self.outbox.len() >= OUTBOX_LIMIT {
            // The master sees the gap in seqs and calls the run's data incomplete.
            warn!(
                seq = self.outbox.front().map(|r| r.seq),
                "outbox full: dropping the oldest unacknowledged report"
            );
            self.outbox.pop_front();
        }
        self.outbox.push_back(report);
        self.flush(link);
    }

    /// Sends, in order, the unacknowledged reports this link has not carried yet, as
    /// far as its queue has room; the rest go on a later tick. A closed link is
    /// dropped (everything unacknowledged goes again on the next one).
    fn flush(&self, link: &mut Link) {
        let Link::Up {
            tx,
            welcomed: true,
            sent_upto,
            ..
        } = link
        else {
            return;
        };
        if send_pending(&self.outbox, tx, sent_upto).is_err() {
            *link = Link::Down {
                retry_at: Instant::now(),
                backoff: Duration::from_millis(200),
            };
        }
    }
}

/// Sends the reports of `outbox` above `sent_upto`, in order, while `tx` has room,
/// moving `sent_upto` to the last one sent; stops (to go on later) at a full queue.
/// Err when the link is closed.
fn send_pending(
    outbox: &VecDeque<v1::Report>,
    tx: &mpsc::Sender<v1::WorkerMessage>,
    sent_upto: &mut u64,
) -> std::result::Result<(), ()> {
    let from = *sent_upto;
    for report in outbox.iter().filter(|r| r.seq > from) {
        match tx.try_send(wrap_report(report.clone())) {
            Ok(()) => *sent_upto = report.seq,
            Err(mpsc::error::TrySendError::Full(_)) => return Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(()),
        }
    }
    Ok(())
}

/// An interval's endpoint deltas from the recorder's slots (slot 0: no address; slot
/// `p + 1`: peer `p`), each labelled with its address where the host is split by
/// replica. Every split address of a class's host gets a row for each endpoint of the
/// class even without a request: a replica that got nothing is a finding.
fn replica_rows(plan: &RunPlan, engine: &Engine, stats: Vec<EndpointStats>) -> Vec<v1::EndpointDelta> {
    let endpoints = engine.recorder().endpoints();
    let labels = engine.placement().labels();
    let label = |slot: usize| slot.checked_sub(1).and_then(|p| labels.get(p).copied().flatten());
    let mut due: std::collections::BTreeSet<(usize, usize)> = std::collections::BTreeSet::new();
    for (class, peers) in plan.classes.iter().zip(engine.placement().class_split_peers()) {
        for task in class.tasks.iter().chain(&class.on_start) {
            due.extend(peers.iter().map(|p| (p + 1, task.endpoint)));
        }
    }
    let mut out = Vec::new();
    for (i, mut s) in stats.into_iter().enumerate() {
        let (slot, endpoint) = (i / endpoints, i % endpoints);
        let Some(meta) = plan.endpoints.get(endpoint) else {
            continue;
        };
        let peer = label(slot);
        let zero_row = due.remove(&(slot, endpoint));
        if s.is_empty() && s.outcomes.is_empty() && !zero_row {
            continue;
        }
        if peer.is_none() {
            // The success-only latency is a per-replica figure.
            s.histograms[barrage_common::metrics::Metric::ResponseTimeOk as usize] = None;
        }
        let mut d = endpoint_to_proto(meta, &s);
        d.peer = peer.map(|a| a.to_string()).unwrap_or_default();
        out.push(d);
    }
    for (slot, endpoint) in due {
        if let (Some(meta), Some(peer)) = (plan.endpoints.get(endpoint), label(slot)) {
            let mut d = endpoint_to_proto(meta, &EndpointStats::default());
            d.peer = peer.to_string();
            out.push(d);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_land_on_whole_seconds_of_the_run_clock() {
        let now = Instant::now();
        let grid = ReportGrid::new(now, 2_500_000, Duration::from_secs(1));
        assert_eq!(grid.elapsed_us, 2_500_000);
        assert_eq!(now.duration_since(grid.origin), Duration::from_micros(2_500_000));
        assert_eq!(grid.next_report_at.duration_since(grid.origin), Duration::from_secs(3));
        // A master that lies (negative run time) cannot put the origin in the future.
        let grid = ReportGrid::new(now, -5, Duration::from_secs(1));
        assert_eq!((grid.origin, grid.elapsed_us), (now, 0));
    }

    /// A backlog larger than the link's queue (after a long disconnect) goes out whole,
    /// in order, as the queue drains: before, the resend stopped at the first full
    /// queue and the rest waited for the next reconnect.
    #[test]
    fn a_backlog_larger_than_the_queue_is_sent_whole_and_in_order() {
        let outbox: VecDeque<v1::Report> = (1..=10)
            .map(|seq| v1::Report {
                seq,
                ..Default::default()
            })
            .collect();
        let (tx, mut rx) = mpsc::channel(3);
        let mut sent_upto = 0;
        let mut received = Vec::new();
        for _ in 0..10 {
            send_pending(&outbox, &tx, &mut sent_upto).unwrap();
            while let Ok(m) = rx.try_recv() {
                if let Some(WKind::Report(r)) = m.kind {
                    received.push(r.seq);
                }
            }
        }
        assert_eq!(received, (1..=10).collect::<Vec<_>>());
        assert_eq!(sent_upto, 10);
        drop(rx);
        let mut more = outbox.clone();
        more.push_back(v1::Report {
            seq: 11,
            ..Default::default()
        });
        assert!(
            send_pending(&more, &tx, &mut sent_upto).is_err(),
            "a closed link says so"
        );
    }

    #[test]
    fn master_addresses() {
        assert_eq!(master_url("127.0.0.1:5557", false).unwrap(), "http://127.0.0.1:5557");
        assert_eq!(master_url("http://m:5557", false).unwrap(), "http://m:5557");
        assert_eq!(master_url("m:5557", true).unwrap(), "https://m:5557");
        assert!(master_url("nohost", false).is_err());
    }
}
