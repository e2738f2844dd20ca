//! Ground truth: what the mock actually served, counted with relaxed atomics so no
//! request takes a lock. [`Counters`] is the live tally, [`GroundTruth`] a snapshot of it
//! and [`StreamGuard`] the one place a stream's start and end are counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering, fence};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

/// Ground-truth counters: what the mock actually served, for asserting a load test's
/// report against. Fields are read one by one, so a snapshot taken under load is not
/// one instant's cut; read it when the traffic you care about has settled (see
/// [`crate::MockState::wait_until`]).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct GroundTruth {
    /// Every request received on any route except `/_mock/*` and `/health`, counted on
    /// arrival (before auth, validation or any delay), including 401s, 400s and 404s.
    pub requests: u64,
    /// `POST /v1/workflows/run` and `POST /v1/workflows/{id}/run` received.
    pub workflow_runs: u64,
    /// `POST /v1/chat-messages` received.
    pub chat_messages: u64,
    pub streams_started: u64,
    /// Streams whose terminal event was handed to the transport.
    pub streams_completed: u64,
    /// Streams dropped before their terminal event: the client went away.
    pub streams_aborted: u64,
    pub blocking_completed: u64,
    /// Every SSE event handed to the transport, pings included.
    pub events_sent: u64,
    pub pings_sent: u64,
    /// 401 answers.
    pub unauthorized: u64,
    /// Streams open right now (a gauge; [`crate::MockState::reset`] leaves it alone).
    pub active_streams: u64,
    pub max_concurrent_streams: u64,
    /// Response body bytes handed to the transport on counted routes (headers excluded).
    pub bytes_sent: u64,
}

/// The live tally behind [`GroundTruth`], one atomic per field.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    requests: AtomicU64,
    workflow_runs: AtomicU64,
    chat_messages: AtomicU64,
    streams_started: AtomicU64,
    streams_completed: AtomicU64,
    streams_aborted: AtomicU64,
    blocking_completed: AtomicU64,
    events_sent: AtomicU64,
    pings_sent: AtomicU64,
    unauthorized: AtomicU64,
    active_streams: AtomicU64,
    max_concurrent_streams: AtomicU64,
    bytes_sent: AtomicU64,
    /// Tasks inside [`Counters::wait_until`]. Every update checks it and touches
    /// `changed` (which takes a lock) only when someone waits, so serving traffic
    /// never contends on anything but the counters themselves.
    waiters: AtomicUsize,
    changed: Notify,
}

fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Counters {
    pub fn request(&self) {
        bump(&self.requests, 1);
        self.changed();
    }

    pub fn workflow_run(&self) {
        bump(&self.workflow_runs, 1);
        self.changed();
    }

    pub fn chat_message(&self) {
        bump(&self.chat_messages, 1);
        self.changed();
    }

    pub fn unauthorized(&self) {
        bump(&self.unauthorized, 1);
        self.changed();
    }

    pub fn blocking_completed(&self) {
        bump(&self.blocking_completed, 1);
        self.changed();
    }

    pub fn bytes(&self, n: u64) {
        bump(&self.bytes_sent, n);
        self.changed();
    }

    /// One SSE event (`ping` or not) of `len` bytes handed to the transport.
    pub fn event(&self, len: usize, ping: bool) {
        bump(&self.events_sent, 1);
        if ping {
            bump(&self.pings_sent, 1);
        }
        bump(&self.bytes_sent, len as u64);
        self.changed();
    }

    pub fn snapshot(&self) -> GroundTruth {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        GroundTruth {
            requests: load(&self.requests),
            workflow_runs: load(&self.workflow_runs),
            chat_messages: load(&self.chat_messages),
            streams_started: load(&self.streams_started),
            streams_completed: load(&self.streams_completed),
            streams_aborted: load(&self.streams_aborted),
            blocking_completed: load(&self.blocking_completed),
            events_sent: load(&self.events_sent),
            pings_sent: load(&self.pings_sent),
            unauthorized: load(&self.unauthorized),
            active_streams: load(&self.active_streams),
            max_concurrent_streams: load(&self.max_concurrent_streams),
            bytes_sent: load(&self.bytes_sent),
        }
    }

    /// Zeroes every counter except the `active_streams` gauge: open streams are still
    /// open, and zeroing it would make their ends underflow it. The peak restarts from
    /// the streams open now.
    pub fn reset(&self) {
        for counter in [
            &self.requests,
            &self.workflow_runs,
            &self.chat_messages,
            &self.streams_started,
            &self.streams_completed,
            &self.streams_aborted,
            &self.blocking_completed,
            &self.events_sent,
            &self.pings_sent,
            &self.unauthorized,
            &self.bytes_sent,
        ] {
            counter.store(0, Ordering::Relaxed);
        }
        self.max_concurrent_streams
            .store(self.active_streams.load(Ordering::Relaxed), Ordering::Relaxed);
        self.changed();
    }

    /// Resolves with the first snapshot satisfying `done`, re-checking after every
    /// counter update. No timeout: wrap it in `tokio::time::timeout`.
    pub async fn wait_until(&self, mut done: impl FnMut(&GroundTruth) -> bool) -> GroundTruth {
        let _waiting = Waiting::register(&self.waiters);
        loop {
            // Created before the check, so an update landing between the check and the
            // await still wakes us (`notify_waiters` reaches every `Notified` that
            // exists when it is called, polled or not).
            let notified = self.changed.notified();
            // Pairs with the fence in `changed`: either the updater sees our
            // registration and notifies, or our snapshot sees its update.
            fence(Ordering::SeqCst);
            let truth = self.snapshot();
            if done(&truth) {
                return truth;
            }
            notified.await;
        }
    }

    fn changed(&self) {
        fence(Ordering::SeqCst);
        if self.waiters.load(Ordering::Relaxed) > 0 {
            self.changed.notify_waiters();
        }
    }
}

/// Registration of one [`Counters::wait_until`] caller; undone on drop, so a waiter
/// cancelled by a timeout stops costing updates a notification.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn register(waiters: &'a AtomicUsize) -> Self {
        waiters.fetch_add(1, Ordering::Relaxed);
        Self(waiters)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One open stream. Created when a streaming response is built; [`StreamGuard::complete`]
/// marks its terminal event as handed to the transport. Dropped without that (the
/// client hung up and the body was dropped), it counts the stream as aborted. Either
/// way `active_streams` goes back down exactly once.
#[derive(Debug)]
pub(crate) struct StreamGuard {
    counters: Arc<Counters>,
    open: bool,
}

impl StreamGuard {
    pub fn start(counters: Arc<Counters>) -> Self {
        bump(&counters.streams_started, 1);
        let active = counters.active_streams.fetch_add(1, Ordering::Relaxed) + 1;
        counters.max_concurrent_streams.fetch_max(active, Ordering::Relaxed);
        counters.changed();
        Self { counters, open: true }
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The terminal event has been handed to the transport. Idempotent.
    pub fn complete(&mut self) {
        self.close(|c| &c.streams_completed);
    }

    fn close(&mut self, outcome: impl FnOnce(&Counters) -> &AtomicU64) {
        if !self.open {
            return;
        }
        self.open = false;
        bump(outcome(&self.counters), 1);
        self.counters.active_streams.fetch_sub(1, Ordering::Relaxed);
        self.counters.changed();
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.close(|c| &c.streams_aborted);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn guard_counts_completion_or_abort_once() {
        let counters = Arc::new(Counters::default());
        let mut done = StreamGuard::start(counters.clone());
        let dropped = StreamGuard::start(counters.clone());
        assert_eq!(counters.snapshot().active_streams, 2);
        done.complete();
        done.complete();
        drop(done);
        drop(dropped);
        let truth = counters.snapshot();
        assert_eq!(truth.streams_started, 2);
        assert_eq!(truth.streams_completed, 1);
        assert_eq!(truth.streams_aborted, 1);
        assert_eq!(truth.active_streams, 0);
        assert_eq!(truth.max_concurrent_streams, 2);
    }

    #[test]
    fn reset_keeps_the_gauge() {
        let counters = Arc::new(Counters::default());
        counters.request();
        let a = StreamGuard::start(counters.clone());
        let b = StreamGuard::start(counters.clone());
        drop(b);
        counters.reset();
        let truth = counters.snapshot();
        assert_eq!(truth.requests, 0);
        assert_eq!(truth.streams_aborted, 0);
        assert_eq!(truth.active_streams, 1);
        assert_eq!(truth.max_concurrent_streams, 1);
        drop(a);
        assert_eq!(counters.snapshot().active_streams, 0);
    }

    #[tokio::test]
    async fn wait_until_wakes_on_update() {
        let counters = Arc::new(Counters::default());
        let waiter = {
            let counters = counters.clone();
            tokio::spawn(async move { counters.wait_until(|t| t.requests == 2).await })
        };
        counters.request();
        counters.request();
        let truth = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(truth.requests, 2);
        assert_eq!(counters.waiters.load(Ordering::Relaxed), 0);
    }
}
