//! Shared set-up: a mock target, a scenario, a master, in-process workers, the
//! `barrage` binary as a command and free loopback ports. Harnesses with a concern of
//! their own live beside it: [`proxy`] (a TCP proxy to cut or freeze), [`tools`]
//! (Debian packages some tests install) and [`browser`] (headless Chromium).

pub(crate) mod browser;
pub(crate) mod proxy;
pub(crate) mod tools;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use barrage_master::cli::LoadArgs;
use barrage_master::cluster::Cluster;
use barrage_master::serve::Outcome;
use barrage_master::setup::MasterSetup;
use barrage_mock::{MockConfig, MockState};
use barrage_proto::v1;
use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;

pub(crate) const KEY: &str = "app-test-key";

pub(crate) struct Mock {
    pub state: MockState,
    pub addr: SocketAddr,
    stop: CancellationToken,
}

impl Drop for Mock {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub(crate) async fn mock(cfg: MockConfig) -> Mock {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = MockState::new(cfg);
    let stop = CancellationToken::new();
    tokio::spawn(barrage_mock::run(
        state.clone(),
        listener,
        stop.clone().cancelled_owned(),
    ));
    Mock { state, addr, stop }
}

/// Runs `setup` to its end with one in-process worker; the final report.
pub(crate) async fn run_with_one_worker(setup: MasterSetup) -> barrage_master::report::FinalReport {
    let m = master(setup).await;
    let w = worker(m.addr, "w");
    let report = m.run.await.unwrap().unwrap().report;
    let _ = w.await;
    report
}

/// Serves `app` on a free loopback port for the rest of the test; returns the address.
pub(crate) async fn serve(app: axum::Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

pub(crate) fn sse_mock_config(first_event_ms: u64, chunks: u32, interval_ms: u64) -> MockConfig {
    MockConfig {
        first_event_delay: Duration::from_millis(first_event_ms),
        chunks,
        chunk_interval: Duration::from_millis(interval_ms),
        api_key: Some(KEY.into()),
        ..MockConfig::default()
    }
}

/// A workflow scenario like examples/dify-workflow.toml with a chosen wait.
pub(crate) fn workflow_scenario(wait: &str) -> String {
    format!(
        r#"
[data.question]
values = ["one", "two", "three"]
[[users]]
name = "Workflow"
weight = 3
wait = "{wait}"
[[users.tasks]]
name = "/v1/workflows/run"
method = "POST"
path = "/v1/workflows/run"
kind = "sse"
terminal_event = "workflow_finished"
headers = {{ Authorization = "Bearer ${{DIFY_API_KEY}}" }}
body = '{{"inputs": {{"query": "{{{{question}}}}"}}, "response_mode": "streaming", "user": "{{{{user}}}}"}}'
[[users]]
name = "Chat"
weight = 1
wait = "{wait}"
[[users.tasks]]
name = "/v1/chat-messages (blocking)"
method = "POST"
path = "/v1/chat-messages"
headers = {{ Authorization = "Bearer ${{DIFY_API_KEY}}" }}
body = '{{"inputs": {{}}, "query": "{{{{question}}}}", "response_mode": "blocking", "user": "{{{{user}}}}"}}'
"#
    )
}

pub(crate) fn env(name: &str) -> Option<String> {
    (name == "DIFY_API_KEY").then(|| KEY.to_string())
}

pub(crate) fn load_args(host: SocketAddr, users: u32, rate: f64, run_time: Duration) -> LoadArgs {
    LoadArgs {
        host: Some(format!("http://{host}")),
        users: Some(users),
        spawn_rate: Some(rate),
        run_time: Some(run_time),
        headless: true,
        web_port: 0,
        only_summary: true,
        ..LoadArgs::defaults(std::path::Path::new("test.toml")).unwrap()
    }
}

pub(crate) fn setup(scenario_text: &str, load: &LoadArgs, workers: u32) -> MasterSetup {
    setup_with_env(scenario_text, load, workers, &env)
}

/// [`setup`] with the scenario's `${NAME}` variables read from `env`.
pub(crate) fn setup_with_env(
    scenario_text: &str,
    load: &LoadArgs,
    workers: u32,
    env: &dyn Fn(&str) -> Option<String>,
) -> MasterSetup {
    let scenario =
        barrage_common::scenario::parse_str(scenario_text, config::FileFormat::Toml, "test.toml", env).unwrap();
    let mut s = MasterSetup::resolve(load, scenario, workers, Some(Duration::from_secs(20))).unwrap();
    s.print_report = false;
    s
}

/// A master serving on 127.0.0.1:0, running in the background.
pub(crate) struct Master {
    pub addr: SocketAddr,
    pub cluster: Arc<Cluster>,
    pub run: tokio::task::JoinHandle<anyhow::Result<Outcome>>,
}

pub(crate) async fn master(setup: MasterSetup) -> Master {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cluster = barrage_master::serve::new_cluster(&setup);
    let run = tokio::spawn(barrage_master::serve::serve_cluster(
        cluster.clone(),
        setup,
        listener,
        std::future::pending(),
    ));
    Master { addr, cluster, run }
}

/// An in-process worker, running until its run ends.
pub(crate) type WorkerTask = tokio::task::JoinHandle<barrage_worker::Result<barrage_worker::Exit>>;

/// An in-process worker joining `master`; it runs until the run ends.
pub(crate) fn worker(master: SocketAddr, id: &str) -> WorkerTask {
    let mut cfg = barrage_worker::WorkerConfig::new(master.to_string());
    cfg.worker_id = id.to_string();
    cfg.give_up_after = Some(Duration::from_secs(30));
    tokio::spawn(barrage_worker::run(cfg, std::future::pending()))
}

/// The users a worker last said it runs (None: not known to the master).
pub(crate) fn users_of(cluster: &Cluster, id: &str) -> Option<u32> {
    cluster.registry().worker(id).map(|w| w.users())
}

/// How many reports of a worker the master has merged.
pub(crate) fn reports_of(cluster: &Cluster, id: &str) -> u64 {
    cluster.aggregator().workers.get(id).map_or(0, |p| p.reports)
}

/// Polls `check` every 20 ms until it holds or `limit` passes.
pub(crate) async fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check()
}

/// A free loopback address, for a server a test starts itself (the web API).
pub(crate) fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A free loopback port, for a `barrage` process a test starts on 127.0.0.1.
pub(crate) fn free_port() -> u16 {
    free_addr().port()
}

/// The `barrage` binary built for this test run, as a command. Flags read `BARRAGE_*`
/// variables (`BARRAGE_RUN_USERS`, ...), so none is passed on: a test does not depend on
/// the environment the suite runs in, and sets the ones it means.
pub(crate) fn barrage() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_barrage"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("BARRAGE_") {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// One HTTP/1.1 request over a fresh connection: `headers` are extra header lines
/// (each ending in CRLF). Returns (status, head in lower case, body).
pub(crate) async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\n{headers}content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    (status, head.to_ascii_lowercase(), body.to_string())
}

/// The web API's token header line, when there is a token.
pub(crate) fn token_header(token: Option<&str>) -> String {
    token.map(|t| format!("x-barrage-token: {t}\r\n")).unwrap_or_default()
}

/// Turns on the web API of `s` on a free loopback port with this token; its address.
pub(crate) fn with_web(s: &mut MasterSetup, token: &str, auth_all: bool) -> SocketAddr {
    let web = free_addr();
    s.web = Some((
        web,
        barrage_master::web::WebConfig {
            token: token.into(),
            auth_all,
        },
    ));
    web
}

/// A running workflow test against `target` with its web API on (this token), one
/// worker in, returned once requests flow: the master, its web address, the worker.
pub(crate) async fn web_run(
    target: SocketAddr,
    users: u32,
    run_time: Duration,
    token: &str,
) -> (Master, SocketAddr, WorkerTask) {
    let load = load_args(target, users, 100.0, run_time);
    let mut s = setup(&workflow_scenario("constant(0.05)"), &load, 1);
    let web = with_web(&mut s, token, false);
    let m = master(s).await;
    let w = worker(m.addr, "w");
    assert!(
        eventually(Duration::from_secs(10), || m
            .cluster
            .aggregator()
            .aggregated()
            .counts
            .requests
            > 0)
        .await
    );
    (m, web, w)
}

/// A master that waits for a start from its web UI (`--start-from-ui`, this token),
/// its flags offering 9 users against `target`, and one worker joining it: the
/// master, its web address and the worker.
pub(crate) async fn ui_master(target: SocketAddr, token: &str) -> (Master, SocketAddr, WorkerTask) {
    let mut load = load_args(target, 9, 100.0, Duration::from_secs(600));
    load.start_from_ui = true;
    let mut s = setup(&workflow_scenario("constant(0.05)"), &load, 1);
    let web = with_web(&mut s, token, false);
    let m = master(s).await;
    let w = worker(m.addr, "w");
    assert!(eventually(Duration::from_secs(10), || std::net::TcpStream::connect(web).is_ok()).await);
    (m, web, w)
}

/// A peer that joins properly and sends what it likes, reading the master's answers.
pub(crate) struct FakeWorker {
    pub id: String,
    pub tx: tokio::sync::mpsc::Sender<v1::WorkerMessage>,
    pub replies: tonic::Streaming<v1::MasterMessage>,
    pub epoch: u64,
}

impl FakeWorker {
    /// Joins `master` as worker `id`, past its Welcome.
    pub(crate) async fn join(master: std::net::SocketAddr, id: &str) -> FakeWorker {
        let mut client = v1::coordinator_client::CoordinatorClient::connect(format!("http://{master}"))
            .await
            .unwrap();
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tx.send(v1::WorkerMessage {
            kind: Some(v1::worker_message::Kind::Hello(v1::Hello {
                protocol_version: barrage_proto::PROTOCOL_VERSION,
                worker_id: id.into(),
                cpu_cores: 1,
                instance: 7,
                ..Default::default()
            })),
        })
        .await
        .unwrap();
        let mut replies = client
            .join(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        let epoch = match replies.next().await.unwrap().unwrap().kind {
            Some(v1::master_message::Kind::Welcome(w)) => w.epoch,
            other => panic!("{other:?}"),
        };
        FakeWorker {
            id: id.into(),
            tx,
            replies,
            epoch,
        }
    }

    /// Sends `r` as this worker's report of this epoch.
    pub(crate) async fn report(&self, mut r: v1::Report) {
        r.worker_id = self.id.clone();
        r.epoch = self.epoch;
        self.tx
            .send(v1::WorkerMessage {
                kind: Some(v1::worker_message::Kind::Report(r)),
            })
            .await
            .unwrap();
    }

    /// Waits for an Ack of at least `seq` (skipping other messages); false on timeout.
    pub(crate) async fn acked(&mut self, seq: u64) -> bool {
        let wait = async {
            while let Some(Ok(m)) = self.replies.next().await {
                if let Some(v1::master_message::Kind::Ack(a)) = m.kind
                    && a.acked_seq >= seq
                {
                    return true;
                }
            }
            false
        };
        tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .unwrap_or(false)
    }
}

/// Fails with every schema error (and where it is) unless `json` keeps to the
/// committed report schema (`master/schema/report.schema.json`).
pub(crate) fn assert_schema(json: &serde_json::Value) {
    let schema: serde_json::Value = serde_json::from_str(barrage_master::report::json::SCHEMA).unwrap();
    let errors: Vec<String> = jsonschema::validator_for(&schema)
        .unwrap()
        .iter_errors(json)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "report does not match the schema: {errors:#?}");
}
