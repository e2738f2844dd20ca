//! `POST /v1/chat-messages`: a chat app (Dify's basic "chatbot" mode) answering with
//! `chunks` x `message` events carrying `answer` pieces, then `message_end` with the
//! token usage; in blocking mode, the whole message as one JSON object.

use axum::Json;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::time::sleep_until;

use crate::answer;
use crate::config::Fault;
use crate::envelope::ApiError;
use crate::ids;
use crate::request::{ApiCall, Payload, ResponseMode, require_user};
use crate::sse::{self, Script, after};
use crate::state::MockState;
use crate::truth::StreamGuard;

const INJECTED_ERROR: &str = "[barrage-mock] Error: injected by X-Mock-Fault";

/// Body of a chat message, as Dify's Service API takes it.
#[derive(Debug, Deserialize)]
pub(crate) struct ChatRequest {
    query: String,
    /// Required by Dify even when the app has no variables; checked, then unused.
    #[serde(rename = "inputs")]
    _inputs: Map<String, Value>,
    #[serde(default)]
    response_mode: Option<ResponseMode>,
    user: String,
    /// Continue this conversation; absent or empty starts a new one.
    #[serde(default)]
    conversation_id: Option<String>,
}

impl Payload for ChatRequest {
    fn check(&self) -> Result<(), ApiError> {
        require_user(&self.user)?;
        if self.query.trim().is_empty() {
            return Err(ApiError::invalid_param("query is required and must not be empty"));
        }
        Ok(())
    }
}

/// `POST /v1/chat-messages`.
pub(crate) async fn send(State(state): State<MockState>, request: Request) -> Response {
    state.counters().chat_message();
    let call = match ApiCall::<ChatRequest>::accept(&state, request).await {
        Ok(call) => call,
        Err(err) => return err.into_response(),
    };
    let mode = call.body.response_mode.unwrap_or_default();
    let message = ChatMessage::new(call);
    match mode {
        ResponseMode::Streaming => {
            let guard = StreamGuard::start(state.counters().clone());
            let (behaviour, arrival) = (message.call.behaviour, message.call.arrival);
            sse::response(message, &behaviour, arrival, guard)
        }
        ResponseMode::Blocking => blocking(&state, message).await,
    }
}

/// Blocking mode: the whole message once the stream would have delivered its last
/// chunk. Counted only if the client was still there to be answered.
async fn blocking(state: &MockState, message: ChatMessage) -> Response {
    let behaviour = message.call.behaviour;
    sleep_until(after(message.call.arrival, behaviour.blocking_duration())).await;
    if message.fails() {
        return ApiError::completion_request_error(INJECTED_ERROR).into_response();
    }
    let answer: String = (0..message.chunks()).map(answer::chunk).collect();
    let body = json!({
        "event": "message",
        "task_id": message.task_id,
        "id": message.message_id,
        "message_id": message.message_id,
        "conversation_id": message.conversation_id,
        "mode": "chat",
        "answer": answer,
        "metadata": message.metadata(),
        "created_at": message.created_at,
    });
    state.counters().blocking_completed();
    Json(body).into_response()
}

/// One chat message being answered.
struct ChatMessage {
    call: ApiCall<ChatRequest>,
    task_id: String,
    message_id: String,
    conversation_id: String,
    created_at: u64,
}

impl ChatMessage {
    fn new(call: ApiCall<ChatRequest>) -> Self {
        let conversation_id = call
            .body
            .conversation_id
            .clone()
            .filter(|id| !id.is_empty())
            .unwrap_or_else(ids::uuid);
        Self {
            call,
            task_id: ids::uuid(),
            message_id: ids::uuid(),
            conversation_id,
            created_at: ids::unix_now(),
        }
    }

    fn chunks(&self) -> u64 {
        u64::from(self.call.behaviour.chunks)
    }

    /// Chat apps have no run status, so both `failed` and `error` end in an error.
    fn fails(&self) -> bool {
        matches!(self.call.behaviour.fault, Fault::Failed | Fault::Error)
    }

    fn metadata(&self) -> Value {
        let latency = self.call.arrival.elapsed().as_secs_f64();
        json!({
            "usage": answer::usage(self.chunks(), latency),
            "retriever_resources": [],
        })
    }

    /// Wraps the event-specific `fields` in the ids every chat event carries.
    fn wrap(&self, event: &str, fields: Value) -> Value {
        let mut value = json!({
            "event": event,
            "task_id": self.task_id,
            "id": self.message_id,
            "message_id": self.message_id,
            "conversation_id": self.conversation_id,
        });
        if let (Value::Object(all), Value::Object(extra)) = (&mut value, fields) {
            all.extend(extra);
        }
        value
    }
}

impl Script for ChatMessage {
    fn len(&self) -> u64 {
        self.chunks() + 1
    }

    fn event(&mut self, index: u64) -> Value {
        if index < self.chunks() {
            return self.wrap(
                "message",
                json!({ "answer": answer::chunk(index), "created_at": self.created_at }),
            );
        }
        if self.fails() {
            return json!({
                "event": "error",
                "task_id": self.task_id,
                "message_id": self.message_id,
                "status": 400,
                "code": "completion_request_error",
                "message": INJECTED_ERROR,
            });
        }
        self.wrap("message_end", json!({ "metadata": self.metadata(), "files": [] }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Behaviour;
    use std::time::Duration;
    use tokio::time::Instant;

    fn message(chunks: u32, fault: Fault, conversation_id: Option<&str>) -> ChatMessage {
        ChatMessage::new(ApiCall {
            arrival: Instant::now(),
            behaviour: Behaviour {
                first_event_delay: Duration::ZERO,
                chunks,
                chunk_interval: Duration::ZERO,
                ping_interval: None,
                fault,
            },
            body: ChatRequest {
                query: "hello".into(),
                _inputs: Map::new(),
                response_mode: Some(ResponseMode::Streaming),
                user: "u".into(),
                conversation_id: conversation_id.map(str::to_owned),
            },
        })
    }

    fn play(mut message: ChatMessage) -> Vec<Value> {
        (0..Script::len(&message))
            .map(|i| Script::event(&mut message, i))
            .collect()
    }

    #[test]
    fn messages_then_message_end() {
        let events = play(message(3, Fault::None, Some("conv-1")));
        let names: Vec<&str> = events.iter().map(|e| e["event"].as_str().unwrap()).collect();
        assert_eq!(names, ["message", "message", "message", "message_end"]);
        let answer: String = events[..3].iter().map(|e| e["answer"].as_str().unwrap()).collect();
        assert_eq!(answer, "Barrage is streaming");
        for e in &events {
            assert_eq!(e["conversation_id"], "conv-1");
            assert_eq!(e["message_id"], events[0]["message_id"]);
        }
        assert_eq!(
            events[3]["metadata"]["usage"]["total_tokens"],
            answer::PROMPT_TOKENS + 3
        );
    }

    #[test]
    fn new_conversation_gets_an_id_and_faults_end_in_error() {
        let events = play(message(0, Fault::Failed, Some("")));
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["event"], "error");
        assert_eq!(events[0]["status"], 400);
        let started = play(message(1, Fault::None, None));
        assert_eq!(started[0]["conversation_id"].as_str().unwrap().len(), 36);
    }
}
