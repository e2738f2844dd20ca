//! Serving one run: the coordinator's gRPC port, the controller, the web UI and the
//! metrics endpoint, from start to the final report.

use std::future::Future;

use anyhow::Context;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::info;

use barrage_proto::v1::coordinator_server::CoordinatorServer;

use crate::cluster::{Cluster, Service};
use crate::controller::steering::Steering;
use crate::controller::{self, RunError};
use crate::exit::{EXIT_CLUSTER, EXIT_FAILURES, EXIT_INTERRUPTED, Failure};
use crate::report::{FinalReport, RunSummary, console, json};
use crate::setup::{MAX_MESSAGE, MasterSetup, env_lookup};
use crate::signals::signal;

/// The result of a master run.
#[derive(Debug)]
pub struct Outcome {
    /// The final report, as printed and written.
    pub report: FinalReport,
    /// The process exit code the run earned (0, or a failure's code).
    pub exit_code: u8,
}

/// Serves the coordinator on `listener` and runs the load test to the end.
pub async fn serve_and_run(
    setup: MasterSetup,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<Outcome> {
    let cluster = new_cluster(&setup);
    serve_cluster(cluster, setup, listener, shutdown).await
}

/// The cluster a setup describes (tests create it first to observe the run).
pub fn new_cluster(setup: &MasterSetup) -> Arc<Cluster> {
    let cluster = Cluster::new(&setup.plan, setup.opts.clone());
    if setup.csv.as_ref().is_some_and(|c| c.full_history()) {
        cluster.aggregator().keep_endpoint_seconds();
    }
    if let Some(w) = setup.run.thresholds.longest_window() {
        // Trailing windows read per-second histograms: keep them that long, plus the
        // seconds whose reports are still arriving.
        cluster.aggregator().keep_histograms_for(w.as_secs() as i64 + 5);
    }
    if let Some(h) = &setup.run.hunt
        && let Ok(h) = h.lock()
    {
        // A step is judged on its own seconds, up to a few seconds after it ends.
        cluster
            .aggregator()
            .keep_histograms_for(h.step_time().as_secs() as i64 + 10);
    }
    cluster
}

/// [`serve_and_run`] on a cluster the caller holds.
pub async fn serve_cluster(
    cluster: Arc<Cluster>,
    setup: MasterSetup,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<Outcome> {
    let stop_server = CancellationToken::new();
    let server = spawn_coordinator(&cluster, listener, stop_server.clone())?;
    // The web API (unless headless) steers the controller over these, and gets the
    // final report once written.
    let (steering, steered) = crate::controller::steering::channel();
    let (report_tx, report_rx) = watch::channel(None);
    let web_done = CancellationToken::new();
    let web_quit = CancellationToken::new();
    // The web API ends with this function, however it returns.
    let _web_guard = web_done.clone().drop_guard();
    if let Some((addr, cfg)) = &setup.web {
        let controls = crate::web::Controls {
            steering: steering.clone(),
            report: report_rx,
            quit: web_quit.clone(),
            done: web_done.clone(),
            start_from_ui: setup.run.start_from_ui,
        };
        start_web(&cluster, &setup, *addr, cfg, controls).await?;
    }
    let result = controller::run(cluster.clone(), setup.run.clone(), steered, shutdown).await;
    // The report is built and written before the coordinator stops: every final report
    // is in by now, and stopping the server (a grace period for the last acks, then
    // waiting for the workers' connections to close) took up to 2.2 s that the report
    // waited for.
    let result = result.map(|summary| {
        let report = final_report(&cluster, &setup, &steering, &summary);
        let written = write_outputs(&setup, &report);
        (summary, report, written)
    });
    stop_coordinator(&cluster, server, stop_server).await;
    let (summary, report, written) = result.map_err(|e| {
        let code = match e {
            RunError::Interrupted => EXIT_INTERRUPTED,
            _ => EXIT_CLUSTER,
        };
        anyhow::Error::new(Failure {
            code,
            message: e.to_string(),
        })
    })?;
    written?;
    report_tx.send_replace(Some(Arc::new(report.clone())));
    if setup.run.start_from_ui
        && let Some((addr, _)) = &setup.web
    {
        eprintln!("the run is over; the web UI at http://{addr}/ keeps its downloads until Ctrl-C");
        tokio::select! {
            _ = signal() => {}
            _ = web_quit.cancelled() => {}
        }
    }
    let exit_code = exit_code(&setup, &summary, &report);
    Ok(Outcome { report, exit_code })
}

/// The coordinator's gRPC server on `listener` (TLS when the cluster has it), until
/// `stop` is cancelled.
fn spawn_coordinator(
    cluster: &Arc<Cluster>,
    listener: TcpListener,
    stop: CancellationToken,
) -> Result<JoinHandle<Result<(), tonic::transport::Error>>, Failure> {
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let service = CoordinatorServer::new(Service::new(cluster.clone()))
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &cluster.opts().tls {
        let mut config = tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(&tls.cert_pem, &tls.key_pem));
        if let Some(ca) = &tls.client_ca_pem {
            config = config.client_ca_root(tonic::transport::Certificate::from_pem(ca));
        }
        builder = builder
            .tls_config(config)
            .map_err(|e| Failure::usage(format!("TLS for the worker port: {e}")))?;
    }
    Ok(tokio::spawn(async move {
        builder
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
            .await
    }))
}

/// Binds and serves the web API on `addr`.
async fn start_web(
    cluster: &Arc<Cluster>,
    setup: &MasterSetup,
    addr: std::net::SocketAddr,
    cfg: &crate::web::WebConfig,
    controls: crate::web::Controls,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the web API on {addr}"))?;
    if env_lookup("BARRAGE_WEB_TOKEN").is_none() {
        info!(token = %cfg.token, "web API token for POST calls (set BARRAGE_WEB_TOKEN to choose it)");
    }
    info!(url = %format!("http://{}/api/stats", listener.local_addr()?), "web API listening");
    tokio::spawn(crate::web::serve(
        listener,
        cluster.clone(),
        setup.info.clone(),
        cfg.clone(),
        controls,
    ));
    Ok(())
}

/// Ends the coordinator once the run is over.
async fn stop_coordinator(
    cluster: &Cluster,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
    stop: CancellationToken,
) {
    // Give workers a moment to read their final ack before the server goes away.
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.cancel();
    // Close every worker stream, then give the server a moment to end; it must not
    // outlive the run (a worker on a silent stream would wait for it).
    cluster.registry().close_streams();
    let abort = server.abort_handle();
    if tokio::time::timeout(Duration::from_secs(2), server).await.is_err() {
        abort.abort();
    }
}

/// The final report of the run: the aggregate, the roster, the verdicts.
fn final_report(cluster: &Cluster, setup: &MasterSetup, steering: &Steering, summary: &RunSummary) -> FinalReport {
    let info = steering.run_info(&setup.info);
    let roster = cluster.registry().roster();
    let mut report = FinalReport::build(&cluster.aggregator(), &roster, &info, summary);
    report.thresholds = setup.run.thresholds.verdicts(&cluster.aggregator(), summary.duration);
    report.hunt = setup.run.hunt.as_ref().and_then(|h| h.lock().ok().map(|h| h.report()));
    if let (Some(figures), Some(a)) = (&mut report.arrivals, &summary.arrival) {
        // The schedule as it ran, rate changes (hunt, web API) included.
        let end = setup.run.run_time.map_or(summary.duration, |t| t.min(summary.duration));
        *figures = crate::report::ArrivalFigures::new(a, end, &cluster.aggregator());
    }
    if let Some(at_abort) = &summary.threshold_abort
        && let Some(row) = report.thresholds.iter_mut().find(|r| r.threshold == at_abort.threshold)
    {
        // It failed during the run and stopped it: that verdict stands, whatever the
        // figures of the shortened run say now.
        row.passed = false;
        row.shown = format!("{} (failed during the run: {})", row.shown, at_abort.shown);
    }
    report
}

/// Prints and writes the report where the setup asks.
fn write_outputs(setup: &MasterSetup, report: &FinalReport) -> anyhow::Result<()> {
    if setup.print_report {
        print!("{}", console::render_final(report));
    }
    if let Some(path) = &setup.json {
        json::write(report, path)?;
        info!(path = %path.display(), "JSON report written");
    }
    if let Some(path) = &setup.html {
        crate::report::html::write(&json::to_json(report), path)?;
        info!(path = %path.display(), "HTML report written");
    }
    if let Some(csv) = &setup.csv {
        csv.write_final(report)?;
    }
    Ok(())
}

/// The exit code the run earned, saying why on stderr when it is not 0.
fn exit_code(setup: &MasterSetup, summary: &RunSummary, report: &FinalReport) -> u8 {
    let failed_thresholds: Vec<&str> = report
        .thresholds
        .iter()
        .filter(|t| !t.passed)
        .map(|t| t.threshold.as_str())
        .collect();
    if let Some(why) = &summary.aborted {
        eprintln!("error: {why} (exit code {EXIT_CLUSTER})");
        EXIT_CLUSTER
    } else if !report.completeness.is_complete() {
        // Figures that miss data must not pass a gate, whatever they say.
        eprintln!(
            "error: the run's data is incomplete: {} (exit code {EXIT_CLUSTER})",
            report.completeness.reasons.join("; ")
        );
        EXIT_CLUSTER
    } else if !failed_thresholds.is_empty() {
        eprintln!(
            "thresholds failed: {} (exit code {EXIT_FAILURES})",
            failed_thresholds.join("; ")
        );
        EXIT_FAILURES
    } else if report.aggregated.failures > 0 {
        setup.exit_code_on_error
    } else {
        0
    }
}
