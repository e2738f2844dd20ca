//! The timetable of a stream: a [`Cadence`] is a recurring deadline (the next event,
//! the next ping) that stays on its grid while the client keeps up and slips, rather
//! than bursting, once it does not.

use std::time::Duration;

use tokio::time::Instant;

/// How late a write may be and still count as on time. Past it the client is not
/// keeping up, and the next event waits a full interval after this one rather than
/// bursting to catch up. Timer wake-ups run up to ~1 ms late, well inside it.
const LATE: Duration = Duration::from_millis(5);

/// A recurring deadline: when the next frame of one kind is due, and how far apart.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cadence {
    pub due: Instant,
    pub interval: Duration,
}

impl Cadence {
    /// Schedules the next frame after the one just due: on the grid (plus `extra`)
    /// while writes keep up; a full interval after now once they fall behind.
    pub(crate) fn advance(&mut self, extra: Duration) {
        self.due = next_due(self.due, Instant::now(), self.interval.saturating_add(extra));
    }
}

fn next_due(due: Instant, now: Instant, interval: Duration) -> Instant {
    if now > after(due, LATE) {
        after(now, interval)
    } else {
        after(due, interval)
    }
}

/// `at + d`, saturating at roughly thirty years out (far beyond any test's patience)
/// instead of panicking on an absurd configured duration.
pub(crate) fn after(at: Instant, d: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(30 * 365 * 86_400);
    at.checked_add(d.min(FAR)).unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_late_write_pushes_the_grid() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        assert_eq!(next_due(t0, t0 + ms(1), ms(20)), t0 + ms(20));
        assert_eq!(next_due(t0, t0 + ms(30), ms(20)), t0 + ms(50));
    }

    #[test]
    fn after_saturates() {
        let t0 = Instant::now();
        assert!(after(t0, Duration::MAX) > t0);
    }
}
