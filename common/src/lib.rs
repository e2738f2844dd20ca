//! Domain types shared by the Barrage master and workers.
//!
//! - [`scenario`]: the scenario file as written (TOML/YAML through the `config` crate)
//!   and its validation into a [`plan::RunPlan`], the one typed form both sides use.
//! - [`plan`]: the validated plan every worker runs (classes, tasks, pools, limits).
//! - [`template`]: request templates (`{{question}}`, `{{user}}`, `${ENV}` secrets).
//! - [`shape`]: load shapes of the closed model (users over time).
//! - [`arrival_schedule`]: the open model's arrival rate over time, and each worker's
//!   segment of its arrivals.
//! - [`arrival_process`]: constant, Poisson or gamma inter-arrival times, seeded: the
//!   one sequence of arrivals every worker derives.
//! - [`arrival_trace`]: a recorded arrival trace (JSONL of offsets and inputs) to
//!   replay, split across the workers like the other arrivals.
//! - [`threshold`]: pass/fail criteria (`p95(ttfe) < 500ms`) and their grammar.
//! - [`metrics`]: metric names, failure kinds, counters, the HDR histogram codec and
//!   [`metrics::EndpointStats`].
//! - [`wire`]: conversions between protocol messages and domain types ([`wire_nodes`]:
//!   Dify nodes).
//! - [`saved`]: `EndpointStats` as saved to disk and read back ([`saved_nodes`]: its
//!   Dify nodes).
//! - [`bounds`]: how much of what a target or a peer sends may enter a report.
//! - [`duration`]: durations as people write them, and their serde form.
//! - [`error`]: the domain layer's errors.
//! - [`telemetry`]: `tracing` set-up shared by every role.

pub mod arrival_process;
pub mod arrival_schedule;
pub mod arrival_trace;
pub mod bounds;
pub mod duration;
pub mod error;
pub mod goodput;
pub mod metrics;
pub mod plan;
pub mod saved;
pub mod saved_nodes;
pub mod scenario;
pub mod shape;
pub mod telemetry;
pub mod template;
pub mod threshold;
pub mod wire;
pub mod wire_nodes;

pub use error::{Error, Result};
