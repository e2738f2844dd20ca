//! The open model on a worker: arrivals fired in a burst each get a virtual user of
//! their own, within the in-flight cap, and every arrival due is started or dropped.
//! [`OpenTarget`] counts the streams it served and how many it held at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use barrage_common::arrival_process::ArrivalProcess;
use barrage_common::arrival_schedule::{Schedule, Segment};
use barrage_common::metrics::EndpointStats;
use barrage_common::plan::RunPlan;
use barrage_worker::arrivals::ArrivalPlan;
use barrage_worker::runner::Engine;

use crate::drive::{kinds, merge_into, watch_panics};

/// A target for the open model: `/login` answers after `login_delay`; `/stream` sends
/// an event stream whose first event comes 100 ms after the request. When `hold` is
/// set, each `/stream` request is held until `hold_for` are held at once (or 3 s
/// pass), so that the most it ever held shows how many ran together.
pub(crate) struct OpenTarget {
    pub addr: SocketAddr,
    pub streams: AtomicU64,
    held: AtomicU64,
    pub most_held: AtomicU64,
    pub hold: AtomicBool,
    hold_for: u64,
    released: tokio::sync::Notify,
    login_delay: Duration,
}

impl OpenTarget {
    pub(crate) async fn start(login_delay: Duration, hold_for: u64) -> Arc<OpenTarget> {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let target = Arc::new(OpenTarget {
            addr: listener.local_addr().expect("address"),
            streams: AtomicU64::new(0),
            held: AtomicU64::new(0),
            most_held: AtomicU64::new(0),
            hold: AtomicBool::new(false),
            hold_for,
            released: tokio::sync::Notify::new(),
            login_delay,
        });
        let t = target.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(t.clone().serve(tcp));
            }
        });
        target
    }

    async fn serve(self: Arc<Self>, mut tcp: TcpStream) {
        let mut buf = Vec::new();
        loop {
            let path = loop {
                if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..end]).to_string();
                    buf.drain(..end + 4);
                    break head.split(' ').nth(1).unwrap_or("").to_string();
                }
                let mut piece = [0u8; 4096];
                match tcp.read(&mut piece).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&piece[..n]),
                }
            };
            if path == "/login" {
                tokio::time::sleep(self.login_delay).await;
                let _ = tcp.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
                continue;
            }
            self.streams.fetch_add(1, SeqCst);
            if self.hold.load(SeqCst) {
                let released = self.released.notified();
                let now = self.held.fetch_add(1, SeqCst) + 1;
                self.most_held.fetch_max(now, SeqCst);
                if now >= self.hold_for {
                    self.released.notify_waiters();
                } else {
                    let _ = tokio::time::timeout(Duration::from_secs(3), released).await;
                }
                self.held.fetch_sub(1, SeqCst);
            }
            let body = "event: done\ndata: {}\n\n";
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: {}\r\n\r\n",
                body.len()
            );
            let _ = tcp.write_all(head.as_bytes()).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            let _ = tcp.write_all(body.as_bytes()).await;
        }
    }
}

/// An open-model plan: class `Open` with an optional `/login` on_start and an SSE task
/// `/stream` ending at `done`.
pub(crate) fn open_plan(on_start: bool, first_event_timeout: &str) -> Arc<RunPlan> {
    let login = if on_start {
        "[[users.on_start]]\nname = \"login\"\nmethod = \"GET\"\npath = \"/login\"\ntimeout = \"5s\"\n"
    } else {
        ""
    };
    let text = format!(
        r#"
[limits]
connect_timeout = "2s"

[[users]]
name = "Open"

{login}
[[users.tasks]]
name = "stream"
method = "GET"
path = "/stream"
kind = "sse"
terminal_event = "done"
first_event_timeout = "{first_event_timeout}"
timeout = "10s"
"#
    );
    let scenario = barrage_common::scenario::parse_str(&text, config::FileFormat::Toml, "open.toml", &|_| None)
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    Arc::new(scenario.plan)
}

/// Arrivals `from..until` of a schedule at `rate` per second, all this worker's.
pub(crate) fn arrivals(rate: f64, from: u64, until: Duration, max_in_flight: u32) -> ArrivalPlan {
    ArrivalPlan {
        schedule: Schedule::constant(rate),
        segment: Segment::new(0, 1, 1),
        max_in_flight,
        from_index: from,
        until: Some(until),
        process: ArrivalProcess::Constant,
        seed: 0,
        trace: None,
    }
}

/// Waits until the stream endpoint has `requests` requests and the engine `dropped`
/// drops (bounded), then stops the engine. Returns the stream endpoint's figures.
pub(crate) async fn collect(engine: &Engine, endpoint: usize, requests: u64, dropped: u64) -> EndpointStats {
    let mut stream = EndpointStats::default();
    let deadline = Instant::now() + Duration::from_secs(20);
    let done = |s: &EndpointStats| s.counts.requests >= requests && engine.recorder().dropped.load(SeqCst) >= dropped;
    while !done(&stream) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
        merge_into(&mut stream, endpoint_slots(engine, endpoint));
    }
    engine.stop(Duration::from_secs(5)).await;
    merge_into(&mut stream, endpoint_slots(engine, endpoint));
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_arrivals_gets_a_user_each_within_the_cap() {
    // One arrival leaves one idle user. Then a burst: 9 arrivals due at once, cap 4.
    // Each of the 4 started gets a user of its own (the idle one reserved, 3 new),
    // so the target holds 4 at once and never more; the other 5 are dropped.
    watch_panics();
    const CAP: u64 = 4;
    const BURST: u64 = 9;
    let target = OpenTarget::start(Duration::ZERO, CAP).await;
    let plan = open_plan(false, "5s");
    let endpoint = plan.classes[0].tasks[0].endpoint;
    let origin = Instant::now();
    let engine = Engine::start(plan, Some(&format!("http://{}", target.addr)), 0, origin, 0)
        .await
        .expect("engine starts");
    // Arrival 0, due at once: one user, idle once it is served.
    engine.set_arrivals(Some(arrivals(1.0, 0, Duration::from_millis(500), CAP as u32)));
    let mut stats = EndpointStats::default();
    let deadline = Instant::now() + Duration::from_secs(10);
    while stats.counts.requests < 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
        merge_into(&mut stats, endpoint_slots(&engine, endpoint));
    }
    assert_eq!(stats.counts.requests, 1, "the first arrival was served");
    // The burst: at a million per second, arrivals 1..=BURST were due long ago.
    target.hold.store(true, SeqCst);
    let until = Duration::from_secs_f64((BURST + 1) as f64 / 1e6);
    engine.set_arrivals(Some(arrivals(1e6, 1, until, CAP as u32)));
    let burst = collect(&engine, endpoint, CAP, BURST - CAP).await;
    let dropped = engine.recorder().dropped.load(SeqCst);
    assert_eq!(burst.counts.requests + dropped, BURST, "started + dropped = due");
    assert_eq!(burst.counts.failures, 0, "{:?}", kinds(&burst));
    assert_eq!(
        target.most_held.load(SeqCst),
        CAP,
        "the target held as many at once as the cap allows, and no more"
    );
    assert_eq!(
        target.streams.load(SeqCst),
        1 + burst.counts.requests,
        "streams the target saw vs ours"
    );
}

/// Everything recorded for `endpoint` since the last take, every address slot of it
/// (the recorder keeps `slot * endpoints + endpoint`; slot 0 is "no address").
fn endpoint_slots(engine: &Engine, endpoint: usize) -> Vec<EndpointStats> {
    let n = engine.recorder().endpoints();
    engine
        .recorder()
        .take()
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i % n == endpoint)
        .map(|(_, s)| s)
        .collect()
}
