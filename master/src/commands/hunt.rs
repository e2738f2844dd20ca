//! `barrage hunt`: the breaking-point search, on local worker processes or, with
//! `--expect-workers`, on remote ones joining the worker port. The search itself is
//! [`crate::hunt`]; its settings are lowered by [`crate::setup::hunt_setup`].

use crate::cli::HuntArgs;
use crate::setup::{env_lookup, hunt_setup, load_scenario};

use super::local_workers::{default_workers, run_local};
use super::master::{WorkerPort, listen_and_run};

/// Runs `barrage hunt`; the exit code is the run's.
pub(super) async fn command(args: HuntArgs) -> anyhow::Result<u8> {
    let scenario = load_scenario(&args.load.scenario, &env_lookup)?;
    let local = args.expect_workers.is_none();
    let workers = args
        .expect_workers
        .or(args.workers)
        .unwrap_or_else(default_workers)
        .max(1);
    let setup = hunt_setup(&args, scenario, workers)?;
    if local {
        return Ok(run_local(setup, workers, None).await?.exit_code);
    }
    let at = WorkerPort {
        host: args.master_bind_host.as_deref(),
        port: args.master_bind_port,
        allow_unauthenticated: args.allow_unauthenticated_workers,
    };
    listen_and_run(at, setup).await
}
