use std::time::Duration;

use super::*;
use crate::arrival_process::ArrivalProcess;
use crate::plan::{DifyApp, PoolMode, SseSpec, TaskKind, TaskOrder, Wait};

fn env(name: &str) -> Option<String> {
    (name == "DIFY_API_KEY").then(|| "app-secret".to_string())
}

fn parse(text: &str) -> Result<Scenario> {
    parse_str(text, config::FileFormat::Toml, "s.toml", &env)
}

const GOOD: &str = r#"
host = "http://127.0.0.1:5001"
[run]
users = 10
spawn_rate = 2.5
run_time = "30s"
[data.question]
values = ["What is Dify?", "Why?"]
[[users]]
name = "Workflow"
wait = "between(1, 3)"
[[users.tasks]]
method = "post"
path = "/v1/workflows/run"
kind = "sse"
terminal_event = "workflow_finished"
headers = { Authorization = "Bearer ${DIFY_API_KEY}" }
body = '{"inputs": {"query": "{{question}}"}, "user": "{{user}}"}'
"#;

#[test]
fn good_scenario_validates() {
    let s = parse(GOOD).unwrap();
    assert_eq!(
        s.run,
        RunDefaults {
            users: Some(10),
            spawn_rate: Some(2.5),
            run_time: Some(Duration::from_secs(30)),
            shape: None,
            arrival: None,
            arrival_trace: None,
        }
    );
    let class = &s.plan.classes[0];
    assert_eq!(
        class.wait,
        Wait::Between(Duration::from_secs(1), Duration::from_secs(3))
    );
    let task = &class.tasks[0];
    assert_eq!(task.method, "POST");
    assert_eq!(task.name, "/v1/workflows/run");
    assert!(matches!(&task.kind, TaskKind::Sse(s) if s.terminal_event.as_deref() == Some("workflow_finished")));
    assert_eq!(s.plan.secrets(), ["app-secret"]);
    assert_eq!(s.plan.pools["question"].entries.len(), 2);
    let back = RunPlan::from_json(&s.plan.to_json()).unwrap();
    assert_eq!(back.classes[0].tasks[0].headers, task.headers);
}

/// Each bad input gives one error that names the field and what was expected.
#[test]
fn bad_fields_are_named() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "wait = \"between(1, 3)\"",
            "wait = \"betwen(1,3)\"",
            "users[0].wait: \"betwen(1,3)\" is not a wait; expected constant(S), between(A, B) or pacing(S)",
        ),
        (
            "kind = \"sse\"",
            "kind = \"stream\"",
            "users[0].tasks[0].kind: \"stream\" is not a task kind",
        ),
        (
            "${DIFY_API_KEY}",
            "${NOPE}",
            "users[0].tasks[0].headers.Authorization: environment variable `NOPE` is not set",
        ),
        (
            "{{question}}",
            "{{questoin}}",
            "users[0].tasks[0].body: `{{questoin}}` is neither a data pool nor a builtin",
        ),
        ("users = 10", "users = -1", "run.users: -1 is not a user count"),
        (
            "run_time = \"30s\"",
            "run_time = \"soon\"",
            "run.run_time: \"soon\" is not a duration",
        ),
        ("http://127.0.0.1:5001", "ftp://x", "host: \"ftp://x\" is not a target"),
        (
            "kind = \"sse\"",
            "kind = \"sse\"\napp = \"chat\"",
            "users[0].tasks[0].app: only applies to kind = \"dify\"",
        ),
        (
            "kind = \"sse\"\nterminal_event = \"workflow_finished\"",
            "kind = \"dify\"\napp = \"robot\"",
            "users[0].tasks[0].app: \"robot\" is not a Dify app type",
        ),
        (
            "kind = \"sse\"",
            "kind = \"sse\"\nconnection = \"sometimes\"",
            "users[0].tasks[0].connection: \"sometimes\" is not a connection policy",
        ),
        (
            "method = \"post\"",
            "method = \"yeet\"",
            "users[0].tasks[0].method: \"YEET\" is not a method",
        ),
        (
            "path = \"/v1/workflows/run\"",
            "path = \"v1\"",
            "users[0].tasks[0].path: \"v1\" must start with `/`",
        ),
        (
            "kind = \"sse\"",
            "kind = \"sse\"\ngoodput = { ttfb = \"1s\" }",
            "users[0].tasks[0].goodput.ttfb: `ttfb` is not a goodput objective; expected ttfe, ttft, chunk_gap_p95, response_time",
        ),
        (
            "kind = \"sse\"",
            "kind = \"sse\"\ngoodput = {}",
            "users[0].tasks[0].goodput: is empty; give at least one of ttfe",
        ),
        (
            "[run]",
            "[goodput]\nttfe = \"fast\"\n[run]",
            "goodput.ttfe: \"fast\" is not a duration",
        ),
    ];
    for (from, to, want) in cases {
        assert!(GOOD.contains(from), "case {from}");
        let err = parse(&GOOD.replace(from, to)).unwrap_err().to_string();
        assert!(err.starts_with("s.toml: "), "{err}");
        assert!(err.contains(want), "want {want:?}\n got {err:?}");
    }
}

#[test]
fn unknown_fields_and_syntax_errors_are_reported() {
    let err = parse(&GOOD.replace("spawn_rate = 2.5", "spawn_rat = 2.5"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("spawn_rat"), "{err}");
    let err = parse("users = [").unwrap_err().to_string();
    assert!(err.starts_with("s.toml: "), "{err}");
    let err = parse("host = \"http://x\"").unwrap_err().to_string();
    assert!(err.contains("users: no user classes"), "{err}");
}

#[test]
fn zero_weights_are_refused() {
    let text = GOOD.replace("name = \"Workflow\"", "name = \"Workflow\"\nweight = 0");
    assert!(
        parse(&text)
            .unwrap_err()
            .to_string()
            .contains("every user class has weight 0")
    );
}

#[test]
fn files_load_by_extension_with_pool_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("q.txt"), "one\n\ntwo\n").unwrap();
    let toml = GOOD.replace("values = [\"What is Dify?\", \"Why?\"]", "file = \"q.txt\"");
    std::fs::write(dir.path().join("s.toml"), toml).unwrap();
    let s = load(&dir.path().join("s.toml"), &env).unwrap();
    assert_eq!(s.plan.pools["question"].entries, ["one", "two"]);
    let err = load(&dir.path().join("s.json"), &env).unwrap_err().to_string();
    assert!(err.contains("name the file *.toml"), "{err}");
    let err = load(&dir.path().join("missing.toml"), &env).unwrap_err().to_string();
    assert!(err.contains("cannot read"), "{err}");
}

#[test]
fn yaml_works_too() {
    let yaml = r#"
host: http://127.0.0.1:5001
users:
  - name: Api
    tasks:
      - path: /health
"#;
    let s = parse_str(yaml, config::FileFormat::Yaml, "s.yaml", &env).unwrap();
    assert_eq!(s.plan.classes[0].tasks[0].method, "GET");
}

#[test]
fn waits_parse() {
    assert_eq!(
        parse_wait("constant(0.5)").unwrap(),
        Wait::Constant(Duration::from_millis(500))
    );
    assert_eq!(parse_wait("pacing(2s)").unwrap(), Wait::Pacing(Duration::from_secs(2)));
    assert!(parse_wait("between(3, 1)").is_err());
    assert!(parse_wait("pacing(0)").is_err());
}

#[test]
fn dify_tasks_infer_the_app_from_the_path() {
    let text = GOOD.replace(
        "kind = \"sse\"\nterminal_event = \"workflow_finished\"",
        "kind = \"dify\"",
    );
    let s = parse(&text).unwrap();
    match &s.plan.classes[0].tasks[0].kind {
        TaskKind::Sse(SseSpec {
            dify: Some(d),
            terminal_event: None,
            ..
        }) => assert_eq!(d.app, DifyApp::Workflow),
        other => panic!("{other:?}"),
    }
    let chat = text.replace("/v1/workflows/run", "/v1/chat-messages");
    let s = parse(&chat.replace("kind = \"dify\"", "kind = \"dify\"\nconversation_turns = 3")).unwrap();
    match &s.plan.classes[0].tasks[0].kind {
        TaskKind::Sse(SseSpec { dify: Some(d), .. }) => assert_eq!((d.app, d.conversation_turns), (DifyApp::Chat, 3)),
        other => panic!("{other:?}"),
    }
    let err = parse(&text.replace("/v1/workflows/run", "/v1/other"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot tell the Dify app type"), "{err}");
}

#[test]
fn secret_pools_come_from_the_environment_and_never_print() {
    let text = GOOD.replace(
        "values = [\"What is Dify?\", \"Why?\"]",
        "env = [\"DIFY_API_KEY\"]\nmode = \"per_user\"",
    );
    let s = parse(&text).unwrap();
    let pool = &s.plan.pools["question"];
    assert!(pool.secret);
    assert_eq!(pool.mode, PoolMode::PerUser);
    assert!(s.plan.secrets().contains(&"app-secret".to_string()));
    assert!(
        !format!("{:?}", s.plan).contains("app-secret"),
        "Debug of the plan must redact pool secrets"
    );
    let err = parse(&text.replace("DIFY_API_KEY\"]", "NOPE\"]"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("data.question.env: environment variable `NOPE` is not set"),
        "{err}"
    );
    let err = parse(&text.replace("per_user", "shuffle")).unwrap_err().to_string();
    assert!(err.contains("is not a pool mode"), "{err}");
}

#[test]
fn yaml_aliases_are_refused_before_expansion() {
    let yaml =
        "host: &h http://127.0.0.1:5001\nusers:\n  - name: Api\n    host: *h\n    tasks:\n      - path: /health\n";
    let err = parse_str(yaml, config::FileFormat::Yaml, "s.yaml", &env)
        .unwrap_err()
        .to_string();
    assert!(err.contains("line 4: YAML aliases (*name) are not supported"), "{err}");
}

#[test]
fn order_on_start_and_tags() {
    let text = GOOD.replace(
        "wait = \"between(1, 3)\"",
        "wait = \"between(1, 3)\"\norder = \"sequential\"",
    ) + "tags = [\"a\"]\n[[users.on_start]]\npath = \"/login\"\n";
    let s = parse(&text).unwrap();
    let class = &s.plan.classes[0];
    assert_eq!(class.order, TaskOrder::Sequential);
    assert_eq!(class.on_start.len(), 1);
    assert_eq!(class.tasks[0].tags, ["a"]);
    let mut plan = s.plan.clone();
    filter_tags(&mut plan, &["a".into()], &[]).unwrap();
    let err = filter_tags(&mut plan, &[], &["a".into()]).unwrap_err();
    assert!(err.contains("user class `Workflow` has no task left"), "{err}");
    let err = parse(&text.replace("\"sequential\"", "\"shuffled\""))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("users[0].order: \"shuffled\" is not a task order"),
        "{err}"
    );
}

#[test]
fn fixed_count_classes() {
    let text = GOOD.replace(
        "name = \"Workflow\"",
        "name = \"Workflow\"\nweight = 0\nfixed_count = 2",
    );
    let s = parse(&text).unwrap();
    assert_eq!(s.plan.classes[0].fixed_count, Some(2));
    let err = parse(&text.replace("fixed_count = 2", "fixed_count = -2"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("users[0].fixed_count: -2 is not a user count"), "{err}");
}

#[test]
fn json_bodies_are_tables_and_escape_what_they_render() {
    let s = parse(
        r#"
[data.q]
values = ["x"]
[[users]]
name = "U"
[[users.tasks]]
method = "POST"
path = "/v1/workflows/run"
json = { inputs = { query = "{{q}}", n = 3, deep = [true, 1.5] }, response_mode = "streaming", user = "{{user}}", key = "${DIFY_API_KEY}" }
"#,
    )
    .unwrap();
    let task = &s.plan.classes[0].tasks[0];
    assert!(task.json_body);
    let body = task.body.as_ref().unwrap();
    let mut out = String::new();
    body.render_json_into(&mut out, &mut |name, out| {
        out.push_str(if name == "q" { "say \"hi\"\\\n\u{1}" } else { "u-1" })
    });
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(
        v["inputs"]["query"], "say \"hi\"\\\n\u{1}",
        "quotes, backslash, newline, control"
    );
    assert_eq!(v["inputs"]["n"], 3);
    assert_eq!(v["inputs"]["deep"], serde_json::json!([true, 1.5]));
    assert_eq!(v["user"], "u-1");
    assert_eq!(v["key"], "app-secret");
    assert_eq!(v.as_object().unwrap().len(), 4, "no value added a field");

    let both = parse(
        r#"
[[users]]
name = "U"
[[users.tasks]]
path = "/"
body = "x"
json = { a = 1 }
"#,
    )
    .unwrap_err()
    .to_string();
    assert!(both.contains("`body` or `json`, not both"), "{both}");
}

#[test]
fn csv_pools_become_one_pool_per_column_sharing_rows() {
    let dir = tempfile::tempdir().unwrap();
    let write = |csv: &str| {
        std::fs::write(dir.path().join("a.csv"), csv).unwrap();
        std::fs::write(
            dir.path().join("s.toml"),
            "[data.acc]\ncsv = \"a.csv\"\n[[users]]\n[[users.tasks]]\npath = \"/{{acc.email}}/{{acc.key}}\"\n",
        )
        .unwrap();
        load(&dir.path().join("s.toml"), &env)
    };
    let s = write("email,key\na,1\nb,2\n").unwrap();
    let (email, key) = (&s.plan.pools["acc.email"], &s.plan.pools["acc.key"]);
    assert_eq!(email.entries, ["a", "b"]);
    assert_eq!(key.entries, ["1", "2"]);
    assert_eq!((email.row_group, key.row_group), (Some(0), Some(0)));
    for (csv, says) in [
        ("email,key\na,1\nb\n", "fields"),
        ("email,bad-name\na,1\n", "not a variable name"),
        ("email,key\n", "no rows"),
        ("email,email\na,1\n", "appears twice"),
    ] {
        let e = write(csv).unwrap_err().to_string();
        assert!(e.contains(says) && e.contains("data.acc.csv"), "{csv:?}: {e}");
    }
}

#[test]
fn presets_lie_over_run_and_are_checked() {
    let text = format!("{GOOD}\n[presets.soak]\nusers = 3\nrun_time = \"1h\"\n[presets.spike]\nspawn_rate = 50\n");
    let s = parse(&text).unwrap();
    assert_eq!(
        s.presets["soak"].over(&s.run),
        RunDefaults {
            users: Some(3),
            spawn_rate: Some(2.5),
            run_time: Some(Duration::from_secs(3600)),
            shape: None,
            arrival: None,
            arrival_trace: None,
        }
    );
    assert_eq!(s.presets["spike"].over(&s.run).spawn_rate, Some(50.0));
    assert_eq!(s.presets["spike"].over(&s.run).users, Some(10));
    for (bad, field) in [
        ("users = -1", "presets.soak.users"),
        ("spawn_rate = 0", "presets.soak.spawn_rate"),
        ("colour = 1", "colour"),
    ] {
        let err = parse(&text.replace("users = 3", bad)).unwrap_err().to_string();
        assert!(err.contains(field), "{bad}: {err}");
    }
}

#[test]
fn classes_are_selected_by_name() {
    let text = format!("{GOOD}\n[[users]]\nname = \"Other\"\n[[users.tasks]]\npath = \"/x\"\n");
    let s = parse(&text).unwrap();
    let mut plan = s.plan.clone();
    select_classes(&mut plan, &["Other".into()]).unwrap();
    assert_eq!(
        plan.classes.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        ["Other"]
    );
    let mut plan = s.plan.clone();
    select_classes(&mut plan, &[]).unwrap();
    assert_eq!(plan.classes.len(), 2);
    let err = select_classes(&mut plan, &["Workflow".into(), "Nope".into()]).unwrap_err();
    assert!(
        err.contains("no user class `Nope`") && err.contains("Workflow, Other"),
        "{err}"
    );
    let zero = parse(&text.replace("name = \"Other\"", "name = \"Other\"\nweight = 0")).unwrap();
    let mut plan = zero.plan.clone();
    let err = select_classes(&mut plan, &["Other".into()]).unwrap_err();
    assert!(err.contains("weight 0"), "{err}");
}

#[test]
fn thresholds_are_strings_or_tables() {
    let text =
        format!("thresholds = [\"p95(ttfe) < 500ms\", {{ expr = \"error_rate < 5%\", abort_on_fail = true }}]\n{GOOD}");
    let s = parse(&text).unwrap();
    assert_eq!(s.thresholds.len(), 2);
    assert!(!s.thresholds[0].abort_on_fail);
    assert!(s.thresholds[1].abort_on_fail);
    assert_eq!(s.thresholds[1].limit, 0.05);
    let err = parse(&text.replace("p95(ttfe)", "p95(ttfx)")).unwrap_err().to_string();
    assert!(
        err.contains("thresholds[0]") && err.contains("`ttfx` is not a latency"),
        "{err}"
    );
}

#[test]
fn shapes_are_stages_step_or_spike() {
    let with = |run: &str| parse(&GOOD.replace("users = 10\nspawn_rate = 2.5\nrun_time = \"30s\"", run));
    let s = with("stages = [{ duration = \"1m\", users = 100 }, { duration = \"30s\", users = 0, spawn_rate = 20 }]")
        .unwrap();
    let shape = s.run.shape.unwrap();
    assert_eq!(shape.stages.len(), 2);
    assert_eq!(shape.stages[1].spawn_rate, Some(20.0));
    assert_eq!(shape.duration(), Duration::from_secs(90));
    let s = with("step = { start = 10, step = 20, every = \"2m\", max = 200 }").unwrap();
    assert_eq!(s.run.shape.unwrap().peak_users(), 200);
    let s = with("spike = { users = 10, peak = 200, before = \"1m\", hold = \"30s\", after = \"1m\" }").unwrap();
    assert_eq!(s.run.shape.unwrap().stages[1].users, 200);
    for (run, says) in [
        ("stages = []", "run.stages: an empty list"),
        (
            "stages = [{ duration = \"soon\", users = 1 }]",
            "run.stages[0].duration",
        ),
        ("stages = [{ duration = \"1s\", users = -1 }]", "run.stages[0].users"),
        (
            "stages = [{ duration = \"1s\", users = 1, spawn_rate = 0 }]",
            "run.stages[0].spawn_rate",
        ),
        (
            "users = 5\nstages = [{ duration = \"1s\", users = 1 }]",
            "leave out users",
        ),
        (
            "step = { start = 50, step = 1, every = \"1s\", max = 10 }",
            "run.step.max: 10 is below start",
        ),
        (
            "step = { start = 1, step = 1, every = \"0s\", max = 10 }",
            "run.step.every",
        ),
        (
            "step = { start = 1, step = 1, every = \"1s\", max = 2 }\nspike = { users = 1, peak = 2, before = \"1s\", hold = \"1s\", after = \"1s\" }",
            "give one shape",
        ),
    ] {
        let err = with(run).unwrap_err().to_string();
        assert!(err.contains(says), "{run}: {err}");
    }
    // A preset's shape replaces [run]'s users, and its users replace [run]'s shape.
    let text = format!("{GOOD}\n[presets.ramp]\nstages = [{{ duration = \"5s\", users = 3 }}]\n");
    let s = parse(&text).unwrap();
    let ramp = s.presets["ramp"].over(&s.run);
    assert_eq!((ramp.users, ramp.shape.map(|s| s.peak_users())), (None, Some(3)));
}

#[test]
fn the_open_model_spaces_its_arrivals_by_a_seeded_process() {
    let with = |run: &str| parse(&GOOD.replace("users = 10\nspawn_rate = 2.5\nrun_time = \"30s\"", run));
    let a = with("arrival_rate = 50").unwrap().run.arrival.unwrap();
    assert_eq!((a.process, a.seed), (ArrivalProcess::Constant, None));
    let a = with("arrival_rate = 50\narrival_process = \"poisson\"\nseed = 42")
        .unwrap()
        .run
        .arrival
        .unwrap();
    assert_eq!((a.process, a.seed), (ArrivalProcess::Poisson, Some(42)));
    let a = with("arrival_rate = 50\narrival_process = \"gamma\"\nburstiness = 0.5")
        .unwrap()
        .run
        .arrival
        .unwrap();
    assert_eq!((a.process, a.seed), (ArrivalProcess::Gamma { shape: 0.5 }, None));
    for (run, says) in [
        (
            "arrival_rate = 5\narrival_process = \"bursty\"",
            "run.arrival_process: `bursty` is not an arrival process",
        ),
        (
            "arrival_rate = 5\narrival_process = \"gamma\"",
            "run.burstiness: gamma needs a burstiness",
        ),
        (
            "arrival_rate = 5\narrival_process = \"gamma\"\nburstiness = 0",
            "run.burstiness: 0 is not a burstiness",
        ),
        (
            "arrival_rate = 5\narrival_process = \"gamma\"\nburstiness = -2",
            "not a burstiness",
        ),
        (
            "arrival_rate = 5\nburstiness = 2",
            "run.burstiness: burstiness shapes the gamma process",
        ),
        ("arrival_rate = 5\nseed = 1", "run.seed: seeds a random arrival process"),
        (
            "arrival_process = \"poisson\"",
            "run.arrival_process: spaces the arrivals of the open model",
        ),
        ("users = 3\nseed = 1", "run.seed: seeds the arrivals of the open model"),
    ] {
        let err = with(run).unwrap_err().to_string();
        assert!(err.contains(says), "{run}: {err}");
    }
}

#[test]
fn the_open_model_is_an_arrival_rate_or_stages() {
    let with = |run: &str| parse(&GOOD.replace("users = 10\nspawn_rate = 2.5\nrun_time = \"30s\"", run));
    let s = with("arrival_rate = 50\nmax_in_flight = 20").unwrap();
    let a = s.run.arrival.unwrap();
    assert_eq!((a.schedule.start_rate, a.max_in_flight), (50.0, 20));
    let s = with("arrival_stages = [{ duration = \"1m\", rate = 100 }, { duration = \"5m\", rate = 100 }]").unwrap();
    let a = s.run.arrival.unwrap();
    assert_eq!(a.schedule.stages.len(), 2);
    assert_eq!(a.max_in_flight, DEFAULT_MAX_IN_FLIGHT);
    for (run, says) in [
        ("arrival_rate = -1", "run.arrival_rate: -1 is not an arrival rate"),
        ("arrival_rate = 5\nusers = 3", "replace users"),
        (
            "arrival_rate = 5\nstages = [{ duration = \"1s\", users = 1 }]",
            "replace users",
        ),
        ("max_in_flight = 5", "caps the open model"),
        (
            "arrival_rate = 5\nmax_in_flight = 0",
            "run.max_in_flight: 0 is not between",
        ),
        (
            "arrival_stages = [{ duration = \"0s\", rate = 5 }]",
            "arrival_stages[0].duration",
        ),
    ] {
        let err = with(run).unwrap_err().to_string();
        assert!(err.contains(says), "{run}: {err}");
    }
}

#[test]
fn goodput_defaults_from_the_scenario_and_a_task_replaces_it() {
    let text = GOOD.replace("[run]", "[goodput]\nttfe = \"500ms\"\nresponse_time = \"10s\"\n[run]")
        + r#"
[[users.tasks]]
name = "own"
path = "/v1/chat-messages"
kind = "dify"
goodput = { ttft = "1s" }
[[users.tasks]]
name = "plain"
path = "/health"
"#;
    let mut s = parse(&text).unwrap();
    assert_eq!(s.plan.classes[0].tasks[0].goodput, None, "the caller applies [goodput]");
    apply_goodput(&mut s.plan, s.goodput);
    let slos: Vec<_> = s.plan.classes[0].tasks.iter().map(|t| t.goodput).collect();
    let slo = |ttfe: Option<u64>, ttft: Option<u64>, rt: Option<u64>| {
        Some(crate::goodput::Slo {
            ttfe_us: ttfe,
            ttft_us: ttft,
            chunk_gap_p95_us: None,
            response_time_us: rt,
        })
    };
    assert_eq!(
        slos,
        [
            slo(Some(500_000), None, Some(10_000_000)),
            slo(None, Some(1_000_000), None),
            // A plain request takes the default's response_time, not its ttfe.
            slo(None, None, Some(10_000_000)),
        ]
    );
    assert!(s.plan.endpoint_has_goodput(2));
    let err = parse(&text.replace("path = \"/health\"", "path = \"/health\"\ngoodput = { ttfe = \"1s\" }"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("users[0].tasks[2].goodput.ttfe: only applies to kind"),
        "{err}"
    );
}
