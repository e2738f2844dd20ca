//! The chatflow script (`advanced-chat` apps on `POST /v1/chat-messages`): a workflow
//! run, Start then Answer, whose Answer node streams the message. With `chunks` = N
//! (N + 7 events):
//!
//! `workflow_started`, `node_started`(start), `node_finished`(start), N x `message`,
//! `node_started`(answer), `node_finished`(answer), `workflow_finished`, `message_end`.
//!
//! `workflow_finished` comes *before* `message_end`: that is what dify-api sends (its
//! advanced-chat task pipeline yields `workflow_finished`, then publishes the
//! message-end event it answers with `message_end`; the Service API docs' example
//! stream ends the same way). A client should count a chatflow as succeeded once it has
//! both, in this order. A failed run ends `workflow_finished` (status `failed`) then
//! `event: error`; a stopped one `workflow_finished` (status `stopped`) then
//! `message_end`. Every event also carries `conversation_id`, `message_id` and
//! `created_at`, as Dify adds them to each chatflow event.

use serde_json::{Map, Value, json};

use crate::answer;
use crate::chat_message::ChatMessage;
use crate::fault::Fault;
use crate::outcome::Outcome;
use crate::run::{Node, RunEvents, RunStatus};
use crate::sse::Script;

/// Events before the first `message`: workflow_started, start node started/finished.
const EVENTS_BEFORE_MESSAGES: u64 = 3;
/// The variable the Answer node streams, as `from_variable_selector` names it.
const STREAMED_VARIABLE: [&str; 2] = ["llm", "text"];

pub(crate) struct Chatflow {
    message: ChatMessage,
    run: RunEvents,
    answer: String,
}

impl Chatflow {
    pub(crate) fn new(message: ChatMessage, workflow_id: &str) -> Self {
        let run = RunEvents::new(
            workflow_id.to_owned(),
            message.task_id.clone(),
            message.call.arrival,
            Node::Answer,
        );
        Self {
            message,
            run,
            answer: String::new(),
        }
    }

    /// Adds the fields Dify adds to every chatflow event.
    fn chatflow_event(&self, mut event: Value) -> Value {
        if let Value::Object(fields) = &mut event {
            fields.insert("conversation_id".into(), json!(self.message.conversation_id));
            fields.insert("message_id".into(), json!(self.message.message_id));
            fields.insert("created_at".into(), json!(self.message.created_at));
        }
        event
    }

    fn workflow_finished(&self, status: RunStatus) -> Value {
        let data = self.run.finished(
            status,
            json!({ "answer": self.answer }),
            answer::total_tokens(self.message.pieces_sent),
        );
        self.chatflow_event(self.run.wrap("workflow_finished", data))
    }

    fn message(&mut self) -> Value {
        let piece = self.message.next_piece();
        self.answer.push_str(&piece);
        let event = self.message.wrap(
            "message",
            json!({ "answer": piece, "from_variable_selector": STREAMED_VARIABLE }),
        );
        self.chatflow_event(event)
    }
}

impl Script for Chatflow {
    fn len(&self) -> u64 {
        let ending = if self.message.fault() == Fault::Error { 1 } else { 2 };
        EVENTS_BEFORE_MESSAGES + self.message.chunks() + 2 + ending
    }

    fn event(&mut self, index: u64) -> Value {
        let messages_end = EVENTS_BEFORE_MESSAGES + self.message.chunks();
        let inputs = Value::Object(self.message.call.body.inputs.clone());
        let event = match index {
            0 => self.run.started(&self.message.call.body.inputs),
            1 => self.run.node(true, false, inputs),
            2 => self.run.node(true, true, inputs),
            i if i < messages_end => return self.message(),
            i if i == messages_end => self.run.node(false, false, json!({ "answer": self.answer })),
            i if i == messages_end + 1 => self.run.node(false, true, json!({ "answer": self.answer })),
            _ => {
                return match (self.message.fault(), index == messages_end + 2) {
                    (Fault::Error, _) => self.message.error(),
                    (Fault::Failed, true) => self.workflow_finished(RunStatus::Failed),
                    (Fault::Failed, false) => self.message.error(),
                    (_, true) => self.workflow_finished(RunStatus::Succeeded),
                    (_, false) => self.chatflow_event(self.message.message_end()),
                };
            }
        };
        self.chatflow_event(event)
    }

    fn outcome(&self) -> Outcome {
        match self.message.fault() {
            Fault::Error => Outcome::ErrorEvent,
            Fault::Failed => Outcome::FailedStatus,
            _ => Outcome::Succeeded,
        }
    }

    fn ending_len(&self) -> u64 {
        2
    }

    fn stopped(&mut self) -> Vec<Value> {
        vec![
            self.workflow_finished(RunStatus::Stopped),
            self.chatflow_event(self.message.message_end()),
        ]
    }

    fn ids(&self) -> Map<String, Value> {
        let mut ids = self.message.ids();
        ids.insert("workflow_run_id".into(), json!(self.run.run_id));
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat_message::tests::{message, names, play};

    #[test]
    fn sequence_matches_dify() {
        let mut flow = Chatflow::new(message(2, Fault::None, Some("conv-1")), "wf");
        let events = play(&mut flow);
        assert_eq!(
            names(&events),
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
        for e in &events {
            assert_eq!(e["conversation_id"], "conv-1");
            assert_eq!(e["message_id"], events[3]["message_id"]);
            assert_eq!(e["task_id"], events[0]["task_id"]);
            assert!(e["created_at"].is_u64());
        }
        assert_eq!(events[0]["data"]["inputs"]["topic"], "rust");
        assert_eq!(events[5]["data"]["node_type"], "answer");
        let finished = &events[7]["data"];
        assert_eq!(finished["status"], "succeeded");
        assert_eq!(finished["outputs"]["answer"], "Barrage is");
        assert_eq!(finished["total_tokens"], answer::PROMPT_TOKENS + 2);
        assert_eq!(events[8]["metadata"]["usage"]["total_tokens"], finished["total_tokens"]);
        assert_eq!(flow.outcome(), Outcome::Succeeded);
    }

    #[test]
    fn failures_end_like_difys() {
        let mut failed = Chatflow::new(message(1, Fault::Failed, None), "wf");
        let events = play(&mut failed);
        let tail: Vec<&str> = names(&events).into_iter().rev().take(2).collect();
        assert_eq!(tail, ["error", "workflow_finished"]);
        assert_eq!(events[events.len() - 2]["data"]["status"], "failed");
        assert_eq!(failed.outcome(), Outcome::FailedStatus);

        let mut errored = Chatflow::new(message(1, Fault::Error, None), "wf");
        let events = play(&mut errored);
        assert_eq!(events.len(), 7);
        assert_eq!(events.last().unwrap()["event"], "error");

        let mut stopped = Chatflow::new(message(3, Fault::None, None), "wf");
        stopped.event(0);
        let ending = stopped.stopped();
        assert_eq!(names(&ending), ["workflow_finished", "message_end"]);
        assert_eq!(ending[0]["data"]["status"], "stopped");
    }
}
