//! Failures and other outcomes, counted by (kind, detail) with one sample each
//! ([`FailureEntry`]); the maps are bounded ([`MAX_OUTCOME_KEYS`]) so a target that
//! invents an error per request cannot grow them.

use std::collections::BTreeMap;

use super::failure_kind::FailureKind;
use crate::bounds;

/// What is kept of one (kind, detail) pair: how often, when, and one example.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FailureEntry {
    /// How many times the pair was recorded.
    pub count: u64,
    /// One example message (secrets redacted by the recorder).
    pub sample: String,
    /// When the pair was first and last recorded, unix ms (0: not known, a report from
    /// a worker before these fields). Locust's `_failures.csv` has them.
    pub first_seen_unix_ms: u64,
    /// When the pair was last recorded, unix ms (0: not known).
    pub last_seen_unix_ms: u64,
}

impl FailureEntry {
    /// Widens the seen span to cover `first..=last` (0s are unknown and ignored).
    pub fn seen(&mut self, first: u64, last: u64) {
        if first != 0 && (self.first_seen_unix_ms == 0 || first < self.first_seen_unix_ms) {
            self.first_seen_unix_ms = first;
        }
        self.last_seen_unix_ms = self.last_seen_unix_ms.max(last);
    }
}

/// Now, unix ms: when a failure or outcome is recorded.
pub(super) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Key of a failure or outcome: (kind, detail), e.g. ("http_status", "503").
pub type OutcomeKey = (String, String);

/// Distinct (kind, detail) pairs kept per endpoint; a target that invents a new error
/// code for every request must not grow the map without bound.
pub const MAX_OUTCOME_KEYS: usize = 64;
/// The detail that stands for every pair past [`MAX_OUTCOME_KEYS`].
pub const OTHER_DETAIL: &str = bounds::OTHER;

/// A failure sample as stored: bounded to [`bounds::MAX_SAMPLE`] bytes.
fn bounded_sample(sample: String) -> String {
    match bounds::clip(&sample, bounds::MAX_SAMPLE) {
        std::borrow::Cow::Borrowed(_) => sample,
        std::borrow::Cow::Owned(clipped) => clipped,
    }
}

pub(super) fn bump(
    map: &mut BTreeMap<OutcomeKey, FailureEntry>,
    kind: &str,
    detail: &str,
    sample: impl FnOnce() -> String,
) {
    let detail = bounds::clip_name(detail, bounds::MAX_DETAIL);
    let now = unix_ms();
    if let Some(e) = map
        .iter_mut()
        .find(|((k, d), _)| k == kind && d == detail)
        .map(|(_, e)| e)
    {
        e.count += 1;
        e.seen(now, now);
        return;
    }
    if map.len() >= MAX_OUTCOME_KEYS {
        let other = (kind.to_string(), OTHER_DETAIL.to_string());
        let e = map.entry(other).or_insert_with(|| FailureEntry {
            sample: bounded_sample(sample()),
            ..FailureEntry::default()
        });
        e.count += 1;
        e.seen(now, now);
        return;
    }
    map.insert(
        (kind.to_string(), detail.to_string()),
        FailureEntry {
            count: 1,
            sample: bounded_sample(sample()),
            first_seen_unix_ms: now,
            last_seen_unix_ms: now,
        },
    );
}

pub(super) fn merge_outcomes(into: &mut BTreeMap<OutcomeKey, FailureEntry>, from: &BTreeMap<OutcomeKey, FailureEntry>) {
    for (k, v) in from {
        // Past the cap, new pairs fold into (kind, "(other)"), as when recording.
        // A kind no worker reports (a hostile peer's) folds into one `((other), (other))`
        // key instead, or every invented kind would add a key past the cap.
        let key = if into.len() >= MAX_OUTCOME_KEYS && !into.contains_key(k) {
            let kind = if FailureKind::parse(&k.0).is_some() {
                k.0.clone()
            } else {
                OTHER_DETAIL.to_string()
            };
            (kind, OTHER_DETAIL.to_string())
        } else {
            k.clone()
        };
        let e = into.entry(key).or_insert_with(|| FailureEntry {
            sample: bounds::clip(&v.sample, bounds::MAX_SAMPLE).into_owned(),
            ..FailureEntry::default()
        });
        e.count = e.count.saturating_add(v.count);
        e.seen(v.first_seen_unix_ms, v.last_seen_unix_ms);
    }
}
