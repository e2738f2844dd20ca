//! One workflow run's events as Dify writes them, shared by workflow apps and chatflows
//! (advanced-chat apps, which run a workflow around their messages): the run's ids,
//! `workflow_started`, the nodes' `node_started`/`node_finished`, and `workflow_finished`
//! with exact `elapsed_time` and `total_tokens`.
//!
//! `elapsed_time` of `workflow_finished` is the real time since the request reached the
//! mock, and of `node_finished` the node's own time since its `node_started` (as Dify
//! reports each), in seconds, as a float holding a whole number of microseconds (so
//! `round(elapsed_time * 1e6)` recovers it exactly). `total_tokens` is
//! [`crate::answer::PROMPT_TOKENS`] plus one per text chunk or message sent so far.

use serde_json::{Map, Value, json};
use tokio::time::Instant;

use crate::ids;
use crate::outcome::Outcome;

/// Nodes a run executes (Start, then End or Answer), reported as `total_steps`.
const TOTAL_STEPS: u64 = 2;

/// The nodes of the mock's workflows: Start passes the inputs through; End (workflow)
/// outputs the streamed `text`, Answer (chatflow) the streamed `answer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Node {
    Start,
    End,
    Answer,
}

impl Node {
    /// Both `node_id` and `node_type`, as in a workflow built from Dify's defaults.
    fn id(self) -> &'static str {
        match self {
            Node::Start => "start",
            Node::End => "end",
            Node::Answer => "answer",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Node::Start => "Start",
            Node::End => "End",
            Node::Answer => "Answer",
        }
    }
}

/// How a run finished, as `workflow_finished.data.status` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunStatus {
    Succeeded,
    Failed,
    Stopped,
}

impl RunStatus {
    fn name(self) -> &'static str {
        match self {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Stopped => "stopped",
        }
    }

    pub(crate) fn outcome(self) -> Outcome {
        match self {
            RunStatus::Succeeded => Outcome::Succeeded,
            RunStatus::Failed => Outcome::FailedStatus,
            RunStatus::Stopped => Outcome::Stopped,
        }
    }
}

pub(crate) const INJECTED_FAILURE: &str = "[barrage-mock] Failed: injected by X-Mock-Fault: failed";
/// Dify's `error` for a run stopped by its user.
pub(crate) const STOPPED_BY_USER: &str = "Stopped by user.";

/// One workflow run's identity and clock.
#[derive(Debug)]
pub(crate) struct RunEvents {
    pub task_id: String,
    pub run_id: String,
    workflow_id: String,
    created_at: u64,
    /// When the request reached the mock; `elapsed_time` counts from here.
    arrival: Instant,
    last: Node,
    start_node_run: String,
    last_node_run: String,
    /// When the node now running sent its `node_started`: its `elapsed_time` counts
    /// from here.
    node_started_at: Instant,
}

impl RunEvents {
    /// A run of `workflow_id` whose second node is `last` (End or Answer).
    pub(crate) fn new(workflow_id: String, task_id: String, arrival: Instant, last: Node) -> Self {
        Self {
            task_id,
            run_id: ids::uuid(),
            workflow_id,
            created_at: ids::unix_now(),
            arrival,
            last,
            start_node_run: ids::uuid(),
            last_node_run: ids::uuid(),
            node_started_at: arrival,
        }
    }

    /// Seconds since the request arrived, truncated to whole microseconds.
    pub(crate) fn elapsed(&self) -> f64 {
        let micros = u64::try_from(self.arrival.elapsed().as_micros()).unwrap_or(u64::MAX);
        micros as f64 / 1e6
    }

    /// `{task_id, workflow_run_id}`: the top-level ids every event of a workflow run
    /// carries, for events the mock injects into it.
    pub(crate) fn ids(&self) -> Map<String, Value> {
        Map::from_iter([
            ("task_id".to_owned(), json!(self.task_id)),
            ("workflow_run_id".to_owned(), json!(self.run_id)),
        ])
    }

    /// `{event, task_id, workflow_run_id, data}`, the shape of every workflow event.
    pub(crate) fn wrap(&self, event: &str, data: Value) -> Value {
        json!({
            "event": event,
            "task_id": self.task_id,
            "workflow_run_id": self.run_id,
            "data": data,
        })
    }

    pub(crate) fn started(&self, inputs: &Map<String, Value>) -> Value {
        self.wrap(
            "workflow_started",
            json!({
                "id": self.run_id,
                "workflow_id": self.workflow_id,
                "sequence_number": 1,
                "inputs": inputs,
                "created_at": self.created_at,
            }),
        )
    }

    /// `node_started` or, once `finished`, `node_finished` for the Start node (`first`)
    /// or the last one; `io` is the node's inputs, and its outputs once finished.
    pub(crate) fn node(&mut self, first: bool, finished: bool, io: Value) -> Value {
        let (node, node_run, index, predecessor) = if first {
            (Node::Start, &self.start_node_run, 1, Value::Null)
        } else {
            (self.last, &self.last_node_run, 2, json!(Node::Start.id()))
        };
        let mut data = Map::from_iter([
            ("id".to_owned(), json!(node_run)),
            ("node_id".to_owned(), json!(node.id())),
            ("node_type".to_owned(), json!(node.id())),
            ("title".to_owned(), json!(node.title())),
            ("index".to_owned(), json!(index)),
            ("predecessor_node_id".to_owned(), predecessor),
            ("inputs".to_owned(), io.clone()),
            ("created_at".to_owned(), json!(self.created_at)),
        ]);
        if !finished {
            self.node_started_at = Instant::now();
            return self.wrap("node_started", Value::Object(data));
        }
        let own = u64::try_from(self.node_started_at.elapsed().as_micros()).unwrap_or(u64::MAX);
        data.extend([
            ("process_data".to_owned(), Value::Null),
            ("outputs".to_owned(), io),
            ("status".to_owned(), json!("succeeded")),
            ("error".to_owned(), Value::Null),
            ("elapsed_time".to_owned(), json!(own as f64 / 1e6)),
            ("execution_metadata".to_owned(), Value::Null),
            ("finished_at".to_owned(), json!(ids::unix_now())),
        ]);
        self.wrap("node_finished", Value::Object(data))
    }

    /// `data` of `workflow_finished` (and of a blocking workflow answer). `outputs` are
    /// reported only for a run that succeeded, as Dify does.
    pub(crate) fn finished(&self, status: RunStatus, outputs: Value, total_tokens: u64) -> Value {
        let error = match status {
            RunStatus::Succeeded => Value::Null,
            RunStatus::Failed => json!(INJECTED_FAILURE),
            RunStatus::Stopped => json!(STOPPED_BY_USER),
        };
        json!({
            "id": self.run_id,
            "workflow_id": self.workflow_id,
            "sequence_number": 1,
            "status": status.name(),
            "outputs": if status == RunStatus::Succeeded { outputs } else { Value::Null },
            "error": error,
            "elapsed_time": self.elapsed(),
            "total_tokens": total_tokens,
            "total_steps": TOTAL_STEPS,
            "exceptions_count": 0,
            "files": [],
            "created_at": self.created_at,
            "finished_at": ids::unix_now(),
        })
    }
}

/// An `elapsed_time` as the mock writes it (seconds, whole microseconds) back to
/// microseconds, exactly; 0 if it is not a number.
pub(crate) fn micros(seconds: &Value) -> u64 {
    // Saturating float-to-int conversion of a small non-negative number.
    (seconds.as_f64().unwrap_or(0.0) * 1e6).round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn elapsed_time_is_exact_microseconds() {
        let run = RunEvents::new("wf".into(), "t".into(), Instant::now(), Node::End);
        tokio::time::advance(std::time::Duration::from_micros(1_234_567)).await;
        let data = run.finished(RunStatus::Succeeded, json!({"text": "x"}), 14);
        assert_eq!(data["elapsed_time"], 1.234567);
        assert_eq!((data["elapsed_time"].as_f64().unwrap() * 1e6).round() as u64, 1_234_567);
        assert_eq!(data["total_tokens"], 14);
        assert_eq!(data["outputs"]["text"], "x");
    }

    #[tokio::test(start_paused = true)]
    async fn a_node_reports_its_own_time_not_the_runs() {
        let mut run = RunEvents::new("wf".into(), "t".into(), Instant::now(), Node::End);
        tokio::time::advance(std::time::Duration::from_millis(150)).await;
        run.node(false, false, json!({}));
        tokio::time::advance(std::time::Duration::from_micros(20_500)).await;
        let node = run.node(false, true, json!({}));
        assert_eq!(node["data"]["elapsed_time"], 0.0205);
        assert_eq!(run.finished(RunStatus::Succeeded, json!({}), 0)["elapsed_time"], 0.1705);
    }

    #[test]
    fn micros_reads_back_elapsed_time() {
        for us in [0_u64, 1, 999_999, 1_000_001, 123_456_789, 86_400_000_000] {
            assert_eq!(micros(&json!(us as f64 / 1e6)), us);
        }
        assert_eq!(micros(&json!(null)), 0);
    }

    #[test]
    fn unsuccessful_runs_carry_an_error_and_no_outputs() {
        let mut run = RunEvents::new("wf".into(), "t".into(), Instant::now(), Node::Answer);
        let failed = run.finished(RunStatus::Failed, json!({"answer": "x"}), 12);
        assert_eq!(
            (failed["status"].as_str(), failed["outputs"].is_null()),
            (Some("failed"), true)
        );
        let stopped = run.finished(RunStatus::Stopped, json!({}), 12);
        assert_eq!(stopped["error"], STOPPED_BY_USER);
        let node = run.node(false, true, json!({"answer": "x"}));
        assert_eq!(node["data"]["node_type"], "answer");
        assert_eq!(node["data"]["predecessor_node_id"], "start");
    }
}
