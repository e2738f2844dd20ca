//! [`DifyVersion`]: which dify-api release the mock answers as (`--dify-version`).
//! Releases differ on the wire in small ways that decide how a client counts an
//! answer; each difference the mock copies is a method here, so it is named once.

use std::fmt;
use std::str::FromStr;

/// A dify-api release, `MAJOR.MINOR.PATCH`, ordered as versions are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DifyVersion {
    major: u32,
    minor: u32,
    patch: u32,
}

impl DifyVersion {
    /// The release whose raw answers we captured (`X-Version: 1.14.1`); the default.
    pub const V1_14_1: Self = Self::new(1, 14, 1);

    /// The dify-api release `major.minor.patch`.
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Self { major, minor, patch }
    }

    /// Whether the app concurrency limit (`APP_MAX_ACTIVE_REQUESTS`) is answered as
    /// dify-api 1.14.1 answers it: HTTP 400 `invalid_param`, because its `ValueError`
    /// handler catches the quota error first. Earlier versions get the 429
    /// `too_many_requests` form this mock sent before 1.14.1 was captured; we hold no
    /// transcript that pins the release where the answer changed.
    pub fn app_limit_is_400(self) -> bool {
        self >= Self::V1_14_1
    }
}

impl Default for DifyVersion {
    fn default() -> Self {
        Self::V1_14_1
    }
}

impl fmt::Display for DifyVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl FromStr for DifyVersion {
    type Err = String;

    /// `1.14.1`, `1.14` (patch 0) or `v1.14.1`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?} is not a dify-api version; expected MAJOR.MINOR.PATCH, e.g. 1.14.1");
        let digits = s.trim().strip_prefix('v').unwrap_or(s.trim());
        let mut parts = digits.split('.').map(|p| p.parse::<u32>().map_err(|_| bad()));
        let major = parts.next().ok_or_else(bad)??;
        let minor = parts.next().ok_or_else(bad)??;
        let patch = parts.next().transpose()?.unwrap_or(0);
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Self::new(major, minor, patch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_orders_versions() {
        assert_eq!("1.14.1".parse(), Ok(DifyVersion::V1_14_1));
        assert_eq!("v1.14".parse(), Ok(DifyVersion::new(1, 14, 0)));
        assert_eq!(DifyVersion::V1_14_1.to_string(), "1.14.1");
        for bad in ["", "1", "1.x", "1.2.3.4", "latest"] {
            assert!(bad.parse::<DifyVersion>().is_err(), "{bad}");
        }
        assert!(DifyVersion::new(1, 14, 1).app_limit_is_400());
        assert!(DifyVersion::new(2, 0, 0).app_limit_is_400());
        assert!(!DifyVersion::new(1, 14, 0).app_limit_is_400());
        assert!(!DifyVersion::new(0, 15, 3).app_limit_is_400());
    }
}
