//! Bad input through the real binary, table-driven: every bad scenario file and every bad
//! flag gives exactly one `error:` line that names the file and field (or the flag), exit
//! code 2, no panic, and not one request reaches the target.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::*;

/// [`barrage`] with the scenarios' key set and the default log level: the cases check
/// the exact stderr.
fn barrage_with_key() -> Command {
    let mut cmd = barrage();
    cmd.env("DIFY_API_KEY", KEY).env_remove("RUST_LOG");
    cmd
}

/// A valid scenario; each case breaks one thing in it.
const GOOD: &str = r#"[run]
users = 2
spawn_rate = 10
run_time = "2s"

[data.question]
values = ["one", "two"]

[[users]]
name = "Workflow"
weight = 1
wait = "constant(0.1)"

[[users.tasks]]
name = "/v1/workflows/run"
method = "POST"
path = "/v1/workflows/run"
kind = "dify"
timeout = "10s"
headers = { Authorization = "Bearer ${DIFY_API_KEY}" }
body = '{"inputs": {"query": "{{question}}"}, "response_mode": "streaming", "user": "{{user}}"}'
"#;

const GOOD_YAML: &str = r#"run:
  users: 2
  spawn_rate: 10
users:
  - name: Workflow
    tasks:
      - name: /v1/workflows/run
        method: POST
        path: /v1/workflows/run
        kind: dify
        headers:
          Authorization: "Bearer ${DIFY_API_KEY}"
"#;

/// `text` with `old` replaced by `new`; `old` must be there, so a change to the base
/// scenario cannot quietly turn a case into a valid file.
fn edit(text: &str, old: &str, new: &str) -> String {
    assert!(text.contains(old), "the base scenario has no `{old}`");
    text.replacen(old, new, 1)
}

/// 1-based line of the first line of `text` that starts with `prefix`.
fn line_of(text: &str, prefix: &str) -> usize {
    text.lines()
        .position(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starts with `{prefix}`"))
        + 1
}

enum Content {
    Text(String),
    Bytes(Vec<u8>),
    /// The path is a directory.
    Directory,
    /// Nothing at the path.
    Missing,
}

/// A bad scenario file: `name` in a temp dir (its extension picks the format).
struct FileCase {
    what: &'static str,
    name: &'static str,
    content: Content,
    /// Each must appear in the `error:` line.
    expect: Vec<String>,
}

fn file_cases() -> Vec<FileCase> {
    let text = |what, new: String, expect: &[&str]| FileCase {
        what,
        name: "bad.toml",
        content: Content::Text(new),
        expect: std::iter::once("bad.toml")
            .chain(expect.iter().copied())
            .map(str::to_string)
            .collect(),
    };
    let toml_error = edit(GOOD, "spawn_rate = 10", "spawn_rate = = 10");
    let toml_line = line_of(&toml_error, "spawn_rate = =");
    let unclosed = edit(GOOD, "[[users.tasks]]", "[[users.tasks]");
    let unclosed_line = line_of(&unclosed, "[[users.tasks]");
    let yaml_error = edit(GOOD_YAML, "  spawn_rate: 10", "   spawn_rate: 10");
    let yaml_line = line_of(&yaml_error, "   spawn_rate");
    vec![
        text(
            "unknown field in a task",
            edit(GOOD, "timeout = \"10s\"", "timeout = \"10s\"\ntimout = \"3s\""),
            // config names the place as `users[0]tasks[0]` (no dot): check the parts.
            &["unknown field `timout`", "users[0]", "tasks[0]"],
        ),
        text(
            "bad preset run time",
            format!("{GOOD}\n[presets.soak]\nusers = 5\nrun_time = \"an hour\"\n"),
            &["presets.soak.run_time", "is not a duration"],
        ),
        text(
            "unknown top-level field",
            format!("colour = \"red\"\n{GOOD}"),
            &["unknown field `colour`"],
        ),
        text(
            "wrong type",
            edit(GOOD, "users = 2", "users = \"ten\""),
            &["run.users", "\"ten\"", "integer"],
        ),
        text(
            "bad task duration",
            edit(GOOD, "timeout = \"10s\"", "timeout = \"10 parsecs\""),
            &["users[0].tasks[0].timeout:", "is not a duration"],
        ),
        text(
            "run time too long for a Duration",
            edit(GOOD, "run_time = \"2s\"", "run_time = \"1e20\""),
            &["run.run_time:", "1e20"],
        ),
        text(
            "bad run duration",
            edit(GOOD, "run_time = \"2s\"", "run_time = \"soon\""),
            &["run.run_time:", "\"soon\" is not a duration"],
        ),
        text(
            "bad wait",
            edit(GOOD, "constant(0.1)", "betwen(1,3)"),
            &["users[0].wait:", "is not a wait"],
        ),
        text(
            "unknown template variable",
            edit(GOOD, "{{question}}", "{{questoin}}"),
            &[
                "users[0].tasks[0].body:",
                "{{questoin}}",
                "neither a data pool nor a builtin",
            ],
        ),
        text(
            "unclosed template variable",
            edit(GOOD, "Bearer ${DIFY_API_KEY}", "Bearer {{question"),
            &["users[0].tasks[0].headers.Authorization:", "unclosed `{{`"],
        ),
        text(
            "missing environment variable",
            edit(GOOD, "${DIFY_API_KEY}", "${BARRAGE_TEST_UNSET_7F3}"),
            &[
                "users[0].tasks[0].headers.Authorization:",
                "environment variable `BARRAGE_TEST_UNSET_7F3` is not set",
            ],
        ),
        text(
            "missing environment variable of a pool",
            edit(
                GOOD,
                "values = [\"one\", \"two\"]",
                "env = [\"BARRAGE_TEST_UNSET_7F3\"]",
            ),
            &["data.question.env:", "`BARRAGE_TEST_UNSET_7F3` is not set"],
        ),
        text(
            "zero total weight",
            edit(GOOD, "weight = 1", "weight = 0"),
            &["users:", "every user class has weight 0"],
        ),
        text(
            "zero task weight",
            edit(GOOD, "timeout = \"10s\"", "timeout = \"10s\"\nweight = 0"),
            &["users[0].tasks:", "every task has weight 0"],
        ),
        text(
            "negative users",
            edit(GOOD, "users = 2", "users = -5"),
            &["run.users:", "-5 is not a user count"],
        ),
        text(
            "negative weight",
            edit(GOOD, "weight = 1", "weight = -1"),
            &["users[0].weight:", "-1 is not a weight"],
        ),
        text(
            "negative spawn rate",
            edit(GOOD, "spawn_rate = 10", "spawn_rate = -1"),
            &["run.spawn_rate:", "-1 is not a spawn rate"],
        ),
        text(
            "TOML syntax error",
            toml_error,
            &["TOML parse error", &format!("line {toml_line}")],
        ),
        text(
            "unclosed TOML table",
            unclosed,
            &["TOML parse error", &format!("line {unclosed_line}")],
        ),
        FileCase {
            what: "YAML syntax error",
            name: "bad.yaml",
            content: Content::Text(yaml_error),
            expect: vec!["bad.yaml".into(), format!("line {yaml_line}")],
        },
        FileCase {
            what: "YAML wrong type",
            name: "bad.yml",
            content: Content::Text(edit(GOOD_YAML, "users: 2", "users: ten")),
            expect: vec!["bad.yml".into(), "run.users".into()],
        },
        FileCase {
            what: "not UTF-8",
            name: "binary.toml",
            content: Content::Bytes(b"[run]\nusers = \"\xff\xfe\"\n".to_vec()),
            expect: vec!["binary.toml".into(), "cannot read".into()],
        },
        FileCase {
            what: "a directory",
            name: "dir.toml",
            content: Content::Directory,
            expect: vec!["dir.toml".into(), "cannot read".into()],
        },
        FileCase {
            what: "a directory without extension",
            name: "scenarios",
            content: Content::Directory,
            expect: vec!["scenarios".into(), "*.toml, *.yaml or *.yml".into()],
        },
        FileCase {
            what: "missing file",
            name: "missing.toml",
            content: Content::Missing,
            expect: vec!["missing.toml".into(), "cannot read".into()],
        },
        FileCase {
            what: "unknown extension",
            name: "scenario.json",
            content: Content::Text("{}".into()),
            expect: vec!["scenario.json".into(), "*.toml, *.yaml or *.yml".into()],
        },
    ]
}

fn write(dir: &Path, case: &FileCase) -> PathBuf {
    let path = dir.join(case.name);
    match &case.content {
        Content::Text(t) => std::fs::write(&path, t).unwrap(),
        Content::Bytes(b) => std::fs::write(&path, b).unwrap(),
        Content::Directory => std::fs::create_dir(&path).unwrap(),
        Content::Missing => {}
    }
    path
}

/// Exit code 2, exactly one `error:` line, a message holding every `expect`ed part, no
/// panic and no report or plan on stdout. A failed check is described in the `Err`.
fn check_usage_error(what: &str, args: &[String], out: &Output, expect: &[String]) -> Result<(), String> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ctx = format!(
        "{what}: barrage {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        args.join(" ")
    );
    let fail = |why: &str| Err(format!("{why}: {ctx}"));
    if stderr.contains("panicked") || stderr.contains("RUST_BACKTRACE") {
        return fail("a panic");
    }
    if out.status.code() != Some(2) {
        return fail(&format!("exit code {:?}, not 2", out.status.code()));
    }
    let errors = stderr.lines().filter(|l| l.starts_with("error:")).count();
    if errors != 1 {
        return fail(&format!("{errors} error lines, not exactly one"));
    }
    // The message: the error line and what continues it up to a blank line (clap lists
    // missing arguments below it; TOML errors quote the line).
    let message: Vec<&str> = stderr
        .lines()
        .skip_while(|l| !l.starts_with("error:"))
        .take_while(|l| !l.trim().is_empty())
        .collect();
    let message = message.join("\n");
    if let Some(part) = expect.iter().find(|p| !message.contains(p.as_str())) {
        return fail(&format!("the error message lacks `{part}`"));
    }
    if stdout.contains(": valid") || stdout.contains("FINAL RESULTS") {
        return fail("it went on anyway");
    }
    Ok(())
}

fn run(args: &[String]) -> Output {
    barrage_with_key().args(args).output().unwrap()
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_scenarios_and_flags_are_named_exit_2_and_send_nothing() {
    let mock = mock(sse_mock_config(5, 1, 5)).await;
    let host = format!("http://{}", mock.addr);
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, GOOD).unwrap();
    let good_arg = good.to_str().unwrap().to_string();

    // Every case runs; the failures are listed together at the end.
    let failed = tokio::task::spawn_blocking({
        let host = host.clone();
        let good_arg = good_arg.clone();
        let dir = dir.path().to_path_buf();
        move || {
            let mut failed = Vec::new();
            // Scenario files: through `validate` and through `run` (which must stop
            // before starting a worker).
            for case in file_cases() {
                let path = write(&dir, &case);
                let file = path.to_str().unwrap();
                for args in [
                    strings(&["validate", "-f", file]),
                    strings(&[
                        "run",
                        "--headless",
                        "-f",
                        file,
                        "-H",
                        &host,
                        "-t",
                        "2s",
                        "--workers",
                        "1",
                    ]),
                ] {
                    failed.extend(check_usage_error(case.what, &args, &run(&args), &case.expect).err());
                }
            }

            // Flags (ours, after clap) and clap's own usage errors: exit 2 as well.
            let g = good_arg.as_str();
            // `barrage run` on the good scenario against the mock, then the flags under test.
            let base = |timed: bool, extra: &[&str]| {
                let mut args = strings(&["run", "--headless", "-f", g, "-H", &host]);
                if timed {
                    args.extend(strings(&["-t", "2s"]));
                }
                args.extend(strings(&["--workers", "1"]));
                args.extend(strings(extra));
                args
            };
            let run_flags = |extra: &[&str]| base(true, extra);
            let run_untimed = |extra: &[&str]| base(false, extra);
            let flag_cases: Vec<(&str, Vec<String>, &[&str])> = vec![
                (
                    "spawn rate 0",
                    run_flags(&["-r", "0"]),
                    &["--spawn-rate", "0 is not a spawn rate"],
                ),
                (
                    "unknown preset",
                    run_untimed(&["--preset", "heavy"]),
                    &["--preset heavy", "has no [presets]"],
                ),
                (
                    "bad threshold",
                    run_flags(&["--threshold", "p95(ttfx) < 1s"]),
                    &["--threshold", "`ttfx` is not a latency", "expected e.g."],
                ),
                (
                    "threshold on a row that does not exist",
                    run_flags(&["--threshold-abort", "p95(ttfe){name=/v1/chat} < 1s"]),
                    &["{name=/v1/chat}", "the rows are /v1/workflows/run"],
                ),
                (
                    "bad stage",
                    run_untimed(&["--stage", "1m"]),
                    &["--stage", "DURATION:USERS"],
                ),
                (
                    "stage and users",
                    run_untimed(&["--stage", "1s:5", "-u", "3"]),
                    &["--stage sets the users over time"],
                ),
                (
                    "hunt SLO with a window",
                    strings(&[
                        "hunt",
                        "-f",
                        g,
                        "-H",
                        &host,
                        "--workers",
                        "1",
                        "--slo",
                        "p95(ttfe)[60s] < 1s",
                    ]),
                    &["--slo p95(ttfe)[60s] < 1s", "without [window]"],
                ),
                (
                    "hunt max below start",
                    strings(&[
                        "hunt",
                        "-f",
                        g,
                        "-H",
                        &host,
                        "--workers",
                        "1",
                        "--slo",
                        "error_rate < 1%",
                        "--start",
                        "50",
                        "--max",
                        "20",
                    ]),
                    &["--max 20: below --start 50"],
                ),
                (
                    "hunt without an SLO",
                    strings(&["hunt", "-f", g, "-H", &host, "--workers", "1"]),
                    &["--slo"],
                ),
                (
                    "hunt with -u",
                    strings(&[
                        "hunt",
                        "-f",
                        g,
                        "-H",
                        &host,
                        "--workers",
                        "1",
                        "--slo",
                        "error_rate < 1%",
                        "-u",
                        "5",
                    ]),
                    &["hunt sets the load itself"],
                ),
                (
                    "hunt started from the UI",
                    strings(&[
                        "hunt",
                        "-f",
                        g,
                        "-H",
                        &host,
                        "--workers",
                        "1",
                        "--slo",
                        "error_rate < 1%",
                        "--start-from-ui",
                    ]),
                    &["--start-from-ui is for runs started from the web UI"],
                ),
                (
                    "start from the UI and headless",
                    run_untimed(&["--start-from-ui"]),
                    &["--start-from-ui", "--headless"],
                ),
                (
                    "arrival rate with users",
                    run_untimed(&["--arrival-rate", "5", "-u", "3"]),
                    &["the open model", "replace -u"],
                ),
                (
                    "in-flight cap without arrivals",
                    run_untimed(&["--max-in-flight", "5"]),
                    &["--max-in-flight caps the open model"],
                ),
                (
                    "bad arrival stage",
                    run_untimed(&["--arrival-stage", "1m"]),
                    &["--arrival-stage", "DURATION:RATE"],
                ),
                (
                    "unknown user class",
                    run_flags(&["Workflow", "Chat"]),
                    &["no user class `Chat`", "it has Workflow"],
                ),
                ("spawn rate abc", run_flags(&["-r", "abc"]), &["'abc'", "--spawn-rate"]),
                (
                    "spawn rate NaN",
                    run_flags(&["-r", "NaN"]),
                    &["--spawn-rate", "NaN is not a spawn rate"],
                ),
                (
                    "run time soon",
                    strings(&[
                        "run",
                        "--headless",
                        "-f",
                        g,
                        "-H",
                        &host,
                        "-t",
                        "soon",
                        "--workers",
                        "1",
                    ]),
                    &["'soon'", "--run-time", "is not a duration"],
                ),
                (
                    "run time too long for a Duration",
                    strings(&[
                        "run",
                        "--headless",
                        "-f",
                        g,
                        "-H",
                        &host,
                        "-t",
                        "1e20",
                        "--workers",
                        "1",
                    ]),
                    &["'1e20'", "--run-time"],
                ),
                (
                    "ftp host",
                    strings(&[
                        "run",
                        "--headless",
                        "-f",
                        g,
                        "-H",
                        "ftp://x",
                        "-t",
                        "2s",
                        "--workers",
                        "1",
                    ]),
                    &["--host", "\"ftp://x\" is not a target"],
                ),
                (
                    "host with a path",
                    strings(&[
                        "run",
                        "--headless",
                        "-f",
                        g,
                        "-H",
                        &format!("{host}/v1"),
                        "-t",
                        "2s",
                        "--workers",
                        "1",
                    ]),
                    &["--host", "without a path"],
                ),
                (
                    "liveness below two heartbeats",
                    run_flags(&["--heartbeat-liveness", "1s"]),
                    &["--heartbeat-liveness", "at least 2s"],
                ),
                ("negative users", run_flags(&["--users=-3"]), &["'-3'", "--users"]),
                (
                    // clap takes `-3` for a flag: the message names the value, not --users.
                    "negative users, short flag",
                    run_flags(&["-u", "-3"]),
                    &["'-3'"],
                ),
                ("users abc", run_flags(&["-u", "abc"]), &["'abc'", "--users"]),
                (
                    "unknown worker-loss policy",
                    run_flags(&["--on-worker-loss", "panic"]),
                    &["'panic'", "--on-worker-loss"],
                ),
                (
                    "unknown flag",
                    strings(&["run", "--headless", "-f", g, "-H", &host, "-t", "2s", "--bogus"]),
                    &["'--bogus'"],
                ),
                (
                    "no scenario",
                    strings(&["run", "-H", &host, "-t", "2s"]),
                    &["required", "--scenario"],
                ),
                ("no scenario to validate", strings(&["validate"]), &["--scenario"]),
                ("unknown command", strings(&["frobnicate"]), &["'frobnicate'"]),
            ];
            for (what, args, expect) in flag_cases {
                failed.extend(check_usage_error(what, &args, &run(&args), &strings(expect)).err());
            }

            // The same layer through the environment: BARRAGE_RUN_* are the flags' values.
            for (var, value, expect) in [
                ("BARRAGE_RUN_SPAWN_RATE", "abc", ["'abc'", "--spawn-rate"]),
                ("BARRAGE_RUN_USERS", "ten", ["'ten'", "--users"]),
                ("BARRAGE_RUN_RUN_TIME", "soon", ["'soon'", "--run-time"]),
            ] {
                let args = strings(&["run", "--headless", "-f", g, "-H", &host, "--workers", "1"]);
                let out = barrage_with_key().args(&args).env(var, value).output().unwrap();
                failed.extend(check_usage_error(&format!("{var}={value}"), &args, &out, &strings(&expect)).err());
            }
            failed
        }
    })
    .await
    .unwrap();
    assert_eq!(
        mock.state.ground_truth().requests,
        0,
        "a bad scenario or flag must send nothing"
    );
    assert!(
        failed.is_empty(),
        "{} case(s) failed:\n\n{}",
        failed.len(),
        failed.join("\n--------\n")
    );

    // The control: the same invocation with nothing broken does reach the mock, so the
    // zero above means something.
    let out = tokio::task::spawn_blocking(move || {
        barrage_with_key()
            .args([
                "run",
                "--headless",
                "-f",
                &good_arg,
                "-H",
                &host,
                "-u",
                "1",
                "-r",
                "100",
                "-t",
                "1s",
                "--workers",
                "1",
                "--only-summary",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(mock.state.ground_truth().requests > 0, "the control run sent nothing");
}
