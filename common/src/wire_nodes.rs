//! Dify node figures on the wire (`EndpointDelta.nodes`, [`v1::NodeDelta`]) both ways.
//! Decoding bounds a peer's nodes as event types are bounded: titles and types clipped
//! to [`bounds::MAX_NODE_NAME`], nodes past [`bounds::MAX_NODES`] folded into
//! `((other), (other))`, each change counted in `clipped`; a count above
//! [`bounds::MAX_COUNT`] or a bad histogram refuses the whole delta.

use std::collections::BTreeMap;

use barrage_proto::v1;

use crate::bounds;
use crate::error::{Error, Result};
use crate::metrics::{NodeKey, NodeStats, NodeStatus, decode_histogram, encode_histogram, merge_nodes, node_key};

/// The nodes of one endpoint's stats as the delta carries them.
pub fn nodes_to_proto(nodes: &BTreeMap<NodeKey, NodeStats>) -> Vec<v1::NodeDelta> {
    nodes
        .iter()
        .map(|(k, n)| {
            let s = |status: NodeStatus| n.statuses[status as usize];
            v1::NodeDelta {
                title: k.title.clone(),
                node_type: k.node_type.clone(),
                succeeded: s(NodeStatus::Succeeded),
                failed: s(NodeStatus::Failed),
                exception: s(NodeStatus::Exception),
                stopped: s(NodeStatus::Stopped),
                other_status: s(NodeStatus::Other),
                tokens: n.tokens,
                elapsed_hdr_v2: n
                    .elapsed
                    .as_ref()
                    .filter(|h| !h.is_empty())
                    .map(encode_histogram)
                    .unwrap_or_default(),
                position: n.position,
            }
        })
        .collect()
}

/// A peer's node deltas as a bounded map (see the module doc). `Err` when a count is
/// impossible or a histogram does not decode: the caller refuses the whole delta.
pub fn nodes_from_proto(list: &[v1::NodeDelta], clipped: &mut u64) -> Result<BTreeMap<NodeKey, NodeStats>> {
    let mut map: BTreeMap<NodeKey, NodeStats> = BTreeMap::new();
    for d in list {
        let statuses = [d.succeeded, d.failed, d.exception, d.stopped, d.other_status];
        if statuses.iter().chain([&d.tokens]).any(|c| *c > bounds::MAX_COUNT) {
            return Err(Error::Protocol(format!(
                "node `{}`: a count above {}",
                bounds::clip_name(&d.title, 40),
                bounds::MAX_COUNT
            )));
        }
        let elapsed = if d.elapsed_hdr_v2.is_empty() {
            None
        } else {
            Some(decode_histogram("node elapsed", &d.elapsed_hdr_v2)?)
        };
        let node = NodeStats {
            statuses,
            tokens: d.tokens,
            elapsed,
            position: d.position,
        };
        let (key, clip) = node_key(&map, &d.title, &d.node_type);
        if clip {
            *clipped += 1;
        }
        // Through `merge_nodes`, which bounds again: one rule for every path in.
        merge_nodes(&mut map, &BTreeMap::from([(key, node)]));
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{NodeRun, record_node};

    #[test]
    fn nodes_roundtrip() {
        let mut map = BTreeMap::new();
        for (us, status) in [(200_000, NodeStatus::Succeeded), (210_000, NodeStatus::Failed)] {
            record_node(
                &mut map,
                &NodeRun {
                    title: "LLM",
                    node_type: "llm",
                    status,
                    elapsed_us: Some(us),
                    tokens: 40,
                    position: 2,
                },
            );
        }
        let mut clipped = 0;
        let back = nodes_from_proto(&nodes_to_proto(&map), &mut clipped).unwrap();
        assert_eq!(back, map);
        assert_eq!(clipped, 0);
    }

    #[test]
    fn a_peers_nodes_are_bounded_and_impossible_counts_refused() {
        let list: Vec<v1::NodeDelta> = (0..100)
            .map(|i| v1::NodeDelta {
                title: format!("{}{i}", "t".repeat(if i == 0 { 100 } else { 3 })),
                node_type: "code".into(),
                succeeded: 1,
                ..Default::default()
            })
            .collect();
        let mut clipped = 0;
        let map = nodes_from_proto(&list, &mut clipped).unwrap();
        assert_eq!(map.len(), bounds::MAX_NODES + 1);
        assert_eq!(map.values().map(NodeStats::count).sum::<u64>(), 100);
        assert_eq!(clipped, 1 + (100 - bounds::MAX_NODES as u64));
        let bad = [v1::NodeDelta {
            title: "x".into(),
            failed: bounds::MAX_COUNT + 1,
            ..Default::default()
        }];
        assert!(nodes_from_proto(&bad, &mut clipped).is_err());
        let bad = [v1::NodeDelta {
            title: "x".into(),
            elapsed_hdr_v2: vec![1, 2, 3],
            ..Default::default()
        }];
        assert!(nodes_from_proto(&bad, &mut clipped).is_err());
    }
}
