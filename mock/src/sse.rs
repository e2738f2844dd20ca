//! The SSE body: plays a [`Script`] (what to say) on a timetable (when to say it) with
//! Dify's keep-alive pings in between, one body frame per event, counting each event
//! as it is handed to the transport. Workflow and chat differ only in their scripts.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use futures::Stream;
use http::{HeaderValue, StatusCode, header};
use serde_json::Value;
use tokio::time::{Instant, sleep_until};

use crate::config::Behaviour;
use crate::truth::StreamGuard;

/// Dify's keep-alive frame: an event with no data, which SSE clients must ignore.
const PING: &[u8] = b"event: ping\n\n";

/// How late a write may be and still count as on time. Past it the client is not
/// keeping up, and the next event waits a full interval after this one rather than
/// bursting to catch up. Timer wake-ups run up to ~1 ms late, well inside it.
const LATE: Duration = Duration::from_millis(5);

/// What one stream says: a fixed number of events, the last of them terminal.
pub(crate) trait Script: Send + 'static {
    /// Number of events including the terminal one; at least 1.
    fn len(&self) -> u64;
    /// Event `index` (0-based), called once per index in order; the player frames it.
    fn event(&mut self, index: u64) -> Value;
}

/// Frames one event as Dify writes it: `data: {json}\n\n`.
pub(crate) fn data_frame(event: &Value) -> Bytes {
    Bytes::from(format!("data: {event}\n\n"))
}

/// A `200 text/event-stream` response playing `script` per `behaviour`, timed from
/// `arrival` (when the request reached the mock). `guard` counts the stream's end.
pub(crate) fn response(script: impl Script, behaviour: &Behaviour, arrival: Instant, guard: StreamGuard) -> Response {
    let player = Player::new(script, behaviour, arrival, guard);
    let mut response = Response::new(Body::from_stream(player.into_stream()));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// Plays a script: owns its timetable and the stream's [`StreamGuard`], so dropping the
/// body (the client hung up) drops the guard and counts the abort.
struct Player<S> {
    script: S,
    next_index: u64,
    events: Cadence,
    /// `None` if pings are off.
    pings: Option<Cadence>,
    guard: StreamGuard,
}

impl<S: Script> Player<S> {
    fn new(script: S, behaviour: &Behaviour, arrival: Instant, guard: StreamGuard) -> Self {
        Self {
            script,
            next_index: 0,
            events: Cadence {
                due: after(arrival, behaviour.first_event_delay),
                interval: behaviour.chunk_interval,
            },
            pings: behaviour.ping_interval.map(|interval| Cadence {
                due: after(arrival, interval),
                interval,
            }),
            guard,
        }
    }

    fn into_stream(self) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
        futures::stream::unfold(self, |mut player| async move {
            let frame = player.next_frame().await?;
            Some((Ok(frame), player))
        })
    }

    /// Waits until the next frame (event or ping) is due and returns it; `None` once the
    /// terminal event has been returned.
    async fn next_frame(&mut self) -> Option<Bytes> {
        if self.next_index >= self.script.len() {
            return None;
        }
        // An event and a ping due together: the event goes first.
        if let Some(pings) = self.pings.as_mut().filter(|p| p.due < self.events.due) {
            pings.wait().await;
            self.guard.counters().event(PING.len(), true);
            return Some(Bytes::from_static(PING));
        }
        self.events.wait().await;
        let frame = data_frame(&self.script.event(self.next_index));
        self.next_index += 1;
        self.guard.counters().event(frame.len(), false);
        if self.next_index == self.script.len() {
            self.guard.complete();
        }
        Some(frame)
    }
}

/// A recurring deadline: when the next frame of one kind is due, and how far apart.
#[derive(Debug, Clone, Copy)]
struct Cadence {
    due: Instant,
    interval: Duration,
}

impl Cadence {
    /// Waits until the frame is due, then schedules the next: on the grid while writes
    /// keep up; a full `interval` after this write once they fall behind.
    async fn wait(&mut self) {
        if self.due > Instant::now() {
            sleep_until(self.due).await;
        }
        self.due = next_due(self.due, Instant::now(), self.interval);
    }
}

fn next_due(due: Instant, now: Instant, interval: Duration) -> Instant {
    if now > after(due, LATE) {
        after(now, interval)
    } else {
        after(due, interval)
    }
}

/// `at + d`, saturating at roughly thirty years out (far beyond any test's patience)
/// instead of panicking on an absurd configured duration.
pub(crate) fn after(at: Instant, d: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(30 * 365 * 86_400);
    at.checked_add(d.min(FAR)).unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Fault;
    use crate::truth::Counters;
    use futures::StreamExt;
    use serde_json::json;
    use std::sync::Arc;

    struct Numbers(u64);

    impl Script for Numbers {
        fn len(&self) -> u64 {
            self.0
        }
        fn event(&mut self, index: u64) -> Value {
            json!({ "n": index })
        }
    }

    fn behaviour(first: u64, interval: u64, ping: Option<u64>) -> Behaviour {
        Behaviour {
            first_event_delay: Duration::from_millis(first),
            chunks: 0,
            chunk_interval: Duration::from_millis(interval),
            ping_interval: ping.map(Duration::from_millis),
            fault: Fault::None,
        }
    }

    /// Plays `events` events and returns (ms after arrival, frame) for each frame.
    async fn play(events: u64, b: Behaviour) -> (Vec<(u128, String)>, Arc<Counters>) {
        let counters = Arc::new(Counters::default());
        let arrival = Instant::now();
        let player = Player::new(Numbers(events), &b, arrival, StreamGuard::start(counters.clone()));
        let frames = player
            .into_stream()
            .map(|frame| {
                let Ok(frame) = frame;
                let text = String::from_utf8(frame.to_vec()).unwrap();
                (arrival.elapsed().as_millis(), text)
            })
            .collect()
            .await;
        (frames, counters)
    }

    #[tokio::test(start_paused = true)]
    async fn events_follow_the_timetable() {
        let (frames, counters) = play(3, behaviour(50, 20, None)).await;
        assert_eq!(
            frames,
            [
                (50, "data: {\"n\":0}\n\n".to_owned()),
                (70, "data: {\"n\":1}\n\n".to_owned()),
                (90, "data: {\"n\":2}\n\n".to_owned()),
            ]
        );
        let truth = counters.snapshot();
        assert_eq!(truth.events_sent, 3);
        assert_eq!(truth.streams_completed, 1);
        assert_eq!(truth.streams_aborted, 0);
        assert_eq!(truth.active_streams, 0);
        let bytes: usize = frames.iter().map(|(_, f)| f.len()).sum();
        assert_eq!(truth.bytes_sent, bytes as u64);
    }

    #[tokio::test(start_paused = true)]
    async fn pings_interleave_on_their_own_grid() {
        let (frames, counters) = play(3, behaviour(25, 20, Some(10))).await;
        let timeline: Vec<(u128, bool)> = frames
            .iter()
            .map(|(at, f)| (*at, f.starts_with("event: ping")))
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
        let truth = counters.snapshot();
        assert_eq!(truth.pings_sent, 6);
        assert_eq!(truth.events_sent, 9);
    }

    #[tokio::test(start_paused = true)]
    async fn zero_interval_sends_the_rest_at_once() {
        let (frames, _) = play(4, behaviour(5, 0, None)).await;
        assert!(frames.iter().all(|(at, _)| *at == 5), "{frames:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_mid_stream_counts_an_abort() {
        let counters = Arc::new(Counters::default());
        let player = Player::new(
            Numbers(5),
            &behaviour(1, 1, None),
            Instant::now(),
            StreamGuard::start(counters.clone()),
        );
        let mut stream = Box::pin(player.into_stream());
        stream.next().await;
        drop(stream);
        let truth = counters.snapshot();
        assert_eq!(truth.events_sent, 1);
        assert_eq!(truth.streams_aborted, 1);
        assert_eq!(truth.streams_completed, 0);
        assert_eq!(truth.active_streams, 0);
    }

    #[test]
    fn a_late_write_pushes_the_grid() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        assert_eq!(next_due(t0, t0 + ms(1), ms(20)), t0 + ms(20));
        assert_eq!(next_due(t0, t0 + ms(30), ms(20)), t0 + ms(50));
    }
}
