//! The per-app concurrency limit, Dify's `APP_MAX_ACTIVE_REQUESTS`: [`ActiveLimit`]
//! hands out an [`ActiveSlot`] per run in flight (stream open or blocking call not yet
//! answered) and refuses one past the maximum, which the caller answers "Too many
//! requests" (400 `invalid_param` as dify-api 1.14.1, or 429 `too_many_requests`, by
//! `--dify-version`). Dify counts both modes the same way (its `RateLimit` wraps every
//! generate call), and so does the mock.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Runs in flight against a maximum (0 = unlimited).
#[derive(Debug, Default)]
pub(crate) struct ActiveLimit {
    max: u64,
    active: AtomicU64,
}

impl ActiveLimit {
    pub(crate) fn new(max: u64) -> Arc<Self> {
        Arc::new(Self {
            max,
            active: AtomicU64::new(0),
        })
    }

    pub(crate) fn max(&self) -> u64 {
        self.max
    }

    /// A slot for one more run, or `None` if `max` are already in flight. A
    /// compare-and-swap, so concurrent callers can never overshoot the maximum.
    pub(crate) fn try_acquire(self: &Arc<Self>) -> Option<ActiveSlot> {
        let unlimited = self.max == 0;
        self.active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |active| {
                (unlimited || active < self.max).then_some(active + 1)
            })
            .ok()
            .map(|_| ActiveSlot(self.clone()))
    }
}

/// One run's place under the limit, given back on drop (Dify's `RateLimit.exit`).
#[derive(Debug)]
pub(crate) struct ActiveSlot(Arc<ActiveLimit>);

impl Drop for ActiveSlot {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_past_the_maximum_and_frees_on_drop() {
        let limit = ActiveLimit::new(2);
        let a = limit.try_acquire().unwrap();
        let _b = limit.try_acquire().unwrap();
        assert!(limit.try_acquire().is_none());
        drop(a);
        assert!(limit.try_acquire().is_some());
    }

    #[test]
    fn zero_means_unlimited() {
        let limit = ActiveLimit::new(0);
        let slots: Vec<_> = (0..1000).map(|_| limit.try_acquire().unwrap()).collect();
        assert_eq!(limit.active.load(Ordering::Relaxed), 1000);
        drop(slots);
        assert_eq!(limit.active.load(Ordering::Relaxed), 0);
    }
}
