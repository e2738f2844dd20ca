//! A virtual user: one tokio task that walks its class's tasks, owns one keep-alive
//! connection, and records every outcome. A failed request is data (counted by kind),
//! never control flow. Stream verdicts come from [`crate::dify::Judge`].

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use rand::rngs::SmallRng;
use tokio_util::sync::CancellationToken;

use barrage_common::metrics::{EndpointStats, FailureKind, Metric};
use barrage_common::plan::{
    Capture, CheckRule, ConnectionPolicy, PoolMode, RunPlan, SseSpec, Task, TaskKind, TaskOrder, UserClass, Wait,
};

use crate::dify::{Facts, Judge, Step, http_failure};
use crate::http::{Conn, Failure, Outgoing, Target};
use crate::placement::{Pick, Placement, Seat};
use crate::recorder::{GaugeGuard, Recorder};
use crate::sse::{SseError, SseParser};

/// Longest we wait for the end of a body after the terminal event.
const DRAIN_LIMIT: Duration = Duration::from_secs(1);
/// Largest non-stream body we keep to judge (a blocking Dify answer, an error envelope);
/// the rest is counted, not stored.
const KEEP_BODY: usize = 256 * 1024;

/// Everything a user needs, shared read-only with its siblings.
pub struct UserCtx {
    pub plan: Arc<RunPlan>,
    pub class: usize,
    /// Unique per user on this worker (also selects the recorder shard).
    pub id: usize,
    pub worker_index: u32,
    pub target: Arc<Target>,
    /// The address this user connects to (re-read before each request) and its slot
    /// in the recorder.
    pub seat: SeatCell,
    pub recorder: Arc<Recorder>,
    /// Every secret of the plan, for redacting what a target sends back.
    pub secrets: Arc<Vec<String>>,
    /// Graceful stop: finish the current request, start no new one.
    pub stopping: CancellationToken,
    /// Hard stop: abandon the current request now.
    pub cancel: CancellationToken,
    /// The worker's control runtime, for work that must outlive the user and its load
    /// thread (a Dify task stop sent as the run ends, when load threads shut down).
    pub background: tokio::runtime::Handle,
}

/// What a user carries from one request to the next.
#[derive(Default)]
struct UserState {
    iteration: u64,
    /// Dify conversation this (chat) user is in, and its turns so far.
    conversation_id: String,
    turns: u32,
    /// Next index per sequential pool.
    sequence: Vec<usize>,
    /// The Authorization header of the last request, for a Dify task stop.
    last_auth: Option<String>,
    /// Values captured from responses (`capture`), by variable name.
    vars: Vec<(String, String)>,
    /// CSV pools, by row group: the row this request took, and the sequential cursor.
    group_rows: Vec<Option<usize>>,
    /// Plain pools: the entry this request took, so `{{question}}` twice in one
    /// request is the same question (and a sequential cursor moves once).
    pool_picks: Vec<Option<usize>>,
    group_sequence: Vec<usize>,
    /// Rendering buffers, kept for their capacity: no allocation per request.
    value_buf: String,
    body_buf: String,
}

/// A user's [`Seat`] with the engine's placement: the address of its requests.
///
/// A per-user `std::sync::Mutex` (only its own task takes it, once per request), and
/// the recorder slot of the current address as an atomic for the many `record` calls.
pub struct SeatCell {
    placement: Arc<Placement>,
    seat: Mutex<Seat>,
    /// Recorder slot of the current pick: peer + 1, or 0 when unresolved.
    slot: AtomicUsize,
}

impl SeatCell {
    pub fn new(placement: Arc<Placement>, seat: Seat) -> SeatCell {
        let slot = slot_of(seat.pick());
        SeatCell {
            placement,
            seat: Mutex::new(seat),
            slot: AtomicUsize::new(slot),
        }
    }

    /// Re-reads the placement; true when the address changed (drop the connection).
    fn refresh(&self) -> bool {
        let mut seat = self.seat.lock().unwrap_or_else(|p| p.into_inner());
        let (pick, moved) = seat.current(&self.placement);
        self.slot.store(slot_of(pick), Ordering::Relaxed);
        moved
    }

    /// Where to connect: the pinned address, or the lookup failure to count.
    fn address(&self) -> Result<std::net::SocketAddr, Failure> {
        match self.seat.lock().unwrap_or_else(|p| p.into_inner()).pick() {
            Pick::Peer(_, a) => Ok(*a),
            Pick::Unresolved(message) => Err(Failure::new(FailureKind::Connect, "dns", message.clone())),
        }
    }
}

impl Drop for SeatCell {
    fn drop(&mut self) {
        self.seat
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .leave(&self.placement);
    }
}

fn slot_of(pick: &Pick) -> usize {
    match pick {
        Pick::Peer(p, _) => p + 1,
        Pick::Unresolved(_) => 0,
    }
}

impl UserCtx {
    /// Records into this user's shard, in its address's slot.
    fn record<R>(&self, endpoint: usize, f: impl FnOnce(&mut EndpointStats) -> R) -> R {
        self.recorder
            .with(self.id, endpoint, self.seat.slot.load(Ordering::Relaxed), f)
    }
}

/// A user's own things: its connection, variables, task deck and stream in flight.
struct Me {
    conn: Conn,
    state: UserState,
    deck: Deck,
    next_in_order: usize,
    /// The Dify task id of the stream in flight, for stop_on_cancel.
    live_task: Mutex<Option<String>>,
}

impl Me {
    fn new(ctx: &UserCtx) -> Me {
        Me {
            conn: Conn::new(),
            state: UserState {
                sequence: vec![0; ctx.plan.pools.len()],
                pool_picks: vec![None; ctx.plan.pools.len()],
                ..Default::default()
            },
            deck: Deck::new(&ctx.plan.classes[ctx.class]),
            next_in_order: 0,
            live_task: Mutex::new(None),
        }
    }

    /// on_start: once, in order (log in, create a project); failures are counted, and
    /// the user goes on, as a person would retry inside the app. A graceful stop lets
    /// the request in flight finish (and be counted), as in the task loop; a hard stop
    /// counts it as cancelled. False: the run is stopping.
    async fn start(&mut self, ctx: &UserCtx, rng: &mut SmallRng) -> bool {
        for task in &ctx.plan.classes[ctx.class].on_start {
            if ctx.stopping.is_cancelled() || ctx.cancel.is_cancelled() {
                return false;
            }
            if !self.one(ctx, task, rng, None).await {
                return false;
            }
        }
        true
    }

    /// The next task of the class: by the deck, or in order.
    fn pick<'a>(&mut self, ctx: &'a UserCtx, rng: &mut SmallRng) -> &'a Task {
        let class = &ctx.plan.classes[ctx.class];
        match class.order {
            TaskOrder::Weighted => &class.tasks[self.deck.draw(rng)],
            TaskOrder::Sequential => {
                let at = self.next_in_order % class.tasks.len();
                self.next_in_order = at + 1;
                &class.tasks[at]
            }
        }
    }

    /// Runs one task to its end; a hard stop abandons it, counted as cancelled (false).
    async fn one(&mut self, ctx: &UserCtx, task: &Task, rng: &mut SmallRng, intended: Option<Instant>) -> bool {
        let Me {
            conn, state, live_task, ..
        } = self;
        // The addresses or this user's place changed: move before the request, so
        // its connect is to the new address and it is recorded there.
        if ctx.seat.refresh() {
            conn.reset();
        }
        tokio::select! {
            biased;
            _ = ctx.cancel.cancelled() => {
                ctx.record(task.endpoint, |s| {
                    s.counts.requests += 1;
                    s.outcome(FailureKind::Cancelled, "", || "in flight when the run stopped".into());
                });
                stop_dify_task(ctx, task, live_task, state.last_auth.as_deref());
                false
            }
            _ = execute(ctx, task, conn, state, rng, live_task, intended) => true,
        }
    }
}

/// A closed-model user: tasks back to back, its class's wait between them.
pub async fn run(ctx: UserCtx, mut rng: SmallRng) {
    let _alive = GaugeGuard::new(&ctx.recorder.users);
    let class = &ctx.plan.classes[ctx.class];
    let mut me = Me::new(&ctx);
    if !me.start(&ctx, &mut rng).await {
        return;
    }
    loop {
        if ctx.stopping.is_cancelled() || ctx.cancel.is_cancelled() {
            return;
        }
        let started = Instant::now();
        let task = me.pick(&ctx, &mut rng);
        if !me.one(&ctx, task, &mut rng, None).await {
            return;
        }
        me.state.iteration += 1;
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

/// One open-model arrival: a task of the class to run, timed from when it was due.
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    pub intended: Instant,
}

/// Where a class's arrivals wait for a free virtual user.
pub struct ArrivalQueue {
    pub rx: tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<Ticket>>,
    /// Virtual users waiting for a ticket and not yet reserved for one: the dispatcher
    /// takes one (decrements) before it sends a ticket, so each ticket has its user.
    pub idle: std::sync::atomic::AtomicUsize,
    /// Arrivals taken and not finished, worker-wide (the in-flight cap counts these).
    pub in_flight: Arc<std::sync::atomic::AtomicUsize>,
}

/// An open-model virtual user, created for the ticket `first`: runs one task per
/// ticket, timed from the ticket's due time (so a late start shows in the latency, not
/// hidden by it), no wait between.
pub async fn serve(ctx: UserCtx, mut rng: SmallRng, queue: Arc<ArrivalQueue>, first: Ticket) {
    use std::sync::atomic::Ordering::SeqCst;
    let _alive = GaugeGuard::new(&ctx.recorder.users);
    let mut me = Me::new(&ctx);
    if !me.start(&ctx, &mut rng).await {
        queue.in_flight.fetch_sub(1, SeqCst);
        return;
    }
    let mut ticket = first;
    loop {
        let task = me.pick(&ctx, &mut rng);
        let finished = me.one(&ctx, task, &mut rng, Some(ticket.intended)).await;
        if !finished {
            queue.in_flight.fetch_sub(1, SeqCst);
            return;
        }
        me.state.iteration += 1;
        // Idle before out of flight: the user is always counted in one of the two, so
        // the dispatcher never sees neither and creates a user beyond the cap.
        queue.idle.fetch_add(1, SeqCst);
        queue.in_flight.fetch_sub(1, SeqCst);
        let next = tokio::select! {
            biased;
            _ = ctx.cancel.cancelled() => None,
            _ = ctx.stopping.cancelled() => None,
            t = async { queue.rx.lock().await.recv().await } => t,
        };
        match next {
            // The dispatcher took this user out of `idle` when it sent the ticket.
            Some(t) => ticket = t,
            None => {
                // Leaving; a ticket may have reserved us meanwhile (the run is ending).
                let _ = queue.idle.fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1));
                return;
            }
        }
    }
}

/// Weighted task choice without replacement: each cycle of `sum(weights)` picks holds
/// every task exactly `weight` times, in random order. Every pick is still a fair draw
/// from what the cycle has left, so the long-run mix is the plan's, and even a short run
/// (or a user with few iterations) realises it closely, where independent rolls drift.
struct Deck {
    weights: Vec<u64>,
    left: Vec<u64>,
    left_total: u64,
}

impl Deck {
    fn new(class: &UserClass) -> Self {
        let weights: Vec<u64> = class.tasks.iter().map(|t| u64::from(t.weight)).collect();
        Deck {
            left: weights.clone(),
            left_total: weights.iter().sum(),
            weights,
        }
    }

    /// The index of the next task.
    fn draw(&mut self, rng: &mut SmallRng) -> usize {
        if self.weights.len() <= 1 {
            return 0;
        }
        if self.left_total == 0 {
            self.left.copy_from_slice(&self.weights);
            self.left_total = self.weights.iter().sum();
            if self.left_total == 0 {
                return 0;
            }
        }
        let mut roll = rng.random_range(0..self.left_total);
        let last = self.left.iter().rposition(|&w| w > 0).unwrap_or(0);
        let at = self
            .left
            .iter()
            .position(|&w| {
                if roll < w {
                    return true;
                }
                roll -= w;
                false
            })
            .unwrap_or(last);
        self.left[at] -= 1;
        self.left_total -= 1;
        at
    }
}

/// Writes `bits` as a random (version 4, RFC 9562) UUID: ids for objects a request creates.
fn write_uuid_v4(out: &mut String, bits: u128) {
    use std::fmt::Write;
    let v = (bits & !(0xFu128 << 76) & !(0x3u128 << 62)) | (0x4u128 << 76) | (0x2u128 << 62);
    let _ = write!(
        out,
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        v >> 96,
        (v >> 80) & 0xFFFF,
        (v >> 64) & 0xFFFF,
        (v >> 48) & 0xFFFF,
        v & 0xFFFF_FFFF_FFFF
    );
}

/// Asks dify-api to stop the task of an abandoned stream (opt-in `stop_on_cancel`).
fn stop_dify_task(ctx: &UserCtx, task: &Task, live_task: &Mutex<Option<String>>, auth: Option<&str>) {
    let TaskKind::Sse(SseSpec { dify: Some(dify), .. }) = &task.kind else {
        return;
    };
    if !dify.stop_on_cancel {
        return;
    }
    let Some(task_id) = live_task.lock().ok().and_then(|mut t| t.take()) else {
        return;
    };
    let path = dify.app.stop_path(&task_id);
    let body = format!(r#"{{"user":"barrage-w{}-u{}"}}"#, ctx.worker_index, ctx.id);
    let mut conn = Conn::new();
    let req = conn.outgoing();
    let built = req.start("POST", &path).and_then(|()| {
        req.header("host", &ctx.target.authority)?;
        req.header("content-type", "application/json")?;
        match auth {
            Some(auth) => req.header("authorization", auth),
            None => Ok(()),
        }
    });
    if built.is_err() {
        return;
    }
    req.finish(body.as_bytes());
    let target = ctx.target.clone();
    let Ok(pinned) = ctx.seat.address() else { return };
    let connect_timeout = ctx.plan.limits.connect_timeout;
    // Detached and bounded: the run is ending and nobody waits for the answer.
    ctx.background.spawn(async move {
        let _ = tokio::time::timeout(Duration::from_secs(5), async move {
            if conn.ready(&target, Some(pinned), connect_timeout).await.is_ok() && conn.send().await.is_ok() {
                let _ = conn.drain().await;
            }
        })
        .await;
    });
}

fn render_request(
    ctx: &UserCtx,
    task: &Task,
    state: &mut UserState,
    rng: &mut SmallRng,
    req: &mut Outgoing,
) -> Result<(), Failure> {
    let plan = &ctx.plan;
    let (iteration, conversation) = (state.iteration, &state.conversation_id);
    let sequence = &mut state.sequence;
    let captured = &state.vars;
    // CSV pools: the row each group (file) gave this request, and its sequential cursor.
    let (group_rows, group_sequence) = (&mut state.group_rows, &mut state.group_sequence);
    group_rows.iter_mut().for_each(|r| *r = None);
    let pool_picks = &mut state.pool_picks;
    pool_picks.iter_mut().for_each(|r| *r = None);
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
            "uuid" => write_uuid_v4(out, rng.random()),
            "conversation_id" => out.push_str(conversation),
            name if captured.iter().any(|(n, _)| n == name) => {
                if let Some((_, v)) = captured.iter().find(|(n, _)| n == name) {
                    out.push_str(v);
                }
            }
            pool => {
                if let Some((i, (_, p))) = plan.pools.iter().enumerate().find(|(_, (n, _))| n.as_str() == pool)
                    && !p.entries.is_empty()
                {
                    let n = p.entries.len();
                    let mut pick = |cursor: &mut usize| match p.mode {
                        PoolMode::Random => rng.random_range(0..n),
                        PoolMode::PerUser => (ctx.worker_index as usize).wrapping_mul(7919).wrapping_add(ctx.id) % n,
                        PoolMode::Sequential => {
                            let at = (*cursor + ctx.id) % n;
                            *cursor += 1;
                            at
                        }
                    };
                    let at = match p.row_group.map(|g| g as usize) {
                        None => *pool_picks[i].get_or_insert_with(|| pick(&mut sequence[i])),
                        Some(g) => {
                            if group_rows.len() <= g {
                                group_rows.resize(g + 1, None);
                                group_sequence.resize(g + 1, 0);
                            }
                            *group_rows[g].get_or_insert_with(|| pick(&mut group_sequence[g]))
                        }
                    };
                    out.push_str(&p.entries[at.min(n - 1)]);
                }
            }
        }
    };
    let mut path = String::new();
    task.path.render_into(&mut path, &mut var);
    req.start(task.method.as_str(), &path)?;
    // A task's own Host (virtual hosts behind an ingress) or User-Agent replaces ours.
    if !task.headers.iter().any(|(n, _)| n == "host") {
        req.header("host", &ctx.target.authority)?;
    }
    if !task.headers.iter().any(|(n, _)| n == "user-agent") {
        req.header("user-agent", concat!("barrage/", env!("CARGO_PKG_VERSION")))?;
    }
    if task.connection == ConnectionPolicy::PerRequest {
        req.header("connection", "close")?;
    }
    let (value, body) = (&mut state.value_buf, &mut state.body_buf);
    let mut sent_auth = false;
    for (name, template) in &task.headers {
        value.clear();
        template.render_into(value, &mut var);
        req.header(name, value)?;
        if name == "authorization" {
            sent_auth = true;
            // Kept for a Dify task stop; copied only when it changes.
            if state.last_auth.as_deref() != Some(value.as_str()) {
                state.last_auth = Some(value.clone());
            }
        }
    }
    if !sent_auth {
        state.last_auth = None;
    }
    body.clear();
    if let Some(t) = &task.body {
        if task.json_body {
            t.render_json_into(body, &mut var);
        } else {
            t.render_into(body, &mut var);
        }
        if !task.headers.iter().any(|(n, _)| n == "content-type") {
            let json = body.trim_start().starts_with(['{', '[']);
            req.header("content-type", if json { "application/json" } else { "text/plain" })?;
        }
    }
    req.finish(body.as_bytes());
    Ok(())
}

/// What one request produced, recorded in one shard update at the end.
#[derive(Default)]
struct Sample {
    connected: bool,
    /// Sent a second time on a fresh connection (see [`Conn::may_retry`]).
    retried: bool,
    time_to_headers: Option<Duration>,
    ttfe: Option<Duration>,
    ttft: Option<Duration>,
    stream: Option<Duration>,
    server_elapsed: Option<f64>,
    bytes: u64,
    tokens: u64,
    expected_status: Option<u16>,
    /// When the verdict was in (the terminal event), if before the body ended.
    end: Option<Duration>,
    /// The body was not read to its end: the connection cannot be reused.
    drop_conn: bool,
    conversation_id: Option<String>,
    /// Values captured from this response.
    captures: Vec<(String, String)>,
}

async fn execute(
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
    for (name, value) in std::mem::take(&mut sample.captures) {
        match state.vars.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => *v = value,
            None => state.vars.push((name, value)),
        }
    }
    let elapsed = sample.end.unwrap_or_else(|| start.elapsed());
    ctx.record(task.endpoint, |s: &mut EndpointStats| {
        s.counts.requests += 1;
        s.counts.bytes_received += sample.bytes;
        s.counts.total_tokens += sample.tokens;
        if sample.connected {
            s.counts.connections_opened += 1;
        }
        if sample.retried {
            s.counts.retries += 1;
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
        if let Some(secs) = sample.server_elapsed.filter(|s| s.is_finite() && *s >= 0.0) {
            s.record(Metric::ServerElapsed, (secs * 1e6) as u64);
        }
        match result {
            Ok(()) => {
                // Per replica, beside the failures by kind: a dead replica's instant
                // refusals must not make it look fast (dropped from unsplit rows).
                s.record(Metric::ResponseTimeOk, micros(elapsed));
                if let Some(code) = sample.expected_status {
                    s.outcome(FailureKind::ExpectedStatus, &code.to_string(), || {
                        format!("HTTP {code} (expected)")
                    });
                }
            }
            Err(f) => {
                // Detail and message are target-supplied: redacted here, then bounded by
                // the stats (redacting first, so a clip never leaves half a secret).
                let detail = redact(&ctx.secrets, f.detail);
                s.fail(f.kind, &detail, || redact(&ctx.secrets, f.message))
            }
        }
    });
}

/// Takes the `capture` values that point into a JSON body.
fn capture_json(task: &Task, body: &[u8], sample: &mut Sample) {
    if !task.capture.iter().any(|(_, c)| matches!(c, Capture::Json(_))) {
        return;
    }
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) else {
        return;
    };
    for (name, source) in &task.capture {
        if let Capture::Json(pointer) = source
            && let Some(v) = json.pointer(pointer)
        {
            let text = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            sample.captures.push((name.clone(), text));
        }
    }
}

/// A task's `checks` on a successful answer's body (the first 256 KiB): the first that
/// does not hold fails the request as `check`, with the check's name as detail.
fn run_checks(task: &Task, body: &[u8]) -> Result<(), Failure> {
    if task.checks.is_empty() {
        return Ok(());
    }
    // Parsed once, and only when a check reads JSON.
    let needs_json = task
        .checks
        .iter()
        .any(|c| !matches!(c.rule, CheckRule::BodyContains(_)));
    let json: Option<serde_json::Value> = if needs_json {
        serde_json::from_slice(body).ok()
    } else {
        None
    };
    for check in &task.checks {
        let at = |pointer: &str| json.as_ref().and_then(|v| v.pointer(pointer));
        let held = match &check.rule {
            CheckRule::JsonExists(pointer) => at(pointer).is_some(),
            CheckRule::JsonEquals { pointer, text, value } => at(pointer).is_some_and(|found| match found {
                serde_json::Value::String(s) => s == text,
                other => value.as_ref() == Some(other),
            }),
            CheckRule::BodyContains(text) => body.windows(text.len()).any(|w| w == text.as_bytes()),
        };
        if !held {
            let what = match &check.rule {
                CheckRule::JsonExists(p) => format!("no JSON value at {p}"),
                CheckRule::JsonEquals { pointer, text, .. } => format!("the JSON value at {pointer} is not {text:?}"),
                CheckRule::BodyContains(t) => format!("the body does not contain {t:?}"),
            };
            return Err(Failure::new(
                FailureKind::Check,
                check.name.clone(),
                format!("check `{}` failed: {what}", check.name),
            ));
        }
    }
    Ok(())
}

/// Chat users continue their conversation for `conversation_turns` turns.
fn track_conversation(task: &Task, state: &mut UserState, sample: &Sample, ok: bool) {
    let TaskKind::Sse(SseSpec { dify: Some(dify), .. }) = &task.kind else {
        return;
    };
    state.turns += 1;
    match (&sample.conversation_id, ok) {
        (Some(id), true) if state.turns < dify.conversation_turns => state.conversation_id.clone_from(id),
        _ => {
            state.conversation_id.clear();
            state.turns = 0;
        }
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Failure messages and details may quote a response; no plan secret rides along.
fn redact(secrets: &[String], mut message: String) -> String {
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        if message.contains(secret.as_str()) {
            message = message.replace(secret.as_str(), barrage_common::template::REDACTED);
        }
    }
    message
}

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
    for (name, source) in &task.capture {
        if let Capture::Header(h) = source
            && let Some(v) = headers.get(h.as_str()).and_then(|v| v.to_str().ok())
        {
            sample.captures.push((name.clone(), v.to_string()));
        }
    }
    let spec = match &task.kind {
        // A declared non-2xx (expect = [200, 429]) is an outcome to count, not a stream.
        TaskKind::Sse(spec) if expected && status_code.is_success() && (is_stream || spec.dify.is_none()) => spec,
        kind => {
            // Not a stream to follow: read (and keep the start of) the body.
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
            if let TaskKind::Sse(spec) = kind {
                // A Dify app answered in blocking mode (JSON): judge the answer.
                let mut facts = Facts::default();
                let verdict = Judge::new(spec).on_blocking(&kept, &mut facts);
                sample.tokens = facts.tokens.unwrap_or(0);
                sample.server_elapsed = facts.server_elapsed;
                sample.conversation_id = facts.conversation_id;
                return verdict;
            }
            return Ok(());
        }
    };
    let headers_at = Instant::now();
    let _open = GaugeGuard::new(&ctx.recorder.active_streams);
    ctx.record(task.endpoint, |s| s.counts.streams_started += 1);
    let outcome = read_stream(ctx, task, spec, conn, start, sent, sample, live_task).await;
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

/// Reads a stream to its verdict (then drains the rest, bounded). Sets
/// `sample.drop_conn` unless the body was read to its end, so a stream that failed
/// by its content but ended cleanly keeps its connection. `sent`: when the request
/// went out, where the first event's deadline counts from.
#[allow(clippy::too_many_arguments)]
async fn read_stream(
    ctx: &UserCtx,
    task: &Task,
    spec: &SseSpec,
    conn: &mut Conn,
    start: Instant,
    sent: Instant,
    sample: &mut Sample,
    live_task: &Mutex<Option<String>>,
) -> Result<(), Failure> {
    let outcome = follow_stream(ctx, task, spec, conn, start, sent, sample, live_task).await;
    match outcome {
        // The verdict is in (a failed one too: dify-api ends a failed run's stream
        // cleanly): drain the rest so the connection can be reused. A target that
        // keeps the stream open after its terminal event costs at most DRAIN_LIMIT,
        // then the connection is dropped.
        Ok(result) => {
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
            result
        }
        Err(failure) => {
            sample.drop_conn = true;
            Err(failure)
        }
    }
}

/// Follows a stream up to its verdict: `Ok(verdict)` at the deciding event or the end
/// of the body; `Err`: it broke off (timeouts, I/O, an oversized event).
#[allow(clippy::too_many_arguments)]
async fn follow_stream(
    ctx: &UserCtx,
    task: &Task,
    spec: &SseSpec,
    conn: &mut Conn,
    start: Instant,
    sent: Instant,
    sample: &mut Sample,
    live_task: &Mutex<Option<String>>,
) -> Result<Result<(), Failure>, Failure> {
    let mut parser = SseParser::new(ctx.plan.limits.sse_max_event_bytes);
    let mut judge = Judge::new(spec);
    let mut facts = Facts::default();
    let mut verdict: Option<Result<(), Failure>> = None;
    let (mut last_event, mut last_chunk): (Option<Duration>, Option<Duration>) = (None, None);
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
        let now = start.elapsed();
        let task_before = facts.task_id.is_some();
        let fed = parser.feed(&data, &mut |ev| {
            if verdict.is_some() {
                return;
            }
            let step = judge.on_event(&ev, &mut facts);
            ctx.record(task.endpoint, |s| {
                s.count_event(&facts.event_type);
                if let Some(prev) = last_event {
                    s.record(Metric::EventGap, micros(now.saturating_sub(prev)));
                }
                if facts.is_text {
                    if let Some(prev) = last_chunk {
                        s.record(Metric::ChunkGap, micros(now.saturating_sub(prev)));
                    }
                    last_chunk = Some(now);
                }
            });
            last_event = Some(now);
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
            if let Step::Done(v) = step {
                sample.end = Some(now);
                verdict = Some(v);
            }
        });
        if !task_before
            && let Some(id) = &facts.task_id
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
        if verdict.is_some() {
            break;
        }
        if sample.ttfe.is_some() && deadline.deadline() == first_event_deadline {
            // The first event is in: from now on the deadline is the read timeout.
            deadline.as_mut().reset(last_read + spec.read_timeout);
        }
    }
    sample.conversation_id = facts.conversation_id.take();
    Ok(verdict.unwrap_or_else(|| judge.on_end()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use barrage_common::plan::{DifyApp, DifySpec};
    use barrage_common::template::Template;

    fn chat_task(turns: u32) -> Task {
        Task {
            name: "chat".into(),
            endpoint: 0,
            method: "POST".into(),
            path: Template::literal("/v1/chat-messages"),
            headers: Vec::new(),
            body: None,
            json_body: false,
            events_per_request: 1,
            weight: 1,
            timeout: Duration::from_secs(1),
            expect: Vec::new(),
            kind: TaskKind::Sse(SseSpec {
                terminal_event: None,
                first_event_timeout: Duration::from_secs(1),
                read_timeout: Duration::from_secs(1),
                dify: Some(DifySpec {
                    app: DifyApp::Chat,
                    conversation_turns: turns,
                    stop_on_cancel: false,
                }),
            }),
            connection: ConnectionPolicy::KeepAlive,
            tags: Vec::new(),
            capture: Vec::new(),
            checks: Vec::new(),
        }
    }

    fn class_of(weights: &[u32]) -> UserClass {
        UserClass {
            name: "c".into(),
            weight: 1,
            fixed_count: None,
            wait: Wait::Constant(Duration::ZERO),
            host: None,
            order: TaskOrder::Weighted,
            on_start: Vec::new(),
            tasks: weights.iter().map(|&weight| Task { weight, ..chat_task(0) }).collect(),
        }
    }

    #[test]
    fn every_cycle_of_the_deck_holds_each_task_its_weight_times() {
        use rand::SeedableRng;
        let mut rng = SmallRng::seed_from_u64(7);
        let mut deck = Deck::new(&class_of(&[5, 2, 0, 3]));
        for _cycle in 0..50 {
            let mut seen = [0u32; 4];
            for _ in 0..10 {
                seen[deck.draw(&mut rng)] += 1;
            }
            assert_eq!(seen, [5, 2, 0, 3]);
        }
        // Order varies: the first picks of the cycles are not all the same task.
        let firsts: std::collections::BTreeSet<usize> = (0..40)
            .map(|_| {
                let first = deck.draw(&mut rng);
                (0..9).for_each(|_| {
                    deck.draw(&mut rng);
                });
                first
            })
            .collect();
        assert!(firsts.len() >= 2, "{firsts:?}");
        // Degenerate classes: one task, or every weight 0, always give the first.
        assert_eq!(Deck::new(&class_of(&[4])).draw(&mut rng), 0);
        assert_eq!(Deck::new(&class_of(&[0, 0])).draw(&mut rng), 0);
    }

    #[test]
    fn uuids_are_version_4_and_follow_their_bits() {
        for bits in [0u128, u128::MAX, 0x0123_4567_89ab_cdef_0123_4567_89ab_cdef] {
            let mut out = String::new();
            write_uuid_v4(&mut out, bits);
            let groups: Vec<&str> = out.split('-').collect();
            assert_eq!(
                groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
                [8, 4, 4, 4, 12],
                "{out}"
            );
            assert!(groups[2].starts_with('4'), "{out}");
            assert!("89ab".contains(&groups[3][..1]), "{out}");
        }
        let mut out = String::new();
        write_uuid_v4(&mut out, 0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        assert_eq!(out, "01234567-89ab-4def-8123-456789abcdef");
    }

    fn turn(task: &Task, state: &mut UserState, id: &str, ok: bool) -> String {
        let sample = Sample {
            conversation_id: Some(id.to_string()),
            ..Default::default()
        };
        track_conversation(task, state, &sample, ok);
        state.conversation_id.clone()
    }

    #[test]
    fn a_conversation_lasts_its_turns_then_starts_over() {
        let task = chat_task(3);
        let mut state = UserState::default();
        assert_eq!(
            turn(&task, &mut state, "c1", true),
            "c1",
            "turn 1 opens c1; turn 2 continues it"
        );
        assert_eq!(turn(&task, &mut state, "c1", true), "c1", "turn 3 still in c1");
        assert_eq!(
            turn(&task, &mut state, "c1", true),
            "",
            "after 3 turns: a new conversation"
        );
        assert_eq!(turn(&task, &mut state, "c2", true), "c2");
        assert_eq!(turn(&task, &mut state, "c2", false), "", "a failed turn starts over");
    }

    #[test]
    fn single_turn_chats_never_continue() {
        let task = chat_task(1);
        let mut state = UserState::default();
        assert_eq!(turn(&task, &mut state, "c1", true), "");
    }
}
