//! Metric names and the mergeable unit of measurement, [`EndpointStats`].
//!
//! Workers record into `EndpointStats`, ship one per endpoint per interval (as
//! `EndpointDelta`, see [`crate::wire`]), and the master merges them: merging is
//! associative and exact, so the cluster-wide figures are the same as if one process
//! had recorded everything. Histograms are HDR, microseconds, 3 significant digits,
//! auto-resizing (memory grows with the largest value seen, not a preset range).

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};

use crate::error::{Error, Result};

/// Significant figures of every histogram: values are exact to 0.1 %.
pub const SIGFIG: u8 = 3;

/// Histograms recorded per endpoint, all in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    /// Request start to the full response (for SSE: the end of the stream).
    ResponseTime = 0,
    /// Request start to the response headers.
    TimeToHeaders = 1,
    /// Request start to the first event that is not a ping.
    Ttfe = 2,
    /// Request start to the first text chunk (`text_chunk`, `message`, `agent_message`).
    Ttft = 3,
    /// Response headers to the end of the stream.
    StreamDuration = 4,
    /// Between consecutive events of a stream (pings included).
    EventGap = 5,
    /// Between consecutive text chunks of a stream.
    ChunkGap = 6,
    /// The server's own `elapsed_time` of `workflow_finished` (Dify), for comparison
    /// with what the client saw.
    ServerElapsed = 7,
}

pub const METRIC_COUNT: usize = 8;

impl Metric {
    pub const ALL: [Metric; METRIC_COUNT] = [
        Metric::ResponseTime,
        Metric::TimeToHeaders,
        Metric::Ttfe,
        Metric::Ttft,
        Metric::StreamDuration,
        Metric::EventGap,
        Metric::ChunkGap,
        Metric::ServerElapsed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Metric::ResponseTime => "response_time",
            Metric::TimeToHeaders => "time_to_headers",
            Metric::Ttfe => "ttfe",
            Metric::Ttft => "ttft",
            Metric::StreamDuration => "stream_duration",
            Metric::EventGap => "event_gap",
            Metric::ChunkGap => "chunk_gap",
            Metric::ServerElapsed => "server_elapsed",
        }
    }

    pub fn parse(name: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.as_str() == name)
    }
}

/// Failure kinds a worker reports (`FailureCount.kind`); the detail carries the
/// status code, error code or I/O error class.
pub mod failure {
    pub const CONNECT: &str = "connect";
    pub const HTTP_STATUS: &str = "http_status";
    pub const TIMEOUT: &str = "timeout";
    pub const FIRST_EVENT_TIMEOUT: &str = "first_event_timeout";
    pub const READ_TIMEOUT: &str = "read_timeout";
    pub const IO: &str = "io";
    pub const STREAM_CLOSED: &str = "stream_closed";
    pub const ERROR_EVENT: &str = "error_event";
    pub const TERMINAL_STATUS: &str = "terminal_status";
    pub const EVENT_TOO_LARGE: &str = "event_too_large";
    pub const INVALID_JSON: &str = "invalid_json";
    /// HTTP 429 `too_many_requests`: the app's concurrency limit (retryable).
    pub const TOO_MANY_REQUESTS: &str = "too_many_requests";
    /// HTTP 429 `rate_limit_error`: the plan's quota.
    pub const RATE_LIMIT_ERROR: &str = "rate_limit_error";
    /// A JSON (blocking) answer that is not a success.
    pub const BAD_RESPONSE: &str = "bad_response";
    pub const REQUEST: &str = "request";
    /// Not a failure: an in-flight request cut short because the run stopped. Counted
    /// so that our request total matches what the target received.
    pub const CANCELLED: &str = "cancelled_at_stop";
    /// Not a failure: a status the task declared as expected (`expect = [200, 429]`).
    pub const EXPECTED_STATUS: &str = "expected_status";
}

/// A new empty histogram with Barrage's precision.
pub fn new_histogram() -> Histogram<u64> {
    // 3 significant figures is within hdrhistogram's supported 0..=5.
    Histogram::new(SIGFIG).unwrap_or_else(|_| unreachable!("SIGFIG is a valid precision"))
}

/// V2 serialization (the HdrHistogram interchange format).
pub fn encode_histogram(h: &Histogram<u64>) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail; an encode error would mean a corrupt histogram.
    if V2Serializer::new().serialize(h, &mut out).is_err() {
        out.clear();
    }
    out
}

/// Largest value recorded (one day in µs). Decoding accepts up to [`MAX_DECODED_US`],
/// the same value after bucket rounding; together they bound the memory a hostile or
/// corrupt peer can make us allocate.
pub const MAX_TRACKABLE_US: u64 = 86_400_000_000;
pub const MAX_DECODED_US: u64 = 2 * MAX_TRACKABLE_US;

/// The V2 format's cookie (uncompressed); the compressed variant is refused, as a
/// deflate bomb would be.
const V2_COOKIE: u32 = 0x1c84_9303;
const V2_HEADER: usize = 40;

/// Checks the 40-byte V2 header before hdrhistogram sizes anything from it.
fn check_header(bytes: &[u8]) -> std::result::Result<(), String> {
    if bytes.len() < V2_HEADER {
        return Err(format!("{} bytes, shorter than the 40-byte header", bytes.len()));
    }
    let u32_at = |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    let u64_at = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[i..i + 8]);
        u64::from_be_bytes(b)
    };
    if u32_at(0) & !0xf0 != V2_COOKIE {
        return Err(format!("cookie {:#x} is not the uncompressed V2 cookie", u32_at(0)));
    }
    let payload = u32_at(4) as usize;
    if payload > bytes.len() - V2_HEADER {
        return Err(format!(
            "claims a {payload}-byte payload but {} bytes follow",
            bytes.len() - V2_HEADER
        ));
    }
    let digits = u32_at(12);
    if digits > u32::from(SIGFIG) {
        return Err(format!("{digits} significant digits; Barrage writes {SIGFIG}"));
    }
    let high = u64_at(24);
    if high > MAX_DECODED_US {
        return Err(format!("claims values up to {high} µs, above one day"));
    }
    Ok(())
}

pub fn decode_histogram(metric: &str, bytes: &[u8]) -> Result<Histogram<u64>> {
    let bad = |message: String| Error::Histogram {
        metric: metric.to_string(),
        message,
    };
    check_header(bytes).map_err(bad)?;
    let h: Histogram<u64> = Deserializer::new()
        .deserialize(&mut &bytes[..])
        .map_err(|e| bad(format!("{e:?}")))?;
    if h.max() > MAX_DECODED_US {
        return Err(bad(format!("holds {} µs, above the limit of one day", h.max())));
    }
    let mut out = new_histogram();
    out.add(&h).map_err(|e| bad(format!("{e:?}")))?;
    Ok(out)
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct FailureEntry {
    pub count: u64,
    /// One example message (secrets redacted by the recorder).
    pub sample: String,
}

/// Key of a failure or outcome: (kind, detail), e.g. ("http_status", "503").
pub type OutcomeKey = (String, String);

/// Everything recorded for one endpoint over some span (an interval or a whole run).
#[derive(Debug, Clone, Default)]
pub struct EndpointStats {
    pub requests: u64,
    pub failures: u64,
    pub failure_kinds: BTreeMap<OutcomeKey, FailureEntry>,
    /// Outcomes that are not failures but not plain successes either (expected
    /// statuses, cancelled at stop).
    pub outcomes: BTreeMap<OutcomeKey, FailureEntry>,
    pub bytes_received: u64,
    pub connections_opened: u64,
    pub streams_started: u64,
    pub streams_completed: u64,
    pub events: u64,
    pub events_by_type: BTreeMap<String, u64>,
    pub total_tokens: u64,
    pub histograms: [Option<Histogram<u64>>; METRIC_COUNT],
}

impl EndpointStats {
    /// Records one value in microseconds; values below 1 µs are recorded as 1 µs.
    /// Values above [`MAX_TRACKABLE_US`] (one day; a target's own `elapsed_time` can
    /// claim anything) are recorded as that maximum, so every report stays decodable.
    pub fn record(&mut self, metric: Metric, micros: u64) {
        let h = self.histograms[metric as usize].get_or_insert_with(new_histogram);
        // Auto-resizing histograms accept any u64 above 0.
        let _ = h.record(micros.clamp(1, MAX_TRACKABLE_US));
    }

    pub fn histogram(&self, metric: Metric) -> Option<&Histogram<u64>> {
        self.histograms[metric as usize].as_ref()
    }

    pub fn fail(&mut self, kind: &str, detail: &str, sample: impl FnOnce() -> String) {
        self.failures += 1;
        bump(&mut self.failure_kinds, kind, detail, sample);
    }

    pub fn outcome(&mut self, kind: &str, detail: &str, sample: impl FnOnce() -> String) {
        bump(&mut self.outcomes, kind, detail, sample);
    }

    pub fn count_event(&mut self, event_type: &str) {
        self.events += 1;
        match self.events_by_type.get_mut(event_type) {
            Some(n) => *n += 1,
            None => {
                self.events_by_type.insert(event_type.to_string(), 1);
            }
        }
    }

    /// Adds `other` into `self`. Exact: counts add, histograms merge bucket by bucket.
    pub fn merge(&mut self, other: &EndpointStats) {
        self.requests += other.requests;
        self.failures += other.failures;
        merge_outcomes(&mut self.failure_kinds, &other.failure_kinds);
        merge_outcomes(&mut self.outcomes, &other.outcomes);
        self.bytes_received += other.bytes_received;
        self.connections_opened += other.connections_opened;
        self.streams_started += other.streams_started;
        self.streams_completed += other.streams_completed;
        self.events += other.events;
        for (k, v) in &other.events_by_type {
            *self.events_by_type.entry(k.clone()).or_default() += v;
        }
        self.total_tokens += other.total_tokens;
        for (mine, theirs) in self.histograms.iter_mut().zip(&other.histograms) {
            if let Some(theirs) = theirs {
                let mine = mine.get_or_insert_with(new_histogram);
                // Both auto-resize: add only fails for non-resizing histograms.
                let _ = mine.add(theirs);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.requests == 0
            && self.connections_opened == 0
            && self.events == 0
            && self.streams_started == 0
            && self.bytes_received == 0
            && self.histograms.iter().all(Option::is_none)
    }
}

/// Distinct (kind, detail) pairs kept per endpoint; a target that invents a new error
/// code for every request must not grow the map without bound.
pub const MAX_OUTCOME_KEYS: usize = 64;
/// The detail that stands for every pair past [`MAX_OUTCOME_KEYS`].
pub const OTHER_DETAIL: &str = "(other)";

fn bump(map: &mut BTreeMap<OutcomeKey, FailureEntry>, kind: &str, detail: &str, sample: impl FnOnce() -> String) {
    if let Some(e) = map
        .iter_mut()
        .find(|((k, d), _)| k == kind && d == detail)
        .map(|(_, e)| e)
    {
        e.count += 1;
        return;
    }
    if map.len() >= MAX_OUTCOME_KEYS {
        let other = (kind.to_string(), OTHER_DETAIL.to_string());
        map.entry(other)
            .or_insert_with(|| FailureEntry {
                count: 0,
                sample: sample(),
            })
            .count += 1;
        return;
    }
    map.insert(
        (kind.to_string(), detail.to_string()),
        FailureEntry {
            count: 1,
            sample: sample(),
        },
    );
}

fn merge_outcomes(into: &mut BTreeMap<OutcomeKey, FailureEntry>, from: &BTreeMap<OutcomeKey, FailureEntry>) {
    for (k, v) in from {
        // Past the cap, new pairs fold into (kind, "(other)"), as when recording.
        let key = if into.len() >= MAX_OUTCOME_KEYS && !into.contains_key(k) {
            (k.0.clone(), OTHER_DETAIL.to_string())
        } else {
            k.clone()
        };
        let e = into.entry(key).or_insert_with(|| FailureEntry {
            count: 0,
            sample: v.sample.clone(),
        });
        e.count = e.count.saturating_add(v.count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn histogram_roundtrips_through_v2() {
        let mut h = new_histogram();
        for v in [1, 50_000, 50_100, 2_000_000] {
            h.record(v).unwrap();
        }
        let back = decode_histogram("ttfe", &encode_histogram(&h)).unwrap();
        assert_eq!(back.len(), 4);
        assert_eq!(back.value_at_quantile(0.5), h.value_at_quantile(0.5));
        assert_eq!(back.max(), h.max());
    }

    #[test]
    fn garbage_histogram_is_an_error_not_a_panic() {
        assert!(decode_histogram("ttfe", b"not a histogram").is_err());
        assert!(decode_histogram("ttfe", &[]).is_err());
    }

    #[test]
    fn failures_group_by_kind_and_detail() {
        let mut s = EndpointStats::default();
        s.fail(failure::HTTP_STATUS, "503", || "503 Service Unavailable".into());
        s.fail(failure::HTTP_STATUS, "503", || unreachable!("sample taken once"));
        s.fail(failure::CONNECT, "refused", || "connection refused".into());
        assert_eq!(s.failures, 3);
        assert_eq!(s.failure_kinds[&("http_status".into(), "503".into())].count, 2);
    }

    proptest! {
        /// Merging split recordings equals recording everything in one place.
        #[test]
        fn merge_is_exact(values in proptest::collection::vec(1u64..10_000_000, 1..300), split in 0usize..300) {
            let split = split.min(values.len());
            let mut whole = EndpointStats::default();
            let (mut a, mut b) = (EndpointStats::default(), EndpointStats::default());
            for (i, v) in values.iter().enumerate() {
                whole.requests += 1;
                whole.record(Metric::Ttfe, *v);
                let part = if i < split { &mut a } else { &mut b };
                part.requests += 1;
                part.record(Metric::Ttfe, *v);
            }
            a.merge(&b);
            prop_assert_eq!(a.requests, whole.requests);
            let (ha, hw) = (a.histogram(Metric::Ttfe).unwrap(), whole.histogram(Metric::Ttfe).unwrap());
            for q in [0.0, 0.5, 0.9, 0.99, 1.0] {
                prop_assert_eq!(ha.value_at_quantile(q), hw.value_at_quantile(q));
            }
        }
    }
}
