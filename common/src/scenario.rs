//! The scenario file as people write it, and its validation into a [`RunPlan`].
//!
//! TOML or YAML (by extension) read through the `config` crate into raw structs with
//! `deny_unknown_fields`, then validated once. Every error names the file, the field
//! path (`users[0].tasks[1].wait`) and what was expected. Run settings (`[run]`) are
//! layered file < `BARRAGE_RUN_*` environment < flags by the caller.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::arrival::{RateStage, Schedule};
use crate::duration;
use crate::error::{Error, Result};
use crate::plan::{
    Capture, Check, CheckRule, ConnectionPolicy, DifyApp, DifySpec, Endpoint, Limits, PLAN_FORMAT, Pool, PoolMode,
    RunPlan, SseSpec, Task, TaskKind, TaskOrder, UserClass, Wait,
};
use crate::shape::{Shape, Stage};
use crate::template::{BUILTIN_VARS, Template};
use crate::threshold::Threshold;

/// A loaded scenario: the plan plus the run settings the file suggests.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub plan: RunPlan,
    pub run: RunDefaults,
    /// `[presets.NAME]`: named sets of run settings (`--preset NAME`), laid over `[run]`.
    pub presets: BTreeMap<String, RunDefaults>,
    /// `thresholds = [...]`: pass/fail criteria (`--threshold` adds more).
    pub thresholds: Vec<Threshold>,
}

/// `[run]` section: defaults for `-u`, `-r`, `-t` that flags override.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunDefaults {
    pub users: Option<u32>,
    pub spawn_rate: Option<f64>,
    pub run_time: Option<Duration>,
    /// `stages`, `step` or `spike`: users over time instead of one constant count.
    pub shape: Option<Shape>,
    /// The open model: iterations arrive on a schedule instead of users looping.
    pub arrival: Option<Arrival>,
}

/// Open-model settings: the arrival schedule and the cluster-wide in-flight cap.
#[derive(Debug, Clone, PartialEq)]
pub struct Arrival {
    pub schedule: Schedule,
    pub max_in_flight: u32,
}

/// In-flight cap when none is given: generous, but bounded.
pub const DEFAULT_MAX_IN_FLIGHT: u32 = 1000;

impl RunDefaults {
    /// `self`, with the settings it leaves open taken from `base`. A preset with a
    /// shape or with users replaces both of the base's.
    pub fn over(&self, base: &RunDefaults) -> RunDefaults {
        let own_load = self.shape.is_some() || self.users.is_some() || self.arrival.is_some();
        let load = if own_load { self } else { base };
        RunDefaults {
            users: self.users.or(if own_load { None } else { base.users }),
            spawn_rate: self.spawn_rate.or(base.spawn_rate),
            run_time: self.run_time.or(base.run_time),
            shape: load.shape.clone(),
            arrival: load.arrival.clone(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    host: Option<String>,
    #[serde(default)]
    run: RawRun,
    #[serde(default)]
    presets: BTreeMap<String, RawRun>,
    #[serde(default)]
    thresholds: Vec<RawThreshold>,
    #[serde(default)]
    data: BTreeMap<String, RawPool>,
    #[serde(default)]
    users: Vec<RawClass>,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    resolve: BTreeMap<String, Vec<String>>,
}

/// `"p95(ttfe) < 500ms"` or `{ expr = "error_rate < 5%", abort_on_fail = true }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawThreshold {
    Expr(String),
    Full(RawThresholdTable),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawThresholdTable {
    expr: String,
    #[serde(default)]
    abort_on_fail: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRun {
    users: Option<i64>,
    spawn_rate: Option<f64>,
    run_time: Option<String>,
    stages: Option<Vec<RawStage>>,
    step: Option<RawStep>,
    spike: Option<RawSpike>,
    /// Open model: iterations per second, cluster-wide (the start rate with stages).
    arrival_rate: Option<f64>,
    /// Open model: the rate over time, each stage ramping linearly to its rate.
    arrival_stages: Option<Vec<RawRateStage>>,
    max_in_flight: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRateStage {
    duration: String,
    rate: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStage {
    duration: String,
    users: i64,
    spawn_rate: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    start: i64,
    step: i64,
    every: String,
    max: i64,
    spawn_rate: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpike {
    users: i64,
    peak: i64,
    before: String,
    hold: String,
    after: String,
    spawn_rate: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    sse_max_event_bytes: Option<i64>,
    connect_timeout: Option<String>,
    tls_insecure: Option<bool>,
    dns_refresh: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPool {
    values: Option<Vec<String>>,
    file: Option<String>,
    /// A CSV file with a header row: each column becomes `{{pool.column}}`, and one
    /// request takes every column from the same row.
    csv: Option<String>,
    /// Names of environment variables whose values form the pool (secrets).
    env: Option<Vec<String>>,
    mode: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClass {
    name: Option<String>,
    weight: Option<i64>,
    fixed_count: Option<i64>,
    wait: Option<String>,
    host: Option<String>,
    /// "weighted" (default: pick by weight) or "sequential" (in order, round robin).
    order: Option<String>,
    /// Tasks each user runs once, in order, before its task loop (log in, create a project).
    #[serde(default)]
    on_start: Vec<RawTask>,
    #[serde(default)]
    tasks: Vec<RawTask>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTask {
    name: Option<String>,
    method: Option<String>,
    path: Option<String>,
    kind: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    body: Option<String>,
    /// A JSON body written as a table (`json = { inputs = { query = "{{q}}" } }`):
    /// serialized once; `{{var}}` inside its strings is rendered JSON-escaped.
    json: Option<serde_json::Value>,
    /// Business events one successful request carries (batch endpoints), default 1.
    events_per_request: Option<i64>,
    weight: Option<i64>,
    timeout: Option<String>,
    expect: Option<Vec<i64>>,
    #[serde(default)]
    tags: Vec<String>,
    /// `var = "/json/pointer"` or `var = "header:Name"`: values taken from the response
    /// into the user's variables, for later requests (`{{var}}`).
    #[serde(default)]
    capture: BTreeMap<String, String>,
    /// `[{ name = "...", json = "/ptr", equals = "v" }, { name = "...", body_contains = "x" }]`
    #[serde(default)]
    checks: Vec<RawCheck>,
    terminal_event: Option<String>,
    first_event_timeout: Option<String>,
    read_timeout: Option<String>,
    connection: Option<String>,
    app: Option<String>,
    conversation_turns: Option<i64>,
    stop_on_cancel: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCheck {
    name: Option<String>,
    json: Option<String>,
    equals: Option<String>,
    body_contains: Option<String>,
}

const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

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
    if format == config::FileFormat::Yaml {
        refuse_yaml_aliases(&text).map_err(file_err)?;
    }
    let raw: RawScenario = config::Config::builder()
        .add_source(config::File::from_str(&text, format))
        .build()
        .and_then(|c| c.try_deserialize())
        .map_err(|e| file_err(e.to_string()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    validate(raw, &path.display().to_string(), base, env)
}

/// Parses scenario text directly (tests, `validate` of inline examples).
pub fn parse_str(
    text: &str,
    format: config::FileFormat,
    source: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Scenario> {
    if format == config::FileFormat::Yaml {
        refuse_yaml_aliases(text).map_err(|message| Error::ScenarioFile {
            file: source.into(),
            message,
        })?;
    }
    let raw: RawScenario = config::Config::builder()
        .add_source(config::File::from_str(text, format))
        .build()
        .and_then(|c| c.try_deserialize())
        .map_err(|e| Error::ScenarioFile {
            file: source.into(),
            message: e.to_string(),
        })?;
    validate(raw, source, Path::new("."), env)
}

/// YAML aliases (`*name`) expand on load: a few hundred bytes of nested aliases become
/// gigabytes (an "alias bomb"). Scenarios have no need for them, so they are refused
/// before `config` expands anything. Syntax errors are left for `config` to report.
fn refuse_yaml_aliases(text: &str) -> std::result::Result<(), String> {
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

fn validate(raw: RawScenario, file: &str, base: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Scenario> {
    let err = |field: &str, message: String| Error::field(file, field, message);

    let host = raw
        .host
        .as_deref()
        .map(|h| check_host(h).map_err(|m| err("host", m)))
        .transpose()?;

    let run = run_defaults(&raw.run, "run", &err)?;
    let mut presets = BTreeMap::new();
    for (name, preset) in &raw.presets {
        let field = format!("presets.{name}");
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') || name.is_empty() {
            return Err(err(&field, "a preset name is letters, digits, `_` and `-`".into()));
        }
        presets.insert(name.clone(), run_defaults(preset, &field, &err)?);
    }
    let thresholds = raw
        .thresholds
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let (expr, abort_on_fail) = match t {
                RawThreshold::Expr(e) => (e, false),
                RawThreshold::Full(t) => (&t.expr, t.abort_on_fail),
            };
            Threshold::parse(expr)
                .map(|t| Threshold { abort_on_fail, ..t })
                .map_err(|m| err(&format!("thresholds[{i}]"), m))
        })
        .collect::<Result<Vec<_>>>()?;

    let mut limits = Limits::default();
    if let Some(bytes) = raw.limits.sse_max_event_bytes {
        limits.sse_max_event_bytes = usize::try_from(bytes).ok().filter(|b| *b >= 64).ok_or_else(|| {
            err(
                "limits.sse_max_event_bytes",
                format!("{bytes} is too small; expected at least 64"),
            )
        })?;
    }
    limits.tls_insecure = raw.limits.tls_insecure.unwrap_or(false);
    if let Some(t) = raw.limits.connect_timeout.as_deref() {
        limits.connect_timeout = duration::parse(t).map_err(|m| err("limits.connect_timeout", m))?;
    }
    if let Some(t) = raw.limits.dns_refresh.as_deref() {
        limits.dns_refresh = duration::parse(t)
            .and_then(|d| {
                if d.is_zero() {
                    Err("a refresh interval must be above 0".to_string())
                } else {
                    Ok(d)
                }
            })
            .map_err(|m| err("limits.dns_refresh", m))?;
    }

    let mut resolve = BTreeMap::new();
    for (host, addrs) in raw.resolve {
        let field = format!("resolve.{host}");
        let parsed = addrs
            .iter()
            .map(|a| {
                a.parse::<std::net::SocketAddr>()
                    .map_err(|_| err(&field, format!("\"{a}\" is not an IP:PORT address")))
            })
            .collect::<Result<Vec<_>>>()?;
        if parsed.is_empty() {
            return Err(err(&field, "give at least one IP:PORT address".into()));
        }
        resolve.insert(host, parsed);
    }
    let mut pools = BTreeMap::new();
    let mut row_groups = 0u32;
    for (name, pool) in raw.data {
        let field = format!("data.{name}");
        if BUILTIN_VARS.contains(&name.as_str()) {
            return Err(err(
                &field,
                format!("`{name}` is a builtin variable; choose another pool name"),
            ));
        }
        let mode = match pool.mode.as_deref() {
            None | Some("random") => PoolMode::Random,
            Some("sequential") => PoolMode::Sequential,
            Some("per_user") => PoolMode::PerUser,
            Some(other) => {
                return Err(err(
                    &format!("{field}.mode"),
                    format!("\"{other}\" is not a pool mode; expected \"random\", \"sequential\" or \"per_user\""),
                ));
            }
        };
        if let Some(f) = &pool.csv {
            if pool.values.is_some() || pool.file.is_some() || pool.env.is_some() {
                return Err(err(&field, "a CSV pool has only `csv` (and `mode`)".into()));
            }
            let p = base.join(f);
            let columns = read_csv(&p).map_err(|m| err(&format!("{field}.csv"), m))?;
            for (column, entries) in columns {
                let pool = Pool {
                    entries,
                    mode,
                    secret: false,
                    row_group: Some(row_groups),
                };
                pools.insert(format!("{name}.{column}"), pool);
            }
            row_groups += 1;
            continue;
        }
        let mut secret = false;
        let entries = match (pool.values, pool.file, pool.env) {
            (Some(values), None, None) => values,
            (None, Some(f), None) => {
                let p = base.join(&f);
                let text = std::fs::read_to_string(&p)
                    .map_err(|e| err(&format!("{field}.file"), format!("cannot read {}: {e}", p.display())))?;
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_string)
                    .collect()
            }
            (None, None, Some(names)) => {
                secret = true;
                names
                    .iter()
                    .map(|n| {
                        env(n).ok_or_else(|| {
                            err(
                                &format!("{field}.env"),
                                format!("environment variable `{n}` is not set"),
                            )
                        })
                    })
                    .collect::<Result<Vec<String>>>()?
            }
            _ => {
                return Err(err(
                    &field,
                    "give exactly one of `values = [...]`, `file = \"path\"` or `env = [\"VAR\", ...]`".into(),
                ));
            }
        };
        if entries.is_empty() {
            return Err(err(&field, "the pool is empty; give at least one entry".into()));
        }
        let entries = Pool {
            entries,
            mode,
            secret,
            row_group: None,
        };
        pools.insert(name, entries);
    }

    if raw.users.is_empty() {
        return Err(err(
            "users",
            "no user classes; add at least one [[users]] with tasks".into(),
        ));
    }
    let mut endpoints: Vec<Endpoint> = Vec::new();
    let mut endpoint_ids: HashMap<(String, String), (usize, u32)> = HashMap::new();
    let mut classes = Vec::new();
    let mut names = std::collections::HashSet::new();
    for (ci, rc) in raw.users.into_iter().enumerate() {
        let cf = format!("users[{ci}]");
        let name = rc.name.unwrap_or_else(|| format!("User{}", ci + 1));
        if !names.insert(name.clone()) {
            return Err(err(
                &format!("{cf}.name"),
                format!("`{name}` is used twice; class names must be unique"),
            ));
        }
        let weight = check_weight(rc.weight).map_err(|m| err(&format!("{cf}.weight"), m))?;
        let wait = match rc.wait.as_deref() {
            None => Wait::Constant(Duration::ZERO),
            Some(w) => parse_wait(w).map_err(|m| err(&format!("{cf}.wait"), m))?,
        };
        let host = rc
            .host
            .as_deref()
            .map(|h| check_host(h).map_err(|m| err(&format!("{cf}.host"), m)))
            .transpose()?;
        if rc.tasks.is_empty() {
            return Err(err(
                &format!("{cf}.tasks"),
                "no tasks; add at least one [[users.tasks]]".into(),
            ));
        }
        // Variables captured anywhere in the class may be used by any of its tasks.
        let captured: std::collections::BTreeSet<String> = rc
            .on_start
            .iter()
            .chain(&rc.tasks)
            .flat_map(|t| t.capture.keys().cloned())
            .collect();
        let vars = Vars {
            pools: &pools,
            captured: &captured,
        };
        let mut tasks = Vec::new();
        for (ti, rt) in rc.tasks.into_iter().enumerate() {
            let tf = format!("{cf}.tasks[{ti}]");
            let task = validate_task(rt, &tf, file, env, &vars, &mut endpoints, &mut endpoint_ids)?;
            tasks.push(task);
        }
        let mut on_start = Vec::new();
        for (ti, rt) in rc.on_start.into_iter().enumerate() {
            let tf = format!("{cf}.on_start[{ti}]");
            on_start.push(validate_task(
                rt,
                &tf,
                file,
                env,
                &vars,
                &mut endpoints,
                &mut endpoint_ids,
            )?);
        }
        let order = match rc.order.as_deref() {
            None | Some("weighted") => TaskOrder::Weighted,
            Some("sequential") => TaskOrder::Sequential,
            Some(other) => {
                return Err(err(
                    &format!("{cf}.order"),
                    format!("\"{other}\" is not a task order; expected \"weighted\" or \"sequential\""),
                ));
            }
        };
        if tasks.iter().all(|t| t.weight == 0) {
            return Err(err(
                &format!("{cf}.tasks"),
                "every task has weight 0; give at least one a weight above 0".into(),
            ));
        }
        let fixed_count = rc
            .fixed_count
            .map(|n| {
                u32::try_from(n).map_err(|_| err(&format!("{cf}.fixed_count"), format!("{n} is not a user count")))
            })
            .transpose()?;
        classes.push(UserClass {
            name,
            weight,
            fixed_count,
            wait,
            host,
            order,
            on_start,
            tasks,
        });
    }
    if classes.iter().all(|c| c.weight == 0 && c.fixed_count.is_none()) {
        return Err(err(
            "users",
            "every user class has weight 0; give at least one a weight above 0".into(),
        ));
    }

    Ok(Scenario {
        plan: RunPlan {
            format: PLAN_FORMAT,
            source: file.to_string(),
            host,
            classes,
            pools,
            endpoints,
            limits,
            resolve,
        },
        run,
        presets,
        thresholds,
    })
}

/// `[run]` or one `[presets.NAME]`, checked; `at` is its field path for messages.
fn run_defaults(raw: &RawRun, at: &str, err: &dyn Fn(&str, String) -> Error) -> Result<RunDefaults> {
    let field = |name: &str| format!("{at}.{name}");
    let count = |name: &str, v: i64| {
        u32::try_from(v).map_err(|_| err(&field(name), format!("{v} is not a user count; expected 0 or more")))
    };
    let time = |name: &str, v: &str| duration::parse(v).map_err(|m| err(&field(name), m));
    let rate = |name: &str, v: Option<f64>| v.map(|r| check_rate(r).map_err(|m| err(&field(name), m))).transpose();
    let open = raw.arrival_rate.is_some() || raw.arrival_stages.is_some();
    if open && (raw.users.is_some() || raw.stages.is_some() || raw.step.is_some() || raw.spike.is_some()) {
        return Err(err(
            at,
            "arrival_rate / arrival_stages (the open model) replace users and their shapes; give one or the other"
                .into(),
        ));
    }
    if raw.max_in_flight.is_some() && !open {
        return Err(err(
            &field("max_in_flight"),
            "caps the open model; give arrival_rate or arrival_stages with it".into(),
        ));
    }
    let arrival = if open {
        let check = |name: &str, r: f64| {
            if r.is_finite() && r >= 0.0 {
                Ok(r)
            } else {
                Err(err(
                    &field(name),
                    format!("{r} is not an arrival rate; expected 0 or more per second"),
                ))
            }
        };
        let start_rate = check("arrival_rate", raw.arrival_rate.unwrap_or(0.0))?;
        let mut stages = Vec::new();
        for (i, s) in raw.arrival_stages.iter().flatten().enumerate() {
            let name = format!("arrival_stages[{i}].duration");
            let duration = time(&name, &s.duration)?;
            if duration.is_zero() {
                return Err(err(&field(&name), "a stage lasts more than 0".into()));
            }
            stages.push(RateStage {
                duration,
                rate: check(&format!("arrival_stages[{i}].rate"), s.rate)?,
            });
        }
        let max_in_flight = match raw.max_in_flight {
            None => DEFAULT_MAX_IN_FLIGHT,
            Some(n @ 1..=10_000_000) => n as u32,
            Some(n) => {
                return Err(err(
                    &field("max_in_flight"),
                    format!("{n} is not between 1 and 10000000"),
                ));
            }
        };
        Some(Arrival {
            schedule: Schedule { start_rate, stages },
            max_in_flight,
        })
    } else {
        None
    };
    let given = [raw.stages.is_some(), raw.step.is_some(), raw.spike.is_some()];
    if given.iter().filter(|g| **g).count() > 1 {
        return Err(err(at, "give one shape: stages, step or spike".into()));
    }
    if given.iter().any(|g| *g) && raw.users.is_some() {
        return Err(err(
            &field("users"),
            "a shape (stages, step, spike) sets the users over time; leave out users".into(),
        ));
    }
    let shape = if let Some(stages) = &raw.stages {
        if stages.is_empty() {
            return Err(err(&field("stages"), "an empty list; give at least one stage".into()));
        }
        let mut out = Vec::new();
        for (i, s) in stages.iter().enumerate() {
            let name = |k: &str| format!("stages[{i}].{k}");
            out.push(Stage {
                duration: time(&name("duration"), &s.duration)?,
                users: count(&name("users"), s.users)?,
                spawn_rate: rate(&name("spawn_rate"), s.spawn_rate)?,
            });
        }
        Some(Shape { stages: out })
    } else if let Some(s) = &raw.step {
        let every = time("step.every", &s.every)?;
        if every.is_zero() {
            return Err(err(&field("step.every"), "0 is not a step time".into()));
        }
        let (start, max) = (count("step.start", s.start)?, count("step.max", s.max)?);
        if max < start {
            return Err(err(&field("step.max"), format!("{max} is below start ({start})")));
        }
        Some(Shape::step(
            start,
            count("step.step", s.step)?,
            every,
            max,
            rate("step.spawn_rate", s.spawn_rate)?,
        ))
    } else if let Some(s) = &raw.spike {
        Some(Shape::spike(
            count("spike.users", s.users)?,
            count("spike.peak", s.peak)?,
            time("spike.before", &s.before)?,
            time("spike.hold", &s.hold)?,
            time("spike.after", &s.after)?,
            rate("spike.spawn_rate", s.spawn_rate)?,
        ))
    } else {
        None
    };
    Ok(RunDefaults {
        shape,
        arrival,
        users: raw
            .users
            .map(|u| {
                u32::try_from(u).map_err(|_| {
                    err(
                        &format!("{at}.users"),
                        format!("{u} is not a user count; expected 0 or more"),
                    )
                })
            })
            .transpose()?,
        spawn_rate: raw
            .spawn_rate
            .map(|r| check_rate(r).map_err(|m| err(&format!("{at}.spawn_rate"), m)))
            .transpose()?,
        run_time: raw
            .run_time
            .as_deref()
            .map(|t| duration::parse(t).map_err(|m| err(&format!("{at}.run_time"), m)))
            .transpose()?,
    })
}

/// The `{{...}}` names a class's templates may use besides the builtins.
struct Vars<'a> {
    pools: &'a BTreeMap<String, Pool>,
    captured: &'a std::collections::BTreeSet<String>,
}

#[allow(clippy::too_many_arguments)]
/// Reads a CSV file with a header row into its columns, in file order: (column name,
/// the column's values). Every row must have every column.
fn read_csv(path: &std::path::Path) -> std::result::Result<Vec<(String, Vec<String>)>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let headers = reader
        .headers()
        .map_err(|e| format!("{}: {e}", path.display()))?
        .clone();
    let mut columns: Vec<(String, Vec<String>)> = Vec::new();
    for h in &headers {
        if h.is_empty() || !h.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "{}: column `{h}` is not a variable name (letters, digits and _ only)",
                path.display()
            ));
        }
        if columns.iter().any(|(c, _)| c == h) {
            return Err(format!("{}: column `{h}` appears twice", path.display()));
        }
        columns.push((h.to_string(), Vec::new()));
    }
    for record in reader.records() {
        let record = record.map_err(|e| format!("{}: {e}", path.display()))?;
        for ((_, values), field) in columns.iter_mut().zip(record.iter()) {
            values.push(field.to_string());
        }
    }
    if columns.first().is_none_or(|(_, v)| v.is_empty()) {
        return Err(format!("{}: no rows under the header", path.display()));
    }
    Ok(columns)
}

fn validate_task(
    rt: RawTask,
    tf: &str,
    file: &str,
    env: &dyn Fn(&str) -> Option<String>,
    vars: &Vars<'_>,
    endpoints: &mut Vec<Endpoint>,
    endpoint_ids: &mut HashMap<(String, String), (usize, u32)>,
) -> Result<Task> {
    let err = |field: &str, message: String| Error::field(file, format!("{tf}.{field}"), message);
    let template = |field: &str, text: &str| -> Result<Template> {
        let t = Template::parse(text, env).map_err(|m| err(field, m))?;
        for var in t.vars() {
            if !BUILTIN_VARS.contains(&var) && !vars.pools.contains_key(var) && !vars.captured.contains(var) {
                let mut known: Vec<&str> = BUILTIN_VARS.to_vec();
                known.extend(vars.pools.keys().map(String::as_str));
                known.extend(vars.captured.iter().map(String::as_str));
                return Err(err(
                    field,
                    format!(
                        "`{{{{{var}}}}}` is neither a data pool nor a builtin; known: {}",
                        known.join(", ")
                    ),
                ));
            }
        }
        Ok(t)
    };

    let path_text = rt
        .path
        .ok_or_else(|| err("path", "missing; expected e.g. path = \"/v1/workflows/run\"".into()))?;
    if !path_text.starts_with('/') {
        return Err(err("path", format!("\"{path_text}\" must start with `/`")));
    }
    let path = template("path", &path_text)?;
    let method = rt.method.unwrap_or_else(|| "GET".into()).to_ascii_uppercase();
    if !METHODS.contains(&method.as_str()) {
        return Err(err(
            "method",
            format!("\"{method}\" is not a method; expected one of {}", METHODS.join(", ")),
        ));
    }
    let mut headers = Vec::new();
    for (k, v) in rt.headers {
        if k.is_empty() || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b)) {
            return Err(err(&format!("headers.{k}"), "not a valid header name".into()));
        }
        headers.push((k.to_ascii_lowercase(), template(&format!("headers.{k}"), &v)?));
    }
    let json_body = rt.json.is_some();
    let body = match (rt.body.as_deref(), rt.json) {
        (Some(_), Some(_)) => {
            return Err(err("json", "a task has `body` or `json`, not both".into()));
        }
        (Some(b), None) => Some(template("body", b)?),
        (None, Some(value)) => {
            let text = serde_json::to_string(&value).map_err(|e| err("json", e.to_string()))?;
            Some(template("json", &text)?)
        }
        (None, None) => None,
    };
    let weight = check_weight(rt.weight).map_err(|m| err("weight", m))?;
    let timeout = match rt.timeout.as_deref() {
        None => Duration::from_secs(60),
        Some(t) => duration::parse(t).map_err(|m| err("timeout", m))?,
    };
    if timeout.is_zero() {
        return Err(err("timeout", "must be above 0".into()));
    }
    let expect = rt
        .expect
        .unwrap_or_default()
        .into_iter()
        .map(|c| {
            u16::try_from(c)
                .ok()
                .filter(|c| (100..=599).contains(c))
                .ok_or_else(|| err("expect", format!("{c} is not an HTTP status code")))
        })
        .collect::<Result<Vec<u16>>>()?;
    let sse_only = [
        ("terminal_event", rt.terminal_event.is_some()),
        ("first_event_timeout", rt.first_event_timeout.is_some()),
        ("read_timeout", rt.read_timeout.is_some()),
    ];
    let dify_only = [
        ("app", rt.app.is_some()),
        ("conversation_turns", rt.conversation_turns.is_some()),
        ("stop_on_cancel", rt.stop_on_cancel.is_some()),
    ];
    let kind_text = rt.kind.as_deref().unwrap_or("http");
    if kind_text != "dify"
        && let Some((field, _)) = dify_only.iter().find(|(_, set)| *set)
    {
        return Err(err(field, "only applies to kind = \"dify\"".into()));
    }
    let timeouts = |first: &Option<String>, read: &Option<String>| -> Result<(Duration, Duration)> {
        let parse = |field: &str, v: &Option<String>| match v.as_deref() {
            None => Ok(Duration::from_secs(30)),
            Some(t) => duration::parse(t).map_err(|m| err(field, m)),
        };
        Ok((parse("first_event_timeout", first)?, parse("read_timeout", read)?))
    };
    let kind = match kind_text {
        "http" => {
            if let Some((field, _)) = sse_only.iter().find(|(_, set)| *set) {
                return Err(err(field, "only applies to kind = \"sse\" or \"dify\"".into()));
            }
            TaskKind::Http
        }
        "sse" => {
            let (first_event_timeout, read_timeout) = timeouts(&rt.first_event_timeout, &rt.read_timeout)?;
            TaskKind::Sse(SseSpec {
                terminal_event: rt.terminal_event,
                first_event_timeout,
                read_timeout,
                dify: None,
            })
        }
        "dify" => {
            if rt.terminal_event.is_some() {
                return Err(err(
                    "terminal_event",
                    "is implied by the Dify app type; set `app` instead".into(),
                ));
            }
            let app = match rt.app.as_deref() {
                Some(a) => DifyApp::parse(a).ok_or_else(|| {
                    err("app", format!("\"{a}\" is not a Dify app type; expected workflow, chat, chatflow or agent"))
                })?,
                None => DifyApp::from_path(&path_text).ok_or_else(|| {
                    err("app", format!("cannot tell the Dify app type from \"{path_text}\"; set app = \"workflow\", \"chat\", \"chatflow\" or \"agent\""))
                })?,
            };
            let conversation_turns = match rt.conversation_turns {
                None => 1,
                Some(n) => u32::try_from(n).map_err(|_| err("conversation_turns", format!("{n} is not a count")))?,
            };
            if conversation_turns > 1 && app == DifyApp::Workflow {
                return Err(err(
                    "conversation_turns",
                    "workflows have no conversations; use it with chat apps".into(),
                ));
            }
            let (first_event_timeout, read_timeout) = timeouts(&rt.first_event_timeout, &rt.read_timeout)?;
            TaskKind::Sse(SseSpec {
                terminal_event: None,
                first_event_timeout,
                read_timeout,
                dify: Some(DifySpec {
                    app,
                    conversation_turns,
                    stop_on_cancel: rt.stop_on_cancel.unwrap_or(false),
                }),
            })
        }
        other => {
            return Err(err(
                "kind",
                format!("\"{other}\" is not a task kind; expected \"http\", \"sse\" or \"dify\""),
            ));
        }
    };
    let mut capture = Vec::new();
    for (var, from) in &rt.capture {
        let field = format!("capture.{var}");
        if var.is_empty()
            || !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            || BUILTIN_VARS.contains(&var.as_str())
        {
            return Err(err(
                &field,
                "not a usable variable name (letters, digits and _; not a builtin)".into(),
            ));
        }
        if !matches!(kind, TaskKind::Http) {
            return Err(err(&field, "capture works on kind = \"http\" responses".into()));
        }
        let source = if let Some(h) = from.strip_prefix("header:") {
            Capture::Header(h.trim().to_ascii_lowercase())
        } else if from.is_empty() || from.starts_with('/') {
            Capture::Json(from.clone())
        } else {
            return Err(err(
                &field,
                format!("\"{from}\" is neither a JSON pointer (/data/id) nor header:NAME"),
            ));
        };
        capture.push((var.clone(), source));
    }
    let mut checks = Vec::new();
    for (i, c) in rt.checks.iter().enumerate() {
        let field = format!("checks[{i}]");
        let name = c.name.clone().unwrap_or_default();
        if name.is_empty() || name.len() > 64 {
            return Err(err(
                &field,
                "give each check a `name` (up to 64 characters): it names the failure".into(),
            ));
        }
        if !matches!(kind, TaskKind::Http) {
            return Err(err(&field, "checks work on kind = \"http\" responses".into()));
        }
        let rule = match (&c.json, &c.equals, &c.body_contains) {
            (Some(p), None, None) if p.is_empty() || p.starts_with('/') => CheckRule::JsonExists(p.clone()),
            (Some(p), Some(v), None) if p.is_empty() || p.starts_with('/') => CheckRule::JsonEquals {
                pointer: p.clone(),
                text: v.clone(),
                value: serde_json::from_str(v).ok(),
            },
            (Some(p), _, None) => {
                return Err(err(&field, format!("\"{p}\" is not a JSON pointer (/data/status)")));
            }
            (None, None, Some(text)) if !text.is_empty() => CheckRule::BodyContains(text.clone()),
            _ => {
                return Err(err(
                    &field,
                    "give `json = \"/pointer\"` (optionally with `equals`) or `body_contains = \"text\"`".into(),
                ));
            }
        };
        checks.push(Check { name, rule });
    }
    let connection = match rt.connection.as_deref() {
        None | Some("keep-alive") => ConnectionPolicy::KeepAlive,
        Some("per-request") => ConnectionPolicy::PerRequest,
        Some(other) => {
            return Err(err(
                "connection",
                format!("\"{other}\" is not a connection policy; expected \"keep-alive\" or \"per-request\""),
            ));
        }
    };
    let events_per_request = match rt.events_per_request {
        None => 1,
        // 0: a request that carries no business event (a query, a health check).
        Some(n @ 0..=1_000_000) => n as u32,
        Some(n) => return Err(err("events_per_request", format!("{n} is not between 0 and 1000000"))),
    };
    let name = rt.name.unwrap_or_else(|| path.redacted());
    let key = (name.clone(), method.clone());
    if let Some(&(_, other)) = endpoint_ids.get(&key)
        && other != events_per_request
    {
        return Err(err(
            "events_per_request",
            format!("another task in the stats row `{name}` ({method}) carries {other}; give this one its own name"),
        ));
    }
    let endpoint = match endpoint_ids.get(&key) {
        Some(&(id, _)) => {
            if endpoints[id].kind != kind.tag() {
                return Err(err(
                    "kind",
                    format!("another task named `{name}` ({method}) has a different kind; give this one its own name"),
                ));
            }
            id
        }
        None => {
            endpoints.push(Endpoint {
                name: name.clone(),
                method: method.clone(),
                kind: kind.tag(),
            });
            endpoint_ids.insert(key, (endpoints.len() - 1, events_per_request));
            endpoints.len() - 1
        }
    };
    Ok(Task {
        name,
        endpoint,
        method,
        path,
        headers,
        body,
        json_body,
        events_per_request,
        weight,
        timeout,
        expect,
        kind,
        connection,
        tags: rt.tags,
        capture,
        checks,
    })
}

fn check_weight(w: Option<i64>) -> std::result::Result<u32, String> {
    match w {
        None => Ok(1),
        Some(w) => u32::try_from(w).map_err(|_| format!("{w} is not a weight; expected 0 or more")),
    }
}

/// Keeps the tasks whose tags match `--tags` (any of them; none given = all) and none
/// of `--exclude-tags`. A class left without tasks is an error naming it.
pub fn filter_tags(plan: &mut RunPlan, tags: &[String], exclude: &[String]) -> std::result::Result<(), String> {
    if tags.is_empty() && exclude.is_empty() {
        return Ok(());
    }
    for class in &mut plan.classes {
        class.tasks.retain(|t| {
            (tags.is_empty() || t.tags.iter().any(|g| tags.contains(g))) && !t.tags.iter().any(|g| exclude.contains(g))
        });
        if class.tasks.is_empty() {
            return Err(format!(
                "user class `{}` has no task left after --tags {:?} / --exclude-tags {:?}",
                class.name, tags, exclude
            ));
        }
    }
    Ok(())
}

/// Keeps the user classes named on the command line (Locust's positional class names;
/// none given = all). An unknown name is an error listing the classes there are.
pub fn select_classes(plan: &mut RunPlan, names: &[String]) -> std::result::Result<(), String> {
    if names.is_empty() {
        return Ok(());
    }
    if let Some(unknown) = names.iter().find(|n| !plan.classes.iter().any(|c| &c.name == *n)) {
        let known: Vec<&str> = plan.classes.iter().map(|c| c.name.as_str()).collect();
        return Err(format!(
            "no user class `{unknown}` in {}; it has {}",
            plan.source,
            known.join(", ")
        ));
    }
    plan.classes.retain(|c| names.contains(&c.name));
    if plan.classes.iter().all(|c| c.weight == 0 && c.fixed_count.is_none()) {
        return Err(format!(
            "the user classes {} all have weight 0: no user would run",
            names.join(", ")
        ));
    }
    Ok(())
}

/// Spawn rates are users per second, above 0.
pub fn check_rate(r: f64) -> std::result::Result<f64, String> {
    if r.is_finite() && r > 0.0 {
        Ok(r)
    } else {
        Err(format!("{r} is not a spawn rate; expected users per second above 0"))
    }
}

/// A target host: `http(s)://name[:port]`, no path, query or credentials.
pub fn check_host(host: &str) -> std::result::Result<String, String> {
    let host = host.trim().trim_end_matches('/');
    let rest = if let Some(rest) = host.strip_prefix("http://").or_else(|| host.strip_prefix("https://")) {
        rest
    } else {
        return Err(format!(
            "\"{host}\" is not a target; expected http://host:port or https://host:port"
        ));
    };
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
        return Err(format!(
            "\"{host}\" is not a target; expected http://host:port without a path"
        ));
    }
    if let Some((_, port)) = rest.rsplit_once(':')
        && !rest.ends_with(']')
        && port.parse::<u16>().is_err()
    {
        return Err(format!("\"{host}\": port `{port}` is not a number from 0 to 65535"));
    }
    Ok(host.to_string())
}

/// `constant(S)`, `between(A, B)`, `pacing(S)`; each argument a duration or seconds.
pub fn parse_wait(text: &str) -> std::result::Result<Wait, String> {
    let bad = || format!("\"{text}\" is not a wait; expected constant(S), between(A, B) or pacing(S)");
    let t = text.trim();
    let (func, args) = t.split_once('(').ok_or_else(bad)?;
    let args = args.strip_suffix(')').ok_or_else(bad)?;
    let args: Vec<Duration> = args
        .split(',')
        .map(|a| duration::parse(a).map_err(|m| format!("{}: {m}", bad())))
        .collect::<std::result::Result<_, _>>()?;
    match (func.trim(), args.as_slice()) {
        ("constant", [d]) => Ok(Wait::Constant(*d)),
        ("pacing", [d]) if !d.is_zero() => Ok(Wait::Pacing(*d)),
        ("between", [a, b]) if a <= b => Ok(Wait::Between(*a, *b)),
        ("between", [_, _]) => Err(format!("\"{text}\": the first bound must not exceed the second")),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests;
