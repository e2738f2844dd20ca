//! A workflow described node by node (`--workflow-nodes`): each node has a Dify type,
//! a title and a delay distribution, and a streamed run plays `workflow_started`, then
//! `node_started` / `node_finished` per node in order, then `workflow_finished`.
//!
//! Each `node_finished` carries as `elapsed_time` the time the mock actually spent
//! between that node's `node_started` and its `node_finished` (the drawn delay, plus
//! `--chunk-interval` and jitter if set), in whole microseconds, so a client's per-node
//! figures can be checked against what was injected. `--queue-delay` is slept before
//! `workflow_started` and is part of no node. LLM nodes report
//! [`LLM_NODE_TOKENS`] tokens in `execution_metadata.total_tokens`.

use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::time::Instant;

use crate::fault::Fault;
use crate::ids;
use crate::node_spec::{NodeSpec, WorkflowNodes};
use crate::outcome::Outcome;
use crate::run::{RunEvents, RunStatus};
use crate::sse::Script;

/// Tokens an `llm` node reports using.
pub(crate) const LLM_NODE_TOKENS: u64 = 10;

/// One streamed run of a described workflow.
pub(crate) struct NodesRun {
    run: RunEvents,
    nodes: Vec<NodeSpec>,
    /// Each node's delay, drawn once when the run starts.
    delays: Vec<Duration>,
    queue_delay: Duration,
    fault: Fault,
    inputs: Map<String, Value>,
    /// When the node now running sent its `node_started`.
    node_started_at: Instant,
    node_runs: Vec<String>,
    tokens: u64,
}

impl NodesRun {
    /// A run of `nodes` for a request that reached the mock at `arrival`.
    pub(crate) fn new(
        run: RunEvents,
        nodes: &WorkflowNodes,
        queue_delay: Duration,
        fault: Fault,
        inputs: Map<String, Value>,
    ) -> Self {
        Self {
            delays: nodes.0.iter().map(|n| n.delay.draw()).collect(),
            node_runs: nodes.0.iter().map(|_| ids::uuid()).collect(),
            nodes: nodes.0.clone(),
            run,
            queue_delay,
            fault,
            inputs,
            node_started_at: Instant::now(),
            tokens: 0,
        }
    }

    fn status(&self) -> RunStatus {
        match self.fault {
            Fault::Failed => RunStatus::Failed,
            _ => RunStatus::Succeeded,
        }
    }

    /// `node_started` or `node_finished` of node `k`.
    fn node(&mut self, k: usize, finished: bool) -> Value {
        let spec = &self.nodes[k];
        let mut data = Map::from_iter([
            ("id".to_owned(), json!(self.node_runs[k])),
            ("node_id".to_owned(), json!(format!("{}-{}", spec.node_type, k + 1))),
            ("node_type".to_owned(), json!(spec.node_type)),
            ("title".to_owned(), json!(spec.title)),
            // As dify-api 1.14.1 writes it: 1 for every node of a plain run.
            ("index".to_owned(), json!(1)),
            (
                "predecessor_node_id".to_owned(),
                if k == 0 {
                    Value::Null
                } else {
                    json!(format!("{}-{}", self.nodes[k - 1].node_type, k))
                },
            ),
            ("inputs".to_owned(), Value::Object(self.inputs.clone())),
            ("iteration_id".to_owned(), Value::Null),
            ("loop_id".to_owned(), Value::Null),
        ]);
        if !finished {
            self.node_started_at = Instant::now();
            return self.run.wrap("node_started", Value::Object(data));
        }
        let micros = u64::try_from(self.node_started_at.elapsed().as_micros()).unwrap_or(u64::MAX);
        let tokens = if spec.node_type == "llm" { LLM_NODE_TOKENS } else { 0 };
        self.tokens += tokens;
        data.extend([
            ("outputs".to_owned(), json!({})),
            ("status".to_owned(), json!("succeeded")),
            ("error".to_owned(), Value::Null),
            ("elapsed_time".to_owned(), json!(micros as f64 / 1e6)),
            (
                "execution_metadata".to_owned(),
                if tokens > 0 {
                    json!({ "total_tokens": tokens })
                } else {
                    Value::Null
                },
            ),
            ("finished_at".to_owned(), json!(ids::unix_now())),
        ]);
        self.run.wrap("node_finished", Value::Object(data))
    }
}

impl Script for NodesRun {
    fn len(&self) -> u64 {
        2 + 2 * self.nodes.len() as u64
    }

    fn event(&mut self, index: u64) -> Value {
        let last = self.len() - 1;
        match index {
            0 => self.run.started(&self.inputs),
            i if i < last => {
                let k = usize::try_from((i - 1) / 2)
                    .unwrap_or(usize::MAX)
                    .min(self.nodes.len() - 1);
                self.node(k, i % 2 == 0)
            }
            _ if self.fault == Fault::Error => json!({
                "event": "error",
                "task_id": self.run.task_id,
                "workflow_run_id": self.run.run_id,
                "status": 400,
                "code": "completion_request_error",
                "message": "[barrage-mock] Error: injected by X-Mock-Fault: error",
            }),
            _ => {
                let data = self.run.finished(self.status(), json!({}), self.tokens);
                self.run.wrap("workflow_finished", data)
            }
        }
    }

    fn pause_before(&self, index: u64) -> Duration {
        match index {
            0 => self.queue_delay,
            // Event 2k + 2 is node k's `node_finished`: its delay goes before it.
            i if i % 2 == 0 && i >= 2 => {
                let k = usize::try_from(i / 2 - 1).unwrap_or(usize::MAX);
                self.delays.get(k).copied().unwrap_or_default()
            }
            _ => Duration::ZERO,
        }
    }

    fn outcome(&self) -> Outcome {
        match self.fault {
            Fault::Error => Outcome::ErrorEvent,
            Fault::Failed => Outcome::FailedStatus,
            _ => Outcome::Succeeded,
        }
    }

    fn stopped(&mut self) -> Vec<Value> {
        let data = self.run.finished(RunStatus::Stopped, Value::Null, self.tokens);
        vec![self.run.wrap("workflow_finished", data)]
    }

    fn ids(&self) -> Map<String, Value> {
        self.run.ids()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn each_node_reports_the_time_spent_between_its_events() {
        let w: WorkflowNodes = "start:Start:0s,llm:LLM:200ms,end:End:0s".parse().unwrap();
        let run = RunEvents::new("wf".into(), "t".into(), Instant::now(), crate::run::Node::End);
        let mut r = NodesRun::new(run, &w, Duration::from_millis(150), Fault::None, Map::new());
        assert_eq!(r.len(), 8);
        let mut names = Vec::new();
        let mut elapsed = Vec::new();
        for i in 0..r.len() {
            tokio::time::advance(r.pause_before(i)).await;
            let e = r.event(i);
            names.push(e["event"].as_str().unwrap().to_string());
            if e["event"] == "node_finished" {
                elapsed.push((e["data"]["title"].clone(), e["data"]["elapsed_time"].as_f64().unwrap()));
            }
        }
        assert_eq!(names[0], "workflow_started");
        assert_eq!(names[7], "workflow_finished");
        assert_eq!(elapsed[1], (json!("LLM"), 0.2));
        assert_eq!(elapsed[0].1, 0.0);
        assert_eq!(r.pause_before(0), Duration::from_millis(150));
    }
}
