//! The deployment files: the Helm chart (helm/barrage), the plain Kubernetes manifests
//! (deploy/k8s) and deploy/docker-compose.yml, checked by `deploy/check.py`: Helm's
//! linter, strict, for each example values file; the chart rendered by Helm and every
//! object validated against Kubernetes' schemas; the wiring between master, workers and
//! Services; every flag against this `barrage`'s `--help`; every shipped scenario
//! through `barrage validate`. The script keeps its Python packages in
//! target/deploy-venv (pip runs only when they are missing).
//!
//! Needs python3. Without it the test fails when `CI` is set, and otherwise passes with
//! a visible `SKIPPED deploy checks: ...` on stderr.

use std::path::Path;
use std::process::Command;

/// Written to stderr itself, not with `eprintln!`, which the test harness captures
/// from passing tests: the notice shows in a plain `cargo test` too.
fn skip(why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED deploy checks: {why}");
}

#[test]
fn chart_manifests_and_compose_file_pass_deploy_check() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the master crate is in the workspace");
    let python = Command::new("python3").arg("--version").output();
    if !python.as_ref().is_ok_and(|o| o.status.success()) {
        let why = format!("python3 is not available ({python:?}); deploy/check.py needs Python 3.11+");
        assert!(std::env::var_os("CI").is_none(), "{why}");
        return skip(&why);
    }

    let out = Command::new("python3")
        .arg("deploy/check.py")
        .current_dir(root)
        .env("BARRAGE_BIN", env!("CARGO_BIN_EXE_barrage"))
        .output()
        .expect("running python3 deploy/check.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "deploy/check.py failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    // It checked what it says it checks: each values file linted and rendered, the plain
    // manifests, the compose file, and the command-line checks with this binary.
    for line in [
        "ok    helm lint --strict with values-job.yaml",
        "ok    helm lint --strict with values-interactive.yaml",
        "ok    helm lint --strict with values-mock.yaml",
        "ok    values-job.yaml: 4 workers -> barrage-master:5557",
        "ok    refuse an unknown mode",
        "ok    deploy/k8s: 6 objects",
        "ok    deploy/k8s: `barrage validate` passes the scenario",
        "ok    docker-compose.yml: 3 workers -> master:5557",
        "ok    docker-compose.yml: every flag of 3 barrage containers",
        " 0 failed",
    ] {
        assert!(
            stdout.contains(line),
            "deploy/check.py did not report `{line}`:\n{stdout}\n{stderr}"
        );
    }
    assert!(!stdout.contains("SKIPPED"), "a check was skipped:\n{stdout}");
}
