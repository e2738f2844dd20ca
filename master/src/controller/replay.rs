//! The end of a trace replay: once the trace's last arrival was fired (a worker
//! reported it) the run stops, and the graceful stop lets the requests in flight
//! finish (up to `--stop-timeout`), so the run ends after the last arrival's requests
//! or at `-t`, whichever is first.

use std::time::Duration;

use barrage_common::scenario::Arrival;

/// Wait after the last line's offset before stopping: room for a worker's run clock
/// being behind the master's by the Assign's trip, so a line due with the last is not
/// cut off by the stop.
const TAIL: Duration = Duration::from_millis(250);

/// Stop this long after the last line's offset even if no worker reported firing it
/// (a worker lost, or the statistics reset since): the replay cannot go on past it.
const GIVE_UP: Duration = Duration::from_secs(5);

/// Why the run ends now, at `elapsed`, if it replays a trace whose last arrival is
/// past: fired (`last_due_us`, the latest due time the workers reported handling, µs
/// on the run clock) or given up on.
pub(super) fn finished(arrival: Option<&Arrival>, elapsed: Duration, last_due_us: i64) -> Option<String> {
    let trace = arrival?.trace.as_ref()?;
    let span = trace.span();
    if elapsed < span + TAIL {
        return None;
    }
    let span_us = i64::try_from(span.as_micros()).unwrap_or(i64::MAX);
    // The worker rounds the due time through seconds as f64: allow a µs either way.
    let fired = last_due_us >= span_us - 1;
    (fired || elapsed >= span + GIVE_UP).then(|| {
        format!(
            "trace {} replayed ({} arrivals over {})",
            trace.name,
            trace.lines.len(),
            barrage_common::duration::format(span)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use barrage_common::arrival_trace::Trace;
    use std::sync::Arc;

    #[test]
    fn a_replay_ends_once_its_last_arrival_was_fired_or_given_up_on() {
        let trace = Trace::parse(
            "t.jsonl",
            "t.jsonl",
            "{\"offset_ms\": 0}\n{\"offset_ms\": 2000}\n",
            &Default::default(),
        )
        .unwrap();
        let a = Arrival {
            schedule: Default::default(),
            max_in_flight: 10,
            process: Default::default(),
            seed: None,
            trace: Some(Arc::new(trace)),
        };
        let s = Duration::from_secs_f64;
        assert_eq!(finished(Some(&a), s(2.1), 2_000_000), None, "within the tail");
        assert_eq!(finished(Some(&a), s(2.5), 1_000_000), None, "the last not fired yet");
        assert_eq!(
            finished(Some(&a), s(2.5), 2_000_000).as_deref(),
            Some("trace t.jsonl replayed (2 arrivals over 2s)")
        );
        assert!(finished(Some(&a), s(7.0), 0).is_some(), "given up on");
        let rate = Arrival { trace: None, ..a };
        assert_eq!(finished(Some(&rate), s(100.0), 0), None);
        assert_eq!(finished(None, s(100.0), 0), None);
    }
}
