//! Random target behaviour (issue 14): whatever mix of statuses, Dify workflow event
//! sequences, error texts (0 bytes to 1 MB), event type names (any length, up to 1,000
//! distinct), resets and clean closes a target answers with, our outcomes sum to what it
//! served, by kind, and nothing it sends grows a delta past the bounds of
//! [`barrage_common::bounds`].
//!
//! Each case scripts a fresh [`Hostile`] server: request `n` (in the order the server
//! reads them) gets `scripts[n % len]`, so the outcome of every request it served is
//! known from `server.requests()` alone, independently of what the engine counted.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;

use barrage_common::bounds::{MAX_EVENT_TYPE, MAX_EVENT_TYPES, MAX_SAMPLE};
use barrage_common::metrics::{EndpointStats, FailureKind};

use crate::drive::{drive_inspecting, kinds, plan_with};
use crate::server::{Hostile, Script, Step, send};

/// A close-delimited event stream: only a FIN ends it cleanly.
const SSE_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n";
/// A task that reads a 1 MB `data.error` (the default event limit is 1 MiB), gives
/// every stream a bound, and takes a 503 as the right answer (an outcome, not a failure).
const TASK: &str = "timeout = \"5s\"\nexpect = [200, 503]";
const LIMITS: &str = "sse_max_event_bytes = 4194304";
/// Longest response body a case writes, so a case stays within a couple of seconds.
const MAX_EVENT_BYTES_PER_RESPONSE: usize = 1 << 20;

/// How a workflow stream ends.
#[derive(Debug, Clone)]
enum End {
    Succeeded,
    /// `workflow_finished` with `status: failed` and a `data.error` of this many bytes.
    Failed(usize),
    /// Dify's `error` event.
    ErrorEvent,
    /// A TCP reset in the middle of an event.
    Reset,
    /// A FIN at an event boundary, before any terminal event.
    CleanClose,
}

/// One answer of the target.
#[derive(Debug, Clone)]
enum Answer {
    /// A plain error status (400 app limit, 429, 500, 503) with a body of Dify's form;
    /// `usize` is the length of the message (0 to 1 MB).
    Status(u16, usize),
    /// A 200 workflow stream: `events` events named by `name_len` (see [`names`]), a
    /// ping every `ping_every` events, then `end`; `length` frames it with
    /// `content-length` (the connection stays open), else it is close-delimited.
    Workflow {
        events: usize,
        name_len: usize,
        ping_every: usize,
        end: End,
        length: bool,
    },
}

/// What we must have counted for one answer.
struct Expected {
    /// `None` for a success; else (failure or outcome kind, is it an outcome).
    outcome: Option<(FailureKind, bool)>,
    /// Events the client certainly received (all that were sent, unless reset).
    events: usize,
    /// Events sent but possibly lost to a reset.
    events_maybe: usize,
}

/// `count` event type names of `len` bytes (at least their distinct prefix): any
/// length, with multi-byte characters so a clip can land inside one.
fn names(count: usize, len: usize) -> impl Iterator<Item = String> {
    (0..count).map(move |i| {
        if len == 0 {
            return String::new();
        }
        let mut name = format!("e{i}-");
        let fill = ['x', 'é', '字'];
        let mut k = 0;
        while name.len() < len {
            name.push(fill[k % fill.len()]);
            k += 1;
        }
        name
    })
}

/// A traceback-like text of about `len` bytes, escaped for a JSON string.
fn error_text(len: usize) -> String {
    const LINE: &str = "  File \\\"/app/api/core/workflow/nodes/code.py\\\", line 7, in run\\n";
    let mut text = String::with_capacity(len + LINE.len());
    while text.len() + LINE.len() <= len {
        text.push_str(LINE);
    }
    text.extend(std::iter::repeat_n('E', len - text.len()));
    text
}

fn event(json: &str) -> String {
    format!("data: {json}\n\n")
}

/// The script for one answer, and what we must count for it.
fn script(answer: &Answer) -> (Script, Expected) {
    match answer {
        Answer::Status(code, len) => status_script(*code, *len),
        Answer::Workflow {
            events,
            name_len,
            ping_every,
            end,
            length,
        } => workflow_script(*events, *name_len, *ping_every, end, *length),
    }
}

/// A plain error status `code` with a Dify error body whose message is `len` bytes.
fn status_script(code: u16, len: usize) -> (Script, Expected) {
    let (reason, body) = match code {
        400 => (
            "Bad Request",
            r#"{"code":"invalid_param","message":"Too many requests. Please try again later.","status":400}"#
                .to_string(),
        ),
        429 => (
            "Too Many Requests",
            r#"{"code":"too_many_requests","message":"Too many requests","status":429}"#.to_string(),
        ),
        _ => (
            "Error",
            format!(
                r#"{{"code":"internal_server_error","message":"{}","status":{code}}}"#,
                error_text(len)
            ),
        ),
    };
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let outcome = match code {
        400 | 429 => (FailureKind::TooManyRequests, false),
        503 => (FailureKind::ExpectedStatus, true),
        _ => (FailureKind::HttpStatus, false),
    };
    let expected = Expected {
        outcome: Some(outcome),
        events: 0,
        events_maybe: 0,
    };
    (vec![Step::Send(Bytes::from(head + &body))], expected)
}

/// A 200 workflow stream (see [`Answer::Workflow`]).
fn workflow_script(events: usize, name_len: usize, ping_every: usize, end: &End, length: bool) -> (Script, Expected) {
    let mut body = event(r#"{"event":"workflow_started","task_id":"t1","data":{}}"#);
    let mut sent = 1;
    for (i, name) in names(events, name_len).enumerate() {
        if i % ping_every == 0 {
            body.push_str("event: ping\n\n");
            sent += 1;
        }
        body.push_str(&event(&format!(r#"{{"event":"{name}","task_id":"t1","data":{{}}}}"#)));
        sent += 1;
    }
    let (terminal, outcome) = match end {
        End::Succeeded => (
            Some(r#"{"event":"workflow_finished","task_id":"t1","data":{"status":"succeeded"}}"#.to_string()),
            None,
        ),
        End::Failed(len) => (
            Some(format!(
                r#"{{"event":"workflow_finished","task_id":"t1","data":{{"status":"failed","error":"Traceback (most recent call last):\n{}"}}}}"#,
                error_text(*len)
            )),
            Some((FailureKind::TerminalStatus, false)),
        ),
        End::ErrorEvent => (
            Some(
                r#"{"event":"error","task_id":"t1","status":400,"code":"invalid_param","message":"boom"}"#.to_string(),
            ),
            Some((FailureKind::ErrorEvent, false)),
        ),
        End::Reset => (None, Some((FailureKind::Io, false))),
        End::CleanClose => (None, Some((FailureKind::StreamClosed, false))),
    };
    if let Some(t) = &terminal {
        body.push_str(&event(t));
        sent += 1;
    }
    // A reset loses what the client had not read yet; only the sent count is known.
    let reset = matches!(end, End::Reset);
    let expected = Expected {
        outcome,
        events: if reset { 0 } else { sent },
        events_maybe: if reset { sent } else { 0 },
    };
    let steps = match end {
        End::Reset => vec![
            send(SSE_HEAD),
            Step::Send(Bytes::from(body)),
            send(b"data: {\"event\": \"text_chunk\", \"data\": {\"text\": \""),
            Step::Reset,
        ],
        End::CleanClose => vec![send(SSE_HEAD), Step::Send(Bytes::from(body)), Step::Close],
        _ if length => {
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: {}\r\n\r\n",
                body.len()
            );
            vec![Step::Send(Bytes::from(head + &body))]
        }
        _ => vec![send(SSE_HEAD), Step::Send(Bytes::from(body)), Step::Close],
    };
    (steps, expected)
}

/// Lengths from 0 to 1 MB, weighted towards the bounds that matter.
fn text_len() -> impl Strategy<Value = usize> {
    prop_oneof![
        1 => Just(0usize),
        1 => 1usize..600,
        1 => Just(MAX_SAMPLE - 1),
        2 => Just(MAX_SAMPLE + 1),
        2 => 600usize..10_000,
        2 => Just(6_123usize),
        2 => Just(1_000_000usize),
    ]
}

fn answer() -> impl Strategy<Value = Answer> {
    let status = (prop_oneof![Just(400u16), Just(429), Just(500), Just(503)], text_len())
        .prop_map(|(code, len)| Answer::Status(code, len));
    let end = prop_oneof![
        Just(End::Succeeded),
        text_len().prop_map(End::Failed),
        Just(End::ErrorEvent),
        Just(End::Reset),
        Just(End::CleanClose),
    ];
    let name_len = prop_oneof![
        0usize..4,
        4usize..80,
        Just(MAX_EVENT_TYPE),
        Just(MAX_EVENT_TYPE + 1),
        80usize..10_240
    ];
    let workflow = (0usize..=1000, name_len, 1usize..50, end, any::<bool>()).prop_map(
        |(events, name_len, ping_every, end, length)| Answer::Workflow {
            // Bounded in bytes, so a case stays quick: long names, fewer of them.
            events: events.min(MAX_EVENT_BYTES_PER_RESPONSE / (name_len + 64)),
            name_len,
            ping_every,
            end,
            length,
        },
    );
    prop_oneof![1 => status, 3 => workflow]
}

/// Every text a delta holds is within its bound.
fn assert_bounded(stats: &EndpointStats) {
    for ((kind, detail), e) in stats.failure_kinds.iter().chain(&stats.outcomes) {
        assert!(
            e.sample.len() <= MAX_SAMPLE,
            "{kind}/{detail}: a {}-byte sample",
            e.sample.len()
        );
    }
    assert!(
        stats.events_by_type.len() <= MAX_EVENT_TYPES + 1,
        "{} event type keys",
        stats.events_by_type.len()
    );
    for name in stats.events_by_type.keys() {
        assert!(name.len() <= MAX_EVENT_TYPE, "a {}-byte event type key", name.len());
    }
}

/// Runs 3 users against `answers` until each answer was served once or more, and
/// checks every figure against what the server served.
async fn check(answers: Vec<Answer>) {
    let (respond_scripts, expected): (Vec<Script>, Vec<Expected>) = answers.iter().map(script).unzip();
    let len = respond_scripts.len() as u64;
    let server = Hostile::start(move |n| clone_script(&respond_scripts[(n % len) as usize])).await;
    let stats = drive_inspecting(plan_with(LIMITS, "dify", TASK), &server.url(), 3, len, assert_bounded).await;
    assert_bounded(&stats);

    let served = server.requests();
    assert_eq!(
        served, stats.counts.requests,
        "requests the target saw vs requests we counted"
    );
    let (mut failures, mut outcomes) = (BTreeMap::<String, u64>::new(), BTreeMap::<String, u64>::new());
    let (mut successes, mut events, mut events_maybe) = (0u64, 0u64, 0u64);
    for n in 0..served {
        let e = &expected[(n % len) as usize];
        match e.outcome {
            None => successes += 1,
            Some((kind, false)) => *failures.entry(kind.to_string()).or_default() += 1,
            Some((kind, true)) => *outcomes.entry(kind.to_string()).or_default() += 1,
        }
        events += e.events as u64;
        events_maybe += e.events_maybe as u64;
    }
    let by_kind = |map: &BTreeMap<(String, String), barrage_common::metrics::FailureEntry>| {
        let mut out = BTreeMap::<String, u64>::new();
        for ((kind, _), e) in map {
            *out.entry(kind.clone()).or_default() += e.count;
        }
        out
    };
    let counted_failures = by_kind(&stats.failure_kinds);
    let counted_outcomes = by_kind(&stats.outcomes);
    assert_eq!(counted_failures, failures, "failures by kind: {:?}", kinds(&stats));
    assert_eq!(counted_outcomes, outcomes, "outcomes by kind");
    assert_eq!(
        counted_failures.values().sum::<u64>(),
        stats.counts.failures,
        "the failure kinds sum to the failures"
    );
    let counted_successes = stats.counts.requests - stats.counts.failures - counted_outcomes.values().sum::<u64>();
    assert_eq!(
        counted_successes, successes,
        "successes + failures + outcomes == requests"
    );
    let counted_events: u64 = stats.events_by_type.values().sum();
    assert_eq!(counted_events, stats.counts.events, "events by type sum to events");
    assert!(
        (events..=events + events_maybe).contains(&stats.counts.events),
        "events: counted {}, sent {events} in complete responses and {events_maybe} in reset ones",
        stats.counts.events
    );
}

/// A script is made of bytes that are cheap to clone (`Bytes` shares them).
fn clone_script(script: &Script) -> Script {
    script
        .iter()
        .map(|step| match step {
            Step::Send(b) => Step::Send(b.clone()),
            Step::Every(b, d) => Step::Every(b.clone(), *d),
            Step::Reset => Step::Reset,
            Step::Close => Step::Close,
            Step::Hold => Step::Hold,
        })
        .collect()
}

/// The worst of each kind, every time (a random case may miss them): a 1 MB traceback
/// as the first failure of its key (the one whose sample is kept), 1,000 distinct event
/// types, 10 KB event type names, and the rest of the mix around them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_megabyte_traceback_and_a_thousand_event_types_stay_bounded() {
    let workflow = |events, name_len, end| Answer::Workflow {
        events,
        name_len,
        ping_every: 7,
        end,
        length: true,
    };
    check(vec![
        workflow(3, 10, End::Failed(1_000_000)),
        workflow(1000, 20, End::Succeeded),
        workflow(50, 10_240, End::CleanClose),
        Answer::Status(400, 0),
        Answer::Status(500, 1_000_000),
        workflow(10, 0, End::Reset),
        workflow(0, 0, End::ErrorEvent),
        Answer::Status(503, 10),
    ])
    .await;
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 8,
        // A failing case is reported as it is: shrinking would rerun engines for minutes.
        max_shrink_iters: 8,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn outcomes_sum_to_what_a_random_target_served(answers in prop::collection::vec(answer(), 3..10)) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(30), check(answers))
                .await
                .expect("a case ends within 30 s");
        });
    }
}
