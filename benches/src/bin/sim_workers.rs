//! `sim-workers`: what merging reports from many workers costs the Barrage master.
//!
//! Starts the real master as a child process and joins it with N fake workers that
//! speak the real protocol and send realistic per-second reports but no load, then
//! prints the master's CPU and memory, how fast its final report is ready, and whether
//! its totals equal what the fake workers sent. See `sim-workers --help`.

// A crate root's modules resolve beside it (src/bin/); these live in sim_workers/.
#[path = "sim_workers/cli.rs"]
mod cli;
#[path = "sim_workers/master.rs"]
mod master;
#[path = "sim_workers/procfs.rs"]
mod procfs;
#[path = "sim_workers/reports.rs"]
mod reports;
#[path = "sim_workers/run.rs"]
mod run;
#[path = "sim_workers/summary.rs"]
mod summary;
#[path = "sim_workers/worker.rs"]
mod worker;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads as usize)
        .enable_all()
        .build();
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run::run(&args)) {
        Ok(observed) if summary::print(&args, &observed) => ExitCode::SUCCESS,
        Ok(_) => {
            eprintln!("error: the run was incomplete or the totals differ (see above)");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
