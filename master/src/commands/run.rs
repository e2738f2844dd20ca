//! `barrage run`: a standalone run, a master plus N local worker processes.

use std::time::Duration;

use crate::cli::RunArgs;
use crate::setup::{MasterSetup, env_lookup, load_scenario};

use super::local_workers::{default_workers, run_local};
use super::worker::source_addresses;

/// Runs `barrage run`; the exit code is the run's.
pub(super) async fn command(args: RunArgs) -> anyhow::Result<u8> {
    let scenario = load_scenario(&args.load.scenario, &env_lookup)?;
    let workers = args.workers.unwrap_or_else(default_workers).max(1);
    if let Some(list) = &args.source_addresses {
        // Checked here, once: a child that refused the list would leave the run
        // waiting for a worker that never joins.
        source_addresses(list)?;
    }
    let setup = MasterSetup::resolve(&args.load, scenario, workers, Some(Duration::from_secs(30)))?;
    Ok(run_local(setup, workers, args.source_addresses.as_deref())
        .await?
        .exit_code)
}
