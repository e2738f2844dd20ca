//! The scenario file as people write it, and its validation into a [`RunPlan`].
//!
//! TOML or YAML (by extension) read through the `config` crate into raw structs with
//! `deny_unknown_fields` (`raw`), then validated once (`validate`). Every error
//! names the file, the field path (`users[0].tasks[1].wait`) and what was expected.
//! Run settings (`[run]`, `run_defaults`) are layered file < `BARRAGE_RUN_*`
//! environment < flags by the caller, and so is `[goodput]` (< `--goodput`).
//!
//! - `raw`: the file as written (serde structs) and reading its text.
//! - `validate`: the pass over the sections, in a fixed order.
//! - `run_defaults`: `[run]` and `[presets.NAME]`: users, shapes, the open model.
//! - `pools`: `[data.NAME]` data pools.
//! - `goodput`: `goodput = {..}` per-request objectives, the scenario's and a task's.
//! - `task`: one task: request, kind, captures, checks.
//! - `endpoints`: the stats rows tasks share by name and method.
//! - `values`: single values (host, rate, wait, weight), also used by the command line.
//! - `selection`: narrowing a plan to the classes and tags named on the command line.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Error, Result};
use crate::plan::RunPlan;
use crate::threshold::Threshold;

mod endpoints;
mod goodput;
mod pools;
mod raw;
mod run_defaults;
mod selection;
mod task;
mod validate;
mod values;

pub use goodput::{apply_goodput, parse_goodput};
pub use run_defaults::{Arrival, DEFAULT_MAX_IN_FLIGHT, RunDefaults};
pub use selection::{filter_tags, select_classes};
pub use values::{check_host, check_rate, parse_wait};

/// Builds the error of a field (its path, e.g. `run.users`) from a message: every
/// section's checks report through one, so each message names file and field alike.
type FieldErr<'a> = &'a dyn Fn(&str, String) -> Error;

/// A loaded scenario: the plan plus the run settings the file suggests.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// What every worker runs: classes, tasks, pools, endpoints, limits.
    pub plan: RunPlan,
    /// `[run]`: the load the file suggests when no flag or preset says otherwise.
    pub run: RunDefaults,
    /// `[presets.NAME]`: named sets of run settings (`--preset NAME`), laid over `[run]`.
    pub presets: BTreeMap<String, RunDefaults>,
    /// `thresholds = [...]`: pass/fail criteria (`--threshold` adds more).
    pub thresholds: Vec<Threshold>,
    /// `[goodput]`: the objectives of every task without its own. Not yet in the
    /// plan: the caller lays `--goodput` over it and applies it with [`apply_goodput`].
    pub goodput: Option<crate::goodput::Slo>,
}

/// Reads and validates a scenario file. `env` resolves `${NAME}` secrets.
pub fn load(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Scenario> {
    let file_err = |message: String| Error::ScenarioFile {
        file: path.to_path_buf(),
        message,
    };
    let format = match path.extension().and_then(|e| e.to_str()) {
        Some("toml") => config::FileFormat::Toml,
        Some("yaml" | "yml") => config::FileFormat::Yaml,
        _ => {
            return Err(file_err(
                "unknown scenario format; name the file *.toml, *.yaml or *.yml".into(),
            ));
        }
    };
    let text = std::fs::read_to_string(path).map_err(|e| file_err(format!("cannot read: {e}")))?;
    let raw = raw::RawScenario::read(&text, format).map_err(file_err)?;
    let base = path.parent().unwrap_or(Path::new("."));
    validate::scenario(raw, &path.display().to_string(), base, env)
}

/// Parses scenario text directly (tests, `validate` of inline examples).
pub fn parse_str(
    text: &str,
    format: config::FileFormat,
    source: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Scenario> {
    let raw = raw::RawScenario::read(text, format).map_err(|message| Error::ScenarioFile {
        file: source.into(),
        message,
    })?;
    validate::scenario(raw, source, Path::new("."), env)
}

#[cfg(test)]
mod tests;
