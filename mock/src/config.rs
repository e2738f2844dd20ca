//! How the mock behaves: the process-wide [`MockConfig`] (flags) and the per-request
//! [`Overrides`] a client may send as `X-Mock-*` headers, resolved into one [`Behaviour`]
//! per request so a single mock can serve several test cases at once.

use std::fmt;
use std::time::Duration;

use http::HeaderMap;

use crate::envelope::ApiError;

/// CLI/config for the mock; derives [`clap::Args`] so the master's CLI can
/// `#[command(flatten)]` it. Listening address and logging belong to the caller.
/// `Debug` is written by hand so the API key never reaches a log line.
#[derive(Clone, clap::Args)]
pub struct MockConfig {
    /// Delay before the first event of a stream (and before a blocking response), e.g. "50ms".
    #[arg(long, default_value = "50ms", value_parser = humantime::parse_duration)]
    pub first_event_delay: Duration,
    /// Number of text_chunk (workflow) or message (chat) events per run.
    #[arg(long, default_value_t = 10)]
    pub chunks: u32,
    /// Interval between consecutive events after the first, e.g. "20ms".
    #[arg(long, default_value = "20ms", value_parser = humantime::parse_duration)]
    pub chunk_interval: Duration,
    /// Send `event: ping` every this often while a stream is open (Dify: 10s). "0s" = never.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub ping_interval: Duration,
    /// If set, requests must carry `Authorization: Bearer <key>`; else 401 in Dify's envelope.
    #[arg(long, env = "BARRAGE_MOCK_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

impl Default for MockConfig {
    /// Must match the clap defaults above; `defaults_match_clap` in the tests checks it.
    fn default() -> Self {
        Self {
            first_event_delay: Duration::from_millis(50),
            chunks: 10,
            chunk_interval: Duration::from_millis(20),
            ping_interval: Duration::from_secs(10),
            api_key: None,
        }
    }
}

impl fmt::Debug for MockConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockConfig")
            .field("first_event_delay", &self.first_event_delay)
            .field("chunks", &self.chunks)
            .field("chunk_interval", &self.chunk_interval)
            .field("ping_interval", &self.ping_interval)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Header overriding [`MockConfig::first_event_delay`] for one request, in milliseconds.
pub const FIRST_EVENT_DELAY_HEADER: &str = "x-mock-first-event-delay-ms";
/// Header overriding [`MockConfig::chunks`] for one request.
pub const CHUNKS_HEADER: &str = "x-mock-chunks";
/// Header overriding [`MockConfig::chunk_interval`] for one request, in milliseconds.
pub const CHUNK_INTERVAL_HEADER: &str = "x-mock-chunk-interval-ms";
/// Header overriding [`MockConfig::ping_interval`] for one request, in milliseconds (0 = never).
pub const PING_INTERVAL_HEADER: &str = "x-mock-ping-interval-ms";
/// Header injecting a failure into one request: `failed` (workflow ends with
/// `status: "failed"`), `error` (stream ends with `event: error`; blocking answers 400
/// `completion_request_error`), `http-500` (500 envelope at once) or `none`.
pub const FAULT_HEADER: &str = "x-mock-fault";

/// Largest delay a header may ask for (one hour): keeps deadline arithmetic far from
/// overflow and catches a seconds-for-milliseconds mistake early.
const MAX_HEADER_MILLIS: u64 = 3_600_000;
/// Largest chunk count a header may ask for; a stream this long already runs for hours.
const MAX_HEADER_CHUNKS: u32 = 1_000_000;

/// A failure the client asked the mock to produce, so the load tester's failure
/// accounting can be tested against a target that fails on cue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    /// Behave normally.
    #[default]
    None,
    /// Workflows finish with `status: "failed"` and an `error` (HTTP 200, as Dify does);
    /// chat apps have no such status, so for them this is the same as [`Fault::Error`].
    Failed,
    /// The stream ends with Dify's `event: error` instead of its terminal event; blocking
    /// calls answer 400 `completion_request_error`.
    Error,
    /// Answer 500 in Dify's envelope right after validating the request.
    Http500,
}

impl Fault {
    fn parse(value: &str) -> Option<Self> {
        match value {
            "none" => Some(Self::None),
            "failed" => Some(Self::Failed),
            "error" => Some(Self::Error),
            "http-500" => Some(Self::Http500),
            _ => None,
        }
    }
}

/// What one request asked for through `X-Mock-*` headers; `None` means "use the config".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    pub first_event_delay: Option<Duration>,
    pub chunks: Option<u32>,
    pub chunk_interval: Option<Duration>,
    pub ping_interval: Option<Duration>,
    pub fault: Option<Fault>,
}

impl Overrides {
    /// Reads the `X-Mock-*` headers; a malformed value is the client's mistake and
    /// becomes a 400 naming the header, never a silent default.
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, ApiError> {
        Ok(Self {
            first_event_delay: millis(headers, FIRST_EVENT_DELAY_HEADER)?,
            chunks: number(headers, CHUNKS_HEADER, MAX_HEADER_CHUNKS)?,
            chunk_interval: millis(headers, CHUNK_INTERVAL_HEADER)?,
            ping_interval: millis(headers, PING_INTERVAL_HEADER)?,
            fault: header(headers, FAULT_HEADER)?
                .map(|value| {
                    Fault::parse(value).ok_or_else(|| {
                        ApiError::invalid_param(format!(
                            "{FAULT_HEADER}: {value:?} is not a fault; expected none, failed, error or http-500"
                        ))
                    })
                })
                .transpose()?,
        })
    }
}

/// The effective knobs for one request: the config, with that request's overrides applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Behaviour {
    pub first_event_delay: Duration,
    pub chunks: u32,
    pub chunk_interval: Duration,
    /// `None` = never ping.
    pub ping_interval: Option<Duration>,
    pub fault: Fault,
}

impl Behaviour {
    pub fn resolve(cfg: &MockConfig, overrides: &Overrides) -> Self {
        let ping_interval = overrides.ping_interval.unwrap_or(cfg.ping_interval);
        Self {
            first_event_delay: overrides.first_event_delay.unwrap_or(cfg.first_event_delay),
            chunks: overrides.chunks.unwrap_or(cfg.chunks),
            chunk_interval: overrides.chunk_interval.unwrap_or(cfg.chunk_interval),
            ping_interval: (!ping_interval.is_zero()).then_some(ping_interval),
            fault: overrides.fault.unwrap_or_default(),
        }
    }

    /// How long a blocking call takes: as long as the stream would take to deliver its
    /// last chunk, `first_event_delay + chunks * chunk_interval`.
    pub fn blocking_duration(&self) -> Duration {
        self.first_event_delay
            .saturating_add(self.chunk_interval.saturating_mul(self.chunks))
    }
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, ApiError> {
    headers
        .get(name)
        .map(|value| {
            value
                .to_str()
                .map(str::trim)
                .map_err(|_| ApiError::invalid_param(format!("{name}: value is not visible ASCII")))
        })
        .transpose()
}

fn number<T>(headers: &HeaderMap, name: &str, max: T) -> Result<Option<T>, ApiError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let Some(raw) = header(headers, name)? else {
        return Ok(None);
    };
    match raw.parse::<T>() {
        Ok(n) if n <= max => Ok(Some(n)),
        _ => Err(ApiError::invalid_param(format!(
            "{name}: {raw:?} is not a whole number between 0 and {max}"
        ))),
    }
}

fn millis(headers: &HeaderMap, name: &str) -> Result<Option<Duration>, ApiError> {
    Ok(number(headers, name, MAX_HEADER_MILLIS)?.map(Duration::from_millis))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use http::HeaderValue;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        mock: MockConfig,
    }

    #[test]
    fn defaults_match_clap() {
        // The env var would leak into the parsed value; this test only runs without it.
        if std::env::var_os("BARRAGE_MOCK_API_KEY").is_some() {
            return;
        }
        let parsed = Cli::parse_from(["mock"]).mock;
        let default = MockConfig::default();
        assert_eq!(parsed.first_event_delay, default.first_event_delay);
        assert_eq!(parsed.chunks, default.chunks);
        assert_eq!(parsed.chunk_interval, default.chunk_interval);
        assert_eq!(parsed.ping_interval, default.ping_interval);
        assert_eq!(parsed.api_key, default.api_key);
    }

    #[test]
    fn debug_hides_the_key() {
        let cfg = MockConfig {
            api_key: Some("app-secret".into()),
            ..MockConfig::default()
        };
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("app-secret"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn flags_parse_humantime() {
        let cfg = Cli::parse_from([
            "mock",
            "--first-event-delay",
            "1s",
            "--chunk-interval",
            "5ms",
            "--ping-interval",
            "0s",
            "--chunks",
            "3",
        ])
        .mock;
        assert_eq!(cfg.first_event_delay, Duration::from_secs(1));
        assert_eq!(cfg.chunk_interval, Duration::from_millis(5));
        assert_eq!(cfg.chunks, 3);
        let behaviour = Behaviour::resolve(&cfg, &Overrides::default());
        assert_eq!(behaviour.ping_interval, None);
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (http::HeaderName::from_static(k), HeaderValue::from_static(v)))
            .collect()
    }

    #[test]
    fn headers_override_config() {
        let overrides = Overrides::from_headers(&headers(&[
            (FIRST_EVENT_DELAY_HEADER, "7"),
            (CHUNKS_HEADER, " 3 "),
            (CHUNK_INTERVAL_HEADER, "0"),
            (FAULT_HEADER, "failed"),
        ]))
        .unwrap();
        let b = Behaviour::resolve(&MockConfig::default(), &overrides);
        assert_eq!(b.first_event_delay, Duration::from_millis(7));
        assert_eq!(b.chunks, 3);
        assert_eq!(b.chunk_interval, Duration::ZERO);
        assert_eq!(b.ping_interval, Some(Duration::from_secs(10)));
        assert_eq!(b.fault, Fault::Failed);
        assert_eq!(b.blocking_duration(), Duration::from_millis(7));
    }

    #[test]
    fn bad_headers_are_rejected_by_name() {
        for (name, value) in [
            (CHUNKS_HEADER, "-1"),
            (CHUNKS_HEADER, "ten"),
            (CHUNKS_HEADER, "1000001"),
            (FIRST_EVENT_DELAY_HEADER, "1.5"),
            (CHUNK_INTERVAL_HEADER, "3600001"),
            (FAULT_HEADER, "boom"),
        ] {
            let err = Overrides::from_headers(&headers(&[(name, value)])).unwrap_err();
            assert_eq!(err.status(), http::StatusCode::BAD_REQUEST);
            assert!(err.message().contains(name), "{name}={value}: {err:?}");
        }
    }
}
