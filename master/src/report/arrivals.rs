//! The open model's figures in the report ([`ArrivalFigures`]): arrivals the schedule
//! made due over the run (from the last reset of the statistics) and those the workers
//! dropped at the in-flight cap.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use barrage_common::arrival_schedule::Schedule;
use barrage_common::scenario::Arrival;

use crate::aggregate::Aggregator;

/// The open model's arrivals over the run, for the report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ArrivalFigures {
    /// Arrivals the schedule put within the run (ceil of the rate's integral).
    pub due: u64,
    /// Arrivals not started because the in-flight cap was reached.
    pub dropped: u64,
    /// Cluster-wide cap on iterations in flight.
    pub max_in_flight: u32,
    /// The schedule's start rate, arrivals per second.
    pub start_rate: f64,
    /// Each stage of the schedule as (seconds, rate it reaches).
    pub stages: Vec<(f64, f64)>,
}

impl ArrivalFigures {
    /// The figures of `arrival` (its schedule as it ran) over a run of `duration`, with
    /// what the workers reported.
    pub fn new(arrival: &Arrival, duration: Duration, agg: &Aggregator) -> Self {
        ArrivalFigures {
            due: arrivals_due(&arrival.schedule, duration, agg.last_arrival_due_us)
                .saturating_sub(arrivals_before(&arrival.schedule, agg.stats_since_s)),
            dropped: agg.dropped_iterations,
            max_in_flight: arrival.max_in_flight,
            start_rate: arrival.schedule.start_rate,
            stages: arrival
                .schedule
                .stages
                .iter()
                .map(|s| (s.duration.as_secs_f64(), s.rate))
                .collect(),
        }
    }
}

/// Arrivals the schedule made due in the run: those before the master's stop, and
/// any a worker still started or dropped after it (the Stop takes a moment to reach
/// the workers), so started + dropped never exceed it. Arrival `i` is due when the
/// rate's integral reaches `i`.
fn arrivals_due(schedule: &Schedule, duration: Duration, last_due_us: i64) -> u64 {
    let by_stop = schedule.cumulative(duration.as_secs_f64()).ceil().max(0.0) as u64;
    if last_due_us <= 0 {
        return by_stop;
    }
    // Through the last arrival handled: its index, plus one (a hair of slack for the
    // float integral landing just under a whole number).
    let through_last = (schedule.cumulative(last_due_us as f64 / 1e6) + 1e-6).floor().max(0.0) as u64 + 1;
    by_stop.max(through_last)
}

/// Arrivals due before `since_s` (a "reset statistics"): the started and dropped counts
/// start again there, so the due count does too. Arrival `i` is due when the integral
/// reaches `i`, so those before are the integral rounded up.
fn arrivals_before(schedule: &Schedule, since_s: f64) -> u64 {
    if since_s <= 0.0 {
        return 0;
    }
    schedule.cumulative(since_s).ceil().max(0.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrivals_due_cover_those_fired_after_the_stop() {
        let ten = Schedule::constant(10.0);
        let two_s = Duration::from_secs(2);
        // Arrivals 0..=19 are due before 2 s.
        assert_eq!(arrivals_due(&ten, two_s, 0), 20);
        assert_eq!(arrivals_due(&ten, two_s, 1_500_000), 20);
        // Arrival 23 (due at 2.3 s) was still fired: 0..=23 are due.
        assert_eq!(arrivals_due(&ten, two_s, 2_300_000), 24);
    }
}
