//! The commands of the `barrage` binary. Entry points take what tests inject (a bound
//! listener, a shutdown future) so the test suite runs whole clusters in-process on
//! `127.0.0.1:0`.
//!
//! Exit codes: 0 success; 1 a threshold failed, the run had failed requests
//! (`--exit-code-on-error`), or `report --compare` found a regression; 2 usage or
//! scenario error; 3 cluster error (not enough workers, every worker lost) or
//! incomplete data (a report lost, a worker written off before its data arrived, no
//! request in a run meant to send load); 130 interrupted.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use barrage_common::plan::RunPlan;
use barrage_common::scenario::{self, Scenario};
use barrage_common::shape::Shape;
use barrage_common::threshold::Threshold;

use crate::cli::{Cli, Command, DemoArgs, HuntArgs, LoadArgs, MasterArgs, MockArgs, RunArgs, ValidateArgs, WorkerArgs};
use crate::cluster::ClusterOptions;
use crate::controller::RunConfig;
use crate::exit::{EXIT_CLUSTER, EXIT_FAILURES, Failure};
use crate::report::{RunInfo, console, json};
use crate::serve::{Outcome, serve_and_run};
use crate::signals::{shutdown_signal, signal};
use crate::thresholds::Thresholds;

/// Largest gRPC message either way (the worker's client uses the same).
pub const MAX_MESSAGE: usize = barrage_proto::MAX_MESSAGE;

pub fn main(cli: Cli) -> ExitCode {
    barrage_common::telemetry::init(match &cli.command {
        Command::Worker(_) => "info",
        _ => "warn,barrage_master=info",
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_CLUSTER);
        }
    };
    let result = runtime.block_on(dispatch(cli));
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let code = e.downcast_ref::<Failure>().map_or(1, |f| f.code);
            eprintln!("error: {e:#}");
            ExitCode::from(code)
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Master(args) => master_command(args).await,
        Command::Worker(args) => worker_command(args).await,
        Command::Run(args) => run_command(args).await,
        Command::Demo(args) => demo_command(args).await,
        Command::Mock(args) => mock_command(args).await,
        Command::Validate(args) => validate_command(args),
        Command::Hunt(args) => hunt_command(args).await,
        Command::Report(args) => report_command(args),
    }
}

fn web_setup(load: &LoadArgs) -> Result<Option<(SocketAddr, crate::web::WebConfig)>, Failure> {
    if load.headless {
        return Ok(None);
    }
    let addr = SocketAddr::new(load.web_host, load.web_port);
    crate::web::check_bind(&addr, load.web_auth).map_err(Failure::usage)?;
    let token = match env_lookup("BARRAGE_WEB_TOKEN").filter(|t| !t.is_empty()) {
        Some(t) => t,
        None if load.web_auth => return Err(Failure::usage("--web-auth needs BARRAGE_WEB_TOKEN in the environment")),
        None => format!("{:032x}", rand::random::<u128>()),
    };
    Ok(Some((
        addr,
        crate::web::WebConfig {
            token,
            auth_all: load.web_auth,
        },
    )))
}

/// Reads a PEM file named by a flag, naming the flag in the error.
fn read_pem(flag: &str, path: &Path) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|e| Failure::usage(format!("{flag} {}: cannot read: {e}", path.display())))
}

fn server_tls(load: &LoadArgs) -> Result<Option<crate::cluster::ServerTls>, Failure> {
    match (&load.tls_cert, &load.tls_key) {
        (None, None) if load.tls_client_ca.is_some() => Err(Failure::usage(
            "--tls-client-ca needs --tls-cert and --tls-key (mutual TLS is TLS first)",
        )),
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => Ok(Some(crate::cluster::ServerTls {
            cert_pem: read_pem("--tls-cert", cert)?,
            key_pem: read_pem("--tls-key", key)?,
            client_ca_pem: load
                .tls_client_ca
                .as_deref()
                .map(|p| read_pem("--tls-client-ca", p))
                .transpose()?,
        })),
        _ => Err(Failure::usage("--tls-cert and --tls-key go together")),
    }
}

/// The cluster token: `BARRAGE_CLUSTER_TOKEN`, or the first line of the file named by
/// `BARRAGE_CLUSTER_TOKEN_FILE` (a Kubernetes Secret mount). Never a flag: flags show in `ps`.
pub fn cluster_token() -> Result<Option<String>, Failure> {
    if let Some(path) = env_lookup("BARRAGE_CLUSTER_TOKEN_FILE").filter(|p| !p.is_empty()) {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Failure::usage(format!("BARRAGE_CLUSTER_TOKEN_FILE={path}: cannot read: {e}")))?;
        let token = text.lines().next().unwrap_or("").trim().to_string();
        if token.is_empty() {
            return Err(Failure::usage(format!(
                "BARRAGE_CLUSTER_TOKEN_FILE={path}: the file is empty"
            )));
        }
        return Ok(Some(token));
    }
    Ok(env_lookup("BARRAGE_CLUSTER_TOKEN").filter(|t| !t.is_empty()))
}

pub fn env_lookup(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

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
                schedule: barrage_common::arrival_schedule::Schedule {
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

/// Where the worker port listens: `--master-bind-host` under the bind policy
/// ([`crate::auth::bind_policy`]: loopback only unless workers authenticate, by a
/// cluster token or mutual TLS, or the operator allows strangers).
#[derive(Debug, Clone)]
pub struct WorkerPort<'a> {
    pub host: Option<&'a str>,
    pub port: u16,
    pub allow_unauthenticated: bool,
}

/// Serves the worker port and runs `setup` there to its end.
async fn listen_and_run(at: WorkerPort<'_>, setup: MasterSetup) -> anyhow::Result<u8> {
    let mutual_tls = setup.opts.tls.as_ref().is_some_and(|t| t.client_ca_pem.is_some());
    let authenticated = setup.opts.token.is_some() || mutual_tls;
    let policy = crate::auth::bind_policy(at.host, authenticated, at.allow_unauthenticated).map_err(Failure::usage)?;
    let addr = format!("{}:{}", policy.host, at.port);
    let listener = TcpListener::bind(&addr)
        .await
        .with_context(|| format!("binding the master port {addr}"))?;
    if let Some(w) = &policy.warning {
        eprintln!("warning: {w}");
        warn!("{w}");
    }
    info!(addr = %listener.local_addr()?, authenticated, "master listening for workers");
    Ok(serve_and_run(setup, listener, shutdown_signal()).await?.exit_code)
}

async fn master_command(args: MasterArgs) -> anyhow::Result<u8> {
    let scenario = load_scenario(&args.load.scenario, &env_lookup)?;
    let setup = MasterSetup::resolve(&args.load, scenario, args.expect_workers, args.expect_workers_max_wait)?;
    let at = WorkerPort {
        host: args.master_bind_host.as_deref(),
        port: args.master_bind_port,
        allow_unauthenticated: args.allow_unauthenticated_workers,
    };
    listen_and_run(at, setup).await
}

async fn worker_command(args: WorkerArgs) -> anyhow::Result<u8> {
    let mut cfg = barrage_worker::WorkerConfig::new(args.master);
    if let Some(id) = args.worker_id {
        cfg.worker_id = id;
    }
    cfg.weight = args.weight.unwrap_or(0);
    cfg.threads = args.threads.map_or(0, |t| t as usize);
    cfg.give_up_after = args.give_up_after;
    cfg.token = cluster_token()?;
    cfg.tls = match (&args.tls_ca, &args.tls_cert, &args.tls_key) {
        (None, None, None) => None,
        (Some(ca), cert, key) => Some(barrage_worker::MasterTls {
            ca_pem: read_pem("--tls-ca", ca)?,
            identity: match (cert, key) {
                (Some(c), Some(k)) => Some((read_pem("--tls-cert", c)?, read_pem("--tls-key", k)?)),
                (None, None) => None,
                _ => return Err(Failure::usage("--tls-cert and --tls-key go together").into()),
            },
            domain: args.tls_domain.clone(),
        }),
        (None, _, _) => return Err(Failure::usage("--tls-cert/--tls-key need --tls-ca (the CA of the master)").into()),
    };
    match barrage_worker::run(cfg, shutdown_signal()).await {
        Ok(exit) => {
            info!(?exit, "worker finished");
            Ok(0)
        }
        Err(barrage_worker::Error::Refused(m)) => Err(Failure {
            code: EXIT_CLUSTER,
            message: format!("the master refused this worker: {m}"),
        }
        .into()),
        Err(e) => Err(Failure {
            code: EXIT_CLUSTER,
            message: e.to_string(),
        }
        .into()),
    }
}

/// Local worker processes for `run` and `demo`; killed when dropped.
pub struct LocalWorkers {
    children: Vec<tokio::process::Child>,
}

impl LocalWorkers {
    /// Starts `n` `barrage worker` processes (this same executable) joining `master`.
    pub fn spawn(n: u32, master: SocketAddr) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("finding the barrage executable")?;
        Self::spawn_exe(&exe, n, master)
    }

    pub fn spawn_exe(exe: &Path, n: u32, master: SocketAddr) -> anyhow::Result<Self> {
        let mut children = Vec::new();
        // The local workers share this machine's cores rather than each taking all.
        let threads = (barrage_worker::cores::default_threads() / n.max(1) as usize).max(1);
        for i in 0..n {
            let child = tokio::process::Command::new(exe)
                .args(["worker", "--master", &master.to_string(), "--give-up-after", "30s"])
                .arg("--threads")
                .arg(threads.to_string())
                .arg("--worker-id")
                .arg(format!("local-{}-{i}", std::process::id()))
                .env(
                    "RUST_LOG",
                    std::env::var("BARRAGE_WORKER_LOG").unwrap_or_else(|_| "warn".into()),
                )
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("starting worker process {i} ({})", exe.display()))?;
            children.push(child);
        }
        Ok(LocalWorkers { children })
    }

    /// Waits for the workers to exit by themselves (they leave after the final ack).
    pub async fn wait(mut self, limit: Duration) {
        let all = async {
            for c in &mut self.children {
                let _ = c.wait().await;
            }
        };
        if tokio::time::timeout(limit, all).await.is_err() {
            warn!("local workers did not exit in time; killing them");
        }
    }
}

async fn run_local(setup: MasterSetup, workers: u32) -> anyhow::Result<Outcome> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding a local master port")?;
    let addr = listener.local_addr()?;
    let local = LocalWorkers::spawn(workers, addr)?;
    let outcome = serve_and_run(setup, listener, shutdown_signal()).await;
    local.wait(Duration::from_secs(5)).await;
    outcome
}

async fn run_command(args: RunArgs) -> anyhow::Result<u8> {
    let scenario = load_scenario(&args.load.scenario, &env_lookup)?;
    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u32))
        .max(1);
    let setup = MasterSetup::resolve(&args.load, scenario, workers, Some(Duration::from_secs(30)))?;
    Ok(run_local(setup, workers).await?.exit_code)
}

async fn hunt_command(args: HuntArgs) -> anyhow::Result<u8> {
    let scenario = load_scenario(&args.load.scenario, &env_lookup)?;
    let local = args.expect_workers.is_none();
    let workers = args
        .expect_workers
        .or(args.workers)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u32))
        .max(1);
    let setup = hunt_setup(&args, scenario, workers)?;
    if local {
        return Ok(run_local(setup, workers).await?.exit_code);
    }
    let at = WorkerPort {
        host: args.master_bind_host.as_deref(),
        port: args.master_bind_port,
        allow_unauthenticated: args.allow_unauthenticated_workers,
    };
    listen_and_run(at, setup).await
}

/// A run whose users the breaking-point search decides.
pub fn hunt_setup(args: &HuntArgs, scenario: Scenario, workers: u32) -> Result<MasterSetup, Failure> {
    if args.load.users.is_some()
        || !args.load.stage.is_empty()
        || args.load.arrival_rate.is_some()
        || !args.load.arrival_stage.is_empty()
    {
        return Err(Failure::usage(
            "hunt sets the load itself (--start, --step, --max; --arrival for rates); leave out -u, --stage, --arrival-rate and --arrival-stage".to_string(),
        ));
    }
    if args.load.start_from_ui {
        return Err(Failure::usage(
            "hunt steps the load itself; --start-from-ui is for runs started from the web UI".to_string(),
        ));
    }
    if args.load.max_in_flight.is_some() && !args.arrival {
        return Err(Failure::usage(
            "--max-in-flight caps the open model; hunt with --arrival to step arrival rates".to_string(),
        ));
    }
    let mean_wait = mean_wait(&scenario.plan);
    // The hunt applies the in-flight cap to its own arrival steps.
    let load = LoadArgs {
        max_in_flight: None,
        ..args.load.clone()
    };
    let mut setup = MasterSetup::resolve(&load, scenario, workers, Some(Duration::from_secs(60)))?;
    let slos = args
        .slo
        .iter()
        .map(|s| Threshold::parse(s).map_err(|m| Failure::usage(format!("--slo: {m}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let cfg = crate::hunt::HuntConfig {
        start: args.start,
        step: args.step,
        step_time: args.step_time,
        warmup: args.warmup.unwrap_or(args.step_time / 6),
        max: args.max,
        slos,
        stall: (!args.no_stall).then_some((args.stall_users, args.stall_gain)),
        bisect: args.bisect,
        mean_wait,
        rate_mode: args.arrival,
    };
    cfg.check().map_err(Failure::usage)?;
    // Each step is reached within a tenth of its time unless -r says otherwise.
    setup.run.spawn_rate = args
        .load
        .spawn_rate
        .unwrap_or_else(|| (f64::from(args.start.max(args.step)) * 10.0 / args.step_time.as_secs_f64()).max(1.0));
    setup.run.users = args.max;
    setup.info.users = args.max;
    setup.info.spawn_rate = setup.run.spawn_rate;
    setup.run.shape = None;
    if args.arrival {
        let a = scenario::Arrival {
            schedule: barrage_common::arrival_schedule::Schedule::constant(f64::from(args.start.max(1))),
            max_in_flight: args.load.max_in_flight.unwrap_or(scenario::DEFAULT_MAX_IN_FLIGHT),
        };
        setup.run.users = 0;
        setup.info.users = 0;
        setup.run.arrival = Some(a.clone());
        setup.info.arrival = Some(a);
    }
    setup.run.run_time = Some(args.load.run_time.unwrap_or(cfg.bound()));
    // Failed requests are what a hunt looks for: they fail the run only through
    // --threshold or an explicit --exit-code-on-error.
    setup.exit_code_on_error = args.load.exit_code_on_error.unwrap_or(0);
    setup.run.hunt = Some(Arc::new(std::sync::Mutex::new(crate::hunt::Hunt::new(cfg))));
    Ok(setup)
}

/// The mean pause between a user's tasks, over the classes by weight (Little's law).
fn mean_wait(plan: &RunPlan) -> Duration {
    let weighted: Vec<(f64, f64)> = plan
        .classes
        .iter()
        .map(|c| {
            let wait = match c.wait {
                barrage_common::plan::Wait::Constant(d) => d.as_secs_f64(),
                barrage_common::plan::Wait::Between(a, b) => (a.as_secs_f64() + b.as_secs_f64()) / 2.0,
                // A pacing user's cycle is its pacing, not response time + wait.
                barrage_common::plan::Wait::Pacing(_) => 0.0,
            };
            (f64::from(c.weight.max(c.fixed_count.unwrap_or(0))), wait)
        })
        .collect();
    let total: f64 = weighted.iter().map(|(w, _)| w).sum();
    if total <= 0.0 {
        return Duration::ZERO;
    }
    Duration::from_secs_f64(weighted.iter().map(|(w, s)| w * s).sum::<f64>() / total)
}

/// The example scenario the demo runs, compiled in so `barrage demo` works anywhere.
pub const DEMO_SCENARIO: &str = include_str!("../../examples/dify-workflow.toml");
const DEMO_KEY: &str = "app-barrage-demo";

async fn demo_command(args: DemoArgs) -> anyhow::Result<u8> {
    // The mock target, in this process.
    let mock_cfg = barrage_mock::MockConfig {
        api_key: Some(DEMO_KEY.into()),
        ..Default::default()
    };
    let mock_listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the mock target")?;
    let mock_addr = mock_listener.local_addr()?;
    let mock = barrage_mock::MockState::new(mock_cfg.clone());
    let mock_stop = CancellationToken::new();
    let mock_task = tokio::spawn(barrage_mock::run(
        mock.clone(),
        mock_listener,
        mock_stop.clone().cancelled_owned(),
    ));

    let env = |name: &str| {
        if name == "DIFY_API_KEY" {
            Some(DEMO_KEY.to_string())
        } else {
            env_lookup(name)
        }
    };
    let scenario = scenario::parse_str(
        DEMO_SCENARIO,
        config::FileFormat::Toml,
        "examples/dify-workflow.toml",
        &env,
    )
    .map_err(Failure::usage)?;
    println!(
        "Barrage demo: mock dify-api on http://{mock_addr} (first event after {:?}, {} chunks {:?} apart), \
a master and {} worker processes, {} users at {}/s for {}.",
        mock_cfg.first_event_delay,
        mock_cfg.chunks,
        mock_cfg.chunk_interval,
        args.workers,
        args.users,
        args.spawn_rate,
        barrage_common::duration::format(args.run_time)
    );
    let load = LoadArgs {
        host: Some(format!("http://{mock_addr}")),
        users: Some(args.users),
        spawn_rate: Some(args.spawn_rate),
        run_time: Some(args.run_time),
        headless: true,
        json: args.json.clone(),
        html: args.html.clone(),
        ..LoadArgs::defaults(Path::new("examples/dify-workflow.toml")).map_err(Failure::usage)?
    };
    let setup = MasterSetup::resolve(&load, scenario, args.workers.max(1), Some(Duration::from_secs(30)))?;
    let outcome = run_local(setup, args.workers.max(1)).await?;
    let truth = mock.ground_truth();
    mock_stop.cancel();
    let _ = mock_task.await;
    let r = &outcome.report;
    println!(
        "Ground truth from the mock: {} requests received, {} streams completed, {} events sent, max {} concurrent streams.\n\
Barrage reported:            {} requests, {} streams completed, {} events.",
        truth.requests,
        truth.streams_completed,
        truth.events_sent,
        truth.max_concurrent_streams,
        r.aggregated.requests,
        r.aggregated.streams_completed,
        r.aggregated.events
    );
    Ok(outcome.exit_code)
}

async fn mock_command(args: MockArgs) -> anyhow::Result<u8> {
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    println!(
        "barrage mock: dify-api double on http://{} (ground truth: GET /_mock/stats)",
        listener.local_addr()?
    );
    barrage_mock::run(barrage_mock::MockState::new(args.config), listener, signal()).await?;
    Ok(0)
}

fn validate_command(args: ValidateArgs) -> anyhow::Result<u8> {
    let scenario = load_scenario(&args.scenario, &env_lookup)?;
    print!("{}", crate::describe::scenario(&scenario));
    Ok(0)
}

/// `barrage report --compare BASE NEW`: exit code 0 without a regression, 1 with one,
/// 2 when a file is missing, not JSON or not a report (or --json cannot be written), 3
/// when either run's data is incomplete.
fn report_command(args: crate::cli::ReportArgs) -> anyhow::Result<u8> {
    if let Some(file) = &args.file {
        return render_saved(file, &args);
    }
    let [base, new] = args.compare.as_slice() else {
        return Err(Failure::usage("--compare takes two files: BASE.json NEW.json").into());
    };
    let tolerances = crate::compare::Tolerances {
        pct: args.tolerance,
        errors_pp: args.tolerance_errors,
    };
    let comparison = crate::compare::compare_files(base, new, tolerances).map_err(Failure::usage)?;
    print!("{}", crate::compare::render(&comparison));
    if let Some(path) = &args.json {
        crate::compare::write_json(&comparison, path).map_err(Failure::usage)?;
    }
    let code = comparison.exit_code();
    if code != 0 {
        eprintln!(
            "{} figure(s) regressed beyond the tolerances (exit code {code})",
            comparison.regressions
        );
    }
    // A comparison with a run whose data is incomplete proves nothing either way.
    let incomplete: Vec<String> = [base, new]
        .into_iter()
        .filter_map(|f| json::read(f).ok().map(|r| (f, r)))
        .filter(|(_, r)| !r.completeness.is_complete())
        .map(|(f, r)| format!("{}: {}", f.display(), r.completeness.reasons.join("; ")))
        .collect();
    if !incomplete.is_empty() {
        eprintln!(
            "error: a compared run's data is incomplete, so the comparison cannot gate (exit code {EXIT_CLUSTER}): {}",
            incomplete.join(" | ")
        );
        return Ok(EXIT_CLUSTER);
    }
    Ok(code)
}

/// `barrage report RUN.json [--html OUT] [--csv PREFIX]`: the console report of a saved
/// result, and the files asked for. Exit code 2 when the file is not a usable report.
fn render_saved(file: &Path, args: &crate::cli::ReportArgs) -> anyhow::Result<u8> {
    let report = json::read(file).map_err(Failure::usage)?;
    print!("{}", console::render_final(&report));
    if let Some(path) = &args.html {
        crate::report::html::write(&json::to_json(&report), path)?;
        eprintln!("HTML report written to {}", path.display());
    }
    if let Some(prefix) = &args.csv {
        crate::report::csv::Csv::new(prefix).write_final(&report)?;
        eprintln!(
            "CSV files written with prefix {} (PREFIX_stats_history.csv is only written during a run)",
            prefix.display()
        );
    }
    Ok(0)
}
