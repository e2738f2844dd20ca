//! Stream reading: an SSE answer followed event by event to its verdict (timing the
//! first event, the first text and the gaps between events), then drained so the
//! connection can be reused.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use barrage_common::metrics::{FailureKind, Metric, NodeRun, NodeStatus};
use barrage_common::plan::{SseSpec, Task};

use crate::http::{Conn, Failure};
use crate::judge::{Facts, Judge, Step};
use crate::recorder::GaugeGuard;
use crate::sse::{Event, SseError, SseParser};

use super::context::UserCtx;
use super::sample::{Sample, micros};

/// Longest we wait for the end of a body after the terminal event. dify-api 1.14.1
/// ends a workflow's stream about 1.0 s after `workflow_finished` (its relay polls
/// Redis with a 1 s timeout): waiting a little longer lets the connection be reused
/// and the stream's tail (`stream_tail`) be measured, instead of cut at 1 s.
const DRAIN_LIMIT: Duration = Duration::from_secs(2);

/// A stream answer being followed: what the steps of reading it share.
pub(super) struct Stream<'r> {
    /// The user reading it.
    pub(super) ctx: &'r UserCtx,
    /// The task whose answer it is.
    pub(super) task: &'r Task,
    /// The task's SSE spec: timeouts, terminal event, Dify app.
    pub(super) spec: &'r SseSpec,
    /// The request's start, where its timings count from.
    pub(super) start: Instant,
    /// When the request went out, where the first event's deadline counts from.
    pub(super) sent: Instant,
    /// The Dify task id of the stream in flight, for stop_on_cancel.
    pub(super) live_task: &'r Mutex<Option<String>>,
}

impl Stream<'_> {
    /// Follows the stream: counted as an active stream while it lasts, started and
    /// (when it succeeds) completed, its duration measured from the response head.
    pub(super) async fn follow(&self, conn: &mut Conn, sample: &mut Sample) -> Result<(), Failure> {
        let (ctx, task, start) = (self.ctx, self.task, self.start);
        let headers_at = Instant::now();
        let _open = GaugeGuard::new(&ctx.recorder.active_streams);
        ctx.record(task.endpoint, |s| s.counts.streams_started += 1);
        let outcome = self.read(conn, sample).await;
        // To the verdict, like the response time: what is drained after it is not the
        // stream's duration (a target's trailing pings would otherwise lengthen it).
        sample.stream = Some(match sample.end {
            Some(end) => end.saturating_sub(headers_at.saturating_duration_since(start)),
            None => headers_at.elapsed(),
        });
        if sample.drop_conn {
            conn.reset();
        }
        if outcome.is_ok() {
            ctx.record(task.endpoint, |s| s.counts.streams_completed += 1);
        }
        outcome
    }

    /// Reads the stream to its verdict (then drains the rest, bounded). Sets
    /// `sample.drop_conn` unless the body was read to its end, so a stream that failed
    /// by its content but ended cleanly keeps its connection.
    async fn read(&self, conn: &mut Conn, sample: &mut Sample) -> Result<(), Failure> {
        let outcome = self.to_verdict(conn, sample).await;
        match outcome {
            // The verdict is in (a failed one too: dify-api ends a failed run's stream
            // cleanly): drain the rest so the connection can be reused. A target that
            // keeps the stream open after its terminal event costs at most DRAIN_LIMIT,
            // then the connection is dropped.
            Ok(result) => {
                let finished_at = sample.workflow_finished_at;
                let drained = tokio::time::timeout(DRAIN_LIMIT, async {
                    while let Some(piece) = conn.frame().await {
                        match piece {
                            Ok(data) => sample.bytes += data.len() as u64,
                            Err(_) => return false,
                        }
                    }
                    true
                })
                .await;
                sample.drop_conn |= drained != Ok(true);
                if drained == Ok(true) {
                    // The body's end seen: Dify's tail, from `workflow_finished`.
                    sample.stream_tail = finished_at.map(|at| self.start.elapsed().saturating_sub(at));
                }
                result
            }
            Err(failure) => {
                sample.drop_conn = true;
                Err(failure)
            }
        }
    }

    /// Follows the stream up to its verdict: `Ok(verdict)` at the deciding event or the
    /// end of the body; `Err`: it broke off (timeouts, I/O, an oversized event).
    async fn to_verdict(&self, conn: &mut Conn, sample: &mut Sample) -> Result<Result<(), Failure>, Failure> {
        let Stream {
            ctx,
            task,
            spec,
            start,
            sent,
            live_task,
        } = *self;
        let mut parser = SseParser::new(ctx.plan.limits.sse_max_event_bytes);
        let mut events = Events {
            judge: Judge::new(spec),
            facts: Facts::default(),
            verdict: None,
            last_event: None,
            last_chunk: None,
            nodes: 0,
        };
        // A deadline from the send, not a silence timeout: pings or a trickle of bytes
        // that never complete an event must not keep a stream without a first event alive.
        // Not from `start`, an open-model arrival's due time: one that started late would
        // time out early, its wait for a free user cut from the target's time.
        let first_event_deadline = tokio::time::Instant::from_std(sent) + spec.first_event_timeout;
        // One timer per stream, re-armed lazily: it fires at the deadline it was set for,
        // and only then is the real deadline (which moves with every read) checked. Arming
        // a fresh timeout per read cost a timer-wheel insert and removal per event.
        let deadline = tokio::time::sleep_until(first_event_deadline);
        tokio::pin!(deadline);
        let mut last_read = tokio::time::Instant::now();
        loop {
            let next = tokio::select! {
                biased;
                frame = conn.frame() => frame,
                () = &mut deadline => {
                    if sample.ttfe.is_none() {
                        let within = spec.first_event_timeout;
                        return Err(Failure::new(
                            FailureKind::FirstEventTimeout,
                            "",
                            format!("no first event within {within:?}"),
                        ));
                    }
                    let due = last_read + spec.read_timeout;
                    if tokio::time::Instant::now() >= due {
                        let silence = spec.read_timeout;
                        return Err(Failure::new(FailureKind::ReadTimeout, "", format!("nothing read for {silence:?}")));
                    }
                    deadline.as_mut().reset(due);
                    continue;
                }
            };
            let data = match next {
                None => break,
                Some(Err(f)) => return Err(f),
                Some(Ok(data)) => data,
            };
            last_read = tokio::time::Instant::now();
            sample.bytes += data.len() as u64;
            // Until the first event: when its bytes arrived at this host (the kernel's
            // stamp), so a busy event loop's delay in getting round to them is not
            // counted as the target's. Later events are timed as they are read.
            let now = match conn.arrived() {
                Some(at) => at.saturating_duration_since(start),
                None => start.elapsed(),
            };
            let task_before = events.facts.task_id.is_some();
            let fed = parser.feed(&data, &mut |ev| events.take(&ev, now, ctx, task, sample));
            if !task_before
                && let Some(id) = &events.facts.task_id
                && let Ok(mut t) = live_task.lock()
            {
                *t = Some(id.clone());
            }
            if let Err(SseError::EventTooLarge { limit }) = fed {
                return Err(Failure::new(
                    FailureKind::EventTooLarge,
                    "",
                    format!("an event or line exceeded {limit} bytes"),
                ));
            }
            if events.verdict.is_some() {
                break;
            }
            if sample.ttfe.is_some() && deadline.deadline() == first_event_deadline {
                // The first event is in: from now on the deadline is the read timeout,
                // and reads are plain ones.
                deadline.as_mut().reset(last_read + spec.read_timeout);
                conn.stamp_reads(false);
            }
        }
        conn.stamp_reads(false);
        sample.conversation_id = events.facts.conversation_id.take();
        Ok(events.verdict.unwrap_or_else(|| events.judge.on_end()))
    }
}

/// The events of one stream so far: judged, counted by type, their gaps timed.
struct Events<'r> {
    judge: Judge<'r>,
    /// What the last event told besides the verdict (reused between events).
    facts: Facts,
    /// The verdict, once an event decided it; later events are ignored.
    verdict: Option<Result<(), Failure>>,
    /// When the previous event came, from the request's start.
    last_event: Option<Duration>,
    /// When the previous text event came, from the request's start.
    last_chunk: Option<Duration>,
    /// Dify node executions reported so far (a node's place in the workflow's order).
    nodes: u32,
}

impl Events<'_> {
    /// Takes one event that arrived `now` (from the request's start), unless the
    /// verdict is already in: judges it, counts it and its gaps, and times the first
    /// event, the first text and the verdict in `sample`.
    fn take(&mut self, ev: &Event<'_>, now: Duration, ctx: &UserCtx, task: &Task, sample: &mut Sample) {
        if self.verdict.is_some() {
            return;
        }
        let step = self.judge.on_event(ev, &mut self.facts);
        if self.facts.node.is_some() {
            self.nodes = self.nodes.saturating_add(1);
        }
        let (facts, last_event, last_chunk, position) =
            (&self.facts, self.last_event, &mut self.last_chunk, self.nodes);
        let gaps = &mut sample.gaps;
        ctx.record(task.endpoint, |s| {
            s.count_event(&facts.event_type);
            if let Some(node) = &facts.node {
                s.record_node(&NodeRun {
                    title: &node.title,
                    node_type: &node.node_type,
                    status: node.status.unwrap_or(NodeStatus::Other),
                    elapsed_us: node.elapsed_us,
                    tokens: node.tokens,
                    position,
                });
            }
            if let Some(prev) = last_event {
                s.record(Metric::EventGap, micros(now.saturating_sub(prev)));
            }
            if facts.is_text {
                if let Some(prev) = *last_chunk {
                    let gap = micros(now.saturating_sub(prev));
                    s.record(Metric::ChunkGap, gap);
                    gaps.note(gap, task.goodput.and_then(|g| g.chunk_gap_p95_us));
                }
                *last_chunk = Some(now);
            }
        });
        self.last_event = Some(now);
        if !facts.is_ping && sample.ttfe.is_none() {
            sample.ttfe = Some(now);
        }
        if facts.is_text && sample.ttft.is_none() {
            sample.ttft = Some(now);
        }
        // Dify's totals are per run and repeat (chatflow: workflow_finished and
        // message_end both carry it): keep the largest, never the sum.
        sample.tokens = sample.tokens.max(facts.tokens.unwrap_or(0));
        if facts.server_elapsed.is_some() {
            sample.server_elapsed = facts.server_elapsed;
        }
        // Queueing: from the response head to `workflow_started` (dify-api and Celery
        // before the workflow runs); the tail counts from `workflow_finished`.
        if facts.workflow_started && sample.queueing.is_none() {
            sample.queueing = sample.time_to_headers.map(|h| now.saturating_sub(h));
        }
        if facts.workflow_finished {
            sample.workflow_finished_at = Some(now);
        }
        if let Step::Done(v) = step {
            sample.end = Some(now);
            self.verdict = Some(v);
        }
    }
}
