//! The exchange: one request of one task, sent and answered within the task's
//! timeout, its answer judged (status, checks, a blocking Dify answer) or its stream
//! followed, and the outcome recorded.

use std::sync::Mutex;
use std::time::Instant;

use rand::rngs::SmallRng;

use barrage_common::metrics::FailureKind;
use barrage_common::plan::{ConnectionPolicy, Task, TaskKind};

use crate::http::{Conn, Failure};
use crate::judge::{Facts, Judge, http_failure};

use super::checks::{capture_headers, capture_json, run_checks};
use super::context::UserCtx;
use super::render::render_request;
use super::sample::{self, Sample};
use super::state::{UserState, track_conversation};
use super::stream::Stream;

/// Largest non-stream body we keep to judge (a blocking Dify answer, an error envelope);
/// the rest is counted, not stored.
const KEEP_BODY: usize = 256 * 1024;

/// Runs one request of `task` to its end and records it. `intended`: an open-model
/// arrival's due time, where its latency counts from (None: now).
pub(super) async fn execute(
    ctx: &UserCtx,
    task: &Task,
    conn: &mut Conn,
    state: &mut UserState,
    rng: &mut SmallRng,
    live_task: &Mutex<Option<String>>,
    intended: Option<Instant>,
) {
    // Open model: from when the arrival was due, so time spent waiting for a free
    // virtual user (or a late timer) is in the latency, not hidden.
    let start = intended.unwrap_or_else(Instant::now);
    let mut sample = Sample::default();
    let exchange = exchange(ctx, task, conn, state, rng, start, &mut sample, live_task);
    let result = match tokio::time::timeout(task.timeout, exchange).await {
        Ok(r) => r,
        Err(_) => {
            conn.reset();
            Err(Failure::new(
                FailureKind::Timeout,
                "",
                format!("no complete response within {:?}", task.timeout),
            ))
        }
    };
    if let Ok(mut t) = live_task.lock() {
        *t = None;
    }
    if task.connection == ConnectionPolicy::PerRequest {
        conn.reset();
    }
    track_conversation(task, state, &sample, result.is_ok());
    state.keep_captures(std::mem::take(&mut sample.captures));
    let elapsed = sample.end.unwrap_or_else(|| start.elapsed());
    sample::record(ctx, task, &sample, result, elapsed);
}

/// Renders and sends the request, then reads its answer: a stream to follow, or a
/// body to judge. `Err`: how the request failed.
#[allow(clippy::too_many_arguments)]
async fn exchange(
    ctx: &UserCtx,
    task: &Task,
    conn: &mut Conn,
    state: &mut UserState,
    rng: &mut SmallRng,
    start: Instant,
    sample: &mut Sample,
    live_task: &Mutex<Option<String>>,
) -> Result<(), Failure> {
    render_request(ctx, task, state, rng, conn.outgoing())?;
    // A stream's first event is timed by when its bytes arrived, not by when this
    // task got round to them (see `Conn::stamp_reads`); the head may carry it.
    conn.stamp_reads(matches!(task.kind, TaskKind::Sse(_)));
    let (sent, status_code, headers) = send(ctx, conn, sample).await?;
    sample.time_to_headers = Some(start.elapsed());
    let status = status_code.as_u16();
    let is_stream = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let expected = if task.expect.is_empty() {
        status_code.is_success()
    } else {
        task.expect.contains(&status)
    };
    capture_headers(task, &headers, sample);
    // Freed before the body: a stream can stay open for hours, and its head (a
    // `HeaderMap`, ~0.5-1 KiB) would otherwise live as long.
    drop(headers);
    match &task.kind {
        // A declared non-2xx (expect = [200, 429]) is an outcome to count, not a stream.
        TaskKind::Sse(spec) if expected && status_code.is_success() && (is_stream || spec.dify.is_none()) => {
            let stream = Stream {
                ctx,
                task,
                spec,
                start,
                sent,
                live_task,
            };
            stream.follow(conn, sample).await
        }
        _ => read_answer(task, conn, status, expected, sample).await,
    }
}

/// Connects (or reuses the kept-alive connection) and sends the rendered request:
/// when it went out, and the answer's status and headers.
async fn send(
    ctx: &UserCtx,
    conn: &mut Conn,
    sample: &mut Sample,
) -> Result<(Instant, http::StatusCode, http::HeaderMap), Failure> {
    let connect_timeout = ctx.plan.limits.connect_timeout;
    // Always a pinned address from the last lookup: no DNS inside the request's clock.
    let addr = ctx.seat.address()?;
    sample.connected = conn.ready(&ctx.target, Some(addr), connect_timeout).await?;
    // The first event's deadline counts from here: an open-model arrival that started
    // late has its wait in its latency (from `start`), not cut from its timeout.
    let mut sent = Instant::now();
    let (status_code, headers) = match conn.send().await {
        Err(_) if conn.may_retry() => {
            // The server closed the kept-alive connection without reading the request
            // (its idle timeout racing ours): our connection's mistake, not the
            // target's failure. Once more on a fresh one; counted as a retry.
            sample.retried = true;
            sample.connected = conn.ready(&ctx.target, Some(addr), connect_timeout).await?;
            sent = Instant::now();
            conn.send().await?
        }
        answer => answer?,
    };
    Ok((sent, status_code, headers))
}

/// An answer that is not a stream to follow: reads (and keeps the start of) the body,
/// then judges it: its status, the task's checks and captures, and a Dify app's
/// blocking (JSON) answer.
async fn read_answer(
    task: &Task,
    conn: &mut Conn,
    status: u16,
    expected: bool,
    sample: &mut Sample,
) -> Result<(), Failure> {
    let mut kept = Vec::new();
    while let Some(data) = conn.frame().await {
        let data = data?;
        sample.bytes += data.len() as u64;
        let room = KEEP_BODY.saturating_sub(kept.len());
        kept.extend_from_slice(&data[..data.len().min(room)]);
    }
    if !expected {
        return Err(http_failure(status, &kept));
    }
    capture_json(task, &kept, sample);
    if !(200..300).contains(&status) {
        // A declared status (e.g. expect = [200, 429]) is an outcome, not an answer to judge.
        sample.expected_status = Some(status);
        return Ok(());
    }
    run_checks(task, &kept)?;
    if let TaskKind::Sse(spec) = &task.kind {
        // A Dify app answered in blocking mode (JSON): judge the answer.
        let mut facts = Facts::default();
        let verdict = Judge::new(spec).on_blocking(&kept, &mut facts);
        sample.tokens = facts.tokens.unwrap_or(0);
        sample.server_elapsed = facts.server_elapsed;
        sample.conversation_id = facts.conversation_id;
        return verdict;
    }
    Ok(())
}
