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

use crate::bounds;
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
    /// Like `ResponseTime`, for successful requests only; recorded where requests are
    /// split by replica, so a dead replica's instant failures do not make it look fast.
    ResponseTimeOk = 8,
}

pub const METRIC_COUNT: usize = 9;

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
        Metric::ResponseTimeOk,
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
            Metric::ResponseTimeOk => "response_time_ok",
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
    /// A task's `checks` entry did not hold; the detail is the check's name.
    pub const CHECK: &str = "check";
    /// Not a failure: an in-flight request cut short because the run stopped. Counted
    /// so that our request total matches what the target received.
    pub const CANCELLED: &str = "cancelled_at_stop";
    /// Not a failure: a status the task declared as expected (`expect = [200, 429]`).
    pub const EXPECTED_STATUS: &str = "expected_status";

    /// Every kind above: past the key cap, only these keep a `(kind, (other))` key of
    /// their own when merging (a peer's invented kinds fold into one key).
    pub const ALL: [&str; 18] = [
        CONNECT,
        HTTP_STATUS,
        TIMEOUT,
        FIRST_EVENT_TIMEOUT,
        READ_TIMEOUT,
        IO,
        STREAM_CLOSED,
        ERROR_EVENT,
        TERMINAL_STATUS,
        EVENT_TOO_LARGE,
        INVALID_JSON,
        TOO_MANY_REQUESTS,
        RATE_LIMIT_ERROR,
        BAD_RESPONSE,
        REQUEST,
        CHECK,
        CANCELLED,
        EXPECTED_STATUS,
    ];
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

/// Decodes a V2 histogram into a dense one (see [`Buckets`] for the cheap form).
pub fn decode_histogram(metric: &str, bytes: &[u8]) -> Result<Histogram<u64>> {
    Ok(decode_buckets(metric, bytes)?.to_histogram())
}

/// A histogram as it came off the wire: its non-empty buckets as (bucket index in
/// Barrage's layout, count), ascending. Merging one costs its distinct buckets (a few
/// hundred for a second of traffic), where decoding a dense histogram and adding it
/// costs the whole width of its counts array: profiled at 1,000 workers x 10
/// endpoints, that was 3 ms per report and saturated the master.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Buckets(Vec<(u32, u64)>);

impl Buckets {
    /// Adds every bucket into `into` (auto-resizing, as [`new_histogram`] makes them).
    pub fn add_to(&self, into: &mut Histogram<u64>) {
        for &(index, count) in &self.0 {
            // Auto-resizing histograms accept every value below u64::MAX.
            let _ = into.record_n(value_at_index(index), count);
        }
    }

    /// A dense histogram holding these buckets, sized once for the largest value.
    pub fn to_histogram(&self) -> Histogram<u64> {
        let mut h = sized_for(self.0.last().map_or(0, |&(i, _)| value_at_index(i)));
        self.add_to(&mut h);
        h
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Sum of the counts.
    pub fn len(&self) -> u64 {
        self.0.iter().map(|&(_, c)| c).sum()
    }
}

/// Where the master accumulates histograms: counts by bucket index, so adding a
/// delta's [`Buckets`] is one array increment per bucket. Turned into a
/// [`Histogram`] only when a report is rendered.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Accum {
    counts: Vec<u64>,
    total: u64,
}

impl Accum {
    pub fn add(&mut self, buckets: &Buckets) {
        for &(index, count) in &buckets.0 {
            let i = index as usize;
            if i >= self.counts.len() {
                self.counts.resize(i + 1, 0);
            }
            self.counts[i] = self.counts[i].saturating_add(count);
            self.total = self.total.saturating_add(count);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &Accum) {
        if other.counts.len() > self.counts.len() {
            self.counts.resize(other.counts.len(), 0);
        }
        for (into, &count) in self.counts.iter_mut().zip(&other.counts) {
            *into = into.saturating_add(count);
        }
        self.total = self.total.saturating_add(other.total);
    }

    /// The same figures as a dense histogram (percentiles, mean, min, max).
    pub fn to_histogram(&self) -> Histogram<u64> {
        let mut h = sized_for(self.counts.len().checked_sub(1).map_or(0, |i| value_at_index(i as u32)));
        for (i, &count) in self.counts.iter().enumerate() {
            if count > 0 {
                let _ = h.record_n(value_at_index(i as u32), count);
            }
        }
        h
    }
}

/// An auto-resizing histogram with room for `max` from the start.
fn sized_for(max: u64) -> Histogram<u64> {
    if max <= 2 {
        return new_histogram();
    }
    match Histogram::new_with_bounds(1, max, SIGFIG) {
        Ok(mut h) => {
            h.auto(true);
            h
        }
        Err(_) => new_histogram(),
    }
}

/// Decodes V2 bytes into [`Buckets`] without building a dense histogram. Histograms
/// written with Barrage's parameters (lowest 1, [`SIGFIG`] digits) are walked
/// directly; anything else valid goes through hdrhistogram's own decoder.
pub fn decode_buckets(metric: &str, bytes: &[u8]) -> Result<Buckets> {
    let bad = |message: String| Error::Histogram {
        metric: metric.to_string(),
        message,
    };
    check_header(bytes).map_err(bad)?;
    let u32_at = |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    let u64_at = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[i..i + 8]);
        u64::from_be_bytes(b)
    };
    let ours = u32_at(0) & !0xf0 == V2_COOKIE
        && u32_at(8) == 0
        && u32_at(12) == u32::from(SIGFIG)
        && u64_at(16) == 1
        && f64::from_bits(u64_at(32)) == 1.0;
    if !ours {
        return decode_generic(bytes).map_err(bad);
    }
    let payload = &bytes[V2_HEADER..V2_HEADER + u32_at(4) as usize];
    // Two varints at most per non-empty bucket: sized once.
    let mut buckets = Vec::with_capacity(payload.len() / 2);
    let mut index: u64 = 0;
    let mut at = 0;
    while at < payload.len() {
        let (zz, used) = read_varint(&payload[at..]).ok_or_else(|| bad("truncated varint".into()))?;
        at += used;
        let n = ((zz >> 1) as i64) ^ -((zz & 1) as i64);
        if n < 0 {
            index = index
                .checked_add(n.unsigned_abs())
                .ok_or_else(|| bad("zero run overflows".into()))?;
            if index > MAX_INDEX + 1 {
                // Past the last bucket: a later count could only be refused, and one
                // more step (`index += 1`) could overflow.
                return Err(bad(format!("a zero run to bucket {index}, above the limit of one day")));
            }
            continue;
        }
        if n > 0 {
            if index > MAX_INDEX {
                return Err(bad(format!("a count at bucket {index}, above the limit of one day")));
            }
            let count = n as u64;
            if count > crate::wire::MAX_COUNT {
                return Err(bad(format!("a bucket count above {}", crate::wire::MAX_COUNT)));
            }
            buckets.push((index as u32, count));
        }
        index += 1;
    }
    Ok(Buckets(buckets))
}

/// Barrage's histogram layout (lowest value 1, [`SIGFIG`] digits): 2,048 sub-buckets,
/// each bucket after the first using its upper half.
const HALF_MAGNITUDE: u32 = 10;
const HALF: u64 = 1 << HALF_MAGNITUDE;

/// The bucket index of `value` in Barrage's layout: hdrhistogram's `index_for`.
const fn index_of(value: u64) -> u64 {
    let bucket = 63 - (value | (2 * HALF - 1)).leading_zeros() as u64 - HALF_MAGNITUDE as u64;
    let sub = value >> bucket;
    ((bucket + 1) << HALF_MAGNITUDE) + sub - HALF
}

/// The last bucket whose every value is at most [`MAX_DECODED_US`]: no valid report
/// counts above it (a histogram's max is the highest value of its top bucket).
const MAX_INDEX: u64 = index_of(MAX_DECODED_US + 1) - 1;

/// The lowest value of bucket `index` in Barrage's layout: hdrhistogram's `value_for`.
fn value_at_index(index: u32) -> u64 {
    let index = u64::from(index);
    let bucket = (index >> HALF_MAGNITUDE) as i64 - 1;
    let mut sub = (index & (HALF - 1)) + HALF;
    let shift = if bucket < 0 {
        sub -= HALF;
        0
    } else {
        bucket as u32
    };
    // index <= MAX_INDEX keeps the shift below 27: no overflow.
    sub << shift.min(52)
}

/// LEB128 as hdrhistogram writes it: up to 8 bytes of 7 bits, a 9th of 8.
fn read_varint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(9) {
        if i == 8 {
            return Some((value | (u64::from(b) << 56), 9));
        }
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// hdrhistogram's decoder, for valid histograms written with other parameters.
fn decode_generic(bytes: &[u8]) -> std::result::Result<Buckets, String> {
    let h: Histogram<u64> = Deserializer::new()
        .deserialize(&mut &bytes[..])
        .map_err(|e| format!("{e:?}"))?;
    if h.max() > MAX_DECODED_US {
        return Err(format!("holds {} µs, above the limit of one day", h.max()));
    }
    let mut buckets = Vec::new();
    for v in h.iter_recorded() {
        let count = v.count_at_value();
        if count > crate::wire::MAX_COUNT {
            return Err(format!("a bucket count above {}", crate::wire::MAX_COUNT));
        }
        let index = index_of(h.lowest_equivalent(v.value_iterated_to()).max(1));
        if index > MAX_INDEX {
            return Err(format!("holds {} µs, above the limit of one day", h.max()));
        }
        let index = index as u32;
        match buckets.last_mut() {
            // Two source buckets can fall into one of ours (fewer digits): merge them.
            Some((last, c)) if *last == index => *c += count,
            _ => buckets.push((index, count)),
        }
    }
    Ok(Buckets(buckets))
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct FailureEntry {
    pub count: u64,
    /// One example message (secrets redacted by the recorder).
    pub sample: String,
    /// When the pair was first and last recorded, unix ms (0: not known, a report from
    /// a worker before these fields). Locust's `_failures.csv` has them.
    pub first_seen_unix_ms: u64,
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
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
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
    /// Requests sent a second time, on a fresh connection, because the kept-alive one
    /// was closed by the server before any byte of an answer (its idle timeout racing
    /// the request). Neither requests nor failures: the client's own connection
    /// handling, counted so that it shows.
    pub retries: u64,
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

    /// HTTP 429 answers, failures and declared outcomes alike: Dify's two kinds (the app
    /// limit also when dify-api 1.14.1 answers it 400), a plain `http_status 429`, and
    /// an expected 429.
    pub fn status_429(&self) -> u64 {
        self.failure_kinds
            .iter()
            .chain(&self.outcomes)
            .filter(|((kind, detail), _)| {
                kind == failure::TOO_MANY_REQUESTS
                    || kind == failure::RATE_LIMIT_ERROR
                    || (kind == failure::EXPECTED_STATUS && detail == "429")
                    || (kind == failure::HTTP_STATUS && detail.starts_with("429"))
            })
            .map(|(_, e)| e.count)
            .sum()
    }

    /// Counts a failure. `detail` and the sample (made only for a new key) come from the
    /// target: redact them first, then they are bounded here ([`crate::bounds`]).
    pub fn fail(&mut self, kind: &str, detail: &str, sample: impl FnOnce() -> String) {
        self.failures += 1;
        bump(&mut self.failure_kinds, kind, detail, sample);
    }

    /// Counts an outcome that is not a failure; bounded as [`Self::fail`].
    pub fn outcome(&mut self, kind: &str, detail: &str, sample: impl FnOnce() -> String) {
        bump(&mut self.outcomes, kind, detail, sample);
    }

    /// Counts one event under its type, bounded: names cut to
    /// [`bounds::MAX_EVENT_TYPE`] bytes, and past [`bounds::MAX_EVENT_TYPES`] types
    /// the rest count under [`bounds::OTHER`].
    pub fn count_event(&mut self, event_type: &str) {
        self.events += 1;
        add_event_type(&mut self.events_by_type, event_type, 1);
    }

    /// Adds `other` into `self`. Exact: counts add, histograms merge bucket by bucket.
    pub fn merge(&mut self, other: &EndpointStats) {
        self.requests += other.requests;
        self.failures += other.failures;
        merge_outcomes(&mut self.failure_kinds, &other.failure_kinds);
        merge_outcomes(&mut self.outcomes, &other.outcomes);
        self.bytes_received += other.bytes_received;
        self.connections_opened += other.connections_opened;
        self.retries += other.retries;
        self.streams_started += other.streams_started;
        self.streams_completed += other.streams_completed;
        self.events += other.events;
        for (k, v) in &other.events_by_type {
            add_event_type(&mut self.events_by_type, k, *v);
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
            && self.retries == 0
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
pub const OTHER_DETAIL: &str = bounds::OTHER;

/// Adds `count` events of `event_type` into `map`, bounded as [`EndpointStats::count_event`].
pub fn add_event_type(map: &mut BTreeMap<String, u64>, event_type: &str, count: u64) {
    let mut name = bounds::clip_name(event_type, bounds::MAX_EVENT_TYPE);
    if !map.contains_key(name) && map.len() >= bounds::MAX_EVENT_TYPES {
        name = bounds::OTHER;
    }
    match map.get_mut(name) {
        Some(n) => *n = n.saturating_add(count),
        None => {
            map.insert(name.to_string(), count);
        }
    }
}

/// A failure sample as stored: bounded to [`bounds::MAX_SAMPLE`] bytes.
fn bounded_sample(sample: String) -> String {
    match bounds::clip(&sample, bounds::MAX_SAMPLE) {
        std::borrow::Cow::Borrowed(_) => sample,
        std::borrow::Cow::Owned(clipped) => clipped,
    }
}

fn bump(map: &mut BTreeMap<OutcomeKey, FailureEntry>, kind: &str, detail: &str, sample: impl FnOnce() -> String) {
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

fn merge_outcomes(into: &mut BTreeMap<OutcomeKey, FailureEntry>, from: &BTreeMap<OutcomeKey, FailureEntry>) {
    for (k, v) in from {
        // Past the cap, new pairs fold into (kind, "(other)"), as when recording.
        // A kind no worker reports (a hostile peer's) folds into one `((other), (other))`
        // key instead, or every invented kind would add a key past the cap.
        let key = if into.len() >= MAX_OUTCOME_KEYS && !into.contains_key(k) {
            let kind = if failure::ALL.contains(&k.0.as_str()) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The pairs a histogram holds, for comparing two of them bucket by bucket.
    fn pairs(h: &Histogram<u64>) -> Vec<(u64, u64)> {
        h.iter_recorded()
            .map(|v| (h.lowest_equivalent(v.value_iterated_to()), v.count_at_value()))
            .collect()
    }

    proptest! {
        /// The sparse decoder reads exactly what hdrhistogram's own decoder reads.
        #[test]
        fn buckets_match_hdrhistograms_decoder(
            values in prop::collection::vec((1u64..=MAX_TRACKABLE_US, 1u64..1000), 0..300),
            small in prop::collection::vec(1u64..5000, 0..50),
        ) {
            let mut h = new_histogram();
            for &(v, n) in &values {
                h.record_n(v, n).unwrap();
            }
            for &v in &small {
                h.record(v).unwrap();
            }
            let bytes = encode_histogram(&h);
            let reference: Histogram<u64> = Deserializer::new().deserialize(&mut &bytes[..]).unwrap();
            let buckets = decode_buckets("t", &bytes).unwrap();
            prop_assert_eq!(buckets.len(), reference.len());
            prop_assert_eq!(pairs(&buckets.to_histogram()), pairs(&reference));
            let mut merged = new_histogram();
            buckets.add_to(&mut merged);
            prop_assert_eq!(pairs(&merged), pairs(&h));
        }
    }

    /// A V2 histogram in Barrage's layout whose payload is `counts` (zig-zag LEB128,
    /// negative = a run of empty buckets), as a hostile peer could write it.
    fn hostile_v2(counts: &[i64]) -> Vec<u8> {
        let mut payload = Vec::new();
        for &n in counts {
            let mut zz = ((n << 1) ^ (n >> 63)) as u64;
            for i in 0..9 {
                if i == 8 {
                    payload.push(zz as u8);
                    break;
                }
                let more = zz >> 7 != 0;
                payload.push((zz & 0x7f) as u8 | if more { 0x80 } else { 0 });
                zz >>= 7;
                if !more {
                    break;
                }
            }
        }
        let mut bytes = encode_histogram(&new_histogram());
        bytes.truncate(V2_HEADER);
        bytes[4..8].copy_from_slice(&(payload.len() as u32).to_be_bytes());
        bytes.extend_from_slice(&payload);
        bytes
    }

    #[test]
    fn a_maximal_zero_run_is_refused_not_overflowed() {
        // Two runs of 2^63 - 1 then a zero: the index would pass u64::MAX.
        let bytes = hostile_v2(&[-i64::MAX, -i64::MAX, 0, 0, 1]);
        assert!(decode_buckets("ttfe", &bytes).is_err());
        let bytes = hostile_v2(&[-i64::MAX, 0]);
        assert!(decode_buckets("ttfe", &bytes).is_err());
        // A sane payload in the same form still decodes.
        let bytes = hostile_v2(&[-5, 3]);
        let b = decode_buckets("ttfe", &bytes).unwrap();
        assert_eq!(b.len(), 3);
    }

    #[test]
    fn bucket_indexes_match_hdrhistograms_layout() {
        let h = new_histogram();
        for i in 0..=MAX_INDEX as u32 {
            let v = value_at_index(i);
            assert_eq!(index_of(v), u64::from(i), "value {v}");
            assert_eq!(h.lowest_equivalent(v), v, "index {i} starts a bucket");
        }
        // The top accepted bucket ends at or below the limit; the next one does not.
        assert!(h.highest_equivalent(value_at_index(MAX_INDEX as u32)) <= MAX_DECODED_US);
        assert!(h.highest_equivalent(value_at_index(MAX_INDEX as u32 + 1)) > MAX_DECODED_US);
    }

    #[test]
    fn accumulated_buckets_equal_added_histograms() {
        let (mut a, mut b) = (new_histogram(), new_histogram());
        for v in [1, 7, 2047, 2048, 50_000, 50_001, 3_000_000] {
            a.record(v).unwrap();
            b.record_n(v * 3, 2).unwrap();
        }
        let mut accum = Accum::default();
        let mut dense = new_histogram();
        for h in [&a, &b] {
            accum.add(&decode_buckets("t", &encode_histogram(h)).unwrap());
            dense.add(h).unwrap();
        }
        assert_eq!(pairs(&accum.to_histogram()), pairs(&dense));
        assert_eq!(accum.to_histogram().len(), 21);
    }

    #[test]
    fn other_parameters_take_the_generic_path() {
        let mut h: Histogram<u64> = Histogram::new_with_bounds(1, 1_000_000, 2).unwrap();
        for v in [1, 999, 12_345, 999_999] {
            h.record(v).unwrap();
        }
        let mut bytes = Vec::new();
        V2Serializer::new().serialize(&h, &mut bytes).unwrap();
        let back = decode_buckets("t", &bytes).unwrap().to_histogram();
        assert_eq!(back.len(), 4);
        for v in [1, 999, 12_345, 999_999] {
            let (lo, hi) = (h.lowest_equivalent(v), h.highest_equivalent(v));
            assert_eq!(back.count_between(lo, hi), 1, "{v} lands in its own bucket");
        }
    }

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

    #[test]
    fn failures_keep_when_they_were_first_and_last_seen_through_merges() {
        let entry = |first, last| FailureEntry {
            count: 1,
            sample: "s".into(),
            first_seen_unix_ms: first,
            last_seen_unix_ms: last,
        };
        let key: OutcomeKey = ("http_status".into(), "503".into());
        let mut total = EndpointStats::default();
        for (first, last) in [(0, 0), (2_000, 3_000), (1_000, 1_500), (0, 0), (2_500, 4_000)] {
            let mut delta = EndpointStats::default();
            delta.failure_kinds.insert(key.clone(), entry(first, last));
            total.merge(&delta);
        }
        let e = &total.failure_kinds[&key];
        // Min of the known firsts, max of the lasts; a 0 (an older worker) is unknown.
        assert_eq!((e.count, e.first_seen_unix_ms, e.last_seen_unix_ms), (5, 1_000, 4_000));

        let before = unix_ms();
        let mut s = EndpointStats::default();
        s.fail(failure::CONNECT, "refused", || "refused".into());
        s.fail(failure::CONNECT, "refused", || "refused".into());
        let e = &s.failure_kinds[&(failure::CONNECT.into(), "refused".into())];
        assert!(before <= e.first_seen_unix_ms && e.first_seen_unix_ms <= e.last_seen_unix_ms);
        assert!(e.last_seen_unix_ms <= unix_ms());
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
