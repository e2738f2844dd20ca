//! What a virtual user is given: the [`UserCtx`] it shares read-only with its siblings,
//! and its [`SeatCell`], the address its requests go to and the recorder slot they are
//! counted in.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use barrage_common::metrics::{EndpointStats, FailureKind};
use barrage_common::plan::RunPlan;

use crate::http::{Failure, Target};
use crate::placement::{Pick, Placement, Seat};
use crate::recorder::Recorder;

/// Everything a user needs, shared read-only with its siblings.
pub(crate) struct UserCtx {
    /// The run plan this worker was given in Welcome.
    pub(crate) plan: Arc<RunPlan>,
    /// Index of the user's class in `plan.classes`.
    pub(crate) class: usize,
    /// Unique per user on this worker (also selects the recorder shard).
    pub(crate) id: usize,
    /// This worker's index in the cluster (from Welcome), part of `{{user}}`.
    pub(crate) worker_index: u32,
    /// The class's target (scheme, host, port, TLS), for the Host header and connects.
    pub(crate) target: Arc<Target>,
    /// The address this user connects to (re-read before each request) and its slot
    /// in the recorder.
    pub(crate) seat: SeatCell,
    /// The engine's recorder, shared by every user of this worker.
    pub(crate) recorder: Arc<Recorder>,
    /// Every secret of the plan, for redacting what a target sends back.
    pub(crate) secrets: Arc<Vec<String>>,
    /// Graceful stop: finish the current request, start no new one.
    pub(crate) stopping: CancellationToken,
    /// Hard stop: abandon the current request now.
    pub(crate) cancel: CancellationToken,
    /// The worker's control runtime, for work that must outlive the user and its load
    /// thread (a Dify task stop sent as the run ends, when load threads shut down).
    pub(crate) background: tokio::runtime::Handle,
}

impl UserCtx {
    /// Records into this user's shard, in its address's slot.
    pub(super) fn record<R>(&self, endpoint: usize, f: impl FnOnce(&mut EndpointStats) -> R) -> R {
        self.recorder
            .with(self.id, endpoint, self.seat.slot.load(Ordering::Relaxed), f)
    }
}

/// A user's [`Seat`] with the engine's placement: the address of its requests.
///
/// A per-user `std::sync::Mutex` (only its own task takes it, once per request), and
/// the recorder slot of the current address as an atomic for the many `record` calls.
pub(crate) struct SeatCell {
    placement: Arc<Placement>,
    seat: Mutex<Seat>,
    /// Recorder slot of the current pick: peer + 1, or 0 when unresolved.
    slot: AtomicUsize,
}

impl SeatCell {
    /// Seats a user at `seat` of `placement`; it leaves the seat when dropped.
    pub(crate) fn new(placement: Arc<Placement>, seat: Seat) -> SeatCell {
        let slot = slot_of(seat.pick());
        SeatCell {
            placement,
            seat: Mutex::new(seat),
            slot: AtomicUsize::new(slot),
        }
    }

    /// Re-reads the placement; true when the address changed (drop the connection).
    pub(super) fn refresh(&self) -> bool {
        let mut seat = self.seat.lock().unwrap_or_else(|p| p.into_inner());
        let (pick, moved) = seat.current(&self.placement);
        self.slot.store(slot_of(pick), Ordering::Relaxed);
        moved
    }

    /// Where to connect: the pinned address, or the lookup failure to count.
    pub(super) fn address(&self) -> Result<SocketAddr, Failure> {
        match self.seat.lock().unwrap_or_else(|p| p.into_inner()).pick() {
            Pick::Peer(_, a) => Ok(*a),
            Pick::Unresolved(message) => Err(Failure::new(FailureKind::Connect, "dns", message.clone())),
        }
    }
}

impl Drop for SeatCell {
    fn drop(&mut self) {
        self.seat
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .leave(&self.placement);
    }
}

/// The recorder slot of a pick: peer + 1, or 0 when unresolved.
fn slot_of(pick: &Pick) -> usize {
    match pick {
        Pick::Peer(p, _) => p + 1,
        Pick::Unresolved(_) => 0,
    }
}
