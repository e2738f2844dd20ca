//! The cluster: the workers of one run and the service they join.
//!
//! - [`worker`]: one worker as the master knows it, across its reconnects.
//! - [`registry`]: who is in the run, the run's phase and clock, and the commands the
//!   master sends (it alone numbers them: `assign`, `stop`, fencing the lost).
//! - [`admission`]: who may join from a hello, and who must be fenced first.
//! - [`service`]: the gRPC `Coordinator.Join` stream and each worker's session task,
//!   which merges its reports into the [`Aggregator`] and acknowledges them.
//!
//! Lock discipline: `Cluster` holds the registry behind a `std::sync::Mutex` and the
//! [`Aggregator`] behind another (never held across `.await`), so merging a report
//! never waits on registry work. Never hold the registry and the aggregator at once:
//! copy what is needed out of one, release it, then take the other. These two are the
//! only locks: they guard state every worker session writes and the controller, the
//! web API and `/metrics` read. The controller ([`crate::controller`]) decides
//! targets and drives the run through them; the web API steers the controller over a
//! channel ([`crate::controller::steering`]), not through the cluster.

pub mod admission;
pub mod registry;
pub mod service;
pub mod worker;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tonic::Status;

use barrage_proto::v1;

use crate::aggregate::{Aggregator, Planned};

pub use registry::{Phase, Registry, Targets};
pub use service::Service;
pub use worker::WorkerEntry;

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
    /// The plan's endpoints, the same the aggregator holds: sessions decode and
    /// check reports against it before taking the aggregator lock.
    planned: Arc<Planned>,
    /// Wakes the controller on membership changes and final reports.
    changed: Notify,
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
        aggregator.plan_goodput(
            (plan.endpoints.iter().enumerate())
                .filter(|(i, _)| plan.endpoint_has_goodput(*i))
                .map(|(_, e)| (e.name.as_str(), e.method.as_str())),
        );
        Arc::new(Cluster {
            epoch,
            plan_json,
            opts,
            registry: Mutex::new(Registry::new(epoch)),
            planned: aggregator.planned(),
            aggregator: Mutex::new(aggregator),
            changed: Notify::new(),
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
