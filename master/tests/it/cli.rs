//! The `barrage` binary as people use it: real processes, real exit codes.

use std::time::Duration;

use crate::support::*;

fn examples() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// `barrage run` with two worker processes: the JSON report matches the mock and the schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_with_worker_processes_matches_ground_truth_and_schema() {
    let mock = mock(sse_mock_config(30, 3, 10)).await;
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("run.json");
    let scenario = examples().join("dify-workflow.toml");
    let host = format!("http://{}", mock.addr);
    let json_arg = json_path.to_str().unwrap().to_string();
    let out = tokio::task::spawn_blocking(move || {
        barrage()
            .args([
                "run",
                "--headless",
                "-f",
                scenario.to_str().unwrap(),
                "-H",
                &host,
                "-u",
                "8",
                "-r",
                "100",
                "-t",
                "3s",
                "--workers",
                "2",
            ])
            .args(["--json", &json_arg, "--only-summary"])
            .env("DIFY_API_KEY", KEY)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}\n{stdout}\n{stderr}", out.status);
    assert!(stdout.contains("TTFE - Time To First Event (ms)"), "{stdout}");
    assert!(
        !stdout.contains(KEY) && !stderr.contains(KEY),
        "the API key leaked into the output"
    );

    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    crate::support::assert_schema(&report);

    let truth = mock.state.ground_truth();
    assert!(truth.requests > 0);
    assert_eq!(report["aggregated"]["requests"].as_u64().unwrap(), truth.requests);
    assert_eq!(report["aggregated"]["events"].as_u64().unwrap(), truth.events_sent);
    assert_eq!(report["aggregated"]["failures"].as_u64().unwrap(), 0);
    assert_eq!(report["workers"].as_array().unwrap().len(), 2);
    let ttfe_p50 = report["ttfe_ms"]["p50"].as_f64().unwrap();
    assert!(
        (30.0..36.0).contains(&ttfe_p50),
        "TTFE p50 {ttfe_p50} vs the mock's 30 ms"
    );
}

/// A bad scenario field: one clear message naming file and field, exit 2, nothing sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_scenario_field_is_named_and_nothing_is_sent() {
    let mock = mock(sse_mock_config(5, 1, 5)).await;
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    let text = std::fs::read_to_string(examples().join("dify-workflow.toml"))
        .unwrap()
        .replace("between(1, 3)", "betwen(1,3)");
    std::fs::write(&bad, text).unwrap();
    let host = format!("http://{}", mock.addr);
    for args in [
        vec!["validate", "-f", bad.to_str().unwrap()],
        vec![
            "run",
            "--headless",
            "-f",
            bad.to_str().unwrap(),
            "-H",
            &host,
            "-t",
            "2s",
            "--workers",
            "1",
        ],
    ] {
        let out = barrage().args(&args).env("DIFY_API_KEY", KEY).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("bad.toml: users[0].wait: \"betwen(1,3)\" is not a wait"),
            "{stderr}"
        );
        assert_eq!(
            stderr.lines().filter(|l| l.starts_with("error:")).count(),
            1,
            "{stderr}"
        );
    }
    assert_eq!(
        mock.state.ground_truth().requests,
        0,
        "a bad scenario must send nothing"
    );
}

/// A missing secret is a scenario error too (exit 2), naming the variable.
#[test]
fn a_missing_secret_is_a_usage_error() {
    let out = barrage()
        .args([
            "validate",
            "-f",
            examples().join("dify-workflow.toml").to_str().unwrap(),
        ])
        .env_remove("DIFY_API_KEY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("environment variable `DIFY_API_KEY` is not set"));
}

/// A bad `--source-addresses` is a usage error (exit 2) before the worker dials any
/// master, naming the entry or the address and why.
#[test]
fn bad_source_addresses_are_usage_errors() {
    for (list, says) in [
        ("127.0.0.2,::1", "mixes IPv4 and IPv6"),
        ("127.0.0.0/8", "at most 4096"),
        ("127.0.0.2,nope", "`nope` is not an IP address"),
        // TEST-NET-1: on no host.
        ("192.0.2.1", "cannot bind to source address 192.0.2.1"),
    ] {
        let out = barrage()
            .args(["worker", "--master", "127.0.0.1:1", "--give-up-after", "1s"])
            .args(["--source-addresses", list])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{list}: {stderr}");
        assert!(
            stderr.contains("--source-addresses") && stderr.contains(says),
            "{list}: {stderr}"
        );
    }
    // `barrage run` checks the list once, before it starts a worker that would refuse it.
    let scenario = examples().join("dify-workflow.toml");
    let out = barrage()
        .args([
            "run",
            "--headless",
            "-f",
            scenario.to_str().unwrap(),
            "-H",
            "http://127.0.0.1:1",
        ])
        .args(["-t", "1s", "--workers", "1", "--source-addresses", "192.0.2.1"])
        .env("DIFY_API_KEY", KEY)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot bind to source address 192.0.2.1"), "{stderr}");
}

/// `barrage run --source-addresses`: the local workers' connections come from the
/// listed loopback aliases, by a target written here that notes each connection's
/// source IP; each worker's JSON row names 2 source addresses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_binds_local_workers_to_the_source_addresses() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let peers = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let noted = peers.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, peer)) = listener.accept().await {
            noted.lock().unwrap().push(peer.ip().to_string());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                // One request per read is enough here: the users wait between requests.
                while matches!(tcp.read(&mut buf).await, Ok(n) if n > 0) {
                    let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                    if tcp.write_all(answer).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let (scenario, json) = (dir.path().join("s.toml"), dir.path().join("run.json"));
    std::fs::write(
        &scenario,
        "[[users]]\nname = \"U\"\nwait = \"constant(0.2)\"\n[[users.tasks]]\nname = \"ok\"\nmethod = \"GET\"\npath = \"/\"\nconnection = \"per-request\"\n",
    )
    .unwrap();
    let (host, scenario, json_arg) = (
        format!("http://{addr}"),
        scenario.to_str().unwrap().to_string(),
        json.to_str().unwrap().to_string(),
    );
    let out = tokio::task::spawn_blocking(move || {
        #[rustfmt::skip]
        let args = [
            "run", "--headless", "--only-summary", "-f", &scenario, "-H", &host, "-u", "4", "-r", "100",
            "-t", "2s", "--workers", "2", "--json", &json_arg,
            "--source-addresses", "127.0.0.6,127.0.0.7",
        ];
        barrage().args(args).output().unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_schema(&report);
    let peers = peers.lock().unwrap().clone();
    let ips: std::collections::BTreeSet<&str> = peers.iter().map(String::as_str).collect();
    assert_eq!(ips, ["127.0.0.6", "127.0.0.7"].into(), "{peers:?}");
    assert_eq!(
        report["connections"]["connections_opened"].as_u64(),
        Some(peers.len() as u64),
        "connections: ours vs the target's"
    );
    for w in report["workers"].as_array().unwrap() {
        assert_eq!(w["source_addresses"], 2, "{w:#}");
    }
}

/// Kill the master process: the worker stops its load within its master timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_stops_its_load_when_the_master_dies() {
    let mock = mock(sse_mock_config(5, 2, 5)).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut master = barrage()
        .args(["master", "-f", examples().join("dify-workflow.toml").to_str().unwrap()])
        .args([
            "-H",
            &format!("http://{}", mock.addr),
            "-u",
            "4",
            "-r",
            "100",
            "-t",
            "60s",
            "--headless",
        ])
        .args([
            "--master-bind-host",
            "127.0.0.1",
            "--master-bind-port",
            &port.to_string(),
        ])
        .args([
            "--master-timeout",
            "2s",
            "--expect-workers",
            "1",
            "--expect-workers-max-wait",
            "20s",
        ])
        .env("DIFY_API_KEY", KEY)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let w = worker(format!("127.0.0.1:{port}").parse().unwrap(), "orphan");
    let loaded = eventually(Duration::from_secs(15), || mock.state.ground_truth().requests > 20).await;
    master.kill().unwrap();
    let _ = master.wait();
    assert!(loaded, "the worker never produced load");
    let killed_at = std::time::Instant::now();
    // Within the 2 s master timeout (+ one housekeeping tick and in-flight requests).
    let quiet = eventually(Duration::from_secs(6), || {
        let before = mock.state.ground_truth().requests;
        std::thread::sleep(Duration::from_millis(300));
        mock.state.ground_truth().requests == before && mock.state.ground_truth().active_streams == 0
    })
    .await;
    assert!(quiet, "load continued after the master died");
    assert!(
        killed_at.elapsed() < Duration::from_secs(5),
        "stopped only after {:?}",
        killed_at.elapsed()
    );
    w.abort();
}

/// Every shipped example validates (with its secrets provided) and prints no secret.
#[test]
fn every_example_validates_without_printing_secrets() {
    let mut checked = 0;
    for entry in std::fs::read_dir(examples()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let out = barrage()
            .args(["validate", "-f", path.to_str().unwrap()])
            .envs([
                ("DIFY_API_KEY", "canary-workflow-key"),
                ("DIFY_CHAT_KEY", "canary-chat-key"),
                ("DIFY_KEY_FREE", "canary-free"),
                ("DIFY_KEY_PRO", "canary-pro"),
                ("DIFY_KEY_TEAM", "canary-team"),
                ("PROMPT_API_KEY", "canary-prompt-high"),
                ("PROMPT_RATE_LIMIT_KEY", "canary-prompt-low"),
                ("ORCHESTRATOR_USER", "canary-orchestrator-user"),
                ("ORCHESTRATOR_PASSWORD", "canary-orchestrator-password"),
                ("EVENTS_KEY_FREE", "canary-events-free"),
                ("EVENTS_KEY_PRO_1", "canary-events-pro-1"),
                ("EVENTS_KEY_PRO_2", "canary-events-pro-2"),
                ("EVENTS_KEY_ENTERPRISE", "canary-events-enterprise"),
            ])
            .output()
            .unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{}: {all}", path.display());
        assert!(!all.contains("canary"), "{} printed a secret:\n{all}", path.display());
        checked += 1;
    }
    assert!(checked >= 6, "expected the shipped examples, found {checked}");
}
