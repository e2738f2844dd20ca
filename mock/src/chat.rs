//! `POST /v1/chat-messages`: the chat-style apps. The mode comes from X-Mock-App-Mode
//! or `--chat-mode`:
//!
//! - `chat` (Dify's basic "chatbot"): `chunks` x `message` carrying `answer` pieces,
//!   then `message_end` with the token usage;
//! - `advanced-chat` (chatflow): see [`crate::chatflow`];
//! - `agent-chat` (agent): see [`crate::agent`]; streaming only, as in Dify.
//!
//! In blocking mode, chat and chatflow answer the whole message as one JSON object.
//! This file owns the route, the request body, and the message every mode answers.

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::agent::AgentChat;
use crate::answer;
use crate::blocking::{self, Answer};
use crate::chatflow::Chatflow;
use crate::config::ChatMode;
use crate::envelope::ApiError;
use crate::fault::Fault;
use crate::ids;
use crate::outcome::Outcome;
use crate::request::{ApiCall, Payload, ResponseMode, require_user};
use crate::sse::{self, Playback, Script};
use crate::state::MockState;
use crate::tasks::TaskKind;

pub(crate) const INJECTED_ERROR: &str = "[barrage-mock] Error: injected by X-Mock-Fault";

/// Body of a chat message, as Dify's Service API takes it.
#[derive(Debug, Deserialize)]
pub(crate) struct ChatRequest {
    query: String,
    /// Required by Dify even when the app has no variables; a chatflow's Start node
    /// reports them.
    pub inputs: Map<String, Value>,
    #[serde(default)]
    response_mode: Option<ResponseMode>,
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

/// `POST /v1/chat-messages`.
pub(crate) async fn send(State(state): State<MockState>, request: Request) -> Response {
    state.counters().chat_message();
    let mut call = match ApiCall::<ChatRequest>::accept(&state, request, TaskKind::Chat).await {
        Ok(call) => call,
        Err(err) => return err.into_response(),
    };
    let mode = call.behaviour.chat_mode;
    let slot = call.slot.take();
    let message = ChatMessage::new(call);
    if message.call.body.response_mode.unwrap_or_default() == ResponseMode::Blocking {
        if mode == ChatMode::AgentChat {
            // Dify's agent generator raises this ValueError, which it answers as a 400.
            return ApiError::invalid_param("Agent Chat App does not support blocking mode").into_response();
        }
        let (behaviour, arrival) = (message.call.behaviour, message.call.arrival);
        let response = blocking::respond(&state, &behaviour, arrival, || message.blocking(&state, mode)).await;
        drop(slot);
        return response;
    }
    let task = state
        .tasks()
        .register(&message.task_id, TaskKind::Chat, &message.call.body.user);
    let playback = Playback::new(&state, message.call.behaviour, message.call.arrival, slot, task);
    match mode {
        ChatMode::Chat => sse::response(BasicChat(message), playback),
        ChatMode::AdvancedChat => sse::response(Chatflow::new(message, state.workflow_id()), playback),
        ChatMode::AgentChat => sse::response(AgentChat::new(message), playback),
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
            pieces_sent: 0,
        }
    }

    pub fn chunks(&self) -> u64 {
        u64::from(self.call.behaviour.chunks)
    }

    pub fn fault(&self) -> Fault {
        self.call.behaviour.fault
    }

    /// The next answer piece; counts it as sent.
    pub fn next_piece(&mut self) -> String {
        let piece = answer::chunk(self.pieces_sent);
        self.pieces_sent += 1;
        piece
    }

    /// Dify's `metadata`, with the usage of the pieces sent so far.
    pub fn metadata(&self) -> Value {
        let latency = self.call.arrival.elapsed().as_secs_f64();
        json!({
            "usage": answer::usage(self.pieces_sent, latency),
            "retriever_resources": [],
        })
    }

    /// The ids every chat event carries: `task_id`, `message_id`, `conversation_id`.
    pub fn ids(&self) -> Map<String, Value> {
        Map::from_iter([
            ("task_id".to_owned(), json!(self.task_id)),
            ("message_id".to_owned(), json!(self.message_id)),
            ("conversation_id".to_owned(), json!(self.conversation_id)),
        ])
    }

    /// `{event, id, task_id, message_id, conversation_id, ...fields}`.
    pub fn wrap(&self, event: &str, fields: Value) -> Value {
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
    pub fn message_end(&self) -> Value {
        self.wrap("message_end", json!({ "metadata": self.metadata(), "files": [] }))
    }

    /// Dify's `event: error`, which ends a stream in place of its terminal event.
    pub fn error(&self) -> Value {
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
    fn blocking(mut self, state: &MockState, mode: ChatMode) -> Result<Answer, ApiError> {
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

/// A basic chat app's stream: `message` x N, `message_end`.
struct BasicChat(ChatMessage);

impl BasicChat {
    /// Chat apps have no run status, so both `failed` and `error` end in an error.
    fn fails(&self) -> bool {
        matches!(self.0.fault(), Fault::Failed | Fault::Error)
    }
}

impl Script for BasicChat {
    fn len(&self) -> u64 {
        self.0.chunks() + 1
    }

    fn event(&mut self, index: u64) -> Value {
        let message = &mut self.0;
        if index < message.chunks() {
            let answer = message.next_piece();
            return message.wrap("message", json!({ "answer": answer, "created_at": message.created_at }));
        }
        if self.fails() {
            return self.0.error();
        }
        self.0.message_end()
    }

    fn outcome(&self) -> Outcome {
        if self.fails() {
            Outcome::ErrorEvent
        } else {
            Outcome::Succeeded
        }
    }

    fn stopped(&mut self) -> Vec<Value> {
        vec![self.0.message_end()]
    }

    fn ids(&self) -> Map<String, Value> {
        self.0.ids()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::Behaviour;
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

    #[test]
    fn messages_then_message_end() {
        let events = play(&mut BasicChat(message(3, Fault::None, Some("conv-1"))));
        assert_eq!(names(&events), ["message", "message", "message", "message_end"]);
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
        let mut failing = BasicChat(message(0, Fault::Failed, Some("")));
        assert_eq!(failing.outcome(), Outcome::ErrorEvent);
        let events = play(&mut failing);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["event"], "error");
        assert_eq!(events[0]["status"], 400);
        let started = play(&mut BasicChat(message(1, Fault::None, None)));
        assert_eq!(started[0]["conversation_id"].as_str().unwrap().len(), 36);
    }

    #[test]
    fn stopping_reports_the_pieces_sent() {
        let mut chat = BasicChat(message(5, Fault::None, None));
        chat.event(0);
        let ending = chat.stopped();
        assert_eq!(names(&ending), ["message_end"]);
        assert_eq!(ending[0]["metadata"]["usage"]["completion_tokens"], 1);
    }
}
