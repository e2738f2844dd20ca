//! Command-line flags of `sim-workers`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "sim-workers",
    about = "Measure what merging reports from many workers costs the Barrage master",
    long_about = "Starts the real master (`barrage master`) as a child process on loopback and \
joins it with N fake workers: each is one Coordinator.Join stream that follows the real \
worker's protocol (Hello, heartbeats, one Report per second with realistic HDR histograms, \
final report on Stop) but sends no load. Like a real worker, a report carries only the \
endpoints that saw something that second (--active-percent of them, 30 % by default) and \
only their non-empty histograms; it prints the histogram bytes per report. While the run lasts it samples the master's CPU time \
and resident memory from /proc, then prints: workers connected, reports sent and \
acknowledged, the master's steady-state CPU, its peak RSS, how long after the last final \
report the master had its report ready, and whether the report's request total equals what \
the fake workers reported.\n\n\
Example: sim-workers --barrage target/release/barrage --workers 1000 --endpoints 10 --duration 30s"
)]
pub(crate) struct Args {
    /// The `barrage` binary to run as master (build it with
    /// `cargo build --release -p barrage-master`).
    #[arg(long, value_name = "PATH", default_value = "target/release/barrage")]
    pub barrage: PathBuf,
    /// Fake workers to join the master (each one gRPC stream).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub workers: u32,
    /// Endpoints of the scenario (every fifth one is SSE, the rest HTTP); the
    /// master's plan has them all, so it refuses none.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub endpoints: u32,
    /// Share of the endpoints a worker reports in one second, percent. A real worker
    /// sends a delta only for an endpoint that saw something in the interval, and in
    /// it only the histograms that got a value: ten users per worker running weighted
    /// tasks one at a time touch a minority of 50 endpoints in any one second. Each
    /// endpoint of each pre-built report is present with this probability (at least
    /// one per report); 100 sends every endpoint every second, the worst case.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub active_percent: u32,
    /// Run time given to the master (`-t`), e.g. 15s, 1m.
    #[arg(long, default_value = "30s", value_parser = barrage_common::duration::parse)]
    pub duration: Duration,
    /// Worker streams per HTTP/2 connection (a server caps concurrent streams per
    /// connection, hyper at 200 by default).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub streams_per_connection: u32,
    /// Different pre-built report contents the fake workers rotate through.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub templates: u32,
    /// Seed of the report contents (same seed, same figures).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Threads of the simulator's own runtime. One keeps the other cores for the
    /// master, whose CPU is what is measured.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub threads: u32,
    /// Directory for the scenario, the master's log and its JSON report
    /// [default: a new directory under the system temp dir].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Also write the figures as JSON to this file (benches/system.py reads it).
    #[arg(long, value_name = "FILE")]
    pub json_out: Option<PathBuf>,
}

impl Args {
    /// The run ends by this long after it starts, whatever happens (the master is
    /// killed and the exit code is non-zero).
    pub(crate) fn hard_deadline(&self) -> Duration {
        self.duration + Duration::from_secs(120)
    }
}
