//! The SSE body: plays a [`Script`] (what to say) on a timetable (when to say it) with
//! Dify's keep-alive pings in between, one body frame per event, counting each event
//! as it is handed to the transport. Workflow and chat apps differ only in their
//! scripts; the player owns everything else: stopping a run when its task is stopped,
//! and the transport faults (reset, stall, giant event, malformed JSON) at their place.

use std::collections::VecDeque;
use std::io;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use futures::Stream;
use http::{HeaderValue, StatusCode, header};
use serde_json::{Map, Value, json};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use crate::cadence::{Cadence, after};
use crate::config::Behaviour;
use crate::fault::Fault;
use crate::guard::StreamGuard;
use crate::ids;
use crate::limits::ActiveSlot;
use crate::outcome::{Outcome, Tally};
use crate::run;
use crate::state::MockState;
use crate::tasks::TaskHandle;

/// Dify's keep-alive frame: an event with no data, which SSE clients must ignore.
const PING: &[u8] = b"event: ping\n\n";
/// The frame `malformed-json` injects: a data line that is not JSON.
const MALFORMED: &[u8] = b"data: {not json\n\n";
/// Filler for a giant event, handed out in slices of up to this size, so a giant event
/// reaches the client in many reads and costs the mock no memory.
static PAD: [u8; 64 * 1024] = [b'A'; 64 * 1024];

/// What one stream says: a fixed number of events, ending with its terminal one(s).
pub(crate) trait Script: Send + 'static {
    /// Number of events including the ending; at least 1.
    fn len(&self) -> u64;
    /// Event `index` (0-based), called once per index in order; the player frames it.
    fn event(&mut self, index: u64) -> Value;
    /// What the whole stream reads as to a client once its last event is out.
    fn outcome(&self) -> Outcome;
    /// How many events at the end form the ending (a chatflow's `workflow_finished`
    /// and `message_end`); faults and stops land before them.
    fn ending_len(&self) -> u64 {
        1
    }
    /// The events that end the run at once when it is stopped, the last one terminal.
    fn stopped(&mut self) -> Vec<Value>;
    /// The top-level ids every event of this stream carries, for injected events.
    fn ids(&self) -> Map<String, Value>;
    /// A pause before event `index` besides the cadence (a described workflow's
    /// queueing before event 0 and each node's time before its `node_finished`).
    fn pause_before(&self, _index: u64) -> Duration {
        Duration::ZERO
    }
}

/// Frames one event as Dify writes it: `data: {json}\n\n`.
pub(crate) fn data_frame(event: &Value) -> Bytes {
    Bytes::from(format!("data: {event}\n\n"))
}

/// Everything a stream holds besides its script, released when it ends.
pub(crate) struct Playback {
    pub behaviour: Behaviour,
    /// When the request reached the mock; the timetable starts here.
    pub arrival: Instant,
    pub guard: StreamGuard,
    /// The run's place under `--max-active`, given back with the terminal event.
    pub slot: Option<ActiveSlot>,
    /// The task's registration, through which a stop call reaches the stream.
    pub task: Option<TaskHandle>,
    /// Cancelled when the server shuts down, which ends stalled streams.
    pub shutdown: CancellationToken,
}

impl Playback {
    /// The playback of a stream starting now on `state`'s mock: counted from here on.
    pub(crate) fn new(
        state: &MockState,
        behaviour: Behaviour,
        arrival: Instant,
        slot: Option<ActiveSlot>,
        task: TaskHandle,
    ) -> Self {
        Self {
            behaviour,
            arrival,
            guard: StreamGuard::start(state.counters().clone()),
            slot,
            task: Some(task),
            shutdown: state.shutdown().clone(),
        }
    }
}

/// A `200 text/event-stream` response playing `script` per `playback`.
pub(crate) fn response(script: impl Script, playback: Playback) -> Response {
    let player = Player::new(script, playback);
    let mut response = Response::new(Body::from_stream(player.into_stream()));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response.extensions_mut().insert(Tally::Later);
    response
}

/// What a piece of the body is, for counting when it is handed over.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Ping,
    /// Part of an event whose last piece comes later.
    Part,
    Event,
    /// An injected event; delivering it decides the stream's outcome.
    Injected(Outcome),
    /// The last event; the stream reads as this outcome.
    Terminal(Outcome),
}

/// A workflow, node or message result an event reports, counted as it is handed over.
#[derive(Debug, Clone, PartialEq)]
enum Report {
    Workflow { elapsed_us: u64, total_tokens: u64 },
    Message { total_tokens: u64 },
    Node { title: String },
}

impl Report {
    fn of(event: &Value) -> Option<Self> {
        let tokens = |v: &Value| v.as_u64().unwrap_or(0);
        match event["event"].as_str()? {
            "workflow_finished" => Some(Report::Workflow {
                elapsed_us: run::micros(&event["data"]["elapsed_time"]),
                total_tokens: tokens(&event["data"]["total_tokens"]),
            }),
            "message_end" => Some(Report::Message {
                total_tokens: tokens(&event["metadata"]["usage"]["total_tokens"]),
            }),
            "node_finished" => Some(Report::Node {
                title: event["data"]["title"].as_str().unwrap_or("").to_owned(),
            }),
            _ => None,
        }
    }
}

struct Piece {
    bytes: Bytes,
    kind: Kind,
    report: Option<Report>,
}

impl Piece {
    fn new(bytes: impl Into<Bytes>, kind: Kind) -> Self {
        Self {
            bytes: bytes.into(),
            kind,
            report: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Playing,
    /// Break the connection once the backlog is out.
    Reset,
    /// Silent until the client leaves or the server shuts down.
    Stalled,
    Done,
}

/// Plays a script: owns its timetable and the stream's [`StreamGuard`], so dropping the
/// body (the client hung up) drops the guard and counts the abort.
struct Player<S> {
    script: S,
    next_index: u64,
    /// When the request arrived, and whether its first event has gone out (ground truth).
    arrival: Instant,
    first_sent: bool,
    events: Cadence,
    /// `None` if pings are off.
    pings: Option<Cadence>,
    behaviour: Behaviour,
    /// The transport fault still to inject, and before which event.
    injection: Option<(u64, Fault)>,
    /// Pieces due now, handed over one per poll, before anything else happens.
    backlog: VecDeque<Piece>,
    state: State,
    guard: StreamGuard,
    slot: Option<ActiveSlot>,
    task: Option<TaskHandle>,
    shutdown: CancellationToken,
}

impl<S: Script> Player<S> {
    fn new(script: S, playback: Playback) -> Self {
        let Playback {
            behaviour,
            arrival,
            guard,
            slot,
            task,
            shutdown,
        } = playback;
        let before_ending = script.len().saturating_sub(script.ending_len());
        let queued = script.pause_before(0);
        let injection = match behaviour.fault {
            fault @ (Fault::Reset | Fault::Stall | Fault::GiantEvent | Fault::MalformedJson | Fault::Stopped) => {
                Some((behaviour.fault_after.min(before_ending), fault))
            }
            _ => None,
        };
        Self {
            script,
            next_index: 0,
            arrival,
            first_sent: false,
            events: Cadence {
                due: after(arrival, behaviour.first_event_delay.saturating_add(queued)),
                interval: behaviour.chunk_interval,
            },
            pings: behaviour.ping_interval.map(|interval| Cadence {
                due: after(arrival, interval),
                interval,
            }),
            behaviour,
            injection,
            backlog: VecDeque::new(),
            state: State::Playing,
            guard,
            slot,
            task,
            shutdown,
        }
    }

    fn into_stream(self) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
        futures::stream::unfold(self, |mut player| async move {
            let item = player.next().await?;
            Some((item, player))
        })
    }

    /// The next body frame once it is due; an error breaks the connection (reset);
    /// `None` ends the body.
    async fn next(&mut self) -> Option<io::Result<Bytes>> {
        loop {
            if let Some(piece) = self.backlog.pop_front() {
                return Some(Ok(self.hand(piece)));
            }
            match self.state {
                State::Done => return None,
                State::Reset => {
                    // Hand control back once so the transport flushes what it was given
                    // first: hyper discards unflushed bytes when a body fails, and the
                    // client must see the K events before the break.
                    tokio::task::yield_now().await;
                    self.state = State::Done;
                    self.guard.reset();
                    self.slot = None;
                    return Some(Err(io::Error::new(
                        io::ErrorKind::ConnectionReset,
                        "barrage-mock: reset injected by X-Mock-Fault",
                    )));
                }
                State::Stalled => {
                    self.shutdown.cancelled().await;
                    self.state = State::Done;
                }
                State::Playing => self.play().await,
            }
        }
    }

    /// Waits for the next ping or event (or a stop) and queues what it produces.
    async fn play(&mut self) {
        let ping_due = self.pings.as_ref().map(|p| p.due).filter(|due| *due < self.events.due);
        let due = ping_due.unwrap_or(self.events.due);
        let stoppable = self.next_index < self.script.len().saturating_sub(self.script.ending_len());
        let task = self.task.as_ref().filter(|_| stoppable);
        let stop_asked = tokio::select! {
            biased;
            () = stop_requested(task) => true,
            () = sleep_until(due) => false,
        };
        if stop_asked {
            self.guard.counters().stream_stopped();
            self.stop();
            return;
        }
        // An event and a ping due together: the event goes first.
        if let Some(pings) = self.pings.as_mut().filter(|_| ping_due.is_some()) {
            pings.advance(Duration::ZERO);
            self.backlog.push_back(Piece::new(PING, Kind::Ping));
            return;
        }
        let pause = self.script.pause_before(self.next_index + 1);
        self.events.advance(self.behaviour.jitter_draw().saturating_add(pause));
        if let Some((_, fault)) = self.injection.filter(|(at, _)| *at == self.next_index) {
            self.injection = None;
            self.inject(fault);
            return;
        }
        let event = self.script.event(self.next_index);
        self.next_index += 1;
        let kind = if self.next_index >= self.script.len() {
            self.state = State::Done;
            Kind::Terminal(self.script.outcome())
        } else {
            Kind::Event
        };
        self.push_event(&event, kind);
    }

    fn push_event(&mut self, event: &Value, kind: Kind) {
        let mut piece = Piece::new(data_frame(event), kind);
        piece.report = Report::of(event);
        self.backlog.push_back(piece);
    }

    /// Queues the script's stopped ending, to go out at once.
    fn stop(&mut self) {
        let ending = self.script.stopped();
        let last = ending.len().saturating_sub(1);
        for (i, event) in ending.iter().enumerate() {
            let kind = if i == last {
                Kind::Terminal(Outcome::Stopped)
            } else {
                Kind::Event
            };
            self.push_event(event, kind);
        }
        self.state = State::Done;
    }

    fn inject(&mut self, fault: Fault) {
        match fault {
            Fault::Reset => self.state = State::Reset,
            Fault::Stall => {
                self.guard.record(Outcome::Stall);
                self.state = State::Stalled;
            }
            Fault::MalformedJson => self
                .backlog
                .push_back(Piece::new(MALFORMED, Kind::Injected(Outcome::MalformedJson))),
            Fault::GiantEvent => self.giant(),
            Fault::Stopped => self.stop(),
            Fault::None | Fault::Failed | Fault::Error | Fault::Http(_) | Fault::RateLimit => {}
        }
    }

    /// Queues one `data:` line of exactly `giant_bytes` bytes (or the shortest valid
    /// one, if that is less): a Dify `tts_message` whose `audio` is padding.
    fn giant(&mut self) {
        let mut fields = Map::new();
        fields.insert("event".into(), json!("tts_message"));
        fields.extend(self.script.ids());
        fields.insert("created_at".into(), json!(ids::unix_now()));
        let object = Value::Object(fields).to_string();
        // `object` is a JSON object, so it ends with `}`; reopen it for the padding.
        let head = format!("data: {},\"audio\":\"", &object[..object.len() - 1]);
        const TAIL: &[u8] = b"\"}\n\n";
        // The line excludes its two newlines; the tail without them is `"}`.
        let line_fixed = head.len() as u64 + 2;
        let mut pad = self.behaviour.giant_bytes.saturating_sub(line_fixed);
        self.backlog.push_back(Piece::new(head, Kind::Part));
        while pad > 0 {
            let n = pad.min(PAD.len() as u64);
            // `n` is at most `PAD.len()`, a `usize`.
            self.backlog
                .push_back(Piece::new(Bytes::from_static(&PAD[..n as usize]), Kind::Part));
            pad -= n;
        }
        self.backlog
            .push_back(Piece::new(TAIL, Kind::Injected(Outcome::GiantEvent)));
    }

    /// Counts a piece as it is handed to the transport.
    fn hand(&mut self, piece: Piece) -> Bytes {
        let counters = self.guard.counters();
        let len = piece.bytes.len();
        if !self.first_sent && matches!(piece.kind, Kind::Event | Kind::Injected(_) | Kind::Terminal(_)) {
            self.first_sent = true;
            counters.first_event(self.arrival.elapsed());
        }
        match piece.report {
            Some(Report::Workflow {
                elapsed_us,
                total_tokens,
            }) => counters.workflow_result(elapsed_us, total_tokens),
            Some(Report::Message { total_tokens }) => counters.message_result(total_tokens),
            Some(Report::Node { title }) => counters.node_finished(&title),
            None => {}
        }
        match piece.kind {
            Kind::Part => counters.bytes(len as u64),
            Kind::Ping => counters.event(len, true),
            Kind::Event => counters.event(len, false),
            Kind::Injected(outcome) => {
                counters.event(len, false);
                self.guard.record(outcome);
            }
            Kind::Terminal(outcome) => {
                counters.event(len, false);
                self.guard.complete(outcome);
                self.slot = None;
            }
        }
        piece.bytes
    }
}

/// Resolves when the task is asked to stop; never, without a task to watch.
async fn stop_requested(task: Option<&TaskHandle>) {
    match task {
        Some(task) => task.stopped().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::{TaskKind, Tasks};
    use crate::truth::{Counters, GroundTruth};
    use futures::StreamExt;
    use std::sync::Arc;

    struct Numbers(u64);

    impl Script for Numbers {
        fn len(&self) -> u64 {
            self.0
        }
        fn event(&mut self, index: u64) -> Value {
            json!({ "n": index })
        }
        fn outcome(&self) -> Outcome {
            Outcome::Succeeded
        }
        fn stopped(&mut self) -> Vec<Value> {
            vec![json!({ "stopped": 1 }), json!({ "stopped": 2 })]
        }
        fn ids(&self) -> Map<String, Value> {
            Map::from_iter([("task_id".to_owned(), json!("t-1"))])
        }
    }

    fn behaviour(first: u64, interval: u64, ping: Option<u64>) -> Behaviour {
        Behaviour {
            first_event_delay: Duration::from_millis(first),
            chunk_interval: Duration::from_millis(interval),
            ping_interval: ping.map(Duration::from_millis),
            ..Behaviour::default()
        }
    }

    fn faulty(fault: Fault, after: u64) -> Behaviour {
        Behaviour {
            fault,
            fault_after: after,
            ..behaviour(10, 10, None)
        }
    }

    fn player(events: u64, b: Behaviour, counters: &Arc<Counters>) -> Player<Numbers> {
        Player::new(
            Numbers(events),
            Playback {
                behaviour: b,
                arrival: Instant::now(),
                guard: StreamGuard::start(counters.clone()),
                slot: None,
                task: None,
                shutdown: CancellationToken::new(),
            },
        )
    }

    /// One body item: (ms after start, frame text) or the error kind that ended it.
    type Item = Result<(u128, String), io::ErrorKind>;

    /// Plays `events` events and returns every body item, and the counters.
    async fn play(events: u64, b: Behaviour) -> (Vec<Item>, GroundTruth) {
        let counters = Arc::new(Counters::default());
        let start = Instant::now();
        let items = player(events, b, &counters)
            .into_stream()
            .map(|item| {
                item.map(|frame| (start.elapsed().as_millis(), String::from_utf8(frame.to_vec()).unwrap()))
                    .map_err(|err| err.kind())
            })
            .collect()
            .await;
        (items, counters.snapshot())
    }

    fn frames(items: &[Item]) -> Vec<String> {
        items.iter().map(|i| i.clone().unwrap().1).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn events_follow_the_timetable() {
        let (items, truth) = play(3, behaviour(50, 20, None)).await;
        assert_eq!(
            items,
            [
                Ok((50, "data: {\"n\":0}\n\n".to_owned())),
                Ok((70, "data: {\"n\":1}\n\n".to_owned())),
                Ok((90, "data: {\"n\":2}\n\n".to_owned())),
            ]
        );
        assert_eq!(truth.events_sent, 3);
        assert_eq!(truth.streams_completed, 1);
        assert_eq!(truth.streams_aborted, 0);
        assert_eq!(truth.active_streams, 0);
        assert_eq!(truth.outcome(Outcome::Succeeded), 1);
        // The first event's real offset is ground truth too (paused time: 50 ms, read
        // back at the histogram's 3-digit precision).
        assert_eq!(truth.first_event_count, 1);
        assert!(
            (50_000..50_050).contains(&truth.first_event_p50_us),
            "{}",
            truth.first_event_p50_us
        );
        let bytes: usize = frames(&items).iter().map(String::len).sum();
        assert_eq!(truth.bytes_sent, bytes as u64);
    }

    #[tokio::test(start_paused = true)]
    async fn pings_interleave_on_their_own_grid() {
        let (items, truth) = play(3, behaviour(25, 20, Some(10))).await;
        assert!(
            (25_000..25_025).contains(&truth.first_event_max_us),
            "pings are not the first event: {}",
            truth.first_event_max_us
        );
        let timeline: Vec<(u128, bool)> = items
            .iter()
            .map(|i| {
                let (at, f) = i.clone().unwrap();
                (at, f.starts_with("event: ping"))
            })
            .collect();
        // Events at 25, 45, 65; pings at 10, 20, 30, 40, 50, 60 (a ping due with an
        // event would go second; none is here).
        assert_eq!(
            timeline,
            [
                (10, true),
                (20, true),
                (25, false),
                (30, true),
                (40, true),
                (45, false),
                (50, true),
                (60, true),
                (65, false),
            ]
        );
        assert_eq!(truth.pings_sent, 6);
        assert_eq!(truth.events_sent, 9);
    }

    #[tokio::test(start_paused = true)]
    async fn zero_interval_sends_the_rest_at_once() {
        let (items, _) = play(4, behaviour(5, 0, None)).await;
        assert!(items.iter().all(|i| i.as_ref().unwrap().0 == 5), "{items:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn jitter_stretches_each_interval_within_bounds() {
        let b = Behaviour {
            jitter: Duration::from_millis(8),
            ..behaviour(5, 10, None)
        };
        let (items, _) = play(50, b).await;
        let at: Vec<u128> = items.iter().map(|i| i.as_ref().unwrap().0).collect();
        assert_eq!(at[0], 5, "the first event is not jittered");
        for gap in at.windows(2).map(|w| w[1] - w[0]) {
            assert!((10..=18).contains(&gap), "{at:?}");
        }
        assert!(at.windows(2).any(|w| w[1] - w[0] > 10), "no jitter at all: {at:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_mid_stream_counts_an_abort() {
        let counters = Arc::new(Counters::default());
        let mut stream = Box::pin(player(5, behaviour(1, 1, None), &counters).into_stream());
        stream.next().await;
        drop(stream);
        let truth = counters.snapshot();
        assert_eq!(truth.events_sent, 1);
        assert_eq!(truth.streams_aborted, 1);
        assert_eq!(truth.streams_completed, 0);
        assert_eq!(truth.active_streams, 0);
        assert_eq!(truth.outcome(Outcome::Aborted), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn reset_breaks_the_body_after_k_events() {
        let (items, truth) = play(5, faulty(Fault::Reset, 2)).await;
        assert_eq!(items.len(), 3, "{items:?}");
        assert!(items[1].as_ref().unwrap().1.contains("\"n\":1"));
        assert_eq!(items[2], Err(io::ErrorKind::ConnectionReset));
        assert_eq!(
            (truth.streams_reset, truth.streams_aborted, truth.streams_completed),
            (1, 0, 0)
        );
        assert_eq!(truth.outcome(Outcome::Reset), 1);
        assert_eq!(truth.outcomes.len(), 1);
        assert_eq!(truth.active_streams, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn faults_land_before_the_ending_at_the_latest() {
        let (items, _) = play(3, faulty(Fault::MalformedJson, 99)).await;
        assert_eq!(
            frames(&items),
            [
                "data: {\"n\":0}\n\n",
                "data: {\"n\":1}\n\n",
                "data: {not json\n\n",
                "data: {\"n\":2}\n\n",
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn malformed_json_is_one_more_event_and_decides_the_outcome() {
        let (items, truth) = play(3, faulty(Fault::MalformedJson, 0)).await;
        assert_eq!(frames(&items)[0], "data: {not json\n\n");
        // The injected event takes the first slot; the script follows one interval on.
        assert_eq!(items[1].as_ref().unwrap().0, 20);
        assert_eq!(truth.events_sent, 4);
        assert_eq!(truth.streams_completed, 1);
        assert_eq!(truth.outcomes.len(), 1);
        assert_eq!(truth.outcome(Outcome::MalformedJson), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn giant_event_is_one_line_of_exactly_the_asked_size() {
        let b = Behaviour {
            giant_bytes: 200_000,
            ..faulty(Fault::GiantEvent, 1)
        };
        let (items, truth) = play(3, b).await;
        let text: String = frames(&items).concat();
        let blocks: Vec<&str> = text.split_terminator("\n\n").collect();
        assert_eq!(blocks.len(), 4, "one giant event among the three");
        let giant = blocks[1];
        assert_eq!(giant.len(), 200_000);
        let value: Value = serde_json::from_str(giant.strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(value["event"], "tts_message");
        assert_eq!(value["task_id"], "t-1");
        assert!(items.len() > 6, "sent in pieces: {}", items.len());
        assert_eq!(truth.events_sent, 4);
        assert_eq!(truth.bytes_sent, text.len() as u64);
        assert_eq!(truth.outcome(Outcome::GiantEvent), 1);
        assert_eq!(truth.outcomes.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn stopped_fault_ends_with_the_stopped_ending() {
        let (items, truth) = play(5, faulty(Fault::Stopped, 1)).await;
        assert_eq!(
            frames(&items),
            [
                "data: {\"n\":0}\n\n",
                "data: {\"stopped\":1}\n\n",
                "data: {\"stopped\":2}\n\n",
            ]
        );
        assert_eq!(truth.outcome(Outcome::Stopped), 1);
        assert_eq!((truth.streams_completed, truth.streams_stopped), (1, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn stall_goes_silent_until_shutdown() {
        let counters = Arc::new(Counters::default());
        let shutdown = CancellationToken::new();
        let mut p = player(5, faulty(Fault::Stall, 1), &counters);
        p.pings = Some(Cadence {
            due: Instant::now() + Duration::from_millis(1),
            interval: Duration::from_millis(1),
        });
        p.shutdown = shutdown.clone();
        let mut stream = Box::pin(p.into_stream());
        // Pings every millisecond, the first event at 10 ms, pings until the stall at
        // 20 ms, then nothing for an hour: no events, no pings.
        let mut seen = Vec::new();
        while let Ok(Some(item)) = tokio::time::timeout(Duration::from_secs(3600), stream.next()).await {
            seen.push(String::from_utf8(item.unwrap().to_vec()).unwrap());
        }
        assert_eq!(seen.iter().filter(|f| f.starts_with("data:")).count(), 1, "{seen:?}");
        assert!(seen.len() <= 21, "{seen:?}");
        assert_eq!(counters.snapshot().outcome(Outcome::Stall), 1);
        shutdown.cancel();
        assert!(stream.next().await.is_none());
        drop(stream);
        let truth = counters.snapshot();
        assert_eq!((truth.streams_aborted, truth.active_streams), (1, 0));
        assert_eq!(truth.outcomes.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_request_ends_the_stream_at_once() {
        let counters = Arc::new(Counters::default());
        let tasks = Arc::new(Tasks::default());
        let mut p = player(100, behaviour(10, 1000, None), &counters);
        p.task = Some(tasks.register("t-1", TaskKind::Workflow, "u"));
        let mut stream = Box::pin(p.into_stream());
        stream.next().await.unwrap().unwrap();
        let start = Instant::now();
        tasks.stop("t-1", TaskKind::Workflow, "u");
        let rest: Vec<_> = stream.map(|item| item.unwrap()).collect().await;
        assert_eq!(rest.len(), 2);
        assert_eq!(start.elapsed(), Duration::ZERO);
        let truth = counters.snapshot();
        assert_eq!((truth.streams_stopped, truth.streams_completed), (1, 1));
        assert_eq!(truth.outcome(Outcome::Stopped), 1);
    }

    #[test]
    fn reports_read_back_exactly() {
        let finished = json!({"event": "workflow_finished", "data": {"elapsed_time": 0.123457, "total_tokens": 15}});
        assert_eq!(
            Report::of(&finished),
            Some(Report::Workflow {
                elapsed_us: 123_457,
                total_tokens: 15
            })
        );
        let end = json!({"event": "message_end", "metadata": {"usage": {"total_tokens": 9}}});
        assert_eq!(Report::of(&end), Some(Report::Message { total_tokens: 9 }));
        assert_eq!(Report::of(&json!({"event": "message"})), None);
    }
}
