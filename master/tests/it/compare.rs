//! `barrage report --compare`: two real runs against the mock, the second with a
//! slower first event, compared as CI would (the binary's exit code) and through the
//! library function the command uses.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use barrage_master::report::compare::{self, Tolerances, Verdict};

use crate::support::*;

/// A one-class workflow scenario (streams whose first event the mock delays).
fn workflows() -> String {
    workflow_scenario("constant(0.05)").replace("weight = 1\nwait", "weight = 0\nwait")
}

/// A 2 s run against a mock whose first events come after `first_event_ms`; its
/// `--json` report written to `path`.
async fn run_to_json(first_event_ms: u64, path: PathBuf) {
    let mock = mock(sse_mock_config(first_event_ms, 2, 5)).await;
    let load = load_args(mock.addr, 4, 100.0, Duration::from_secs(2));
    let mut s = setup(&workflows(), &load, 1);
    s.json = Some(path);
    let m = master(s).await;
    let w = worker(m.addr, "w");
    let out = m.run.await.unwrap().unwrap();
    let _ = w.await;
    assert!(
        out.report.aggregated.requests > 5,
        "{:?}",
        out.report.aggregated.requests
    );
    assert_eq!(out.report.aggregated.failures, 0);
}

pub(crate) async fn barrage_report(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || barrage().arg("report").args(args).output().unwrap())
        .await
        .unwrap()
}

fn compare_args(base: &Path, new: &Path, extra: &[&str]) -> Vec<String> {
    let mut v = vec![
        "--compare".to_string(),
        base.display().to_string(),
        new.display().to_string(),
    ];
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slower_first_event_is_a_regression() {
    let dir = tempfile::tempdir().unwrap();
    let (base, new) = (dir.path().join("base.json"), dir.path().join("new.json"));
    // The two runs at once, each with its own mock.
    tokio::join!(run_to_json(20, base.clone()), run_to_json(120, new.clone()));

    // The library function the command uses.
    let c = compare::compare_files(&base, &new, Tolerances::default()).unwrap();
    let row = |row: &str, figure: &str| {
        c.rows
            .iter()
            .find(|r| r.row == row && r.figure == figure)
            .unwrap_or_else(|| panic!("no {row} {figure}: {:#?}", c.rows))
            .clone()
    };
    for r in ["Aggregated", "POST /v1/workflows/run"] {
        let ttfe = row(r, "ttfe_ms.p50");
        assert_eq!(ttfe.verdict, Verdict::Regressed, "{ttfe:?}");
        let change = ttfe.change.unwrap();
        // 20 ms -> 120 ms is +500 %; each is a little above the mock's delay (a
        // millisecond or two on an idle machine, more on a busy one), which pulls the
        // change down a little.
        let (b, n) = (ttfe.base.unwrap(), ttfe.new.unwrap());
        assert!((20.0..30.0).contains(&b) && (120.0..135.0).contains(&n), "{ttfe:?}");
        assert!((n - b - 100.0).abs() < 10.0, "{ttfe:?}");
        assert!(
            (300.0..=520.0).contains(&change),
            "TTFE p50 change {change} % ({ttfe:?})"
        );
        assert!((change - (n / b - 1.0) * 100.0).abs() < 1e-6, "{ttfe:?}");
        assert_eq!(row(r, "failure_ratio").verdict, Verdict::Ok);
    }
    assert!(c.regressed() && c.exit_code() == 1);
    assert_eq!(c.only_in_one, 0);

    // The binary: the table, exit code 1, and --json OUT.
    let out_json = dir.path().join("cmp.json");
    let out = barrage_report(compare_args(&base, &new, &["--json", out_json.to_str().unwrap()])).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("| Row | Figure | Base | New | Change | Verdict |"),
        "{stdout}"
    );
    let line = stdout
        .lines()
        .find(|l| l.starts_with("| Aggregated | TTFE p50 (ms) |"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(line.ends_with("| REGRESSED |") && line.contains(" % |"), "{line}");
    assert!(stderr.contains("exit code 1"), "{stderr}");
    let written: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out_json).unwrap()).unwrap();
    assert_eq!(written["schema"], compare::SCHEMA_ID);
    let rows = written["rows"].as_array().unwrap();
    let ttfe = rows
        .iter()
        .find(|r| r["row"] == "Aggregated" && r["figure"] == "ttfe_ms.p50")
        .unwrap();
    assert_eq!(ttfe["verdict"], "regressed");
    assert!(ttfe["base"].as_f64().unwrap() < ttfe["new"].as_f64().unwrap());

    // Swapped, the same change is an improvement: no regression in latency.
    let c = compare::compare_files(&new, &base, Tolerances::default()).unwrap();
    let back = c
        .rows
        .iter()
        .find(|r| r.row == "Aggregated" && r.figure == "ttfe_ms.p50")
        .unwrap();
    assert_eq!(back.verdict, Verdict::Better);
    // A tolerance wide enough lets it pass.
    let out = barrage_report(compare_args(&base, &new, &["--tolerance", "1000"])).await;
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));

    // A report compared with itself: every verdict ok, exit code 0.
    let c = compare::compare_files(&base, &base, Tolerances::default()).unwrap();
    assert!(c.rows.iter().all(|r| r.verdict == Verdict::Ok), "{:#?}", c.rows);
    let out = barrage_report(compare_args(&base, &base, &[])).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let verdicts: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| Row "))
        .map(|l| l.trim_end_matches(" |").rsplit(" | ").next().unwrap())
        .collect();
    assert!(verdicts.len() >= 8 && verdicts.iter().all(|v| *v == "ok"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_that_are_not_reports_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    std::fs::write(
        &report,
        serde_json::json!({"schema": "barrage.report.v1", "endpoints": [], "aggregated": {"rps": 1.0}}).to_string(),
    )
    .unwrap();
    let other = dir.path().join("other.json");
    std::fs::write(&other, r#"{"schema": "something.else", "rows": []}"#).unwrap();
    let no_schema = dir.path().join("no-schema.json");
    std::fs::write(&no_schema, r#"[1, 2, 3]"#).unwrap();
    let garbage = dir.path().join("garbage.json");
    std::fs::write(&garbage, "not json {").unwrap();
    let missing = dir.path().join("missing.json");
    for bad in [&other, &no_schema, &garbage, &missing] {
        for args in [compare_args(&report, bad, &[]), compare_args(bad, &report, &[])] {
            let out = barrage_report(args).await;
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{}: {stderr}", bad.display());
            assert!(stderr.contains(&bad.display().to_string()), "{stderr}");
            assert!(!stderr.contains("panicked"), "{stderr}");
        }
        assert!(compare::compare_files(&report, bad, Tolerances::default()).is_err());
    }
    // A report with most figures missing compares: they are shown as `-`.
    let out = barrage_report(compare_args(&report, &report, &[])).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("| Aggregated | response time p50 (ms) | - | - | - | - |"),
        "{stdout}"
    );
    // Bad flags are usage errors too.
    let out = barrage_report(compare_args(&report, &report, &["--tolerance", "-5"])).await;
    assert_eq!(out.status.code(), Some(2));
    let out = barrage_report(vec!["--compare".into(), report.display().to_string()]).await;
    assert_eq!(out.status.code(), Some(2));
}

/// A comparison with a run whose data is incomplete cannot gate a release: exit 3,
/// naming the file and why, whatever the figures say.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn comparing_with_an_incomplete_run_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.json");
    run_to_json(5, base.clone()).await;
    let mut report: serde_json::Value = serde_json::from_slice(&std::fs::read(&base).unwrap()).unwrap();
    assert_eq!(report["completeness"]["verdict"], "complete");
    report["completeness"] = serde_json::json!({"verdict": "incomplete", "clipped": 0,
        "reasons": ["worker w2 was lost: what it did after 1.0s of the run never arrived"]});
    let new = dir.path().join("new.json");
    std::fs::write(&new, report.to_string()).unwrap();
    let same = barrage_report(compare_args(&base, &base, &[])).await;
    assert_eq!(same.status.code(), Some(0), "{}", String::from_utf8_lossy(&same.stderr));
    let out = barrage_report(compare_args(&base, &new, &[])).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("new.json") && stderr.contains("worker w2 was lost"),
        "{stderr}"
    );
}
