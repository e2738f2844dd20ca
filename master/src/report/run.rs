//! What the run hands the report: what it was asked to do ([`RunInfo`]), how it ended
//! ([`RunSummary`]) and who took part ([`Roster`]), so the report is built from these and
//! the aggregate without reaching into the cluster or the controller.

use std::collections::BTreeMap;
use std::time::Duration;

use barrage_common::scenario::Arrival;

use crate::aggregate::{EndpointKey, events_per_request_of};
use crate::threshold_eval::ThresholdRow;

/// How the run ended, for the report.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// How long the run lasted, from the start of load to the stop.
    pub duration: Duration,
    /// Why it stopped, in words (`run time reached`, `interrupted`, ...).
    pub stop_reason: String,
    /// Workers whose final report never arrived (lost or timed out).
    pub missing_finals: Vec<String>,
    /// Why the run ended as a cluster error (exit code 3): a worker lost under
    /// `--on-worker-loss abort`, or every worker lost.
    pub aborted: Option<String>,
    /// The `abort_on_fail` threshold that stopped the run, as it stood then.
    pub threshold_abort: Option<ThresholdRow>,
    /// The open model's schedule as it ended (rate changes included).
    pub arrival: Option<Arrival>,
}

/// The cluster as the report shows it: who took part and what happened, copied out of
/// the registry at the end of the run (the report does not reach into the cluster).
#[derive(Debug, Clone, Default)]
pub struct Roster {
    /// Every worker that joined, lost ones included.
    pub workers: Vec<RosterWorker>,
    /// Cluster events (joins, losses, rebalances, web commands) at their run time.
    pub events: Vec<(Duration, String)>,
}

/// One worker of the [`Roster`].
#[derive(Debug, Clone)]
pub struct RosterWorker {
    /// The worker's id (`HOSTNAME-PID-RANDOM` unless set).
    pub id: String,
    /// Its place in join order, the cluster-wide index its users are numbered from.
    pub index: u32,
    /// The host it said it runs on.
    pub hostname: String,
    /// CPU cores it said it has.
    pub cores: u32,
    /// Local addresses its target connections bind to (`--source-addresses`; 0 = not
    /// set, the kernel picks).
    pub source_addresses: u32,
    /// Written off (silent past the liveness timeout, or replaced).
    pub lost: bool,
}

/// What the run was asked to do.
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// The scenario file as given on the command line.
    pub scenario: String,
    /// `--host`, overriding the scenario's (None: the scenario's own).
    pub host: Option<String>,
    /// Users asked for, cluster-wide (closed model; 0 with an arrival rate).
    pub users: u32,
    /// Users started per second while ramping up.
    pub spawn_rate: f64,
    /// The open model's schedule and cap (None: closed model, users).
    pub arrival: Option<Arrival>,
    /// `events_per_request` of each stats row (name, method) that is not 1.
    pub events_per_request: BTreeMap<(String, String), u32>,
    /// The load changes by design (a shape, arrival stages, the hunt's steps): the
    /// drift table would compare different loads, so such a run has none.
    pub load_varies: bool,
}

impl RunInfo {
    /// The `events_per_request` of stats row `k` (1 unless the plan says otherwise).
    pub(crate) fn events_per_request_of(&self, k: &EndpointKey) -> u32 {
        events_per_request_of(&self.events_per_request, k)
    }
}
