//! `barrage-mock`: a faithful double of Dify's `dify-api` Service API, with ground-truth
//! counters, for Barrage's demo, tests and benchmarks (`barrage mock` serves it).
//!
//! # Routes
//!
//! With Dify's field names, event order and error envelope
//! (`{"code": "...", "message": "...", "status": N}` on every non-2xx answer):
//!
//! - `POST /v1/workflows/run` and `POST /v1/workflows/{workflow_id}/run`: `workflow_started`,
//!   `node_started`/`node_finished` (Start), `chunks` x `text_chunk`,
//!   `node_started`/`node_finished` (End), `workflow_finished`.
//! - `POST /v1/chat-messages`, by app mode (`--chat-mode`, or the
//!   [`APP_MODE_HEADER`] per request):
//!   - `chat`: `chunks` x `message`, then `message_end`;
//!   - `advanced-chat` (chatflow): `workflow_started`, `node_started`/`node_finished`
//!     (Start), `chunks` x `message`, `node_started`/`node_finished` (Answer),
//!     `workflow_finished`, `message_end` (in that order, as dify-api sends them);
//!   - `agent-chat`: `agent_thought`, `chunks` x `agent_message`, `agent_thought`,
//!     `message_end` (streaming only: blocking is a 400, as in Dify).
//! - `POST /v1/workflows/tasks/{task_id}/stop` and `POST /v1/chat-messages/{task_id}/stop`
//!   with `{"user": "..."}`: `{"result": "success"}`. If `task_id` (the `task_id` of the
//!   stream's events) is an open stream of that kind and user, it ends at once with its
//!   stopped ending: `workflow_finished` with `status: "stopped"` (then `message_end`
//!   for a chatflow), or `message_end` for chat and agent apps.
//! - The mock's own, never counted: `GET /_mock/stats` ([`GroundTruth`] as JSON),
//!   `POST /_mock/reset` (zeroes it), `GET /health`.
//!
//! Runs take `response_mode` `"streaming"` (SSE: `data: {json}\n\n` frames, `event: ping`
//! keep-alives) or `"blocking"` (one JSON answer; also the default, as in Dify). The
//! first event is written `first_event_delay` after the request arrived and each later
//! one `chunk_interval` (plus a uniform `0..=jitter` draw) after the previous; a blocking
//! answer comes after `first_event_delay + chunks * chunk_interval` (plus jitter). So
//! for a workflow the time to first event is `first_event_delay` and to first
//! `text_chunk` `first_event_delay + 3 * chunk_interval`; for chat both are
//! `first_event_delay`.
//!
//! `workflow_finished` reports `elapsed_time` = real seconds from the request's arrival to
//! that event, a float holding whole microseconds (`round(elapsed_time * 1e6)` is exact),
//! and `total_tokens` = 12 (the prompt) + one per `text_chunk`/`message` sent;
//! `message_end`'s `metadata.usage.total_tokens` is the same sum. [`GroundTruth`] sums
//! both, so a test can compare a load generator's figures with what was sent.
//!
//! # Limits
//!
//! - `--max-active N` (Dify's `APP_MAX_ACTIVE_REQUESTS`): with N runs in flight
//!   (streams open, blocking calls unanswered), a new run gets `"Too many requests.
//!   Please try again later. The current maximum concurrent requests allowed for
//!   {app_id} is {N}."`: as HTTP 400 `invalid_param`, as dify-api 1.14.1 answers it
//!   (`--dify-version`, the default), or as 429 `too_many_requests` for an earlier
//!   `--dify-version`. Either way its [`Outcome`] is `too_many_requests`.
//! - `--max-connections N` (a pod's `SERVER_WORKER_CONNECTIONS`): at most N TCP
//!   connections are served at once; later ones are accepted but wait unread, queued,
//!   until one closes.
//!
//! # Per-request headers
//!
//! One mock serves many test cases: these headers override the [`MockConfig`] for one
//! request. [`FIRST_EVENT_DELAY_HEADER`] (ms; also "slow first byte"),
//! [`CHUNKS_HEADER`], [`CHUNK_INTERVAL_HEADER`] (ms), [`PING_INTERVAL_HEADER`] (ms, 0 =
//! none), [`JITTER_HEADER`] (ms), [`APP_MODE_HEADER`], [`FAULT_HEADER`],
//! [`FAULT_AFTER_HEADER`] (events before the fault, default 2), [`GIANT_BYTES_HEADER`]
//! (default 2 MiB). A malformed value is a 400 `invalid_param` naming the header.
//!
//! # Faults ([`FAULT_HEADER`] or `--fault`; see [`Fault`])
//!
//! | fault | streaming | blocking | [`Outcome`] |
//! |---|---|---|---|
//! | `none` | normal | normal | `succeeded` |
//! | `failed` | `workflow_finished` status `failed` (chatflow: then `error`; chat/agent: `error` event) | status `failed` (chat: 400) | `failed_status` (chat/agent: `error_event`; chat blocking: `http_4xx`) |
//! | `error` | `event: error` instead of the terminal event | 400 `completion_request_error` | `error_event` / `http_4xx` |
//! | `stopped` | after K events, the stopped ending | status `stopped` (chat: normal) | `stopped` (chat blocking: `succeeded`) |
//! | `http-<400..599>` | that status in Dify's envelope | same | `unauthorized` (401), `too_many_requests` (429), `http_4xx`, `http_5xx` |
//! | `rate-limit` | 429 `rate_limit_error`, "Rate Limit Error" | same | `rate_limit_error` |
//! | `reset` | after K events the connection closes mid-body | closed instead of the body | `reset` |
//! | `stall` | after K events, silence (no pings) until the client leaves | headers, then silence | `stall` |
//! | `giant-event` | after K events one `data:` line of `giant_bytes` bytes (`tts_message`), sent in pieces, then normal | answer padded to `giant_bytes` | `giant_event` |
//! | `malformed-json` | after K events `data: {not json`, then normal | body `{not json` | `malformed_json` |
//!
//! K is [`FAULT_AFTER_HEADER`] (`--fault-after`, default 2), counting data events
//! (not pings) and capped so the fault lands before the terminal event(s).
//!
//! # Ground truth
//!
//! What it served is counted exactly in [`GroundTruth`], readable in-process through
//! [`MockState::ground_truth`] or over HTTP at `GET /_mock/stats`: among others one
//! [`Outcome`] per run (`outcomes`), responses by status, stops, connections served and
//! queued, and the `elapsed_time`/`total_tokens` reported.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use barrage_mock::{MockConfig, MockState, Outcome};
//! let state = MockState::new(MockConfig::default());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let server = tokio::spawn(barrage_mock::run(state.clone(), listener, std::future::pending()));
//! // ... drive load, then:
//! assert_eq!(state.ground_truth().streams_aborted, 0);
//! assert_eq!(state.ground_truth().outcome(Outcome::Reset), 0);
//! # server.abort();
//! # Ok(())
//! # }
//! ```

mod agent;
mod answer;
mod auth;
mod blocking;
mod cadence;
mod chat;
mod chat_message;
mod chatflow;
mod config;
mod envelope;
mod fault;
mod guard;
mod ids;
mod limits;
mod listener;
mod node_spec;
mod nodes;
mod outcome;
mod request;
mod run;
mod server;
mod sse;
mod state;
mod stop;
mod tasks;
mod truth;
mod version;
mod workflow;

pub use config::{
    APP_MODE_HEADER, CHUNK_INTERVAL_HEADER, CHUNKS_HEADER, ChatMode, FAULT_AFTER_HEADER, FAULT_HEADER,
    FIRST_EVENT_DELAY_HEADER, GIANT_BYTES_HEADER, JITTER_HEADER, MockConfig, PING_INTERVAL_HEADER,
};
pub use fault::Fault;
pub use node_spec::{Delay, NodeSpec, WorkflowNodes};
pub use outcome::Outcome;
pub use server::{router, run};
pub use state::MockState;
pub use truth::GroundTruth;
pub use version::DifyVersion;
