//! The worker port as a stranger sees it: loopback only unless workers authenticate
//! (a cluster token or mutual TLS) or the operator says strangers may join. And the
//! size of what crosses it: the plan in Welcome up to the master's message limit.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::support::*;

/// `barrage master` on `port` with `args`, without any cluster token in its
/// environment; stderr piped (the log and the warnings).
fn master_cmd(port: u16, args: &[&str]) -> Command {
    let scenario = format!("{}/../examples/dify-workflow.toml", env!("CARGO_MANIFEST_DIR"));
    master_of(&scenario, port, args)
}

/// [`master_cmd`] of the scenario file `scenario`.
fn master_of(scenario: &str, port: u16, args: &[&str]) -> Command {
    let mut cmd = Command::from(barrage());
    cmd.args([
        "master",
        "-f",
        scenario,
        "-H",
        "http://127.0.0.1:9",
        "-u",
        "1",
        "-t",
        "60s",
    ])
    .args([
        "--headless",
        "--expect-workers",
        "1",
        "--expect-workers-max-wait",
        "30s",
    ])
    .args(["--master-bind-port", &port.to_string()])
    .args(args)
    .env("DIFY_API_KEY", KEY)
    .env("RUST_LOG", "info")
    .env_remove("BARRAGE_CLUSTER_TOKEN")
    .env_remove("BARRAGE_CLUSTER_TOKEN_FILE")
    .env_remove("BARRAGE_ALLOW_UNAUTHENTICATED_WORKERS")
    .stdin(std::process::Stdio::null())
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::piped())
    .kill_on_drop(true);
    cmd
}

/// Reads the master's stderr until it says where it listens; returns everything read.
async fn until_listening(child: &mut Child) -> String {
    let stderr = child.stderr.take().expect("stderr piped");
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = String::new();
    let read = async {
        while let Ok(Some(line)) = lines.next_line().await {
            seen.push_str(&line);
            seen.push('\n');
            if line.contains("master listening for workers") {
                return true;
            }
        }
        false
    };
    let found = tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .unwrap_or(false);
    assert!(found, "the master never said it listens:\n{seen}");
    seen
}

/// An address of this machine other than loopback (the one its default route uses),
/// if it has one.
fn non_loopback_local_ip() -> Option<IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    // No packet is sent: connecting a UDP socket only picks the route and source.
    ["192.0.2.1:9", "10.255.255.255:9", "198.51.100.1:9"]
        .iter()
        .find_map(|to| s.connect(to).ok().and_then(|_| s.local_addr().ok()))
        .map(|a| a.ip())
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
}

/// No token, no mutual TLS, no --master-bind-host: the master listens on loopback
/// only, so a peer on the network cannot connect, let alone say Hello and get the plan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_the_worker_port_is_loopback_only() {
    let port = free_port();
    let mut child = master_cmd(port, &[]).spawn().unwrap();
    let log = until_listening(&mut child).await;
    assert!(log.contains(&format!("127.0.0.1:{port}")), "{log}");
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok(),
        "loopback must still reach it (barrage run, local workers)"
    );
    match non_loopback_local_ip() {
        Some(ip) => {
            let stranger = tokio::net::TcpStream::connect(SocketAddr::new(ip, port)).await;
            assert!(stranger.is_err(), "a peer reached the worker port on {ip}:{port}");
        }
        None => eprintln!("no non-loopback address here: checked the bound address only"),
    }
    child.kill().await.unwrap();
}

/// A non-loopback --master-bind-host without a token or mutual TLS is a usage error
/// (exit 2) that names both fixes and the flag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_bind_without_a_token_is_refused() {
    let port = free_port();
    let out = master_cmd(port, &["--master-bind-host", "0.0.0.0"])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for fix in [
        "BARRAGE_CLUSTER_TOKEN",
        "--tls-client-ca",
        "--allow-unauthenticated-workers",
    ] {
        assert!(stderr.contains(fix), "the error does not name {fix}: {stderr}");
    }
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err(),
        "it listened anyway"
    );
}

/// With --allow-unauthenticated-workers (or its BARRAGE_ variable) the master binds
/// every interface and warns; with a token it binds every interface by default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unauthenticated_flag_binds_beyond_loopback_and_warns() {
    let port = free_port();
    let mut child = master_cmd(
        port,
        &["--master-bind-host", "0.0.0.0", "--allow-unauthenticated-workers"],
    )
    .spawn()
    .unwrap();
    let log = until_listening(&mut child).await;
    assert!(log.contains(&format!("0.0.0.0:{port}")), "{log}");
    assert!(
        log.contains("warning:") && log.contains("without a cluster token or mutual TLS"),
        "{log}"
    );
    if let Some(ip) = non_loopback_local_ip() {
        assert!(tokio::net::TcpStream::connect(SocketAddr::new(ip, port)).await.is_ok());
    }
    child.kill().await.unwrap();

    let port = free_port();
    let mut child = master_cmd(port, &[])
        .env("BARRAGE_ALLOW_UNAUTHENTICATED_WORKERS", "true")
        .spawn()
        .unwrap();
    let log = until_listening(&mut child).await;
    assert!(
        log.contains(&format!("0.0.0.0:{port}")) && log.contains("warning:"),
        "{log}"
    );
    child.kill().await.unwrap();

    let port = free_port();
    let mut child = master_cmd(port, &[])
        .env("BARRAGE_CLUSTER_TOKEN", "a-token")
        .spawn()
        .unwrap();
    let log = until_listening(&mut child).await;
    assert!(
        log.contains(&format!("0.0.0.0:{port}")) && !log.contains("warning:"),
        "{log}"
    );
    child.kill().await.unwrap();
}

/// A data pool file of `lines` lines of `width` bytes each (distinct, so nothing folds).
fn pool_file(dir: &std::path::Path, lines: usize, width: usize) -> std::path::PathBuf {
    use std::io::Write;
    let path = dir.join("pool.txt");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    for i in 0..lines {
        writeln!(f, "{i:08}{}", "q".repeat(width - 8)).unwrap();
    }
    f.flush().unwrap();
    path
}

/// A workflow scenario whose `{{question}}` pool is the file `pool`.
fn pool_scenario(pool: &std::path::Path) -> String {
    workflow_scenario("constant(0.2)").replace(
        r#"values = ["one", "two", "three"]"#,
        &format!("file = {:?}", pool.to_str().unwrap()),
    )
}

/// A plan of ~10 MiB (over tonic's 4 MiB default, under the master's 16 MiB) reaches
/// the worker, which then sends exactly what the mock counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_mib_plan_reaches_the_worker() {
    let mock = mock(sse_mock_config(5, 2, 5)).await;
    let dir = tempfile::tempdir().unwrap();
    let pool = pool_file(dir.path(), 10 * 1024, 1024);
    let load = load_args(mock.addr, 2, 100.0, Duration::from_secs(2));
    let setup = setup(&pool_scenario(&pool), &load, 1);
    assert!(setup.plan.to_json().len() > 10 << 20, "the plan is not over 10 MiB");
    let run = tokio::time::timeout(Duration::from_secs(60), run_with_one_worker(setup))
        .await
        .expect("the run ended");
    let truth = mock.state.ground_truth();
    assert!(
        truth.requests > 0,
        "the worker never sent a request: it did not get the plan"
    );
    assert_eq!(run.aggregated.requests, truth.requests);
}

/// A plan over the message limit would reach no worker: `barrage master` refuses it
/// at start (exit 2) and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_over_the_message_limit_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let pool = pool_file(dir.path(), 17 * 1024, 1024);
    let scenario = dir.path().join("big.toml");
    std::fs::write(&scenario, pool_scenario(&pool)).unwrap();
    let port = free_port();
    let out = master_of(scenario.to_str().unwrap(), port, &[]).output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("MiB") && stderr.contains("message limit"), "{stderr}");
}
