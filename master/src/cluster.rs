//! The master's registry of workers and the gRPC service they join.
//!
//! `Cluster` holds the registry behind a `std::sync::Mutex` (never held across
//! `.await`) and the [`Aggregator`] behind another, so merging a report never waits on
//! registry work. Each worker stream gets a session task that merges its reports and
//! acknowledges them; the controller ([`crate::controller`]) decides targets.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info, warn};

use barrage_proto::v1::{self, master_message::Kind as MKind, worker_message::Kind as WKind};
use barrage_proto::{MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};

use crate::aggregate::{Aggregator, Merge};

/// Messages queued to one worker. Commands are rare and acks 1/s, so 64 is ample; a
/// worker that lets it fill is stuck and gets disconnected rather than block us.
const WORKER_QUEUE: usize = 64;
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

pub type Outbound = mpsc::Sender<Result<v1::MasterMessage, Status>>;

#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub heartbeat_interval: Duration,
    pub report_interval: Duration,
    /// Sent to workers: they stop their load after this long without hearing from us.
    pub master_timeout: Duration,
    /// Required `authorization: Bearer` token (None = open cluster).
    pub token: Option<String>,
    /// TLS for the worker port (None = plaintext).
    pub tls: Option<ServerTls>,
}

/// The master's TLS identity, and the CA its workers' certificates must come from
/// (mutual TLS) when set.
#[derive(Clone)]
pub struct ServerTls {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    pub client_ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("mutual", &self.client_ca_pem.is_some())
            .finish()
    }
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            heartbeat_interval: Duration::from_secs(1),
            report_interval: Duration::from_secs(1),
            master_timeout: Duration::from_secs(15),
            token: None,
            tls: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Waiting,
    Running,
    Stopping,
    Done,
}

#[derive(Debug)]
pub struct WorkerEntry {
    pub id: String,
    pub index: u32,
    pub hostname: String,
    pub cores: u32,
    pub weight: u32,
    /// The process behind the id (`Hello.pid`, `Hello.instance`; 0 = not sent).
    pub pid: u32,
    pub instance: u64,
    pub tx: Option<Outbound>,
    /// Identifies the current connection, so an old stream's end does not mark a
    /// newer one as disconnected.
    pub conn: u64,
    pub disconnected_at: Option<Instant>,
    pub lost: bool,
    pub last_seen: Instant,
    pub heartbeat: v1::WorkerHeartbeat,
    /// The last Assign sent, resent verbatim after a reconnect.
    pub last_assign: Option<v1::Assign>,
    pub joined_at: Instant,
}

impl WorkerEntry {
    pub fn is_active(&self) -> bool {
        !self.lost
    }

    /// Capacity used for partitioning: --weight if given, else cores.
    pub fn capacity(&self) -> u32 {
        if self.weight > 0 {
            self.weight
        } else {
            self.cores.max(1)
        }
    }

    pub fn send(&mut self, kind: MKind) {
        if let Some(tx) = &self.tx
            && let Err(e) = tx.try_send(Ok(v1::MasterMessage { kind: Some(kind) }))
        {
            match e {
                tokio::sync::mpsc::error::TrySendError::Full(_) => {
                    warn!(worker = %self.id, "worker queue full (it is not reading): disconnecting it")
                }
                // It left (or its stream broke): nothing to warn about here.
                tokio::sync::mpsc::error::TrySendError::Closed(_) => debug!(worker = %self.id, "worker stream closed"),
            }
            self.tx = None;
            self.disconnected_at.get_or_insert_with(Instant::now);
        }
    }
}

#[derive(Debug)]
pub struct Registry {
    pub workers: BTreeMap<String, WorkerEntry>,
    pub phase: Phase,
    pub next_index: u32,
    pub command_seq: u64,
    /// Bumped on every join, loss or return: the controller rebalances when it moves.
    pub membership: u64,
    pub run_start: Option<Instant>,
    next_conn: u64,
    /// The Stop of this run once sent, resent to a worker that reconnects after it.
    pub stop: Option<v1::Stop>,
    /// Events worth a line in the final report (joins mid-run, losses).
    pub events: Vec<(Duration, String)>,
}

impl Registry {
    /// The workers and events as the final report shows them.
    pub fn roster(&self) -> crate::report::Roster {
        crate::report::Roster {
            workers: self
                .workers
                .values()
                .map(|w| crate::report::RosterWorker {
                    id: w.id.clone(),
                    index: w.index,
                    hostname: w.hostname.clone(),
                    cores: w.cores,
                    lost: w.lost,
                })
                .collect(),
            events: self.events.clone(),
        }
    }
}

pub struct Cluster {
    pub epoch: u64,
    plan_json: Vec<u8>,
    pub opts: ClusterOptions,
    registry: Mutex<Registry>,
    aggregator: Mutex<Aggregator>,
    /// Wakes the controller on membership changes and final reports.
    pub changed: Notify,
    /// Why the run was asked to stop (the web API), for the report.
    stop_request: Mutex<Option<String>>,
    /// A new target asked for during the run (the web API), taken by the controller.
    retarget: Mutex<Option<Retarget>>,
    /// `--start-from-ui`: the start asked for (web API), taken by the controller...
    start: Mutex<Option<Start>>,
    /// ...and what the run was started with, for the reports.
    started_with: Mutex<Option<Start>>,
    /// The load the workers were last given: (users, spawn rate) or (0, arrivals/s).
    target: Mutex<Option<(u32, f64)>>,
    /// The final report once written, for the web UI's downloads.
    final_report: Mutex<Option<Arc<crate::report::FinalReport>>>,
}

/// A start from the web UI (`--start-from-ui`): users and spawn rate (a constant-users
/// run, as in Locust), and optionally another host and a run time.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Start {
    pub users: u32,
    pub spawn_rate: f64,
    pub host: Option<String>,
    /// Seconds; none runs until stopped.
    pub run_time_s: Option<f64>,
}

/// A change of load asked for during the run: users and spawn rate (closed model) or
/// the arrival rate (open model). It replaces any shape from then on.
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Retarget {
    pub users: Option<u32>,
    pub spawn_rate: Option<f64>,
    pub arrival_rate: Option<f64>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these would be a bug in plain bookkeeping code;
    // the data is still the best we have, so keep going.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Cluster {
    pub fn new(plan: &barrage_common::plan::RunPlan, opts: ClusterOptions) -> Arc<Self> {
        let epoch = rand::random::<u64>() | 1;
        let plan_json = plan.to_json();
        let mut aggregator = Aggregator::new(epoch);
        aggregator.plan_endpoints(plan.endpoints.iter().map(|e| (e.name.as_str(), e.method.as_str())));
        Arc::new(Cluster {
            epoch,
            plan_json,
            opts,
            registry: Mutex::new(Registry {
                workers: BTreeMap::new(),
                phase: Phase::Waiting,
                next_index: 0,
                command_seq: 0,
                membership: 0,
                run_start: None,
                next_conn: 0,
                stop: None,
                events: Vec::new(),
            }),
            aggregator: Mutex::new(aggregator),
            changed: Notify::new(),
            stop_request: Mutex::new(None),
            retarget: Mutex::new(None),
            start: Mutex::new(None),
            started_with: Mutex::new(None),
            final_report: Mutex::new(None),
            target: Mutex::new(None),
        })
    }

    pub fn registry(&self) -> MutexGuard<'_, Registry> {
        lock(&self.registry)
    }

    pub fn aggregator(&self) -> MutexGuard<'_, Aggregator> {
        lock(&self.aggregator)
    }

    /// Records why the run should stop (the caller then triggers the shutdown).
    pub fn request_stop(&self, reason: &str) {
        *lock(&self.stop_request) = Some(reason.to_string());
    }

    pub fn stop_requested(&self) -> Option<String> {
        lock(&self.stop_request).clone()
    }

    /// Asks the controller for a new target (applied within a tick).
    pub fn request_retarget(&self, r: Retarget) {
        *lock(&self.retarget) = Some(r);
        self.changed.notify_one();
    }

    pub fn take_retarget(&self) -> Option<Retarget> {
        lock(&self.retarget).take()
    }

    /// Asks the controller to start the run (`--start-from-ui`); false when a start
    /// was already asked for.
    pub fn request_start(&self, s: Start) -> bool {
        let mut start = lock(&self.start);
        if start.is_some() || lock(&self.started_with).is_some() {
            return false;
        }
        *start = Some(s);
        drop(start);
        self.changed.notify_one();
        true
    }

    /// Takes the start asked for, remembering it for the reports.
    pub fn take_start(&self) -> Option<Start> {
        let s = lock(&self.start).take()?;
        *lock(&self.started_with) = Some(s.clone());
        Some(s)
    }

    /// The run as asked for: `base` with a web UI start's users, rate and host.
    pub fn run_info(&self, base: &crate::report::RunInfo) -> crate::report::RunInfo {
        let mut info = base.clone();
        if let Some(s) = lock(&self.started_with).as_ref() {
            info.users = s.users;
            info.spawn_rate = s.spawn_rate;
            info.arrival = None;
            if let Some(host) = &s.host {
                info.host = Some(host.clone());
            }
        }
        info
    }

    /// Notes a cluster event for the report, at the current run time.
    pub fn note_event(&self, what: String) {
        let at = self.run_elapsed();
        self.registry().events.push((at, what));
    }

    /// Notes the load the controller gave the workers.
    pub fn set_target(&self, users: u32, rate: f64) {
        *lock(&self.target) = Some((users, rate));
    }

    /// The load the workers were last given: (users, spawn rate), or (0, arrivals/s)
    /// in the open model; None before the run.
    pub fn target(&self) -> Option<(u32, f64)> {
        *lock(&self.target)
    }

    pub fn set_final_report(&self, report: crate::report::FinalReport) {
        *lock(&self.final_report) = Some(Arc::new(report));
    }

    pub fn final_report(&self) -> Option<Arc<crate::report::FinalReport>> {
        lock(&self.final_report).clone()
    }

    /// Users running now: the sum of each live worker's last heartbeat.
    pub fn live_users(&self) -> u32 {
        self.registry()
            .workers
            .values()
            .filter(|w| !w.lost)
            .map(|w| w.heartbeat.users)
            .sum()
    }

    pub fn run_elapsed(&self) -> Duration {
        self.registry().run_start.map_or(Duration::ZERO, |s| s.elapsed())
    }

    /// Admits a worker: returns its connection id, or the refusal to send.
    fn admit(&self, hello: &v1::Hello, tx: Outbound) -> Result<u64, v1::Refuse> {
        if !(MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&hello.protocol_version) {
            return Err(v1::Refuse {
                message: format!(
                    "incompatible protocol: worker `{}` ({}) speaks version {}, this master ({}) accepts {}..={}",
                    hello.worker_id,
                    if hello.build_version.is_empty() {
                        "unknown build"
                    } else {
                        &hello.build_version
                    },
                    hello.protocol_version,
                    concat!("barrage ", env!("CARGO_PKG_VERSION")),
                    MIN_PROTOCOL_VERSION,
                    PROTOCOL_VERSION
                ),
                reason: v1::RefuseReason::Version as i32,
                master_protocol_version: PROTOCOL_VERSION,
            });
        }
        if hello.worker_id.is_empty() || hello.worker_id.len() > 256 {
            return Err(v1::Refuse {
                message: "hello without a usable worker id".into(),
                reason: v1::RefuseReason::BadHello as i32,
                master_protocol_version: PROTOCOL_VERSION,
            });
        }
        // A fenced session of this run that has not delivered its closing report yet
        // (read before the registry is locked: never both locks at once here).
        let unclosed = self
            .aggregator()
            .workers
            .get(&hello.worker_id)
            .is_some_and(|p| p.fenced && !p.final_seen);
        let mut reg = self.registry();
        // While stopping, a worker of this run that reconnects may still deliver its
        // final report; anyone else is too late.
        let rejoining = reg.workers.get(&hello.worker_id).is_some_and(|w| !w.lost) && hello.resume_epoch == self.epoch;
        if reg.phase == Phase::Done || (reg.phase == Phase::Stopping && !rejoining) {
            return Err(v1::Refuse {
                message: "the run is over; this master takes no more workers".into(),
                reason: v1::RefuseReason::Full as i32,
                master_protocol_version: PROTOCOL_VERSION,
            });
        }
        // Another process under a taken id: refused while the holder is connected
        // (two workers under one id would have their reports' seqs mixed up); once the
        // holder is gone it replaces it, as a pod restarted under a stable name does.
        let mut replaced = false;
        if let Some(w) = reg.workers.get(&hello.worker_id)
            && hello.instance != 0
            && w.instance != 0
            && hello.instance != w.instance
        {
            if w.tx.is_some() && !w.lost {
                return Err(v1::Refuse {
                    message: format!(
                        "worker id `{}` is taken by a connected worker ({}, pid {}); give each worker its own \
                         --worker-id (BARRAGE_WORKER_ID), or leave it unset",
                        hello.worker_id, w.hostname, w.pid
                    ),
                    reason: v1::RefuseReason::DuplicateId as i32,
                    master_protocol_version: PROTOCOL_VERSION,
                });
            }
            replaced = true;
        }
        reg.next_conn += 1;
        let conn = reg.next_conn;
        let elapsed = reg.run_start.map_or(Duration::ZERO, |s| s.elapsed());
        let running = reg.phase == Phase::Running;
        let next_index = reg.next_index;
        let mut new_index = false;
        let entry = reg.workers.entry(hello.worker_id.clone()).or_insert_with(|| {
            new_index = true;
            WorkerEntry {
                id: hello.worker_id.clone(),
                index: next_index,
                hostname: hello.hostname.clone(),
                cores: hello.cpu_cores,
                weight: hello.weight,
                pid: hello.pid,
                instance: hello.instance,
                tx: None,
                conn: 0,
                disconnected_at: None,
                lost: false,
                last_seen: Instant::now(),
                heartbeat: v1::WorkerHeartbeat::default(),
                last_assign: None,
                joined_at: Instant::now(),
            }
        });
        // The same process of a fenced session, back to hand in what it still holds
        // (a stream that broke while it was paused): it stays written off, resends its
        // unacknowledged reports, and is fenced again to close its session.
        let closing =
            entry.lost && unclosed && !replaced && hello.resume_epoch == self.epoch && hello.instance == entry.instance;
        let returning_lost = entry.lost && !closing;
        let resumed = !new_index && !returning_lost && !replaced && hello.resume_epoch == self.epoch;
        if replaced {
            // A new process: what the old one was assigned and had not reported is gone,
            // and its report seqs start again at 1.
            entry.lost = false;
            entry.last_assign = None;
            entry.hostname = hello.hostname.clone();
            entry.cores = hello.cpu_cores;
            entry.weight = hello.weight;
        }
        entry.pid = hello.pid;
        entry.instance = hello.instance;
        entry.tx = Some(tx);
        entry.conn = conn;
        entry.disconnected_at = None;
        entry.last_seen = Instant::now();
        // Fence a worker we wrote off that still holds a session, and one that still
        // runs an older epoch's assignment.
        let fence = closing || (hello.resume_epoch != 0 && (returning_lost || hello.resume_epoch != self.epoch));
        if returning_lost {
            // It was written off: its old assignment and unreported data are gone.
            entry.lost = false;
            entry.last_assign = None;
        }
        let id = entry.id.clone();
        let index = entry.index;
        if fence {
            entry.send(MKind::Fence(v1::Fence {
                epoch: self.epoch,
                reason: if closing {
                    "you were declared lost: stop your load, send what you hold, then join again".into()
                } else {
                    "you were declared lost or belong to another run: dropping your old assignment".into()
                },
                close: closing,
            }));
        }
        if new_index {
            reg.next_index += 1;
        }
        if !resumed && !closing {
            reg.membership += 1;
            if replaced {
                reg.events.push((
                    elapsed,
                    format!("worker {id} (#{index}) came back as a new process; the old one's unreported data is lost"),
                ));
            } else if running {
                reg.events
                    .push((elapsed, format!("worker {id} (#{index}) joined mid-run")));
            }
        }
        drop(reg);
        if replaced {
            self.aggregator().forget(&id, "was replaced by a new process");
        } else if returning_lost || (fence && !closing) {
            // A new session: seqs from 1. What the old one delivered stays counted.
            self.aggregator().forget(&id, "was written off");
        }
        info!(worker = %hello.worker_id, host = %hello.hostname, cores = hello.cpu_cores, resumed, closing, "worker joined");
        Ok(conn)
    }

    fn welcome(&self, worker: &str) -> v1::Welcome {
        let index = self.registry().workers.get(worker).map_or(0, |w| w.index);
        v1::Welcome {
            protocol_version: PROTOCOL_VERSION,
            worker_index: index,
            epoch: self.epoch,
            plan_json: self.plan_json.clone(),
            plan_format: barrage_common::plan::PLAN_FORMAT,
            heartbeat_interval_ms: self.opts.heartbeat_interval.as_millis() as u64,
            report_interval_ms: self.opts.report_interval.as_millis() as u64,
            master_timeout_ms: self.opts.master_timeout.as_millis() as u64,
            acked_seq: self.aggregator().acked(worker),
            build_version: concat!("barrage ", env!("CARGO_PKG_VERSION")).into(),
        }
    }

    /// Merges a report; the seq to acknowledge. Every report is acknowledged, even
    /// one that cannot be used (counted as lost data instead), so the worker's outbox
    /// never stalls behind it.
    fn on_report(&self, worker: &str, report: &v1::Report) -> u64 {
        if report.worker_id != worker {
            warn!(worker, claimed = %report.worker_id, "report under another worker's id: not counted");
            let mut agg = self.aggregator();
            agg.lost_reports += 1;
            return agg.acked(worker);
        }
        let outcome = self.aggregator().merge(report);
        if report.r#final {
            self.changed.notify_waiters();
        }
        match outcome {
            Merge::Merged { acked } | Merge::Duplicate { acked } => acked,
            Merge::Rejected { acked, why } => {
                warn!(worker, seq = report.seq, why = %why, "report not counted: its data is lost");
                acked
            }
        }
    }

    fn on_disconnect(&self, worker: &str, conn: u64) {
        let mut reg = self.registry();
        if let Some(w) = reg.workers.get_mut(worker)
            && w.conn == conn
        {
            w.tx = None;
            w.disconnected_at = Some(Instant::now());
            info!(worker, "worker disconnected");
        }
        drop(reg);
        self.changed.notify_waiters();
    }
}

/// The gRPC service: `Coordinator.Join`.
#[derive(Clone)]
pub struct Service {
    pub cluster: Arc<Cluster>,
}

type JoinStream = Pin<Box<dyn tokio_stream::Stream<Item = Result<v1::MasterMessage, Status>> + Send>>;

#[tonic::async_trait]
impl v1::coordinator_server::Coordinator for Service {
    type JoinStream = JoinStream;

    async fn join(&self, request: Request<Streaming<v1::WorkerMessage>>) -> Result<Response<JoinStream>, Status> {
        if let Some(token) = &self.cluster.opts.token {
            let given = request
                .metadata()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            if !crate::auth::token_matches(given, token) {
                return Err(Status::unauthenticated("missing or wrong cluster token"));
            }
        }
        let mut inbound = request.into_inner();
        let hello = match tokio::time::timeout(HELLO_TIMEOUT, inbound.message()).await {
            Ok(Ok(Some(v1::WorkerMessage {
                kind: Some(WKind::Hello(h)),
            }))) => h,
            Ok(Ok(_)) => return Err(Status::invalid_argument("the first message must be Hello")),
            Ok(Err(status)) => return Err(status),
            Err(_) => return Err(Status::deadline_exceeded("no Hello within 10 s")),
        };
        let (tx, rx) = mpsc::channel(WORKER_QUEUE);
        let out: JoinStream = Box::pin(ReceiverStream::new(rx));
        let conn = match self.cluster.admit(&hello, tx.clone()) {
            Ok(conn) => conn,
            Err(refuse) => {
                warn!(worker = %hello.worker_id, why = %refuse.message, "worker refused");
                let _ = tx.try_send(Ok(v1::MasterMessage {
                    kind: Some(MKind::Refuse(refuse)),
                }));
                return Ok(Response::new(out));
            }
        };
        let welcome = self.cluster.welcome(&hello.worker_id);
        let _ = tx
            .send(Ok(v1::MasterMessage {
                kind: Some(MKind::Welcome(welcome)),
            }))
            .await;
        {
            // A reconnecting worker gets its current assignment again (it ignores it
            // if already applied: same command seq).
            let mut reg = self.cluster.registry();
            let stop = reg.stop.clone();
            if let Some(w) = reg.workers.get_mut(&hello.worker_id) {
                if let Some(a) = w.last_assign.clone() {
                    w.send(MKind::Assign(a));
                }
                if let Some(stop) = stop {
                    w.send(MKind::Stop(stop));
                }
            }
        }
        self.cluster.changed.notify_waiters();
        let cluster = self.cluster.clone();
        let worker = hello.worker_id.clone();
        tokio::spawn(async move {
            loop {
                let msg = match inbound.message().await {
                    Ok(Some(m)) => m,
                    Ok(None) => break,
                    Err(status) => {
                        debug!(worker = %worker, error = %status, "worker stream error");
                        break;
                    }
                };
                cluster.touch(&worker);
                match msg.kind {
                    Some(WKind::Report(r)) => {
                        let ack = v1::Ack {
                            epoch: cluster.epoch,
                            acked_seq: cluster.on_report(&worker, &r),
                        };
                        if tx
                            .try_send(Ok(v1::MasterMessage {
                                kind: Some(MKind::Ack(ack)),
                            }))
                            .is_err()
                        {
                            break;
                        }
                    }
                    Some(WKind::Heartbeat(hb)) => cluster.on_heartbeat(&worker, hb),
                    Some(WKind::Goodbye(g)) => {
                        info!(worker = %worker, reason = %g.reason, "worker said goodbye");
                        break;
                    }
                    Some(WKind::Hello(_)) | None => {}
                }
            }
            cluster.on_disconnect(&worker, conn);
        });
        Ok(Response::new(out))
    }
}

impl Cluster {
    fn touch(&self, worker: &str) {
        if let Some(w) = self.registry().workers.get_mut(worker) {
            w.last_seen = Instant::now();
        }
    }

    fn on_heartbeat(&self, worker: &str, hb: v1::WorkerHeartbeat) {
        if let Some(w) = self.registry().workers.get_mut(worker) {
            w.heartbeat = hb;
        }
    }
}
