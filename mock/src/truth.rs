//! Ground truth: what the mock actually served, counted with relaxed atomics so no
//! request takes a lock. [`Counters`] is the live tally and [`GroundTruth`] a snapshot
//! of it; streams are counted through [`crate::guard::StreamGuard`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering, fence};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::outcome::Outcome;

/// Ground-truth counters: what the mock actually served, for asserting a load test's
/// report against. Fields are read one by one, so a snapshot taken under load is not
/// one instant's cut; read it when the traffic you care about has settled (see
/// [`crate::MockState::wait_until`]).
///
/// Once nothing is in flight, `requests == outcomes.values().sum() + stops_requested`:
/// every counted request has exactly one outcome except the task-stop calls, which are
/// control traffic a load generator sends on the side.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct GroundTruth {
    /// Every request received on any route except `/_mock/*` and `/health`, counted on
    /// arrival (before auth, validation or any delay), including 401s, 400s and 404s.
    pub requests: u64,
    /// `POST /v1/workflows/run` and `POST /v1/workflows/{id}/run` received.
    pub workflow_runs: u64,
    /// `POST /v1/chat-messages` received (any app mode).
    pub chat_messages: u64,
    /// SSE streams opened (runs answered in streaming mode).
    pub streams_started: u64,
    /// Streams whose terminal event was handed to the transport.
    pub streams_completed: u64,
    /// Streams dropped before their terminal event: the client went away (stalled
    /// streams end this way too).
    pub streams_aborted: u64,
    /// Streams the mock broke off on purpose (`X-Mock-Fault: reset`).
    pub streams_reset: u64,
    /// Streams ended early by a task-stop call (also counted as completed: their
    /// stopped ending is a terminal event).
    pub streams_stopped: u64,
    /// Task-stop calls received (`POST /v1/workflows/tasks/{id}/stop`,
    /// `POST /v1/chat-messages/{id}/stop`), whether or not they stopped anything.
    pub stops_requested: u64,
    /// Blocking runs answered with their body (a `malformed-json` or `giant-event` one
    /// included; error answers, resets and stalls are not).
    pub blocking_completed: u64,
    /// Every SSE event handed to the transport, pings and injected events included.
    pub events_sent: u64,
    /// `event: ping` keep-alives sent, a part of `events_sent`.
    pub pings_sent: u64,
    /// 401 answers (bad key, or `X-Mock-Fault: http-401`), on any route.
    pub unauthorized: u64,
    /// Streams open right now (a gauge; [`crate::MockState::reset`] leaves it alone).
    pub active_streams: u64,
    /// The most streams open at once since the last reset (which restarts it from the
    /// streams open then).
    pub max_concurrent_streams: u64,
    /// Response body bytes handed to the transport on counted routes (headers excluded).
    pub bytes_sent: u64,
    /// How each request ended, keyed by [`Outcome::name`]; outcomes that never happened
    /// are absent. See [`Outcome`] for what each means.
    pub outcomes: BTreeMap<String, u64>,
    /// Responses by HTTP status ("200", "429", ...) on counted routes, stop calls included.
    pub http_statuses: BTreeMap<String, u64>,
    /// TCP connections accepted, counting control-route connections too.
    pub connections_accepted: u64,
    /// Connections being served now (a gauge; at most `--max-connections`).
    pub active_connections: u64,
    /// The most connections served at once since the last reset.
    pub max_concurrent_connections: u64,
    /// Connections accepted but waiting for a free slot (a gauge).
    pub queued_connections: u64,
    /// The most connections waiting at once since the last reset.
    pub max_queued_connections: u64,
    /// Workflow results sent: `workflow_finished` events (workflows and chatflows, any
    /// status) and blocking workflow answers.
    pub workflow_finished: u64,
    /// Sum of their `elapsed_time`, in microseconds (each is a whole number of them).
    pub workflow_elapsed_us: u64,
    /// Sum of their `total_tokens`.
    pub workflow_total_tokens: u64,
    /// Message results sent: `message_end` events (any chat mode) and blocking chat answers.
    pub message_end: u64,
    /// Sum of their `metadata.usage.total_tokens`.
    pub message_total_tokens: u64,
    /// Streams whose first event (pings aside) was timed: when it was handed to the
    /// transport, in microseconds after the request arrived. That is the time to first
    /// event the mock really served, which timer granularity puts slightly past
    /// `--first-event-delay`; a client's TTFE is this plus the loopback transit both
    /// ways. The three fields below sum those times up.
    pub first_event_count: u64,
    /// The median of those times, in microseconds (0 when there is none).
    pub first_event_p50_us: u64,
    /// Their 99th percentile, in microseconds (0 when there is none).
    pub first_event_p99_us: u64,
    /// The longest of them, in microseconds (0 when there is none).
    pub first_event_max_us: u64,
    /// `node_finished` events sent, by node title (every route; absent in older
    /// snapshots).
    pub nodes_finished: BTreeMap<String, u64>,
}

impl GroundTruth {
    /// How many requests ended with `outcome`.
    pub fn outcome(&self, outcome: Outcome) -> u64 {
        self.outcomes.get(outcome.name()).copied().unwrap_or(0)
    }
}

/// A gauge and its peak since the last reset.
#[derive(Debug, Default)]
struct Gauge {
    now: AtomicU64,
    peak: AtomicU64,
}

impl Gauge {
    fn up(&self) {
        let now = self.now.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak.fetch_max(now, Ordering::Relaxed);
    }

    fn down(&self) {
        self.now.fetch_sub(1, Ordering::Relaxed);
    }

    fn read(&self) -> (u64, u64) {
        (self.now.load(Ordering::Relaxed), self.peak.load(Ordering::Relaxed))
    }

    /// The peak restarts from the current value; the gauge itself is left alone, since
    /// what it counts is still there and will be counted down.
    fn reset_peak(&self) {
        self.peak.store(self.now.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

/// A fixed set of counters addressed by index (outcomes, HTTP statuses).
#[derive(Debug)]
struct Bank<const N: usize>([AtomicU64; N]);

impl<const N: usize> Default for Bank<N> {
    fn default() -> Self {
        Self(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

impl<const N: usize> Bank<N> {
    fn bump(&self, index: usize) {
        if let Some(counter) = self.0.get(index) {
            bump(counter, 1);
        }
    }

    /// The non-zero counters, keyed by `name(index)`.
    fn snapshot(&self, name: impl Fn(usize) -> String) -> BTreeMap<String, u64> {
        (0..N)
            .filter_map(|i| {
                let n = self.0[i].load(Ordering::Relaxed);
                (n > 0).then(|| (name(i), n))
            })
            .collect()
    }

    fn reset(&self) {
        for counter in &self.0 {
            counter.store(0, Ordering::Relaxed);
        }
    }
}

/// How a stream closed (see [`crate::guard::StreamGuard`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamEnd {
    /// Its terminal event was handed to the transport.
    Completed,
    /// The mock broke it off on purpose.
    Reset,
    /// The client went away first.
    Aborted,
}

/// HTTP statuses are counted from 100 to 599.
const FIRST_STATUS: u16 = 100;
const STATUSES: usize = 500;

/// The live tally behind [`GroundTruth`], one atomic per field.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    requests: AtomicU64,
    workflow_runs: AtomicU64,
    chat_messages: AtomicU64,
    streams_started: AtomicU64,
    streams_completed: AtomicU64,
    streams_aborted: AtomicU64,
    streams_reset: AtomicU64,
    streams_stopped: AtomicU64,
    stops_requested: AtomicU64,
    blocking_completed: AtomicU64,
    events_sent: AtomicU64,
    pings_sent: AtomicU64,
    unauthorized: AtomicU64,
    streams: Gauge,
    bytes_sent: AtomicU64,
    outcomes: Bank<{ Outcome::ALL.len() }>,
    statuses: Bank<STATUSES>,
    connections_accepted: AtomicU64,
    connections: Gauge,
    queued: Gauge,
    workflow_finished: AtomicU64,
    workflow_elapsed_us: AtomicU64,
    workflow_total_tokens: AtomicU64,
    message_end: AtomicU64,
    message_total_tokens: AtomicU64,
    /// `node_finished` sent by title; one lock per node event.
    nodes_finished: std::sync::Mutex<BTreeMap<String, u64>>,
    /// Offsets of first events (µs after arrival); one lock per stream, not per event.
    first_events: FirstEvents,
    /// Tasks inside [`Counters::wait_until`]. Every update checks it and touches
    /// `changed` (which takes a lock) only when someone waits, so serving traffic
    /// never contends on anything but the counters themselves.
    waiters: AtomicUsize,
    changed: Notify,
}

/// First-event offsets in µs, 3 significant digits (1 µs resolution below 1 ms), up
/// to an hour (longer ones are recorded as an hour).
#[derive(Debug)]
struct FirstEvents(std::sync::Mutex<hdrhistogram::Histogram<u64>>);

impl Default for FirstEvents {
    fn default() -> Self {
        // Constant, valid bounds: construction cannot fail.
        let h = hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000, 3)
            .unwrap_or_else(|_| unreachable!("valid constant bounds"));
        FirstEvents(std::sync::Mutex::new(h))
    }
}

fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Counters {
    fn add(&self, counter: impl FnOnce(&Self) -> &AtomicU64, n: u64) {
        bump(counter(self), n);
        self.changed();
    }

    pub(crate) fn request(&self) {
        self.add(|c| &c.requests, 1);
    }

    pub(crate) fn workflow_run(&self) {
        self.add(|c| &c.workflow_runs, 1);
    }

    pub(crate) fn chat_message(&self) {
        self.add(|c| &c.chat_messages, 1);
    }

    pub(crate) fn unauthorized(&self) {
        self.add(|c| &c.unauthorized, 1);
    }

    pub(crate) fn blocking_completed(&self) {
        self.add(|c| &c.blocking_completed, 1);
    }

    pub(crate) fn stop_requested(&self) {
        self.add(|c| &c.stops_requested, 1);
    }

    pub(crate) fn stream_stopped(&self) {
        self.add(|c| &c.streams_stopped, 1);
    }

    pub(crate) fn bytes(&self, n: u64) {
        self.add(|c| &c.bytes_sent, n);
    }

    /// One SSE event (`ping` or not) of `len` bytes handed to the transport.
    pub(crate) fn event(&self, len: usize, ping: bool) {
        bump(&self.events_sent, 1);
        if ping {
            bump(&self.pings_sent, 1);
        }
        self.bytes(len as u64);
    }

    /// A stream's first event handed to the transport `after` its request arrived.
    pub(crate) fn first_event(&self, after: std::time::Duration) {
        if let Ok(mut h) = self.first_events.0.lock() {
            h.saturating_record(u64::try_from(after.as_micros()).unwrap_or(u64::MAX));
        }
    }

    pub(crate) fn outcome(&self, outcome: Outcome) {
        self.outcomes.bump(outcome.index());
        self.changed();
    }

    pub(crate) fn status(&self, status: http::StatusCode) {
        self.statuses
            .bump(usize::from(status.as_u16().saturating_sub(FIRST_STATUS)));
        self.changed();
    }

    /// A workflow result reporting `elapsed_us` and `total_tokens` was sent.
    pub(crate) fn workflow_result(&self, elapsed_us: u64, total_tokens: u64) {
        bump(&self.workflow_finished, 1);
        bump(&self.workflow_elapsed_us, elapsed_us);
        self.add(|c| &c.workflow_total_tokens, total_tokens);
    }

    /// A message result reporting `total_tokens` was sent.
    pub(crate) fn node_finished(&self, title: &str) {
        if let Ok(mut m) = self.nodes_finished.lock() {
            *m.entry(title.to_owned()).or_default() += 1;
        }
        self.changed();
    }

    pub(crate) fn message_result(&self, total_tokens: u64) {
        bump(&self.message_end, 1);
        self.add(|c| &c.message_total_tokens, total_tokens);
    }

    pub(crate) fn connection_accepted(&self) {
        self.add(|c| &c.connections_accepted, 1);
    }

    /// A connection starts (`true`) or stops (`false`) waiting for a slot.
    pub(crate) fn connection_queued(&self, queued: bool) {
        if queued {
            self.queued.up()
        } else {
            self.queued.down()
        }
        self.changed();
    }

    /// A connection starts (`true`) or stops (`false`) being served.
    pub(crate) fn connection_served(&self, served: bool) {
        if served {
            self.connections.up()
        } else {
            self.connections.down()
        }
        self.changed();
    }

    /// A stream opened.
    pub(crate) fn stream_opened(&self) {
        bump(&self.streams_started, 1);
        self.streams.up();
        self.changed();
    }

    /// A stream closed, the way `end` says.
    pub(crate) fn stream_closed(&self, end: StreamEnd) {
        let counter = match end {
            StreamEnd::Completed => &self.streams_completed,
            StreamEnd::Reset => &self.streams_reset,
            StreamEnd::Aborted => &self.streams_aborted,
        };
        bump(counter, 1);
        self.streams.down();
        self.changed();
    }

    pub(crate) fn snapshot(&self) -> GroundTruth {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let (active_streams, max_concurrent_streams) = self.streams.read();
        let (active_connections, max_concurrent_connections) = self.connections.read();
        let (queued_connections, max_queued_connections) = self.queued.read();
        let (first_event_count, first_event_p50_us, first_event_p99_us, first_event_max_us) =
            match self.first_events.0.lock() {
                Ok(h) if !h.is_empty() => (h.len(), h.value_at_quantile(0.5), h.value_at_quantile(0.99), h.max()),
                _ => (0, 0, 0, 0),
            };
        GroundTruth {
            requests: load(&self.requests),
            workflow_runs: load(&self.workflow_runs),
            chat_messages: load(&self.chat_messages),
            streams_started: load(&self.streams_started),
            streams_completed: load(&self.streams_completed),
            streams_aborted: load(&self.streams_aborted),
            streams_reset: load(&self.streams_reset),
            streams_stopped: load(&self.streams_stopped),
            stops_requested: load(&self.stops_requested),
            blocking_completed: load(&self.blocking_completed),
            events_sent: load(&self.events_sent),
            pings_sent: load(&self.pings_sent),
            unauthorized: load(&self.unauthorized),
            active_streams,
            max_concurrent_streams,
            bytes_sent: load(&self.bytes_sent),
            outcomes: self.outcomes.snapshot(|i| Outcome::ALL[i].name().to_owned()),
            http_statuses: self.statuses.snapshot(|i| (usize::from(FIRST_STATUS) + i).to_string()),
            connections_accepted: load(&self.connections_accepted),
            active_connections,
            max_concurrent_connections,
            queued_connections,
            max_queued_connections,
            workflow_finished: load(&self.workflow_finished),
            workflow_elapsed_us: load(&self.workflow_elapsed_us),
            workflow_total_tokens: load(&self.workflow_total_tokens),
            message_end: load(&self.message_end),
            message_total_tokens: load(&self.message_total_tokens),
            first_event_count,
            first_event_p50_us,
            first_event_p99_us,
            first_event_max_us,
            nodes_finished: self.nodes_finished.lock().map(|m| m.clone()).unwrap_or_default(),
        }
    }

    /// Zeroes every counter except the gauges (open streams, served and queued
    /// connections): what they count is still there, and zeroing them would make its
    /// ends underflow them. Peaks restart from the gauges' current values.
    pub(crate) fn reset(&self) {
        for counter in [
            &self.requests,
            &self.workflow_runs,
            &self.chat_messages,
            &self.streams_started,
            &self.streams_completed,
            &self.streams_aborted,
            &self.streams_reset,
            &self.streams_stopped,
            &self.stops_requested,
            &self.blocking_completed,
            &self.events_sent,
            &self.pings_sent,
            &self.unauthorized,
            &self.bytes_sent,
            &self.connections_accepted,
            &self.workflow_finished,
            &self.workflow_elapsed_us,
            &self.workflow_total_tokens,
            &self.message_end,
            &self.message_total_tokens,
        ] {
            counter.store(0, Ordering::Relaxed);
        }
        self.outcomes.reset();
        self.statuses.reset();
        if let Ok(mut h) = self.first_events.0.lock() {
            h.reset();
        }
        if let Ok(mut m) = self.nodes_finished.lock() {
            m.clear();
        }
        for gauge in [&self.streams, &self.connections, &self.queued] {
            gauge.reset_peak();
        }
        self.changed();
    }

    /// Resolves with the first snapshot satisfying `done`, re-checking after every
    /// counter update. No timeout: wrap it in `tokio::time::timeout`.
    pub(crate) async fn wait_until(&self, mut done: impl FnMut(&GroundTruth) -> bool) -> GroundTruth {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::StreamGuard;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn statuses_and_results_are_tallied() {
        let counters = Counters::default();
        counters.status(http::StatusCode::OK);
        counters.status(http::StatusCode::OK);
        counters.status(http::StatusCode::TOO_MANY_REQUESTS);
        counters.workflow_result(1_500, 14);
        counters.workflow_result(500, 12);
        counters.message_result(20);
        let truth = counters.snapshot();
        assert_eq!(
            truth.http_statuses,
            BTreeMap::from([("200".into(), 2), ("429".into(), 1)])
        );
        assert_eq!(
            (
                truth.workflow_finished,
                truth.workflow_elapsed_us,
                truth.workflow_total_tokens
            ),
            (2, 2_000, 26)
        );
        assert_eq!((truth.message_end, truth.message_total_tokens), (1, 20));
    }

    #[test]
    fn reset_keeps_the_gauges() {
        let counters = Arc::new(Counters::default());
        counters.request();
        counters.outcome(Outcome::Succeeded);
        counters.connection_served(true);
        counters.connection_served(true);
        counters.connection_served(false);
        let a = StreamGuard::start(counters.clone());
        let b = StreamGuard::start(counters.clone());
        drop(b);
        counters.reset();
        let truth = counters.snapshot();
        assert_eq!(truth.requests, 0);
        assert_eq!(truth.streams_aborted, 0);
        assert!(truth.outcomes.is_empty());
        assert_eq!(truth.active_streams, 1);
        assert_eq!(truth.max_concurrent_streams, 1);
        assert_eq!((truth.active_connections, truth.max_concurrent_connections), (1, 1));
        drop(a);
        assert_eq!(counters.snapshot().active_streams, 0);
    }

    #[test]
    fn ground_truth_reads_old_json() {
        // Fields added later default to zero, so an older snapshot still parses.
        let truth: GroundTruth = serde_json::from_str(r#"{"requests": 3}"#).unwrap();
        assert_eq!(truth.requests, 3);
        assert!(truth.outcomes.is_empty());
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
