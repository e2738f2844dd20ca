//! `POST /v1/workflows/run` and `POST /v1/workflows/{workflow_id}/run`: a workflow
//! app whose Start node feeds an End node that streams its `text` output, answered as
//! Dify's SSE sequence or, in blocking mode, as the finished run's JSON.
//!
//! Stream with `chunks` = N (N + 6 events, one `chunk_interval` apart after the first):
//! `workflow_started`, `node_started`(start), `node_finished`(start), N x `text_chunk`,
//! `node_started`(end), `node_finished`(end), `workflow_finished`.

use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::answer;
use crate::blocking::{self, Answer};
use crate::envelope::ApiError;
use crate::fault::Fault;
use crate::nodes::NodesRun;
use crate::outcome::Outcome;
use crate::request::{ApiCall, Payload, ResponseMode, require_user};
use crate::run::{self, Node, RunEvents, RunStatus};
use crate::sse::{self, Playback, Script};
use crate::state::MockState;
use crate::tasks::TaskKind;

/// Events before the first `text_chunk`: workflow_started, start node started/finished.
const EVENTS_BEFORE_CHUNKS: u64 = 3;
/// Events after the last `text_chunk`: end node started/finished, workflow_finished.
const EVENTS_AFTER_CHUNKS: u64 = 3;
/// The variable the End node streams, as `from_variable_selector` names it.
const STREAMED_VARIABLE: [&str; 2] = ["llm", "text"];

const INJECTED_ERROR: &str = "[barrage-mock] Error: injected by X-Mock-Fault: error";

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
    let mut call = match ApiCall::<RunRequest>::accept(&state, request, TaskKind::Workflow).await {
        Ok(call) => call,
        Err(err) => return err.into_response(),
    };
    let mode = call.body.response_mode.unwrap_or_default();
    let slot = call.slot.take();
    let run = WorkflowRun::new(workflow_id, call);
    match mode {
        ResponseMode::Streaming => {
            let task = state
                .tasks()
                .register(&run.run.task_id, TaskKind::Workflow, &run.call.body.user);
            let playback = Playback::new(&state, run.call.behaviour, run.call.arrival, slot, task);
            let queue_delay = state.config().queue_delay;
            match &state.config().workflow_nodes {
                Some(nodes) if !nodes.0.is_empty() => {
                    let WorkflowRun { call, run, .. } = run;
                    let inputs = call.body.inputs;
                    sse::response(
                        NodesRun::new(run, nodes, queue_delay, call.behaviour.fault, inputs),
                        playback,
                    )
                }
                _ => sse::response(WorkflowRun { queue_delay, ..run }, playback),
            }
        }
        ResponseMode::Blocking => {
            let (behaviour, arrival) = (run.call.behaviour, run.call.arrival);
            let response = blocking::respond(&state, &behaviour, arrival, || run.blocking(&state)).await;
            drop(slot);
            response
        }
    }
}

/// One workflow run: its events and the text streamed so far, which becomes its outputs.
struct WorkflowRun {
    call: ApiCall<RunRequest>,
    run: RunEvents,
    text: String,
    chunks_sent: u64,
    /// `--queue-delay`, slept before `workflow_started`.
    queue_delay: std::time::Duration,
}

impl WorkflowRun {
    fn new(workflow_id: String, call: ApiCall<RunRequest>) -> Self {
        let run = RunEvents::new(workflow_id, crate::ids::uuid(), call.arrival, Node::End);
        Self {
            call,
            run,
            text: String::new(),
            chunks_sent: 0,
            queue_delay: std::time::Duration::ZERO,
        }
    }

    fn chunks(&self) -> u64 {
        u64::from(self.call.behaviour.chunks)
    }

    /// The status the run ends with when it runs to its end.
    fn status(&self) -> RunStatus {
        match self.call.behaviour.fault {
            Fault::Failed => RunStatus::Failed,
            Fault::Stopped => RunStatus::Stopped,
            _ => RunStatus::Succeeded,
        }
    }

    fn finished(&self, status: RunStatus) -> Value {
        let data = self.run.finished(
            status,
            json!({ "text": self.text }),
            answer::total_tokens(self.chunks_sent),
        );
        self.run.wrap("workflow_finished", data)
    }

    fn text_chunk(&mut self, index: u64) -> Value {
        let text = answer::chunk(index);
        self.text.push_str(&text);
        self.chunks_sent += 1;
        self.run.wrap(
            "text_chunk",
            json!({ "text": text, "from_variable_selector": STREAMED_VARIABLE }),
        )
    }

    /// Dify's `event: error`, which ends a stream in place of `workflow_finished`.
    fn error(&self) -> Value {
        json!({
            "event": "error",
            "task_id": self.run.task_id,
            "workflow_run_id": self.run.run_id,
            "status": 400,
            "code": "completion_request_error",
            "message": INJECTED_ERROR,
        })
    }

    /// The blocking answer: the finished run, all chunks generated; `error` answers 400
    /// `completion_request_error` as Dify does when the model fails a blocking call.
    fn blocking(mut self, state: &MockState) -> Result<Answer, ApiError> {
        if self.call.behaviour.fault == Fault::Error {
            return Err(ApiError::completion_request_error(INJECTED_ERROR));
        }
        for index in 0..self.chunks() {
            self.text_chunk(index);
        }
        let status = self.status();
        let data = self.run.finished(
            status,
            json!({ "text": self.text }),
            answer::total_tokens(self.chunks_sent),
        );
        state.counters().workflow_result(
            run::micros(&data["elapsed_time"]),
            data["total_tokens"].as_u64().unwrap_or(0),
        );
        Ok(Answer {
            body: json!({
                "task_id": self.run.task_id,
                "workflow_run_id": self.run.run_id,
                "data": data,
            }),
            outcome: status.outcome(),
        })
    }
}

impl Script for WorkflowRun {
    fn len(&self) -> u64 {
        EVENTS_BEFORE_CHUNKS + self.chunks() + EVENTS_AFTER_CHUNKS
    }

    fn event(&mut self, index: u64) -> Value {
        let chunks_end = EVENTS_BEFORE_CHUNKS + self.chunks();
        let inputs = Value::Object(self.call.body.inputs.clone());
        match index {
            0 => self.run.started(&self.call.body.inputs),
            1 => self.run.node(true, false, inputs),
            2 => self.run.node(true, true, inputs),
            i if i < chunks_end => self.text_chunk(i - EVENTS_BEFORE_CHUNKS),
            i if i == chunks_end => self.run.node(false, false, json!({ "text": self.text })),
            i if i == chunks_end + 1 => self.run.node(false, true, json!({ "text": self.text })),
            _ if self.call.behaviour.fault == Fault::Error => self.error(),
            // A `stopped` fault is played by the player, which ends early through
            // `stopped`; a run that gets here ran to its end.
            _ if self.status() == RunStatus::Failed => self.finished(RunStatus::Failed),
            _ => self.finished(RunStatus::Succeeded),
        }
    }

    fn outcome(&self) -> Outcome {
        match self.call.behaviour.fault {
            Fault::Error => Outcome::ErrorEvent,
            Fault::Failed => Outcome::FailedStatus,
            _ => Outcome::Succeeded,
        }
    }

    fn stopped(&mut self) -> Vec<Value> {
        vec![self.finished(RunStatus::Stopped)]
    }

    fn pause_before(&self, index: u64) -> std::time::Duration {
        if index == 0 {
            self.queue_delay
        } else {
            std::time::Duration::ZERO
        }
    }

    fn ids(&self) -> Map<String, Value> {
        self.run.ids()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Behaviour;
    use tokio::time::Instant;

    fn run(chunks: u32, fault: Fault) -> WorkflowRun {
        let call = ApiCall {
            arrival: Instant::now(),
            behaviour: Behaviour {
                chunks,
                fault,
                ..Behaviour::default()
            },
            body: RunRequest {
                inputs: Map::from_iter([("q".to_owned(), json!("hi"))]),
                response_mode: Some(ResponseMode::Streaming),
                user: "u".into(),
            },
            slot: None,
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
        assert_eq!(events[6]["data"]["outputs"]["text"], "Barrage is");
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
        let failed = run(1, Fault::Failed);
        assert_eq!(failed.outcome(), Outcome::FailedStatus);
        let failed = play(failed);
        let last = failed.last().unwrap();
        assert_eq!(last["event"], "workflow_finished");
        assert_eq!(last["data"]["status"], "failed");
        assert!(last["data"]["error"].is_string());

        let errored = run(0, Fault::Error);
        assert_eq!(errored.outcome(), Outcome::ErrorEvent);
        let errored = play(errored);
        assert_eq!(errored.len(), 6);
        let last = errored.last().unwrap();
        assert_eq!(last["event"], "error");
        assert_eq!(last["code"], "completion_request_error");
    }

    #[test]
    fn stopping_counts_only_the_chunks_sent() {
        let mut run = run(5, Fault::None);
        for i in 0..5 {
            run.event(i);
        }
        let ending = run.stopped();
        assert_eq!(ending.len(), 1);
        assert_eq!(ending[0]["data"]["status"], "stopped");
        assert_eq!(ending[0]["data"]["total_tokens"], answer::PROMPT_TOKENS + 2);
    }
}
