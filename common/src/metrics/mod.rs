//! What Barrage measures and how it travels: metric names, the HDR histogram codec,
//! and the mergeable unit of measurement, [`EndpointStats`].
//!
//! Workers record into `EndpointStats`, ship one per endpoint per interval (as
//! `EndpointDelta`, see [`crate::wire`]), and the master merges them.
//!
//! - `metric`: the histograms recorded ([`Metric`]) and their names.
//! - `failure_kind`: the failure kinds a worker reports ([`FailureKind`]).
//! - `histogram`: Barrage's histogram parameters, V2 encoding and the checked decoder.
//! - `counts`: the plain counters ([`Counts`]), added on merge.
//! - `outcomes`: failures and outcomes by (kind, detail), bounded.
//! - `nodes`: where a Dify workflow's time goes, per node ([`NodeStats`]), bounded.
//! - `stats`: [`EndpointStats`], recording and merging.

mod counts;
mod failure_kind;
mod histogram;
mod metric;
mod nodes;
mod outcomes;
mod stats;

pub use counts::Counts;
pub use failure_kind::{FailureKind, UnknownFailureKind};
pub use histogram::{
    Accum, Buckets, MAX_DECODED_US, MAX_TRACKABLE_US, SIGFIG, decode_buckets, decode_histogram, encode_histogram,
    new_histogram,
};
pub use metric::{METRIC_COUNT, Metric};
pub use nodes::{NODE_STATUS_COUNT, NodeKey, NodeRun, NodeStats, NodeStatus, merge_nodes, node_key, record_node};
pub use outcomes::{FailureEntry, MAX_OUTCOME_KEYS, OTHER_DETAIL, OutcomeKey};
pub use stats::{EndpointStats, add_event_type};
