//! The argument lowering, table by table: command lines over scenarios -> the run's
//! settings, or the usage error a user reads.

use std::time::Duration;

use clap::Parser;

use super::*;
use crate::cli::{Cli, Command, HuntArgs};

/// `[run]` settings, three presets (constant, stages, open model), two tagged tasks.
const FILE: &str = r#"
host = "http://127.0.0.1:9"
thresholds = ["error_rate < 5%"]
[run]
users = 5
spawn_rate = 2
run_time = "30s"
[presets.short]
users = 3
run_time = "5s"
[presets.ramp]
stages = [{ duration = "10s", users = 20 }, { duration = "20s", users = 40 }]
[presets.open]
arrival_rate = 7
arrival_stages = [{ duration = "1m", rate = 50 }]
max_in_flight = 30
[[users]]
name = "U"
wait = "constant(1)"
[[users.tasks]]
name = "/a"
path = "/a"
tags = ["read"]
[[users.tasks]]
name = "/b"
method = "POST"
path = "/b"
tags = ["write"]
events_per_request = 4
"#;

/// No `[run]`, no presets: every figure comes from the flags or the defaults.
const BARE: &str = r#"
host = "http://127.0.0.1:9"
[[users]]
name = "U"
wait = "between(1, 3)"
[[users.tasks]]
name = "/a"
path = "/a"
"#;

/// No host anywhere.
const NO_HOST: &str = r#"
[[users]]
name = "U"
[[users.tasks]]
name = "/a"
path = "/a"
"#;

fn scenario(text: &str) -> Scenario {
    scenario::parse_str(text, config::FileFormat::Toml, "test.toml", &|_: &str| None).unwrap()
}

/// `barrage COMMAND -f test.toml --headless FLAGS..`, parsed by the real parser (which
/// also reads `BARRAGE_RUN_*` variables: the tables assume none is set).
fn parse(command: &str, flags: &[&str]) -> Command {
    let argv = ["barrage", command, "-f", "test.toml", "--headless"]
        .into_iter()
        .chain(flags.iter().copied());
    Cli::try_parse_from(argv)
        .unwrap_or_else(|e| panic!("{flags:?}: {e}"))
        .command
}

/// `barrage run` with `flags` over `text`, as a setup or the error message.
fn resolve(text: &str, flags: &[&str]) -> Result<MasterSetup, String> {
    let Command::Run(args) = parse("run", flags) else {
        unreachable!("`barrage run` parses as run")
    };
    MasterSetup::resolve(&args.load, scenario(text), 2, Some(Duration::from_secs(30))).map_err(|f| {
        assert_eq!(f.code, crate::exit::EXIT_USAGE, "{flags:?}: {f}");
        f.message
    })
}

/// `barrage hunt` with `flags` over `text`, as a setup or the error message.
fn hunt(text: &str, flags: &[&str]) -> Result<MasterSetup, String> {
    let Command::Hunt(args) = parse("hunt", flags) else {
        unreachable!("`barrage hunt` parses as hunt")
    };
    let args: HuntArgs = args;
    hunt_setup(&args, scenario(text), 1).map_err(|f| f.message)
}

/// The load model a run ends up with, in figures a table can hold.
#[derive(Debug, PartialEq)]
struct Load {
    users: u32,
    spawn_rate: f64,
    /// Seconds; None runs until stopped.
    run_time: Option<u64>,
    /// The shape's stages as (seconds, users); empty without a shape.
    stages: Vec<(u64, u32)>,
    /// (start rate, stages, max in flight) under the open model.
    arrival: Option<(f64, usize, u32)>,
}

fn load_of(s: &MasterSetup) -> Load {
    Load {
        users: s.run.users,
        spawn_rate: s.run.spawn_rate,
        run_time: s.run.run_time.map(|d| d.as_secs()),
        stages: s
            .run
            .shape
            .iter()
            .flat_map(|sh| sh.stages.iter().map(|st| (st.duration.as_secs(), st.users)))
            .collect(),
        arrival: s
            .run
            .arrival
            .as_ref()
            .map(|a| (a.schedule.start_rate, a.schedule.stages.len(), a.max_in_flight)),
    }
}

const fn constant(users: u32, spawn_rate: f64, run_time: Option<u64>) -> Load {
    Load {
        users,
        spawn_rate,
        run_time,
        stages: Vec::new(),
        arrival: None,
    }
}

/// `got` is `want`, or begins with it when `want` ends in `..` (a message of
/// barrage-common's, whose tail its own tests check).
fn assert_message(got: &str, want: &str, case: &str) {
    match want.strip_suffix("..") {
        Some(start) => assert!(got.starts_with(start), "{case}: {got:?} does not start with {start:?}"),
        None => assert_eq!(got, want, "{case}"),
    }
}

/// Under the open model: no users, `start` iterations per second, `stages` rate stages.
const fn open(start: f64, stages: usize, in_flight: u32, run_time: Option<u64>) -> Load {
    Load {
        users: 0,
        spawn_rate: 2.0,
        run_time,
        stages: Vec::new(),
        arrival: Some((start, stages, in_flight)),
    }
}

/// Each case (name, scenario, flags, load model) resolves to its load model, and the
/// report's description of the run agrees.
fn check_loads(cases: Vec<(&str, &str, &[&str], Load)>) {
    for (name, text, flags, want) in cases {
        let setup = resolve(text, flags).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(load_of(&setup), want, "{name}: {flags:?}");
        assert_eq!(
            (setup.info.users, setup.info.spawn_rate, setup.info.arrival.is_some()),
            (want.users, want.spawn_rate, want.arrival.is_some()),
            "{name}: the report describes the run that runs"
        );
    }
}

/// Each case (name, scenario, flags, message) is a usage error with that message.
fn check_errors(cases: &[(&str, &str, &[&str], &str)]) {
    for (name, text, flags, want) in cases {
        match resolve(text, flags) {
            Ok(_) => panic!("{name}: {flags:?} resolved"),
            Err(got) => assert_message(&got, want, &format!("{name}: {flags:?}")),
        }
    }
}

#[test]
fn users_spawn_rate_and_run_time_come_from_flags_then_preset_then_scenario() {
    check_loads(vec![
        ("the scenario's [run]", FILE, &[], constant(5, 2.0, Some(30))),
        (
            "-u, -r and -t over [run]",
            FILE,
            &["-u", "9", "-r", "3", "-t", "1m"],
            constant(9, 3.0, Some(60)),
        ),
        (
            "-u alone keeps [run]'s rate and time",
            FILE,
            &["-u", "9"],
            constant(9, 2.0, Some(30)),
        ),
        (
            "a preset over [run]",
            FILE,
            &["--preset", "short"],
            constant(3, 2.0, Some(5)),
        ),
        (
            "flags over the preset",
            FILE,
            &["-P", "short", "-u", "4", "-t", "8s"],
            constant(4, 2.0, Some(8)),
        ),
        (
            "a preset's stages: the peak, [run]'s time",
            FILE,
            &["--preset", "ramp"],
            Load {
                stages: vec![(10, 20), (20, 40)],
                ..constant(40, 2.0, Some(30))
            },
        ),
        (
            "-u replaces a preset's stages",
            FILE,
            &["--preset", "ramp", "-u", "7"],
            constant(7, 2.0, Some(30)),
        ),
        (
            "--stage over [run]'s users",
            FILE,
            &["--stage", "10s:10", "--stage", "20s:30:5"],
            Load {
                stages: vec![(10, 10), (20, 30)],
                ..constant(30, 2.0, Some(30))
            },
        ),
        (
            "--stage alone: the stages' length",
            BARE,
            &["--stage", "10s:10", "--stage", "20s:30"],
            Load {
                stages: vec![(10, 10), (20, 30)],
                ..constant(30, 1.0, Some(30))
            },
        ),
        (
            "nothing anywhere: 1 user at 1/s until stopped",
            BARE,
            &[],
            constant(1, 1.0, None),
        ),
    ]);
}

#[test]
fn the_open_model_comes_from_flags_or_a_preset_unless_users_are_asked_for() {
    check_loads(vec![
        (
            "--arrival-rate: no users, no end",
            BARE,
            &["--arrival-rate", "12"],
            Load {
                spawn_rate: 1.0,
                ..open(12.0, 0, scenario::DEFAULT_MAX_IN_FLIGHT, None)
            },
        ),
        (
            "--arrival-stage: ends with its stages",
            BARE,
            &["--arrival-stage", "1m:50", "--max-in-flight", "20"],
            Load {
                spawn_rate: 1.0,
                ..open(0.0, 1, 20, Some(60))
            },
        ),
        (
            "a preset's open model",
            FILE,
            &["--preset", "open"],
            open(7.0, 1, 30, Some(30)),
        ),
        (
            "--max-in-flight over the preset's",
            FILE,
            &["-P", "open", "--max-in-flight", "5"],
            open(7.0, 1, 5, Some(30)),
        ),
        (
            "-u replaces a preset's open model",
            FILE,
            &["--preset", "open", "-u", "3"],
            constant(3, 2.0, Some(30)),
        ),
        (
            "--stage replaces a preset's open model",
            FILE,
            &["-P", "open", "--stage", "5s:4"],
            Load {
                stages: vec![(5, 4)],
                ..constant(4, 2.0, Some(30))
            },
        ),
    ]);
}

#[test]
fn load_flags_that_contradict_each_other_are_usage_errors() {
    let open_and_closed = "--arrival-rate / --arrival-stage (the open model) replace -u and --stage; give one or the \
                           other";
    check_errors(&[
        (
            "--arrival-rate with -u",
            FILE,
            &["--arrival-rate", "5", "-u", "3"],
            open_and_closed,
        ),
        (
            "--arrival-stage with --stage",
            FILE,
            &["--arrival-stage", "1m:5", "--stage", "1m:3"],
            open_and_closed,
        ),
        (
            "a negative arrival rate",
            FILE,
            &["--arrival-rate=-1"],
            "--arrival-rate: -1 is not an arrival rate; expected 0 or more per second",
        ),
        (
            "--max-in-flight without the open model",
            FILE,
            &["--max-in-flight", "5"],
            "--max-in-flight caps the open model; give --arrival-rate or --arrival-stage with it",
        ),
        (
            "--stage with -u",
            FILE,
            &["--stage", "10s:5", "-u", "3"],
            "--stage sets the users over time; leave out -u/--users",
        ),
        (
            "an unknown preset",
            FILE,
            &["--preset", "nope"],
            "--preset nope: test.toml has the presets open, ramp, short",
        ),
        (
            "a preset without [presets]",
            BARE,
            &["--preset", "x"],
            "--preset x: test.toml has no [presets]",
        ),
        (
            "a zero spawn rate",
            FILE,
            &["-r", "0"],
            "--spawn-rate: 0 is not a spawn rate; expected users per second above 0",
        ),
        (
            "a liveness under two heartbeats",
            FILE,
            &["--heartbeat-liveness", "1s"],
            "--heartbeat-liveness 1s: must be at least 2s (two heartbeats)",
        ),
    ]);
}

#[test]
fn bad_hosts_thresholds_classes_tags_and_tls_are_usage_errors() {
    check_errors(&[
        (
            "a host that is not a URL",
            FILE,
            &["-H", "localhost:80"],
            "--host: \"localhost:80\" is not a target; expected http://host:port or https://host:port",
        ),
        (
            "no host anywhere",
            NO_HOST,
            &[],
            "test.toml: no target host; pass -H/--host http://HOST:PORT or set `host` in the scenario",
        ),
        (
            "a threshold that does not parse",
            FILE,
            &["--threshold", "p95(ttfe) <"],
            "--threshold: threshold \"p95(ttfe) <\": latency limit: empty duration; expected e.g. 500ms, 20s, 1m30s; expected e.g. ..",
        ),
        (
            "a threshold on a row that does not exist",
            FILE,
            &["--threshold-abort", "p95(ttfe){name=/nope} < 1s"],
            "threshold on {name=/nope}: no stats row has that name; the rows are /a, /b",
        ),
        (
            "a goodput threshold without objectives",
            FILE,
            &["--threshold", "good_rate > 90%"],
            "threshold \"good_rate > 90%\": no task has goodput objectives to judge; add goodput = { ttfe = \"500ms\" } \
             to a task, [goodput] to the scenario, or --goodput",
        ),
        (
            "an unknown user class",
            FILE,
            &["Nobody"],
            "no user class `Nobody` in test.toml; it has U",
        ),
        (
            "tags that leave a class no task",
            FILE,
            &["--tags", "none"],
            "user class `U` has no task left after --tags [\"none\"] / --exclude-tags []",
        ),
        (
            "mutual TLS without TLS",
            FILE,
            &["--tls-client-ca", "ca.pem"],
            "--tls-client-ca needs --tls-cert and --tls-key (mutual TLS is TLS first)",
        ),
        (
            "half a TLS identity",
            FILE,
            &["--tls-cert", "c.pem"],
            "--tls-cert and --tls-key go together",
        ),
        (
            "a TLS file that cannot be read",
            FILE,
            &["--tls-cert", "/nonexistent/c.pem", "--tls-key", "k.pem"],
            "--tls-cert /nonexistent/c.pem: cannot read: No such file or directory (os error 2)",
        ),
    ]);
}

#[test]
fn thresholds_tags_and_report_settings_follow_the_flags() {
    let setup = resolve(
        FILE,
        &[
            "--threshold",
            "p95(ttfe) < 500ms",
            "--threshold-abort",
            "p99(response_time){name=/b} < 2s",
            "--tags",
            "read",
            "--insecure",
            "--exit-code-on-error",
            "7",
            "--json",
            "out.json",
            "--csv",
            "out",
        ],
    )
    .unwrap();
    let thresholds: Vec<(&str, bool)> = setup
        .run
        .thresholds
        .list
        .iter()
        .map(|t| (t.text.as_str(), t.abort_on_fail))
        .collect();
    assert_eq!(
        thresholds,
        [
            ("error_rate < 5%", false),
            ("p95(ttfe) < 500ms", false),
            ("p99(response_time){name=/b} < 2s", true)
        ],
        "the file's first, then --threshold, then --threshold-abort"
    );
    let events = [(("/b".to_string(), "POST".to_string()), 4)].into();
    assert_eq!(
        setup.run.thresholds.events_per_request, events,
        "/b's events count though --tags left it out"
    );
    assert_eq!(setup.info.events_per_request, events);
    let tasks: Vec<usize> = setup.plan.classes.iter().map(|c| c.tasks.len()).collect();
    assert_eq!(tasks, [1], "--tags read keeps /a only");
    assert!(setup.plan.limits.tls_insecure);
    assert_eq!(setup.exit_code_on_error, 7);
    assert_eq!(setup.json.as_deref(), Some(std::path::Path::new("out.json")));
    assert!(setup.csv.is_some() && setup.run.csv_history.is_some());
    assert!(setup.web.is_none(), "--headless");
    assert_eq!(setup.run.expect_workers, 2);
    assert_eq!(setup.run.expect_workers_max_wait, Some(Duration::from_secs(30)));
    assert_eq!(setup.run.host, None, "no -H: the plan's host stands");
    assert_eq!(setup.info.host.as_deref(), Some("http://127.0.0.1:9"));

    let plain = resolve(FILE, &["-H", "http://10.0.0.1:8080"]).unwrap();
    assert_eq!(
        plain.exit_code_on_error,
        crate::exit::EXIT_FAILURES,
        "failed requests fail the run"
    );
    assert_eq!(plain.run.host.as_deref(), Some("http://10.0.0.1:8080"));
    assert_eq!(
        plain.info.host.as_deref(),
        Some("http://10.0.0.1:8080"),
        "-H over the file's host"
    );
    assert!(!plain.plan.limits.tls_insecure);
    assert_eq!(plain.run.classes, [("U".to_string(), 1, None)]);
}

#[test]
fn hunt_steps_its_own_load_and_refuses_flags_that_would_set_it() {
    let errors: &[(&[&str], &str)] = &[
        (
            &["-u", "5"],
            "hunt sets the load itself (--start, --step, --max; --arrival for rates); leave out -u, --stage, \
             --arrival-rate and --arrival-stage",
        ),
        (
            &["--arrival-rate", "5"],
            "hunt sets the load itself (--start, --step, --max; --arrival for rates); leave out -u, --stage, \
             --arrival-rate and --arrival-stage",
        ),
        (
            &["--max-in-flight", "5"],
            "--max-in-flight caps the open model; hunt with --arrival to step arrival rates",
        ),
        (
            &["--arrival", "--arrival-process", "poisson"],
            "hunt --arrival steps a constant arrival rate; leave out --arrival-process, --arrival-burstiness and \
             --arrival-seed",
        ),
        (
            &["--slo", "good_rate > 90%"],
            "--slo good_rate > 90%: no task has goodput objectives to judge; add goodput = { ttfe = \"500ms\" } to a \
             task, [goodput] to the scenario, or --goodput",
        ),
        (
            &["--slo", "p95(ttfe) <"],
            "--slo: threshold \"p95(ttfe) <\": latency limit: empty duration; expected e.g. 500ms, 20s, 1m30s; expected e.g. ..",
        ),
    ];
    for (flags, want) in errors {
        let flags: Vec<&str> = ["--slo", "error_rate < 1%"]
            .iter()
            .chain(flags.iter())
            .copied()
            .collect();
        let got = hunt(FILE, &flags).err().unwrap_or_else(|| panic!("{flags:?} resolved"));
        assert_message(&got, want, &format!("{flags:?}"));
    }

    let users = hunt(
        BARE,
        &[
            "--slo",
            "error_rate < 1%",
            "--search",
            "linear",
            "--stable-within",
            "off",
            "--start",
            "20",
            "--step",
            "10",
            "--max",
            "90",
        ],
    )
    .unwrap();
    assert_eq!(
        (users.run.users, users.run.spawn_rate, users.run.arrival.is_some()),
        (90, 20.0 * 10.0 / 60.0, false),
        "room for --max users, each step reached within a tenth of --step-time"
    );
    assert!(users.run.hunt.is_some() && users.run.shape.is_none());
    assert_eq!(users.exit_code_on_error, 0, "failed requests are what a hunt looks for");
    let rates = hunt(
        BARE,
        &[
            "--slo",
            "error_rate < 1%",
            "--arrival",
            "--start",
            "4",
            "--max-in-flight",
            "9",
            "-r",
            "3",
        ],
    )
    .unwrap();
    assert_eq!(
        (rates.run.users, rates.run.spawn_rate),
        (0, 3.0),
        "the open model: no users; -r stands"
    );
    let a = rates.run.arrival.as_ref().unwrap();
    assert_eq!((a.schedule.start_rate, a.max_in_flight), (4.0, 9));
    assert_eq!(rates.info.arrival, rates.run.arrival);
}

#[test]
fn hunt_search_and_stop_flags_lower_into_its_settings() {
    // The defaults: a geometric search in 11 probes and the re-measure, to 5 %, steps
    // ending stable within 5 % after 15 s; the largest jump (the last climb to --max)
    // reached within a tenth of the shortest step.
    let geometric = hunt(BARE, &["--slo", "p95(ttfe) < 1s", "--max", "2000"]).unwrap();
    let h = geometric.run.hunt.as_ref().unwrap().lock().unwrap();
    let cfg = h.config();
    assert_eq!(
        (cfg.search.kind, cfg.search.budget, cfg.search.resolution, cfg.remeasure),
        (
            crate::hunt::search::SearchKind::Geometric,
            11,
            crate::hunt::search::Resolution::Fraction(0.05),
            true
        )
    );
    assert_eq!((cfg.stop.within, cfg.stop.min), (Some(0.05), Duration::from_secs(15)));
    let jump = 2000.0 * (1.0 - 1.0 / cfg.search.growth);
    assert!(
        (geometric.run.spawn_rate - jump * 10.0 / 15.0).abs() < 1e-9,
        "{}",
        geometric.run.spawn_rate
    );
    drop(h);
    let tuned = hunt(
        BARE,
        &[
            "--slo",
            "error_rate < 1%",
            "--no-remeasure",
            "--max-probes",
            "8",
            "--resolution",
            "3",
            "--stable-within",
            "0.1",
            "--min-step-time",
            "20s",
        ],
    )
    .unwrap();
    let h = tuned.run.hunt.as_ref().unwrap().lock().unwrap();
    let cfg = h.config();
    assert_eq!(
        (
            cfg.search.budget,
            cfg.search.resolution,
            cfg.remeasure,
            cfg.stop.within,
            cfg.stop.min
        ),
        (
            8,
            crate::hunt::search::Resolution::Absolute(3),
            false,
            Some(0.1),
            Duration::from_secs(20)
        )
    );
    drop(h);
    for (flags, want) in [
        (
            &["--min-step-time", "2m"][..],
            "--min-step-time: at most --step-time (the longest a step runs)",
        ),
        (
            &["--max-probes", "1"][..],
            "--max-probes: at least 2 with the boundary's re-measure, 1 without (--no-remeasure)",
        ),
    ] {
        let flags: Vec<&str> = ["--slo", "error_rate < 1%"].iter().chain(flags).copied().collect();
        assert_eq!(hunt(BARE, &flags).err().as_deref(), Some(want), "{flags:?}");
    }
}

#[test]
fn the_mean_wait_weighs_each_class_wait_by_its_users() {
    let two = r#"
host = "http://127.0.0.1:9"
[[users]]
name = "Slow"
weight = 3
wait = "between(2, 4)"
[[users.tasks]]
path = "/a"
[[users]]
name = "Fast"
weight = 1
wait = "constant(1)"
[[users.tasks]]
path = "/b"
[[users]]
name = "Paced"
weight = 0
fixed_count = 4
wait = "pacing(10)"
[[users.tasks]]
path = "/c"
"#;
    let cases: &[(&str, Duration)] = &[
        (BARE, Duration::from_secs(2)),
        // (3 * 3 s + 1 * 1 s + 4 * 0 s) / 8: a pacing user's cycle is its pacing.
        (two, Duration::from_millis(1250)),
    ];
    for (text, want) in cases {
        assert_eq!(hunt_setup::mean_wait(&scenario(text).plan), *want);
    }
}

/// Shapes, arrival stages and the hunt change the load by design: the report leaves
/// out the drift table for them (`RunInfo::load_varies`), and only for them.
#[test]
fn shaped_runs_and_hunts_are_marked_as_varying_their_load() {
    let cases: &[(&str, &[&str], bool)] = &[
        ("constant users", &["-u", "5", "-t", "1m"], false),
        ("constant arrival rate", &["--arrival-rate", "12"], false),
        ("--stage", &["--stage", "10s:10", "--stage", "20s:30"], true),
        ("--arrival-stage", &["--arrival-stage", "1m:50"], true),
    ];
    for (case, flags, varies) in cases {
        let setup = resolve(BARE, flags).unwrap_or_else(|e| panic!("{case}: {e}"));
        assert_eq!(setup.info.load_varies, *varies, "{case}");
    }
    let hunted = hunt(BARE, &["--slo", "error_rate < 1%"]).unwrap();
    assert!(hunted.info.load_varies, "a hunt steps its load");
}

#[test]
fn the_arrival_process_takes_flags_over_the_preset_over_the_run() {
    use barrage_common::arrival_process::ArrivalProcess;
    let file = FILE.replace(
        "max_in_flight = 30\n",
        "max_in_flight = 30\narrival_process = \"gamma\"\nburstiness = 0.5\nseed = 7\n",
    );
    let process = |text: &str, flags: &[&str]| {
        let s = resolve(text, flags).unwrap();
        let a = s.run.arrival.clone().unwrap();
        assert_eq!(s.info.arrival, s.run.arrival, "{flags:?}");
        (a.process, a.seed)
    };
    let gamma = |shape| ArrivalProcess::Gamma { shape };
    // The preset's; each flag over it; a burstiness alone reshapes its gamma.
    assert_eq!(process(&file, &["-P", "open"]), (gamma(0.5), Some(7)));
    assert_eq!(
        process(&file, &["-P", "open", "--arrival-seed", "9"]),
        (gamma(0.5), Some(9))
    );
    assert_eq!(
        process(&file, &["-P", "open", "--arrival-burstiness", "2"]),
        (gamma(2.0), Some(7))
    );
    assert_eq!(
        process(&file, &["-P", "open", "--arrival-process", "poisson"]),
        (ArrivalProcess::Poisson, Some(7))
    );
    // From the flags alone; no seed given: one is drawn, and said (53 bits).
    let (p, seed) = process(BARE, &["--arrival-rate", "5", "--arrival-process", "poisson"]);
    assert_eq!(p, ArrivalProcess::Poisson);
    assert!(seed.is_some_and(|s| s < 1 << 53), "{seed:?}");
    assert_eq!(
        process(BARE, &["--arrival-rate", "5"]),
        (ArrivalProcess::Constant, None)
    );
    assert_eq!(
        process(
            BARE,
            &[
                "--arrival-rate",
                "5",
                "--arrival-process",
                "gamma",
                "--arrival-burstiness",
                "4",
                "--arrival-seed",
                "1"
            ]
        ),
        (gamma(4.0), Some(1))
    );
}

#[test]
fn arrival_process_flags_that_do_not_fit_are_usage_errors() {
    check_errors(&[
        (
            "gamma without a burstiness",
            BARE,
            &["--arrival-rate", "5", "--arrival-process", "gamma"],
            "--arrival-burstiness: gamma needs a burstiness (its shape k, e.g. 0.5: burstier than Poisson)",
        ),
        (
            "a burstiness of 0",
            BARE,
            &[
                "--arrival-rate",
                "5",
                "--arrival-process",
                "gamma",
                "--arrival-burstiness",
                "0",
            ],
            "--arrival-burstiness: 0 is not a burstiness; expected a number of at least 0.001..",
        ),
        (
            "an infinite burstiness",
            BARE,
            &[
                "--arrival-rate",
                "5",
                "--arrival-process",
                "gamma",
                "--arrival-burstiness",
                "inf",
            ],
            "--arrival-burstiness: inf is not a burstiness; expected a number of at least 0.001..",
        ),
        (
            "a burstiness for poisson",
            BARE,
            &[
                "--arrival-rate",
                "5",
                "--arrival-process",
                "poisson",
                "--arrival-burstiness",
                "2",
            ],
            "--arrival-burstiness: burstiness shapes the gamma process; poisson takes none..",
        ),
        (
            "a seed for the constant rate",
            BARE,
            &["--arrival-rate", "5", "--arrival-seed", "3"],
            "--arrival-seed seeds a random arrival process; give --arrival-process poisson or gamma",
        ),
        (
            "a process without the open model",
            FILE,
            &["--arrival-process", "poisson"],
            "--arrival-process spaces the arrivals of the open model; give --arrival-rate or --arrival-stage with it",
        ),
    ]);
}

/// `--goodput` lies over the scenario's `[goodput]` for the tasks without their own,
/// and `good_rate` is a hunt SLO like `error_rate`.
#[test]
fn goodput_flag_over_the_scenario_and_good_rate_as_a_hunt_slo() {
    let file = BARE.replace("[[users]]", "[goodput]\nresponse_time = \"5s\"\n[[users]]")
        + "[[users.tasks]]\nname = \"/own\"\npath = \"/own\"\ngoodput = { response_time = \"1s\" }\n";
    let bound = |s: &MasterSetup| -> Vec<Option<u64>> {
        s.plan.classes[0]
            .tasks
            .iter()
            .map(|t| t.goodput.and_then(|g| g.response_time_us))
            .collect()
    };
    assert_eq!(bound(&resolve(&file, &[]).unwrap()), [Some(5_000_000), Some(1_000_000)]);
    let flagged = resolve(&file, &["--goodput", "response_time=2s"]).unwrap();
    assert_eq!(
        bound(&flagged),
        [Some(2_000_000), Some(1_000_000)],
        "a task's own stays"
    );
    assert_eq!(
        bound(&resolve(BARE, &[]).unwrap()),
        [None],
        "no objectives anywhere: none"
    );
    assert_eq!(
        resolve(BARE, &["--goodput", "ttfb=1s"]).err().unwrap(),
        "--goodput: goodput.ttfb: `ttfb` is not a goodput objective; expected ttfe, ttft, chunk_gap_p95, response_time"
    );
    // A goodput threshold needs objectives on its rows: the flag gives them.
    assert!(resolve(BARE, &["--threshold", "goodput{name=/a} > 1"]).is_err());
    assert!(
        resolve(
            BARE,
            &["--goodput", "response_time=1s", "--threshold", "goodput{name=/a} > 1"]
        )
        .is_ok()
    );
    let hunted = hunt(&file, &["--slo", "good_rate > 95%"]).unwrap();
    assert!(hunted.run.hunt.is_some());
    let windowed = hunt(&file, &["--slo", "good_rate[10s] > 95%"]).err().unwrap();
    assert!(windowed.contains("goodput, good_rate"), "{windowed}");
}
