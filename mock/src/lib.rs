//! `barrage-mock`: a faithful double of Dify's `dify-api` Service API, with ground-truth
//! counters, for Barrage's demo, tests and benchmarks (`barrage mock` serves it).
//!
//! It answers the two Service API calls load tests hit most, with Dify's field names,
//! event order and error envelope:
//!
//! - `POST /v1/workflows/run` and `POST /v1/workflows/{workflow_id}/run`: `workflow_started`,
//!   `node_started`/`node_finished` (Start), `chunks` x `text_chunk`,
//!   `node_started`/`node_finished` (End), `workflow_finished`.
//! - `POST /v1/chat-messages`: `chunks` x `message`, then `message_end`.
//!
//! Both take `response_mode` `"streaming"` (SSE: `data: {json}\n\n` frames, `event: ping`
//! keep-alives) or `"blocking"` (one JSON answer; also the default, as in Dify). The
//! first event is written `first_event_delay` after the request arrived and each later
//! one `chunk_interval` after the previous; a blocking answer comes after
//! `first_event_delay + chunks * chunk_interval`. So for a workflow the time to first
//! event is `first_event_delay` and to first `text_chunk` `first_event_delay +
//! 3 * chunk_interval`; for chat both are `first_event_delay`.
//!
//! One mock serves many test cases: the `X-Mock-*` headers ([`FIRST_EVENT_DELAY_HEADER`],
//! [`CHUNKS_HEADER`], [`CHUNK_INTERVAL_HEADER`], [`PING_INTERVAL_HEADER`],
//! [`FAULT_HEADER`]) override the [`MockConfig`] per request.
//!
//! What it served is counted exactly in [`GroundTruth`], readable in-process through
//! [`MockState::ground_truth`] or over HTTP at `GET /_mock/stats` (`POST /_mock/reset`
//! zeroes it; `GET /health` is the liveness probe; none of the three is counted).
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use barrage_mock::{MockConfig, MockState};
//! let state = MockState::new(MockConfig::default());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let server = tokio::spawn(barrage_mock::run(state.clone(), listener, std::future::pending()));
//! // ... drive load, then:
//! assert_eq!(state.ground_truth().streams_aborted, 0);
//! # server.abort();
//! # Ok(())
//! # }
//! ```

mod answer;
mod auth;
mod chat;
mod config;
mod envelope;
mod ids;
mod request;
mod server;
mod sse;
mod state;
mod truth;
mod workflow;

pub use config::{
    CHUNK_INTERVAL_HEADER, CHUNKS_HEADER, FAULT_HEADER, FIRST_EVENT_DELAY_HEADER, MockConfig, PING_INTERVAL_HEADER,
};
pub use server::{router, run};
pub use state::MockState;
pub use truth::GroundTruth;
