//! `POST /v1/workflows/run` and `POST /v1/workflows/{workflow_id}/run`: a workflow
//! app whose Start node feeds an End node that streams its `text` output, answered as
//! Dify's SSE sequence or, in blocking mode, as the finished run's JSON.
//!
//! Stream with `chunks` = N (N + 6 events, one `chunk_interval` apart after the first):
//! `workflow_started`, `node_started`(start), `node_finished`(start), N x `text_chunk`,
//! `node_started`(end), `node_finished`(end), `workflow_finished`.

use axum::Json;
use axum::extract::{Path, Request, State};
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

/// Events before the first `text_chunk`: workflow_started, start node started/finished.
const EVENTS_BEFORE_CHUNKS: u64 = 3;
/// Events after the last `text_chunk`: end node started/finished, workflow_finished.
const EVENTS_AFTER_CHUNKS: u64 = 3;
/// Nodes a run executes (Start, End), reported as `total_steps`.
const TOTAL_STEPS: u64 = 2;
/// The variable the End node streams, as `from_variable_selector` names it.
const STREAMED_VARIABLE: [&str; 2] = ["llm", "text"];

/// Body of a workflow run, as Dify's Service API takes it.
#[derive(Debug, Deserialize)]
pub(crate) struct RunRequest {
    inputs: Map<String, Value>,
    #[serde(default)]
    response_mode: Option<ResponseMode>,
    user: String,
}

impl Payload for RunRequest {
    fn check(&self) -> Result<(), ApiError> {
        require_user(&self.user)
    }
}

/// `POST /v1/workflows/run`: runs the app's published workflow.
pub(crate) async fn run(State(state): State<MockState>, request: Request) -> Response {
    let workflow_id = state.workflow_id().to_owned();
    serve(state, workflow_id, request).await
}

/// `POST /v1/workflows/{workflow_id}/run`: runs a given workflow version.
pub(crate) async fn run_by_id(
    State(state): State<MockState>,
    Path(workflow_id): Path<String>,
    request: Request,
) -> Response {
    serve(state, workflow_id, request).await
}

async fn serve(state: MockState, workflow_id: String, request: Request) -> Response {
    state.counters().workflow_run();
    let call = match ApiCall::<RunRequest>::accept(&state, request).await {
        Ok(call) => call,
        Err(err) => return err.into_response(),
    };
    let mode = call.body.response_mode.unwrap_or_default();
    let run = WorkflowRun::new(workflow_id, call);
    match mode {
        ResponseMode::Streaming => {
            let guard = StreamGuard::start(state.counters().clone());
            let (behaviour, arrival) = (run.call.behaviour, run.call.arrival);
            sse::response(run, &behaviour, arrival, guard)
        }
        ResponseMode::Blocking => blocking(&state, run).await,
    }
}

/// Blocking mode: the finished run's JSON once the stream would have delivered its
/// last chunk. Counted only if the client was still there to be answered.
async fn blocking(state: &MockState, mut run: WorkflowRun) -> Response {
    let behaviour = run.call.behaviour;
    sleep_until(after(run.call.arrival, behaviour.blocking_duration())).await;
    if behaviour.fault == Fault::Error {
        return ApiError::completion_request_error(INJECTED_ERROR).into_response();
    }
    run.text = (0..u64::from(behaviour.chunks)).map(answer::chunk).collect();
    let body = json!({
        "task_id": run.task_id,
        "workflow_run_id": run.run_id,
        "data": run.finished_data(),
    });
    state.counters().blocking_completed();
    Json(body).into_response()
}

const INJECTED_ERROR: &str = "[barrage-mock] Error: injected by X-Mock-Fault: error";
const INJECTED_FAILURE: &str = "[barrage-mock] Failed: injected by X-Mock-Fault: failed";

/// The two nodes of the mock's workflow; the Start node passes the inputs through,
/// the End node outputs the streamed `text`.
#[derive(Debug, Clone, Copy)]
enum Node {
    Start,
    End,
}

impl Node {
    /// Both `node_id` and `node_type`, as in a workflow built from Dify's defaults.
    fn id(self) -> &'static str {
        match self {
            Node::Start => "start",
            Node::End => "end",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Node::Start => "Start",
            Node::End => "End",
        }
    }
}

/// One workflow run: its ids and the text streamed so far, which becomes its outputs.
struct WorkflowRun {
    call: ApiCall<RunRequest>,
    workflow_id: String,
    task_id: String,
    run_id: String,
    created_at: u64,
    start_node_run: String,
    end_node_run: String,
    text: String,
}

impl WorkflowRun {
    fn new(workflow_id: String, call: ApiCall<RunRequest>) -> Self {
        Self {
            call,
            workflow_id,
            task_id: ids::uuid(),
            run_id: ids::uuid(),
            created_at: ids::unix_now(),
            start_node_run: ids::uuid(),
            end_node_run: ids::uuid(),
            text: String::new(),
        }
    }

    fn chunks(&self) -> u64 {
        u64::from(self.call.behaviour.chunks)
    }

    /// Seconds since the request arrived, as Dify's `elapsed_time`.
    fn elapsed(&self) -> f64 {
        self.call.arrival.elapsed().as_secs_f64()
    }

    /// Wraps `data` in the fields every workflow event carries.
    fn wrap(&self, event: &str, data: Value) -> Value {
        json!({
            "event": event,
            "task_id": self.task_id,
            "workflow_run_id": self.run_id,
            "data": data,
        })
    }

    fn workflow_started(&self) -> Value {
        self.wrap(
            "workflow_started",
            json!({
                "id": self.run_id,
                "workflow_id": self.workflow_id,
                "sequence_number": 1,
                "inputs": self.call.body.inputs,
                "created_at": self.created_at,
            }),
        )
    }

    /// `node_started` or, once `finished`, `node_finished` for `node`.
    fn node(&self, node: Node, finished: bool) -> Value {
        let (node_run, index, predecessor, io) = match node {
            Node::Start => (
                &self.start_node_run,
                1,
                Value::Null,
                Value::Object(self.call.body.inputs.clone()),
            ),
            Node::End => (
                &self.end_node_run,
                2,
                json!(Node::Start.id()),
                json!({ "text": self.text }),
            ),
        };
        let mut data = json!({
            "id": node_run,
            "node_id": node.id(),
            "node_type": node.id(),
            "title": node.title(),
            "index": index,
            "predecessor_node_id": predecessor,
            "inputs": io,
            "created_at": self.created_at,
        });
        if !finished {
            return self.wrap("node_started", data);
        }
        if let Value::Object(fields) = &mut data {
            fields.insert("process_data".into(), Value::Null);
            fields.insert("outputs".into(), fields["inputs"].clone());
            fields.insert("status".into(), json!("succeeded"));
            fields.insert("error".into(), Value::Null);
            fields.insert("elapsed_time".into(), json!(self.elapsed()));
            fields.insert("execution_metadata".into(), Value::Null);
            fields.insert("finished_at".into(), json!(ids::unix_now()));
        }
        self.wrap("node_finished", data)
    }

    fn text_chunk(&mut self, index: u64) -> Value {
        let text = answer::chunk(index);
        self.text.push_str(&text);
        self.wrap(
            "text_chunk",
            json!({ "text": text, "from_variable_selector": STREAMED_VARIABLE }),
        )
    }

    /// `data` of `workflow_finished`, and of the blocking answer.
    fn finished_data(&self) -> Value {
        let failed = self.call.behaviour.fault == Fault::Failed;
        json!({
            "id": self.run_id,
            "workflow_id": self.workflow_id,
            "sequence_number": 1,
            "status": if failed { "failed" } else { "succeeded" },
            "outputs": if failed { Value::Null } else { json!({ "text": self.text }) },
            "error": if failed { json!(INJECTED_FAILURE) } else { Value::Null },
            "elapsed_time": self.elapsed(),
            "total_tokens": answer::total_tokens(self.chunks()),
            "total_steps": TOTAL_STEPS,
            "exceptions_count": 0,
            "files": [],
            "created_at": self.created_at,
            "finished_at": ids::unix_now(),
        })
    }

    /// Dify's `event: error`, which ends a stream in place of `workflow_finished`.
    fn error(&self) -> Value {
        json!({
            "event": "error",
            "task_id": self.task_id,
            "workflow_run_id": self.run_id,
            "status": 400,
            "code": "completion_request_error",
            "message": INJECTED_ERROR,
        })
    }
}

impl Script for WorkflowRun {
    fn len(&self) -> u64 {
        EVENTS_BEFORE_CHUNKS + self.chunks() + EVENTS_AFTER_CHUNKS
    }

    fn event(&mut self, index: u64) -> Value {
        let chunks_end = EVENTS_BEFORE_CHUNKS + self.chunks();
        match index {
            0 => self.workflow_started(),
            1 => self.node(Node::Start, false),
            2 => self.node(Node::Start, true),
            i if i < chunks_end => self.text_chunk(i - EVENTS_BEFORE_CHUNKS),
            i if i == chunks_end => self.node(Node::End, false),
            i if i == chunks_end + 1 => self.node(Node::End, true),
            _ if self.call.behaviour.fault == Fault::Error => self.error(),
            _ => self.wrap("workflow_finished", self.finished_data()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Behaviour;
    use std::time::Duration;
    use tokio::time::Instant;

    fn run(chunks: u32, fault: Fault) -> WorkflowRun {
        let call = ApiCall {
            arrival: Instant::now(),
            behaviour: Behaviour {
                first_event_delay: Duration::ZERO,
                chunks,
                chunk_interval: Duration::ZERO,
                ping_interval: None,
                fault,
            },
            body: RunRequest {
                inputs: Map::from_iter([("q".to_owned(), json!("hi"))]),
                response_mode: Some(ResponseMode::Streaming),
                user: "u".into(),
            },
        };
        WorkflowRun::new("wf".into(), call)
    }

    fn play(mut run: WorkflowRun) -> Vec<Value> {
        (0..run.len()).map(|i| run.event(i)).collect()
    }

    #[test]
    fn sequence_matches_dify() {
        let events = play(run(2, Fault::None));
        let names: Vec<&str> = events.iter().map(|e| e["event"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                "workflow_started",
                "node_started",
                "node_finished",
                "text_chunk",
                "text_chunk",
                "node_started",
                "node_finished",
                "workflow_finished",
            ]
        );
        let run_id = &events[0]["workflow_run_id"];
        for e in &events {
            assert_eq!(&e["workflow_run_id"], run_id);
            assert_eq!(e["task_id"], events[0]["task_id"]);
        }
        assert_eq!(events[0]["data"]["workflow_id"], "wf");
        assert_eq!(events[1]["data"]["inputs"]["q"], "hi");
        assert_eq!(events[3]["data"]["from_variable_selector"], json!(["llm", "text"]));
        let finished = &events[7]["data"];
        assert_eq!(finished["id"], *run_id);
        assert_eq!(finished["status"], "succeeded");
        assert_eq!(finished["outputs"]["text"], "Barrage is");
        assert_eq!(finished["error"], Value::Null);
        assert_eq!(finished["total_tokens"], answer::PROMPT_TOKENS + 2);
        assert_eq!(finished["total_steps"], 2);
        assert!(finished["elapsed_time"].is_f64());
    }

    #[test]
    fn faults_change_the_ending() {
        let failed = play(run(1, Fault::Failed));
        let last = failed.last().unwrap();
        assert_eq!(last["event"], "workflow_finished");
        assert_eq!(last["data"]["status"], "failed");
        assert!(last["data"]["error"].is_string());

        let errored = play(run(0, Fault::Error));
        assert_eq!(errored.len(), 6);
        let last = errored.last().unwrap();
        assert_eq!(last["event"], "error");
        assert_eq!(last["code"], "completion_request_error");
    }
}
