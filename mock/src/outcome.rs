//! [`Outcome`]: how one request ended, as a client would have seen it on the wire. The
//! mock counts exactly one outcome per counted request (task-stop calls excepted, see
//! [`crate::GroundTruth::outcomes`]) so a test can check that a load generator put every
//! request in the right bucket.

use std::fmt;

use http::StatusCode;

/// How one request ended. The names ([`Outcome::name`]) are the keys of
/// [`crate::GroundTruth::outcomes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// The run's success was delivered: `workflow_finished` with `status: "succeeded"`,
    /// `message_end` for chat apps, or a 200 blocking answer.
    Succeeded,
    /// `workflow_finished` with `status: "failed"` (for chatflows, followed by `error`).
    FailedStatus,
    /// The run ended as stopped: `workflow_finished` with `status: "stopped"`, or for chat
    /// and agent apps an early `message_end` (which is all Dify sends when stopped).
    Stopped,
    /// The stream ended with `event: error` in place of its terminal event.
    ErrorEvent,
    /// 401 `unauthorized`.
    Unauthorized,
    /// 429 `too_many_requests`: the app's concurrent-request limit (`--max-active`).
    TooManyRequests,
    /// 429 `rate_limit_error`: the plan's quota (`X-Mock-Fault: rate-limit`).
    RateLimitError,
    /// Any other 4xx answer (validation, unknown route, injected `http-4xx`, ...).
    Http4xx,
    /// Any 5xx answer.
    Http5xx,
    /// The connection was closed mid-response, with no terminal event.
    Reset,
    /// The response went silent (no events, no pings) until the client gave up.
    Stall,
    /// The stream carried a giant event, whether or not the client read past it.
    GiantEvent,
    /// The stream carried an event whose data is not JSON (or a blocking body that is not).
    MalformedJson,
    /// The client went away before the mock had finished answering, for no injected reason.
    Aborted,
}

impl Outcome {
    /// Every outcome, in the order of the counters.
    pub const ALL: [Outcome; 14] = [
        Outcome::Succeeded,
        Outcome::FailedStatus,
        Outcome::Stopped,
        Outcome::ErrorEvent,
        Outcome::Unauthorized,
        Outcome::TooManyRequests,
        Outcome::RateLimitError,
        Outcome::Http4xx,
        Outcome::Http5xx,
        Outcome::Reset,
        Outcome::Stall,
        Outcome::GiantEvent,
        Outcome::MalformedJson,
        Outcome::Aborted,
    ];

    /// The key under which [`crate::GroundTruth::outcomes`] counts it.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::FailedStatus => "failed_status",
            Outcome::Stopped => "stopped",
            Outcome::ErrorEvent => "error_event",
            Outcome::Unauthorized => "unauthorized",
            Outcome::TooManyRequests => "too_many_requests",
            Outcome::RateLimitError => "rate_limit_error",
            Outcome::Http4xx => "http_4xx",
            Outcome::Http5xx => "http_5xx",
            Outcome::Reset => "reset",
            Outcome::Stall => "stall",
            Outcome::GiantEvent => "giant_event",
            Outcome::MalformedJson => "malformed_json",
            Outcome::Aborted => "aborted",
        }
    }

    /// Position in [`Outcome::ALL`], the index of its counter.
    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// The outcome of an answer with this status and Dify `code`.
    pub(crate) fn of_status(status: StatusCode, code: &str) -> Self {
        match status.as_u16() {
            200..=299 => Outcome::Succeeded,
            401 => Outcome::Unauthorized,
            429 if code == "rate_limit_error" => Outcome::RateLimitError,
            429 => Outcome::TooManyRequests,
            500..=599 => Outcome::Http5xx,
            _ => Outcome::Http4xx,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A response extension telling the counting middleware who records the outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tally {
    /// Record this outcome when the response leaves the handler.
    Now(Outcome),
    /// A stream: its [`crate::guard::StreamGuard`] records the outcome when it ends.
    Later,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_in_index_order_and_names_are_unique() {
        for (i, outcome) in Outcome::ALL.iter().enumerate() {
            assert_eq!(outcome.index(), i);
        }
        let names: std::collections::BTreeSet<_> = Outcome::ALL.iter().map(|o| o.name()).collect();
        assert_eq!(names.len(), Outcome::ALL.len());
    }

    #[test]
    fn statuses_map_to_outcomes() {
        let of = |s: u16, code| Outcome::of_status(StatusCode::from_u16(s).unwrap(), code);
        assert_eq!(of(200, ""), Outcome::Succeeded);
        assert_eq!(of(401, "unauthorized"), Outcome::Unauthorized);
        assert_eq!(of(429, "too_many_requests"), Outcome::TooManyRequests);
        assert_eq!(of(429, "rate_limit_error"), Outcome::RateLimitError);
        assert_eq!(of(404, "not_found"), Outcome::Http4xx);
        assert_eq!(of(503, "app_unavailable"), Outcome::Http5xx);
    }
}
