//! One fake worker: a `Coordinator.Join` stream that follows the real worker's
//! protocol (`barrage-worker`'s `control/`) message for message, without load.
//!
//! Hello; Welcome; a heartbeat every `heartbeat_interval_ms` from the Welcome on; on
//! the first Assign the run clock origin (now - `run_elapsed_us`) and one Report per
//! `report_interval_ms` aligned to that clock, seq 1, 2, 3...; on Stop a final report
//! (`final = true`) at once (there are no users to stop); when the master
//! acknowledges it, the stream is dropped, as the real worker does on exit (it sends
//! no Goodbye). Unlike the real worker it does not reconnect: a lost stream ends
//! this worker with an error, so the figures never hide a loss.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use barrage_proto::v1::{self, master_message::Kind as MKind, worker_message::Kind as WKind};
use barrage_proto::{MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};

use crate::reports::Template;

/// Outgoing messages queued per stream: the real worker's LINK_QUEUE. One report and
/// one heartbeat a second; a full queue means the stream is stuck.
const LINK_QUEUE: usize = 256;
/// The real worker's WELCOME_TIMEOUT.
const WELCOME_TIMEOUT: Duration = Duration::from_secs(10);

/// Counters of all fake workers, read by the run while it lasts and at the end.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub welcomed: AtomicUsize,
    /// Workers that received their first Assign (the run has started for them).
    pub assigned: AtomicUsize,
    pub reports_sent: AtomicU64,
    pub reports_acked: AtomicU64,
    pub requests_sent: AtomicU64,
    pub requests_acked: AtomicU64,
    pub failures_sent: AtomicU64,
    pub heartbeats_sent: AtomicU64,
    pub finals_sent: AtomicUsize,
    pub finals_acked: AtomicUsize,
    pub errors: AtomicUsize,
    pub times: Mutex<Times>,
}

/// Moments of the run, as the fake workers saw them.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Times {
    /// The last worker received its first Assign: every worker is running.
    pub all_assigned: Option<Instant>,
    pub first_stop: Option<Instant>,
    /// The last fake worker's final report went out.
    pub last_final_sent: Option<Instant>,
    pub last_final_acked: Option<Instant>,
}

impl Shared {
    fn with_times(&self, f: impl FnOnce(&mut Times)) {
        // Plain bookkeeping: a poisoned lock still holds usable instants.
        let mut t = self.times.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut t);
    }

    pub(crate) fn times(&self) -> Times {
        *self.times.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What one fake worker needs.
pub(crate) struct Spec {
    pub index: u32,
    /// How many fake workers there are (to notice the last one to start).
    pub total: u32,
    pub channel: Channel,
    pub templates: Arc<Vec<Template>>,
    pub shared: Arc<Shared>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// Welcomed, no Assign yet (the real worker's "no engine").
    Ready,
    Running,
    /// Final report `seq` sent; leave once it is acknowledged (if `exit`).
    Final {
        seq: u64,
        exit: bool,
    },
}

/// The state of the one epoch this worker takes part in.
struct Session {
    worker_id: String,
    index: u32,
    epoch: u64,
    heartbeat_every: Duration,
    report_every: Duration,
    master_timeout: Duration,
    origin: Option<Instant>,
    applied_cmd: u64,
    users: u32,
    next_seq: u64,
    last_report_end_us: i64,
    next_report_at: Option<Instant>,
    next_heartbeat_at: Instant,
    acked: u64,
    /// (seq, requests) of reports not yet acknowledged.
    unacked: VecDeque<(u64, u64)>,
    phase: Phase,
}

/// Runs one fake worker to the acknowledgement of its final report.
pub(crate) async fn run(spec: Spec) -> Result<()> {
    let shared = spec.shared.clone();
    let result = join_and_follow(spec).await;
    if result.is_err() {
        shared.errors.fetch_add(1, Ordering::Relaxed);
    }
    result
}

async fn join_and_follow(spec: Spec) -> Result<()> {
    let worker_id = format!("sim-{}-{:05}", std::process::id(), spec.index);
    let mut client = v1::coordinator_client::CoordinatorClient::new(spec.channel.clone());
    let (tx, rx) = mpsc::channel(LINK_QUEUE);
    tx.send(hello(&worker_id, spec.index))
        .await
        .context("queueing the Hello")?;
    let mut inbound = client
        .join(tonic::Request::new(ReceiverStream::new(rx)))
        .await
        .map_err(|s| anyhow::anyhow!("{}: {}", s.code(), s.message()))
        .context("opening the Join stream")?
        .into_inner();
    let first = tokio::time::timeout(WELCOME_TIMEOUT, inbound.message())
        .await
        .context("no Welcome within 10 s")?
        .map_err(|s| anyhow::anyhow!("{}: {}", s.code(), s.message()))
        .context("waiting for Welcome")?;
    let welcome = match first.and_then(|m| m.kind) {
        Some(MKind::Welcome(w)) => w,
        Some(MKind::Refuse(r)) => bail!("refused by the master: {}", r.message),
        Some(_) => bail!("the master's first message is not Welcome"),
        None => bail!("the master closed the stream before Welcome"),
    };
    if welcome.protocol_version < MIN_PROTOCOL_VERSION {
        bail!(
            "master speaks protocol {} but this build needs at least {MIN_PROTOCOL_VERSION}",
            welcome.protocol_version
        );
    }
    spec.shared.welcomed.fetch_add(1, Ordering::Relaxed);
    let mut s = Session::new(worker_id, spec.index, &welcome);
    let mut last_contact = Instant::now();
    loop {
        let report_at = s.next_report_at;
        let silent_at = last_contact + s.master_timeout;
        tokio::select! {
            biased;
            msg = inbound.message() => {
                let msg = msg
                    .map_err(|st| anyhow::anyhow!("{}: {}", st.code(), st.message()))
                    .context("reading the master stream")?;
                let Some(msg) = msg else { bail!("the master closed the stream") };
                last_contact = Instant::now();
                if let Some(kind) = msg.kind
                    && s.handle(kind, &tx, &spec)?
                {
                    // Final report acknowledged: leave. Dropping `tx` and `inbound`
                    // closes the stream, as the real worker's exit does.
                    return Ok(());
                }
            }
            _ = tokio::time::sleep_until(s.next_heartbeat_at) => {
                s.next_heartbeat_at = Instant::now() + s.heartbeat_every;
                send(&tx, WKind::Heartbeat(s.heartbeat()))?;
                spec.shared.heartbeats_sent.fetch_add(1, Ordering::Relaxed);
            }
            _ = sleep_until_opt(report_at) => {
                if let Some(at) = report_at {
                    s.next_report_at = Some(at + s.report_every);
                }
                if s.phase == Phase::Running {
                    let report = s.next_report(&spec, false, true);
                    send(&tx, WKind::Report(report))?;
                }
            }
            _ = tokio::time::sleep_until(silent_at) => {
                bail!("no word from the master for {:?}", s.master_timeout);
            }
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Queues one message without waiting, as the real worker does (`try_send`): a full
/// queue means a stuck stream.
fn send(tx: &mpsc::Sender<v1::WorkerMessage>, kind: WKind) -> Result<()> {
    tx.try_send(v1::WorkerMessage { kind: Some(kind) })
        .map_err(|e| anyhow::anyhow!("outgoing queue: {e}"))
}

fn hello(worker_id: &str, index: u32) -> v1::WorkerMessage {
    v1::WorkerMessage {
        kind: Some(WKind::Hello(v1::Hello {
            protocol_version: PROTOCOL_VERSION,
            worker_id: worker_id.to_string(),
            hostname: format!("sim-host-{:03}", index / 10),
            cpu_cores: 2,
            build_version: concat!("sim-workers ", env!("CARGO_PKG_VERSION")).to_string(),
            resume_epoch: 0,
            last_sent_seq: 0,
            weight: 0,
            pid: std::process::id(),
            instance: u64::from(index) + 1,
            source_addresses: 0,
        })),
    }
}

impl Session {
    fn new(worker_id: String, index: u32, w: &v1::Welcome) -> Self {
        // The real worker's defaults for a zero interval.
        let ms = |v: u64, default: u64| Duration::from_millis(if v == 0 { default } else { v });
        Session {
            worker_id,
            index,
            epoch: w.epoch,
            heartbeat_every: ms(w.heartbeat_interval_ms, 1000),
            report_every: ms(w.report_interval_ms, 1000),
            master_timeout: ms(w.master_timeout_ms, 15_000),
            origin: None,
            applied_cmd: 0,
            users: 0,
            next_seq: 1,
            last_report_end_us: 0,
            next_report_at: None,
            // The real worker's first heartbeat goes out on its first tick after Welcome.
            next_heartbeat_at: Instant::now(),
            acked: 0,
            unacked: VecDeque::new(),
            phase: Phase::Ready,
        }
    }

    /// Handles one master message; true when the worker should leave.
    fn handle(&mut self, kind: MKind, tx: &mpsc::Sender<v1::WorkerMessage>, spec: &Spec) -> Result<bool> {
        match kind {
            MKind::Assign(a) => {
                if a.epoch != self.epoch
                    || a.command_seq <= self.applied_cmd
                    || matches!(self.phase, Phase::Final { .. })
                {
                    return Ok(false);
                }
                self.applied_cmd = a.command_seq;
                if self.origin.is_none() {
                    let now = Instant::now();
                    // The real worker's own arithmetic, so reports land where its would.
                    let grid = barrage_worker::ReportGrid::new(now.into_std(), a.run_elapsed_us, self.report_every);
                    self.origin = Some(Instant::from_std(grid.origin));
                    self.next_report_at = Some(Instant::from_std(grid.next_report_at));
                    self.last_report_end_us = grid.elapsed_us;
                    if spec.shared.assigned.fetch_add(1, Ordering::Relaxed) + 1 == spec.total as usize {
                        spec.shared.with_times(|t| t.all_assigned = Some(now));
                    }
                }
                self.users = a.classes.iter().map(|c| c.users).sum();
                self.phase = Phase::Running;
            }
            MKind::Heartbeat(_) | MKind::Welcome(_) => {}
            MKind::Ack(ack) => {
                if ack.epoch != self.epoch || ack.acked_seq <= self.acked {
                    return Ok(false);
                }
                let newly = ack.acked_seq - self.acked;
                self.acked = ack.acked_seq;
                spec.shared.reports_acked.fetch_add(newly, Ordering::Relaxed);
                while let Some(&(seq, requests)) = self.unacked.front()
                    && seq <= self.acked
                {
                    spec.shared.requests_acked.fetch_add(requests, Ordering::Relaxed);
                    self.unacked.pop_front();
                }
                if let Phase::Final { seq, exit } = self.phase
                    && self.acked >= seq
                {
                    spec.shared.finals_acked.fetch_add(1, Ordering::Relaxed);
                    let now = Instant::now();
                    spec.shared.with_times(|t| t.last_final_acked = Some(now));
                    if exit {
                        return Ok(true);
                    }
                    // Stay for the next run, as the real worker does.
                    self.phase = Phase::Ready;
                    self.origin = None;
                    self.next_report_at = None;
                }
            }
            MKind::Stop(stop) => {
                if stop.epoch != self.epoch || stop.command_seq <= self.applied_cmd {
                    return Ok(false);
                }
                self.applied_cmd = stop.command_seq;
                let now = Instant::now();
                spec.shared.with_times(|t| {
                    t.first_stop.get_or_insert(now);
                });
                match self.phase {
                    Phase::Final { seq, .. } => self.phase = Phase::Final { seq, exit: stop.exit },
                    phase => {
                        // Nothing to wind down: the final report goes out at once. With
                        // no Assign yet it is empty, as the real worker's.
                        let report = self.next_report(spec, true, phase == Phase::Running);
                        let seq = report.seq;
                        send(tx, WKind::Report(report))?;
                        self.phase = Phase::Final { seq, exit: stop.exit };
                        spec.shared.finals_sent.fetch_add(1, Ordering::Relaxed);
                        let sent = Instant::now();
                        spec.shared.with_times(|t| t.last_final_sent = Some(sent));
                    }
                }
            }
            MKind::Refuse(r) => bail!("refused mid-stream: {}", r.message),
            MKind::Fence(f) => bail!("fenced by the master: {}", f.reason),
        }
        Ok(false)
    }

    fn heartbeat(&self) -> v1::WorkerHeartbeat {
        let state = match self.phase {
            Phase::Ready => v1::WorkerState::Ready,
            Phase::Running => v1::WorkerState::Running,
            Phase::Final { .. } => v1::WorkerState::Stopped,
        };
        v1::WorkerHeartbeat {
            state: state as i32,
            users: self.users,
            cpu_percent: 12.5,
            rss_bytes: 48 << 20,
            applied_command_seq: self.applied_cmd,
            sched_lag_p99_us: 250,
            busiest_thread_cpu_percent: 12.5,
            load_threads: 1,
        }
    }

    fn run_us(&self) -> i64 {
        self.origin.map_or(0, |o| o.elapsed().as_micros() as i64)
    }

    /// The next report, covering the time since the previous one, with one template's
    /// endpoints (`with_data`) or none (the final report of a worker that never ran).
    fn next_report(&mut self, spec: &Spec, final_: bool, with_data: bool) -> v1::Report {
        let end = self.run_us().max(self.last_report_end_us);
        let users = i64::from(self.users);
        let gauge = |v: i64| {
            Some(v1::Gauge {
                last: v,
                max: v,
                time_avg: v as f64,
            })
        };
        // Rotate through the templates so neighbouring workers and seconds differ.
        let pick = (self.index as usize + self.next_seq as usize) % spec.templates.len().max(1);
        let (endpoints, requests, failures) = match spec.templates.get(pick) {
            Some(t) if with_data => (t.endpoints.clone(), t.requests, t.failures),
            _ => (Vec::new(), 0, 0),
        };
        let report = v1::Report {
            worker_id: self.worker_id.clone(),
            epoch: self.epoch,
            seq: self.next_seq,
            interval_start_us: self.last_report_end_us,
            interval_end_us: end,
            endpoints,
            users: gauge(users),
            active_streams: gauge(users / 5),
            r#final: final_,
            cpu_percent: 12.5,
            rss_bytes: 48 << 20,
            sched_lag_p99_us: 250,
            dropped_iterations: 0,
            last_arrival_due_us: 0,
            busiest_thread_cpu_percent: 12.5,
            load_threads: 1,
            peer_users: Vec::new(),
        };
        self.next_seq += 1;
        self.last_report_end_us = end;
        self.unacked.push_back((report.seq, requests));
        spec.shared.reports_sent.fetch_add(1, Ordering::Relaxed);
        spec.shared.requests_sent.fetch_add(requests, Ordering::Relaxed);
        spec.shared.failures_sent.fetch_add(failures, Ordering::Relaxed);
        report
    }
}
