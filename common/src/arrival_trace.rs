//! Replay of a recorded arrival trace: a JSONL file with one arrival per line,
//! `{"offset_ms": 12.5, "inputs": {"query": "..."}, "task": "..."}`, fired at its offset
//! from the run start with its inputs exposed to the task's templates like a pool row.
//!
//! The trace's lines are numbered 0, 1, 2, ... (blank lines skipped) and split across
//! the workers by the same segment rule as the open model's other arrivals
//! ([`Segment::owns`]): the master reads the file once, and each worker receives only
//! its own lines (at or after a re-split's `from_index`) in its `ArrivalShare`. The
//! file is bounded ([`MAX_TRACE_LINES`], [`MAX_TRACE_BYTES`]) so that even one worker's
//! whole share fits one protocol message.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use barrage_proto::v1;

use crate::arrival_schedule::Segment;
use crate::plan::RunPlan;

/// Most lines a trace may hold.
pub const MAX_TRACE_LINES: usize = 1_000_000;
/// Largest trace file, in bytes: its lines travel in the Assign, and one worker's whole
/// share must stay under the protocol's 16 MiB message size (see `MAX_MESSAGE`).
pub const MAX_TRACE_BYTES: u64 = 8 << 20;
/// Most inputs one line may carry.
pub const MAX_INPUTS: usize = 64;
/// Longest input name (and task name), in bytes, as for other names we store.
pub const MAX_NAME: usize = 64;
/// How far ahead of its clock the master re-splits a replay: the workers keep firing
/// their old lines due before that, so a line is never fired by two workers as long as
/// the Assign reaches them within it (the lines a lost worker held there are lost).
pub const HANDOVER: Duration = Duration::from_millis(500);
/// Latest offset accepted: a year, in µs (a typo of units, not a recording).
const MAX_OFFSET_US: u64 = 365 * 24 * 3600 * 1_000_000;

/// One arrival of a trace.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TraceLine {
    /// When it is due, µs from the run start.
    pub offset_us: u64,
    /// The task to run, by name (None: the class picks as usual).
    pub task: Option<String>,
    /// `{{name}}` values for the task's templates, by name.
    pub inputs: Vec<(String, String)>,
}

/// A validated trace: its lines in order of non-decreasing offset.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Trace {
    /// The file's name (no directories), as the report names it.
    pub name: String,
    /// Every arrival, in the file's order; a line's index is its place here.
    pub lines: Vec<TraceLine>,
}

/// What a trace's lines may name: the plan's tasks and its data pools (a line's
/// inputs stand in for pool values, so a template's `{{name}}` is checked once, in the
/// scenario, and a misspelt input is an error rather than a silent pool value).
#[derive(Debug, Clone, Default)]
pub struct Known<'a> {
    /// Task names a line's `task` may give.
    pub tasks: Vec<&'a str>,
    /// Input names a line's `inputs` may give: the scenario's data pools.
    pub inputs: Vec<&'a str>,
}

impl<'a> Known<'a> {
    /// Every class's tasks and every data pool of `plan`.
    pub fn of(plan: &'a RunPlan) -> Known<'a> {
        Known {
            tasks: plan
                .classes
                .iter()
                .flat_map(|c| c.tasks.iter().map(|t| t.name.as_str()))
                .collect(),
            inputs: plan.pools.keys().map(String::as_str).collect(),
        }
    }
}

/// A line as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLine {
    offset_ms: f64,
    #[serde(default)]
    inputs: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    task: Option<String>,
}

impl Trace {
    /// Reads and validates the trace at `path`; `known` says which tasks and inputs a
    /// line may name. Errors name the file, the line and the problem.
    pub fn load(path: &Path, known: &Known<'_>) -> Result<Trace, String> {
        let shown = path.display();
        let file = std::fs::File::open(path).map_err(|e| format!("{shown}: cannot read the trace: {e}"))?;
        let mut text = String::new();
        file.take(MAX_TRACE_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(|e| format!("{shown}: cannot read the trace: {e}"))?;
        if text.len() as u64 > MAX_TRACE_BYTES {
            return Err(format!(
                "{shown}: too large: a trace is at most {} MiB (its lines travel to the workers in one message); split it into several runs",
                MAX_TRACE_BYTES >> 20
            ));
        }
        let name = path
            .file_name()
            .map_or_else(|| shown.to_string(), |n| n.to_string_lossy().into_owned());
        let trace = Trace::parse(&shown.to_string(), &name, &text, known)?;
        // The byte bound keeps this true; checked so a change of encoding cannot break it.
        trace.fits_one_message()?;
        Ok(trace)
    }

    /// Validates `text`, read from `file` (for messages), named `name` in reports.
    pub fn parse(file: &str, name: &str, text: &str, known: &Known<'_>) -> Result<Trace, String> {
        let mut lines = Vec::new();
        let mut previous = 0u64;
        for (n, raw) in text.lines().enumerate() {
            if raw.trim().is_empty() {
                continue;
            }
            let at = |problem: String| format!("{file}:{}: {problem}", n + 1);
            if lines.len() >= MAX_TRACE_LINES {
                return Err(at(format!(
                    "too many lines: a trace holds at most {MAX_TRACE_LINES} arrivals; split it into several runs"
                )));
            }
            let line: RawLine = serde_json::from_str(raw).map_err(|e| {
                at(format!(
                    "not a trace line ({e}); expected {{\"offset_ms\": 12.5, \"inputs\": {{...}}}}"
                ))
            })?;
            let line = check_line(line, previous, known).map_err(at)?;
            previous = line.offset_us;
            lines.push(line);
        }
        if lines.is_empty() {
            return Err(format!(
                "{file}: the trace has no arrivals; expected one JSON object per line"
            ));
        }
        Ok(Trace {
            name: name.chars().take(MAX_NAME).collect(),
            lines,
        })
    }

    /// The last arrival's offset from the run start.
    pub fn span(&self) -> Duration {
        Duration::from_micros(self.lines.last().map_or(0, |l| l.offset_us))
    }

    /// How many arrivals are due before `t` on the run clock: the first index not yet
    /// due (a re-split's `from_index`).
    pub fn count_before(&self, t: Duration) -> u64 {
        let t = u64::try_from(t.as_micros()).unwrap_or(u64::MAX);
        self.lines.partition_point(|l| l.offset_us < t) as u64
    }

    /// How many arrivals are due at or before `t_us` µs on the run clock.
    pub fn count_through(&self, t_us: u64) -> u64 {
        self.lines.partition_point(|l| l.offset_us <= t_us) as u64
    }

    /// The lines `segment` owns at or after index `from`, with their indices: what one
    /// worker fires.
    pub fn share<'a>(&'a self, segment: &'a Segment, from: u64) -> impl Iterator<Item = (u64, &'a TraceLine)> + 'a {
        let start = usize::try_from(from).unwrap_or(usize::MAX).min(self.lines.len());
        self.lines[start..]
            .iter()
            .enumerate()
            .map(move |(k, l)| (start as u64 + k as u64, l))
            .filter(|(i, _)| segment.owns(*i))
    }

    /// Whether one worker's whole share (every line) fits a protocol message: the
    /// master refuses a trace that would not.
    pub fn fits_one_message(&self) -> Result<(), String> {
        use prost::Message;
        let bytes: usize = self
            .lines
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let m = line_to_proto(i as u64, l);
                // The repeated field's tag and length prefix: at most 1 + 5 bytes.
                m.encoded_len() + 6
            })
            .sum();
        if bytes > barrage_proto::MAX_PLAN_BYTES {
            return Err(format!(
                "{}: too large: its lines take {} MiB on the wire, over the {} MiB a worker's Assign may carry; split it into several runs",
                self.name,
                bytes >> 20,
                barrage_proto::MAX_PLAN_BYTES >> 20
            ));
        }
        Ok(())
    }
}

/// One line checked: offset a number not below `previous`, inputs strings or numbers
/// with bounded names, a known task.
fn check_line(raw: RawLine, previous: u64, known: &Known<'_>) -> Result<TraceLine, String> {
    let ms = raw.offset_ms;
    if !ms.is_finite() || ms < 0.0 {
        return Err(format!(
            "offset_ms {ms} is not an offset; expected 0 or more milliseconds from the run start"
        ));
    }
    let offset_us = (ms * 1000.0).round();
    if offset_us > MAX_OFFSET_US as f64 {
        return Err(format!("offset_ms {ms} is more than a year after the run start"));
    }
    let offset_us = offset_us as u64;
    if offset_us < previous {
        return Err(format!(
            "offset_ms {ms} goes backwards (the line before is at {} ms); offsets never decrease",
            previous as f64 / 1000.0
        ));
    }
    let mut inputs = Vec::new();
    for (name, value) in raw.inputs.into_iter().flatten() {
        if inputs.len() >= MAX_INPUTS {
            return Err(format!("more than {MAX_INPUTS} inputs on one line"));
        }
        if name.is_empty() || name.len() > MAX_NAME {
            return Err(format!(
                "input name `{}` is empty or longer than {MAX_NAME} bytes",
                name.chars().take(MAX_NAME).collect::<String>()
            ));
        }
        if !known.inputs.contains(&name.as_str()) {
            return Err(format!(
                "input `{name}` is not a data pool of the scenario; a line's inputs stand in for pool values \
                 (declare [data.{name}], whose values serve lines and runs without it)"
            ));
        }
        let value = match value {
            serde_json::Value::String(s) => s,
            serde_json::Value::Number(n) => n.to_string(),
            other => {
                return Err(format!(
                    "inputs.{name} is {}; expected a string or a number",
                    kind_of(&other)
                ));
            }
        };
        inputs.push((name, value));
    }
    let task = match raw.task {
        None => None,
        Some(t) if known.tasks.contains(&t.as_str()) => Some(t),
        Some(t) => {
            let known: Vec<&str> = known.tasks.iter().take(20).copied().collect();
            return Err(format!(
                "unknown task `{}`; the scenario's tasks are {}",
                t.chars().take(MAX_NAME).collect::<String>(),
                known.join(", ")
            ));
        }
    };
    Ok(TraceLine {
        offset_us,
        task,
        inputs,
    })
}

/// A JSON value's kind, for messages.
fn kind_of(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Number(_) => "a number",
    }
}

/// Line `index` as an `ArrivalShare` carries it.
pub fn line_to_proto(index: u64, l: &TraceLine) -> v1::TraceArrival {
    v1::TraceArrival {
        index,
        offset_us: i64::try_from(l.offset_us).unwrap_or(i64::MAX),
        task: l.task.clone().unwrap_or_default(),
        inputs: l
            .inputs
            .iter()
            .map(|(name, value)| v1::TraceInput {
                name: name.clone(),
                value: value.clone(),
            })
            .collect(),
    }
}

/// The lines of an `ArrivalShare`, from a peer: indices strictly increasing and
/// offsets never decreasing (others are dropped), names bounded, at most
/// [`MAX_INPUTS`] inputs a line.
pub fn lines_from_proto(share: &[v1::TraceArrival]) -> Vec<(u64, TraceLine)> {
    let mut out: Vec<(u64, TraceLine)> = Vec::with_capacity(share.len().min(MAX_TRACE_LINES));
    for a in share.iter().take(MAX_TRACE_LINES) {
        let offset_us = u64::try_from(a.offset_us).unwrap_or(0);
        if out
            .last()
            .is_some_and(|(i, l)| *i >= a.index || l.offset_us > offset_us)
        {
            continue;
        }
        let bounded = |s: &str| {
            let mut end = s.len().min(MAX_NAME);
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s[..end].to_string()
        };
        out.push((
            a.index,
            TraceLine {
                offset_us,
                task: (!a.task.is_empty()).then(|| bounded(&a.task)),
                inputs: a
                    .inputs
                    .iter()
                    .take(MAX_INPUTS)
                    .map(|i| (bounded(&i.name), i.value.clone()))
                    .collect(),
            },
        ));
    }
    out
}

#[cfg(test)]
mod tests;
