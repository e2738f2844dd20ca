//! The argument lowering: raw flags ([`LoadArgs`]) and a loaded scenario become a
//! [`MasterSetup`], the validated settings of one run (load model, thresholds, plan,
//! report files, cluster and web options). Every usage error of a run's flags is found
//! here, before anything listens or starts (exit code 2).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use barrage_common::plan::RunPlan;
use barrage_common::scenario::{self, Scenario};
use barrage_common::shape::Shape;
use barrage_common::threshold::Threshold;

use crate::cli::LoadArgs;
use crate::cluster::ClusterOptions;
use crate::controller::RunConfig;
use crate::exit::{EXIT_FAILURES, Failure};
use crate::report::RunInfo;
use crate::thresholds::Thresholds;

use credentials::{cluster_token, server_tls, web_setup};

pub(crate) mod credentials;
mod hunt;

pub use credentials::env_lookup;
pub use hunt::hunt_setup;

/// Largest gRPC message either way on the worker port, in bytes (the worker's client
/// uses the same).
pub const MAX_MESSAGE: usize = barrage_proto::MAX_MESSAGE;

/// Loads and validates the scenario (exit code 2 on any problem).
pub fn load_scenario(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Scenario, Failure> {
    scenario::load(path, env).map_err(Failure::usage)
}

/// Everything a master run needs, resolved from file, environment and flags.
#[derive(Debug, Clone)]
pub struct MasterSetup {
    pub plan: RunPlan,
    pub run: RunConfig,
    pub info: RunInfo,
    pub opts: ClusterOptions,
    pub json: Option<PathBuf>,
    pub html: Option<PathBuf>,
    /// `--csv PREFIX`: Locust's CSV files (the same handle as `run.csv_history`).
    pub csv: Option<crate::report::csv::Csv>,
    pub print_report: bool,
    /// Exit code when requests failed but every threshold held (`--exit-code-on-error`).
    pub exit_code_on_error: u8,
    /// The web API, unless headless.
    pub web: Option<(SocketAddr, crate::web::WebConfig)>,
}

impl MasterSetup {
    pub fn resolve(
        load: &LoadArgs,
        scenario: Scenario,
        expect_workers: u32,
        max_wait: Option<Duration>,
    ) -> Result<Self, Failure> {
        let host = load
            .host
            .as_deref()
            .map(scenario::check_host)
            .transpose()
            .map_err(|m| Failure::usage(format!("--host: {m}")))?;
        let defaults = match &load.preset {
            None => scenario.run.clone(),
            Some(name) => scenario
                .presets
                .get(name)
                .ok_or_else(|| {
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
                })?
                .over(&scenario.run),
        };
        // The open model, from flags or the file, unless users are asked for.
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
            Some(scenario::Arrival {
                schedule: barrage_common::arrival::Schedule {
                    start_rate: load.arrival_rate.unwrap_or(0.0),
                    stages: load.arrival_stage.clone(),
                },
                max_in_flight: load.max_in_flight.unwrap_or(scenario::DEFAULT_MAX_IN_FLIGHT),
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
        // A shape from --stage, else from the file unless -u asks for a constant count.
        let shape = if arrival.is_some() {
            None
        } else if !load.stage.is_empty() {
            if load.users.is_some() {
                return Err(Failure::usage(
                    "--stage sets the users over time; leave out -u/--users".to_string(),
                ));
            }
            Some(Shape {
                stages: load.stage.clone(),
            })
        } else if load.users.is_some() {
            None
        } else {
            defaults.shape.clone()
        };
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
        // Workers send a heartbeat and a report every second: a worker silent for less
        // than two of them is not lost, just between messages.
        if load.heartbeat_liveness < Duration::from_secs(2) {
            return Err(Failure::usage(format!(
                "--heartbeat-liveness {}: must be at least 2s (two heartbeats)",
                barrage_common::duration::format(load.heartbeat_liveness)
            )));
        }
        if host.is_none() && scenario.plan.host.is_none() && scenario.plan.classes.iter().any(|c| c.host.is_none()) {
            return Err(Failure::usage(format!(
                "{}: no target host; pass -H/--host http://HOST:PORT or set `host` in the scenario",
                scenario.plan.source
            )));
        }
        let mut plan = scenario.plan;
        plan.limits.tls_insecure |= load.insecure;
        scenario::select_classes(&mut plan, &load.classes).map_err(Failure::usage)?;
        let mut thresholds = scenario.thresholds;
        for (text, abort_on_fail) in load
            .threshold
            .iter()
            .map(|t| (t, false))
            .chain(load.threshold_abort.iter().map(|t| (t, true)))
        {
            let t = Threshold::parse(text).map_err(|m| Failure::usage(format!("--threshold: {m}")))?;
            thresholds.push(Threshold { abort_on_fail, ..t });
        }
        if let Some(name) = thresholds
            .iter()
            .filter_map(|t| t.endpoint.as_ref())
            .find(|n| !plan.endpoints.iter().any(|e| &e.name == *n))
        {
            let rows: Vec<&str> = plan.endpoints.iter().map(|e| e.name.as_str()).collect();
            return Err(Failure::usage(format!(
                "threshold on {{name={name}}}: no stats row has that name; the rows are {}",
                rows.join(", ")
            )));
        }
        let events_per_request: std::collections::BTreeMap<(String, String), u32> = plan
            .classes
            .iter()
            .flat_map(|c| c.tasks.iter().chain(&c.on_start))
            .filter(|t| t.events_per_request != 1)
            .filter_map(|t| {
                let e = plan.endpoints.get(t.endpoint)?;
                Some(((e.name.clone(), e.method.clone()), t.events_per_request))
            })
            .collect();
        scenario::filter_tags(&mut plan, &load.tags, &load.exclude_tags).map_err(Failure::usage)?;
        check_plan_size(&plan)?;
        let csv = load
            .csv
            .clone()
            .map(|prefix| crate::report::csv::Csv::new(prefix).with_full_history(load.csv_full_history));
        Ok(MasterSetup {
            run: RunConfig {
                users,
                spawn_rate,
                shape,
                arrival: arrival.clone(),
                run_time,
                expect_workers,
                expect_workers_max_wait: max_wait,
                stop_timeout: load.stop_timeout,
                liveness_timeout: load.heartbeat_liveness,
                host: host.clone(),
                start_from_ui: load.start_from_ui,
                progress_line: !load.only_summary && std::io::IsTerminal::is_terminal(&std::io::stdout()),
                console_every: (!load.only_summary).then_some(Duration::from_secs(5)),
                classes: plan
                    .classes
                    .iter()
                    .map(|c| (c.name.clone(), c.weight, c.fixed_count))
                    .collect(),
                on_worker_loss: load.on_worker_loss,
                hunt: None,
                csv_history: csv.clone(),
                thresholds: Arc::new(Thresholds {
                    list: thresholds,
                    events_per_request: events_per_request.clone(),
                }),
            },
            info: RunInfo {
                scenario: plan.source.clone(),
                host: host.or(plan.host.clone()),
                users,
                spawn_rate,
                arrival,
                events_per_request,
            },
            opts: ClusterOptions {
                tls: server_tls(load)?,
                master_timeout: load.master_timeout,
                token: cluster_token()?,
                ..Default::default()
            },
            json: load.json.clone(),
            html: load.html.clone(),
            csv,
            web: web_setup(load)?,
            plan,
            print_report: true,
            exit_code_on_error: load.exit_code_on_error.unwrap_or(EXIT_FAILURES),
        })
    }
}

/// The plan travels as JSON in `Welcome`: one too large for a gRPC message would reach
/// no worker, so it is refused before anything starts.
fn check_plan_size(plan: &RunPlan) -> Result<(), Failure> {
    let bytes = plan.to_json().len();
    if bytes > barrage_proto::MAX_PLAN_BYTES {
        return Err(Failure::usage(format!(
            "{}: the plan is {:.1} MiB as JSON, over the {:.1} MiB a worker can receive \
             (the cluster's message limit); its data pools are most of it: shrink them, or split \
             the run",
            plan.source,
            bytes as f64 / f64::from(1 << 20),
            barrage_proto::MAX_PLAN_BYTES as f64 / f64::from(1 << 20),
        )));
    }
    Ok(())
}
