//! One chat message being answered ([`ChatMessage`]) and the body that asked for it
//! ([`ChatRequest`]): the ids, answer pieces, `message_end` and `error` events every chat
//! mode (basic chat, chatflow, agent) streams, and the blocking answer.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::answer;
use crate::blocking::Answer;
use crate::config::ChatMode;
use crate::envelope::ApiError;
use crate::fault::Fault;
use crate::ids;
use crate::outcome::Outcome;
use crate::request::{ApiCall, Payload, ResponseMode, require_user};
use crate::state::MockState;

pub(crate) const INJECTED_ERROR: &str = "[barrage-mock] Error: injected by X-Mock-Fault";

/// Body of a chat message, as Dify's Service API takes it.
#[derive(Debug, Deserialize)]
pub(crate) struct ChatRequest {
    query: String,
    /// Required by Dify even when the app has no variables; a chatflow's Start node
    /// reports them.
    pub inputs: Map<String, Value>,
    #[serde(default)]
    pub(crate) response_mode: Option<ResponseMode>,
    pub user: String,
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

/// One chat message being answered: its ids, and the answer pieces sent so far.
pub(crate) struct ChatMessage {
    pub call: ApiCall<ChatRequest>,
    pub task_id: String,
    pub message_id: String,
    pub conversation_id: String,
    pub created_at: u64,
    /// Answer pieces (`message`/`agent_message` events) sent so far: the completion
    /// tokens `message_end` reports.
    pub pieces_sent: u64,
}

impl ChatMessage {
    pub(crate) fn new(call: ApiCall<ChatRequest>) -> Self {
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
            pieces_sent: 0,
        }
    }

    pub(crate) fn chunks(&self) -> u64 {
        u64::from(self.call.behaviour.chunks)
    }

    pub(crate) fn fault(&self) -> Fault {
        self.call.behaviour.fault
    }

    /// The next answer piece; counts it as sent.
    pub(crate) fn next_piece(&mut self) -> String {
        let piece = answer::chunk(self.pieces_sent);
        self.pieces_sent += 1;
        piece
    }

    /// Dify's `metadata`, with the usage of the pieces sent so far.
    pub(crate) fn metadata(&self) -> Value {
        let latency = self.call.arrival.elapsed().as_secs_f64();
        json!({
            "usage": answer::usage(self.pieces_sent, latency),
            "retriever_resources": [],
        })
    }

    /// The ids every chat event carries: `task_id`, `message_id`, `conversation_id`.
    pub(crate) fn ids(&self) -> Map<String, Value> {
        Map::from_iter([
            ("task_id".to_owned(), json!(self.task_id)),
            ("message_id".to_owned(), json!(self.message_id)),
            ("conversation_id".to_owned(), json!(self.conversation_id)),
        ])
    }

    /// `{event, id, task_id, message_id, conversation_id, ...fields}`.
    pub(crate) fn wrap(&self, event: &str, fields: Value) -> Value {
        let mut value = Map::from_iter([
            ("event".to_owned(), json!(event)),
            ("id".to_owned(), json!(self.message_id)),
        ]);
        value.extend(self.ids());
        if let Value::Object(extra) = fields {
            value.extend(extra);
        }
        Value::Object(value)
    }

    /// `message_end`, reporting the usage of the pieces sent.
    pub(crate) fn message_end(&self) -> Value {
        self.wrap("message_end", json!({ "metadata": self.metadata(), "files": [] }))
    }

    /// Dify's `event: error`, which ends a stream in place of its terminal event.
    pub(crate) fn error(&self) -> Value {
        json!({
            "event": "error",
            "task_id": self.task_id,
            "message_id": self.message_id,
            "conversation_id": self.conversation_id,
            "status": 400,
            "code": "completion_request_error",
            "message": INJECTED_ERROR,
        })
    }

    /// The blocking answer: the whole message. An injected `error` (or, for a basic
    /// chat, `failed`) answers 400 `completion_request_error`; a chatflow's `failed`
    /// does too (its run failed, so there is no message to answer).
    pub(crate) fn blocking(mut self, state: &MockState, mode: ChatMode) -> Result<Answer, ApiError> {
        if matches!(self.fault(), Fault::Error | Fault::Failed) {
            return Err(ApiError::completion_request_error(INJECTED_ERROR));
        }
        let answer: String = (0..self.chunks()).map(|_| self.next_piece()).collect();
        let metadata = self.metadata();
        state
            .counters()
            .message_result(metadata["usage"]["total_tokens"].as_u64().unwrap_or(0));
        Ok(Answer {
            body: json!({
                "event": "message",
                "task_id": self.task_id,
                "id": self.message_id,
                "message_id": self.message_id,
                "conversation_id": self.conversation_id,
                "mode": mode.name(),
                "answer": answer,
                "metadata": metadata,
                "created_at": self.created_at,
            }),
            outcome: Outcome::Succeeded,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::Behaviour;
    use crate::sse::Script;
    use tokio::time::Instant;

    pub(crate) fn message(chunks: u32, fault: Fault, conversation_id: Option<&str>) -> ChatMessage {
        ChatMessage::new(ApiCall {
            arrival: Instant::now(),
            behaviour: Behaviour {
                chunks,
                fault,
                ..Behaviour::default()
            },
            body: ChatRequest {
                query: "hello".into(),
                inputs: Map::from_iter([("topic".to_owned(), json!("rust"))]),
                response_mode: Some(ResponseMode::Streaming),
                user: "u".into(),
                conversation_id: conversation_id.map(str::to_owned),
            },
            slot: None,
        })
    }

    pub(crate) fn play(script: &mut impl Script) -> Vec<Value> {
        (0..script.len()).map(|i| script.event(i)).collect()
    }

    pub(crate) fn names(events: &[Value]) -> Vec<&str> {
        events.iter().map(|e| e["event"].as_str().unwrap()).collect()
    }
}
