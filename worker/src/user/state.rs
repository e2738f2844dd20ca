//! What a user carries from one request to the next ([`UserState`]): its iteration,
//! Dify conversation, pool cursors, captured variables and rendering buffers.

use barrage_common::plan::{SseSpec, Task, TaskKind};

use super::sample::Sample;

/// What a user carries from one request to the next.
#[derive(Default)]
pub(super) struct UserState {
    /// Tasks this user has finished, for `{{iteration}}`.
    pub(super) iteration: u64,
    /// Dify conversation this (chat) user is in, and its turns so far.
    pub(super) conversation_id: String,
    /// Turns taken in `conversation_id`.
    pub(super) turns: u32,
    /// Next index per sequential pool.
    pub(super) sequence: Vec<usize>,
    /// The Authorization header of the last request, for a Dify task stop.
    pub(super) last_auth: Option<String>,
    /// Values captured from responses (`capture`), by variable name.
    pub(super) vars: Vec<(String, String)>,
    /// CSV pools, by row group: the row this request took, and the sequential cursor.
    pub(super) group_rows: Vec<Option<usize>>,
    /// Plain pools: the entry this request took, so `{{question}}` twice in one
    /// request is the same question (and a sequential cursor moves once).
    pub(super) pool_picks: Vec<Option<usize>>,
    /// CSV pools, by row group: the sequential cursor.
    pub(super) group_sequence: Vec<usize>,
    /// Rendering buffers, kept for their capacity: no allocation per request.
    pub(super) value_buf: String,
    /// The request body's rendering buffer, kept like `value_buf`.
    pub(super) body_buf: String,
    /// The trace line this arrival replays: its inputs are `{{name}}` values.
    pub(super) trace_line: Option<std::sync::Arc<barrage_common::arrival_trace::TraceLine>>,
}

impl UserState {
    /// Takes the values captured from a response into the user's variables (a
    /// variable captured again takes the new value).
    pub(super) fn keep_captures(&mut self, captures: Vec<(String, String)>) {
        for (name, value) in captures {
            match self.vars.iter_mut().find(|(n, _)| *n == name) {
                Some((_, v)) => *v = value,
                None => self.vars.push((name, value)),
            }
        }
    }
}

/// Chat users continue their conversation for `conversation_turns` turns.
pub(super) fn track_conversation(task: &Task, state: &mut UserState, sample: &Sample, ok: bool) {
    let TaskKind::Sse(SseSpec { dify: Some(dify), .. }) = &task.kind else {
        return;
    };
    state.turns += 1;
    match (&sample.conversation_id, ok) {
        (Some(id), true) if state.turns < dify.conversation_turns => state.conversation_id.clone_from(id),
        _ => {
            state.conversation_id.clear();
            state.turns = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::user::fixtures::chat_task;

    fn turn(task: &Task, state: &mut UserState, id: &str, ok: bool) -> String {
        let sample = Sample {
            conversation_id: Some(id.to_string()),
            ..Default::default()
        };
        track_conversation(task, state, &sample, ok);
        state.conversation_id.clone()
    }

    #[test]
    fn a_conversation_lasts_its_turns_then_starts_over() {
        let task = chat_task(3);
        let mut state = UserState::default();
        assert_eq!(
            turn(&task, &mut state, "c1", true),
            "c1",
            "turn 1 opens c1; turn 2 continues it"
        );
        assert_eq!(turn(&task, &mut state, "c1", true), "c1", "turn 3 still in c1");
        assert_eq!(
            turn(&task, &mut state, "c1", true),
            "",
            "after 3 turns: a new conversation"
        );
        assert_eq!(turn(&task, &mut state, "c2", true), "c2");
        assert_eq!(turn(&task, &mut state, "c2", false), "", "a failed turn starts over");
    }

    #[test]
    fn single_turn_chats_never_continue() {
        let task = chat_task(1);
        let mut state = UserState::default();
        assert_eq!(turn(&task, &mut state, "c1", true), "");
    }
}
