//! [`StreamGuard`]: the one place a stream's start, end and outcome are counted, so
//! each is counted exactly once however the stream ends.

use std::sync::Arc;

use crate::outcome::Outcome;
use crate::truth::{Counters, StreamEnd};

/// One open stream. Created when a streaming response is built; it counts the stream's
/// end exactly once: [`StreamGuard::complete`] (terminal event handed to the transport),
/// [`StreamGuard::reset`] (broken off on purpose), or dropped without either (the client
/// hung up and the body was dropped: aborted). It also records the stream's [`Outcome`]
/// exactly once: the first of [`StreamGuard::record`], the ending's, or `aborted`.
#[derive(Debug)]
pub(crate) struct StreamGuard {
    counters: Arc<Counters>,
    open: bool,
    recorded: bool,
}

impl StreamGuard {
    pub(crate) fn start(counters: Arc<Counters>) -> Self {
        counters.stream_opened();
        Self {
            counters,
            open: true,
            recorded: false,
        }
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Records the stream's outcome, unless one already was (an injected fault that was
    /// delivered decides it, whatever happens after).
    pub(crate) fn record(&mut self, outcome: Outcome) {
        if !self.recorded {
            self.recorded = true;
            self.counters.outcome(outcome);
        }
    }

    /// The terminal event, which reads as `outcome`, has been handed to the transport.
    /// Idempotent.
    pub(crate) fn complete(&mut self, outcome: Outcome) {
        self.record(outcome);
        self.close(StreamEnd::Completed);
    }

    /// The mock broke the stream off on purpose.
    pub(crate) fn reset(&mut self) {
        self.record(Outcome::Reset);
        self.close(StreamEnd::Reset);
    }

    fn close(&mut self, end: StreamEnd) {
        if std::mem::take(&mut self.open) {
            self.counters.stream_closed(end);
        }
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.record(Outcome::Aborted);
        self.close(StreamEnd::Aborted);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn guard_counts_completion_or_abort_once() {
        let counters = Arc::new(Counters::default());
        let mut done = StreamGuard::start(counters.clone());
        let dropped = StreamGuard::start(counters.clone());
        assert_eq!(counters.snapshot().active_streams, 2);
        done.complete(Outcome::Succeeded);
        done.complete(Outcome::Succeeded);
        drop(done);
        drop(dropped);
        let truth = counters.snapshot();
        assert_eq!(truth.streams_started, 2);
        assert_eq!(truth.streams_completed, 1);
        assert_eq!(truth.streams_aborted, 1);
        assert_eq!(truth.active_streams, 0);
        assert_eq!(truth.max_concurrent_streams, 2);
        assert_eq!(truth.outcome(Outcome::Succeeded), 1);
        assert_eq!(truth.outcome(Outcome::Aborted), 1);
        assert_eq!(truth.outcomes.len(), 2);
    }

    #[test]
    fn a_delivered_fault_decides_the_outcome() {
        let counters = Arc::new(Counters::default());
        let mut giant = StreamGuard::start(counters.clone());
        giant.record(Outcome::GiantEvent);
        giant.complete(Outcome::Succeeded);
        let mut stalled = StreamGuard::start(counters.clone());
        stalled.record(Outcome::Stall);
        drop(stalled);
        let mut reset = StreamGuard::start(counters.clone());
        reset.reset();
        drop(reset);
        let truth = counters.snapshot();
        assert_eq!(
            truth.outcomes,
            BTreeMap::from([("giant_event".into(), 1), ("stall".into(), 1), ("reset".into(), 1)])
        );
        assert_eq!(
            (truth.streams_completed, truth.streams_aborted, truth.streams_reset),
            (1, 1, 1)
        );
    }
}
