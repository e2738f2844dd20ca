//! Dify node figures as saved to disk (`merged.<row>.nodes` of a `--json` report) and
//! read back: counters as numbers, the elapsed histogram as base64 HdrHistogram V2, as
//! [`crate::saved`] saves the rest. Read back through the same bounds as the wire.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::metrics::{NodeKey, NodeStats, NodeStatus, decode_histogram, encode_histogram, merge_nodes, node_key};

/// One node of a saved stats row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedNode {
    /// The node's title.
    pub title: String,
    /// Dify's `node_type`.
    pub node_type: String,
    /// Executions by status: `succeeded`, `failed`, `exception`, `stopped`, `other`.
    pub statuses: BTreeMap<String, u64>,
    /// Tokens the node reported, summed.
    pub tokens: u64,
    /// The node's own elapsed time, µs, base64 HdrHistogram V2 ("" when none).
    pub elapsed: String,
    /// The earliest place the node finished at in a stream (1 = first, 0 = unknown).
    pub position: u32,
}

/// A stats row's nodes as saved.
pub fn save_nodes(nodes: &BTreeMap<NodeKey, NodeStats>) -> Vec<SavedNode> {
    nodes
        .iter()
        .map(|(k, n)| SavedNode {
            title: k.title.clone(),
            node_type: k.node_type.clone(),
            statuses: NodeStatus::ALL
                .iter()
                .filter(|s| n.statuses[**s as usize] > 0)
                .map(|s| (s.as_str().to_string(), n.statuses[*s as usize]))
                .collect(),
            tokens: n.tokens,
            elapsed: n
                .elapsed
                .as_ref()
                .map(|h| STANDARD.encode(encode_histogram(h)))
                .unwrap_or_default(),
            position: n.position,
        })
        .collect()
}

/// A saved row's nodes read back, bounded as the wire bounds them; a corrupt histogram
/// is an error naming the node.
pub fn load_nodes(list: &[SavedNode]) -> Result<BTreeMap<NodeKey, NodeStats>> {
    let mut map = BTreeMap::new();
    for n in list {
        let malformed = |message: String| Error::Histogram {
            metric: format!("node `{}` elapsed", crate::bounds::clip_name(&n.title, 64)),
            message,
        };
        let elapsed = if n.elapsed.is_empty() {
            None
        } else {
            let bytes = STANDARD
                .decode(&n.elapsed)
                .map_err(|e| malformed(format!("not base64: {e}")))?;
            Some(decode_histogram("node elapsed", &bytes)?)
        };
        let mut statuses = [0u64; crate::metrics::NODE_STATUS_COUNT];
        for (name, count) in &n.statuses {
            let s = NodeStatus::parse(Some(name));
            statuses[s as usize] = statuses[s as usize].saturating_add(*count);
        }
        let node = NodeStats {
            statuses,
            tokens: n.tokens,
            elapsed,
            position: n.position,
        };
        let (key, _) = node_key(&map, &n.title, &n.node_type);
        merge_nodes(&mut map, &BTreeMap::from([(key, node)]));
    }
    Ok(map)
}
