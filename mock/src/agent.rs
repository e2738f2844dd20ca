//! The agent script (`agent-chat` apps on `POST /v1/chat-messages`), as Dify's agent
//! runner streams a run that uses no tool. With `chunks` = N (N + 3 events):
//!
//! `agent_thought` (position 1, empty), N x `agent_message`, `agent_thought` (the same
//! thought, now holding the answer), `message_end`.
//!
//! `failed` and `error` end with `event: error` after the last `agent_message`; a
//! stopped run ends with `message_end` at once.

use serde_json::{Map, Value, json};

use crate::chat_message::ChatMessage;
use crate::fault::Fault;
use crate::ids;
use crate::outcome::Outcome;
use crate::sse::Script;

pub(crate) struct AgentChat {
    message: ChatMessage,
    thought_id: String,
    answer: String,
}

impl AgentChat {
    pub(crate) fn new(message: ChatMessage) -> Self {
        Self {
            message,
            thought_id: ids::uuid(),
            answer: String::new(),
        }
    }

    /// Agent apps have no run status, so both `failed` and `error` end in an error.
    fn fails(&self) -> bool {
        matches!(self.message.fault(), Fault::Failed | Fault::Error)
    }

    fn thought(&self) -> Value {
        self.message.wrap(
            "agent_thought",
            json!({
                "id": self.thought_id,
                "position": 1,
                "thought": self.answer,
                "observation": "",
                "tool": "",
                "tool_labels": {},
                "tool_input": "",
                "created_at": self.message.created_at,
                "message_files": [],
            }),
        )
    }
}

impl Script for AgentChat {
    fn len(&self) -> u64 {
        let ending = if self.fails() { 1 } else { 2 };
        1 + self.message.chunks() + ending
    }

    fn event(&mut self, index: u64) -> Value {
        let chunks = self.message.chunks();
        match index {
            0 => self.thought(),
            i if i <= chunks => {
                let piece = self.message.next_piece();
                self.answer.push_str(&piece);
                self.message.wrap(
                    "agent_message",
                    json!({ "answer": piece, "created_at": self.message.created_at }),
                )
            }
            _ if self.fails() => self.message.error(),
            i if i == chunks + 1 => self.thought(),
            _ => self.message.message_end(),
        }
    }

    fn outcome(&self) -> Outcome {
        if self.fails() {
            Outcome::ErrorEvent
        } else {
            Outcome::Succeeded
        }
    }

    fn stopped(&mut self) -> Vec<Value> {
        vec![self.message.message_end()]
    }

    fn ids(&self) -> Map<String, Value> {
        self.message.ids()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answer;
    use crate::chat_message::tests::{message, names, play};

    #[test]
    fn thought_messages_thought_end() {
        let mut agent = AgentChat::new(message(2, Fault::None, None));
        let events = play(&mut agent);
        assert_eq!(
            names(&events),
            [
                "agent_thought",
                "agent_message",
                "agent_message",
                "agent_thought",
                "message_end"
            ]
        );
        assert_eq!(events[0]["id"], events[3]["id"]);
        assert_ne!(events[0]["id"], events[0]["message_id"]);
        assert_eq!(events[0]["thought"], "");
        assert_eq!(events[3]["thought"], "Barrage is");
        assert_eq!(events[1]["id"], events[1]["message_id"]);
        assert_eq!(
            events[4]["metadata"]["usage"]["total_tokens"],
            answer::PROMPT_TOKENS + 2
        );
        assert_eq!(agent.outcome(), Outcome::Succeeded);
    }

    #[test]
    fn errors_replace_the_ending() {
        let mut agent = AgentChat::new(message(1, Fault::Error, None));
        let events = play(&mut agent);
        assert_eq!(names(&events), ["agent_thought", "agent_message", "error"]);
        assert_eq!(agent.outcome(), Outcome::ErrorEvent);
    }
}
