//! [`Fault`]: a failure a client asks the mock to produce (`X-Mock-Fault`, or `--fault`
//! for every request), so a load tester's failure accounting can be tested against a
//! target that fails on cue. This file owns what each fault is called and, for the
//! faults that are an HTTP answer, that answer; the stream faults are played by
//! [`crate::sse`], the blocking ones by [`crate::blocking`].

use std::fmt;
use std::str::FromStr;

use http::StatusCode;

use crate::envelope::ApiError;

/// A failure to inject. Faults that end a run differently (`failed`, `error`, `stopped`)
/// are Dify's own endings; the rest are what a sick server or network looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    /// Behave normally.
    #[default]
    None,
    /// Workflows (and chatflows) finish with `status: "failed"` and an `error` (HTTP 200,
    /// as Dify does; a chatflow then sends `event: error`). Chat and agent apps have no run
    /// status, so for them this is the same as [`Fault::Error`].
    Failed,
    /// The stream ends with Dify's `event: error` instead of its terminal event; blocking
    /// calls answer 400 `completion_request_error`.
    Error,
    /// The run is stopped after `fault_after` events, as if `POST .../stop` had been
    /// called: `workflow_finished` with `status: "stopped"` (then `message_end` for a
    /// chatflow), or just `message_end` for chat and agent apps.
    Stopped,
    /// Answer this 4xx/5xx status in Dify's envelope right after validating the request.
    Http(u16),
    /// Answer 429 `rate_limit_error` (the plan's quota), as Dify's billing check does.
    RateLimit,
    /// After `fault_after` events, close the connection abruptly: no terminal event, no
    /// end of the chunked body.
    Reset,
    /// After `fault_after` events, go silent (no events, no pings) until the client leaves
    /// (or the server shuts down); a stop call does not end it, as a hung worker would
    /// not notice one either.
    Stall,
    /// After `fault_after` events, send one `data:` line of `giant_bytes` bytes in pieces,
    /// then carry on normally.
    GiantEvent,
    /// After `fault_after` events, send one event whose data is `{not json`, then carry on.
    MalformedJson,
}

/// What `--fault`/`X-Mock-Fault` accept, for error messages.
pub(crate) const FAULT_NAMES: &str =
    "none, failed, error, stopped, rate-limit, reset, stall, giant-event, malformed-json or http-<400..599>";

impl FromStr for Fault {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let fault = match value {
            "none" => Fault::None,
            "failed" => Fault::Failed,
            "error" => Fault::Error,
            "stopped" => Fault::Stopped,
            "rate-limit" => Fault::RateLimit,
            "reset" => Fault::Reset,
            "stall" => Fault::Stall,
            "giant-event" => Fault::GiantEvent,
            "malformed-json" => Fault::MalformedJson,
            other => match other.strip_prefix("http-").and_then(|code| code.parse::<u16>().ok()) {
                Some(code @ 400..=599) => Fault::Http(code),
                _ => return Err(format!("{value:?} is not a fault; expected {FAULT_NAMES}")),
            },
        };
        Ok(fault)
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::None => f.write_str("none"),
            Fault::Failed => f.write_str("failed"),
            Fault::Error => f.write_str("error"),
            Fault::Stopped => f.write_str("stopped"),
            Fault::Http(code) => write!(f, "http-{code}"),
            Fault::RateLimit => f.write_str("rate-limit"),
            Fault::Reset => f.write_str("reset"),
            Fault::Stall => f.write_str("stall"),
            Fault::GiantEvent => f.write_str("giant-event"),
            Fault::MalformedJson => f.write_str("malformed-json"),
        }
    }
}

impl Fault {
    /// The error answer this fault replaces the response with, if it is one.
    pub(crate) fn answer(self) -> Option<ApiError> {
        match self {
            Fault::RateLimit => Some(ApiError::rate_limit_error()),
            Fault::Http(code) => Some(http_error(code)),
            _ => None,
        }
    }
}

/// An injected `http-<code>`, with the `code` string dify-api uses for that status (or,
/// for statuses it never sends itself, Werkzeug's name for it in snake case, which is
/// what its error handler derives for a bare `HTTPException`).
fn http_error(code: u16) -> ApiError {
    // `Fault::from_str` only builds codes in 400..=599, all valid status codes.
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let name: std::borrow::Cow<'static, str> = match code {
        400 => "invalid_param".into(),
        401 => "unauthorized".into(),
        403 => "forbidden".into(),
        404 => "not_found".into(),
        405 => "method_not_allowed".into(),
        413 => "request_entity_too_large".into(),
        429 => "too_many_requests".into(),
        500 => "internal_server_error".into(),
        503 => "app_unavailable".into(),
        _ => snake_case(status.canonical_reason().unwrap_or("http error")).into(),
    };
    let reason = status.canonical_reason().unwrap_or("Error");
    ApiError::new(
        status,
        name,
        format!("{reason} (injected by X-Mock-Fault: http-{code})"),
    )
}

fn snake_case(reason: &str) -> String {
    let words: Vec<String> = reason
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    words.join("_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for name in [
            "none",
            "failed",
            "error",
            "stopped",
            "rate-limit",
            "reset",
            "stall",
            "giant-event",
            "malformed-json",
            "http-400",
            "http-599",
        ] {
            assert_eq!(name.parse::<Fault>().unwrap().to_string(), name);
        }
        for bad in ["boom", "http-200", "http-600", "http-", "http-4o4", "HTTP-500"] {
            assert!(bad.parse::<Fault>().unwrap_err().contains("expected"), "{bad}");
        }
    }

    #[test]
    fn http_faults_use_difys_codes() {
        let code = |c: u16| Fault::Http(c).answer().unwrap();
        assert_eq!(code(400).code(), "invalid_param");
        assert_eq!(code(404).code(), "not_found");
        assert_eq!(code(500).code(), "internal_server_error");
        assert_eq!(code(503).code(), "app_unavailable");
        assert_eq!(code(503).status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(code(502).code(), "bad_gateway");
        assert_eq!(code(418).code(), "i_m_a_teapot");
        assert_eq!(code(499).code(), "http_error");
        let limited = Fault::RateLimit.answer().unwrap();
        assert_eq!((limited.status().as_u16(), limited.code()), (429, "rate_limit_error"));
        assert!(Fault::Reset.answer().is_none());
    }
}
