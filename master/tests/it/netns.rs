//! A real network partition between a master and a worker process: each in its own
//! Linux network namespace, every packet between them dropped. Needs root and
//! namespaces with veth pairs; anywhere else the test passes with a visible
//! `SKIPPED netns partition test: <what is missing>` on stderr.
//!
//! ```text
//!  namespace A                        namespace B                     root namespace
//!  master 10.213.X.1:5557  <--ctl-->  10.213.X.2
//!  worker "witness"                   worker "partitioned"
//!                                     10.213.X.6  <--load-->  10.213.X.5 mock (in-process)
//! ```
//!
//! The partition cuts `ctl` only, so the partitioned worker can still reach the mock:
//! whatever stops its load is the worker's own master timeout. The witness keeps the
//! run going once the other worker is lost (with no worker left the master exits 3
//! without a report). A has no route to the mock, so every request the witness makes
//! fails at once and every request the mock counts is the partitioned worker's: the
//! mock's ground truth says when that worker stopped.
//!
//! Packets are dropped with static neighbour entries (`ip neigh replace ... nud
//! permanent`) naming a MAC address no interface has, on both ends of `ctl`: frames
//! leave, the peer discards them as not addressed to it, and TCP sees silence, as
//! behind a firewall's DROP. It needs nothing but `ip`, where iptables/nft may be
//! missing and `tc netem` needs a kernel module (gVisor has neither); `ip link set
//! down` would take the link away rather than drop packets on it.

use std::fs::File;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use barrage_mock::MockState;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::support::*;

/// Fixed: nothing else listens in a namespace we just created.
const MASTER_PORT: u16 = 5557;
const MASTER_TIMEOUT: Duration = Duration::from_secs(3);
const LIVENESS: &str = "2s";
/// Beyond the master timeout: the worker's 50 ms check tick, aborting its streams, our
/// own 50 ms polling, and a machine busy with other builds.
const STOP_SLACK: Duration = Duration::from_millis(1500);

/// Written to stderr itself, not with `eprintln!`, which the test harness captures
/// from passing tests: the notice shows in a plain `cargo test` too.
fn skip(missing: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED netns partition test: {missing}");
}

/// Runs a command to completion; on failure, says which command and why.
fn sh(args: &[&str]) -> Result<(), String> {
    let line = args.join(" ");
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("`{line}` cannot run: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{line}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uids = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    uids.split_whitespace().nth(1)?.parse().ok()
}

/// Whether a TCP connection from namespace `ns` to `addr:port` opens within 2 s.
fn connects(ns: &str, addr: &str, port: u16) -> bool {
    Command::new("ip")
        .args(["netns", "exec", ns, "timeout", "2", "bash", "-c"])
        .arg(format!("exec 3<>/dev/tcp/{addr}/{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The two namespaces and two veth pairs of the layout above; dropping it deletes
/// them all (deleting a namespace deletes the veth pairs with an end in it).
struct Net {
    a: String,
    b: String,
    /// 10.213.X.0/28 holds every address: X is one no address in the root namespace uses.
    x: u8,
    ctl_a: String,
    ctl_b: String,
    load_root: String,
}

impl Net {
    fn create() -> Result<Net, String> {
        let pid = std::process::id();
        let used = Command::new("ip")
            .args(["-o", "-4", "addr", "show"])
            .output()
            .map_err(|e| format!("`ip` cannot run: {e}"))?;
        let used = String::from_utf8_lossy(&used.stdout).into_owned();
        let x = (0..250)
            .map(|k| ((pid + k) % 250 + 1) as u8)
            .find(|x| !used.contains(&format!(" 10.213.{x}.")))
            .ok_or("every 10.213.X.0/24 is in use in the root namespace")?;
        let net = Net {
            a: format!("barrage-netns-{pid}-a"),
            b: format!("barrage-netns-{pid}-b"),
            x,
            ctl_a: format!("brg{pid}ca"),
            ctl_b: format!("brg{pid}cb"),
            load_root: format!("brg{pid}lr"),
        };
        let load_b = format!("brg{pid}lb");
        let (a, b) = (net.a.as_str(), net.b.as_str());
        let cidr = |host: u8| format!("{}/30", net.addr(host));
        sh(&["ip", "netns", "add", a])?;
        sh(&["ip", "netns", "add", b])?;
        sh(&[
            "ip", "link", "add", &net.ctl_a, "type", "veth", "peer", "name", &net.ctl_b,
        ])?;
        sh(&["ip", "link", "set", &net.ctl_a, "netns", a])?;
        sh(&["ip", "link", "set", &net.ctl_b, "netns", b])?;
        sh(&[
            "ip",
            "link",
            "add",
            &net.load_root,
            "type",
            "veth",
            "peer",
            "name",
            &load_b,
        ])?;
        sh(&["ip", "link", "set", &load_b, "netns", b])?;
        sh(&["ip", "-n", a, "addr", "add", &cidr(1), "dev", &net.ctl_a])?;
        sh(&["ip", "-n", b, "addr", "add", &cidr(2), "dev", &net.ctl_b])?;
        sh(&["ip", "addr", "add", &cidr(5), "dev", &net.load_root])?;
        sh(&["ip", "-n", b, "addr", "add", &cidr(6), "dev", &load_b])?;
        for (ns, dev) in [
            (a, "lo"),
            (a, net.ctl_a.as_str()),
            (b, "lo"),
            (b, &net.ctl_b),
            (b, &load_b),
        ] {
            sh(&["ip", "-n", ns, "link", "set", dev, "up"])?;
        }
        sh(&["ip", "link", "set", &net.load_root, "up"])?;
        Ok(net)
    }

    fn addr(&self, host: u8) -> String {
        format!("10.213.{}.{host}", self.x)
    }

    /// Drops every packet on `ctl`, both ways (see the file's doc).
    fn partition(&self) -> Result<(), String> {
        let (a_addr, b_addr) = (self.addr(1), self.addr(2));
        sh(&[
            "ip",
            "-n",
            &self.b,
            "neigh",
            "replace",
            &a_addr,
            "lladdr",
            "02:00:00:00:de:01",
            "nud",
            "permanent",
            "dev",
            &self.ctl_b,
        ])?;
        sh(&[
            "ip",
            "-n",
            &self.a,
            "neigh",
            "replace",
            &b_addr,
            "lladdr",
            "02:00:00:00:de:02",
            "nud",
            "permanent",
            "dev",
            &self.ctl_a,
        ])
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = sh(&["ip", "netns", "del", &self.a]);
        let _ = sh(&["ip", "netns", "del", &self.b]);
        let _ = sh(&["ip", "link", "del", &self.load_root]);
    }
}

/// `barrage` processes in namespaces, each logging to its own file; dropping it kills
/// them all.
struct Procs {
    dir: tempfile::TempDir,
    children: Vec<(String, Child)>,
}

impl Procs {
    fn spawn(&mut self, name: &str, ns: &str, args: &[&str]) -> &mut Child {
        let log = File::create(self.dir.path().join(format!("{name}.log"))).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", ns, env!("CARGO_BIN_EXE_barrage")])
            .args(args)
            .env("DIFY_API_KEY", KEY)
            .env_remove("BARRAGE_CLUSTER_TOKEN")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.children.push((name.to_string(), child));
        &mut self.children.last_mut().unwrap().1
    }

    fn child(&mut self, name: &str) -> &mut Child {
        &mut self.children.iter_mut().find(|(n, _)| n == name).unwrap().1
    }

    /// Every process's log, for failure messages.
    fn logs(&self) -> String {
        self.children
            .iter()
            .map(|(name, _)| {
                let text = std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(30).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                format!("--- {name} ---\n{}\n", tail.join("\n"))
            })
            .collect()
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The mock on the root end of `load`, in-process so its ground truth is at hand.
async fn mock_on(addr: &str) -> std::io::Result<(MockState, std::net::SocketAddr, CancellationToken)> {
    let listener = TcpListener::bind((addr, 0)).await?;
    let bound = listener.local_addr()?;
    let state = MockState::new(sse_mock_config(5, 2, 5));
    let stop = CancellationToken::new();
    tokio::spawn(barrage_mock::run(
        state.clone(),
        listener,
        stop.clone().cancelled_owned(),
    ));
    Ok((state, bound, stop))
}

/// Cut the link between a master and a worker: the master declares the worker lost
/// and the worker, still able to reach the target, stops its load within its master
/// timeout by the target's own count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_worker_is_lost_and_stops_its_load() {
    if effective_uid() != Some(0) {
        return skip("not running as root (network namespaces need it)");
    }
    let net = match Net::create() {
        Ok(net) => net,
        Err(missing) => return skip(&missing),
    };
    if let Err(missing) = sh(&["ip", "netns", "exec", &net.b, "timeout", "2", "bash", "-c", "true"]) {
        return skip(&format!("`ip netns exec` with timeout and bash: {missing}"));
    }
    let (truth, mock_addr, mock_stop) = match mock_on(&net.addr(5)).await {
        Ok(mock) => mock,
        Err(e) => return skip(&format!("binding the mock on the veth address {}: {e}", net.addr(5))),
    };
    let _mock_stop = mock_stop.drop_guard();
    if !connects(&net.b, &net.addr(5), mock_addr.port()) {
        return skip("no TCP from a namespace to the root namespace over a veth pair");
    }

    let mut procs = Procs {
        dir: tempfile::tempdir().unwrap(),
        children: Vec::new(),
    };
    let json = procs.dir.path().join("report.json");
    let scenario = format!("{}/../examples/dify-workflow.toml", env!("CARGO_MANIFEST_DIR"));
    let master_addr = format!("{}:{MASTER_PORT}", net.addr(1));
    let master_timeout = format!("{}s", MASTER_TIMEOUT.as_secs());
    let port = MASTER_PORT.to_string();
    let host = format!("http://{mock_addr}");
    #[rustfmt::skip]
    let master_args = [
        "master", "-f", &scenario, "-H", &host, "-u", "40", "-r", "100", "-t", "20s",
        "--headless", "--only-summary", "--json", json.to_str().unwrap(), "--stop-timeout", "3s",
        "--master-bind-host", &net.addr(1), "--master-bind-port", &port,
        "--master-timeout", &master_timeout, "--heartbeat-liveness", LIVENESS,
        "--expect-workers", "2", "--expect-workers-max-wait", "20s",
    ];
    procs.spawn("master", &net.a, &master_args);
    let listening = Instant::now();
    while !connects(&net.a, &net.addr(1), MASTER_PORT) {
        let exited = procs.child("master").try_wait().unwrap();
        assert!(
            exited.is_none() && listening.elapsed() < Duration::from_secs(10),
            "the master is not listening ({exited:?})\n{}",
            procs.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !connects(&net.b, &net.addr(1), MASTER_PORT) {
        return skip("no TCP between two namespaces over a veth pair");
    }
    for (name, ns) in [("witness", &net.a), ("partitioned", &net.b)] {
        let worker_args = ["worker", "--master", &master_addr, "--worker-id", name, "--weight", "1"];
        procs.spawn(name, ns, &worker_args);
    }

    // Its 20 users start at once and then send about 10 requests a second: 60 requests
    // is some 4 s of running, so the partition cuts a worker that has reported.
    assert!(
        eventually(Duration::from_secs(20), || truth.ground_truth().requests >= 60).await,
        "the partitioned worker sent too little load before the partition\n{}",
        procs.logs()
    );
    if let Err(missing) = net.partition() {
        return skip(&format!("static neighbour entries to drop packets: {missing}"));
    }
    let cut_at = Instant::now();
    let (b, master_ip) = (net.b.clone(), net.addr(1));
    let still_connects = tokio::task::spawn_blocking(move || connects(&b, &master_ip, MASTER_PORT));

    // The last moment the mock saw the worker's load: a new request or an open stream.
    let mut last_activity = cut_at;
    let mut seen = truth.ground_truth().requests;
    while cut_at.elapsed() < MASTER_TIMEOUT + Duration::from_secs(5) {
        let now = truth.ground_truth();
        if now.requests != seen || now.active_streams > 0 {
            seen = now.requests;
            last_activity = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if still_connects.await.unwrap() {
        return skip("static neighbour entries do not drop packets on a veth pair here");
    }
    let stopped_after = last_activity - cut_at;
    assert!(
        stopped_after < MASTER_TIMEOUT + STOP_SLACK,
        "the partitioned worker's load went on {stopped_after:?} after the partition (master timeout {MASTER_TIMEOUT:?})\n{}",
        procs.logs()
    );

    let ran = Instant::now();
    let status = loop {
        if let Some(status) = procs.child("master").try_wait().unwrap() {
            break status;
        }
        assert!(
            ran.elapsed() < Duration::from_secs(40),
            "the master did not finish\n{}",
            procs.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // 1: the witness's requests all fail (it has no route to the mock), by design.
    assert!(
        matches!(status.code(), Some(0 | 1)),
        "master exit {status:?}\n{}",
        procs.logs()
    );
    let text = std::fs::read_to_string(&json).unwrap_or_else(|e| panic!("no JSON report: {e}\n{}", procs.logs()));
    let report: serde_json::Value = serde_json::from_str(&text).unwrap();
    let schema: serde_json::Value = serde_json::from_str(barrage_master::report::json::SCHEMA).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    assert!(validator.is_valid(&report), "the report does not match its schema");
    let worker = |id: &str| {
        report["workers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["id"] == id)
            .unwrap_or_else(|| panic!("no worker {id} in {:#}", report["workers"]))
            .clone()
    };
    let partitioned = worker("partitioned");
    assert_eq!(partitioned["lost"], true, "{partitioned:#}\n{}", procs.logs());
    assert!(partitioned["reports"].as_u64().unwrap() > 0, "{partitioned:#}");
    assert_eq!(worker("witness")["lost"], false);
    let events: Vec<&str> = report["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e.as_str())
        .collect();
    assert!(
        events.iter().any(|e| e.contains("partitioned") && e.contains("lost")),
        "no loss event: {events:#?}"
    );
    eprintln!(
        "netns partition test: packets dropped by static neighbour entries; the worker's load stopped {stopped_after:?} after the partition (master timeout {MASTER_TIMEOUT:?}); the master declared it lost"
    );
}
