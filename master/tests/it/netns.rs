//! Real networks between `barrage` processes: each in its own Linux network namespace,
//! linked by veth pairs, as on separate machines. Needs root and namespaces with veth
//! pairs; anywhere else each test passes with a visible `SKIPPED netns <test>: <what is
//! missing>` on stderr.
//!
//! A partition between a master and a worker:
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
//!
//! A cluster spread over four hosts, as the Helm chart's job mode or
//! deploy/docker-compose.yml runs one: see
//! [`a_cluster_across_namespaces_reports_exactly_what_the_target_served`].

use std::fs::File;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use barrage_mock::{GroundTruth, MockState};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::support::*;

/// Fixed: nothing else listens in a namespace we just created.
pub(super) const MASTER_PORT: u16 = 5557;
const MASTER_TIMEOUT: Duration = Duration::from_secs(3);
const LIVENESS: &str = "2s";
/// Beyond the master timeout: the worker's 50 ms check tick, aborting its streams, our
/// own 50 ms polling, and a machine busy with other builds.
const STOP_SLACK: Duration = Duration::from_millis(1500);

/// Written to stderr itself, not with `eprintln!`, which the test harness captures
/// from passing tests: the notice shows in a plain `cargo test` too.
pub(super) fn skip(test: &str, missing: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED netns {test}: {missing}");
}

/// Runs a command to completion; on failure, says which command and why.
pub(super) fn sh(args: &[&str]) -> Result<(), String> {
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

pub(super) fn effective_uid() -> Option<u32> {
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

/// Whether `ip netns exec` runs `timeout` and `bash` (what [`connects`] needs) in `ns`.
pub(super) fn can_exec(ns: &str) -> Result<(), String> {
    sh(&["ip", "netns", "exec", ns, "timeout", "2", "bash", "-c", "true"])
        .map_err(|e| format!("`ip netns exec` with timeout and bash: {e}"))
}

/// Runs `ip [-n NS] ARGS` (no NS: the root namespace).
fn ip(ns: Option<&str>, args: &[&str]) -> Result<(), String> {
    let mut all = vec!["ip"];
    if let Some(ns) = ns {
        all.extend(["-n", ns]);
    }
    all.extend(args);
    sh(&all)
}

/// One end of a veth pair: its namespace (None: the root namespace), device, address.
struct End {
    ns: Option<String>,
    dev: String,
    addr: String,
}

/// A veth pair: link k joins `10.213.X.(4k+1)` (end a) and `10.213.X.(4k+2)` (end b),
/// a /30 of its own.
struct Link {
    a: End,
    b: End,
}

/// The X of every live [`Net`] in this process: tests run in parallel, and the check
/// against the root namespace's addresses cannot see a Net that has not added its own.
static CLAIMED: Mutex<Vec<u8>> = Mutex::new(Vec::new());

/// The namespaces and veth pairs of one test; dropping it deletes them all (deleting a
/// namespace deletes the veth pairs with an end in it).
pub(super) struct Net {
    /// Tells this test's namespace and device names from another test's.
    tag: char,
    /// 10.213.X.0/24 holds every address: X is one no address in the root namespace uses.
    x: u8,
    namespaces: Vec<String>,
    /// Every device created, by name: those left in the root namespace are deleted by
    /// name (the others went with their namespace, and deleting them fails harmlessly).
    devices: Vec<String>,
    links: u8,
}

impl Net {
    pub(super) fn new(tag: char) -> Result<Net, String> {
        let pid = std::process::id();
        let used = Command::new("ip")
            .args(["-o", "-4", "addr", "show"])
            .output()
            .map_err(|e| format!("`ip` cannot run: {e}"))?;
        let used = String::from_utf8_lossy(&used.stdout).into_owned();
        let mut claimed = CLAIMED.lock().unwrap();
        let x = (0..250)
            .map(|k| ((pid + k) % 250 + 1) as u8)
            .find(|x| !used.contains(&format!(" 10.213.{x}.")) && !claimed.contains(x))
            .ok_or("every 10.213.X.0/24 is in use in the root namespace")?;
        claimed.push(x);
        Ok(Net {
            tag,
            x,
            namespaces: Vec::new(),
            devices: Vec::new(),
            links: 0,
        })
    }

    /// A new namespace with its loopback up; its name.
    pub(super) fn namespace(&mut self, name: &str) -> Result<String, String> {
        let ns = format!("barrage-netns-{}-{}-{name}", std::process::id(), self.tag);
        ip(None, &["netns", "add", &ns])?;
        self.namespaces.push(ns.clone());
        ip(Some(&ns), &["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// A veth pair between namespaces `a` and `b` (None: the root namespace), addressed
    /// and up.
    fn link(&mut self, a: Option<&str>, b: Option<&str>) -> Result<Link, String> {
        let k = self.links;
        self.links += 1;
        let end = |side: char, ns: Option<&str>, host: u8| End {
            ns: ns.map(str::to_string),
            dev: format!("brg{}{}{k}{side}", std::process::id(), self.tag),
            addr: self.addr(4 * k + host),
        };
        let link = Link {
            a: end('a', a, 1),
            b: end('b', b, 2),
        };
        self.devices.push(link.a.dev.clone());
        self.devices.push(link.b.dev.clone());
        ip(
            None,
            &["link", "add", &link.a.dev, "type", "veth", "peer", "name", &link.b.dev],
        )?;
        for end in [&link.a, &link.b] {
            if let Some(ns) = &end.ns {
                ip(None, &["link", "set", &end.dev, "netns", ns])?;
            }
            let cidr = format!("{}/30", end.addr);
            ip(end.ns.as_deref(), &["addr", "add", &cidr, "dev", &end.dev])?;
            ip(end.ns.as_deref(), &["link", "set", &end.dev, "up"])?;
        }
        Ok(link)
    }

    fn addr(&self, host: u8) -> String {
        format!("10.213.{}.{host}", self.x)
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            let _ = ip(None, &["netns", "del", ns]);
        }
        for dev in &self.devices {
            if std::path::Path::new("/sys/class/net").join(dev).exists() {
                let _ = ip(None, &["link", "del", dev]);
            }
        }
        CLAIMED.lock().unwrap().retain(|x| *x != self.x);
    }
}

/// Drops every packet on `link`, both ways (see the file's doc).
fn drop_packets(link: &Link) -> Result<(), String> {
    for (from, to, mac) in [
        (&link.b, &link.a, "02:00:00:00:de:01"),
        (&link.a, &link.b, "02:00:00:00:de:02"),
    ] {
        ip(
            from.ns.as_deref(),
            &[
                "neigh",
                "replace",
                &to.addr,
                "lladdr",
                mac,
                "nud",
                "permanent",
                "dev",
                &from.dev,
            ],
        )?;
    }
    Ok(())
}

/// Bytes a root-namespace device has sent so far.
fn tx_bytes(dev: &str) -> u64 {
    std::fs::read_to_string(format!("/sys/class/net/{dev}/statistics/tx_bytes"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// `barrage` processes in namespaces, each logging to its own file; dropping it kills
/// them all.
pub(super) struct Procs {
    pub(super) dir: tempfile::TempDir,
    children: Vec<(String, Child)>,
}

impl Procs {
    pub(super) fn new() -> Procs {
        Procs {
            dir: tempfile::tempdir().unwrap(),
            children: Vec::new(),
        }
    }

    pub(super) fn spawn(&mut self, name: &str, ns: &str, args: &[&str]) -> &mut Child {
        let log = File::create(self.dir.path().join(format!("{name}.log"))).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", ns, env!("CARGO_BIN_EXE_barrage")])
            .args(args)
            .env("DIFY_API_KEY", KEY)
            // Master and workers on other namespaces: the worker port binds beyond
            // loopback, which needs a token.
            .env("BARRAGE_CLUSTER_TOKEN", "netns-test-token")
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

    /// Waits until the master `name` in `ns` accepts connections on `addr:port`.
    pub(super) async fn wait_listening(&mut self, name: &str, ns: &str, addr: &str, port: u16) {
        let since = Instant::now();
        while !connects(ns, addr, port) {
            let exited = self.child(name).try_wait().unwrap();
            assert!(
                exited.is_none() && since.elapsed() < Duration::from_secs(10),
                "the master is not listening ({exited:?})\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits for `name` to exit by itself within `limit`; its status.
    pub(super) async fn wait_exit(&mut self, name: &str, limit: Duration) -> ExitStatus {
        let since = Instant::now();
        loop {
            if let Some(status) = self.child(name).try_wait().unwrap() {
                return status;
            }
            assert!(
                since.elapsed() < limit,
                "{name} did not exit within {limit:?}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The master's `--json` report, checked against the report schema.
    pub(super) fn report(&self, path: &std::path::Path) -> serde_json::Value {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("no JSON report: {e}\n{}", self.logs()));
        let report: serde_json::Value = serde_json::from_str(&text).unwrap();
        crate::support::assert_schema(&report);
        report
    }

    /// Every process's log, for failure messages.
    pub(super) fn logs(&self) -> String {
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

/// The last moment, watched for the master timeout and 5 s more from `cut_at`, that the
/// mock saw load: a new request or an open stream.
async fn last_load_seen(truth: &MockState, cut_at: Instant) -> Instant {
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
    last_activity
}

/// The master of the partition test exits 3 and its report (`json`) says why: worker
/// "partitioned" was lost after reporting, "witness" was not, and an event says so.
async fn assert_the_partitioned_worker_was_lost(procs: &mut Procs, json: &std::path::Path) {
    let status = procs.wait_exit("master", Duration::from_secs(40)).await;
    // 3: the partitioned worker's last seconds never arrived, so the data is incomplete
    // (and says why), whatever else the run found.
    assert_eq!(status.code(), Some(3), "master exit {status:?}\n{}", procs.logs());
    let report = procs.report(json);
    assert_eq!(
        report["completeness"]["verdict"], "incomplete",
        "{:#}",
        report["completeness"]
    );
    assert!(
        report["completeness"]["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r.as_str().unwrap_or("").contains("worker partitioned was lost")),
        "{:#}",
        report["completeness"]
    );
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
}

/// Cut the link between a master and a worker: the master declares the worker lost
/// and the worker, still able to reach the target, stops its load within its master
/// timeout by the target's own count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_worker_is_lost_and_stops_its_load() {
    const TEST: &str = "partition test";
    if effective_uid() != Some(0) {
        return skip(TEST, "not running as root (network namespaces need it)");
    }
    // A and B, `ctl` between them (.1, .2) and `load` from the root namespace to B (.5, .6).
    let layout = |net: &mut Net| -> Result<_, String> {
        let (a, b) = (net.namespace("a")?, net.namespace("b")?);
        let ctl = net.link(Some(&a), Some(&b))?;
        let load = net.link(None, Some(&b))?;
        can_exec(&b)?;
        Ok((a, b, ctl, load))
    };
    let mut net = match Net::new('p') {
        Ok(net) => net,
        Err(missing) => return skip(TEST, &missing),
    };
    let (a, b, ctl, load) = match layout(&mut net) {
        Ok(layout) => layout,
        Err(missing) => return skip(TEST, &missing),
    };
    let (truth, mock_addr, mock_stop) = match mock_on(&load.a.addr).await {
        Ok(mock) => mock,
        Err(e) => {
            return skip(
                TEST,
                &format!("binding the mock on the veth address {}: {e}", load.a.addr),
            );
        }
    };
    let _mock_stop = mock_stop.drop_guard();
    if !connects(&b, &load.a.addr, mock_addr.port()) {
        return skip(TEST, "no TCP from a namespace to the root namespace over a veth pair");
    }

    let mut procs = Procs::new();
    let json = procs.dir.path().join("report.json");
    let scenario = format!("{}/../examples/dify-workflow.toml", env!("CARGO_MANIFEST_DIR"));
    let master_addr = format!("{}:{MASTER_PORT}", ctl.a.addr);
    let master_timeout = format!("{}s", MASTER_TIMEOUT.as_secs());
    let port = MASTER_PORT.to_string();
    let host = format!("http://{mock_addr}");
    #[rustfmt::skip]
    let master_args = [
        "master", "-f", &scenario, "-H", &host, "-u", "40", "-r", "100", "-t", "20s",
        "--headless", "--only-summary", "--json", json.to_str().unwrap(), "--stop-timeout", "3s",
        "--master-bind-host", &ctl.a.addr, "--master-bind-port", &port,
        "--master-timeout", &master_timeout, "--heartbeat-liveness", LIVENESS,
        "--expect-workers", "2", "--expect-workers-max-wait", "20s",
    ];
    procs.spawn("master", &a, &master_args);
    procs.wait_listening("master", &a, &ctl.a.addr, MASTER_PORT).await;
    if !connects(&b, &ctl.a.addr, MASTER_PORT) {
        return skip(TEST, "no TCP between two namespaces over a veth pair");
    }
    for (name, ns) in [("witness", &a), ("partitioned", &b)] {
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
    if let Err(missing) = drop_packets(&ctl) {
        return skip(TEST, &format!("static neighbour entries to drop packets: {missing}"));
    }
    let cut_at = Instant::now();
    let (b_ns, master_ip) = (b.clone(), ctl.a.addr.clone());
    let still_connects = tokio::task::spawn_blocking(move || connects(&b_ns, &master_ip, MASTER_PORT));

    let last_activity = last_load_seen(&truth, cut_at).await;
    if still_connects.await.unwrap() {
        return skip(TEST, "static neighbour entries do not drop packets on a veth pair here");
    }
    let stopped_after = last_activity - cut_at;
    assert!(
        stopped_after < MASTER_TIMEOUT + STOP_SLACK,
        "the partitioned worker's load went on {stopped_after:?} after the partition (master timeout {MASTER_TIMEOUT:?})\n{}",
        procs.logs()
    );

    assert_the_partitioned_worker_was_lost(&mut procs, &json).await;
    eprintln!(
        "netns partition test: packets dropped by static neighbour entries; the worker's load stopped {stopped_after:?} after the partition (master timeout {MASTER_TIMEOUT:?}); the master declared it lost"
    );
}

/// The multi-host test's report (`json`) counts exactly the requests the mock served
/// (`truth`), without a failure, with both workers' final reports and none lost; the
/// requests reported.
fn assert_the_report_counts_what_the_mock_served(procs: &Procs, json: &std::path::Path, truth: &GroundTruth) -> u64 {
    let report = procs.report(json);
    let reported = report["aggregated"]["requests"].as_u64().unwrap();
    assert!(
        truth.requests >= 6,
        "too little load to judge: {truth:?}\n{}",
        procs.logs()
    );
    assert_eq!(
        reported,
        truth.requests,
        "requests: ours vs the mock's\n{}",
        procs.logs()
    );
    assert_eq!(report["aggregated"]["failures"], 0, "{:#}", report["failures"]);
    let ids: Vec<&str> = report["workers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["final_report"] == true && w["lost"] == false)
        .filter_map(|w| w["id"].as_str())
        .collect();
    assert_eq!(
        ids.len(),
        2,
        "workers with a final report, not lost: {:#}",
        report["workers"]
    );
    reported
}

/// A cluster spread over four hosts, as the Helm chart's job mode or
/// deploy/docker-compose.yml deploys one: the master, two workers and the target each
/// behind their own addresses, the master on all of its interfaces (as in a pod).
///
/// ```text
///  namespace M             namespace W1                   root namespace
///  master  .1 <--ctl1-->  .2   worker w1   .10 <--load1-->  .9  mock (in-process)
///          .5 <--ctl2-->  .6   worker w2   .14 <--load2-->  .13
///                         namespace W2     (route to .9 via .13)
/// ```
///
/// Each worker reaches the mock only through its own link (W2 by a route to .9 over
/// load2). A short run ends by itself: the report counts exactly the requests the mock
/// served, each link carried the answers to its worker, and each worker exits 0 by
/// itself once the master has ended the run (what the chart's worker Job relies on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_across_namespaces_reports_exactly_what_the_target_served() {
    const TEST: &str = "multi-host test";
    if effective_uid() != Some(0) {
        return skip(TEST, "not running as root (network namespaces need it)");
    }
    let layout = |net: &mut Net| -> Result<_, String> {
        let (m, w1, w2) = (net.namespace("m")?, net.namespace("w1")?, net.namespace("w2")?);
        let ctl1 = net.link(Some(&m), Some(&w1))?;
        let ctl2 = net.link(Some(&m), Some(&w2))?;
        let load1 = net.link(None, Some(&w1))?;
        let load2 = net.link(None, Some(&w2))?;
        can_exec(&m)?;
        Ok((m, [w1, w2], [ctl1, ctl2], [load1, load2]))
    };
    let mut net = match Net::new('m') {
        Ok(net) => net,
        Err(missing) => return skip(TEST, &missing),
    };
    let (m, workers, ctl, load) = match layout(&mut net) {
        Ok(layout) => layout,
        Err(missing) => return skip(TEST, &missing),
    };
    let (truth, mock_addr, mock_stop) = match mock_on(&load[0].a.addr).await {
        Ok(mock) => mock,
        Err(e) => {
            return skip(
                TEST,
                &format!("binding the mock on the veth address {}: {e}", load[0].a.addr),
            );
        }
    };
    let _mock_stop = mock_stop.drop_guard();
    if !connects(&workers[0], &load[0].a.addr, mock_addr.port()) {
        return skip(TEST, "no TCP from a namespace to the root namespace over a veth pair");
    }
    // From here on the network is ours to get right: a failure is the test's.
    let mock_ip = format!("{}/32", load[0].a.addr);
    ip(Some(&workers[1]), &["route", "add", &mock_ip, "via", &load[1].a.addr]).unwrap();
    assert!(
        connects(&workers[1], &load[0].a.addr, mock_addr.port()),
        "w2 cannot reach the mock through load2"
    );

    let mut procs = Procs::new();
    let json = procs.dir.path().join("report.json");
    let scenario = format!("{}/../examples/dify-workflow.toml", env!("CARGO_MANIFEST_DIR"));
    let host = format!("http://{mock_addr}");
    let port = MASTER_PORT.to_string();
    // 6 users, 3 a worker, for 3 s: each sends a request at once, then waits 1-3 s
    // between requests (the example's wait).
    #[rustfmt::skip]
    let master_args = [
        "master", "-f", &scenario, "-H", &host, "-u", "6", "-r", "100", "-t", "3s",
        "--headless", "--only-summary", "--json", json.to_str().unwrap(),
        "--master-bind-port", &port, "--expect-workers", "2", "--expect-workers-max-wait", "20s",
    ];
    procs.spawn("master", &m, &master_args);
    procs.wait_listening("master", &m, &ctl[0].a.addr, MASTER_PORT).await;
    let sent_before = load.each_ref().map(|l| tx_bytes(&l.a.dev));
    for (i, (ns, link)) in workers.iter().zip(&ctl).enumerate() {
        let master = format!("{}:{MASTER_PORT}", link.a.addr);
        let id = format!("w{}", i + 1);
        procs.spawn(
            &id,
            ns,
            &["worker", "--master", &master, "--worker-id", &id, "--weight", "1"],
        );
    }

    let status = procs.wait_exit("master", Duration::from_secs(40)).await;
    assert_eq!(status.code(), Some(0), "master exit {status:?}\n{}", procs.logs());
    for id in ["w1", "w2"] {
        let status = procs.wait_exit(id, Duration::from_secs(10)).await;
        assert_eq!(status.code(), Some(0), "{id} exit {status:?}\n{}", procs.logs());
    }
    let truth = truth.ground_truth();
    let reported = assert_the_report_counts_what_the_mock_served(&procs, &json, &truth);
    // The mock's answers went to each worker over that worker's own link: at least one
    // whole streamed answer (over 1 KB) each, far above the links' own chatter.
    let sent: Vec<u64> = load
        .iter()
        .zip(sent_before)
        .map(|(l, before)| tx_bytes(&l.a.dev) - before)
        .collect();
    assert!(
        sent.iter().all(|&bytes| bytes > 1000),
        "bytes from the mock per worker link: {sent:?}"
    );
    eprintln!(
        "netns multi-host test: master, 2 workers and the mock on separate namespaces; {reported} requests reported = {} served; bytes to w1, w2: {sent:?}",
        truth.requests
    );
}
