//! Chat messages over the wire: `message` chunks then `message_end`, and blocking mode.

use std::time::Duration;

use serde_json::json;

use crate::support::{Mock, fast_config};

const CHAT: &str = "/v1/chat-messages";

#[tokio::test]
async fn stream_sends_answer_chunks_then_message_end() {
    let mock = Mock::start(fast_config()).await;
    let mut sse = mock
        .post(
            CHAT,
            &[("x-mock-chunks", "5"), ("x-mock-first-event-delay-ms", "15")],
            json!({
                "inputs": {}, "query": "hello", "response_mode": "streaming",
                "user": "u", "conversation_id": "conv-7"
            }),
        )
        .await
        .into_sse();
    let events = sse.collect().await;
    let names: Vec<&str> = events.iter().map(|e| e.name()).collect();
    assert_eq!(
        names,
        ["message"; 5]
            .iter()
            .chain(&["message_end"])
            .copied()
            .collect::<Vec<_>>()
    );
    assert!(events[0].at >= Duration::from_millis(15));

    let data: Vec<_> = events.iter().map(|e| e.data.clone().unwrap()).collect();
    for event in &data {
        assert_eq!(event["conversation_id"], "conv-7");
        assert_eq!(event["message_id"], data[0]["message_id"]);
        assert_eq!(event["task_id"], data[0]["task_id"]);
    }
    let answer: String = data[..5].iter().map(|e| e["answer"].as_str().unwrap()).collect();
    assert_eq!(answer, "Barrage is streaming a canned");
    assert_eq!(data[5]["metadata"]["usage"]["completion_tokens"], 5);
    assert!(data[5]["metadata"]["usage"]["total_tokens"].as_u64().unwrap() > 5);

    let truth = mock.truth();
    assert_eq!(truth.chat_messages, 1);
    assert_eq!(truth.workflow_runs, 0);
    assert_eq!(truth.streams_completed, 1);
    assert_eq!(truth.events_sent, 6);
    assert_eq!(truth.bytes_sent, sse.bytes as u64);
}

#[tokio::test]
async fn blocking_returns_the_whole_message() {
    let mock = Mock::start(fast_config()).await;
    let (body, _) = mock
        .post(
            CHAT,
            &[("x-mock-chunks", "2")],
            json!({"inputs": {}, "query": "hello", "response_mode": "blocking", "user": "u"}),
        )
        .await
        .json()
        .await;
    assert_eq!(body["event"], "message");
    assert_eq!(body["mode"], "chat");
    assert_eq!(body["answer"], "Barrage is");
    assert_eq!(body["id"], body["message_id"]);
    assert_eq!(body["conversation_id"].as_str().unwrap().len(), 36);
    assert_eq!(body["metadata"]["usage"]["completion_tokens"], 2);
    assert_eq!(mock.truth().blocking_completed, 1);
}

#[tokio::test]
async fn chat_requires_a_query() {
    let mock = Mock::start(fast_config()).await;
    let response = mock
        .post(
            CHAT,
            &[],
            json!({"inputs": {}, "user": "u", "response_mode": "streaming"}),
        )
        .await;
    assert_eq!(response.status(), 400);
    let (body, _) = response.json().await;
    assert_eq!(body["code"], "invalid_param");
    let truth = mock.truth();
    assert_eq!((truth.requests, truth.chat_messages, truth.streams_started), (1, 1, 0));
}
