//! Plans for the user's unit tests: a Dify chat task and a class of weighted tasks.

use std::time::Duration;

use barrage_common::plan::{ConnectionPolicy, DifyApp, DifySpec, SseSpec, Task, TaskKind, TaskOrder, UserClass, Wait};
use barrage_common::template::Template;

/// A Dify chat task that continues a conversation for `turns` turns.
pub(super) fn chat_task(turns: u32) -> Task {
    Task {
        name: "chat".into(),
        endpoint: 0,
        method: "POST".into(),
        path: Template::literal("/v1/chat-messages"),
        headers: Vec::new(),
        body: None,
        json_body: false,
        events_per_request: 1,
        weight: 1,
        timeout: Duration::from_secs(1),
        expect: Vec::new(),
        kind: TaskKind::Sse(SseSpec {
            terminal_event: None,
            first_event_timeout: Duration::from_secs(1),
            read_timeout: Duration::from_secs(1),
            dify: Some(DifySpec {
                app: DifyApp::Chat,
                conversation_turns: turns,
                stop_on_cancel: false,
            }),
        }),
        connection: ConnectionPolicy::KeepAlive,
        tags: Vec::new(),
        capture: Vec::new(),
        checks: Vec::new(),
        goodput: None,
    }
}

/// A weighted class with one task per weight.
pub(super) fn class_of(weights: &[u32]) -> UserClass {
    UserClass {
        name: "c".into(),
        weight: 1,
        fixed_count: None,
        wait: Wait::Constant(Duration::ZERO),
        host: None,
        order: TaskOrder::Weighted,
        on_start: Vec::new(),
        tasks: weights.iter().map(|&weight| Task { weight, ..chat_task(0) }).collect(),
    }
}
