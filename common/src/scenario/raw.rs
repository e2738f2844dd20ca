//! The scenario file as written: the serde structs it deserializes into, before any
//! check (`deny_unknown_fields` refuses misspelt keys), and the read of its text
//! through the `config` crate, refusing YAML aliases first.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScenario {
    pub(super) host: Option<String>,
    #[serde(default)]
    pub(super) run: RawRun,
    #[serde(default)]
    pub(super) presets: BTreeMap<String, RawRun>,
    #[serde(default)]
    pub(super) thresholds: Vec<RawThreshold>,
    #[serde(default)]
    pub(super) data: BTreeMap<String, RawPool>,
    #[serde(default)]
    pub(super) users: Vec<RawClass>,
    #[serde(default)]
    pub(super) limits: RawLimits,
    #[serde(default)]
    pub(super) resolve: BTreeMap<String, Vec<String>>,
    /// `[goodput]`: the per-request objectives of every task without its own
    /// (`ttfe = "500ms"`); keys are checked by `goodput::slo`, so a misspelt one names
    /// the allowed ones.
    pub(super) goodput: Option<BTreeMap<String, String>>,
}

/// `"p95(ttfe) < 500ms"` or `{ expr = "error_rate < 5%", abort_on_fail = true }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawThreshold {
    Expr(String),
    Full(RawThresholdTable),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawThresholdTable {
    pub(super) expr: String,
    #[serde(default)]
    pub(super) abort_on_fail: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRun {
    pub(super) users: Option<i64>,
    pub(super) spawn_rate: Option<f64>,
    pub(super) run_time: Option<String>,
    pub(super) stages: Option<Vec<RawStage>>,
    pub(super) step: Option<RawStep>,
    pub(super) spike: Option<RawSpike>,
    /// Open model: iterations per second, cluster-wide (the start rate with stages).
    pub(super) arrival_rate: Option<f64>,
    /// Open model: the rate over time, each stage ramping linearly to its rate.
    pub(super) arrival_stages: Option<Vec<RawRateStage>>,
    pub(super) max_in_flight: Option<i64>,
    /// Open model: how arrivals are spaced (`constant`, `poisson`, `gamma`).
    pub(super) arrival_process: Option<String>,
    /// Open model, gamma: the shape k (coefficient of variation 1/sqrt(k)).
    pub(super) burstiness: Option<f64>,
    /// Open model, poisson or gamma: the seed of the arrival sequence.
    pub(super) seed: Option<u64>,
    /// Open model: replay this JSONL trace's arrivals instead of a rate.
    pub(super) arrival_trace: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRateStage {
    pub(super) duration: String,
    pub(super) rate: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStage {
    pub(super) duration: String,
    pub(super) users: i64,
    pub(super) spawn_rate: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStep {
    pub(super) start: i64,
    pub(super) step: i64,
    pub(super) every: String,
    pub(super) max: i64,
    pub(super) spawn_rate: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSpike {
    pub(super) users: i64,
    pub(super) peak: i64,
    pub(super) before: String,
    pub(super) hold: String,
    pub(super) after: String,
    pub(super) spawn_rate: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub(super) sse_max_event_bytes: Option<i64>,
    pub(super) connect_timeout: Option<String>,
    pub(super) tls_insecure: Option<bool>,
    pub(super) dns_refresh: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPool {
    pub(super) values: Option<Vec<String>>,
    pub(super) file: Option<String>,
    /// A CSV file with a header row: each column becomes `{{pool.column}}`, and one
    /// request takes every column from the same row.
    pub(super) csv: Option<String>,
    /// Names of environment variables whose values form the pool (secrets).
    pub(super) env: Option<Vec<String>>,
    pub(super) mode: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClass {
    pub(super) name: Option<String>,
    pub(super) weight: Option<i64>,
    pub(super) fixed_count: Option<i64>,
    pub(super) wait: Option<String>,
    pub(super) host: Option<String>,
    /// "weighted" (default: pick by weight) or "sequential" (in order, round robin).
    pub(super) order: Option<String>,
    /// Tasks each user runs once, in order, before its task loop (log in, create a project).
    #[serde(default)]
    pub(super) on_start: Vec<RawTask>,
    #[serde(default)]
    pub(super) tasks: Vec<RawTask>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTask {
    pub(super) name: Option<String>,
    pub(super) method: Option<String>,
    pub(super) path: Option<String>,
    pub(super) kind: Option<String>,
    #[serde(default)]
    pub(super) headers: BTreeMap<String, String>,
    pub(super) body: Option<String>,
    /// A JSON body written as a table (`json = { inputs = { query = "{{q}}" } }`):
    /// serialized once; `{{var}}` inside its strings is rendered JSON-escaped.
    pub(super) json: Option<serde_json::Value>,
    /// Business events one successful request carries (batch endpoints), default 1.
    pub(super) events_per_request: Option<i64>,
    pub(super) weight: Option<i64>,
    pub(super) timeout: Option<String>,
    pub(super) expect: Option<Vec<i64>>,
    #[serde(default)]
    pub(super) tags: Vec<String>,
    /// `var = "/json/pointer"` or `var = "header:Name"`: values taken from the response
    /// into the user's variables, for later requests (`{{var}}`).
    #[serde(default)]
    pub(super) capture: BTreeMap<String, String>,
    /// `[{ name = "...", json = "/ptr", equals = "v" }, { name = "...", body_contains = "x" }]`
    #[serde(default)]
    pub(super) checks: Vec<RawCheck>,
    pub(super) terminal_event: Option<String>,
    pub(super) first_event_timeout: Option<String>,
    pub(super) read_timeout: Option<String>,
    pub(super) connection: Option<String>,
    pub(super) app: Option<String>,
    pub(super) conversation_turns: Option<i64>,
    pub(super) stop_on_cancel: Option<bool>,
    /// This task's own objectives, replacing the scenario's `[goodput]` for it.
    pub(super) goodput: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCheck {
    pub(super) name: Option<String>,
    pub(super) json: Option<String>,
    pub(super) equals: Option<String>,
    pub(super) body_contains: Option<String>,
}

impl RawScenario {
    /// Deserializes scenario text in `format`; the message is what the file's error says.
    pub(super) fn read(text: &str, format: config::FileFormat) -> Result<RawScenario, String> {
        if format == config::FileFormat::Yaml {
            refuse_yaml_aliases(text)?;
        }
        config::Config::builder()
            .add_source(config::File::from_str(text, format))
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| e.to_string())
    }
}

/// YAML aliases (`*name`) expand on load: a few hundred bytes of nested aliases become
/// gigabytes (an "alias bomb"). Scenarios have no need for them, so they are refused
/// before `config` expands anything. Syntax errors are left for `config` to report.
fn refuse_yaml_aliases(text: &str) -> Result<(), String> {
    use yaml_rust2::parser::{Event, Parser};
    let mut parser = Parser::new_from_str(text);
    loop {
        match parser.next_token() {
            Ok((Event::Alias(_), mark)) => {
                return Err(format!(
                    "line {}: YAML aliases (*name) are not supported in scenarios; write the value out",
                    mark.line()
                ));
            }
            Ok((Event::StreamEnd, _)) | Err(_) => return Ok(()),
            Ok(_) => {}
        }
    }
}
