//! The kinds of failure a worker reports ([`FailureKind`]), and the two kinds of
//! outcome that are not failures. On the wire (`FailureCount.kind`), in saved files and
//! in reports a kind is its string ([`FailureKind::as_str`]); the detail next to it
//! carries the status code, error code or I/O error class.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What went wrong with a request (or, for the last two, how it ended without failing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailureKind {
    /// `connect`: no connection (DNS, refused, TLS handshake).
    Connect,
    /// `http_status`: an unexpected HTTP status; the detail is the status.
    HttpStatus,
    /// `timeout`: the whole request took longer than the task's `timeout`.
    Timeout,
    /// `first_event_timeout`: a stream sent no event in time.
    FirstEventTimeout,
    /// `read_timeout`: a stream went silent for longer than `read_timeout`.
    ReadTimeout,
    /// `io`: reading or writing the connection failed; the detail is the error class.
    Io,
    /// `stream_closed`: a stream ended before its terminal event.
    StreamClosed,
    /// `error_event`: a stream sent an error event; the detail is its code.
    ErrorEvent,
    /// `terminal_status`: the terminal event reported a status other than success.
    TerminalStatus,
    /// `event_too_large`: one event passed `limits.sse_max_event_bytes`.
    EventTooLarge,
    /// `invalid_json`: a body or event that should be JSON is not.
    InvalidJson,
    /// `too_many_requests`: HTTP 429 `too_many_requests`, the app's concurrency limit
    /// (retryable).
    TooManyRequests,
    /// `rate_limit_error`: HTTP 429 `rate_limit_error`, the plan's quota.
    RateLimitError,
    /// `bad_response`: a JSON (blocking) answer that is not a success.
    BadResponse,
    /// `request`: the request could not be built or sent.
    Request,
    /// `check`: a task's `checks` entry did not hold; the detail is the check's name.
    Check,
    /// `cancelled_at_stop`: not a failure: an in-flight request cut short because the
    /// run stopped. Counted so that our request total matches what the target received.
    Cancelled,
    /// `expected_status`: not a failure: a status the task declared as expected
    /// (`expect = [200, 429]`).
    ExpectedStatus,
}

impl FailureKind {
    /// Every kind: past the key cap, only these keep a `(kind, (other))` key of their
    /// own when merging (a peer's invented kinds fold into one key).
    pub const ALL: [FailureKind; 18] = [
        FailureKind::Connect,
        FailureKind::HttpStatus,
        FailureKind::Timeout,
        FailureKind::FirstEventTimeout,
        FailureKind::ReadTimeout,
        FailureKind::Io,
        FailureKind::StreamClosed,
        FailureKind::ErrorEvent,
        FailureKind::TerminalStatus,
        FailureKind::EventTooLarge,
        FailureKind::InvalidJson,
        FailureKind::TooManyRequests,
        FailureKind::RateLimitError,
        FailureKind::BadResponse,
        FailureKind::Request,
        FailureKind::Check,
        FailureKind::Cancelled,
        FailureKind::ExpectedStatus,
    ];

    /// The kind's string on the wire, in saved files and in reports.
    pub const fn as_str(self) -> &'static str {
        match self {
            FailureKind::Connect => "connect",
            FailureKind::HttpStatus => "http_status",
            FailureKind::Timeout => "timeout",
            FailureKind::FirstEventTimeout => "first_event_timeout",
            FailureKind::ReadTimeout => "read_timeout",
            FailureKind::Io => "io",
            FailureKind::StreamClosed => "stream_closed",
            FailureKind::ErrorEvent => "error_event",
            FailureKind::TerminalStatus => "terminal_status",
            FailureKind::EventTooLarge => "event_too_large",
            FailureKind::InvalidJson => "invalid_json",
            FailureKind::TooManyRequests => "too_many_requests",
            FailureKind::RateLimitError => "rate_limit_error",
            FailureKind::BadResponse => "bad_response",
            FailureKind::Request => "request",
            FailureKind::Check => "check",
            FailureKind::Cancelled => "cancelled_at_stop",
            FailureKind::ExpectedStatus => "expected_status",
        }
    }

    /// The kind written `text`, or `None` for a string no worker reports (a peer may
    /// still send one: such kinds stay strings in the maps and fold into `(other)`).
    pub fn parse(text: &str) -> Option<FailureKind> {
        FailureKind::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no [`FailureKind`]; it holds the string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownFailureKind(pub String);

impl fmt::Display for UnknownFailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` is not a failure kind", self.0)
    }
}

impl std::error::Error for UnknownFailureKind {}

impl FromStr for FailureKind {
    type Err = UnknownFailureKind;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        FailureKind::parse(text).ok_or_else(|| UnknownFailureKind(text.to_string()))
    }
}

impl Serialize for FailureKind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for FailureKind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_reads_back_from_its_string() {
        for kind in FailureKind::ALL {
            assert_eq!(kind.as_str().parse::<FailureKind>(), Ok(kind));
            assert_eq!(serde_json::to_string(&kind).unwrap(), format!("\"{kind}\""));
        }
        let strings: std::collections::BTreeSet<_> = FailureKind::ALL.map(FailureKind::as_str).into();
        assert_eq!(strings.len(), FailureKind::ALL.len(), "no two kinds share a string");
        assert_eq!(FailureKind::Cancelled.as_str(), "cancelled_at_stop");
        assert!("invented".parse::<FailureKind>().is_err());
        assert!(serde_json::from_str::<FailureKind>("\"invented\"").is_err());
    }
}
