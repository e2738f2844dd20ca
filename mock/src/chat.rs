//! `POST /v1/chat-messages`: the chat-style apps. The mode comes from X-Mock-App-Mode
//! or `--chat-mode`:
//!
//! - `chat` (Dify's basic "chatbot"): `chunks` x `message` carrying `answer` pieces,
//!   then `message_end` with the token usage;
//! - `advanced-chat` (chatflow): see [`crate::chatflow`];
//! - `agent-chat` (agent): see [`crate::agent`]; streaming only, as in Dify.
//!
//! In blocking mode, chat and chatflow answer the whole message as one JSON object.
//! This file owns the route and the basic chat script; the message every mode answers
//! is [`crate::chat_message`].

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::agent::AgentChat;
use crate::blocking;
use crate::chat_message::{ChatMessage, ChatRequest};
use crate::chatflow::Chatflow;
use crate::config::ChatMode;
use crate::envelope::ApiError;
use crate::fault::Fault;
use crate::outcome::Outcome;
use crate::request::{ApiCall, ResponseMode};
use crate::sse::{self, Playback, Script};
use crate::state::MockState;
use crate::tasks::TaskKind;

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
mod tests {
    use super::*;
    use crate::answer;
    use crate::chat_message::tests::{message, names, play};

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
