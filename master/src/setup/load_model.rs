//! The load model of a run: how many users (or iterations per second, the open model),
//! ramped how fast, for how long. A flag wins over the `--preset`, which is laid over
//! the scenario's `[run]`; `--arrival-rate`/`--arrival-stage`, `--stage` and `-u`
//! exclude one another.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use barrage_common::arrival_process::ArrivalProcess;
use barrage_common::arrival_schedule::Schedule;
use barrage_common::arrival_trace::{Known, Trace};
use barrage_common::scenario::{self, Arrival, RunDefaults, Scenario};
use barrage_common::shape::Shape;

use crate::cli::LoadArgs;
use crate::exit::Failure;

/// Users, spawn rate, shape or arrival schedule and run time, as the run will use them.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct LoadModel {
    /// Constant users, or a shape's peak; 0 under the open model.
    pub(super) users: u32,
    /// Users started (or stopped) per second.
    pub(super) spawn_rate: f64,
    /// Users over time (`--stage`, or the scenario's stages, step or spike).
    pub(super) shape: Option<Shape>,
    /// The open model: iterations started per second, whatever their response times.
    pub(super) arrival: Option<Arrival>,
    /// When the run stops by itself: `-t`, else the shape's or schedule's length; None
    /// runs until stopped.
    pub(super) run_time: Option<Duration>,
}

impl LoadModel {
    /// The load model from the flags over the preset over the scenario's `[run]`.
    pub(super) fn resolve(load: &LoadArgs, scenario: &Scenario) -> Result<Self, Failure> {
        let defaults = preset_defaults(load, scenario)?;
        let arrival = match &load.arrival_trace {
            Some(path) => Some(replay(load, path, scenario)?),
            None => arrival(load, &defaults)?,
        };
        let shape = shape(load, &defaults, arrival.is_some())?;
        let users = match (&shape, &arrival) {
            (_, Some(_)) => 0,
            (Some(s), None) => s.peak_users(),
            (None, None) => load.users.or(defaults.users).unwrap_or(1),
        };
        let spawn_rate = load.spawn_rate.or(defaults.spawn_rate).unwrap_or(1.0);
        scenario::check_rate(spawn_rate).map_err(|m| Failure::usage(format!("--spawn-rate: {m}")))?;
        let run_time = load
            .run_time
            .or(defaults.run_time)
            .or(shape.as_ref().map(Shape::duration))
            .or(arrival.as_ref().map(|a| a.schedule.duration()).filter(|d| !d.is_zero()));
        Ok(LoadModel {
            users,
            spawn_rate,
            shape,
            arrival,
            run_time,
        })
    }
}

/// The scenario's `[run]`, with `--preset NAME`'s settings laid over it.
fn preset_defaults(load: &LoadArgs, scenario: &Scenario) -> Result<RunDefaults, Failure> {
    let Some(name) = &load.preset else {
        return Ok(scenario.run.clone());
    };
    let preset = scenario.presets.get(name).ok_or_else(|| {
        let known: Vec<&str> = scenario.presets.keys().map(String::as_str).collect();
        Failure::usage(format!(
            "--preset {name}: {} has {}",
            scenario.plan.source,
            if known.is_empty() {
                "no [presets]".to_string()
            } else {
                format!("the presets {}", known.join(", "))
            }
        ))
    })?;
    Ok(preset.over(&scenario.run))
}

/// The open model, from flags or the file, unless users are asked for.
fn arrival(load: &LoadArgs, defaults: &RunDefaults) -> Result<Option<Arrival>, Failure> {
    let flag_arrival = load.arrival_rate.is_some() || !load.arrival_stage.is_empty();
    if flag_arrival && (load.users.is_some() || !load.stage.is_empty()) {
        return Err(Failure::usage(
            "--arrival-rate / --arrival-stage (the open model) replace -u and --stage; give one or the other"
                .to_string(),
        ));
    }
    if let Some(r) = load.arrival_rate
        && !(r.is_finite() && r >= 0.0)
    {
        return Err(Failure::usage(format!(
            "--arrival-rate: {r} is not an arrival rate; expected 0 or more per second"
        )));
    }
    let arrival = if flag_arrival {
        Some(Arrival {
            schedule: Schedule {
                start_rate: load.arrival_rate.unwrap_or(0.0),
                stages: load.arrival_stage.clone(),
            },
            max_in_flight: load.max_in_flight.unwrap_or(scenario::DEFAULT_MAX_IN_FLIGHT),
            process: ArrivalProcess::Constant,
            seed: None,
            trace: None,
        })
    } else if load.users.is_some() || !load.stage.is_empty() {
        None
    } else {
        defaults.arrival.clone().map(|mut a| {
            a.max_in_flight = load.max_in_flight.unwrap_or(a.max_in_flight);
            a
        })
    };
    if load.max_in_flight.is_some() && arrival.is_none() {
        return Err(Failure::usage(
            "--max-in-flight caps the open model; give --arrival-rate or --arrival-stage with it".to_string(),
        ));
    }
    let Some(mut arrival) = arrival else {
        return match process_flag(load) {
            Some(flag) => Err(Failure::usage(format!(
                "{flag} spaces the arrivals of the open model; give --arrival-rate or --arrival-stage with it"
            ))),
            None => Ok(None),
        };
    };
    if arrival.trace.is_some() {
        // The scenario's trace: its lines set the arrivals, nothing spaces them.
        return match process_flag(load) {
            Some(flag) => Err(Failure::usage(format!(
                "{flag} spaces arrivals; the scenario's run.arrival_trace replays recorded ones (give --arrival-rate to replace the trace)"
            ))),
            None => Ok(Some(arrival)),
        };
    }
    arrival.process = process(load, arrival.process)?;
    arrival.seed = load.arrival_seed.or(arrival.seed);
    if arrival.seed.is_some() && !arrival.process.is_random() {
        return Err(Failure::usage(
            "--arrival-seed seeds a random arrival process; give --arrival-process poisson or gamma".to_string(),
        ));
    }
    if arrival.process.is_random() && arrival.seed.is_none() {
        // Drawn once here, so every worker gets the same; 53 bits, so the JSON report
        // carries it exactly even to a JavaScript reader.
        arrival.seed = Some(rand::random::<u64>() >> 11);
    }
    Ok(Some(arrival))
}

/// `--arrival-trace FILE`: the open model replaying the trace, read and checked
/// against the scenario's tasks; no other load flag with it.
fn replay(load: &LoadArgs, path: &Path, scenario: &Scenario) -> Result<Arrival, Failure> {
    let clash = [
        ("-u/--users", load.users.is_some()),
        ("--stage", !load.stage.is_empty()),
        ("--arrival-rate", load.arrival_rate.is_some()),
        ("--arrival-stage", !load.arrival_stage.is_empty()),
    ]
    .into_iter()
    .find_map(|(flag, given)| given.then_some(flag))
    .or_else(|| process_flag(load));
    if let Some(flag) = clash {
        return Err(Failure::usage(format!(
            "--arrival-trace replays recorded arrivals and replaces {flag}; give one or the other"
        )));
    }
    let trace =
        Trace::load(path, &Known::of(&scenario.plan)).map_err(|m| Failure::usage(format!("--arrival-trace: {m}")))?;
    let max_in_flight = load.max_in_flight.unwrap_or(scenario::DEFAULT_MAX_IN_FLIGHT);
    Ok(Arrival {
        schedule: Schedule::constant(0.0),
        max_in_flight,
        process: ArrivalProcess::Constant,
        seed: None,
        trace: Some(Arc::new(trace)),
    })
}

/// The first of the arrival-process flags given, by name.
fn process_flag(load: &LoadArgs) -> Option<&'static str> {
    [
        ("--arrival-process", load.arrival_process.is_some()),
        ("--arrival-burstiness", load.arrival_burstiness.is_some()),
        ("--arrival-seed", load.arrival_seed.is_some()),
    ]
    .into_iter()
    .find_map(|(flag, given)| given.then_some(flag))
}

/// The arrival process: `--arrival-process` and `--arrival-burstiness` over `file`'s
/// (the scenario's, or constant under `--arrival-rate`). A burstiness alone reshapes a
/// gamma process; another process drops the file's burstiness.
fn process(load: &LoadArgs, file: ArrivalProcess) -> Result<ArrivalProcess, Failure> {
    let name = load.arrival_process.as_deref().unwrap_or(file.name());
    let file_shape = match file {
        ArrivalProcess::Gamma { shape } if name == "gamma" => Some(shape),
        _ => None,
    };
    ArrivalProcess::parse(name, load.arrival_burstiness.or(file_shape)).map_err(|m| {
        let flag = if load.arrival_burstiness.is_some() || m.contains("needs a burstiness") {
            "--arrival-burstiness"
        } else {
            "--arrival-process"
        };
        Failure::usage(format!("{flag}: {m}"))
    })
}

/// A shape from `--stage`, else from the file unless `-u` asks for a constant count;
/// none under the open model.
fn shape(load: &LoadArgs, defaults: &RunDefaults, open_model: bool) -> Result<Option<Shape>, Failure> {
    if open_model {
        return Ok(None);
    }
    if !load.stage.is_empty() {
        if load.users.is_some() {
            return Err(Failure::usage(
                "--stage sets the users over time; leave out -u/--users".to_string(),
            ));
        }
        return Ok(Some(Shape {
            stages: load.stage.clone(),
        }));
    }
    if load.users.is_some() {
        return Ok(None);
    }
    Ok(defaults.shape.clone())
}
