//! Where a Dify workflow's time goes, node by node ([`NodeStats`], keyed by
//! [`NodeKey`]): per endpoint and per node (title and type), an HDR histogram of the
//! node's own `elapsed_time`, its executions by status, and its tokens.
//!
//! Titles and types come from the target, so the map is bounded like event types:
//! both cut to [`bounds::MAX_NODE_NAME`] bytes, and past [`bounds::MAX_NODES`] nodes the
//! rest count under `((other), (other))`. Bounding never changes a count.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

use super::histogram::{MAX_TRACKABLE_US, new_histogram};
use crate::bounds;

/// A node of a workflow as reports name it: its title and its type (`LLM`, `llm`).
/// Two nodes with one title and one type share a row, as they would on Dify's canvas.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct NodeKey {
    /// The node's `title` as the workflow names it, at most [`bounds::MAX_NODE_NAME`] bytes.
    pub title: String,
    /// Dify's `node_type` (`start`, `llm`, `code`, `iteration`, ...), bounded alike.
    pub node_type: String,
}

/// How a node execution ended, by Dify's `status` of `node_finished`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeStatus {
    /// `succeeded`.
    Succeeded = 0,
    /// `failed`: the node failed and so did the run (unless an error branch took it).
    Failed = 1,
    /// `exception`: the node failed and its error strategy went on.
    Exception = 2,
    /// `stopped`: the run was stopped while the node ran.
    Stopped = 3,
    /// Any other status, or none.
    Other = 4,
}

/// How many statuses are counted: the length of [`NodeStats::statuses`].
pub const NODE_STATUS_COUNT: usize = 5;

impl NodeStatus {
    /// Every status, in index order.
    pub const ALL: [NodeStatus; NODE_STATUS_COUNT] = [
        NodeStatus::Succeeded,
        NodeStatus::Failed,
        NodeStatus::Exception,
        NodeStatus::Stopped,
        NodeStatus::Other,
    ];

    /// The status Dify wrote (`None`: it wrote none).
    pub fn parse(status: Option<&str>) -> NodeStatus {
        match status {
            Some("succeeded") => NodeStatus::Succeeded,
            Some("failed") => NodeStatus::Failed,
            Some("exception") => NodeStatus::Exception,
            Some("stopped") => NodeStatus::Stopped,
            _ => NodeStatus::Other,
        }
    }

    /// The status as reports and saved files name it.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Succeeded => "succeeded",
            NodeStatus::Failed => "failed",
            NodeStatus::Exception => "exception",
            NodeStatus::Stopped => "stopped",
            NodeStatus::Other => "other",
        }
    }
}

/// One node execution as a stream told it (`node_finished`, `iteration_completed`,
/// `loop_completed`): what [`NodeStats::record`] takes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NodeRun<'a> {
    /// The node's `title`.
    pub title: &'a str,
    /// The node's `node_type`.
    pub node_type: &'a str,
    /// Its status.
    pub status: NodeStatus,
    /// The node's own `elapsed_time`, µs (`None`: the target sent none or nonsense).
    pub elapsed_us: Option<u64>,
    /// `execution_metadata.total_tokens` (0: none).
    pub tokens: u64,
    /// Where the node first finished in its stream (1 = first), to list nodes in
    /// workflow order: Dify 1.14.1 sends `index: 1` for every node.
    pub position: u32,
}

/// Everything recorded for one node of one endpoint.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeStats {
    /// Executions by [`NodeStatus`] (indexed by `status as usize`).
    pub statuses: [u64; NODE_STATUS_COUNT],
    /// Tokens the node reported (`execution_metadata.total_tokens`), summed.
    pub tokens: u64,
    /// The node's own `elapsed_time`, µs; `None` until one is recorded.
    pub elapsed: Option<Histogram<u64>>,
    /// The earliest position the node finished at in a stream (1 = first; 0 = not
    /// known): the table's order.
    pub position: u32,
}

impl NodeStats {
    /// Executions counted, whatever their status.
    pub fn count(&self) -> u64 {
        self.statuses.iter().fold(0, |a, b| a.saturating_add(*b))
    }

    /// Executions that did not succeed (failed, exception, stopped, other).
    pub fn failures(&self) -> u64 {
        self.count() - self.statuses[NodeStatus::Succeeded as usize]
    }

    /// Adds one execution.
    fn record(&mut self, run: &NodeRun<'_>) {
        self.statuses[run.status as usize] += 1;
        self.tokens = self.tokens.saturating_add(run.tokens);
        if let Some(us) = run.elapsed_us {
            let h = self.elapsed.get_or_insert_with(new_histogram);
            // Auto-resizing histograms accept any u64 above 0.
            let _ = h.record(us.clamp(1, MAX_TRACKABLE_US));
        }
        self.position = min_position(self.position, run.position);
    }

    /// Adds `other` into `self`: counts add, histograms merge bucket by bucket.
    pub fn merge(&mut self, other: &NodeStats) {
        for (mine, theirs) in self.statuses.iter_mut().zip(other.statuses) {
            *mine = mine.saturating_add(theirs);
        }
        self.tokens = self.tokens.saturating_add(other.tokens);
        if let Some(theirs) = &other.elapsed {
            // Both auto-resize: add only fails for non-resizing histograms.
            let _ = self.elapsed.get_or_insert_with(new_histogram).add(theirs);
        }
        self.position = min_position(self.position, other.position);
    }
}

/// The earlier of two positions, 0 meaning unknown.
fn min_position(a: u32, b: u32) -> u32 {
    match (a, b) {
        (0, p) | (p, 0) => p,
        (a, b) => a.min(b),
    }
}

/// The key `title` and `node_type` count under in `map`, bounded: both cut to
/// [`bounds::MAX_NODE_NAME`] bytes, and a new node past [`bounds::MAX_NODES`] counts
/// under `((other), (other))`. Also says whether it clipped anything.
pub fn node_key<V>(map: &BTreeMap<NodeKey, V>, title: &str, node_type: &str) -> (NodeKey, bool) {
    let t = bounds::clip_name(title, bounds::MAX_NODE_NAME);
    let ty = bounds::clip_name(node_type, bounds::MAX_NODE_NAME);
    let mut key = NodeKey {
        title: t.to_string(),
        node_type: ty.to_string(),
    };
    let mut clipped = t.len() != title.len() || ty.len() != node_type.len();
    if !map.contains_key(&key) && map.len() >= bounds::MAX_NODES {
        clipped = true;
        key = NodeKey {
            title: bounds::OTHER.to_string(),
            node_type: bounds::OTHER.to_string(),
        };
    }
    (key, clipped)
}

/// Records one node execution into `map`, bounded as [`node_key`].
pub fn record_node(map: &mut BTreeMap<NodeKey, NodeStats>, run: &NodeRun<'_>) {
    let (key, _) = node_key(map, run.title, run.node_type);
    map.entry(key).or_default().record(run);
}

/// Adds `other`'s nodes into `map`, bounded as [`node_key`].
pub fn merge_nodes(map: &mut BTreeMap<NodeKey, NodeStats>, other: &BTreeMap<NodeKey, NodeStats>) {
    for (k, v) in other {
        match map.get_mut(k) {
            Some(mine) => mine.merge(v),
            None => {
                let (key, _) = node_key(map, &k.title, &k.node_type);
                map.entry(key).or_default().merge(v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(title: &str, us: u64, status: NodeStatus, position: u32) -> NodeRun<'_> {
        NodeRun {
            title,
            node_type: "code",
            status,
            elapsed_us: Some(us),
            tokens: 3,
            position,
        }
    }

    #[test]
    fn a_node_counts_by_status_and_keeps_its_earliest_position() {
        let mut map = BTreeMap::new();
        record_node(&mut map, &run("Code", 30_000, NodeStatus::Succeeded, 2));
        record_node(&mut map, &run("Code", 40_000, NodeStatus::Failed, 3));
        let mut other = BTreeMap::new();
        record_node(&mut other, &run("Code", 50_000, NodeStatus::Exception, 1));
        merge_nodes(&mut map, &other);
        let s = &map[&NodeKey {
            title: "Code".into(),
            node_type: "code".into(),
        }];
        assert_eq!((s.count(), s.failures(), s.tokens, s.position), (3, 2, 9, 1));
        assert_eq!(s.elapsed.as_ref().map(Histogram::len), Some(3));
    }

    #[test]
    fn names_and_node_counts_are_bounded_without_losing_a_count() {
        let mut map = BTreeMap::new();
        let long = "é".repeat(100);
        for i in 0..(bounds::MAX_NODES + 10) {
            let title = format!("{long}{i:03}");
            record_node(&mut map, &run(&title, 1_000, NodeStatus::Succeeded, 1));
        }
        // Every long title shares its clipped prefix: one key, all counts kept.
        assert_eq!(map.len(), 1);
        for i in 0..(bounds::MAX_NODES + 10) {
            record_node(&mut map, &run(&format!("n{i}"), 1_000, NodeStatus::Succeeded, 1));
        }
        assert_eq!(map.len(), bounds::MAX_NODES + 1);
        assert!(map.keys().all(|k| k.title.len() <= bounds::MAX_NODE_NAME));
        let total: u64 = map.values().map(NodeStats::count).sum();
        assert_eq!(total, 2 * (bounds::MAX_NODES as u64 + 10));
        assert!(map.keys().any(|k| k.title == bounds::OTHER));
    }
}
