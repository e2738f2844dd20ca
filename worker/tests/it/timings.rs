//! Where a stream's clocks start and stop: `stream_duration` ends at the verdict, and
//! an open-model arrival that starts late still gets its whole `first_event_timeout`
//! from the send.

use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use bytes::Bytes;

use barrage_common::metrics::Metric;
use barrage_worker::runner::Engine;

use crate::drive::{drive, kinds, plan, watch_panics};
use crate::open_model::{OpenTarget, arrivals, collect, open_plan};
use crate::server::{Hostile, Step};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_duration_ends_at_the_verdict_not_after_trailing_pings() {
    // The deciding event comes at once; then the target keeps the body open with pings
    // (drained, uncounted, for up to two seconds). The stream lasted until the verdict,
    // like the response time, not until the drain gave up.
    let server = Hostile::start(|_| {
        vec![
            Step::Send(Bytes::from_static(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n\
                  data: {\"event\": \"workflow_finished\", \"task_id\": \"t1\", \"data\": {\"status\": \"succeeded\"}}\n\n",
            )),
            Step::Every(Bytes::from_static(b"event: ping\n\n"), Duration::from_millis(50)),
        ]
    })
    .await;
    let stats = drive(plan("dify", ""), &server.url(), 1, 2).await;
    assert_eq!(stats.counts.failures, 0, "{:?}", kinds(&stats));
    let max = |m: Metric| stats.histogram(m).expect("recorded").max();
    // Headers to verdict is within request start to verdict.
    assert!(
        max(Metric::StreamDuration) <= max(Metric::ResponseTime),
        "stream_duration max {} µs vs response_time max {} µs",
        max(Metric::StreamDuration),
        max(Metric::ResponseTime)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_arrival_gets_its_whole_first_event_timeout_from_the_send() {
    // Each arrival gets a new user whose on_start (`/login`) takes 1.5 s: its request
    // goes out 1.5 s after it was due. The first event comes 100 ms after the send,
    // well within the 1 s first_event_timeout; counted from the due time it was
    // already over before the request was sent.
    watch_panics();
    let target = OpenTarget::start(Duration::from_millis(1500), 0).await;
    let plan = open_plan(true, "1s");
    let endpoint = plan.classes[0].tasks[0].endpoint;
    let engine = Engine::start(plan, Some(&format!("http://{}", target.addr)), 0, Instant::now(), 0)
        .await
        .expect("engine starts");
    // Arrivals 0 and 1, due at 0 s and 1 s.
    engine.set_arrivals(Some(arrivals(1.0, 0, Duration::from_millis(1500), 10)));
    let stats = collect(&engine, endpoint, 2, 0).await;
    assert_eq!(stats.counts.requests, 2, "{:?}", kinds(&stats));
    assert_eq!(stats.counts.failures, 0, "{:?}", kinds(&stats));
    assert_eq!(
        target.streams.load(SeqCst),
        stats.counts.requests,
        "streams the target served vs ours"
    );
    // Timed from the due time: the late start is in the latency.
    let ttfe_min = stats.histogram(Metric::Ttfe).expect("ttfe").min();
    assert!(ttfe_min >= 1_500_000, "ttfe from the due time: {ttfe_min} µs");
}
