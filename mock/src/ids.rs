//! Identifiers and timestamps shaped like Dify's: random UUIDv4 strings for task, run,
//! node and message ids, and Unix seconds for `created_at`/`finished_at`.

use std::time::{SystemTime, UNIX_EPOCH};

/// A random version-4 UUID in its hyphenated form, as Dify's ids are.
pub(crate) fn uuid() -> String {
    let mut n: u128 = rand::random();
    // Version 4 in bits 76..80 and the RFC 4122 variant (0b10) in bits 62..64.
    n = (n & !(0xf << 76)) | (0x4 << 76);
    n = (n & !(0x3 << 62)) | (0x2 << 62);
    let hex = format!("{n:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Seconds since the Unix epoch; 0 if the clock is set before 1970.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_is_version_4() {
        let id = uuid();
        assert_eq!(id.len(), 36);
        let parts: Vec<&str> = id.split('-').collect();
        assert_eq!(parts.iter().map(|p| p.len()).collect::<Vec<_>>(), [8, 4, 4, 4, 12]);
        assert!(parts[2].starts_with('4'));
        assert!(matches!(parts[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'));
        assert_ne!(uuid(), id);
    }
}
