//! The engine: owns this worker's virtual users and moves their number towards the
//! absolute targets the master sends, at the spawn rate it was given.
//!
//! A spawner task reads the latest [`Targets`] from a `watch` channel (only the newest
//! target matters, so a watch rather than a queue) and starts or stops one user at a
//! time on a schedule of `base + n / rate`, so a ramp ends on time however late the
//! timer fires. The class chosen next is the one furthest below its target in
//! proportion, which keeps the class mix right during the ramp, not just at its end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use barrage_common::plan::RunPlan;

use crate::cores::LoadThreads;
use crate::factory::Factory;
use crate::http::Target;
use crate::placement::{Placement, Resolve, SystemResolver};
use crate::recorder::Recorder;
use crate::source::SourceAddrs;
use crate::user;

/// Absolute targets for this worker.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Targets {
    /// Users per class, indexed like `RunPlan::classes`.
    pub users: Vec<u32>,
    /// Users per second to start or stop; 0 or infinite = all at once.
    pub spawn_rate: f64,
}

/// This worker's load: its virtual users on the load threads, the recorder they
/// record into, and the placement of their addresses. Dropping it cancels the users.
pub struct Engine {
    /// Target addresses and which user goes to which.
    placement: Arc<Placement>,
    targets: watch::Sender<Targets>,
    /// Open model: this worker's share of the arrival schedule (None = closed model).
    arrivals: watch::Sender<Option<crate::arrivals::ArrivalPlan>>,
    recorder: Arc<Recorder>,
    ctl: StopHandle,
    /// Where the users run; dropped after `ctl` has cancelled them.
    load: LoadThreads,
}

/// What it takes to stop an engine's users, cloneable into a background task.
#[derive(Clone)]
pub struct StopHandle {
    /// Graceful: users finish their request and start no new one.
    stopping: CancellationToken,
    /// Hard: in-flight requests are abandoned (counted as cancelled).
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl StopHandle {
    /// Stops every user: graceful for up to `grace`, then hard. Returns when all
    /// user tasks have ended.
    pub async fn stop(&self, grace: Duration) {
        self.stopping.cancel();
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait()).await.is_err() {
            self.cancel.cancel();
            self.tracker.wait().await;
        }
    }

    /// Abandons everything now (master lost, fenced).
    pub async fn abort(&self) {
        self.cancel.cancel();
        self.stopping.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

/// Recorder shards per runtime thread: enough that two users rarely share a lock.
const SHARDS_PER_THREAD: usize = 8;

impl Engine {
    /// Starts an engine with no users on `threads` load threads (0 = one per core; see
    /// [`crate::cores`]). `host` overrides the plan's default host. Hosts are looked
    /// up with the system resolver; see [`Engine::start_with`].
    pub async fn start(
        plan: Arc<RunPlan>,
        host: Option<&str>,
        worker_index: u32,
        origin: Instant,
        threads: usize,
    ) -> Result<Engine, String> {
        Self::start_with(plan, host, worker_index, origin, threads, Arc::new(SystemResolver)).await
    }

    /// [`Engine::start`] with connections bound in turn to `sources`
    /// (`--source-addresses`; None: the kernel picks the source address).
    pub async fn start_with_sources(
        plan: Arc<RunPlan>,
        host: Option<&str>,
        worker_index: u32,
        origin: Instant,
        threads: usize,
        sources: Option<Arc<SourceAddrs>>,
    ) -> Result<Engine, String> {
        let resolver = Arc::new(SystemResolver);
        Self::launch(plan, host, worker_index, origin, threads, resolver, sources).await
    }

    /// [`Engine::start`] with the resolver to look hosts up with.
    ///
    /// Each target host is looked up here and again every `limits.dns_refresh` (see
    /// [`crate::placement`]), never by a connection: when it has several addresses (a
    /// headless Service) or a `[resolve]` entry, users are spread over them by their
    /// cluster-wide index and recorded per address, so the report shows each replica.
    /// A host that does not resolve yet fails its users' requests as `connect dns`
    /// until a lookup finds it.
    pub async fn start_with(
        plan: Arc<RunPlan>,
        host: Option<&str>,
        worker_index: u32,
        origin: Instant,
        threads: usize,
        resolver: Arc<dyn Resolve>,
    ) -> Result<Engine, String> {
        Self::launch(plan, host, worker_index, origin, threads, resolver, None).await
    }

    /// Starts an engine: what [`Engine::start_with`] says, with the source addresses.
    async fn launch(
        plan: Arc<RunPlan>,
        host: Option<&str>,
        worker_index: u32,
        origin: Instant,
        threads: usize,
        resolver: Arc<dyn Resolve>,
        sources: Option<Arc<SourceAddrs>>,
    ) -> Result<Engine, String> {
        let mut targets = Vec::new();
        let mut tls = None;
        for class in &plan.classes {
            let url = class.host.as_deref().or(host).or(plan.host.as_deref()).ok_or_else(|| {
                format!(
                    "user class `{}` has no host; pass -H/--host or set `host` in the scenario",
                    class.name
                )
            })?;
            if url.starts_with("https://") && tls.is_none() {
                tls = Some(crate::tls::client_config(plan.limits.tls_insecure)?);
            }
            let mut target = Target::parse(url, tls.as_ref())?;
            target.sources = sources.clone();
            targets.push(Arc::new(target));
        }
        let placement = Arc::new(Placement::new(
            targets
                .iter()
                .map(|t| (t.host.clone(), t.port, plan.resolve.get(&t.host).cloned()))
                .collect(),
        ));
        let unresolved = placement.refresh(resolver.as_ref()).await;
        let dns_refresh = plan.limits.dns_refresh;
        let threads = if threads == 0 {
            crate::cores::default_threads()
        } else {
            threads
        };
        let load = LoadThreads::start(threads).map_err(|e| format!("cannot start {threads} load threads: {e}"))?;
        let recorder = Arc::new(Recorder::new(
            plan.endpoints.len(),
            load.len() * SHARDS_PER_THREAD,
            origin,
        ));
        let (tx, rx) = watch::channel(Targets {
            users: vec![0; plan.classes.len()],
            spawn_rate: 0.0,
        });
        let (arrivals_tx, arrivals_rx) = watch::channel(None);
        let engine = Engine {
            placement: placement.clone(),
            targets: tx,
            arrivals: arrivals_tx,
            recorder: recorder.clone(),
            ctl: StopHandle {
                stopping: CancellationToken::new(),
                cancel: CancellationToken::new(),
                tracker: TaskTracker::new(),
            },
            load,
        };
        let secrets = Arc::new(plan.secrets());
        let factory = Arc::new(Factory {
            plan,
            hosts: targets,
            placement: placement.clone(),
            secrets,
            worker_index,
            recorder,
            stopping: engine.ctl.stopping.clone(),
            cancel: engine.ctl.cancel.clone(),
            tracker: engine.ctl.tracker.clone(),
            runtimes: engine.load.handles().to_vec(),
            next_id: std::sync::atomic::AtomicUsize::new(0),
        });
        let spawner = Spawner {
            factory: factory.clone(),
            rx,
            live: Vec::new(),
        };
        let dispatcher = crate::arrivals::Dispatcher::new(factory, arrivals_rx, origin);
        engine.ctl.tracker.spawn(dispatcher.run());
        engine.ctl.tracker.spawn(spawner.run());
        engine.ctl.tracker.spawn(crate::placement::refresh_loop(
            placement,
            resolver,
            dns_refresh,
            unresolved,
            engine.ctl.stopping.clone(),
        ));
        Ok(engine)
    }

    /// The target addresses and the users' places on them.
    pub fn placement(&self) -> &Arc<Placement> {
        &self.placement
    }

    /// Sets each class's cluster-wide index of this worker's first user
    /// (`ClassTarget.first_user`); users move at their next request.
    pub fn set_first_users(&self, first: &[u64]) {
        self.placement.set_first_users(first);
    }

    /// The load threads' kernel ids (to measure each one's CPU).
    pub fn load_thread_ids(&self) -> Vec<u32> {
        self.load.thread_ids()
    }

    /// The load threads' runtimes (to watch their scheduling lag).
    pub fn runtimes(&self) -> &[tokio::runtime::Handle] {
        self.load.handles()
    }

    /// Where the users record; the reporter takes each interval from it.
    pub fn recorder(&self) -> &Arc<Recorder> {
        &self.recorder
    }

    /// Replaces this worker's share of the arrivals (open model; the newest wins).
    pub fn set_arrivals(&self, plan: Option<crate::arrivals::ArrivalPlan>) {
        self.arrivals.send_replace(plan);
    }

    /// Replaces the targets (absolute; the newest wins).
    pub fn set_targets(&self, targets: Targets) {
        self.targets.send_replace(targets);
    }

    /// Virtual users alive now.
    pub fn users(&self) -> u32 {
        u32::try_from(self.recorder.users.get().max(0)).unwrap_or(u32::MAX)
    }

    /// A handle that stops the users from another task (the engine stays put).
    pub fn stop_handle(&self) -> StopHandle {
        self.ctl.clone()
    }

    /// See [`StopHandle::stop`].
    pub async fn stop(&self, grace: Duration) {
        self.ctl.stop(grace).await;
    }

    /// See [`StopHandle::abort`].
    pub async fn abort(&self) {
        self.ctl.abort().await;
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // An engine dropped without stop/abort must not leave load running.
        self.ctl.cancel.cancel();
    }
}

struct Live {
    cancel: CancellationToken,
}

struct Spawner {
    factory: Arc<Factory>,
    rx: watch::Receiver<Targets>,
    /// Live users per class, newest last (the newest stops first).
    live: Vec<Vec<Live>>,
}

impl Spawner {
    async fn run(mut self) {
        self.live = self.factory.plan.classes.iter().map(|_| Vec::new()).collect();
        'targets: loop {
            let targets = self.rx.borrow_and_update().clone();
            let interval = if targets.spawn_rate.is_finite() && targets.spawn_rate > 0.0 {
                Some(Duration::from_secs_f64(1.0 / targets.spawn_rate))
            } else {
                None
            };
            let base = tokio::time::Instant::now();
            let mut done: u32 = 0;
            while let Some(step) = self.next_step(&targets.users) {
                if let Some(interval) = interval {
                    let at = base + interval * done;
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        changed = self.rx.changed() => {
                            if changed.is_err() { break 'targets; }
                            continue 'targets;
                        }
                        _ = self.factory.stopping.cancelled() => break 'targets,
                    }
                }
                if self.factory.stopping.is_cancelled() {
                    break 'targets;
                }
                match step {
                    Step::Start(class) => self.start_user(class),
                    Step::Stop(class) => {
                        if let Some(user) = self.live[class].pop() {
                            user.cancel.cancel();
                        }
                    }
                }
                done += 1;
            }
            tokio::select! {
                changed = self.rx.changed() => if changed.is_err() { break },
                _ = self.factory.stopping.cancelled() => break,
            }
        }
    }

    fn next_step(&self, targets: &[u32]) -> Option<Step> {
        // Stop surplus first (a rebalance frees capacity before it adds), then start
        // the class furthest below its target in proportion.
        let surplus = (0..self.live.len())
            .filter(|&c| self.live[c].len() > targets.get(c).copied().unwrap_or(0) as usize)
            .max_by_key(|&c| self.live[c].len() - targets.get(c).copied().unwrap_or(0) as usize);
        if let Some(c) = surplus {
            return Some(Step::Stop(c));
        }
        (0..self.live.len())
            .filter(|&c| (self.live[c].len() as u64) < u64::from(targets.get(c).copied().unwrap_or(0)))
            .min_by(|&a, &b| {
                let fill = |c: usize| self.live[c].len() as f64 / f64::from(targets[c]);
                fill(a).total_cmp(&fill(b)).then(a.cmp(&b))
            })
            .map(Step::Start)
    }

    fn start_user(&mut self, class: usize) {
        // Users stop newest first, so the live ones of a class hold slots 0..len.
        let slot = self.live[class].len() as u64;
        let cancel = self.factory.spawn(class, slot, user::run);
        self.live[class].push(Live { cancel });
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Step {
    Start(usize),
    Stop(usize),
}
