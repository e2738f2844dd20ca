//! Domain types shared by the Barrage master and workers.
//!
//! - [`scenario`]: the scenario file as written (TOML/YAML through the `config` crate)
//!   and its validation into a [`plan::RunPlan`], the one typed form both sides use.
//! - [`template`]: request templates (`{{question}}`, `{{user}}`, `${ENV}` secrets).
//! - [`metrics`]: metric names and the HDR histogram codec used on the wire.
//! - [`wire`]: conversions between protocol messages and domain types.
//! - [`bounds`]: how much of what a target or a peer sends may enter a report.
//! - [`telemetry`]: `tracing` set-up shared by every role.

pub mod arrival;
pub mod bounds;
pub mod duration;
pub mod error;
pub mod metrics;
pub mod plan;
pub mod saved;
pub mod scenario;
pub mod shape;
pub mod telemetry;
pub mod template;
pub mod threshold;
pub mod wire;

pub use error::{Error, Result};
