//! Past the port limit (`barrage worker --source-addresses`), inside a network namespace
//! whose `net.ipv4.ip_local_port_range` the test narrows to 200 ports, so 300 streams to
//! one target address already need more than one source address. The target is a few
//! lines of Python run in the namespace: it holds every stream open and writes down
//! each (source IP, port) peer it accepted, which our report is compared with.
//! Needs root and network namespaces, as [`super::netns`]; anywhere else it passes with
//! a visible `SKIPPED netns ...` on stderr.

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::netns::{MASTER_PORT, Net, Procs, can_exec, effective_uid, sh, skip};

/// Ports the namespace's kernel may hand out: fewer than [`STREAMS`].
const PORT_RANGE: (u16, u16) = (40000, 40199);
/// Streams the worker holds open at once: more than one address's ports, fewer than
/// four addresses' ports.
const STREAMS: u64 = 300;
/// The target's port (not in [`PORT_RANGE`]; nothing else listens in a new namespace).
const TARGET_PORT: u16 = 8080;

/// Accepts connections on 127.0.0.1, answers each request with the head of an event
/// stream and one event, and holds it open until the client closes. Every 100 ms it
/// rewrites `out` with what it saw: every peer accepted, and the most open at once.
const TARGET_PY: &str = r#"
import asyncio, json, os, sys
port, out = int(sys.argv[1]), sys.argv[2]
peers, open_now, most = [], set(), 0
async def handle(r, w):
    global most
    peer = w.get_extra_info("peername")[:2]
    peers.append(list(peer)); open_now.add(peer); most = max(most, len(open_now))
    try:
        while True:
            line = await r.readline()
            if not line:
                return
            if line in (b"\r\n", b"\n"):
                break
        w.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\ndata: {\"n\": 1}\n\n")
        await w.drain()
        await r.read()
    except Exception:
        pass
    finally:
        open_now.discard(peer)
        w.close()
async def report():
    while True:
        with open(out + ".tmp", "w") as f:
            json.dump({"peers": peers, "most_open": most, "open": len(open_now)}, f)
        os.replace(out + ".tmp", out)
        await asyncio.sleep(0.1)
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=2048)
    asyncio.create_task(report())
    await server.serve_forever()
asyncio.run(main())
"#;

/// One user class holding one stream: it never ends by itself (no terminal event, the
/// target never closes), so each user holds its connection for the whole run.
const SCENARIO: &str = r#"
[[users]]
name = "Holder"
wait = "constant(0.5)"

[[users.tasks]]
name = "hold"
method = "GET"
path = "/hold"
kind = "sse"
timeout = "60s"
read_timeout = "60s"
"#;

/// What the target saw in one run.
#[derive(Debug)]
struct Seen {
    /// Connections accepted.
    accepted: u64,
    /// Distinct source IPs among them.
    ips: BTreeSet<String>,
    /// The most connections open at once.
    most_open: u64,
}

fn seen(out: &std::path::Path) -> Option<Seen> {
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out).ok()?).ok()?;
    let peers = v["peers"].as_array()?;
    Some(Seen {
        accepted: peers.len() as u64,
        ips: peers.iter().filter_map(|p| p[0].as_str().map(str::to_string)).collect(),
        most_open: v["most_open"].as_u64()?,
    })
}

/// The target, killed when dropped.
struct Target(Child);

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One run in a fresh namespace with the narrow port range: a master and one worker
/// (with `sources`, if any) hold [`STREAMS`] streams to the target for 4 s. Returns the
/// JSON report and what the target saw, or why the machine cannot run it.
async fn run(net: &mut Net, name: &str, sources: Option<&str>) -> Result<(serde_json::Value, Seen, String), String> {
    let ns = net.namespace(name)?;
    can_exec(&ns)?;
    let range = format!("{} {}", PORT_RANGE.0, PORT_RANGE.1);
    sh(&[
        "ip",
        "netns",
        "exec",
        &ns,
        "sysctl",
        "-qw",
        &format!("net.ipv4.ip_local_port_range={range}"),
    ])?;
    let mut procs = Procs::new();
    let dir = procs.dir.path().to_path_buf();
    let (script, out) = (dir.join("target.py"), dir.join("seen.json"));
    std::fs::write(&script, TARGET_PY).unwrap();
    std::fs::write(dir.join("scenario.toml"), SCENARIO).unwrap();
    let target = Command::new("ip")
        .args(["netns", "exec", &ns, "python3"])
        .arg(&script)
        .arg(TARGET_PORT.to_string())
        .arg(&out)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("python3 cannot run: {e}"))?;
    let _target = Target(target);
    let since = Instant::now();
    while seen(&out).is_none() {
        if since.elapsed() > Duration::from_secs(10) {
            return Err("the Python target did not start (python3 with asyncio)".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let json = dir.join("report.json");
    let (scenario, host) = (dir.join("scenario.toml"), format!("http://127.0.0.1:{TARGET_PORT}"));
    let (users, port) = (STREAMS.to_string(), MASTER_PORT.to_string());
    #[rustfmt::skip]
    let master_args = [
        "master", "-f", scenario.to_str().unwrap(), "-H", &host, "-u", &users, "-r", "1000", "-t", "4s",
        "--headless", "--only-summary", "--json", json.to_str().unwrap(), "--stop-timeout", "1s",
        "--master-bind-host", "127.0.0.1", "--master-bind-port", &port,
        "--expect-workers", "1", "--expect-workers-max-wait", "20s",
    ];
    procs.spawn("master", &ns, &master_args);
    procs.wait_listening("master", &ns, "127.0.0.1", MASTER_PORT).await;
    let master = format!("127.0.0.1:{MASTER_PORT}");
    let mut worker_args = vec!["worker", "--master", &master, "--worker-id", "w", "--threads", "1"];
    if let Some(list) = sources {
        worker_args.extend(["--source-addresses", list]);
    }
    procs.spawn("worker", &ns, &worker_args);
    let status = procs.wait_exit("master", Duration::from_secs(40)).await;
    assert!(
        matches!(status.code(), Some(0 | 1)),
        "master exit {status:?}\n{}",
        procs.logs()
    );
    // The target's last rewrite after the run: every stream closed.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = seen(&out).expect("the target's record");
    Ok((procs.report(&json), seen, procs.logs()))
}

/// Failures of the `hold` row by (kind, detail).
fn failures(report: &serde_json::Value, kind: &str, detail: &str) -> u64 {
    report["failures"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == kind && f["detail"] == detail)
        .map(|f| f["count"].as_u64().unwrap())
        .sum()
}

/// 300 streams through 200 ephemeral ports: from one source address the excess fails
/// as `connect / source_port_exhaustion`; bound in turn to 127.0.0.2-5 (Linux routes
/// all of 127.0.0.0/8 on lo) all 300 are held, from 4 source IPs, by the target's count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_addresses_hold_more_streams_than_one_address_has_ports() {
    const TEST: &str = "source addresses test";
    if effective_uid() != Some(0) {
        return skip(TEST, "not running as root (network namespaces need it)");
    }
    let mut net = match Net::new('s') {
        Ok(net) => net,
        Err(missing) => return skip(TEST, &missing),
    };
    let (one, one_seen, logs) = match run(&mut net, "one", None).await {
        Ok(r) => r,
        Err(missing) => return skip(TEST, &missing),
    };
    let ports = u64::from(PORT_RANGE.1 - PORT_RANGE.0 + 1);
    let exhausted = failures(&one, "connect", "source_port_exhaustion");
    let said = one["failures"].as_array().unwrap().iter().any(|f| {
        f["detail"] == "source_port_exhaustion" && f["sample"].as_str().unwrap_or("").contains("source port exhaustion")
    });
    assert!(said, "the sample says why: {:#}", one["failures"]);
    assert!(
        exhausted > 0,
        "no source_port_exhaustion failure: {:#}\n{logs}",
        one["failures"]
    );
    assert!(
        one_seen.most_open < STREAMS && one_seen.most_open <= ports,
        "one address held {} streams through {ports} ports",
        one_seen.most_open
    );
    assert_eq!(one_seen.ips, BTreeSet::from(["127.0.0.1".to_string()]));
    assert_eq!(
        one["connections"]["connections_opened"].as_u64(),
        Some(one_seen.accepted),
        "connections: ours vs the target's {one_seen:?}\n{logs}"
    );
    assert_eq!(
        one["connections"]["max_concurrent"].as_u64(),
        Some(one_seen.most_open),
        "streams open at once: ours vs the target's\n{logs}"
    );

    let (four, four_seen, logs) = run(&mut net, "four", Some("127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5"))
        .await
        .expect("the first run ran here, so the second must");
    let ips: BTreeSet<String> = (2..=5).map(|i| format!("127.0.0.{i}")).collect();
    assert_eq!(four_seen.ips, ips, "{logs}");
    assert_eq!(four_seen.most_open, STREAMS, "{logs}");
    assert_eq!(four["aggregated"]["failures"], 0, "{:#}", four["failures"]);
    assert_eq!(
        four["connections"]["connections_opened"].as_u64(),
        Some(four_seen.accepted)
    );
    assert_eq!(
        four["connections"]["max_concurrent"].as_u64(),
        Some(four_seen.most_open)
    );
    eprintln!(
        "netns source addresses test: {ports} ports, {STREAMS} streams. One address: the target held at most {} at once, we reported {} ({exhausted} connects failed as source_port_exhaustion), {} connections accepted = {} reported. Four addresses: the target held {} from {:?}, we reported {}, {} connections accepted = {} reported, no failure",
        one_seen.most_open,
        one["connections"]["max_concurrent"],
        one_seen.accepted,
        one["connections"]["connections_opened"],
        four_seen.most_open,
        four_seen.ips,
        four["connections"]["max_concurrent"],
        four_seen.accepted,
        four["connections"]["connections_opened"],
    );
}
