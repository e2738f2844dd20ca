//! What a worker is started with ([`WorkerConfig`], [`MasterTls`]) and how it ends
//! ([`Exit`]).

use std::sync::Arc;
use std::time::Duration;

use crate::source::SourceAddrs;

/// How a worker joins and keeps up with its master; built by `barrage worker` from
/// its flags and environment, or by tests.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// `HOST:PORT` or `http://HOST:PORT` of the master.
    pub master: String,
    /// Stable for the life of the process.
    pub worker_id: String,
    /// Random, never 0, the same across reconnects: the master tells this process from
    /// another one given the same `worker_id` by it.
    pub instance: u64,
    /// This machine's host name, shown by the master.
    pub hostname: String,
    /// CPU cores this process may use, sent in Hello (the default weight).
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
    /// Local addresses target connections bind to in turn, past one address's
    /// ephemeral ports (`--source-addresses`; None: the kernel picks, as usual).
    pub source_addresses: Option<Arc<SourceAddrs>>,
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
    /// A worker of this machine for the master at `master`: a fresh id and instance,
    /// every core, plaintext, no token, retrying for ever.
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
            source_addresses: None,
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
