//! Command-line interface. Flags follow Locust's names where Locust has one, so
//! people's habits carry over. Layering for run settings: the scenario's `[run]`
//! section < `BARRAGE_RUN_*` environment variables < flags.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use barrage_common::duration;

#[derive(Debug, Parser)]
#[command(
    name = "barrage",
    version,
    about = "Distributed load testing for HTTP and SSE APIs (Dify's dify-api first)",
    long_about = "Barrage runs virtual users on worker processes, coordinated over gRPC by a master \
that partitions users exactly, merges HDR histograms from every worker and reports \
cluster-wide figures: requests, failures by kind, TTFE/TTFT, events/s, active streams.\n\n\
Try `barrage demo` first: it runs a whole cluster against a built-in Dify double."
)]
/// The `barrage` command line.
pub struct Cli {
    /// The subcommand and its flags.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands of `barrage`, one file each in [`crate::commands`].
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Mock target + master + 2 worker processes on loopback, 20 s, live console and report.
    Demo(DemoArgs),
    /// Coordinate a distributed run: wait for workers, partition users, merge reports.
    Master(MasterArgs),
    /// Join a master and run whatever it assigns.
    Worker(WorkerArgs),
    /// Standalone run: a master plus N local worker processes.
    Run(RunArgs),
    /// Serve the dify-api double (workflow and chat SSE endpoints, ground-truth counters).
    Mock(MockArgs),
    /// Find the breaking point: step the users up until an SLO breaks or throughput
    /// stops growing; report each step, the sustainable capacity and what broke first.
    Hunt(HuntArgs),
    /// Validate a scenario file and print the normalised plan (secrets shown as ***).
    Validate(ValidateArgs),
    /// Compare two saved --json reports side by side (a CI regression gate): exit code 1
    /// when a figure regressed beyond the tolerances.
    Report(ReportArgs),
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    duration::parse(s)
}

fn parse_rate_stage(s: &str) -> Result<barrage_common::arrival_schedule::RateStage, String> {
    let (d, r) = s
        .split_once(':')
        .ok_or("expected DURATION:RATE, e.g. 1m:100 (the rate reached at the end of 1m)")?;
    let duration = duration::parse(d)?;
    if duration.is_zero() {
        return Err("a stage lasts more than 0".into());
    }
    let rate: f64 = r.trim().parse().map_err(|_| format!("`{r}` is not an arrival rate"))?;
    if !(rate.is_finite() && rate >= 0.0) {
        return Err(format!("`{r}` is not an arrival rate; expected 0 or more per second"));
    }
    Ok(barrage_common::arrival_schedule::RateStage { duration, rate })
}

fn parse_stage(s: &str) -> Result<barrage_common::shape::Stage, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let (d, u, r) = match parts.as_slice() {
        [d, u] => (d, u, None),
        [d, u, r] => (d, u, Some(r)),
        _ => return Err("expected DURATION:USERS or DURATION:USERS:SPAWN_RATE, e.g. 1m:100 or 30s:50:10".into()),
    };
    Ok(barrage_common::shape::Stage {
        duration: duration::parse(d)?,
        users: u.trim().parse().map_err(|_| format!("`{u}` is not a user count"))?,
        spawn_rate: r
            .map(|r| {
                r.trim()
                    .parse::<f64>()
                    .map_err(|_| format!("`{r}` is not a spawn rate"))
                    .and_then(barrage_common::scenario::check_rate)
            })
            .transpose()?,
    })
}

impl LoadArgs {
    /// Every setting at its command-line default (as `barrage run -f SCENARIO` would
    /// have them, `BARRAGE_RUN_*` variables included), for callers that build a run in
    /// code: the demo, tests.
    /// An error only when a `BARRAGE_RUN_*` variable does not parse.
    pub fn defaults(scenario: &std::path::Path) -> Result<LoadArgs, String> {
        use clap::Parser;
        let argv: [&std::ffi::OsStr; 4] = ["barrage".as_ref(), "run".as_ref(), "-f".as_ref(), scenario.as_os_str()];
        match Cli::try_parse_from(argv) {
            Ok(Cli {
                command: Command::Run(run),
            }) => Ok(run.load),
            Ok(_) => Err("`barrage run` parsed as another command".into()),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Settings shared by `master` and `run`.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// Scenario file (TOML or YAML), e.g. examples/dify-workflow.toml.
    #[arg(
        short = 'f',
        long = "scenario",
        visible_alias = "locustfile",
        env = "BARRAGE_SCENARIO"
    )]
    pub scenario: PathBuf,
    /// Target host, e.g. http://127.0.0.1:5001; overrides the scenario's `host`.
    #[arg(short = 'H', long, env = "BARRAGE_RUN_HOST")]
    pub host: Option<String>,
    /// Peak number of concurrent users [default: scenario's run.users, else 1].
    #[arg(short = 'u', long, env = "BARRAGE_RUN_USERS")]
    pub users: Option<u32>,
    /// Users started per second, cluster-wide [default: scenario's run.spawn_rate, else 1].
    #[arg(short = 'r', long, env = "BARRAGE_RUN_SPAWN_RATE")]
    pub spawn_rate: Option<f64>,
    /// Stop after this long, e.g. 60s, 5m, 1h30m [default: scenario's run.run_time, else until Ctrl-C].
    #[arg(short = 't', long, env = "BARRAGE_RUN_RUN_TIME", value_parser = parse_duration)]
    pub run_time: Option<Duration>,
    /// A stage of a ramping shape, repeatable, in order: DURATION:USERS[:SPAWN_RATE]
    /// (e.g. --stage 1m:100 --stage 5m:100 --stage 30s:0). Without a rate the stage
    /// ramps linearly to its users by its end. Replaces -u/-r; -t defaults to the sum.
    #[arg(long, value_name = "DUR:USERS[:RATE]", value_parser = parse_stage)]
    pub stage: Vec<barrage_common::shape::Stage>,
    /// Open model: iterations started per second, cluster-wide, whether or not earlier
    /// ones finished (the start rate when --arrival-stage is given). Replaces -u/-r.
    #[arg(long, value_name = "PER_SECOND")]
    pub arrival_rate: Option<f64>,
    /// Open model, repeatable: DURATION:RATE, the rate ramping linearly to RATE over
    /// DURATION (e.g. --arrival-stage 1m:100 --arrival-stage 5m:100).
    #[arg(long, value_name = "DUR:RATE", value_parser = parse_rate_stage)]
    pub arrival_stage: Vec<barrage_common::arrival_schedule::RateStage>,
    /// Open model: iterations in flight at most, cluster-wide; an arrival beyond is
    /// dropped and counted, never delayed [default: 1000].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_in_flight: Option<u32>,
    /// Open model: how arrivals are spaced. constant: evenly, at the rate; poisson:
    /// exponential gaps (independent arrivals, as many users acting on their own);
    /// gamma: gaps of shape --arrival-burstiness (bursty traffic). The mean rate is
    /// --arrival-rate/--arrival-stage either way [default: scenario's run.arrival_process,
    /// else constant].
    #[arg(long, value_name = "PROCESS", value_parser = ["constant", "poisson", "gamma"])]
    pub arrival_process: Option<String>,
    /// Open model, gamma: the shape k of the gaps; their coefficient of variation is
    /// 1/sqrt(k): 1 is Poisson, 0.25 much burstier, 4 more regular (at least 0.001).
    #[arg(long, value_name = "K")]
    pub arrival_burstiness: Option<f64>,
    /// Open model, poisson or gamma: the seed of the arrival sequence; the same seed
    /// and schedule repeat the same arrivals, whatever the number of workers [default:
    /// scenario's run.seed, else random, printed in the report].
    #[arg(long, value_name = "N")]
    pub arrival_seed: Option<u64>,
    /// Open model: replay the arrivals recorded in this JSONL trace, one a line
    /// ({"offset_ms": 12.5, "inputs": {"query": "..."}, "task": "..."}), each at its offset
    /// with its inputs as template values; replaces --arrival-rate/--arrival-stage and the
    /// scenario's rate. The run ends once the last arrival's requests finished, or at -t
    /// [default: scenario's run.arrival_trace].
    #[arg(long, value_name = "FILE")]
    pub arrival_trace: Option<PathBuf>,
    /// Run settings from the scenario's `[presets.NAME]` (e.g. light, heavy, soak), laid
    /// over its `[run]`; -u, -r and -t still win.
    #[arg(short = 'P', long, value_name = "NAME")]
    pub preset: Option<String>,
    /// Run only these user classes (as Locust's class names after the options); default all.
    #[arg(value_name = "CLASS")]
    pub classes: Vec<String>,
    /// A pass/fail criterion, repeatable: 'p95(ttfe) < 500ms', 'error_rate < 1%',
    /// 'rps > 100', 'p99(response_time){name=/v1/chat-messages} < 2s',
    /// 'p95(ttfe)[60s] < 500ms' (trailing 60 s). A failed one makes the exit code 1.
    #[arg(long, value_name = "EXPR")]
    pub threshold: Vec<String>,
    /// A threshold that also stops the run, cluster-wide, as soon as it fails (checked
    /// every second; a trailing window once the run is that old).
    #[arg(long, value_name = "EXPR")]
    pub threshold_abort: Vec<String>,
    /// Exit code when requests failed but every threshold held (0: failures alone do
    /// not fail the run) [default: 1; for hunt 0, failures being what it looks for].
    #[arg(long, value_name = "CODE")]
    pub exit_code_on_error: Option<u8>,
    /// Run only the tasks with any of these tags (comma-separated).
    #[arg(short = 'T', long, value_delimiter = ',')]
    pub tags: Vec<String>,
    /// Leave out the tasks with any of these tags (comma-separated).
    #[arg(short = 'E', long, value_delimiter = ',')]
    pub exclude_tags: Vec<String>,
    /// Accept any TLS certificate from https targets (self-signed clusters). Also
    /// accepts an attacker's: use only on networks you trust.
    #[arg(long)]
    pub insecure: bool,
    /// Per-request goodput objectives for every task without its own `goodput`, over
    /// the scenario's `[goodput]`: `ttfe=500ms,ttft=1s,chunk_gap_p95=200ms,response_time=10s`
    /// (any subset). A successful request meeting all of its task's is good.
    #[arg(long, value_name = "OBJECTIVES")]
    pub goodput: Option<String>,
    /// TLS for the worker port: this master's certificate (PEM).
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// TLS for the worker port: this master's private key (PEM).
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Mutual TLS: accept only workers whose certificate this CA signed (PEM).
    #[arg(long, value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
    /// Run without the web UI and API (port 8089: live charts and tables, JSON, stop).
    #[arg(long)]
    pub headless: bool,
    /// Wait for a start from the web UI (users, spawn rate, host, run time) once the
    /// workers are in, as Locust does without --headless; after the run the UI stays up
    /// for its downloads until Ctrl-C.
    #[arg(long, conflicts_with = "headless")]
    pub start_from_ui: bool,
    /// Interface of the web API. Anything but loopback needs --web-auth.
    #[arg(long, default_value = "127.0.0.1")]
    pub web_host: std::net::IpAddr,
    /// Port of the web API.
    #[arg(long, default_value_t = 8089)]
    pub web_port: u16,
    /// Require the token (BARRAGE_WEB_TOKEN) on every web API call, reads included.
    #[arg(long)]
    pub web_auth: bool,
    /// Write the final report as JSON (schema: master/schema/report.schema.json).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write Locust's CSV files: PREFIX_stats.csv, PREFIX_stats_history.csv (a row a
    /// second, during the run), PREFIX_failures.csv, PREFIX_exceptions.csv, and
    /// PREFIX_sse.csv (per-second streams, events and TTFE). Folders in PREFIX are created.
    #[arg(long, value_name = "PREFIX")]
    pub csv: Option<PathBuf>,
    /// With --csv: PREFIX_stats_history.csv also gets a row per endpoint every second,
    /// and every history row's percentiles are those of the last 10 s instead of the
    /// whole run's (Locust's --csv-full-history).
    #[arg(long, requires = "csv")]
    pub csv_full_history: bool,
    /// Write the final report as one self-contained HTML file (charts and tables; opens
    /// offline).
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Print only the final report, not the live view every 5 s.
    #[arg(long)]
    pub only_summary: bool,
    /// Time users get to finish in-flight requests when the run stops.
    #[arg(short = 's', long, default_value = "10s", value_parser = parse_duration)]
    pub stop_timeout: Duration,
    /// A worker silent (or disconnected) this long is declared lost and its users rebalanced.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub heartbeat_liveness: Duration,
    /// When a worker is lost: give its users to the others, carry on without them, or
    /// stop the run (exit code 3).
    #[arg(long, value_enum, default_value_t = crate::controller::WorkerLossPolicy::Rebalance)]
    pub on_worker_loss: crate::controller::WorkerLossPolicy,
    /// Workers stop their load after hearing nothing from the master this long.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub master_timeout: Duration,
}

/// `barrage master`'s flags.
#[derive(Debug, Args)]
pub struct MasterArgs {
    /// The run's settings.
    #[command(flatten)]
    pub load: LoadArgs,
    /// Workers to wait for before starting.
    #[arg(long, default_value_t = 1)]
    pub expect_workers: u32,
    /// Give up (exit code 3) if fewer workers joined within this long [default: wait forever].
    #[arg(long, value_parser = parse_duration)]
    pub expect_workers_max_wait: Option<Duration>,
    /// Interface the master listens on for workers [default: 0.0.0.0 with a cluster
    /// token or mutual TLS, else 127.0.0.1]. Beyond loopback without either needs
    /// --allow-unauthenticated-workers.
    #[arg(long)]
    pub master_bind_host: Option<String>,
    /// Port the master listens on for workers.
    #[arg(long, default_value_t = 5557)]
    pub master_bind_port: u16,
    /// Let workers join without a cluster token or mutual TLS on an interface beyond
    /// loopback: anyone who reaches the port receives the plan, API keys included.
    #[arg(long, env = "BARRAGE_ALLOW_UNAUTHENTICATED_WORKERS")]
    pub allow_unauthenticated_workers: bool,
}

/// `barrage hunt`'s flags.
#[derive(Debug, Args)]
pub struct HuntArgs {
    /// The run's settings (hunt sets the load itself).
    #[command(flatten)]
    pub load: LoadArgs,
    /// Users of the first step.
    #[arg(long, default_value_t = 10)]
    pub start: u32,
    /// How the levels are chosen: geometric (multiply until a level breaks, then
    /// bisect to --resolution) or linear (add --step each time, then --bisect rounds).
    #[arg(long, value_enum, default_value_t = crate::hunt::search::SearchKind::Geometric)]
    pub search: crate::hunt::search::SearchKind,
    /// At most this many steps, the boundary's re-measure included.
    #[arg(long, default_value_t = 12)]
    pub max_probes: u32,
    /// Geometric search: stop once the last good and the first bad level are this
    /// close: levels (5) or a share of the last good level (5%).
    #[arg(long, default_value = "5%", value_parser = crate::hunt::search::Resolution::parse)]
    pub resolution: crate::hunt::search::Resolution,
    /// Linear search: users added at each step.
    #[arg(long, default_value_t = 10)]
    pub step: u32,
    /// The longest a step lasts (at least 2s); every step without --stable-within.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub step_time: Duration,
    /// A step ends once the 95 % confidence half-width of its per-second p95 (of the
    /// first SLO's latency metric) is under this fraction of it: 0.05 or 5%.
    /// 'off': every step runs --step-time.
    #[arg(long, default_value = "5%", value_parser = crate::hunt::stable::Within::parse)]
    pub stable_within: crate::hunt::stable::Within,
    /// The shortest a step lasts before it may end stable [default: a quarter of
    /// --step-time].
    #[arg(long, value_parser = parse_duration)]
    pub min_step_time: Option<Duration>,
    /// Do not run the boundary (the last good level) a second time after the search.
    #[arg(long)]
    pub no_remeasure: bool,
    /// The first part of each step left out of its figures [default: a sixth of --step-time].
    #[arg(long, value_parser = parse_duration)]
    pub warmup: Option<Duration>,
    /// Highest user count to try.
    #[arg(long, default_value_t = 1000)]
    pub max: u32,
    /// A service-level objective every step must meet, repeatable: 'p95(ttfe) < 500ms',
    /// 'error_rate < 1%', 'p99(response_time) < 2s' (whole-cluster figures of the step).
    #[arg(long, value_name = "EXPR", required = true)]
    pub slo: Vec<String>,
    /// A stall: users up by at least this many percent over an earlier good step ...
    #[arg(long, default_value_t = 20.0, value_name = "PCT")]
    pub stall_users: f64,
    /// ... and throughput (req/s) up by less than this many percent. The search stops there.
    #[arg(long, default_value_t = 5.0, value_name = "PCT")]
    pub stall_gain: f64,
    /// Never stop for a stall, only for a broken SLO or --max.
    #[arg(long)]
    pub no_stall: bool,
    /// Linear search: rounds of bisection between the last good and the first bad level.
    #[arg(long, default_value_t = 0)]
    pub bisect: u32,
    /// Step the arrival rate (the open model, iterations per second) instead of users:
    /// --start, --step and --max are then rates; --max-in-flight caps iterations in flight.
    #[arg(long)]
    pub arrival: bool,
    /// Local worker processes to start [default: number of CPU cores].
    #[arg(long, conflicts_with = "expect_workers")]
    pub workers: Option<u32>,
    /// Wait for this many remote workers on --master-bind-host/--master-bind-port
    /// instead of starting local ones.
    #[arg(long)]
    pub expect_workers: Option<u32>,
    /// Interface the master listens on for remote workers [default: 0.0.0.0 with a
    /// cluster token or mutual TLS, else 127.0.0.1]. Beyond loopback without either
    /// needs --allow-unauthenticated-workers.
    #[arg(long)]
    pub master_bind_host: Option<String>,
    /// Port the master listens on for remote workers.
    #[arg(long, default_value_t = 5557)]
    pub master_bind_port: u16,
    /// Let workers join without a cluster token or mutual TLS on an interface beyond
    /// loopback: anyone who reaches the port receives the plan, API keys included.
    #[arg(long, env = "BARRAGE_ALLOW_UNAUTHENTICATED_WORKERS")]
    pub allow_unauthenticated_workers: bool,
}

/// `barrage run`'s flags.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The run's settings.
    #[command(flatten)]
    pub load: LoadArgs,
    /// Local worker processes to start [default: number of CPU cores].
    #[arg(long)]
    pub workers: Option<u32>,
    /// Local addresses the local workers bind target connections to, in turn (as
    /// `barrage worker --source-addresses`: IPs and/or CIDR blocks, comma-separated).
    #[arg(long, value_name = "LIST", env = "BARRAGE_SOURCE_ADDRESSES")]
    pub source_addresses: Option<String>,
}

/// `barrage worker`'s flags.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Master address, HOST:PORT.
    #[arg(long, default_value = "127.0.0.1:5557", env = "BARRAGE_MASTER")]
    pub master: String,
    /// Stable id of this worker [default: HOSTNAME-PID-RANDOM]. Unique in the cluster:
    /// the master refuses a second process under the id of a connected worker, and lets
    /// a new process replace one that is gone (a pod restarted under its name).
    #[arg(long, env = "BARRAGE_WORKER_ID")]
    pub worker_id: Option<String>,
    /// Relative capacity for partitioning [default: number of CPU cores].
    #[arg(long)]
    pub weight: Option<u32>,
    /// Load threads, each running its share of the users on one single-threaded event
    /// loop (like wrk's -t) [default: number of CPU cores].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub threads: Option<u32>,
    /// Local addresses to bind target connections to, in turn: IPs and/or CIDR blocks,
    /// comma-separated (`127.0.0.2,127.0.0.3`, `10.0.5.0/28`; at most 4,096, one
    /// family, each configured on this host). One source address holds about 28,000
    /// connections to one target address (the ephemeral ports); N addresses, N times
    /// that [default: the kernel picks the source address].
    #[arg(long, value_name = "LIST", env = "BARRAGE_SOURCE_ADDRESSES")]
    pub source_addresses: Option<String>,
    /// TLS to the master: the CA that signed the master's certificate (PEM).
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Mutual TLS: this worker's certificate (PEM).
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// Mutual TLS: this worker's private key (PEM).
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Name the master's certificate must carry [default: the host of --master].
    #[arg(long)]
    pub tls_domain: Option<String>,
    /// Exit after this long without contact with a master [default: keep retrying].
    #[arg(long, value_parser = parse_duration)]
    pub give_up_after: Option<Duration>,
}

/// `barrage demo`'s flags.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Concurrent users.
    #[arg(short = 'u', long, default_value_t = 50)]
    pub users: u32,
    /// Users started per second.
    #[arg(short = 'r', long, default_value_t = 10.0)]
    pub spawn_rate: f64,
    /// Run time.
    #[arg(short = 't', long, default_value = "20s", value_parser = parse_duration)]
    pub run_time: Duration,
    /// Worker processes.
    #[arg(long, default_value_t = 2)]
    pub workers: u32,
    /// Write the final report as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write the final report as a self-contained HTML file.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

/// `barrage mock`'s flags.
#[derive(Debug, Args)]
pub struct MockArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:5001")]
    pub listen: SocketAddr,
    /// The double's behaviour: delays, chunks, faults, API key.
    #[command(flatten)]
    pub config: barrage_mock::MockConfig,
}

/// `barrage validate`'s flags.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Scenario file to check.
    #[arg(short = 'f', long = "scenario")]
    pub scenario: PathBuf,
}

/// `barrage report`'s flags.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A saved result (a file written by --json) to render again: the console report,
    /// and with --html / --csv those files. The tables are recomputed from the merged
    /// histograms the file carries.
    #[arg(
        value_name = "RUN.json",
        required_unless_present = "compare",
        conflicts_with = "compare"
    )]
    pub file: Option<PathBuf>,
    /// Write the saved result as a self-contained HTML report.
    #[arg(long, value_name = "FILE", requires = "file")]
    pub html: Option<PathBuf>,
    /// Write the saved result as Locust's CSV files (all but PREFIX_stats_history.csv,
    /// which only a live run writes).
    #[arg(long, value_name = "PREFIX", requires = "file")]
    pub csv: Option<PathBuf>,
    /// Compare two reports (files written by --json): the baseline, then the new run.
    /// Rows are matched by method and name; the aggregated row is compared too.
    #[arg(long, num_args = 2, value_names = ["BASE", "NEW"], action = clap::ArgAction::Set)]
    pub compare: Vec<PathBuf>,
    /// A regression: a latency percentile (response time, TTFE) up, or req/s (business
    /// events/s) down, by more than this many percent. Latencies under 1 ms must also
    /// move by more than 1 ms.
    #[arg(long, value_name = "PCT", default_value_t = crate::report::compare::DEFAULT_TOLERANCE_PCT,
          value_parser = crate::report::compare::parse_tolerance)]
    pub tolerance: f64,
    /// A regression: the failure ratio up by more than this many percentage points.
    #[arg(long, value_name = "PP", default_value_t = crate::report::compare::DEFAULT_TOLERANCE_ERRORS_PP,
          value_parser = crate::report::compare::parse_tolerance)]
    pub tolerance_errors: f64,
    /// Write the comparison as JSON (rows with figure, base, new, change, verdict).
    #[arg(long, value_name = "FILE", requires = "compare")]
    pub json: Option<PathBuf>,
}
