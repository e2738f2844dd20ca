//! One engine, 1,000 concurrent hostile streams: the process's memory stays bounded.
//!
//! Half the streams send a partial line just under `sse_max_event_bytes` and then one
//! byte a second (the parser must hold that line); the other half send one event, then
//! a ping a second, forever. The resident set size is read from `/proc/self/status`
//! before the users start and while every stream is open.
//!
//! RSS is a property of the whole process, and the other tests of this binary run in
//! parallel threads, so the measurement runs in a child process that runs only this
//! test (the parent re-executes the test binary with [`CHILD`] set).

use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::Bytes;

use barrage_common::metrics::{EndpointStats, FailureKind};
use barrage_worker::runner::{Engine, Targets};

use crate::drive::{engine_panics, kinds, merge_into, plan_with, watch_panics};
use crate::server::{Hostile, Step};

const STREAMS: u32 = 1_000;
/// Small enough that 500 lines just under it are a visible but bounded cost.
const LIMIT: usize = 64 * 1024;
/// Generous: what a regression to unbounded buffering would blow through.
const BOUND_MIB: u64 = 300;
/// Set in the child process that does the measuring.
const CHILD: &str = "BARRAGE_IT_MEMORY_CHILD";
const TEST: &str = "a_thousand_hostile_streams_keep_memory_bounded";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_hostile_streams_keep_memory_bounded() {
    if std::env::var_os(CHILD).is_some() {
        measure().await;
    } else {
        in_child().await;
    }
}

/// Runs this test alone in a fresh process of the same test binary.
async fn in_child() {
    let name = format!("{}::{TEST}", module_path!().trim_start_matches("it::"));
    let exe = std::env::current_exe().expect("test binary path");
    let child = tokio::process::Command::new(exe)
        .args([name.as_str(), "--exact", "--nocapture", "--test-threads", "1"])
        .env(CHILD, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("re-run the test binary");
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("the memory test finishes within 30 s")
        .expect("child output");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    print!("{stdout}");
    eprint!("{stderr}");
    assert!(out.status.success(), "the measuring child failed: {}", out.status);
    assert!(
        stdout.contains("1 passed"),
        "the child ran no test; was {name} renamed?"
    );
}

async fn measure() {
    let (Some(files), Some(before)) = (open_files_soft_limit(), rss_kib()) else {
        eprintln!("SKIPPED {TEST}: no /proc/self/limits or /proc/self/status on this system");
        return;
    };
    // A client and a server socket per stream, plus the runtime and std streams.
    let needed = 2 * u64::from(STREAMS) + 200;
    if files < needed {
        eprintln!("SKIPPED {TEST}: the open-file limit is {files}, below the {needed} it needs; raise `ulimit -n`");
        return;
    }
    watch_panics();

    let mut line = b"data: ".to_vec();
    line.resize(LIMIT - 1024, b'x');
    let line = Bytes::from(line);
    let head = Bytes::from_static(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n");
    let second = Duration::from_secs(1);
    let server = Hostile::start(move |n| {
        if n % 2 == 0 {
            vec![
                Step::Send(head.clone()),
                Step::Send(line.clone()),
                Step::Every(Bytes::from_static(b"x"), second),
            ]
        } else {
            vec![
                Step::Send(head.clone()),
                Step::Send(Bytes::from_static(b"event: hello\ndata: first\n\n")),
                Step::Every(Bytes::from_static(b"event: ping\n\n"), second),
            ]
        }
    })
    .await;
    let plan = plan_with(
        &format!("sse_max_event_bytes = {LIMIT}"),
        "sse",
        "timeout = \"60s\"\nfirst_event_timeout = \"60s\"\nread_timeout = \"60s\"",
    );

    let engine = Engine::start(plan, Some(&server.url()), 0, Instant::now(), 0)
        .await
        .expect("engine starts");
    engine.set_targets(Targets {
        users: vec![STREAMS],
        spawn_rate: 0.0,
    });
    let deadline = Instant::now() + Duration::from_secs(15);
    while engine.recorder().active_streams.get() < i64::from(STREAMS) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let open = engine.recorder().active_streams.get();
    // Every stream is open; give the clients a moment to read what the server sent,
    // sampling as they do.
    let mut peak = 0;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        peak = peak.max(rss_kib().unwrap_or(0));
    }
    engine.abort().await;
    let mut stats = EndpointStats::default();
    merge_into(&mut stats, engine.recorder().take());

    let growth = peak.saturating_sub(before);
    println!(
        "{STREAMS} hostile SSE streams ({open} open at once): VmRSS {} MiB -> {} MiB, growth {} MiB = {} KiB per stream \
         (client and in-process server; sse_max_event_bytes {} KiB)",
        before / 1024,
        peak / 1024,
        growth / 1024,
        growth / u64::from(STREAMS),
        LIMIT / 1024,
    );
    assert_eq!(open, i64::from(STREAMS), "every stream was open at once");
    assert_eq!(stats.counts.failures, 0, "no stream failed: {:?}", kinds(&stats));
    let cancelled = stats.outcomes.get(&(FailureKind::Cancelled.to_string(), String::new()));
    assert_eq!(
        cancelled.map(|c| c.count),
        Some(u64::from(STREAMS)),
        "each ended by the abort"
    );
    assert_eq!(server.requests(), u64::from(STREAMS));
    assert_eq!(engine_panics(), 0, "something panicked outside the test code");
    assert!(
        growth < BOUND_MIB * 1024,
        "RSS grew {} MiB, above {BOUND_MIB} MiB",
        growth / 1024
    );
}

/// The resident set size of this process, in KiB.
fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The soft limit on open files (`ulimit -n`).
fn open_files_soft_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    match line.split_whitespace().nth(3)? {
        "unlimited" => Some(u64::MAX),
        n => n.parse().ok(),
    }
}
