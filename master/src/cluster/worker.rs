//! One worker as the master knows it (one `--worker-id`, across its reconnects):
//! its hello, its stream, its liveness, its latest heartbeat and assignment. The
//! [`super::registry`] keeps them; [`super::admission`] binds them to connections.

use std::time::Instant;

use tokio::sync::mpsc::error::TrySendError;
use tracing::{debug, warn};

use barrage_proto::v1::{self, master_message::Kind as MKind};

use super::Outbound;

/// One worker (one `--worker-id`) as the master knows it, across its reconnects.
#[derive(Debug)]
pub struct WorkerEntry {
    pub(super) id: String,
    /// Its number in the run, in order of first join (`Welcome.worker_index`).
    pub(super) index: u32,
    pub(super) hostname: String,
    pub(super) cores: u32,
    /// Local addresses its connections bind to (`Hello.source_addresses`; 0 = not set).
    pub(super) source_addresses: u32,
    /// `--weight` (0 = not given: its cores are its weight).
    pub(super) weight: u32,
    /// The process behind the id (`Hello.pid`, `Hello.instance`; 0 = not sent).
    pub(super) pid: u32,
    pub(super) instance: u64,
    /// Its stream, while connected.
    pub(super) tx: Option<Outbound>,
    /// Identifies the current connection, so an old stream's end does not mark a
    /// newer one as disconnected.
    pub(super) conn: u64,
    pub(super) disconnected_at: Option<Instant>,
    /// Written off (declared lost): its share went to the others.
    pub(super) lost: bool,
    pub(super) last_seen: Instant,
    pub(super) heartbeat: v1::WorkerHeartbeat,
    /// The last Assign sent, resent verbatim after a reconnect.
    pub(super) last_assign: Option<v1::Assign>,
}

impl WorkerEntry {
    /// A worker that said hello for the first time, as the registry's `index`-th.
    pub(super) fn new(hello: &v1::Hello, index: u32) -> WorkerEntry {
        WorkerEntry {
            id: hello.worker_id.clone(),
            index,
            hostname: hello.hostname.clone(),
            cores: hello.cpu_cores,
            source_addresses: hello.source_addresses,
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
        }
    }

    /// Its `--worker-id`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Its number in the run, in order of first join.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The host name it gave in its hello.
    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    /// The CPU cores it reported in its hello.
    pub fn cores(&self) -> u32 {
        self.cores
    }

    /// Written off (declared lost) during this run.
    pub fn is_lost(&self) -> bool {
        self.lost
    }

    /// Its stream is open now.
    pub fn is_connected(&self) -> bool {
        self.tx.is_some()
    }

    /// The users it said it runs in its latest heartbeat.
    pub fn users(&self) -> u32 {
        self.heartbeat.users
    }

    /// The last assignment sent to it (None once written off or before the run).
    pub fn last_assign(&self) -> Option<&v1::Assign> {
        self.last_assign.as_ref()
    }

    /// Capacity used for partitioning: --weight if given, else cores.
    pub(super) fn capacity(&self) -> u32 {
        if self.weight > 0 {
            self.weight
        } else {
            self.cores.max(1)
        }
    }

    /// Queues a message on its stream; a full queue (it is not reading) or a closed
    /// stream disconnects it rather than block the master.
    pub(super) fn send(&mut self, kind: MKind) {
        if let Some(tx) = &self.tx
            && let Err(e) = tx.try_send(Ok(v1::MasterMessage { kind: Some(kind) }))
        {
            match e {
                TrySendError::Full(_) => {
                    warn!(worker = %self.id, "worker queue full (it is not reading): disconnecting it")
                }
                // It left (or its stream broke): nothing to warn about here.
                TrySendError::Closed(_) => debug!(worker = %self.id, "worker stream closed"),
            }
            self.tx = None;
            self.disconnected_at.get_or_insert_with(Instant::now);
        }
    }
}
