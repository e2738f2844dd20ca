//! Starting virtual users: the [`Factory`] holds what every user of this worker
//! shares (plan, targets, placement, recorder, stop tokens, load threads) and starts
//! one user of a class on its load thread. Shared by the closed-model spawner
//! ([`crate::runner`]) and the open-model dispatcher ([`crate::arrivals`]).

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use barrage_common::plan::RunPlan;

use crate::http::Target;
use crate::placement::{Placement, Seat};
use crate::recorder::Recorder;
use crate::user::{SeatCell, UserCtx};

/// What it takes to start a user of any class; shared by the closed-model spawner and
/// the open-model dispatcher.
pub(crate) struct Factory {
    /// The run plan every user follows.
    pub(crate) plan: Arc<RunPlan>,
    /// Per class: its target.
    pub(crate) hosts: Vec<Arc<Target>>,
    /// Target addresses and which user goes to which.
    pub(crate) placement: Arc<Placement>,
    /// Every secret of the plan, redacted from what targets send back.
    pub(crate) secrets: Arc<Vec<String>>,
    /// This worker's index in the cluster, part of `{{user}}`.
    pub(crate) worker_index: u32,
    /// Where every user records.
    pub(crate) recorder: Arc<Recorder>,
    /// The engine's graceful stop.
    pub(crate) stopping: CancellationToken,
    /// The engine's hard stop; each user gets a child token of it.
    pub(crate) cancel: CancellationToken,
    /// Tracks every user task, so a stop can wait for them all.
    pub(crate) tracker: TaskTracker,
    /// The load threads' runtimes; user `n` runs on `runtimes[n % len]`.
    pub(crate) runtimes: Vec<tokio::runtime::Handle>,
    /// The id of the next user started (unique on this worker; starts at 0).
    pub(crate) next_id: AtomicUsize,
}

impl Factory {
    /// Starts a user of `class` on its load thread: `body` gets its context and RNG.
    /// `slot` is its index among this worker's users of the class (what places it on
    /// a replica). Returns the token that stops it alone.
    pub(crate) fn spawn<F, Fut>(&self, class: usize, slot: u64, body: F) -> CancellationToken
    where
        F: FnOnce(UserCtx, SmallRng) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let id = self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let cancel = self.cancel.child_token();
        let ctx = UserCtx {
            plan: self.plan.clone(),
            class,
            id,
            worker_index: self.worker_index,
            target: self.hosts[class].clone(),
            seat: SeatCell::new(self.placement.clone(), Seat::new(&self.placement, class, slot)),
            recorder: self.recorder.clone(),
            secrets: self.secrets.clone(),
            stopping: self.stopping.clone(),
            cancel: cancel.clone(),
            // The spawner runs on the control runtime.
            background: tokio::runtime::Handle::current(),
        };
        let runtime = &self.runtimes[id % self.runtimes.len()];
        let rng = SmallRng::from_rng(&mut rand::rng());
        self.tracker.spawn_on(body(ctx, rng), runtime);
        cancel
    }
}
