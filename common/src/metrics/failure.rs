//! Failure kinds a worker reports (`FailureCount.kind`); the detail carries the
//! status code, error code or I/O error class.

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
