//! The open model's figures in the report ([`ArrivalFigures`]): arrivals the schedule
//! made due over the run (from the last reset of the statistics) and those the workers
//! dropped at the in-flight cap.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use barrage_common::arrival_process::{ArrivalProcess, ArrivalSequence};
use barrage_common::arrival_schedule::Schedule;
use barrage_common::arrival_trace::Trace;
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
    /// How the arrivals were spaced, `poisson` or `gamma` (absent: the constant rate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<String>,
    /// The gamma process's shape k (coefficient of variation 1/sqrt(k)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burstiness: Option<f64>,
    /// The seed the random process was drawn from: `seed = N` repeats the run's arrivals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// The trace replayed instead of a rate (absent: arrivals on the schedule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<TraceFigures>,
}

/// A replayed arrival trace, as the report names it: which, how long, how many.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceFigures {
    /// The trace file's name (no directories).
    pub file: String,
    /// Its arrivals (lines), whether or not the run lasted to the last.
    pub lines: u64,
    /// Seconds from the run start to its last arrival.
    pub span_s: f64,
}

impl ArrivalFigures {
    /// The figures of `arrival` (its schedule as it ran) over a run of `duration`, with
    /// what the workers reported.
    pub fn new(arrival: &Arrival, duration: Duration, agg: &Aggregator) -> Self {
        if let Some(trace) = &arrival.trace {
            return ArrivalFigures::replayed(trace, arrival.max_in_flight, duration, agg);
        }
        let random = arrival.process.is_random();
        let mut seq = ArrivalSequence::new(arrival.process, arrival.seed.unwrap_or(0));
        ArrivalFigures {
            due: arrivals_due(&arrival.schedule, &mut seq, duration, agg.last_arrival_due_us)
                .saturating_sub(arrivals_before(&arrival.schedule, &mut seq, agg.stats_since_s)),
            dropped: agg.dropped_iterations,
            max_in_flight: arrival.max_in_flight,
            start_rate: arrival.schedule.start_rate,
            stages: arrival
                .schedule
                .stages
                .iter()
                .map(|s| (s.duration.as_secs_f64(), s.rate))
                .collect(),
            process: random.then(|| arrival.process.name().to_string()),
            burstiness: match arrival.process {
                ArrivalProcess::Gamma { shape } => Some(shape),
                _ => None,
            },
            seed: arrival.seed.filter(|_| random),
            trace: None,
        }
    }

    /// The figures of a replayed `trace`: due are its lines before the stop, or
    /// through the last a worker still handled after it, from the last reset on.
    fn replayed(trace: &Trace, max_in_flight: u32, duration: Duration, agg: &Aggregator) -> Self {
        let through_last = u64::try_from(agg.last_arrival_due_us).map_or(0, |us| trace.count_through(us));
        let due = trace.count_before(duration).max(through_last);
        let before = trace.count_before(Duration::from_secs_f64(agg.stats_since_s.max(0.0)));
        ArrivalFigures {
            due: due.saturating_sub(before),
            dropped: agg.dropped_iterations,
            max_in_flight,
            start_rate: 0.0,
            stages: Vec::new(),
            process: None,
            burstiness: None,
            seed: None,
            trace: Some(TraceFigures {
                file: trace.name.clone(),
                lines: trace.lines.len() as u64,
                span_s: trace.span().as_secs_f64(),
            }),
        }
    }
}

/// Arrivals the schedule made due in the run: those before the master's stop, and
/// any a worker still started or dropped after it (the Stop takes a moment to reach
/// the workers), so started + dropped never exceed it. Arrival `i` is due when the
/// rate's integral reaches `i` (the constant rate) or the sequence's unit time of `i`.
fn arrivals_due(schedule: &Schedule, seq: &mut ArrivalSequence, duration: Duration, last_due_us: i64) -> u64 {
    let by_stop = seq.count_before(schedule.cumulative(duration.as_secs_f64()));
    if last_due_us <= 0 {
        return by_stop;
    }
    // Through the last arrival handled: its index, plus one (a hair of slack for the
    // float integral landing just under a whole number).
    let through_last = seq.count_through(schedule.cumulative(last_due_us as f64 / 1e6) + 1e-6);
    by_stop.max(through_last)
}

/// Arrivals due before `since_s` (a "reset statistics"): the started and dropped counts
/// start again there, so the due count does too. Arrival `i` is due when the integral
/// reaches `i`, so those before are the integral rounded up (the constant rate).
fn arrivals_before(schedule: &Schedule, seq: &mut ArrivalSequence, since_s: f64) -> u64 {
    if since_s <= 0.0 {
        return 0;
    }
    seq.count_before(schedule.cumulative(since_s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrivals_due_cover_those_fired_after_the_stop() {
        let ten = Schedule::constant(10.0);
        let two_s = Duration::from_secs(2);
        let seq = &mut ArrivalSequence::new(ArrivalProcess::Constant, 0);
        // Arrivals 0..=19 are due before 2 s.
        assert_eq!(arrivals_due(&ten, seq, two_s, 0), 20);
        assert_eq!(arrivals_due(&ten, seq, two_s, 1_500_000), 20);
        // Arrival 23 (due at 2.3 s) was still fired: 0..=23 are due.
        assert_eq!(arrivals_due(&ten, seq, two_s, 2_300_000), 24);
    }

    #[test]
    fn poisson_arrivals_due_are_counted_from_the_seeded_sequence() {
        let ten = Schedule::constant(10.0);
        let mut seq = ArrivalSequence::new(ArrivalProcess::Poisson, 42);
        let times: Vec<f64> = (0..40).map(|i| ten.time_at(seq.unit_time(i)).unwrap()).collect();
        let before = |t: f64| times.iter().filter(|&&x| x < t).count() as u64;
        let two_s = Duration::from_secs(2);
        assert_eq!(arrivals_due(&ten, &mut seq, two_s, 0), before(2.0));
        // The 30th arrival was fired after the stop: 0..=29 are due.
        let last_us = (times[29] * 1e6).round() as i64;
        assert_eq!(
            arrivals_due(&ten, &mut seq, Duration::from_secs_f64(times[29] / 2.0), last_us),
            30
        );
        assert_eq!(arrivals_before(&ten, &mut seq, 1.0), before(1.0));
    }
}
