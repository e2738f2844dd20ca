//! Chat messages over the wire: `message` chunks then `message_end`, and blocking mode.

use std::time::Duration;

use barrage_mock::{ChatMode, MockConfig};
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

fn streaming(conversation_id: &str) -> serde_json::Value {
    json!({
        "inputs": {"topic": "rust"}, "query": "hello", "response_mode": "streaming",
        "user": "u", "conversation_id": conversation_id
    })
}

#[tokio::test]
async fn chatflow_streams_a_workflow_around_its_messages() {
    let mock = Mock::start(fast_config()).await;
    let events = mock
        .post(
            CHAT,
            &[("x-mock-app-mode", "advanced-chat"), ("x-mock-chunks", "2")],
            streaming("conv-9"),
        )
        .await
        .into_sse()
        .collect()
        .await;
    let names: Vec<&str> = events.iter().map(|e| e.name()).collect();
    assert_eq!(
        names,
        [
            "workflow_started",
            "node_started",
            "node_finished",
            "message",
            "message",
            "node_started",
            "node_finished",
            "workflow_finished",
            "message_end",
        ]
    );
    for event in &events {
        let data = event.json();
        assert_eq!(data["conversation_id"], "conv-9");
        assert_eq!(data["task_id"], events[0].json()["task_id"]);
        assert_eq!(data["message_id"], events[3].json()["message_id"]);
    }
    let finished = &events[7].json()["data"];
    assert_eq!(finished["status"], "succeeded");
    assert_eq!(finished["outputs"]["answer"], "Barrage is");
    let tokens = finished["total_tokens"].as_u64().unwrap();
    assert_eq!(events[8].json()["metadata"]["usage"]["total_tokens"], tokens);

    let truth = mock.truth();
    assert_eq!(truth.chat_messages, 1);
    assert_eq!((truth.workflow_finished, truth.workflow_total_tokens), (1, tokens));
    assert_eq!((truth.message_end, truth.message_total_tokens), (1, tokens));
    assert_eq!(truth.outcome(barrage_mock::Outcome::Succeeded), 1);
}

#[tokio::test]
async fn chatflow_failures_end_with_workflow_finished_then_error() {
    let mock = Mock::start(MockConfig {
        chat_mode: ChatMode::AdvancedChat,
        ..fast_config()
    })
    .await;
    let events = mock
        .post(CHAT, &[("x-mock-fault", "failed")], streaming("c"))
        .await
        .into_sse()
        .collect()
        .await;
    let tail: Vec<&str> = events[events.len() - 2..].iter().map(|e| e.name()).collect();
    assert_eq!(tail, ["workflow_finished", "error"]);
    assert_eq!(events[events.len() - 2].json()["data"]["status"], "failed");
    assert_eq!(mock.truth().outcome(barrage_mock::Outcome::FailedStatus), 1);
}

#[tokio::test]
async fn agent_streams_thoughts_and_messages_and_refuses_blocking() {
    let mock = Mock::start(fast_config()).await;
    let events = mock
        .post(
            CHAT,
            &[("x-mock-app-mode", "agent-chat"), ("x-mock-chunks", "3")],
            streaming("c"),
        )
        .await
        .into_sse()
        .collect()
        .await;
    let names: Vec<&str> = events.iter().map(|e| e.name()).collect();
    assert_eq!(
        names,
        [
            "agent_thought",
            "agent_message",
            "agent_message",
            "agent_message",
            "agent_thought",
            "message_end"
        ]
    );
    assert_eq!(events[4].json()["thought"], "Barrage is streaming");

    let response = mock
        .post(
            CHAT,
            &[("x-mock-app-mode", "agent-chat")],
            json!({"inputs": {}, "query": "q", "response_mode": "blocking", "user": "u"}),
        )
        .await;
    assert_eq!(response.status(), 400);
    let (body, _) = response.json().await;
    assert_eq!(body["code"], "invalid_param");
    assert_eq!(body["message"], "Agent Chat App does not support blocking mode");
    let truth = mock.truth();
    assert_eq!(truth.outcome(barrage_mock::Outcome::Succeeded), 1);
    assert_eq!(truth.outcome(barrage_mock::Outcome::Http4xx), 1);
}

#[tokio::test]
async fn chatflow_blocking_reports_its_mode() {
    let mock = Mock::start(fast_config()).await;
    let (body, _) = mock
        .post(
            CHAT,
            &[("x-mock-app-mode", "advanced-chat")],
            json!({"inputs": {}, "query": "q", "response_mode": "blocking", "user": "u"}),
        )
        .await
        .json()
        .await;
    assert_eq!(body["mode"], "advanced-chat");
    assert_eq!(body["answer"], "Barrage is streaming");
    assert_eq!(mock.truth().message_total_tokens, 12 + 3);
}

#[tokio::test]
async fn a_route_of_the_wrong_app_mode_is_refused() {
    let mock = Mock::start(fast_config()).await;
    let response = mock
        .post(
            CHAT,
            &[("x-mock-app-mode", "workflow")],
            json!({"inputs": {}, "query": "q", "user": "u"}),
        )
        .await;
    assert_eq!(response.status(), 400);
    assert_eq!(response.json().await.0["code"], "not_chat_app");
    let response = mock
        .post(
            "/v1/workflows/run",
            &[("x-mock-app-mode", "chat")],
            json!({"inputs": {}, "user": "u"}),
        )
        .await;
    assert_eq!(response.status(), 400);
    assert_eq!(response.json().await.0["code"], "not_workflow_app");
    assert_eq!(mock.truth().outcome(barrage_mock::Outcome::Http4xx), 2);
}
