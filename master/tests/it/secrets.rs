//! Secrets never leave: a canary API key goes out in the Authorization header, a hostile
//! target echoes it back in every error body, and the real binary, logging at debug on
//! master and workers, must not print it anywhere: not on stdout, not on stderr, not in
//! the JSON report (where the failure samples show `***` instead), not in `validate`.

use std::net::SocketAddr;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::support::barrage;

const CANARY: &str = "canary-5e3c7";

/// An HTTP/1.1 target that answers every request with 500 and the request's
/// Authorization header in the body, three ways in turn: plain text, the message of
/// Dify's JSON error envelope, and its `code`.
struct Echo {
    addr: SocketAddr,
    /// Requests that carried the canary.
    canaries: Arc<AtomicU64>,
    stop: CancellationToken,
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn echo_server() -> Echo {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let canaries = Arc::new(AtomicU64::new(0));
    let stop = CancellationToken::new();
    let served = Arc::new(AtomicU64::new(0));
    tokio::spawn({
        let (canaries, stop) = (canaries.clone(), stop.clone());
        async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        tokio::spawn(echo(stream, canaries.clone(), served.clone(), stop.clone()));
                    }
                }
            }
        }
    });
    Echo { addr, canaries, stop }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Reads more into `buf`; false at the end of the connection.
async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 8192];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

async fn echo(mut stream: TcpStream, canaries: Arc<AtomicU64>, served: Arc<AtomicU64>, stop: CancellationToken) {
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i + 4;
            }
            let more = tokio::select! {
                _ = stop.cancelled() => return,
                more = fill(&mut stream, &mut buf) => more,
            };
            if !more {
                return;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let header = |name: &str| {
            head.lines().skip(1).find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
            })
        };
        // The body: by Content-Length, or chunked up to its last chunk.
        let end = if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            loop {
                if let Some(i) = find(&buf[head_end..], b"0\r\n\r\n") {
                    break head_end + i + 5;
                }
                if !fill(&mut stream, &mut buf).await {
                    return;
                }
            }
        } else {
            let len: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
            while buf.len() < head_end + len {
                if !fill(&mut stream, &mut buf).await {
                    return;
                }
            }
            head_end + len
        };
        buf.drain(..end);
        let auth = header("authorization").unwrap_or_default();
        if auth.contains(CANARY) {
            canaries.fetch_add(1, Ordering::Relaxed);
        }
        let (content_type, body) = match served.fetch_add(1, Ordering::Relaxed) % 3 {
            0 => ("text/plain", format!("upstream rejected Authorization: {auth}")),
            1 => (
                "application/json",
                serde_json::json!({"code": "invalid_param", "message": format!("bad credentials: {auth}"), "status": 500})
                    .to_string(),
            ),
            _ => (
                "application/json",
                serde_json::json!({"code": auth, "message": "echoed in the code", "status": 500}).to_string(),
            ),
        };
        let response = format!(
            "HTTP/1.1 500 Internal Server Error\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        if stream.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// The scenario's header carries the key as `${DIFY_API_KEY}`.
const FROM_ENV_VAR: &str = r#"
[[users]]
name = "Canary"
wait = "constant(0.05)"
[[users.tasks]]
name = "/v1/workflows/run"
method = "POST"
path = "/v1/workflows/run"
kind = "dify"
timeout = "5s"
headers = { Authorization = "Bearer ${DIFY_API_KEY}" }
body = '{"inputs": {}, "response_mode": "streaming", "user": "{{user}}"}'
"#;

/// The key comes from a pool of environment variables, used as `{{key}}`.
const FROM_ENV_POOL: &str = r#"
[data.key]
env = ["CANARY_KEY"]
mode = "per_user"
[[users]]
name = "Canary"
wait = "constant(0.05)"
[[users.tasks]]
name = "/v1/workflows/run"
method = "POST"
path = "/v1/workflows/run"
kind = "dify"
timeout = "5s"
headers = { Authorization = "Bearer {{key}}" }
body = '{"inputs": {}, "response_mode": "streaming", "user": "{{user}}"}'
"#;

/// [`barrage`] with the canary in `secret_var` (and in no other secret variable) and
/// debug logs on, so a leak would show.
fn barrage_holding(secret_var: &str) -> Command {
    let mut cmd = barrage();
    cmd.env_remove("DIFY_API_KEY")
        .env_remove("CANARY_KEY")
        .env(secret_var, CANARY)
        .env("RUST_LOG", "debug")
        .env("BARRAGE_WORKER_LOG", "debug");
    cmd
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn canary_never_leaves(scenario: &'static str, secret_var: &'static str) {
    let target = echo_server().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("canary.toml");
    std::fs::write(&file, scenario).unwrap();
    let json = dir.path().join("out.json");
    let host = format!("http://{}", target.addr);

    let (file_arg, json_arg) = (file.to_str().unwrap().to_string(), json.to_str().unwrap().to_string());
    let (run, validate) = tokio::task::spawn_blocking(move || {
        let run = barrage_holding(secret_var)
            .args(["run", "-f", &file_arg, "-H", &host, "-u", "2", "-r", "10", "-t", "2s"])
            // Headless: the two tests run at once and would race for the web UI's port.
            .args(["--workers", "1", "--headless", "--json", &json_arg])
            .output()
            .unwrap();
        let validate = barrage_holding(secret_var)
            .args(["validate", "-f", &file_arg])
            .output()
            .unwrap();
        (run, validate)
    })
    .await
    .unwrap();

    let (stdout, stderr) = text(&run);
    let ctx = format!("stdout:\n{stdout}\nstderr (tail):\n{}", tail(&stderr, 40));
    // Every request failed (500), so the run reports failures: exit code 1.
    assert_eq!(run.status.code(), Some(1), "{ctx}");
    assert!(
        target.canaries.load(Ordering::Relaxed) > 0,
        "the canary never reached the target, so this test proves nothing: {ctx}"
    );
    // Debug logging was on, or the search below would be too easy.
    assert!(stderr.contains("DEBUG"), "no debug log lines: {ctx}");
    for (name, out) in [("stdout", &stdout), ("stderr", &stderr)] {
        if let Some(at) = out.find(CANARY) {
            panic!("the canary leaked into {name}: …{}…", around(out, at));
        }
    }
    let report = std::fs::read_to_string(&json).unwrap();
    if let Some(at) = report.find(CANARY) {
        panic!("the canary leaked into the JSON report: …{}…", around(&report, at));
    }
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    let failures = report["failures"].as_array().unwrap();
    assert!(!failures.is_empty(), "no failures reported: {report:#}");
    // The plain-text and the envelope-message answers quoted the header: their samples
    // show where the key was, as ***.
    let quoted = failures
        .iter()
        .filter(|f| f["sample"].as_str().unwrap().contains("Bearer ***"))
        .count();
    assert!(quoted >= 2, "failure samples should show `Bearer ***`: {failures:#?}");

    let (stdout, stderr) = text(&validate);
    assert!(validate.status.success(), "{stdout}\n{stderr}");
    assert!(
        !stdout.contains(CANARY) && !stderr.contains(CANARY),
        "validate printed the canary:\n{stdout}\n{stderr}"
    );
}

fn around(s: &str, at: usize) -> &str {
    let start = s.floor_char_boundary(at.saturating_sub(200));
    let end = s.ceil_char_boundary((at + 200).min(s.len()));
    &s[start..end]
}

fn tail(s: &str, lines: usize) -> String {
    let all: Vec<&str> = s.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_from_an_env_variable_never_leaves() {
    canary_never_leaves(FROM_ENV_VAR, "DIFY_API_KEY").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_from_an_env_pool_never_leaves() {
    canary_never_leaves(FROM_ENV_POOL, "CANARY_KEY").await;
}
