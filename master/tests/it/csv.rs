//! `--csv PREFIX`: Locust's CSV files from a real run against the mock, read back with
//! a CSV reader: Locust's headers column by column, and counts equal to the target's.

use std::path::{Path, PathBuf};
use std::time::Duration;

use barrage_master::report::FinalReport;
use barrage_master::serve::Outcome;
use barrage_mock::GroundTruth;

use crate::support::*;

// The headers below are copied from Locust 2.x, locust/stats.py: `StatsCSV.__init__`
// (`requests_csv_columns`, `failures_columns`, `exceptions_columns`; the percentile
// names are `get_readable_percentiles(PERCENTILES_TO_REPORT)` with
// PERCENTILES_TO_REPORT = [0.50, 0.66, 0.75, 0.80, 0.90, 0.95, 0.98, 0.99, 0.999,
// 0.9999, 1.0]) and `StatsCSVFileWriter.__init__` (`stats_history_csv_columns`).
const LOCUST_STATS: [&str; 22] = [
    "Type",
    "Name",
    "Request Count",
    "Failure Count",
    "Median Response Time",
    "Average Response Time",
    "Min Response Time",
    "Max Response Time",
    "Average Content Size",
    "Requests/s",
    "Failures/s",
    "50%",
    "66%",
    "75%",
    "80%",
    "90%",
    "95%",
    "98%",
    "99%",
    "99.9%",
    "99.99%",
    "100%",
];
const LOCUST_STATS_HISTORY: [&str; 24] = [
    "Timestamp",
    "User Count",
    "Type",
    "Name",
    "Requests/s",
    "Failures/s",
    "50%",
    "66%",
    "75%",
    "80%",
    "90%",
    "95%",
    "98%",
    "99%",
    "99.9%",
    "99.99%",
    "100%",
    "Total Request Count",
    "Total Failure Count",
    "Total Median Response Time",
    "Total Average Response Time",
    "Total Min Response Time",
    "Total Max Response Time",
    "Total Average Content Size",
];
/// Locust 2.47 added First Seen / Last Seen (`format_utc_timestamp`: UTC, whole seconds).
const LOCUST_FAILURES: [&str; 6] = ["Method", "Name", "Error", "Occurrences", "First Seen", "Last Seen"];
const LOCUST_EXCEPTIONS: [&str; 4] = ["Count", "Message", "Traceback", "Nodes"];
/// Ours.
const SSE: [&str; 7] = [
    "Timestamp",
    "Elapsed",
    "Active Streams",
    "Connections/s",
    "Events/s",
    "TTFE 50%",
    "TTFE 95%",
];

/// Streams, blocking chats, and a class whose every request the mock answers 503.
fn scenario() -> String {
    workflow_scenario("constant(0.05)")
        + r#"
[[users]]
name = "Broken"
weight = 1
wait = "constant(0.05)"
[[users.tasks]]
name = "/v1/chat-messages (503)"
method = "POST"
path = "/v1/chat-messages"
headers = { Authorization = "Bearer ${DIFY_API_KEY}", "X-Mock-Fault" = "http-503" }
body = '{"inputs": {}, "query": "q", "response_mode": "blocking", "user": "u"}'
"#
}

async fn run(load: &barrage_master::cli::LoadArgs) -> anyhow::Result<Outcome> {
    let m = master(setup(&scenario(), load, 1)).await;
    let w = worker(m.addr, "w");
    let out = m.run.await.unwrap();
    let _ = w.await;
    out
}

fn file(prefix: &Path, suffix: &str) -> PathBuf {
    PathBuf::from(format!("{}{suffix}", prefix.display()))
}

/// The header and the rows of a CSV file.
fn read(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = ::csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let header = r.headers().unwrap().iter().map(String::from).collect();
    let rows = r
        .records()
        .map(|rec| rec.unwrap().iter().map(String::from).collect())
        .collect();
    (header, rows)
}

fn num(v: &str) -> f64 {
    v.parse().unwrap_or_else(|_| panic!("`{v}` is not a number"))
}

fn count(v: &str) -> u64 {
    v.parse().unwrap_or_else(|_| panic!("`{v}` is not a count"))
}

/// `_stats.csv`: a row per endpoint (Locust's sort: name, then method), then Aggregated.
fn check_stats(prefix: &Path, report: &FinalReport, truth: &GroundTruth) {
    let (header, rows) = read(&file(prefix, "_stats.csv"));
    assert_eq!(header, LOCUST_STATS);
    assert_eq!(rows.len(), report.endpoints.len() + 1);
    for (row, e) in rows.iter().zip(&report.endpoints) {
        assert_eq!((row[0].as_str(), row[1].as_str()), (e.method.as_str(), e.name.as_str()));
        assert_eq!((count(&row[2]), count(&row[3])), (e.requests, e.failures), "{row:?}");
        // Every figure is a plain number (pandas reads it as one).
        for v in &row[4..] {
            num(v);
        }
        let (min, median, max) = (num(&row[6]), num(&row[4]), num(&row[7]));
        assert!(min <= median && median <= max, "{row:?}");
        assert_eq!(num(&row[21]), max, "100% is the max");
    }
    let agg = rows.last().unwrap();
    assert_eq!((agg[0].as_str(), agg[1].as_str()), ("", "Aggregated"));
    assert_eq!(
        count(&agg[2]),
        truth.requests,
        "Aggregated Request Count is what the target received"
    );
    assert_eq!(count(&agg[3]), report.aggregated.failures);
    assert!(count(&agg[3]) > 0, "the 503 class fails");
    let p = report.aggregated.response_time_ms.unwrap();
    assert_eq!(
        (num(&agg[4]), num(&agg[7])),
        (p.p50, p.max),
        "exact HDR values, not rounded"
    );
    assert!((num(&agg[8]) - report.aggregated.bytes_received as f64 / truth.requests as f64).abs() < 1e-9);
    assert!((num(&agg[9]) - report.aggregated.rps).abs() < 1e-9);
}

/// `_stats_history.csv`: an Aggregated row a second, written during the run (which
/// started at unix second `before`).
fn check_history(prefix: &Path, report: &FinalReport, truth: &GroundTruth, before: u64) {
    let (header, history) = read(&file(prefix, "_stats_history.csv"));
    assert_eq!(header, LOCUST_STATS_HISTORY);
    assert!(history.len() >= 2, "{history:?}");
    let mut last_total = 0;
    for row in &history {
        assert_eq!((row[2].as_str(), row[3].as_str()), ("", "Aggregated"));
        let ts = count(&row[0]);
        assert!(ts >= before && ts <= before + 30, "unix seconds: {ts}");
        count(&row[1]);
        // Locust writes the rates as f"{x:2f}": six decimals.
        assert!(row[4].split('.').nth(1).is_some_and(|d| d.len() == 6), "{row:?}");
        let total = count(&row[17]);
        assert!(total >= last_total, "totals only grow: {history:?}");
        last_total = total;
        for v in &row[6..17] {
            assert!(v == "N/A" && total == 0 || total > 0 && num(v) >= 0.0, "{row:?}");
        }
    }
    assert!(last_total <= truth.requests, "{last_total} > {}", truth.requests);
    assert!(last_total > 0, "the run's requests show in the history: {history:?}");
    assert!(
        history.iter().any(|r| count(&r[1]) == 5),
        "the users in the history: {history:?}"
    );
    // The current window's rate, once it has complete seconds (percentiles are the
    // run's so far, as Locust writes them).
    let current = history
        .iter()
        .find(|r| num(&r[4]) > 0.0)
        .unwrap_or_else(|| panic!("{history:?}"));
    assert!(num(&current[4]) <= report.aggregated.rps * 2.0, "{current:?}");
    assert!(
        num(&current[6]) > 0.0 && num(&current[6]) <= num(&current[16]),
        "{current:?}"
    );
}

/// `_failures.csv`: the report's failures, counts and all, seen after unix second
/// `before`.
fn check_failures(prefix: &Path, report: &FinalReport, before: u64) {
    let (header, failures) = read(&file(prefix, "_failures.csv"));
    assert_eq!(header, LOCUST_FAILURES);
    assert_eq!(failures.len(), report.failures.len());
    for (row, f) in failures.iter().zip(&report.failures) {
        assert_eq!((row[0].as_str(), row[1].as_str()), (f.method.as_str(), f.name.as_str()));
        assert_eq!(count(&row[3]), f.count);
        assert!(row[2].starts_with(&format!("{} {}", f.kind, f.detail)), "{row:?}");
        // First and last seen: the report's, to the second, within the run.
        let second = |v: &str| {
            humantime::parse_rfc3339(v)
                .unwrap()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
        };
        let (first, last) = (second(&row[4]), second(&row[5]));
        assert_eq!(Some(first), f.first_seen_unix_ms.map(|ms| ms / 1000), "{row:?}");
        assert_eq!(Some(last), f.last_seen_unix_ms.map(|ms| ms / 1000), "{row:?}");
        assert!(before <= first && first <= last && last <= before + 30, "{row:?}");
    }
    let occurrences: u64 = failures.iter().map(|r| count(&r[3])).sum();
    assert_eq!(occurrences, report.aggregated.failures);
    assert!(
        failures
            .iter()
            .any(|r| r[1] == "/v1/chat-messages (503)" && r[2].contains("503"))
    );
}

/// `_exceptions.csv` (the header alone), `_sse.csv` (ours: the report's timeline), and
/// Python's line ends.
fn check_exceptions_and_sse(prefix: &Path, report: &FinalReport) {
    // _exceptions.csv: the header alone.
    let (header, exceptions) = read(&file(prefix, "_exceptions.csv"));
    assert_eq!(header, LOCUST_EXCEPTIONS);
    assert!(exceptions.is_empty());

    // _sse.csv (ours): the report's timeline.
    let (header, sse) = read(&file(prefix, "_sse.csv"));
    assert_eq!(header, SSE);
    assert_eq!(sse.len(), report.timeline.len());
    for (row, point) in sse.iter().zip(&report.timeline) {
        assert_eq!(count(&row[1]) as i64, point.t);
        assert_eq!(
            (count(&row[3]), count(&row[4])),
            (point.streams_per_s, point.events_per_s)
        );
    }
    let events: u64 = sse.iter().map(|r| count(&r[4])).sum();
    assert_eq!(events, report.aggregated.events);

    // Python's csv.writer ends rows in CRLF.
    let raw = std::fs::read_to_string(file(prefix, "_stats.csv")).unwrap();
    assert!(
        raw.starts_with("Type,Name,Request Count,") && raw.contains("%\r\n"),
        "{raw}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_files_have_locusts_columns_and_the_targets_counts() {
    let mock = mock(sse_mock_config(20, 2, 5)).await;
    let dir = tempfile::tempdir().unwrap();
    // A folder that does not exist yet: created, as Locust does.
    let prefix = dir.path().join("results").join("run1");
    // 5 s: the history's current window (10 s ending 2 s back) has seconds in it.
    let mut load = load_args(mock.addr, 5, 100.0, Duration::from_secs(5));
    load.csv = Some(prefix.clone());
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let out = run(&load).await.unwrap();
    let report = &out.report;
    let truth = mock.state.ground_truth();
    assert!(truth.requests > 10, "{truth:?}");
    assert_eq!(report.aggregated.requests, truth.requests);

    check_stats(&prefix, report, &truth);
    check_history(&prefix, report, &truth, before);
    check_failures(&prefix, report, before);
    check_exceptions_and_sse(&prefix, report);
}

/// `--csv-full-history`: every second a row per endpoint, in `_stats.csv`'s order, then
/// `Aggregated`. The endpoint rows add up to the Aggregated row, rates and totals alike;
/// each row's percentiles are its own endpoint's (the streams wait the mock's injected
/// first-event delay, the 503s do not).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_history_has_a_row_per_endpoint_adding_up_to_aggregated() {
    let mock = mock(sse_mock_config(60, 2, 5)).await;
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("full");
    let mut load = load_args(mock.addr, 6, 100.0, Duration::from_secs(5));
    load.csv = Some(prefix.clone());
    load.csv_full_history = true;
    let out = run(&load).await.unwrap();
    let truth = mock.state.ground_truth();
    assert_eq!(out.report.aggregated.requests, truth.requests);

    let (header, history) = read(&file(&prefix, "_stats_history.csv"));
    assert_eq!(header, LOCUST_STATS_HISTORY);
    let groups: Vec<&[Vec<String>]> = history.split_inclusive(|r| r[3] == "Aggregated").collect();
    assert!(groups.len() >= 4, "a group a second: {history:?}");
    let workflow = "/v1/workflows/run";
    let broken = "/v1/chat-messages (503)";
    let mut streams_judged = false;
    for group in &groups {
        let (aggregated, endpoints) = group.split_last().unwrap();
        assert_eq!((aggregated[2].as_str(), aggregated[3].as_str()), ("", "Aggregated"));
        let keys: Vec<(&str, &str)> = endpoints.iter().map(|r| (r[3].as_str(), r[2].as_str())).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(keys, sorted, "sorted by name, then method, each once");
        assert!(endpoints.iter().all(|r| r[0] == aggregated[0] && r[1] == aggregated[1]));
        // The endpoints add up to Aggregated: totals exactly, rates to the six decimals
        // they are written with.
        for column in [17, 18] {
            let sum: u64 = endpoints.iter().map(|r| count(&r[column])).sum();
            assert_eq!(sum, count(&aggregated[column]), "column {column}: {group:?}");
        }
        for column in [4, 5] {
            let sum: f64 = endpoints.iter().map(|r| num(&r[column])).sum();
            let tolerance = 1e-6 * (endpoints.len() + 1) as f64;
            assert!(
                (sum - num(&aggregated[column])).abs() <= tolerance,
                "column {column}: {group:?}"
            );
        }
        for row in *group {
            let total = count(&row[17]);
            assert!(
                row[6..17]
                    .iter()
                    .all(|v| v == "N/A" && total == 0 || total > 0 && num(v) >= 0.0)
            );
        }
        // Where both endpoints have requests in the window, their own percentiles.
        let row = |name: &str| endpoints.iter().find(|r| r[3] == name);
        if let (Some(w), Some(b)) = (row(workflow), row(broken))
            && num(&w[4]) > 0.0
            && num(&b[4]) > 0.0
        {
            assert!(num(&w[6]) >= 60.0, "streams wait the 60 ms first event: {w:?}");
            assert!(num(&b[6]) < num(&w[6]), "{b:?} vs {w:?}");
            assert_eq!(b[4], b[5], "every 503 fails: {b:?}");
            streams_judged = true;
        }
    }
    assert!(streams_judged, "no second had both endpoints: {history:?}");
    // The last second's totals: no more than the target saw.
    let (_, last) = groups.last().unwrap().split_last().unwrap();
    let total = |name: &str| last.iter().find(|r| r[3] == name).map_or(0, |r| count(&r[17]));
    assert!(
        total(workflow) > 0 && total(workflow) <= truth.workflow_runs,
        "{last:?}"
    );
    assert!(total(broken) > 0, "{last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_prefix_is_an_error_naming_the_file() {
    let mock = mock(sse_mock_config(5, 1, 5)).await;
    let dir = tempfile::tempdir().unwrap();
    // The prefix's folder is a file.
    let blocker = dir.path().join("blocker");
    std::fs::write(&blocker, "").unwrap();
    let mut load = load_args(mock.addr, 1, 100.0, Duration::from_secs(1));
    load.csv = Some(blocker.join("run"));
    let e = run(&load).await.unwrap_err().to_string();
    assert!(
        e.contains("--csv") && e.contains(&file(&blocker.join("run"), "_stats_history.csv").display().to_string()),
        "{e}"
    );
}

/// A saved result renders again: `barrage report run.json --csv p` writes the same
/// stats and failures files the run wrote, recomputed from the histograms the JSON
/// carries (so they round-trip exactly), and prints the same console report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_result_renders_the_same_files_again() {
    let mock = mock(sse_mock_config(20, 2, 5)).await;
    let dir = tempfile::tempdir().unwrap();
    let (live, again, saved) = (
        dir.path().join("live"),
        dir.path().join("again"),
        dir.path().join("run.json"),
    );
    let mut load = load_args(mock.addr, 4, 100.0, Duration::from_secs(2));
    load.csv = Some(live.clone());
    load.json = Some(saved.clone());
    load.html = Some(dir.path().join("live.html"));
    let out = run(&load).await.unwrap();
    assert_eq!(out.report.aggregated.requests, mock.state.ground_truth().requests);
    assert!(out.report.aggregated.failures > 0);

    // Through the library: the tables recomputed from the merged histograms are the
    // run's own, figure for figure.
    let read_back = barrage_master::report::json::read(&saved).unwrap();
    assert_eq!(json(&read_back.endpoints), json(&out.report.endpoints));
    assert_eq!(json(&read_back.aggregated), json(&out.report.aggregated));
    // So is the percentile spectrum, and a file saved before it existed gets it too.
    assert!(!out.report.spectrum.is_empty());
    assert_eq!(read_back.spectrum, out.report.spectrum);
    let mut old: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
    old.as_object_mut().unwrap().remove("spectrum");
    let old_file = dir.path().join("old.json");
    std::fs::write(&old_file, old.to_string()).unwrap();
    let old_back = barrage_master::report::json::read(&old_file).unwrap();
    assert_eq!(old_back.spectrum, out.report.spectrum);

    // Through the command, as a person runs it.
    let o = crate::compare::barrage_report(vec![
        saved.display().to_string(),
        "--csv".into(),
        again.display().to_string(),
        "--html".into(),
        dir.path().join("again.html").display().to_string(),
    ])
    .await;
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(stdout, barrage_master::report::console::render_final(&out.report));
    for suffix in ["_stats.csv", "_failures.csv", "_exceptions.csv"] {
        let (a, b) = (file(&live, suffix), file(&again, suffix));
        assert_eq!(
            std::fs::read_to_string(a).unwrap(),
            std::fs::read_to_string(b).unwrap(),
            "{suffix}"
        );
    }
    assert_eq!(read(&file(&again, "_sse.csv")).1.len(), out.report.timeline.len());
    assert!(
        !file(&again, "_stats_history.csv").exists(),
        "only a live run writes the history"
    );
    // Both HTML pages embed the report (the browser tests in html.rs draw one).
    for page in ["live.html", "again.html"] {
        let text = std::fs::read_to_string(dir.path().join(page)).unwrap();
        let requests = format!("\"requests\":{}", out.report.aggregated.requests);
        assert!(
            text.contains("id=\"barrage-report\"") && text.contains(&requests),
            "{page}"
        );
    }

    // A file that is not a report is a usage error (exit 2) that says why.
    std::fs::write(dir.path().join("bad.json"), "{\"schema\": \"barrage.report.v1\"}").unwrap();
    let o = crate::compare::barrage_report(vec![dir.path().join("bad.json").display().to_string()]).await;
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a complete Barrage report"));
}

/// A report part as JSON, to compare parts that have no PartialEq.
fn json<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap()
}
