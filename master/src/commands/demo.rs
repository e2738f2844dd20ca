//! `barrage demo`: a whole cluster on loopback against the built-in dify-api double (a
//! mock target in this process, a master, local worker processes), then the mock's
//! ground truth next to what Barrage reported.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use barrage_common::scenario;

use crate::cli::{DemoArgs, LoadArgs};
use crate::exit::Failure;
use crate::setup::{MasterSetup, env_lookup};

use super::local_workers::run_local;

/// The example scenario the demo runs, compiled in so `barrage demo` works anywhere.
const DEMO_SCENARIO: &str = include_str!("../../../examples/dify-workflow.toml");
/// The API key the demo's mock target accepts and its scenario sends.
const DEMO_KEY: &str = "app-barrage-demo";

/// Runs `barrage demo`; the exit code is the run's.
pub(super) async fn command(args: DemoArgs) -> anyhow::Result<u8> {
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
    let outcome = run_local(setup, args.workers.max(1), None).await?;
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
