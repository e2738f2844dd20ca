//! nginx as the independent counter (issue 14): a real Barrage run (master and an
//! in-process worker) against nginx with Debian's echo module, and Barrage's totals per
//! endpoint and per outcome compared, exactly, with nginx's own access log.
//!
//! nginx runs as a child process (`daemon off; master_process off;`) with its config,
//! logs and temp files in a temp dir, on a free loopback port; it is killed when the
//! test ends. Its packages are installed by the test when missing (see [`crate::support::tools`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use crate::support::tools::{debian_tool, required};
use crate::support::{eventually, free_addr, load_args, master, setup, worker};

/// Where Debian's echo module lands (its path moved between releases).
const ECHO_MODULE: [&str; 2] = [
    "/usr/lib/nginx/modules/ngx_http_echo_module.so",
    "/usr/share/nginx/modules/ngx_http_echo_module.so",
];

/// nginx and its echo module, installed once per test process.
fn tools() -> &'static Result<(PathBuf, PathBuf), String> {
    static TOOLS: OnceLock<Result<(PathBuf, PathBuf), String>> = OnceLock::new();
    TOOLS.get_or_init(|| {
        let nginx = debian_tool("nginx-light", &["/usr/sbin/nginx"])?;
        let echo = debian_tool("libnginx-mod-http-echo", &ECHO_MODULE)?;
        Ok((nginx, echo))
    })
}

/// A long error body (about 5 KB), as a failing app's traceback would be: echo lines,
/// since one nginx parameter holds at most 4 KB.
fn long_error() -> String {
    let line = "Traceback (most recent call last): File app.py, line 7, in run;";
    format!("echo_status 500; {}", format!("echo \"{line}\"; ").repeat(80))
}

/// An nginx child process; killed (by its own pid) when dropped.
struct Nginx {
    child: Child,
    dir: tempfile::TempDir,
    addr: std::net::SocketAddr,
}

impl Nginx {
    fn start(nginx: &Path, echo: &Path) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let addr = free_addr();
        let d = dir.path().display();
        let conf = format!(
            r#"
load_module {echo};
daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 256; }}
http {{
    log_format counted '$status $request_uri';
    access_log {d}/access.log counted;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    keepalive_requests 100000;
    server {{
        listen {addr};
        location = /ok {{ default_type text/plain; return 200 "ok\n"; }}
        location = /unavailable {{ return 503; }}
        location = /error {{ default_type text/plain; {error} }}
        location = /sse {{
            default_type text/event-stream;
            echo "data: one";
            echo "";
            echo_flush;
            echo_sleep 0.02;
            echo "event: tick";
            echo "data: two";
            echo "";
            echo_flush;
            echo_sleep 0.02;
            echo "data: three";
            echo "";
        }}
    }}
}}
"#,
            echo = echo.display(),
            error = long_error(),
        );
        let path = dir.path().join("nginx.conf");
        std::fs::write(&path, conf).unwrap();
        let child = Command::new(nginx)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&path)
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .stdin(Stdio::null())
            .spawn()
            .expect("nginx starts");
        Nginx { child, dir, addr }
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }

    /// Requests nginx logged, by (path, status).
    fn served(&self) -> BTreeMap<(String, u16), u64> {
        let mut out = BTreeMap::new();
        for line in self.log("access.log").lines() {
            let mut parts = line.split(' ');
            let (Some(status), Some(uri)) = (parts.next(), parts.next()) else {
                continue;
            };
            let status: u16 = status.parse().unwrap_or(0);
            *out.entry((uri.to_string(), status)).or_default() += 1;
        }
        out
    }

    fn total(&self) -> u64 {
        self.served().values().sum()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const SCENARIO: &str = r#"
[[users]]
name = "Mix"
wait = "constant(0.01)"

[[users.tasks]]
name = "ok"
method = "GET"
path = "/ok"
weight = 3

[[users.tasks]]
name = "unavailable"
method = "GET"
path = "/unavailable"

[[users.tasks]]
name = "error"
method = "GET"
path = "/error"

[[users.tasks]]
name = "sse"
method = "GET"
path = "/sse"
kind = "sse"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn totals_per_endpoint_and_outcome_equal_nginx_access_log() {
    let Some((nginx, echo)) = required("nginx", "nginx::totals", tools().clone()) else {
        return;
    };
    let server = Nginx::start(&nginx, &echo);
    let up = eventually(Duration::from_secs(10), || {
        std::net::TcpStream::connect(server.addr).is_ok()
    })
    .await;
    assert!(up, "nginx did not listen: {}", server.log("error.log"));

    let load = load_args(server.addr, 4, 100.0, Duration::from_secs(2));
    let m = master(setup(SCENARIO, &load, 1)).await;
    let w = worker(m.addr, "w");
    let report = m.run.await.unwrap().unwrap().report;
    let _ = w.await;

    // nginx writes a line when it finalizes a request, which may be just after our
    // client read its last byte: wait for the lines, bounded.
    let total = report.aggregated.requests;
    assert!(total > 0, "the run sent load");
    eventually(Duration::from_secs(5), || server.total() >= total).await;
    let served = server.served();
    println!("nginx served {served:?}");

    let row = |name: &str| {
        report
            .endpoints
            .iter()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("no row for {name}"))
    };
    let failures = |name: &str, kind: &str, detail: &str| {
        report
            .failures
            .iter()
            .filter(|f| f.name == name && f.kind == kind && f.detail == detail)
            .map(|f| f.count)
            .sum::<u64>()
    };
    let nginx = |path: &str, status: u16| served.get(&(path.to_string(), status)).copied().unwrap_or(0);

    assert_eq!(server.total(), total, "requests nginx logged vs our total: {served:?}");
    for (name, status) in [("ok", 200), ("unavailable", 503), ("error", 500), ("sse", 200)] {
        let path = format!("/{name}");
        let logged: u64 = served.iter().filter(|((p, _), _)| *p == path).map(|(_, n)| n).sum();
        assert_eq!(row(name).requests, logged, "{name}: our requests vs nginx's lines");
        assert_eq!(nginx(&path, status), logged, "{name}: nginx answered only {status}");
        assert!(logged > 0, "{name} was hit");
    }
    assert_eq!(
        (row("ok").failures, row("sse").failures),
        (0, 0),
        "{:?}",
        report.failures
    );
    assert_eq!(row("unavailable").failures, nginx("/unavailable", 503));
    assert_eq!(
        failures("unavailable", "http_status", "503"),
        nginx("/unavailable", 503)
    );
    assert_eq!(row("error").failures, nginx("/error", 500));
    assert_eq!(failures("error", "http_status", "500"), nginx("/error", 500));
    assert!(
        report.outcomes.is_empty(),
        "no request cut by the stop: {:?}",
        report.outcomes
    );
    assert_eq!(
        report.aggregated.failures,
        nginx("/unavailable", 503) + nginx("/error", 500)
    );
    // Three events per stream, each stream complete.
    let events: u64 = report
        .endpoints
        .iter()
        .filter(|e| e.name == "sse")
        .map(|e| e.events)
        .sum();
    assert_eq!(events, 3 * nginx("/sse", 200), "events we counted vs events nginx sent");
    // The long error body's sample is bounded, whatever nginx sent.
    for f in &report.failures {
        assert!(f.sample.len() <= barrage_common::bounds::MAX_SAMPLE, "{f:?}");
    }
}
