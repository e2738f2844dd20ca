//! The stop routes, `POST /v1/workflows/tasks/{task_id}/stop` and
//! `POST /v1/chat-messages/{task_id}/stop`: they signal a running task (see
//! [`crate::tasks`]) to end at once with its stopped ending. As in dify-api, the answer
//! is always `{"result": "success"}`, also for an unknown task or another user's (which
//! are left running).

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::request::{Payload, accept_body, require_user};
use crate::state::MockState;
use crate::tasks::TaskKind;

/// Body of a stop call.
#[derive(Debug, Deserialize)]
pub(crate) struct StopRequest {
    user: String,
}

impl Payload for StopRequest {
    fn check(&self) -> Result<(), crate::envelope::ApiError> {
        require_user(&self.user)
    }
}

/// `POST /v1/workflows/tasks/{task_id}/stop`.
pub(crate) async fn stop_workflow(state: State<MockState>, task_id: Path<String>, request: Request) -> Response {
    stop(state, task_id, request, TaskKind::Workflow).await
}

/// `POST /v1/chat-messages/{task_id}/stop`.
pub(crate) async fn stop_chat(state: State<MockState>, task_id: Path<String>, request: Request) -> Response {
    stop(state, task_id, request, TaskKind::Chat).await
}

async fn stop(
    State(state): State<MockState>,
    Path(task_id): Path<String>,
    request: Request,
    kind: TaskKind,
) -> Response {
    match accept_body::<StopRequest>(&state, request).await {
        Ok((body, _)) => {
            state.tasks().stop(&task_id, kind, &body.user);
            Json(json!({ "result": "success" })).into_response()
        }
        Err(err) => err.into_response(),
    }
}

/// Whether `path` is one of the stop routes. The counting middleware counts these calls
/// in `stops_requested` and never as a run's outcome, whatever their answer.
pub(crate) fn is_stop_path(path: &str) -> bool {
    let segments: Vec<&str> = path.split('/').collect();
    match segments.as_slice() {
        ["", "v1", "workflows", "tasks", id, "stop"] | ["", "v1", "chat-messages", id, "stop"] => !id.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_paths() {
        assert!(is_stop_path("/v1/workflows/tasks/abc/stop"));
        assert!(is_stop_path("/v1/chat-messages/abc/stop"));
        assert!(!is_stop_path("/v1/chat-messages//stop"));
        assert!(!is_stop_path("/v1/chat-messages"));
        assert!(!is_stop_path("/v1/workflows/run"));
        assert!(!is_stop_path("/v1/workflows/tasks/a/b/stop"));
    }
}
