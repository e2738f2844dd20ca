//! Whether a report's figures are everything the workers recorded ([`Completeness`]):
//! the reasons data is missing (reports lost, refused or never sent, workers written
//! off before their data arrived), which make the run's exit code 3.

use serde::{Deserialize, Serialize};

use super::run::{Roster, RunInfo, RunSummary};
use crate::aggregate::Aggregator;

/// Whether a report's figures are everything the workers recorded.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Completeness {
    /// Complete, or incomplete with the reasons below.
    pub verdict: Verdict,
    /// Why data is missing, one line each (empty when complete).
    pub reasons: Vec<String>,
    /// Fields bounded or refused without losing a count (texts past their bounds,
    /// keys past a cap, non-finite gauges, intervals off the run clock).
    pub clipped: u64,
}

/// The completeness verdict, saved as `complete` / `incomplete`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every count the workers recorded is in the figures.
    #[default]
    Complete,
    /// Some data was lost: the run's exit code is 3.
    Incomplete,
}

impl Completeness {
    /// The verdict of `reasons` (complete when there is none), with `clipped` fields.
    pub fn new(reasons: Vec<String>, clipped: u64) -> Self {
        Completeness {
            verdict: if reasons.is_empty() {
                Verdict::Complete
            } else {
                Verdict::Incomplete
            },
            reasons,
            clipped,
        }
    }

    /// Whether nothing was lost.
    pub fn is_complete(&self) -> bool {
        self.verdict == Verdict::Complete
    }

    /// The run's completeness: what the aggregate knows was lost, workers written off
    /// in the roster, finals that never came, and a run meant to send load that
    /// reported no request (`requests`: the Aggregated row's).
    pub(crate) fn of_run(
        agg: &Aggregator,
        roster: &Roster,
        info: &RunInfo,
        summary: &RunSummary,
        requests: u64,
    ) -> Self {
        let written_off = roster.workers.iter().filter(|w| w.lost).map(|w| w.id.as_str());
        let mut lost = agg.data_loss(written_off);
        for id in &summary.missing_finals {
            lost.push(format!(
                "worker {id} sent no final report: its last interval is not counted"
            ));
        }
        if requests == 0 && (info.users > 0 || info.arrival.is_some()) {
            lost.push("no request was reported, although the run was meant to send load".into());
        }
        Completeness::new(lost, agg.clipped)
    }
}
