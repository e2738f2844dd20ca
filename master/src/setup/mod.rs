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

use crate::cli::LoadArgs;
use crate::cluster::ClusterOptions;
use crate::controller::RunConfig;
use crate::exit::{EXIT_FAILURES, Failure};
use crate::report::RunInfo;
use crate::threshold_eval::Thresholds;

use credentials::{cluster_token, server_tls, web_setup};
use load_model::LoadModel;

pub(crate) mod credentials;
mod hunt_setup;
mod load_model;
#[cfg(test)]
mod tests;
mod threshold_flags;

pub use credentials::env_lookup;
pub use hunt_setup::hunt_setup;

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
    /// The scenario's plan as workers receive it (classes selected, tags filtered).
    pub plan: RunPlan,
    /// What the controller runs: load model, workers to wait for, thresholds, hunt.
    pub run: RunConfig,
    /// The run as reports describe it (scenario, host, users, rates).
    pub info: RunInfo,
    /// The worker port's TLS, cluster token and timeouts.
    pub opts: ClusterOptions,
    /// `--json FILE`: where the final report is written as JSON.
    pub json: Option<PathBuf>,
    /// `--html FILE`: where the final report is written as HTML.
    pub html: Option<PathBuf>,
    /// `--csv PREFIX`: Locust's CSV files (the same handle as `run.csv_history`).
    pub csv: Option<crate::report::csv::Csv>,
    /// Print the final report on stdout (tests turn it off).
    pub print_report: bool,
    /// Exit code when requests failed but every threshold held (`--exit-code-on-error`).
    pub exit_code_on_error: u8,
    /// The web API, unless headless.
    pub web: Option<(SocketAddr, crate::web::WebConfig)>,
}

impl MasterSetup {
    /// Lowers a run's flags over its scenario into the settings of the run, waiting for
    /// `expect_workers` workers (at most `max_wait`); a usage error (exit code 2) names
    /// the flag or scenario setting at fault.
    pub fn resolve(
        load: &LoadArgs,
        scenario: Scenario,
        expect_workers: u32,
        max_wait: Option<Duration>,
    ) -> Result<Self, Failure> {
        let host = flag_host(load)?;
        let model = LoadModel::resolve(load, &scenario)?;
        check_liveness(load.heartbeat_liveness)?;
        check_some_host(host.as_deref(), &scenario.plan)?;
        let (plan, thresholds) = plan_and_thresholds(load, scenario)?;
        let csv = load.csv.clone().map(|prefix| {
            let goodput = (0..plan.endpoints.len()).any(|i| plan.endpoint_has_goodput(i));
            crate::report::csv::Csv::new(prefix)
                .with_full_history(load.csv_full_history)
                .with_goodput(goodput)
        });
        let info = RunInfo {
            scenario: plan.source.clone(),
            host: host.clone().or(plan.host.clone()),
            users: model.users,
            spawn_rate: model.spawn_rate,
            arrival: model.arrival.clone(),
            events_per_request: thresholds.events_per_request.clone(),
            // A replayed trace's load is the recording's, varying as it did.
            load_varies: model.shape.is_some()
                || model
                    .arrival
                    .as_ref()
                    .is_some_and(|a| !a.schedule.stages.is_empty() || a.trace.is_some()),
        };
        let run = RunConfig {
            users: model.users,
            spawn_rate: model.spawn_rate,
            shape: model.shape,
            arrival: model.arrival,
            run_time: model.run_time,
            expect_workers,
            expect_workers_max_wait: max_wait,
            stop_timeout: load.stop_timeout,
            liveness_timeout: load.heartbeat_liveness,
            host,
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
            thresholds: Arc::new(thresholds),
        };
        let opts = ClusterOptions {
            tls: server_tls(load)?,
            master_timeout: load.master_timeout,
            token: cluster_token()?,
            ..Default::default()
        };
        Ok(MasterSetup {
            run,
            info,
            opts,
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

/// `-H/--host`, checked to be `http(s)://host:port` without a path (a trailing `/`
/// dropped); None without the flag.
fn flag_host(load: &LoadArgs) -> Result<Option<String>, Failure> {
    load.host
        .as_deref()
        .map(scenario::check_host)
        .transpose()
        .map_err(|m| Failure::usage(format!("--host: {m}")))
}

/// Every user class needs a target: `-H`, the scenario's `host`, or its own `host`.
fn check_some_host(flag_host: Option<&str>, plan: &RunPlan) -> Result<(), Failure> {
    if flag_host.is_none() && plan.host.is_none() && plan.classes.iter().any(|c| c.host.is_none()) {
        return Err(Failure::usage(format!(
            "{}: no target host; pass -H/--host http://HOST:PORT or set `host` in the scenario",
            plan.source
        )));
    }
    Ok(())
}

/// The plan as workers receive it (`--insecure`, the classes named on the command line,
/// `--tags`/`--exclude-tags`, at most a gRPC message), and the thresholds judged on it.
fn plan_and_thresholds(load: &LoadArgs, scenario: Scenario) -> Result<(RunPlan, Thresholds), Failure> {
    let mut plan = scenario.plan;
    plan.limits.tls_insecure |= load.insecure;
    let goodput = match load.goodput.as_deref() {
        Some(text) => Some(scenario::parse_goodput(text).map_err(|m| Failure::usage(format!("--goodput: {m}")))?),
        None => scenario.goodput,
    };
    scenario::apply_goodput(&mut plan, goodput);
    scenario::select_classes(&mut plan, &load.classes).map_err(Failure::usage)?;
    let thresholds = Thresholds {
        list: threshold_flags::merged(load, scenario.thresholds, &plan)?,
        events_per_request: threshold_flags::events_per_request(&plan),
    };
    scenario::filter_tags(&mut plan, &load.tags, &load.exclude_tags).map_err(Failure::usage)?;
    check_plan_size(&plan)?;
    Ok((plan, thresholds))
}

/// Workers send a heartbeat and a report every second: a worker silent for less than
/// two of them is not lost, just between messages.
fn check_liveness(liveness: Duration) -> Result<(), Failure> {
    if liveness < Duration::from_secs(2) {
        return Err(Failure::usage(format!(
            "--heartbeat-liveness {}: must be at least 2s (two heartbeats)",
            barrage_common::duration::format(liveness)
        )));
    }
    Ok(())
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
