//! Ground truth under the conditions a load test creates: hang-ups and concurrency.

use barrage_mock::Outcome;
use serde_json::json;

use crate::support::{Mock, assert_one_outcome_per_request, fast_config};

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

#[tokio::test]
async fn reported_elapsed_time_and_tokens_are_summed_exactly() {
    let mock = Mock::start(fast_config()).await;
    let mut elapsed_us = 0;
    let mut tokens = 0;
    for chunks in ["0", "3", "7"] {
        let response = mock
            .post(
                "/v1/workflows/run",
                &[("x-mock-chunks", chunks), ("x-mock-first-event-delay-ms", "10")],
                streaming(),
            )
            .await;
        let events = response.into_sse().collect().await;
        let last = events.last().unwrap();
        let data = &last.json()["data"];
        let elapsed = data["elapsed_time"].as_f64().unwrap();
        // Measured by the mock from arrival to writing: inside what the client saw.
        assert!(elapsed >= 0.010, "{elapsed}");
        assert!(elapsed <= last.at.as_secs_f64(), "{elapsed} > {:?}", last.at);
        elapsed_us += (elapsed * 1e6).round() as u64;
        tokens += data["total_tokens"].as_u64().unwrap();
        assert_eq!(data["total_tokens"], 12 + chunks.parse::<u64>().unwrap());
    }
    let (body, _) = mock
        .post("/v1/workflows/run", &[], json!({"inputs": {}, "user": "u"}))
        .await
        .json()
        .await;
    elapsed_us += (body["data"]["elapsed_time"].as_f64().unwrap() * 1e6).round() as u64;
    tokens += body["data"]["total_tokens"].as_u64().unwrap();

    let truth = mock.truth();
    assert_eq!(truth.workflow_finished, 4);
    assert_eq!(truth.workflow_elapsed_us, elapsed_us);
    assert_eq!(truth.workflow_total_tokens, tokens);
    assert_eq!(truth.message_end, 0);
    assert_one_outcome_per_request(&truth);
}

#[tokio::test]
async fn every_request_gets_exactly_one_outcome() {
    let mock = Mock::start(fast_config()).await;
    let chat = json!({"inputs": {}, "query": "q", "response_mode": "streaming", "user": "u"});
    mock.post("/v1/chat-messages", &[], chat.clone())
        .await
        .into_sse()
        .collect()
        .await;
    mock.post("/v1/chat-messages", &[("x-mock-fault", "error")], chat.clone())
        .await
        .into_sse()
        .collect()
        .await;
    mock.post("/v1/nowhere", &[], chat.clone()).await.json().await;
    let mut hung = mock
        .post("/v1/chat-messages", &[("x-mock-first-event-delay-ms", "60000")], chat)
        .await
        .into_sse();
    tokio::time::timeout(std::time::Duration::from_millis(1), hung.next())
        .await
        .unwrap_err();
    hung.hang_up();
    // A blocking call abandoned while the mock is still waiting to answer it.
    let addr = mock.addr;
    let waiting = tokio::spawn(async move {
        crate::support::send_to(
            addr,
            http::Method::POST,
            "/v1/workflows/run",
            &[("x-mock-first-event-delay-ms", "60000")],
            Some(json!({"inputs": {}, "user": "u"})),
        )
        .await
    });
    mock.wait_until(|t| t.requests == 5).await;
    waiting.abort();

    let truth = mock.wait_until(|t| t.outcomes.values().sum::<u64>() == 5).await;
    assert_eq!(truth.outcome(Outcome::Succeeded), 1);
    assert_eq!(truth.outcome(Outcome::ErrorEvent), 1);
    assert_eq!(truth.outcome(Outcome::Http4xx), 1);
    assert_eq!(truth.outcome(Outcome::Aborted), 2);
    assert_one_outcome_per_request(&truth);
}
