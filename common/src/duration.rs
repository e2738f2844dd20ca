//! Durations as people write them (`500ms`, `20s`, `1m30s`, `2h`), for flags and
//! scenario files, and their serde form in the plan (microseconds, exact).

use std::time::Duration;

/// Parses `1m30s`, `250ms`, `2h`; a bare number means seconds (Locust's `-t 60`).
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration; expected e.g. 500ms, 20s, 1m30s".into());
    }
    if let Ok(secs) = text.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 && secs <= MAX.as_secs_f64() {
            return Duration::try_from_secs_f64(secs).map_err(|e| format!("\"{text}\" is not a duration: {e}"));
        }
        return Err(format!(
            "\"{text}\" is not a duration from 0 to {} seconds",
            MAX.as_secs()
        ));
    }
    let d = humantime::parse_duration(text)
        .map_err(|e| format!("\"{text}\" is not a duration ({e}); expected e.g. 500ms, 20s, 1m30s"))?;
    if d > MAX {
        return Err(format!(
            "\"{text}\" is longer than the longest duration accepted, one year"
        ));
    }
    Ok(d)
}

/// The longest duration accepted anywhere (a run, a timeout, a wait): one year.
pub const MAX: Duration = Duration::from_secs(365 * 24 * 3600);

/// Formats a duration compactly for reports and logs (`1m 30s`, `250ms`).
pub fn format(d: Duration) -> String {
    if d.as_secs() == 0 && d.subsec_nanos() != 0 {
        return format!("{}ms", d.as_millis());
    }
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

/// serde adaptor: a `Duration` as integer microseconds.
pub mod micros {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    /// Writes `d` as whole microseconds (saturating at `u64::MAX`).
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    }

    /// Reads whole microseconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_micros(u64::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_forms() {
        assert_eq!(parse("60").unwrap(), Duration::from_secs(60));
        assert_eq!(parse("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("2h").unwrap(), Duration::from_secs(7200));
    }

    #[test]
    fn rejects_garbage_with_a_hint() {
        let err = parse("soon").unwrap_err();
        assert!(err.contains("expected e.g."), "{err}");
        assert!(parse("-3").is_err());
        assert!(parse("").is_err());
        assert!(parse("1e20").is_err(), "huge numbers are refused, not a panic");
        assert!(parse("1e300").is_err());
        assert!(parse("2000y").is_err());
    }

    #[test]
    fn formats_compactly() {
        assert_eq!(format(Duration::from_millis(250)), "250ms");
        assert_eq!(format(Duration::from_secs(90)), "1m 30s");
    }
}
