//! Run settings a scenario suggests: `[run]` and each `[presets.NAME]`, checked into
//! [`RunDefaults`] (users, spawn rate, run time, a load shape or the open model's
//! arrival schedule). Flags and `BARRAGE_RUN_*` override them in the caller.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::FieldErr;
use super::raw::RawRun;
use super::values::check_rate;
use crate::arrival_process::ArrivalProcess;
use crate::arrival_schedule::{RateStage, Schedule};
use crate::arrival_trace::{Known, Trace};
use crate::duration;
use crate::error::Result;
use crate::plan::RunPlan;
use crate::shape::{Shape, Stage};

/// `[run]` section: defaults for `-u`, `-r`, `-t` that flags override.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunDefaults {
    /// `users`: the constant user count (`-u`).
    pub users: Option<u32>,
    /// `spawn_rate`: users started per second (`-r`).
    pub spawn_rate: Option<f64>,
    /// `run_time`: how long the run lasts (`-t`).
    pub run_time: Option<Duration>,
    /// `stages`, `step` or `spike`: users over time instead of one constant count.
    pub shape: Option<Shape>,
    /// The open model: iterations arrive on a schedule instead of users looping.
    pub arrival: Option<Arrival>,
    /// `arrival_trace`: the JSONL trace to replay (relative to the scenario's
    /// directory); `arrival` then holds it, read and checked against the plan's tasks.
    pub arrival_trace: Option<PathBuf>,
}

/// Open-model settings: the arrival schedule and the cluster-wide in-flight cap.
#[derive(Debug, Clone, PartialEq)]
pub struct Arrival {
    /// `arrival_rate` and `arrival_stages`: iterations per second over time, cluster-wide.
    pub schedule: Schedule,
    /// `max_in_flight`: iterations running at once, cluster-wide, at most.
    pub max_in_flight: u32,
    /// `arrival_process` and `burstiness`: how the arrivals are spaced.
    pub process: ArrivalProcess,
    /// `seed`: the random processes' seed; None draws one when the run starts (the
    /// report says which, so the run can be repeated).
    pub seed: Option<u64>,
    /// `arrival_trace` / `--arrival-trace`: replay this trace's arrivals, each at its
    /// offset with its inputs, instead of the schedule (then unused).
    pub trace: Option<Arc<Trace>>,
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
            arrival_trace: load.arrival_trace.clone(),
        }
    }
}

/// Every `[presets.NAME]`, checked like `[run]`; names are letters, digits, `_`, `-`.
pub(super) fn presets(
    raw: &BTreeMap<String, RawRun>,
    base: &Path,
    err: FieldErr<'_>,
) -> Result<BTreeMap<String, RunDefaults>> {
    let mut presets = BTreeMap::new();
    for (name, preset) in raw {
        let field = format!("presets.{name}");
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') || name.is_empty() {
            return Err(err(&field, "a preset name is letters, digits, `_` and `-`".into()));
        }
        presets.insert(name.clone(), run_defaults(preset, &field, base, err)?);
    }
    Ok(presets)
}

/// `[run]` or one `[presets.NAME]`, checked; `at` is its field path for messages, a
/// trace is found under `base`.
pub(super) fn run_defaults(raw: &RawRun, at: &str, base: &Path, err: FieldErr<'_>) -> Result<RunDefaults> {
    check_trace(raw, at, err)?;
    let open = raw.arrival_rate.is_some() || raw.arrival_stages.is_some() || raw.arrival_trace.is_some();
    if open && (raw.users.is_some() || raw.stages.is_some() || raw.step.is_some() || raw.spike.is_some()) {
        return Err(err(
            at,
            "arrival_rate / arrival_stages / arrival_trace (the open model) replace users and their shapes; give one or the other"
                .into(),
        ));
    }
    let open_only = [
        ("max_in_flight", "caps", raw.max_in_flight.is_some()),
        (
            "arrival_process",
            "spaces the arrivals of",
            raw.arrival_process.is_some(),
        ),
        ("burstiness", "shapes the arrivals of", raw.burstiness.is_some()),
        ("seed", "seeds the arrivals of", raw.seed.is_some()),
    ];
    if let Some((name, does, _)) = open_only.iter().find(|(_, _, given)| *given && !open) {
        return Err(err(
            &format!("{at}.{name}"),
            format!("{does} the open model; give arrival_rate, arrival_stages or arrival_trace with it"),
        ));
    }
    let arrival = if open { Some(arrival(raw, at, err)?) } else { None };
    let shape = shape(raw, at, err)?;
    Ok(RunDefaults {
        shape,
        arrival,
        arrival_trace: raw.arrival_trace.as_ref().map(|p| base.join(p)),
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

/// The open model of `raw` (which gives `arrival_rate` or `arrival_stages`).
fn arrival(raw: &RawRun, at: &str, err: FieldErr<'_>) -> Result<Arrival> {
    let field = |name: &str| format!("{at}.{name}");
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
        let name = field(&format!("arrival_stages[{i}].duration"));
        let duration = duration::parse(&s.duration).map_err(|m| err(&name, m))?;
        if duration.is_zero() {
            return Err(err(&name, "a stage lasts more than 0".into()));
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
    let process =
        ArrivalProcess::parse(raw.arrival_process.as_deref().unwrap_or("constant"), raw.burstiness).map_err(|m| {
            let name = if m.contains("burstiness") {
                "burstiness"
            } else {
                "arrival_process"
            };
            err(&field(name), m)
        })?;
    if raw.seed.is_some() && !process.is_random() {
        return Err(err(
            &field("seed"),
            "seeds a random arrival process; give arrival_process = \"poisson\" or \"gamma\"".into(),
        ));
    }
    Ok(Arrival {
        schedule: Schedule { start_rate, stages },
        max_in_flight,
        process,
        seed: raw.seed,
        trace: None,
    })
}

/// Reads the trace `defaults` names (if any) into its arrivals, its task names checked
/// against `plan`'s; `at` is its field path for messages.
pub(super) fn load_trace(defaults: &mut RunDefaults, plan: &RunPlan, at: &str, err: FieldErr<'_>) -> Result<()> {
    let (Some(path), Some(arrival)) = (&defaults.arrival_trace, &mut defaults.arrival) else {
        return Ok(());
    };
    let trace = Trace::load(path, &Known::of(plan)).map_err(|m| err(&format!("{at}.arrival_trace"), m))?;
    arrival.trace = Some(Arc::new(trace));
    Ok(())
}

/// A trace replaces the rate and its spacing: given with any of them, an error naming
/// both.
fn check_trace(raw: &RawRun, at: &str, err: FieldErr<'_>) -> Result<()> {
    if raw.arrival_trace.is_none() {
        return Ok(());
    }
    let clash = [
        ("arrival_rate", raw.arrival_rate.is_some()),
        ("arrival_stages", raw.arrival_stages.is_some()),
        ("arrival_process", raw.arrival_process.is_some()),
        ("burstiness", raw.burstiness.is_some()),
        ("seed", raw.seed.is_some()),
    ];
    match clash.iter().find(|(_, given)| *given) {
        Some((name, _)) => Err(err(
            &format!("{at}.{name}"),
            format!("arrival_trace replays recorded arrivals and replaces {name}; give one or the other"),
        )),
        None => Ok(()),
    }
}

/// The closed model's users over time: `stages`, `step` or `spike` (at most one, and
/// not with `users`), or none.
fn shape(raw: &RawRun, at: &str, err: FieldErr<'_>) -> Result<Option<Shape>> {
    let field = |name: &str| format!("{at}.{name}");
    let count = |name: &str, v: i64| {
        u32::try_from(v).map_err(|_| err(&field(name), format!("{v} is not a user count; expected 0 or more")))
    };
    let time = |name: &str, v: &str| duration::parse(v).map_err(|m| err(&field(name), m));
    let rate = |name: &str, v: Option<f64>| v.map(|r| check_rate(r).map_err(|m| err(&field(name), m))).transpose();
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
    Ok(shape)
}
