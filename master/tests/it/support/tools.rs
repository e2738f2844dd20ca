//! Debian packages some tests need (Chromium, Prometheus), installed by the tests
//! themselves: a clean machine has only the Rust toolchain, Python and apt.
//!
//! A tool missing where it cannot be installed (not root) skips its test with a
//! visible `SKIPPED <what>: <reason>` on stderr, unless `CI` is set: then the test fails,
//! so CI can never pass by skipping.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

/// One apt-get at a time in this process (dpkg's lock would refuse the second).
static APT: Mutex<()> = Mutex::new(());

/// The first of `candidates` that exists; else installs Debian's `package` (root
/// only) and looks again. Err says why there is none. Callers keep the result in a
/// `OnceLock`, so a package is installed once per test process.
pub(crate) fn debian_tool(package: &str, candidates: &[&str]) -> Result<PathBuf, String> {
    let find = || candidates.iter().map(PathBuf::from).find(|p| p.is_file());
    if let Some(path) = find() {
        return Ok(path);
    }
    if !is_root() {
        return Err(format!(
            "{package} is not installed and only root can install it (apt-get install {package})"
        ));
    }
    let _apt = APT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = find() {
        return Ok(path);
    }
    eprintln!("tests: installing Debian's {package} package (once)...");
    let started = Instant::now();
    apt(&["update"])?;
    apt(&[
        "install",
        "-y",
        "--no-install-recommends",
        // Another apt run (a second test binary) holds the lock: wait for it.
        "-o",
        "DPkg::Lock::Timeout=300",
        package,
    ])?;
    eprintln!("tests: {package} installed in {:.0?}", started.elapsed());
    find().ok_or_else(|| format!("apt-get installed {package} but none of {candidates:?} exists"))
}

/// The tool, or None after a visible SKIPPED notice; a panic when `CI` is set.
pub(crate) fn required<T>(what: &str, test: &str, tool: Result<T, String>) -> Option<T> {
    match tool {
        Ok(path) => Some(path),
        Err(reason) if std::env::var_os("CI").is_some() => {
            panic!("{what} {test}: CI is set and the tool is missing: {reason}")
        }
        Err(reason) => {
            eprintln!("SKIPPED {what}: {reason} ({test})");
            None
        }
    }
}

fn apt(args: &[&str]) -> Result<(), String> {
    let out = std::process::Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run apt-get: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = err.lines().rev().take(5).collect();
    Err(format!(
        "apt-get {} failed ({}): {}",
        args.join(" "),
        out.status,
        tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
    ))
}

fn is_root() -> bool {
    // The effective uid, without libc (unsafe code is forbidden here).
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(2))
            == Some("0")
    })
}
