//! Where the time goes at each level of a hunt ([`NodeSteps`]): every Dify node's
//! elapsed time per step, and the nodes whose p95 grew fastest between the first level
//! and the first bad one ([`NodeGrowth`]), named in the verdict.
//!
//! The node totals (all endpoints merged) are copied when a step's judged seconds
//! begin (after its warm-up) and when it ends; a step's figures are the difference.
//! A report in flight at either instant (workers report each second) falls on the
//! other side, so a step's node figures may be shifted by about a second against its
//! judged seconds; they hold that step's level throughout, as the warm-up is longer.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use barrage_common::metrics::{NodeKey, NodeStats, merge_nodes};

use crate::aggregate::Aggregator;
use crate::report::Percentiles;

/// One node at one level of a hunt.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeStepRow {
    /// The step's level (users, or arrivals per second).
    pub level: u32,
    /// When the step started, seconds into the run (tells apart two steps of one level).
    pub start_s: f64,
    /// The node's title.
    pub title: String,
    /// Dify's `node_type`.
    pub node_type: String,
    /// Executions within the step.
    pub count: u64,
    /// Of which did not succeed.
    pub failures: u64,
    /// The node's own elapsed time within the step, ms.
    pub elapsed_ms: Option<Percentiles>,
}

/// How much a node's p95 grew from the first level to the first bad one.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeGrowth {
    /// The node's title.
    pub title: String,
    /// Dify's `node_type`.
    pub node_type: String,
    /// Its p95 at the first level, ms.
    pub first_p95_ms: f64,
    /// Its p95 at the first bad level, ms.
    pub bad_p95_ms: f64,
    /// `bad_p95_ms / first_p95_ms`.
    pub ratio: f64,
}

/// The step being followed: its level and start, and the totals when its judged
/// seconds began.
#[derive(Debug)]
struct Open {
    level: u32,
    began: Duration,
    at_warm: Option<BTreeMap<NodeKey, NodeStats>>,
}

/// Node figures per hunt step, as the hunt runs.
#[derive(Debug, Default)]
pub struct NodeSteps {
    open: Option<Open>,
    rows: Vec<NodeStepRow>,
}

/// Every endpoint's node totals merged.
fn totals(agg: &Aggregator) -> BTreeMap<NodeKey, NodeStats> {
    let mut all = BTreeMap::new();
    for t in agg.endpoints.values() {
        merge_nodes(&mut all, &t.totals.counters.nodes);
    }
    all
}

/// `after - before`, node by node (what was added in between).
fn difference(
    after: &BTreeMap<NodeKey, NodeStats>,
    before: &BTreeMap<NodeKey, NodeStats>,
) -> BTreeMap<NodeKey, NodeStats> {
    let mut out = BTreeMap::new();
    for (k, a) in after {
        let mut d = a.clone();
        if let Some(b) = before.get(k) {
            for (x, y) in d.statuses.iter_mut().zip(b.statuses) {
                *x = x.saturating_sub(y);
            }
            d.tokens = d.tokens.saturating_sub(b.tokens);
            if let (Some(h), Some(bh)) = (d.elapsed.as_mut(), b.elapsed.as_ref()) {
                // `before` is a part of `after` (totals only grow): never below zero.
                if h.subtract(bh).is_err() {
                    d.elapsed = None;
                }
            }
        }
        if d.count() > 0 {
            out.insert(k.clone(), d);
        }
    }
    out
}

impl NodeSteps {
    /// Called each hunt tick, before the hunt moves on, with the step running
    /// (`level`, `began`; None while the last one is judged): copies the node totals
    /// once its warm-up is over.
    pub fn observe(&mut self, elapsed: Duration, running: Option<(u32, Duration)>, warmup: Duration, agg: &Aggregator) {
        let Some((level, began)) = running else {
            return;
        };
        if self.open.as_ref().is_none_or(|o| o.level != level || o.began != began) {
            self.open = Some(Open {
                level,
                began,
                at_warm: None,
            });
        }
        if let Some(open) = self.open.as_mut()
            && open.at_warm.is_none()
            && elapsed >= began + warmup
        {
            open.at_warm = Some(totals(agg));
        }
    }

    /// The step (`level`, `began`) ended (stable, or at its longest time): its rows are
    /// the node totals now less those at its warm-up's end. A step that ended before
    /// its warm-up did has no rows.
    pub fn close(&mut self, (level, began): (u32, Duration), agg: &Aggregator) {
        let Some(open) = self.open.take_if(|o| o.level == level && o.began == began) else {
            return;
        };
        let Some(before) = open.at_warm else {
            return;
        };
        let d = difference(&totals(agg), &before);
        self.rows.extend(d.iter().map(|(k, n)| NodeStepRow {
            level,
            start_s: began.as_secs_f64(),
            title: k.title.clone(),
            node_type: k.node_type.clone(),
            count: n.count(),
            failures: n.failures(),
            elapsed_ms: n.elapsed.as_ref().and_then(Percentiles::from_us),
        }));
    }

    /// Every node row so far, in step order.
    pub fn rows(&self) -> Vec<NodeStepRow> {
        self.rows.clone()
    }

    /// The nodes whose p95 grew fastest from the first level to `bad` (the first bad
    /// level), fastest first, at most three.
    pub fn growth(&self, bad: Option<u32>) -> Vec<NodeGrowth> {
        let (Some(bad), Some(first)) = (bad, self.rows.iter().map(|r| r.level).min()) else {
            return Vec::new();
        };
        let p95 = |level: u32, r: &NodeStepRow| {
            self.rows
                .iter()
                .find(|x| x.level == level && x.title == r.title && x.node_type == r.node_type)
                .and_then(|x| x.elapsed_ms)
                .map(|p| p.p95)
        };
        let mut grown: Vec<NodeGrowth> = self
            .rows
            .iter()
            .filter(|r| r.level == first)
            .filter_map(|r| {
                let (a, b) = (p95(first, r)?, p95(bad, r)?);
                (a > 0.0 && bad != first).then(|| NodeGrowth {
                    title: r.title.clone(),
                    node_type: r.node_type.clone(),
                    first_p95_ms: a,
                    bad_p95_ms: b,
                    ratio: b / a,
                })
            })
            .collect();
        grown.sort_by(|a, b| b.ratio.total_cmp(&a.ratio));
        grown.truncate(3);
        grown
    }
}

/// The verdict's words: "LLM p95 200 ms -> 1,450 ms (x7.3); Code ...".
pub fn growth_text(growth: &[NodeGrowth]) -> Option<String> {
    if growth.is_empty() {
        return None;
    }
    let parts: Vec<String> = growth
        .iter()
        .map(|g| {
            format!(
                "{} ({}) p95 {:.1} ms -> {:.1} ms (x{:.1})",
                g.title, g.node_type, g.first_p95_ms, g.bad_p95_ms, g.ratio
            )
        })
        .collect();
    Some(parts.join("; "))
}

/// The console's node rows per level and the nodes that grew fastest (nothing without
/// node data, so hunts without Dify nodes print as before).
pub fn render_console(out: &mut String, h: &super::HuntReport) {
    use std::fmt::Write;
    if h.node_steps.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "Where the time goes per level\n| {} | Node | Type | Count | Failures | P50 (ms) | P95 (ms) | P99 (ms) |\n|---|---|---|---|---|---|---|---|",
        h.level
    );
    let ms =
        |p: &Option<Percentiles>, f: fn(&Percentiles) -> f64| p.as_ref().map_or("-".into(), |p| format!("{:.1}", f(p)));
    for r in &h.node_steps {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.level,
            r.title,
            r.node_type,
            r.count,
            r.failures,
            ms(&r.elapsed_ms, |p| p.p50),
            ms(&r.elapsed_ms, |p| p.p95),
            ms(&r.elapsed_ms, |p| p.p99)
        );
    }
    if let Some(text) = growth_text(&h.nodes_grew) {
        let _ = writeln!(out, "Nodes whose p95 grew fastest up to the first bad level: {text}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::testing::one_second;
    use barrage_common::metrics::{EndpointStats, NodeRun, NodeStatus};
    use barrage_common::plan::TaskKindTag;

    fn stats(llm_us: u64, code_us: u64, n: u64) -> EndpointStats {
        let mut s = EndpointStats::default();
        for _ in 0..n {
            for (title, us) in [("LLM", llm_us), ("Code", code_us)] {
                s.record_node(&NodeRun {
                    title,
                    node_type: "x",
                    status: NodeStatus::Succeeded,
                    elapsed_us: Some(us),
                    tokens: 0,
                    position: 1,
                });
            }
        }
        s
    }

    #[test]
    fn each_step_gets_its_own_node_figures_and_the_fastest_growth_is_named() {
        let mut agg = Aggregator::new(1);
        let mut steps = NodeSteps::default();
        let warm = Duration::from_secs(2);
        let s = |x: u64| Duration::from_secs(x);
        let mut seq = 0;
        let mut add = |agg: &mut Aggregator, s: EndpointStats| {
            seq += 1;
            agg.merge(&one_second(1, seq, 0, "/wf", TaskKindTag::Sse, &s));
        };
        // Level 10: LLM 200 ms, Code 30 ms; warm-up data before the snapshot.
        add(&mut agg, stats(900_000, 900_000, 5));
        steps.observe(s(2), Some((10, s(0))), warm, &agg);
        add(&mut agg, stats(200_000, 30_000, 20));
        steps.observe(s(10), Some((10, s(0))), warm, &agg);
        steps.close((10, s(0)), &agg);
        // Level 20: LLM 1,000 ms, Code 33 ms; it ends early (stable) at 16 s.
        steps.observe(s(12), Some((20, s(10))), warm, &agg);
        add(&mut agg, stats(1_000_000, 33_000, 30));
        steps.close((20, s(10)), &agg);
        // A step that ends before its warm-up is over has no rows.
        steps.observe(s(17), Some((30, s(16))), warm, &agg);
        add(&mut agg, stats(1_000_000, 33_000, 30));
        steps.close((30, s(16)), &agg);
        let rows = steps.rows();
        assert_eq!(rows.len(), 4);
        let llm10 = rows.iter().find(|r| r.level == 10 && r.title == "LLM").unwrap();
        assert_eq!(llm10.count, 20, "the warm-up's executions are not the step's");
        assert!((llm10.elapsed_ms.unwrap().p95 - 200.0).abs() < 0.5);
        let g = steps.growth(Some(20));
        assert_eq!(g[0].title, "LLM");
        assert!((g[0].ratio - 5.0).abs() < 0.05, "{g:?}");
        assert!(
            growth_text(&g)
                .unwrap()
                .starts_with("LLM (x) p95 200.1 ms -> 1000.4 ms (x5.0)"),
            "{:?}",
            growth_text(&g)
        );
    }
}
