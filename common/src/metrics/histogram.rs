//! The HDR histogram codec: Barrage's histogram parameters, V2 encoding, and a
//! checked decoder that bounds what a hostile or corrupt peer can make us allocate
//! ([`decode_buckets`]), with the cheap sparse forms the master merges ([`Buckets`],
//! [`Accum`]). Histograms are microseconds, 3 significant digits, auto-resizing.

use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};

use crate::bounds::MAX_COUNT;
use crate::error::{Error, Result};

/// Significant figures of every histogram: values are exact to 0.1 %.
pub const SIGFIG: u8 = 3;

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
/// Largest value a decoded histogram may hold: [`MAX_TRACKABLE_US`] after bucket rounding.
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

    /// Whether no bucket holds a count.
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
    /// Adds a delta's buckets: one increment per bucket.
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

    /// Whether nothing has been counted yet.
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
            if count > MAX_COUNT {
                return Err(bad(format!("a bucket count above {}", MAX_COUNT)));
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
        if count > MAX_COUNT {
            return Err(format!("a bucket count above {}", MAX_COUNT));
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
}
