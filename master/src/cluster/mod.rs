//! The cluster: the workers of one run and the service they join.
//!
//! - [`registry`]: who is in the run, the run's phase and clock, and the commands the
//!   master sends (it alone numbers them: `assign`, `stop`, fencing the lost).
//! - [`admission`]: who may join from a hello, and who must be fenced first.
//! - [`service`]: the gRPC `Coordinator.Join` stream and each worker's session task,
//!   which merges its reports into the [`Aggregator`] and acknowledges them.
//!
//! Lock discipline: `Cluster` holds the registry behind a `std::sync::Mutex` and the
//! [`Aggregator`] behind another (never held across `.await`), so merging a report
//! never waits on registry work. Never hold the registry and the aggregator at once:
//! copy what is needed out of one, release it, then take the other. The controller
//! ([`crate::controller`]) decides targets and drives the run through these.

pub mod admission;
pub mod registry;
pub mod service;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tonic::Status;

use barrage_proto::v1;

use crate::aggregate::Aggregator;

pub use registry::{Phase, Registry, Targets, WorkerEntry};
pub use service::Service;

/// The sending half of one worker's stream.
pub type Outbound = mpsc::Sender<Result<v1::MasterMessage, Status>>;

/// How the cluster talks to its workers: intervals, timeouts, token and TLS.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// How often the master and the workers send each other a heartbeat.
    pub heartbeat_interval: Duration,
    /// How often workers send a report (one interval of figures each).
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
    /// The master's certificate chain, PEM.
    pub cert_pem: Vec<u8>,
    /// The master's private key, PEM.
    pub key_pem: Vec<u8>,
    /// The CA workers' client certificates must chain to (None = no client certs).
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

/// One run's cluster: the registry of workers and the aggregate of their reports,
/// shared by the gRPC sessions, the controller and the web API.
pub struct Cluster {
    /// The run's random epoch (odd, never 0): workers tell this run from another.
    epoch: u64,
    /// The run plan as sent in every welcome.
    plan_json: Vec<u8>,
    opts: ClusterOptions,
    registry: Mutex<Registry>,
    aggregator: Mutex<Aggregator>,
    /// Wakes the controller on membership changes and final reports.
    changed: Notify,
    /// Why the run was asked to stop (the web API), for the report.
    stop_request: Mutex<Option<String>>,
    /// A new target asked for during the run (the web API), taken by the controller.
    retarget: Mutex<Option<Retarget>>,
    /// `--start-from-ui`: the start asked for (web API), taken by the controller...
    start: Mutex<Option<Start>>,
    /// ...and what the run was started with, for the reports.
    started_with: Mutex<Option<Start>>,
    /// The final report once written, for the web UI's downloads.
    final_report: Mutex<Option<Arc<crate::report::FinalReport>>>,
}

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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these would be a bug in plain bookkeeping code;
    // the data is still the best we have, so keep going.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Cluster {
    /// The cluster of a run of `plan`, under a fresh epoch.
    pub fn new(plan: &barrage_common::plan::RunPlan, opts: ClusterOptions) -> Arc<Self> {
        let epoch = rand::random::<u64>() | 1;
        let plan_json = plan.to_json();
        let mut aggregator = Aggregator::new(epoch);
        aggregator.plan_endpoints(plan.endpoints.iter().map(|e| (e.name.as_str(), e.method.as_str())));
        Arc::new(Cluster {
            epoch,
            plan_json,
            opts,
            registry: Mutex::new(Registry::new(epoch)),
            aggregator: Mutex::new(aggregator),
            changed: Notify::new(),
            stop_request: Mutex::new(None),
            retarget: Mutex::new(None),
            start: Mutex::new(None),
            started_with: Mutex::new(None),
            final_report: Mutex::new(None),
        })
    }

    /// The registry, locked (never together with [`Cluster::aggregator`]).
    pub fn registry(&self) -> MutexGuard<'_, Registry> {
        lock(&self.registry)
    }

    /// The aggregator, locked (never together with [`Cluster::registry`]).
    pub fn aggregator(&self) -> MutexGuard<'_, Aggregator> {
        lock(&self.aggregator)
    }

    /// The run's epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The options the cluster was made with.
    pub fn opts(&self) -> &ClusterOptions {
        &self.opts
    }

    /// Notified on membership changes, disconnects and final reports.
    pub(crate) fn changed(&self) -> &Notify {
        &self.changed
    }

    /// Records why the run should stop (the caller then triggers the shutdown).
    pub fn request_stop(&self, reason: &str) {
        *lock(&self.stop_request) = Some(reason.to_string());
    }

    /// Why the run was asked to stop, if it was (the web API).
    pub fn stop_requested(&self) -> Option<String> {
        lock(&self.stop_request).clone()
    }

    /// Asks the controller for a new target (applied within a tick).
    pub fn request_retarget(&self, r: Retarget) {
        *lock(&self.retarget) = Some(r);
        self.changed.notify_one();
    }

    /// Takes the new target asked for, if any.
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

    /// Keeps the final report for the web UI's downloads.
    pub fn set_final_report(&self, report: crate::report::FinalReport) {
        *lock(&self.final_report) = Some(Arc::new(report));
    }

    /// The final report once written.
    pub fn final_report(&self) -> Option<Arc<crate::report::FinalReport>> {
        lock(&self.final_report).clone()
    }

    /// Users running now: the sum of each live worker's last heartbeat.
    pub fn live_users(&self) -> u32 {
        self.registry().live_users()
    }

    /// Run time so far (zero before the start).
    pub fn run_elapsed(&self) -> Duration {
        self.registry().run_elapsed()
    }

    /// Declares the workers silent or disconnected for `timeout` or longer lost:
    /// fenced, their sessions closed in the aggregator, the loss noted for the report.
    /// Returns their ids.
    pub fn declare_lost(&self, timeout: Duration) -> Vec<String> {
        let lost = self.registry().write_off_silent(timeout);
        if lost.is_empty() {
            return Vec::new();
        }
        // The aggregator is locked after the registry is released (never both at once).
        let covered: Vec<f64> = {
            let mut agg = self.aggregator();
            for w in &lost {
                agg.fence(&w.id, w.had_load);
            }
            lost.iter()
                .map(|w| {
                    agg.workers
                        .get(&w.id)
                        .map_or(0.0, |p| p.last_interval_end_us as f64 / 1e6)
                })
                .collect()
        };
        self.registry().note_losses(&lost, &covered);
        lost.into_iter().map(|w| w.id).collect()
    }
}
