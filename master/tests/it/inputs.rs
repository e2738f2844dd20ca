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

/// Every bad scenario file: wrong fields and values, broken rules, broken syntax, and
/// paths that are no scenario file.
fn file_cases() -> Vec<FileCase> {
    let mut cases = field_cases();
    cases.extend(rule_cases());
    cases.extend(syntax_cases());
    cases.extend(unreadable_cases());
    cases
}

/// `bad.toml` holding `content`; the error must name the file and each of `expect`.
fn bad_toml(what: &'static str, content: String, expect: &[&str]) -> FileCase {
    FileCase {
        what,
        name: "bad.toml",
        content: Content::Text(content),
        expect: std::iter::once("bad.toml")
            .chain(expect.iter().copied())
            .map(str::to_string)
            .collect(),
    }
}

/// Unknown fields, wrong types and values that are no duration or wait.
fn field_cases() -> Vec<FileCase> {
    vec![
        bad_toml(
            "unknown field in a task",
            edit(GOOD, "timeout = \"10s\"", "timeout = \"10s\"\ntimout = \"3s\""),
            // config names the place as `users[0]tasks[0]` (no dot): check the parts.
            &["unknown field `timout`", "users[0]", "tasks[0]"],
        ),
        bad_toml(
            "bad preset run time",
            format!("{GOOD}\n[presets.soak]\nusers = 5\nrun_time = \"an hour\"\n"),
            &["presets.soak.run_time", "is not a duration"],
        ),
        bad_toml(
            "unknown top-level field",
            format!("colour = \"red\"\n{GOOD}"),
            &["unknown field `colour`"],
        ),
        bad_toml(
            "wrong type",
            edit(GOOD, "users = 2", "users = \"ten\""),
            &["run.users", "\"ten\"", "integer"],
        ),
        bad_toml(
            "bad task duration",
            edit(GOOD, "timeout = \"10s\"", "timeout = \"10 parsecs\""),
            &["users[0].tasks[0].timeout:", "is not a duration"],
        ),
        bad_toml(
            "run time too long for a Duration",
            edit(GOOD, "run_time = \"2s\"", "run_time = \"1e20\""),
            &["run.run_time:", "1e20"],
        ),
        bad_toml(
            "bad run duration",
            edit(GOOD, "run_time = \"2s\"", "run_time = \"soon\""),
            &["run.run_time:", "\"soon\" is not a duration"],
        ),
        bad_toml(
            "bad wait",
            edit(GOOD, "constant(0.1)", "betwen(1,3)"),
            &["users[0].wait:", "is not a wait"],
        ),
    ]
}

/// Values of the right type that break a rule: templates, environment variables,
/// weights, signs.
fn rule_cases() -> Vec<FileCase> {
    vec![
        bad_toml(
            "unknown template variable",
            edit(GOOD, "{{question}}", "{{questoin}}"),
            &[
                "users[0].tasks[0].body:",
                "{{questoin}}",
                "neither a data pool nor a builtin",
            ],
        ),
        bad_toml(
            "unclosed template variable",
            edit(GOOD, "Bearer ${DIFY_API_KEY}", "Bearer {{question"),
            &["users[0].tasks[0].headers.Authorization:", "unclosed `{{`"],
        ),
        bad_toml(
            "missing environment variable",
            edit(GOOD, "${DIFY_API_KEY}", "${BARRAGE_TEST_UNSET_7F3}"),
            &[
                "users[0].tasks[0].headers.Authorization:",
                "environment variable `BARRAGE_TEST_UNSET_7F3` is not set",
            ],
        ),
        bad_toml(
            "missing environment variable of a pool",
            edit(
                GOOD,
                "values = [\"one\", \"two\"]",
                "env = [\"BARRAGE_TEST_UNSET_7F3\"]",
            ),
            &["data.question.env:", "`BARRAGE_TEST_UNSET_7F3` is not set"],
        ),
        bad_toml(
            "zero total weight",
            edit(GOOD, "weight = 1", "weight = 0"),
            &["users:", "every user class has weight 0"],
        ),
        bad_toml(
            "zero task weight",
            edit(GOOD, "timeout = \"10s\"", "timeout = \"10s\"\nweight = 0"),
            &["users[0].tasks:", "every task has weight 0"],
        ),
        bad_toml(
            "negative users",
            edit(GOOD, "users = 2", "users = -5"),
            &["run.users:", "-5 is not a user count"],
        ),
        bad_toml(
            "negative weight",
            edit(GOOD, "weight = 1", "weight = -1"),
            &["users[0].weight:", "-1 is not a weight"],
        ),
        bad_toml(
            "negative spawn rate",
            edit(GOOD, "spawn_rate = 10", "spawn_rate = -1"),
            &["run.spawn_rate:", "-1 is not a spawn rate"],
        ),
    ]
}

/// TOML and YAML that do not parse (the error names the line) or do not fit.
fn syntax_cases() -> Vec<FileCase> {
    let toml_error = edit(GOOD, "spawn_rate = 10", "spawn_rate = = 10");
    let toml_line = line_of(&toml_error, "spawn_rate = =");
    let unclosed = edit(GOOD, "[[users.tasks]]", "[[users.tasks]");
    let unclosed_line = line_of(&unclosed, "[[users.tasks]");
    let yaml_error = edit(GOOD_YAML, "  spawn_rate: 10", "   spawn_rate: 10");
    let yaml_line = line_of(&yaml_error, "   spawn_rate");
    vec![
        bad_toml(
            "TOML syntax error",
            toml_error,
            &["TOML parse error", &format!("line {toml_line}")],
        ),
        bad_toml(
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
    ]
}

/// Paths that hold no scenario file: bytes that are not UTF-8, a directory, nothing, an
/// unknown extension.
fn unreadable_cases() -> Vec<FileCase> {
    vec![
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

/// Every scenario file case through `validate` and through `run` (which must stop before
/// starting a worker); what failed, described.
fn file_case_failures(dir: &Path, host: &str) -> Vec<String> {
    let mut failed = Vec::new();
    for case in file_cases() {
        let path = write(dir, &case);
        let file = path.to_str().unwrap();
        for args in [
            strings(&["validate", "-f", file]),
            strings(&[
                "run",
                "--headless",
                "-f",
                file,
                "-H",
                host,
                "-t",
                "2s",
                "--workers",
                "1",
            ]),
        ] {
            failed.extend(check_usage_error(case.what, &args, &run(&args), &case.expect).err());
        }
    }
    failed
}

/// A bad command line, the parts its error must hold.
type FlagCase = (&'static str, Vec<String>, &'static [&'static str]);

/// Command lines on the good scenario (`-f`) against the mock (`-H`), one worker, that
/// the flag cases break one thing of.
struct CommandLines<'a> {
    scenario: &'a str,
    host: &'a str,
}

impl CommandLines<'_> {
    /// `barrage run` against `host` for `time`, then `extra`.
    fn run_at(&self, host: &str, time: &str, extra: &[&str]) -> Vec<String> {
        let mut args = strings(&["run", "--headless", "-f", self.scenario, "-H", host, "-t", time]);
        args.extend(strings(&["--workers", "1"]));
        args.extend(strings(extra));
        args
    }

    /// `barrage run` for 2 s, then `extra`.
    fn run(&self, extra: &[&str]) -> Vec<String> {
        self.run_at(self.host, "2s", extra)
    }

    /// `barrage run` without a run time, then `extra`.
    fn run_untimed(&self, extra: &[&str]) -> Vec<String> {
        let mut args = strings(&["run", "--headless", "-f", self.scenario, "-H", self.host]);
        args.extend(strings(&["--workers", "1"]));
        args.extend(strings(extra));
        args
    }

    /// `barrage hunt`, then `extra`.
    fn hunt(&self, extra: &[&str]) -> Vec<String> {
        let mut args = strings(&["hunt", "-f", self.scenario, "-H", self.host, "--workers", "1"]);
        args.extend(strings(extra));
        args
    }
}

/// Flags clap accepts and our checks refuse.
fn run_flag_cases(cli: &CommandLines<'_>) -> Vec<FlagCase> {
    vec![
        (
            "spawn rate 0",
            cli.run(&["-r", "0"]),
            &["--spawn-rate", "0 is not a spawn rate"],
        ),
        (
            "unknown preset",
            cli.run_untimed(&["--preset", "heavy"]),
            &["--preset heavy", "has no [presets]"],
        ),
        (
            "bad threshold",
            cli.run(&["--threshold", "p95(ttfx) < 1s"]),
            &["--threshold", "`ttfx` is not a latency", "expected e.g."],
        ),
        (
            "threshold on a row that does not exist",
            cli.run(&["--threshold-abort", "p95(ttfe){name=/v1/chat} < 1s"]),
            &["{name=/v1/chat}", "the rows are /v1/workflows/run"],
        ),
        (
            "bad stage",
            cli.run_untimed(&["--stage", "1m"]),
            &["--stage", "DURATION:USERS"],
        ),
        (
            "stage and users",
            cli.run_untimed(&["--stage", "1s:5", "-u", "3"]),
            &["--stage sets the users over time"],
        ),
        (
            "start from the UI and headless",
            cli.run_untimed(&["--start-from-ui"]),
            &["--start-from-ui", "--headless"],
        ),
        (
            "arrival rate with users",
            cli.run_untimed(&["--arrival-rate", "5", "-u", "3"]),
            &["the open model", "replace -u"],
        ),
        (
            "in-flight cap without arrivals",
            cli.run_untimed(&["--max-in-flight", "5"]),
            &["--max-in-flight caps the open model"],
        ),
        (
            "bad arrival stage",
            cli.run_untimed(&["--arrival-stage", "1m"]),
            &["--arrival-stage", "DURATION:RATE"],
        ),
        (
            "unknown user class",
            cli.run(&["Workflow", "Chat"]),
            &["no user class `Chat`", "it has Workflow"],
        ),
        (
            "spawn rate NaN",
            cli.run(&["-r", "NaN"]),
            &["--spawn-rate", "NaN is not a spawn rate"],
        ),
        (
            "ftp host",
            cli.run_at("ftp://x", "2s", &[]),
            &["--host", "\"ftp://x\" is not a target"],
        ),
        (
            "host with a path",
            cli.run_at(&format!("{}/v1", cli.host), "2s", &[]),
            &["--host", "without a path"],
        ),
        (
            "liveness below two heartbeats",
            cli.run(&["--heartbeat-liveness", "1s"]),
            &["--heartbeat-liveness", "at least 2s"],
        ),
    ]
}

/// `barrage hunt` flags that do not make a hunt.
fn hunt_flag_cases(cli: &CommandLines<'_>) -> Vec<FlagCase> {
    vec![
        (
            "hunt SLO with a window",
            cli.hunt(&["--slo", "p95(ttfe)[60s] < 1s"]),
            &["--slo p95(ttfe)[60s] < 1s", "without [window]"],
        ),
        (
            "hunt max below start",
            cli.hunt(&["--slo", "error_rate < 1%", "--start", "50", "--max", "20"]),
            &["--max 20: below --start 50"],
        ),
        ("hunt without an SLO", cli.hunt(&[]), &["--slo"]),
        (
            "hunt with -u",
            cli.hunt(&["--slo", "error_rate < 1%", "-u", "5"]),
            &["hunt sets the load itself"],
        ),
        (
            "hunt started from the UI",
            cli.hunt(&["--slo", "error_rate < 1%", "--start-from-ui"]),
            &["--start-from-ui is for runs started from the web UI"],
        ),
    ]
}

/// clap's own usage errors: values of the wrong type, unknown flags and commands,
/// missing arguments.
fn clap_flag_cases(cli: &CommandLines<'_>) -> Vec<FlagCase> {
    let (g, host) = (cli.scenario, cli.host);
    vec![
        ("spawn rate abc", cli.run(&["-r", "abc"]), &["'abc'", "--spawn-rate"]),
        (
            "run time soon",
            cli.run_at(host, "soon", &[]),
            &["'soon'", "--run-time", "is not a duration"],
        ),
        (
            "run time too long for a Duration",
            cli.run_at(host, "1e20", &[]),
            &["'1e20'", "--run-time"],
        ),
        ("negative users", cli.run(&["--users=-3"]), &["'-3'", "--users"]),
        (
            // clap takes `-3` for a flag: the message names the value, not --users.
            "negative users, short flag",
            cli.run(&["-u", "-3"]),
            &["'-3'"],
        ),
        ("users abc", cli.run(&["-u", "abc"]), &["'abc'", "--users"]),
        (
            "unknown worker-loss policy",
            cli.run(&["--on-worker-loss", "panic"]),
            &["'panic'", "--on-worker-loss"],
        ),
        (
            "unknown flag",
            strings(&["run", "--headless", "-f", g, "-H", host, "-t", "2s", "--bogus"]),
            &["'--bogus'"],
        ),
        (
            "no scenario",
            strings(&["run", "-H", host, "-t", "2s"]),
            &["required", "--scenario"],
        ),
        ("no scenario to validate", strings(&["validate"]), &["--scenario"]),
        ("unknown command", strings(&["frobnicate"]), &["'frobnicate'"]),
    ]
}

/// Every flag case (ours, after clap, and clap's own usage errors: exit 2 as well), and
/// the same layer through the environment; what failed, described.
fn flag_case_failures(cli: &CommandLines<'_>) -> Vec<String> {
    let mut failed = Vec::new();
    let cases = run_flag_cases(cli)
        .into_iter()
        .chain(hunt_flag_cases(cli))
        .chain(clap_flag_cases(cli));
    for (what, args, expect) in cases {
        failed.extend(check_usage_error(what, &args, &run(&args), &strings(expect)).err());
    }

    // BARRAGE_RUN_* are the flags' values.
    for (var, value, expect) in [
        ("BARRAGE_RUN_SPAWN_RATE", "abc", ["'abc'", "--spawn-rate"]),
        ("BARRAGE_RUN_USERS", "ten", ["'ten'", "--users"]),
        ("BARRAGE_RUN_RUN_TIME", "soon", ["'soon'", "--run-time"]),
    ] {
        let args = cli.run_untimed(&[]);
        let out = barrage_with_key().args(&args).env(var, value).output().unwrap();
        failed.extend(check_usage_error(&format!("{var}={value}"), &args, &out, &strings(&expect)).err());
    }
    failed
}

/// `barrage run` of `scenario` against `host`, 1 user for 1 s: what a good invocation
/// does.
fn control_run(scenario: &str, host: &str) -> Output {
    barrage_with_key()
        .args(["run", "--headless", "-f", scenario, "-H", host])
        .args(["-u", "1", "-r", "100", "-t", "1s", "--workers", "1", "--only-summary"])
        .output()
        .unwrap()
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
            let mut failed = file_case_failures(&dir, &host);
            failed.extend(flag_case_failures(&CommandLines {
                scenario: &good_arg,
                host: &host,
            }));
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
    let out = tokio::task::spawn_blocking(move || control_run(&good_arg, &host))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(mock.state.ground_truth().requests > 0, "the control run sent nothing");
}
