//! "Where the time goes" ([`WhereTimeGoes`]): per Dify endpoint, each workflow node's
//! own elapsed time (p50/p95/p99), executions, failures and tokens, and its share of
//! the workflow's time; and what the client sees around the workflow: queueing
//! (response head to `workflow_started`) and the stream's tail (`workflow_finished` to
//! the end of the body), with their shares of the response time.
//!
//! Computed from merged stats, the same way for a live run, a final report and a
//! saved file read back (`json::read`), so they cannot disagree.

use std::collections::BTreeMap;
use std::fmt::Write;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use barrage_common::metrics::{EndpointStats, Metric, NodeStatus};

use super::rows::Percentiles;

/// One Dify endpoint's table.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WhereTimeGoes {
    /// The stats row's HTTP method.
    pub method: String,
    /// The stats row's name.
    pub name: String,
    /// The workflow's own `elapsed_time` (`server_elapsed`), ms: what the nodes'
    /// shares divide.
    pub workflow_ms: Option<Percentiles>,
    /// Each node, in workflow order (the earliest place it finished at in a stream,
    /// then title).
    pub nodes: Vec<NodeRow>,
    /// Response head to `workflow_started`: dify-api and its Celery queue before the
    /// workflow runs.
    pub queueing: Option<PhaseRow>,
    /// `workflow_finished` to the end of the body: the server closing the stream. It
    /// comes after the verdict, so it is not part of `response_time`.
    pub stream_tail: Option<PhaseRow>,
}

/// One node of a workflow over the run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeRow {
    /// The node's title.
    pub title: String,
    /// Dify's `node_type`.
    pub node_type: String,
    /// Executions (a node inside an iteration counts once per execution).
    pub count: u64,
    /// Executions that did not succeed (failed, exception, stopped, other).
    pub failures: u64,
    /// Executions by status (only those seen).
    pub statuses: BTreeMap<String, u64>,
    /// Tokens the node reported (`execution_metadata.total_tokens`), summed.
    pub tokens: u64,
    /// The node's own `elapsed_time`, ms.
    pub elapsed_ms: Option<Percentiles>,
    /// Sum of the node's elapsed times over the sum of the workflows' (0..1, more
    /// for nodes inside iterations counted with their iteration); null without
    /// workflow times.
    pub share_of_workflow: Option<f64>,
}

/// Queueing or the stream's tail over the run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PhaseRow {
    /// Its distribution, ms.
    pub elapsed_ms: Percentiles,
    /// Its sum over the sum of the response times; null without response times.
    pub share_of_response: Option<f64>,
}

/// The sum of a histogram's values (µs), from its mean: exact to its precision.
fn sum_us(h: &Histogram<u64>) -> f64 {
    h.mean() * h.len() as f64
}

/// `part` over `whole`, or None when `whole` is nothing.
fn share(part: f64, whole: Option<f64>) -> Option<f64> {
    whole.filter(|w| *w > 0.0).map(|w| part / w)
}

/// The table of every stats row with Dify node or queueing data, in the rows' order.
pub fn where_time_goes<'a>(rows: impl Iterator<Item = (&'a str, &'a str, &'a EndpointStats)>) -> Vec<WhereTimeGoes> {
    rows.filter(|(_, _, s)| !s.nodes.is_empty() || s.histogram(Metric::Queueing).is_some())
        .map(|(method, name, s)| table(method, name, s))
        .collect()
}

/// One endpoint's table.
fn table(method: &str, name: &str, s: &EndpointStats) -> WhereTimeGoes {
    let workflow = s.histogram(Metric::ServerElapsed).map(sum_us);
    let response = s.histogram(Metric::ResponseTime).map(sum_us);
    let phase = |m: Metric| {
        let h = s.histogram(m)?;
        Some(PhaseRow {
            elapsed_ms: Percentiles::from_us(h)?,
            share_of_response: share(sum_us(h), response),
        })
    };
    let mut nodes: Vec<(u32, NodeRow)> = s
        .nodes
        .iter()
        .map(|(k, n)| {
            let row = NodeRow {
                title: k.title.clone(),
                node_type: k.node_type.clone(),
                count: n.count(),
                failures: n.failures(),
                statuses: NodeStatus::ALL
                    .iter()
                    .filter(|st| n.statuses[**st as usize] > 0)
                    .map(|st| (st.as_str().to_string(), n.statuses[*st as usize]))
                    .collect(),
                tokens: n.tokens,
                elapsed_ms: n.elapsed.as_ref().and_then(Percentiles::from_us),
                share_of_workflow: n.elapsed.as_ref().and_then(|h| share(sum_us(h), workflow)),
            };
            (n.position, row)
        })
        .collect();
    // Workflow order; a node never placed (position 0) goes last.
    nodes.sort_by(|(a, ra), (b, rb)| {
        (*a == 0, *a, &ra.title, &ra.node_type).cmp(&(*b == 0, *b, &rb.title, &rb.node_type))
    });
    WhereTimeGoes {
        method: method.to_string(),
        name: name.to_string(),
        workflow_ms: s.histogram(Metric::ServerElapsed).and_then(Percentiles::from_us),
        nodes: nodes.into_iter().map(|(_, r)| r).collect(),
        queueing: phase(Metric::Queueing),
        stream_tail: phase(Metric::StreamTail),
    }
}

/// The console's "Where the time goes" tables, one per Dify endpoint (nothing when
/// there is none).
pub fn render_console(out: &mut String, tables: &[WhereTimeGoes]) {
    let ms =
        |p: &Option<Percentiles>, f: fn(&Percentiles) -> f64| p.as_ref().map_or("-".into(), |p| format!("{:.2}", f(p)));
    let pct = |s: Option<f64>| s.map_or("-".into(), |s| format!("{:.1} %", s * 100.0));
    for t in tables {
        let _ = writeln!(
            out,
            "\nWhere the time goes: {} {}\n| Node | Type | P50 (ms) | P95 (ms) | P99 (ms) | Count | Failures | Tokens | Share |\n|---|---|---|---|---|---|---|---|---|",
            t.method, t.name
        );
        for n in &t.nodes {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                n.title,
                n.node_type,
                ms(&n.elapsed_ms, |p| p.p50),
                ms(&n.elapsed_ms, |p| p.p95),
                ms(&n.elapsed_ms, |p| p.p99),
                n.count,
                n.failures,
                n.tokens,
                pct(n.share_of_workflow)
            );
        }
        let w = &t.workflow_ms;
        let count = w.as_ref().map_or(0, |p| p.count);
        let _ = writeln!(
            out,
            "| (workflow) | - | {} | {} | {} | {count} | - | - | 100 % of workflow |",
            ms(w, |p| p.p50),
            ms(w, |p| p.p95),
            ms(w, |p| p.p99)
        );
        for (label, phase) in [("(queueing)", &t.queueing), ("(stream tail)", &t.stream_tail)] {
            if let Some(p) = phase {
                let e = Some(p.elapsed_ms);
                let _ = writeln!(
                    out,
                    "| {label} | - | {} | {} | {} | {} | - | - | {} of response |",
                    ms(&e, |p| p.p50),
                    ms(&e, |p| p.p95),
                    ms(&e, |p| p.p99),
                    p.elapsed_ms.count,
                    pct(p.share_of_response)
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use barrage_common::metrics::NodeRun;

    #[test]
    fn nodes_come_in_workflow_order_with_their_share_of_the_workflow() {
        let mut s = EndpointStats::default();
        for _ in 0..10 {
            for (title, ty, us, position) in [
                ("End", "end", 1_000, 3),
                ("LLM", "llm", 200_000, 2),
                ("Start", "start", 1_000, 1),
            ] {
                s.record_node(&NodeRun {
                    title,
                    node_type: ty,
                    status: NodeStatus::Succeeded,
                    elapsed_us: Some(us),
                    tokens: 5,
                    position,
                });
            }
            s.record(Metric::ServerElapsed, 400_000);
            s.record(Metric::ResponseTime, 1_000_000);
            s.record(Metric::Queueing, 150_000);
        }
        let t = &where_time_goes([("POST", "wf", &s)].into_iter())[0];
        let titles: Vec<&str> = t.nodes.iter().map(|n| n.title.as_str()).collect();
        assert_eq!(titles, ["Start", "LLM", "End"]);
        let llm = &t.nodes[1];
        assert_eq!((llm.count, llm.failures, llm.tokens), (10, 0, 50));
        assert!((llm.share_of_workflow.unwrap() - 0.5).abs() < 0.001);
        let q = t.queueing.as_ref().unwrap();
        assert!((q.share_of_response.unwrap() - 0.15).abs() < 0.001);
        assert!(t.stream_tail.is_none());
        let mut out = String::new();
        render_console(&mut out, &where_time_goes([("POST", "wf", &s)].into_iter()));
        assert!(out.contains("Where the time goes: POST wf"), "{out}");
        assert!(out.contains("| LLM | llm | 200.06 |"), "{out}");
        // No Dify data, no table.
        assert!(where_time_goes([("GET", "/", &EndpointStats::default())].into_iter()).is_empty());
    }
}
