//! How the mock behaves: the process-wide [`MockConfig`] (flags) and the per-request
//! [`Overrides`] a client may send as `X-Mock-*` headers, resolved into one [`Behaviour`]
//! per request so a single mock can serve several test cases at once.

use std::fmt;
use std::time::Duration;

use http::HeaderMap;

use crate::envelope::ApiError;
use crate::fault::Fault;
use crate::node_spec::WorkflowNodes;
use crate::version::DifyVersion;

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
    /// Dify's APP_MAX_ACTIVE_REQUESTS: with this many runs in flight (streams open plus
    /// blocking calls unanswered), a new one is refused "Too many requests" (the form
    /// depends on --dify-version). 0 = unlimited.
    #[arg(long, default_value_t = 0)]
    pub max_active: u64,
    /// A dify-api pod's SERVER_WORKER_CONNECTIONS: serve at most this many TCP connections
    /// at once; later ones wait, accepted but unread, until one closes. 0 = unlimited.
    #[arg(long, default_value_t = 0)]
    pub max_connections: usize,
    /// Uniform random extra delay, 0 to this, added to every interval between events.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub jitter: Duration,
    /// The kind of app `POST /v1/chat-messages` answers as, unless X-Mock-App-Mode says.
    #[arg(long, value_enum, default_value_t = ChatMode::Chat)]
    pub chat_mode: ChatMode,
    /// Failure injected into every request that does not send X-Mock-Fault (one of
    /// none, failed, error, stopped, rate-limit, reset, stall, giant-event,
    /// malformed-json, http-<400..599>).
    #[arg(long, default_value_t = Fault::None)]
    pub fault: Fault,
    /// Events sent before a reset, stall, giant-event, malformed-json or stopped fault.
    #[arg(long, default_value_t = 2)]
    pub fault_after: u64,
    /// Length in bytes of the `data:` line a giant-event fault sends.
    #[arg(long, default_value_t = 2 << 20)]
    pub giant_bytes: u64,
    /// The dify-api release to answer as (sent as `X-Version`). 1.14.1 and later refuse
    /// a run over --max-active with HTTP 400 `invalid_param` "Too many requests...", as
    /// the real 1.14.1 does; an earlier version (e.g. 1.13.0) with 429
    /// `too_many_requests`.
    #[arg(long, default_value_t = DifyVersion::V1_14_1)]
    pub dify_version: DifyVersion,
    /// A streamed workflow run plays these nodes in order, each `TYPE:TITLE:DELAY`
    /// with DELAY `200ms` or `uniform(10ms,30ms)`, e.g.
    /// `start:Start:0ms,llm:LLM:200ms,code:Code:uniform(10ms,30ms),end:End:0ms`; each
    /// `node_finished` reports the time actually spent on its node. Unset: Start, text
    /// chunks, End.
    #[arg(long)]
    pub workflow_nodes: Option<WorkflowNodes>,
    /// Slept before `workflow_started` of a streamed workflow run (after the first
    /// event delay): Dify's queueing in dify-api and Celery, part of no node.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub queue_delay: Duration,
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
            max_active: 0,
            max_connections: 0,
            jitter: Duration::ZERO,
            chat_mode: ChatMode::Chat,
            fault: Fault::None,
            fault_after: 2,
            giant_bytes: 2 << 20,
            dify_version: DifyVersion::V1_14_1,
            workflow_nodes: None,
            queue_delay: Duration::ZERO,
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
            .field("max_active", &self.max_active)
            .field("max_connections", &self.max_connections)
            .field("jitter", &self.jitter)
            .field("chat_mode", &self.chat_mode)
            .field("fault", &self.fault)
            .field("fault_after", &self.fault_after)
            .field("giant_bytes", &self.giant_bytes)
            .field("dify_version", &self.dify_version)
            .field("workflow_nodes", &self.workflow_nodes)
            .field("queue_delay", &self.queue_delay)
            .finish()
    }
}

/// The chat-style app modes `POST /v1/chat-messages` serves, with Dify's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ChatMode {
    /// Basic chatbot: `message` x N, `message_end`.
    #[default]
    Chat,
    /// Chatflow: a workflow run around the messages, ending `workflow_finished`, `message_end`.
    AdvancedChat,
    /// Agent: `agent_thought`, `agent_message` x N, `message_end`; streaming only.
    AgentChat,
}

impl ChatMode {
    /// Dify's `mode` string for it.
    pub fn name(self) -> &'static str {
        match self {
            ChatMode::Chat => "chat",
            ChatMode::AdvancedChat => "advanced-chat",
            ChatMode::AgentChat => "agent-chat",
        }
    }
}

/// The app a request claims to call (X-Mock-App-Mode), checked against the route as
/// dify-api checks the key's app against it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AppMode {
    Workflow,
    Chat(ChatMode),
}

impl AppMode {
    fn parse(value: &str) -> Option<Self> {
        match value {
            "workflow" => Some(Self::Workflow),
            "chat" => Some(Self::Chat(ChatMode::Chat)),
            "advanced-chat" => Some(Self::Chat(ChatMode::AdvancedChat)),
            "agent-chat" => Some(Self::Chat(ChatMode::AgentChat)),
            _ => None,
        }
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
/// Header injecting a failure into one request (see [`Fault`] for each one):
/// `none`, `failed`, `error`, `stopped`, `rate-limit`, `reset`, `stall`, `giant-event`,
/// `malformed-json` or `http-<400..599>`. Overrides [`MockConfig::fault`].
pub const FAULT_HEADER: &str = "x-mock-fault";
/// Header overriding [`MockConfig::fault_after`]: events sent before the fault.
pub const FAULT_AFTER_HEADER: &str = "x-mock-fault-after";
/// Header overriding [`MockConfig::giant_bytes`]: length of the giant `data:` line.
pub const GIANT_BYTES_HEADER: &str = "x-mock-giant-bytes";
/// Header overriding [`MockConfig::jitter`], in milliseconds.
pub const JITTER_HEADER: &str = "x-mock-jitter-ms";
/// Header naming the app the request calls: `chat`, `advanced-chat` or `agent-chat` on
/// `/v1/chat-messages` (overrides [`MockConfig::chat_mode`]); `workflow` on a chat route
/// or a chat mode on a workflow route is answered as dify-api answers a key of the wrong
/// app (400 `not_chat_app` / `not_workflow_app`).
pub const APP_MODE_HEADER: &str = "x-mock-app-mode";

/// Largest delay a header may ask for (one hour): keeps deadline arithmetic far from
/// overflow and catches a seconds-for-milliseconds mistake early.
const MAX_HEADER_MILLIS: u64 = 3_600_000;
/// Largest chunk count a header may ask for; a stream this long already runs for hours.
const MAX_HEADER_CHUNKS: u32 = 1_000_000;
/// Largest giant event a header may ask for (1 GiB): far past any client's line limit.
const MAX_GIANT_BYTES: u64 = 1 << 30;

/// What one request asked for through `X-Mock-*` headers; `None` means "use the config".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Overrides {
    pub first_event_delay: Option<Duration>,
    pub chunks: Option<u32>,
    pub chunk_interval: Option<Duration>,
    pub ping_interval: Option<Duration>,
    pub fault: Option<Fault>,
    pub fault_after: Option<u64>,
    pub giant_bytes: Option<u64>,
    pub jitter: Option<Duration>,
    pub app_mode: Option<AppMode>,
}

impl Overrides {
    /// Reads the `X-Mock-*` headers; a malformed value is the client's mistake and
    /// becomes a 400 naming the header, never a silent default.
    pub(crate) fn from_headers(headers: &HeaderMap) -> Result<Self, ApiError> {
        Ok(Self {
            first_event_delay: millis(headers, FIRST_EVENT_DELAY_HEADER)?,
            chunks: number(headers, CHUNKS_HEADER, MAX_HEADER_CHUNKS)?,
            chunk_interval: millis(headers, CHUNK_INTERVAL_HEADER)?,
            ping_interval: millis(headers, PING_INTERVAL_HEADER)?,
            fault: header(headers, FAULT_HEADER)?
                .map(|value| {
                    value
                        .parse::<Fault>()
                        .map_err(|err| ApiError::invalid_param(format!("{FAULT_HEADER}: {err}")))
                })
                .transpose()?,
            fault_after: number(headers, FAULT_AFTER_HEADER, u64::from(MAX_HEADER_CHUNKS))?,
            giant_bytes: number(headers, GIANT_BYTES_HEADER, MAX_GIANT_BYTES)?,
            jitter: millis(headers, JITTER_HEADER)?,
            app_mode: header(headers, APP_MODE_HEADER)?
                .map(|value| {
                    AppMode::parse(value).ok_or_else(|| {
                        ApiError::invalid_param(format!(
                            "{APP_MODE_HEADER}: {value:?} is not an app mode; expected workflow, chat, advanced-chat or agent-chat"
                        ))
                    })
                })
                .transpose()?,
        })
    }
}

/// The effective knobs for one request: the config, with that request's overrides applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Behaviour {
    pub first_event_delay: Duration,
    pub chunks: u32,
    pub chunk_interval: Duration,
    /// `None` = never ping.
    pub ping_interval: Option<Duration>,
    pub fault: Fault,
    pub fault_after: u64,
    pub giant_bytes: u64,
    pub jitter: Duration,
    /// What `/v1/chat-messages` answers as.
    pub chat_mode: ChatMode,
    /// The app the request named, if it named one (checked against the route).
    pub app_mode: Option<AppMode>,
}

impl Behaviour {
    pub(crate) fn resolve(cfg: &MockConfig, overrides: &Overrides) -> Self {
        let ping_interval = overrides.ping_interval.unwrap_or(cfg.ping_interval);
        let chat_mode = match overrides.app_mode {
            Some(AppMode::Chat(mode)) => mode,
            _ => cfg.chat_mode,
        };
        Self {
            first_event_delay: overrides.first_event_delay.unwrap_or(cfg.first_event_delay),
            chunks: overrides.chunks.unwrap_or(cfg.chunks),
            chunk_interval: overrides.chunk_interval.unwrap_or(cfg.chunk_interval),
            ping_interval: (!ping_interval.is_zero()).then_some(ping_interval),
            fault: overrides.fault.unwrap_or(cfg.fault),
            fault_after: overrides.fault_after.unwrap_or(cfg.fault_after),
            giant_bytes: overrides.giant_bytes.unwrap_or(cfg.giant_bytes),
            jitter: overrides.jitter.unwrap_or(cfg.jitter),
            chat_mode,
            app_mode: overrides.app_mode,
        }
    }

    /// How long a blocking call takes: as long as the stream would take to deliver its
    /// last chunk, `first_event_delay + chunks * (chunk_interval + jitter draw)`.
    pub(crate) fn blocking_duration(&self) -> Duration {
        let intervals = self.chunk_interval.saturating_mul(self.chunks);
        let jitter = if self.jitter.is_zero() {
            Duration::ZERO
        } else {
            (0..self.chunks).fold(Duration::ZERO, |sum, _| sum.saturating_add(self.jitter_draw()))
        };
        self.first_event_delay.saturating_add(intervals).saturating_add(jitter)
    }

    /// One draw of the jitter: uniform in `0..=jitter`, in whole microseconds.
    pub(crate) fn jitter_draw(&self) -> Duration {
        if self.jitter.is_zero() {
            return Duration::ZERO;
        }
        let max = u64::try_from(self.jitter.as_micros()).unwrap_or(u64::MAX);
        Duration::from_micros(rand::random_range(0..=max))
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
        // `Debug` lists every field (the key only as present or not), so this covers
        // fields added later without touching the test.
        assert_eq!(format!("{parsed:?}"), format!("{:?}", MockConfig::default()));
    }

    #[test]
    fn new_flags_parse() {
        let cfg = Cli::parse_from([
            "mock",
            "--max-active",
            "3",
            "--max-connections",
            "10",
            "--jitter",
            "7ms",
            "--chat-mode",
            "advanced-chat",
            "--fault",
            "http-503",
            "--fault-after",
            "0",
            "--giant-bytes",
            "4096",
            "--dify-version",
            "1.13.0",
        ])
        .mock;
        assert_eq!((cfg.max_active, cfg.max_connections), (3, 10));
        assert_eq!(cfg.jitter, Duration::from_millis(7));
        assert_eq!(cfg.chat_mode, ChatMode::AdvancedChat);
        assert_eq!(cfg.fault, Fault::Http(503));
        assert_eq!((cfg.fault_after, cfg.giant_bytes), (0, 4096));
        assert_eq!(cfg.dify_version, DifyVersion::new(1, 13, 0));
        let b = Behaviour::resolve(&cfg, &Overrides::default());
        assert_eq!(
            (b.fault, b.chat_mode, b.app_mode),
            (Fault::Http(503), ChatMode::AdvancedChat, None)
        );
        assert!(Cli::try_parse_from(["mock", "--fault", "boom"]).is_err());
        assert!(Cli::try_parse_from(["mock", "--dify-version", "latest"]).is_err());
    }

    #[test]
    fn jitter_stays_in_range() {
        let b = Behaviour {
            jitter: Duration::from_millis(3),
            chunks: 100,
            ..Behaviour::default()
        };
        for _ in 0..1000 {
            assert!(b.jitter_draw() <= Duration::from_millis(3));
        }
        let total = b.blocking_duration();
        assert!(total <= Duration::from_millis(300), "{total:?}");
        assert!(Behaviour::default().jitter_draw().is_zero());
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
            (FAULT_AFTER_HEADER, "5"),
            (GIANT_BYTES_HEADER, "1024"),
            (JITTER_HEADER, "4"),
            (APP_MODE_HEADER, "agent-chat"),
        ]))
        .unwrap();
        let b = Behaviour::resolve(&MockConfig::default(), &overrides);
        assert_eq!(b.first_event_delay, Duration::from_millis(7));
        assert_eq!(b.chunks, 3);
        assert_eq!(b.chunk_interval, Duration::ZERO);
        assert_eq!(b.ping_interval, Some(Duration::from_secs(10)));
        assert_eq!(b.fault, Fault::Failed);
        assert_eq!((b.fault_after, b.giant_bytes), (5, 1024));
        assert_eq!(b.jitter, Duration::from_millis(4));
        assert_eq!(b.chat_mode, ChatMode::AgentChat);
        assert_eq!(b.app_mode, Some(AppMode::Chat(ChatMode::AgentChat)));
        // Three chunks at 0 ms plus up to 4 ms of jitter each.
        assert!(b.blocking_duration() <= Duration::from_millis(7 + 3 * 4));
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
            (FAULT_HEADER, "http-200"),
            (FAULT_AFTER_HEADER, "x"),
            (GIANT_BYTES_HEADER, "1073741825"),
            (JITTER_HEADER, "-1"),
            (APP_MODE_HEADER, "completion"),
        ] {
            let err = Overrides::from_headers(&headers(&[(name, value)])).unwrap_err();
            assert_eq!(err.status(), http::StatusCode::BAD_REQUEST);
            assert!(err.message().contains(name), "{name}={value}: {err:?}");
        }
    }
}
