//! The Barrage load engine.
//!
//! A worker joins a master over one gRPC stream ([`control`]), receives the run plan
//! and absolute user targets, runs one tokio task per virtual user ([`runner`],
//! `user`) over its own keep-alive connection (`http`), parses SSE incrementally
//! ([`sse`]), judges every answer (`judge`), records into sharded HDR histograms ([`recorder`]) and reports the delta
//! every second. It stops its load by itself when the master goes silent.

pub mod arrivals;
pub mod control;
pub mod cores;
pub mod error;
mod factory;
pub(crate) mod http;
pub(crate) mod judge;
pub mod placement;
pub mod recorder;
pub mod runner;
pub mod source;
pub mod sse;
pub(crate) mod sys;
pub(crate) mod tls;
pub(crate) mod user;

pub use control::{Exit, MasterTls, ReportGrid, WorkerConfig, run};
pub use error::{Error, Result};
pub use source::SourceAddrs;
