//! Ground truth under the conditions a load test creates: hang-ups and concurrency.

use serde_json::json;

use crate::support::{Mock, fast_config};

fn streaming() -> serde_json::Value {
    json!({"inputs": {}, "response_mode": "streaming", "user": "u"})
}

#[tokio::test]
async fn hanging_up_mid_stream_counts_an_abort() {
    let mock = Mock::start(fast_config()).await;
    let mut sse = mock
        .post(
            "/v1/workflows/run",
            &[("x-mock-chunks", "1000"), ("x-mock-chunk-interval-ms", "2")],
            streaming(),
        )
        .await
        .into_sse();
    let first = sse.next().await.unwrap();
    assert_eq!(first.name(), "workflow_started");
    sse.next().await.unwrap();
    sse.hang_up();

    let truth = mock
        .wait_until(|t| t.streams_aborted == 1 && t.active_streams == 0)
        .await;
    assert_eq!(truth.streams_started, 1);
    assert_eq!(truth.streams_completed, 0);
    assert!(truth.events_sent >= 2 && truth.events_sent < 1006, "{truth:?}");
}

#[tokio::test]
async fn concurrent_streams_peak_and_drain() {
    const STREAMS: usize = 5;
    let mock = Mock::start(fast_config()).await;
    let mut open = Vec::new();
    for _ in 0..STREAMS {
        // Headers arrive at once; the first event is a long way off, so all five are
        // open together until we hang up.
        let response = mock
            .post(
                "/v1/chat-messages",
                &[("x-mock-first-event-delay-ms", "60000")],
                json!({"inputs": {}, "query": "q", "response_mode": "streaming", "user": "u"}),
            )
            .await;
        assert_eq!(response.status(), 200);
        open.push(response.into_sse());
    }
    let truth = mock.wait_until(|t| t.active_streams == STREAMS as u64).await;
    assert_eq!(truth.max_concurrent_streams, STREAMS as u64);

    for sse in open {
        sse.hang_up();
    }
    let truth = mock.wait_until(|t| t.active_streams == 0).await;
    assert_eq!(truth.streams_aborted, STREAMS as u64);
    assert_eq!(truth.max_concurrent_streams, STREAMS as u64);
    assert_eq!(truth.events_sent, 0);
    assert_eq!(truth.requests, STREAMS as u64);
}
