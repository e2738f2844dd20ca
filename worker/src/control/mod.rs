//! The worker's side of the protocol: join, follow commands, report, survive
//! disconnects, and stop the load when the master goes silent.
//!
//! One loop owns all state (no locks): a `select!` over the shutdown signal, the link
//! to the master (down / connecting / up), a 50 ms housekeeping tick (heartbeats,
//! reports aligned to the run clock, the master timeout) and the engine's stop.
//! The session outlives connections: its unacknowledged reports are resent after
//! a reconnect, and the master merges each (worker, seq) once.
//!
//! By concept: `config` (what a worker is started with, how it ends), `driver`
//! (the loop), `connect` (dialing, TLS, token, Hello), `link` (the link's states),
//! `handling` (Welcome, Assign, Ack, Stop, Fence), `session` (one epoch's state,
//! heartbeats, reports), `report` (the report grid and per-replica rows) and
//! `outbox` (unacknowledged reports, resent in order).

mod config;
mod connect;
mod driver;
mod handling;
mod link;
mod outbox;
mod report;
mod session;

pub use config::{Exit, MasterTls, WorkerConfig};
pub use driver::run;
pub use report::ReportGrid;
