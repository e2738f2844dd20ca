//! `barrage master`: coordinate a distributed run on the worker port, under the bind
//! policy of [`crate::auth`]. `hunt` with remote workers serves the same way.

use anyhow::Context;
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::cli::MasterArgs;
use crate::exit::Failure;
use crate::serve::serve_and_run;
use crate::setup::{MasterSetup, env_lookup, load_scenario};
use crate::signals::shutdown_signal;

/// Runs `barrage master`; the exit code is the run's.
pub(super) async fn command(args: MasterArgs) -> anyhow::Result<u8> {
    let scenario = load_scenario(&args.load.scenario, &env_lookup)?;
    let setup = MasterSetup::resolve(&args.load, scenario, args.expect_workers, args.expect_workers_max_wait)?;
    let at = WorkerPort {
        host: args.master_bind_host.as_deref(),
        port: args.master_bind_port,
        allow_unauthenticated: args.allow_unauthenticated_workers,
    };
    listen_and_run(at, setup).await
}

/// Where the worker port listens: `--master-bind-host` under the bind policy
/// ([`crate::auth::bind_policy`]: loopback only unless workers authenticate, by a
/// cluster token or mutual TLS, or the operator allows strangers).
#[derive(Debug, Clone)]
pub(super) struct WorkerPort<'a> {
    /// `--master-bind-host`; None lets the bind policy choose.
    pub(super) host: Option<&'a str>,
    /// `--master-bind-port`.
    pub(super) port: u16,
    /// `--allow-unauthenticated-workers`: strangers may join beyond loopback.
    pub(super) allow_unauthenticated: bool,
}

/// Serves the worker port and runs `setup` there to its end.
pub(super) async fn listen_and_run(at: WorkerPort<'_>, setup: MasterSetup) -> anyhow::Result<u8> {
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
