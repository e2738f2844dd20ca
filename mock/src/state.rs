//! [`MockState`]: the handle to one mock, shared by its handlers and by whoever wants
//! to read its ground truth without going through HTTP (tests, the demo).

use std::fmt;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::MockConfig;
use crate::ids;
use crate::limits::ActiveLimit;
use crate::tasks::Tasks;
use crate::truth::{Counters, GroundTruth};

/// A mock's configuration and live counters. Cloning is cheap and every clone sees
/// the same counters, so tests keep one and hand another to [`crate::run()`].
#[derive(Clone)]
pub struct MockState {
    cfg: Arc<MockConfig>,
    counters: Arc<Counters>,
    /// The id `POST /v1/workflows/run` reports as `workflow_id`: one published
    /// workflow per mock, as one Dify app key has.
    workflow_id: Arc<str>,
    /// The app's id, which Dify names in its `too_many_requests` message.
    app_id: Arc<str>,
    /// Runs in flight against `--max-active`.
    active: Arc<ActiveLimit>,
    /// Open streams by task id, for the stop routes.
    tasks: Arc<Tasks>,
    /// Cancelled when [`crate::run()`]'s shutdown future resolves: stalled responses,
    /// which would otherwise hold graceful shutdown forever, end then.
    shutdown: CancellationToken,
}

impl MockState {
    /// A mock serving `cfg`, its counters at zero, with a fresh workflow id and app id.
    pub fn new(cfg: MockConfig) -> Self {
        Self {
            active: ActiveLimit::new(cfg.max_active),
            cfg: Arc::new(cfg),
            counters: Arc::default(),
            workflow_id: ids::uuid().into(),
            app_id: ids::uuid().into(),
            tasks: Arc::default(),
            shutdown: CancellationToken::new(),
        }
    }

    /// The configuration it serves (per-request headers may override it).
    pub fn config(&self) -> &MockConfig {
        &self.cfg
    }

    /// What the mock has served so far (see [`GroundTruth`] for what each field counts).
    pub fn ground_truth(&self) -> GroundTruth {
        self.counters.snapshot()
    }

    /// Zeroes the counters, except the `active_streams` gauge; `max_concurrent_streams`
    /// restarts from the streams open now.
    pub fn reset(&self) {
        self.counters.reset();
    }

    /// Resolves with the first ground truth satisfying `done`, re-checked after every
    /// counter update, so a test can wait for the mock to notice a hang-up without
    /// sleeping. It has no timeout of its own: wrap it in `tokio::time::timeout`.
    pub async fn wait_until(&self, done: impl FnMut(&GroundTruth) -> bool) -> GroundTruth {
        self.counters.wait_until(done).await
    }

    pub(crate) fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }

    pub(crate) fn workflow_id(&self) -> &str {
        &self.workflow_id
    }

    /// The app id this mock names in its "Too many requests" message (random per
    /// mock, as `app_model.id` is per Dify app).
    pub fn app_id(&self) -> &str {
        &self.app_id
    }

    pub(crate) fn active_limit(&self) -> &Arc<ActiveLimit> {
        &self.active
    }

    pub(crate) fn tasks(&self) -> &Arc<Tasks> {
        &self.tasks
    }

    pub(crate) fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }
}

impl fmt::Debug for MockState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockState")
            .field("cfg", &self.cfg)
            .field("workflow_id", &self.workflow_id)
            .field("app_id", &self.app_id)
            .field("ground_truth", &self.ground_truth())
            .finish()
    }
}
