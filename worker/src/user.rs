//! A virtual user: one tokio task that walks its class's tasks, owns one keep-alive
//! connection, and records every outcome. A failed request is data (counted by kind),
//! never control flow.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use rand::Rng;
use rand::rngs::SmallRng;
use tokio_util::sync::CancellationToken;

use barrage_common::metrics::{EndpointStats, Metric, failure};
use barrage_common::plan::{RunPlan, SseSpec, Task, TaskKind, UserClass, Wait};

use crate::http::{Conn, Failure, Target, hyper_failure};
use crate::recorder::{GaugeGuard, Recorder};
use crate::sse::{SseError, SseParser};

/// Event types that carry generated text (TTFT).
const TEXT_EVENTS: &[&str] = &["text_chunk", "message", "agent_message"];

/// Longest we wait for the end of a body after the terminal event.
const DRAIN_LIMIT: Duration = Duration::from_secs(1);

/// How much of an error body we keep as the failure's sample.
const SAMPLE_BYTES: usize = 200;

/// Everything a user needs, shared read-only with its siblings.
pub struct UserCtx {
    pub plan: Arc<RunPlan>,
    pub class: usize,
    /// Unique per user on this worker (also selects the recorder shard).
    pub id: usize,
    pub worker_index: u32,
    pub target: Arc<Target>,
    pub recorder: Arc<Recorder>,
    /// Graceful stop: finish the current request, start no new one.
    pub stopping: CancellationToken,
    /// Hard stop: abandon the current request now.
    pub cancel: CancellationToken,
}

pub async fn run(ctx: UserCtx, mut rng: SmallRng) {
    let _alive = GaugeGuard::new(&ctx.recorder.users);
    let class = &ctx.plan.classes[ctx.class];
    let mut conn = Conn::new();
    let mut iteration: u64 = 0;
    let total_weight: u64 = class.tasks.iter().map(|t| u64::from(t.weight)).sum();
    loop {
        if ctx.stopping.is_cancelled() || ctx.cancel.is_cancelled() {
            return;
        }
        let started = Instant::now();
        let task = pick_task(class, total_weight, &mut rng);
        let endpoint = task.endpoint;
        tokio::select! {
            biased;
            _ = ctx.cancel.cancelled() => {
                ctx.recorder.with(ctx.id, endpoint, |s| {
                    s.requests += 1;
                    s.outcome(failure::CANCELLED, "", || "in flight when the run stopped".into());
                });
                return;
            }
            _ = execute(&ctx, task, &mut conn, iteration, &mut rng) => {}
        }
        iteration += 1;
        let pause = match class.wait {
            Wait::Constant(d) => d,
            Wait::Between(a, b) => {
                if a == b {
                    a
                } else {
                    rng.random_range(a..=b)
                }
            }
            Wait::Pacing(p) => p.saturating_sub(started.elapsed()),
        };
        if !pause.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = ctx.stopping.cancelled() => return,
                _ = ctx.cancel.cancelled() => return,
            }
        }
    }
}

fn pick_task<'a>(class: &'a UserClass, total_weight: u64, rng: &mut SmallRng) -> &'a Task {
    if class.tasks.len() == 1 || total_weight == 0 {
        return &class.tasks[0];
    }
    let mut roll = rng.random_range(0..total_weight);
    for task in &class.tasks {
        let w = u64::from(task.weight);
        if roll < w {
            return task;
        }
        roll -= w;
    }
    &class.tasks[class.tasks.len() - 1]
}

fn render_request(
    ctx: &UserCtx,
    task: &Task,
    iteration: u64,
    rng: &mut SmallRng,
) -> Result<http::Request<Full<Bytes>>, Failure> {
    let plan = &ctx.plan;
    let mut var = |name: &str, out: &mut String| {
        use std::fmt::Write;
        match name {
            "user" => {
                let _ = write!(out, "barrage-w{}-u{}", ctx.worker_index, ctx.id);
            }
            "iteration" => {
                let _ = write!(out, "{iteration}");
            }
            "worker" => {
                let _ = write!(out, "{}", ctx.worker_index);
            }
            pool => {
                if let Some(entries) = plan.pools.get(pool).filter(|e| !e.is_empty()) {
                    out.push_str(&entries[rng.random_range(0..entries.len())]);
                }
            }
        }
    };
    let mut path = String::new();
    task.path.render_into(&mut path, &mut var);
    let mut builder = http::Request::builder()
        .method(task.method.as_str())
        .uri(path)
        .header(http::header::HOST, ctx.target.authority.as_str())
        .header(http::header::USER_AGENT, concat!("barrage/", env!("CARGO_PKG_VERSION")));
    let mut value = String::new();
    for (name, template) in &task.headers {
        value.clear();
        template.render_into(&mut value, &mut var);
        builder = builder.header(name.as_str(), value.as_str());
    }
    let body = match &task.body {
        Some(t) => {
            let mut b = String::new();
            t.render_into(&mut b, &mut var);
            if !task.headers.iter().any(|(n, _)| n == "content-type") {
                let json = b.trim_start().starts_with(['{', '[']);
                builder = builder.header(
                    http::header::CONTENT_TYPE,
                    if json { "application/json" } else { "text/plain" },
                );
            }
            Bytes::from(b)
        }
        None => Bytes::new(),
    };
    builder
        .body(Full::new(body))
        .map_err(|e| Failure::new(failure::REQUEST, "build", format!("request could not be built: {e}")))
}

/// What one request produced, recorded in one shard update at the end.
#[derive(Default)]
struct Sample {
    connected: bool,
    time_to_headers: Option<Duration>,
    ttfe: Option<Duration>,
    ttft: Option<Duration>,
    stream: Option<Duration>,
    bytes: u64,
    tokens: u64,
    expected_status: Option<u16>,
    /// When the verdict was in (the terminal event), if before the body ended.
    end: Option<Duration>,
    /// The body was not read to its end: the connection cannot be reused.
    drop_conn: bool,
}

async fn execute(ctx: &UserCtx, task: &Task, conn: &mut Conn, iteration: u64, rng: &mut SmallRng) {
    let start = Instant::now();
    let mut sample = Sample::default();
    let result = match tokio::time::timeout(
        task.timeout,
        exchange(ctx, task, conn, iteration, rng, start, &mut sample),
    )
    .await
    {
        Ok(r) => r,
        Err(_) => {
            conn.reset();
            Err(Failure::new(
                failure::TIMEOUT,
                "",
                format!("no complete response within {:?}", task.timeout),
            ))
        }
    };
    let elapsed = sample.end.unwrap_or_else(|| start.elapsed());
    let secrets_free = |m: String| redact(&ctx.plan, m);
    ctx.recorder.with(ctx.id, task.endpoint, |s: &mut EndpointStats| {
        s.requests += 1;
        s.bytes_received += sample.bytes;
        s.total_tokens += sample.tokens;
        if sample.connected {
            s.connections_opened += 1;
        }
        s.record(Metric::ResponseTime, micros(elapsed));
        for (metric, value) in [
            (Metric::TimeToHeaders, sample.time_to_headers),
            (Metric::Ttfe, sample.ttfe),
            (Metric::Ttft, sample.ttft),
            (Metric::StreamDuration, sample.stream),
        ] {
            if let Some(v) = value {
                s.record(metric, micros(v));
            }
        }
        match result {
            Ok(()) => {
                if let Some(code) = sample.expected_status {
                    s.outcome(failure::EXPECTED_STATUS, &code.to_string(), || {
                        format!("HTTP {code} (expected)")
                    });
                }
            }
            Err(f) => s.fail(f.kind, &f.detail, || secrets_free(f.message)),
        }
    });
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Failure messages may quote a response; make sure no plan secret rides along.
fn redact(plan: &RunPlan, mut message: String) -> String {
    for secret in plan.secrets() {
        if !secret.is_empty() {
            message = message.replace(&secret, barrage_common::template::REDACTED);
        }
    }
    message
}

async fn exchange(
    ctx: &UserCtx,
    task: &Task,
    conn: &mut Conn,
    iteration: u64,
    rng: &mut SmallRng,
    start: Instant,
    sample: &mut Sample,
) -> Result<(), Failure> {
    let req = render_request(ctx, task, iteration, rng)?;
    sample.connected = conn.ready(&ctx.target, ctx.plan.limits.connect_timeout).await?;
    let resp = conn.send(req).await?;
    sample.time_to_headers = Some(start.elapsed());
    let status = resp.status().as_u16();
    let expected = if task.expect.is_empty() {
        resp.status().is_success()
    } else {
        task.expect.contains(&status)
    };
    let mut body = resp.into_body();
    if !expected || !resp_is_stream_kind(task) {
        let mut kept = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                conn.reset();
                hyper_failure(&e)
            })?;
            if let Some(data) = frame.data_ref() {
                sample.bytes += data.len() as u64;
                let room = SAMPLE_BYTES.saturating_sub(kept.len());
                kept.extend_from_slice(&data[..data.len().min(room)]);
            }
        }
        if !expected {
            return Err(Failure::new(
                failure::HTTP_STATUS,
                status.to_string(),
                format!("HTTP {status}: {}", String::from_utf8_lossy(&kept)),
            ));
        }
        if !resp_is_stream_kind(task) {
            if !(200..300).contains(&status) {
                sample.expected_status = Some(status);
            }
            return Ok(());
        }
    }
    let TaskKind::Sse(spec) = &task.kind else {
        return Ok(());
    };
    let headers_at = Instant::now();
    let _open = GaugeGuard::new(&ctx.recorder.active_streams);
    ctx.recorder.with(ctx.id, task.endpoint, |s| s.streams_started += 1);
    let outcome = read_stream(ctx, task, spec, &mut body, start, sample).await;
    sample.stream = Some(headers_at.elapsed());
    if outcome.is_err() || sample.drop_conn {
        conn.reset();
    }
    if outcome.is_ok() {
        ctx.recorder.with(ctx.id, task.endpoint, |s| s.streams_completed += 1);
    }
    outcome
}

fn resp_is_stream_kind(task: &Task) -> bool {
    matches!(task.kind, TaskKind::Sse(_))
}

/// The parts of a Dify event we look at; everything else is skipped by serde.
#[derive(serde::Deserialize)]
struct DifyHead<'a> {
    #[serde(borrow)]
    event: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    data: Option<DifyData<'a>>,
    #[serde(borrow, default)]
    code: Option<std::borrow::Cow<'a, str>>,
}

#[derive(serde::Deserialize)]
struct DifyData<'a> {
    #[serde(borrow, default)]
    status: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    total_tokens: Option<u64>,
}

/// Per-stream state the event callback updates.
#[derive(Default)]
struct StreamState {
    terminal: Option<Result<(), Failure>>,
    error: Option<Failure>,
}

async fn read_stream(
    ctx: &UserCtx,
    task: &Task,
    spec: &SseSpec,
    body: &mut hyper::body::Incoming,
    start: Instant,
    sample: &mut Sample,
) -> Result<(), Failure> {
    let mut parser = SseParser::new(ctx.plan.limits.sse_max_event_bytes);
    let mut state = StreamState::default();
    loop {
        let wait = if sample.ttfe.is_none() {
            spec.first_event_timeout
        } else {
            spec.read_timeout
        };
        let frame = match tokio::time::timeout(wait, body.frame()).await {
            Err(_) => {
                let kind = if sample.ttfe.is_none() {
                    failure::FIRST_EVENT_TIMEOUT
                } else {
                    failure::READ_TIMEOUT
                };
                return Err(Failure::new(kind, "", format!("nothing for {wait:?}")));
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(hyper_failure(&e)),
            Ok(Some(Ok(frame))) => frame,
        };
        let Some(data) = frame.data_ref() else { continue };
        sample.bytes += data.len() as u64;
        let now = start.elapsed();
        let fed = parser.feed(data, &mut |ev| {
            let mut event_type: &str = ev.event_type;
            let head = if ev.data.starts_with('{') {
                serde_json::from_str::<DifyHead<'_>>(ev.data).ok()
            } else {
                None
            };
            if let Some(t) = head.as_ref().and_then(|h| h.event.as_deref()) {
                event_type = t;
            }
            ctx.recorder.with(ctx.id, task.endpoint, |s| s.count_event(event_type));
            if event_type != "ping" && sample.ttfe.is_none() {
                sample.ttfe = Some(now);
            }
            if sample.ttft.is_none() && TEXT_EVENTS.contains(&event_type) {
                sample.ttft = Some(now);
            }
            let data = head.as_ref().and_then(|h| h.data.as_ref());
            if let Some(tokens) = data.and_then(|d| d.total_tokens) {
                sample.tokens += tokens;
            }
            if event_type == "error" && state.error.is_none() {
                let code = head.as_ref().and_then(|h| h.code.as_deref()).unwrap_or("").to_string();
                state.error = Some(Failure::new(
                    failure::ERROR_EVENT,
                    code,
                    ev.data.chars().take(SAMPLE_BYTES).collect::<String>(),
                ));
            }
            if state.terminal.is_none() && spec.terminal_event.as_deref() == Some(event_type) {
                let status = data.and_then(|d| d.status.as_deref());
                sample.end = Some(now);
                state.terminal = Some(match status {
                    None | Some("succeeded") => Ok(()),
                    Some(other) => Err(Failure::new(
                        failure::TERMINAL_STATUS,
                        other,
                        format!("{event_type} with status {other}"),
                    )),
                });
            }
        });
        if let Err(SseError::EventTooLarge { limit }) = fed {
            return Err(Failure::new(
                failure::EVENT_TOO_LARGE,
                "",
                format!("an event or line exceeded {limit} bytes"),
            ));
        }
        if let Some(err) = state.error.take() {
            return Err(err);
        }
        if state.terminal.is_some() {
            break;
        }
    }
    match state.terminal {
        Some(result) => {
            // Drain the rest so the connection can be reused; the verdict is already in.
            // A target that keeps the stream open after its terminal event costs at most
            // DRAIN_LIMIT, then the connection is dropped.
            let drained = tokio::time::timeout(DRAIN_LIMIT, async {
                while let Some(Ok(frame)) = body.frame().await {
                    if let Some(d) = frame.data_ref() {
                        sample.bytes += d.len() as u64;
                    }
                }
            })
            .await;
            sample.drop_conn |= drained.is_err();
            result
        }
        None if spec.terminal_event.is_some() => Err(Failure::new(
            failure::STREAM_CLOSED,
            "",
            format!(
                "stream ended before `{}`",
                spec.terminal_event.as_deref().unwrap_or_default()
            ),
        )),
        None => Ok(()),
    }
}
