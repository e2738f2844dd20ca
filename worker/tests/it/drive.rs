//! Driving a worker [`Engine`] in-process without a master: one-task scenarios, a run
//! until enough requests completed, a graceful stop, and what the recorder holds.
//!
//! Also the panic watch: a panic anywhere outside this test code (a user task, hyper's
//! connection task) is counted, so "nothing panics" is asserted, not just hoped for:
//! tokio would otherwise swallow a panicking task and the test could still pass.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use barrage_common::metrics::EndpointStats;
use barrage_common::plan::RunPlan;
use barrage_worker::runner::{Engine, Targets};

/// A streaming Dify workflow call.
const DIFY_BODY: &str = r#"body = '{"inputs": {}, "response_mode": "streaming", "user": "{{user}}"}'"#;

/// The longest a test waits for its requests before stopping anyway.
const PROGRESS_DEADLINE: Duration = Duration::from_secs(10);

/// A one-task scenario of `kind` ("http", "sse" or "dify"); `task` adds task keys.
pub(crate) fn plan(kind: &str, task: &str) -> Arc<RunPlan> {
    plan_with("", kind, task)
}

/// Like [`plan`], with extra `[limits]` keys.
pub(crate) fn plan_with(limits: &str, kind: &str, task: &str) -> Arc<RunPlan> {
    let (method, path, body) = match kind {
        "dify" => ("POST", "/v1/workflows/run", DIFY_BODY),
        "sse" => ("GET", "/stream", ""),
        _ => ("GET", "/", ""),
    };
    let text = format!(
        r#"
[limits]
connect_timeout = "2s"
{limits}

[[users]]
name = "Hostile"
wait = "constant(0)"

[[users.tasks]]
name = "{kind}"
method = "{method}"
path = "{path}"
kind = "{kind}"
{body}
{task}
"#
    );
    let scenario = barrage_common::scenario::parse_str(&text, config::FileFormat::Toml, "hostile.toml", &|_| None)
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    Arc::new(scenario.plan)
}

/// Runs `users` users against `host` until at least `requests` requests completed,
/// then stops gracefully, so every request in flight ends with its own outcome (the
/// grace outlasts the longest task timeout). Returns everything recorded.
pub(crate) async fn drive(plan: Arc<RunPlan>, host: &str, users: u32, requests: u64) -> EndpointStats {
    drive_inspecting(plan, host, users, requests, |_| {}).await
}

/// Like [`drive`], showing `inspect` each endpoint's delta as the recorder hands it
/// over (what a report would carry), before it is merged into the total.
pub(crate) async fn drive_inspecting(
    plan: Arc<RunPlan>,
    host: &str,
    users: u32,
    requests: u64,
    mut inspect: impl FnMut(&EndpointStats),
) -> EndpointStats {
    watch_panics();
    let grace = plan
        .classes
        .iter()
        .flat_map(|c| &c.tasks)
        .map(|t| t.timeout)
        .max()
        .unwrap_or_default()
        + Duration::from_secs(2);
    let engine = Engine::start(plan, Some(host), 0, Instant::now(), 0)
        .await
        .expect("engine starts");
    engine.set_targets(Targets {
        users: vec![users],
        spawn_rate: 0.0,
    });
    let mut total = EndpointStats::default();
    let deadline = Instant::now() + PROGRESS_DEADLINE;
    while total.counts.requests < requests && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let taken = engine.recorder().take();
        taken.iter().for_each(&mut inspect);
        merge_into(&mut total, taken);
    }
    engine.stop(grace).await;
    let taken = engine.recorder().take();
    taken.iter().for_each(&mut inspect);
    merge_into(&mut total, taken);
    assert!(
        total.counts.requests >= requests,
        "only {} of {requests} requests completed in {PROGRESS_DEADLINE:?}: {:?}",
        total.counts.requests,
        kinds(&total)
    );
    assert_eq!(engine_panics(), 0, "something panicked outside the test code");
    total
}

pub(crate) fn merge_into(total: &mut EndpointStats, taken: Vec<EndpointStats>) {
    for stats in &taken {
        total.merge(stats);
    }
}

/// Failure counts by (kind, detail), for assertions and their messages.
pub(crate) fn kinds(stats: &EndpointStats) -> BTreeMap<(String, String), u64> {
    stats.failure_kinds.iter().map(|(k, e)| (k.clone(), e.count)).collect()
}

/// Every request failed, every one as `kind`, and nothing else happened (no request
/// was cut by the stop). Returns the counts by detail.
#[track_caller]
pub(crate) fn assert_all_failed_as(stats: &EndpointStats, kind: &str) -> BTreeMap<String, u64> {
    let samples: Vec<_> = stats
        .failure_kinds
        .iter()
        .map(|((k, d), e)| format!("{k}/{d} x{}: {}", e.count, e.sample))
        .collect();
    assert!(stats.counts.requests > 0);
    assert_eq!(
        stats.counts.failures, stats.counts.requests,
        "every request fails: {samples:#?}"
    );
    assert!(stats.outcomes.is_empty(), "other outcomes: {:?}", stats.outcomes);
    assert!(
        stats.failure_kinds.keys().all(|(k, _)| k == kind),
        "expected only `{kind}`: {samples:#?}"
    );
    stats
        .failure_kinds
        .iter()
        .map(|((_, detail), e)| (detail.clone(), e.count))
        .collect()
}

static ENGINE_PANICS: AtomicUsize = AtomicUsize::new(0);

/// Panics counted by the watch since the process started.
pub(crate) fn engine_panics() -> usize {
    ENGINE_PANICS.load(Ordering::SeqCst)
}

/// Counts every panic not raised by the test code itself (its assertions live in
/// `tests/it/`), then lets the default hook print it as usual.
pub(crate) fn watch_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !info.location().is_some_and(|l| l.file().contains("tests/it/")) {
                ENGINE_PANICS.fetch_add(1, Ordering::SeqCst);
            }
            previous(info);
        }));
    });
}
