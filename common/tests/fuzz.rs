//! Fuzzing on the stable toolchain (proptest) of the two places where untrusted input
//! enters: the scenario loader (text from a file) and the report decoder (bytes from a
//! worker). Whatever they are given, they answer with a value or an error, never a panic,
//! and the decoder never grows memory by more than a small budget.
//!
//! Regression corpus: proptest records the seed of every failing case in
//! `common/tests/proptest-regressions/fuzz.txt` (see [`config`]; one file for all the
//! properties here, each replays every seed) and replays them before any new case.
//! Commit that file (it is not gitignored). Inputs worth keeping by name live in
//! [`scenario_corpus`] and in `the_histogram_corpus_decodes_or_fails_cleanly`, and run on
//! every `cargo test`.

use std::sync::Mutex;

use barrage_common::metrics::{
    EndpointStats, MAX_DECODED_US, MAX_TRACKABLE_US, Metric, decode_histogram, encode_histogram, new_histogram,
};
use barrage_common::plan::RunPlan;
use barrage_common::scenario::parse_str;
use barrage_common::wire::endpoint_from_proto;
use barrage_proto::v1;
use config::FileFormat;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

/// Cases per property: together about 20 s in a debug build on 2 cores.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // Relative to the package root, where cargo runs integration tests.
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/proptest-regressions/fuzz.txt",
        ))),
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------
// The scenario loader
// ---------------------------------------------------------------------------------------

/// The value every `${NAME}` and `env = [...]` entry resolves to; it must never show in
/// a message or in the plan's `Debug`.
const SECRET: &str = "fuzz-secret-4b1d";

fn env(name: &str) -> Option<String> {
    (name.starts_with("DIFY") || name.starts_with("KEY")).then(|| SECRET.to_string())
}

/// Every field the loader knows, so mutations have much to break.
const VALID_TOML: &str = r#"host = "http://127.0.0.1:5001"

[run]
users = 10
spawn_rate = 2.5
run_time = "1m30s"

[data.question]
values = ["What is Dify?", "Why SSE?"]
mode = "sequential"

[data.api_key]
env = ["DIFY_KEY_FREE", "DIFY_KEY_PRO"]
mode = "per_user"

[limits]
sse_max_event_bytes = 1048576
connect_timeout = "10s"
tls_insecure = false

[resolve]
"dify-api" = ["10.0.0.11:5001", "10.0.0.12:5001"]

[[users]]
name = "WorkflowUser"
weight = 3
wait = "between(1, 3)"

[[users.tasks]]
name = "/v1/workflows/run"
method = "POST"
path = "/v1/workflows/run"
kind = "dify"
weight = 2
timeout = "120s"
expect = [200]
connection = "per-request"
first_event_timeout = "30s"
read_timeout = "30s"
stop_on_cancel = true
headers = { Authorization = "Bearer {{api_key}}", Content-Type = "application/json" }
body = '{"inputs": {"query": "{{question}}"}, "response_mode": "streaming", "user": "{{user}}"}'

[[users.tasks]]
name = "events"
path = "/v1/events/{{iteration}}"
kind = "sse"
terminal_event = "done"

[[users]]
name = "ChatUser"
weight = 1
wait = "pacing(2)"
host = "http://dify-api:5001"

[[users.tasks]]
method = "post"
path = "/v1/chat-messages"
kind = "dify"
app = "chat"
conversation_turns = 3
headers = { Authorization = "Bearer ${DIFY_API_KEY}" }
body = '{"query": "{{question}}", "conversation_id": "{{conversation_id}}", "user": "{{user}}"}'

[[users.tasks]]
name = "health"
path = "/health"
weight = 0
"#;

const VALID_YAML: &str = r#"host: "http://127.0.0.1:5001"
run:
  users: 10
  spawn_rate: 2.5
  run_time: 1m30s
data:
  question:
    values: ["What is Dify?", "Why SSE?"]
    mode: sequential
  api_key:
    env: [DIFY_KEY_FREE, DIFY_KEY_PRO]
    mode: per_user
limits:
  sse_max_event_bytes: 1048576
  connect_timeout: 10s
resolve:
  dify-api: ["10.0.0.11:5001"]
users:
  - name: WorkflowUser
    weight: 3
    wait: "between(1, 3)"
    tasks:
      - name: /v1/workflows/run
        method: POST
        path: /v1/workflows/run
        kind: dify
        timeout: 120s
        expect: [200]
        headers:
          Authorization: "Bearer {{api_key}}"
        body: '{"inputs": {"query": "{{question}}"}, "user": "{{user}}"}'
  - name: ChatUser
    wait: pacing(2)
    tasks:
      - method: post
        path: /v1/chat-messages
        kind: dify
        conversation_turns: 3
        headers:
          Authorization: "Bearer ${DIFY_API_KEY}"
"#;

/// Lines a mutation may put in: each breaks or stretches one rule.
const LINE_FRAGMENTS: &[&str] = &[
    "[run]",
    "[limits]",
    "[resolve]",
    "[data.q]",
    "[data.user]",
    "[data.\"a.b\"]",
    "[[users]]",
    "[[users.tasks]]",
    "users = -1",
    "users = 99999999999999999999",
    "users = 4294967296",
    "spawn_rate = nan",
    "spawn_rate = inf",
    "spawn_rate = -0.0",
    "spawn_rate = 1e308",
    "run_time = \"1e20\"",
    "run_time = \"18446744073709551615s\"",
    "run_time = \"99999999999999999999h\"",
    "run_time = \"-1s\"",
    "run_time = \"\"",
    "weight = 0",
    "weight = -1",
    "weight = 4294967296",
    "wait = \"between(3, 1)\"",
    "wait = \"between(1,\"",
    "wait = \"constant(1e20)\"",
    "wait = \"pacing(0)\"",
    "wait = \"(((\"",
    "timeout = \"0s\"",
    "timeout = \"1e300\"",
    "first_event_timeout = \"nan\"",
    "read_timeout = \"1e19\"",
    "connect_timeout = \"inf\"",
    "sse_max_event_bytes = -1",
    "sse_max_event_bytes = 9223372036854775807",
    "expect = [0, 99999, -1]",
    "conversation_turns = 99999999999",
    "conversation_turns = -3",
    "kind = \"dify\"",
    "kind = \"sse\"",
    "kind = \"grpc\"",
    "app = \"chat\"",
    "app = \"workflow\"",
    "terminal_event = \"\"",
    "connection = \"close\"",
    "method = \"ü\"",
    "method = \"\"",
    "path = \"\"",
    "path = \"{{\"",
    "path = \"/{{ }}\"",
    "path = \"/${\"",
    "path = \"/${}\"",
    "path = \"/{{user}}/${DIFY_API_KEY}/{{nope}}\"",
    "headers = { \"\" = \"x\" }",
    "headers = { \"a b\" = \"x\" }",
    "headers = { X = \"${UNSET_VAR}\" }",
    "headers = { X = \"${KEY_A}${KEY_B}{{user}}\" }",
    "body = '{{{{{{'",
    "body = '${DIFY_API_KEY'",
    "values = []",
    "values = [\"\"]",
    "env = []",
    "env = [\"UNSET\"]",
    "file = \"/nonexistent/questions.txt\"",
    "mode = \"round_robin\"",
    "host = \"ftp://x\"",
    "host = \"http://h:99999\"",
    "host = \"http://[::1]:80\"",
    "host = \"http://\"",
    "host = \"http://u:p@h\"",
    "\"h\" = [\"1.2.3.4:99999\"]",
    "\"h\" = []",
    "name = \"WorkflowUser\"",
    "name = \"\"",
    "x = { y = { z = [[[1]]] } }",
    "users = \"ten\"",
    "users = [1, \"a\", {}]",
];

/// YAML lines a mutation may put in.
const YAML_FRAGMENTS: &[&str] = &[
    "users: -1",
    "  users: 99999999999999999999",
    "  run_time: 1e20",
    "    wait: constant(1e20)",
    "        timeout: \"1e300\"",
    "  - name: x",
    "    tasks: []",
    "      - path: \"{{\"",
    "        kind: grpc",
    "        headers: {X: \"${UNSET}\"}",
    "data: {q: {values: []}}",
    "a: &x [1, 2]",
    "b: *x",
    "users: *x",
    "? complex key",
    "--- ",
    "...",
    "!!binary aGVsbG8=",
    "users: !!str 3",
    "  spawn_rate: .nan",
    "  spawn_rate: -.inf",
    "\t- tab",
    "key: 'unterminated",
    "{",
];

/// Whatever the loader answers must be sound: an error names the source first and never
/// carries a secret; a plan never prints a secret and survives the trip to a worker.
fn check_scenario(text: &str, format: FileFormat) -> Result<(), TestCaseError> {
    match parse_str(text, format, "f", &env) {
        Ok(s) => {
            let shown = format!("{:?} {:?}", s.plan, s.run);
            prop_assert!(!shown.contains(SECRET), "the plan's Debug shows a secret: {shown}");
            prop_assert!(!s.plan.classes.is_empty());
            prop_assert!(s.plan.classes.iter().any(|c| c.weight > 0));
            prop_assert!(s.plan.classes.iter().all(|c| c.tasks.iter().any(|t| t.weight > 0)));
            let back = RunPlan::from_json(&s.plan.to_json());
            prop_assert!(back.is_ok(), "the plan does not survive JSON: {:?}", back.err());
        }
        Err(e) => {
            let msg = e.to_string();
            prop_assert!(
                msg.starts_with("f: "),
                "the error does not name the source first: {msg}"
            );
            prop_assert!(!msg.contains(SECRET), "the error shows a secret: {msg}");
        }
    }
    Ok(())
}

#[derive(Debug, Clone)]
enum Edit {
    DeleteLine(usize),
    DuplicateLine(usize),
    ReplaceLine(usize, String),
    InsertLine(usize, String),
    SwapLines(usize, usize),
    DeleteChar(usize),
    InsertChar(usize, char),
    ReplaceChar(usize, char),
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut text = text.to_string();
    for edit in edits {
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        let mut chars: Vec<char> = text.chars().collect();
        let (nl, nc) = (lines.len(), chars.len());
        let line_edit = match edit {
            Edit::DeleteLine(i) if nl > 0 => {
                lines.remove(i % nl);
                true
            }
            Edit::DuplicateLine(i) if nl > 0 => {
                lines.insert(i % nl, lines[i % nl].clone());
                true
            }
            Edit::ReplaceLine(i, l) if nl > 0 => {
                lines[i % nl].clone_from(l);
                true
            }
            Edit::InsertLine(i, l) => {
                lines.insert(i % (nl + 1), l.clone());
                true
            }
            Edit::SwapLines(i, j) if nl > 0 => {
                lines.swap(i % nl, j % nl);
                true
            }
            Edit::DeleteChar(i) if nc > 0 => {
                chars.remove(i % nc);
                false
            }
            Edit::InsertChar(i, c) => {
                chars.insert(i % (nc + 1), *c);
                false
            }
            Edit::ReplaceChar(i, c) if nc > 0 => {
                chars[i % nc] = *c;
                false
            }
            _ => continue,
        };
        text = if line_edit {
            lines.join("\n")
        } else {
            chars.into_iter().collect()
        };
    }
    text
}

/// Characters that matter to TOML and YAML, and anything else now and then.
fn syntax_char() -> impl Strategy<Value = char> {
    prop_oneof![
        3 => prop::sample::select(vec![
            '"', '\'', '[', ']', '{', '}', '=', ':', '\n', '#', '$', '\\', '-', ' ', '.', ',', '&', '*', '!', '\t', '0',
        ]),
        1 => any::<char>(),
    ]
}

fn new_line(fragments: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(fragments).prop_map(str::to_string),
        1 => "[ -~]{0,40}",
        1 => any::<String>(),
    ]
}

fn edits(fragments: &'static [&'static str]) -> impl Strategy<Value = Vec<Edit>> {
    let edit = prop_oneof![
        any::<usize>().prop_map(Edit::DeleteLine),
        any::<usize>().prop_map(Edit::DuplicateLine),
        (any::<usize>(), new_line(fragments)).prop_map(|(i, l)| Edit::ReplaceLine(i, l)),
        (any::<usize>(), new_line(fragments)).prop_map(|(i, l)| Edit::InsertLine(i, l)),
        (any::<usize>(), any::<usize>()).prop_map(|(i, j)| Edit::SwapLines(i, j)),
        any::<usize>().prop_map(Edit::DeleteChar),
        (any::<usize>(), syntax_char()).prop_map(|(i, c)| Edit::InsertChar(i, c)),
        (any::<usize>(), syntax_char()).prop_map(|(i, c)| Edit::ReplaceChar(i, c)),
    ];
    prop::collection::vec(edit, 1..6)
}

/// TOML assembled from the loader's own vocabulary: sections, known keys, odd values.
fn toml_vocabulary() -> impl Strategy<Value = String> {
    const SECTIONS: &[&str] = &[
        "[run]",
        "[limits]",
        "[resolve]",
        "[data.q]",
        "[data.k]",
        "[[users]]",
        "[[users.tasks]]",
    ];
    const KEYS: &[&str] = &[
        "host",
        "users",
        "spawn_rate",
        "run_time",
        "values",
        "file",
        "env",
        "mode",
        "sse_max_event_bytes",
        "connect_timeout",
        "tls_insecure",
        "name",
        "weight",
        "wait",
        "tasks",
        "method",
        "path",
        "kind",
        "headers",
        "body",
        "timeout",
        "expect",
        "terminal_event",
        "first_event_timeout",
        "read_timeout",
        "connection",
        "app",
        "conversation_turns",
        "stop_on_cancel",
        "\"h\"",
    ];
    const WORDS: &[&str] = &[
        "",
        "1",
        "0",
        "1e20",
        "nan",
        "10s",
        "between(1, 2)",
        "constant(0)",
        "pacing(1)",
        "http://h:1",
        "/p/{{user}}",
        "/p/{{q}}",
        "/p/${DIFY_API_KEY}",
        "{{k}}",
        "${KEY_X}",
        "${UNSET}",
        "dify",
        "sse",
        "http",
        "chat",
        "workflow",
        "per_user",
        "per-request",
        "POST",
        "1.2.3.4:5",
    ];
    let scalar = prop_oneof![
        any::<i64>().prop_map(|i| i.to_string()),
        prop::sample::select(vec!["nan", "inf", "-inf", "0.0", "-0.5", "1e308", "true", "false"])
            .prop_map(str::to_string),
        prop::sample::select(WORDS).prop_map(|w| format!("{w:?}")),
        "[ -~]{0,12}".prop_map(|w| format!("{w:?}")),
    ];
    let value = prop_oneof![
        3 => scalar.clone(),
        1 => prop::collection::vec(scalar.clone(), 0..3).prop_map(|v| format!("[{}]", v.join(", "))),
        1 => (prop::sample::select(vec!["Authorization", "X", "a b"]), scalar).prop_map(|(k, v)| format!("{{ {k:?} = {v} }}")),
    ];
    let line = prop_oneof![
        1 => prop::sample::select(SECTIONS).prop_map(str::to_string),
        4 => (prop::sample::select(KEYS), value).prop_map(|(k, v)| format!("{k} = {v}")),
    ];
    prop::collection::vec(line, 0..30).prop_map(|lines| lines.join("\n"))
}

/// Inputs kept by name: each once crashed a loader somewhere, or nearly.
fn scenario_corpus() -> Vec<String> {
    let mut corpus: Vec<String> = [
        "",
        " ",
        "\0",
        "\u{feff}",
        "users = []",
        "[[users]]",
        "[[users]]\n[[users.tasks]]",
        "[[users]]\n[[users.tasks]]\npath = \"/\"",
        "[run]\nusers = 99999999999999999999",
        "[data.\"a.b\"]\nvalues = [\"x\"]",
        "[[users]]\nwait = \"constant(1e20)\"\n[[users.tasks]]\npath = \"/\"",
        "[[users]]\n[[users.tasks]]\npath = \"/\"\ntimeout = \"1e300\"",
        "[run]\nrun_time = \"1e20\"\n[[users]]\n[[users.tasks]]\npath = \"/\"",
        "[limits]\nconnect_timeout = \"inf\"\n[[users]]\n[[users.tasks]]\npath = \"/\"",
        "[[users]]\n[[users.tasks]]\npath = \"/${DIFY_API_KEY\"",
        "[[users]]\n[[users.tasks]]\npath = \"/${DIFY_API_KEY}{{\"",
        "a: &x [1]\nb: *x",
        "---\n...\n",
        "users: !!binary aGVsbG8=",
        "users:\n  - tasks:\n      - path: /\n        headers: {X: \"${DIFY_API_KEY}\"}\n        name: \"${DIFY_API_KEY}\"",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // Nesting past any recursion limit.
    corpus.push(format!("users = {}", "[".repeat(20_000)));
    corpus.push(format!("users: {}", "[".repeat(20_000)));
    corpus.push(format!("users: {}", "{a: ".repeat(20_000)));
    corpus.push("[[users]]\n".repeat(2_000));
    corpus
}

#[test]
fn the_valid_scenarios_are_valid() {
    // The mutations start from these: they must parse, or the fuzzing below only ever
    // exercises error paths.
    let toml = parse_str(VALID_TOML, FileFormat::Toml, "f", &env).unwrap();
    assert_eq!(toml.plan.classes.len(), 2);
    assert!(toml.plan.secrets().contains(&SECRET.to_string()));
    let yaml = parse_str(VALID_YAML, FileFormat::Yaml, "f", &env).unwrap();
    assert_eq!(yaml.plan.classes.len(), 2);
}

#[test]
fn the_scenario_corpus_loads_or_fails_cleanly() {
    let mut failed = Vec::new();
    for text in scenario_corpus() {
        for format in [FileFormat::Toml, FileFormat::Yaml] {
            let shown: String = text.chars().take(80).collect();
            match std::panic::catch_unwind(|| check_scenario(&text, format)) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failed.push(format!("{format:?} {shown:?}: {e}")),
                Err(_) => failed.push(format!("{format:?} {shown:?}: the loader panicked")),
            }
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

proptest! {
    #![proptest_config(config(4096))]

    #[test]
    fn the_loader_survives_arbitrary_text(text in any::<String>(), bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let lossy = String::from_utf8_lossy(&bytes);
        for format in [FileFormat::Toml, FileFormat::Yaml] {
            check_scenario(&text, format)?;
            check_scenario(&lossy, format)?;
        }
    }

    #[test]
    fn the_loader_survives_a_mutated_toml_scenario(edits in edits(LINE_FRAGMENTS)) {
        check_scenario(&apply(VALID_TOML, &edits), FileFormat::Toml)?;
    }

    #[test]
    fn the_loader_survives_a_mutated_yaml_scenario(edits in edits(YAML_FRAGMENTS)) {
        check_scenario(&apply(VALID_YAML, &edits), FileFormat::Yaml)?;
    }

    #[test]
    fn the_loader_survives_its_own_vocabulary(extra in toml_vocabulary(), after_valid in any::<bool>()) {
        let text = if after_valid { format!("{VALID_TOML}\n{extra}") } else { extra };
        check_scenario(&text, FileFormat::Toml)?;
    }
}

// ---------------------------------------------------------------------------------------
// The report decoder
// ---------------------------------------------------------------------------------------

/// How much the decoder may grow the process's peak memory for one delta: a real
/// histogram (3 significant digits, up to one day) decodes in well under 1 MiB.
const MEMORY_BUDGET: u64 = 24 << 20;

/// Serialises the measured sections: the peak is per process and tests run in parallel.
static MEASURING: Mutex<()> = Mutex::new(());

fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Runs `f` and returns how far the process's peak resident memory rose above where it
/// stood at the start, where Linux tells (resetting the peak through `clear_refs`).
fn peak_growth<T>(f: impl FnOnce() -> T) -> (T, Option<u64>) {
    let _one_at_a_time = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let before = status_kib("VmRSS:").filter(|_| reset);
    let out = f();
    let growth = before
        .zip(status_kib("VmHWM:"))
        .map(|(b, peak)| peak.saturating_sub(b) * 1024);
    (out, growth)
}

fn within_budget(what: &str, growth: Option<u64>) -> Result<(), TestCaseError> {
    if let Some(g) = growth {
        prop_assert!(
            g <= MEMORY_BUDGET,
            "{what} grew peak memory by {} MiB (budget {} MiB)",
            g >> 20,
            MEMORY_BUDGET >> 20
        );
    }
    Ok(())
}

fn valid_encoding(values: &[u64]) -> Vec<u8> {
    let mut h = new_histogram();
    for v in values {
        h.record(*v).unwrap();
    }
    encode_histogram(&h)
}

/// A V2 header (40 bytes, big-endian) with chosen fields, then `payload`.
fn v2_bytes(payload_len: u32, digits: u32, low: u64, high: u64, ratio: f64, payload: &[u8]) -> Vec<u8> {
    let cookie = &valid_encoding(&[])[..4];
    let mut b = cookie.to_vec();
    b.extend_from_slice(&payload_len.to_be_bytes());
    b.extend_from_slice(&0u32.to_be_bytes());
    b.extend_from_slice(&digits.to_be_bytes());
    b.extend_from_slice(&low.to_be_bytes());
    b.extend_from_slice(&high.to_be_bytes());
    b.extend_from_slice(&ratio.to_be_bytes());
    b.extend_from_slice(payload);
    b
}

/// A valid encoding with bits flipped. Byte 4 is the top byte of the payload length: a
/// flip there claims up to 2 GiB, which the deterministic test below covers at 256 MiB;
/// here it is kept under 64 MiB so a regression costs seconds, not gigabytes.
fn flipped(values: &[u64], flips: &[(usize, u8)]) -> Vec<u8> {
    let mut b = valid_encoding(values);
    let top = b[4];
    for (at, bit) in flips {
        let i = at % b.len();
        b[i] ^= 1 << (bit % 8);
    }
    b[4] = top | (b[4] & 0x03);
    b
}

fn histogram_values() -> impl Strategy<Value = Vec<u64>> {
    prop::collection::vec(
        prop_oneof![1u64..10_000, 1u64..MAX_TRACKABLE_US, Just(MAX_TRACKABLE_US)],
        0..20,
    )
}

/// Bytes a peer might send as a histogram: noise, the real thing, the real thing
/// damaged, or a header with every field chosen.
fn histogram_bytes() -> impl Strategy<Value = Vec<u8>> {
    let header = (
        prop_oneof![0u32..256, 0u32..(16 << 20)],
        prop_oneof![0u32..6, any::<u32>()],
        prop_oneof![Just(1u64), any::<u64>()],
        prop_oneof![
            1u64..MAX_TRACKABLE_US,
            Just(MAX_TRACKABLE_US + 1),
            any::<u64>(),
            Just(u64::MAX / 2)
        ],
        prop_oneof![Just(1.0f64), any::<f64>()],
        prop::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(len, digits, low, high, ratio, payload)| v2_bytes(len, digits, low, high, ratio, &payload));
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..64),
        2 => histogram_values().prop_map(|v| valid_encoding(&v)),
        3 => (histogram_values(), prop::collection::vec((any::<usize>(), any::<u8>()), 1..4))
            .prop_map(|(v, f)| flipped(&v, &f)),
        2 => header,
    ]
}

fn count() -> impl Strategy<Value = u64> {
    prop_oneof![6 => 0u64..1_000, 1 => any::<u64>(), 1 => Just(u64::MAX)]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec!["", "http_status", "503", "io", "/v1/workflows/run", "POST", "ttfe"]).prop_map(str::to_string),
        2 => ".{0,16}",
        1 => (0usize..1_200).prop_map(|n| "x".repeat(n)),
        1 => (4_090usize..4_200).prop_map(|n| "s".repeat(n)),
    ]
}

fn failure_counts() -> impl Strategy<Value = Vec<v1::FailureCount>> {
    let one = (
        prop::sample::select(vec!["http_status", "io", ""]),
        prop::sample::select(vec!["503", ""]),
        count(),
        text(),
    )
        .prop_map(|(kind, detail, count, sample)| v1::FailureCount {
            kind: kind.into(),
            detail: detail.into(),
            count,
            sample,
            ..Default::default()
        });
    prop::collection::vec(one, 0..4)
}

fn delta() -> impl Strategy<Value = v1::EndpointDelta> {
    let metric = prop_oneof![
        6 => prop::sample::select(Metric::ALL.to_vec()).prop_map(|m| m.as_str().to_string()),
        1 => text(),
    ];
    let histograms = prop::collection::vec(
        (metric, histogram_bytes()).prop_map(|(metric, hdr_v2)| v1::Histogram {
            metric,
            hdr_v2: hdr_v2.into(),
        }),
        0..4,
    );
    let events = prop::collection::vec(
        (text(), count()).prop_map(|(event_type, count)| v1::EventCount { event_type, count }),
        0..4,
    );
    (
        (text(), text(), prop_oneof![0i32..4, any::<i32>()]),
        (count(), count(), failure_counts(), failure_counts()),
        (count(), count(), count(), count(), count(), count(), count()),
        (events, histograms, text()),
    )
        .prop_map(
            |(
                (name, method, kind),
                (requests, failures, failure_kinds, expected_outcomes),
                (bytes_received, connections_opened, retries, streams_started, streams_completed, events, total_tokens),
                (events_by_type, histograms, peer),
            )| v1::EndpointDelta {
                name,
                method,
                kind,
                requests,
                failures,
                failure_kinds,
                expected_outcomes,
                bytes_received,
                connections_opened,
                retries,
                streams_started,
                streams_completed,
                events,
                events_by_type,
                total_tokens,
                histograms,
                peer,
                response_time_ok_hdr_v2: Default::default(),
            },
        )
}

/// A delta that decodes cleanly, so that random damage starts from something real.
fn sane_delta() -> impl Strategy<Value = v1::EndpointDelta> {
    (0u64..1_000, histogram_values()).prop_map(|(requests, values)| v1::EndpointDelta {
        name: "/v1/workflows/run".into(),
        method: "POST".into(),
        kind: v1::EndpointKind::Sse as i32,
        requests,
        histograms: vec![v1::Histogram {
            metric: "ttfe".into(),
            hdr_v2: valid_encoding(&values).into(),
        }],
        ..Default::default()
    })
}

fn check_histogram(bytes: &[u8]) -> Result<(), TestCaseError> {
    let (decoded, growth) = peak_growth(|| decode_histogram("ttfe", bytes));
    within_budget("decode_histogram", growth)?;
    match decoded {
        Ok(h) => prop_assert!(h.max() <= MAX_DECODED_US, "decoded a max of {} µs", h.max()),
        Err(e) => prop_assert!(e.to_string().starts_with("histogram `ttfe` is malformed"), "{e}"),
    }
    Ok(())
}

fn check_delta(d: &v1::EndpointDelta) -> Result<(), TestCaseError> {
    let (decoded, growth) = peak_growth(|| endpoint_from_proto(d));
    within_budget("endpoint_from_proto", growth)?;
    match decoded {
        Ok((endpoint, s)) => {
            prop_assert!(!endpoint.name.is_empty() && endpoint.name.len() <= 1024);
            prop_assert!(s.counts.failures <= s.counts.requests);
            // Summed without wrapping: a delta whose kinds add up only modulo 2^64 is a lie.
            let kinds: u128 = d.failure_kinds.iter().map(|f| u128::from(f.count)).sum();
            prop_assert_eq!(kinds, u128::from(d.failures));
            prop_assert_eq!(
                s.failure_kinds.values().map(|e| u128::from(e.count)).sum::<u128>(),
                u128::from(s.counts.failures)
            );
            for h in s.histograms.iter().flatten() {
                prop_assert!(h.max() <= MAX_DECODED_US, "a histogram with max {} µs", h.max());
            }
        }
        Err(e) => {
            let msg = e.to_string();
            prop_assert!(msg.starts_with("protocol: ") || msg.starts_with("histogram "), "{msg}");
        }
    }
    Ok(())
}

/// A header that claims a 256 MiB payload and carries none: the decoder must see the
/// lie before it allocates for it.
#[test]
fn a_lying_payload_length_allocates_nothing_absurd() {
    let mut bytes = valid_encoding(&[50_000, 2_000_000]);
    bytes[4..8].copy_from_slice(&(256u32 << 20).to_be_bytes());
    let (decoded, growth) = peak_growth(|| decode_histogram("ttfe", &bytes));
    assert!(decoded.is_err(), "a truncated histogram decoded");
    if let Some(g) = growth {
        assert!(
            g <= MEMORY_BUDGET,
            "a 40-byte histogram claiming 256 MiB grew peak memory by {} MiB (budget {} MiB)",
            g >> 20,
            MEMORY_BUDGET >> 20
        );
    }
}

/// Inputs kept by name for the histogram decoder.
#[test]
fn the_histogram_corpus_decodes_or_fails_cleanly() {
    let corpus: Vec<Vec<u8>> = vec![
        vec![],
        b"not a histogram".to_vec(),
        valid_encoding(&[]),
        valid_encoding(&[MAX_TRACKABLE_US]),
        // The widest range the format allows, nothing recorded.
        v2_bytes(0, 5, 1, u64::MAX / 2, 1.0, &[]),
        // A value above the limit.
        {
            let mut h = new_histogram();
            h.record(MAX_TRACKABLE_US * 2).unwrap();
            encode_histogram(&h)
        },
        // Counts that overflow when added up (zig-zag varints of i64::MAX).
        v2_bytes(
            18,
            3,
            1,
            MAX_TRACKABLE_US,
            1.0,
            &[
                0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                0xff,
            ],
        ),
        v2_bytes(1, 3, 1, MAX_TRACKABLE_US, f64::NAN, &[2]),
    ];
    let mut failed = Vec::new();
    for bytes in corpus {
        match std::panic::catch_unwind(|| check_histogram(&bytes)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failed.push(format!("{bytes:02x?}: {e}")),
            Err(_) => failed.push(format!("{bytes:02x?}: the decoder panicked")),
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

proptest! {
    #![proptest_config(config(2048))]

    /// What a worker records, the master accepts: a delta that fails to decode is a
    /// whole report lost. Values come from clocks and from the target (Dify's
    /// `elapsed_time` becomes `server_elapsed`), so any u64 can be recorded.
    #[test]
    fn whatever_a_worker_records_survives_the_wire(
        values in prop::collection::vec(prop_oneof![1u64..MAX_TRACKABLE_US, Just(MAX_TRACKABLE_US), any::<u64>()], 1..20),
    ) {
        let mut s = EndpointStats { counts: barrage_common::metrics::Counts { requests: 1, ..Default::default() }, ..Default::default() };
        for v in &values {
            s.record(Metric::ServerElapsed, *v);
        }
        let recorded = s.histogram(Metric::ServerElapsed).unwrap();
        let back = decode_histogram("server_elapsed", &encode_histogram(recorded));
        prop_assert!(back.is_ok(), "values {:?}: {}", values, back.err().unwrap());
        prop_assert_eq!(back.unwrap().len(), recorded.len());
    }

    #[test]
    fn the_histogram_decoder_survives_any_bytes(bytes in histogram_bytes()) {
        check_histogram(&bytes)?;
    }

    #[test]
    fn the_delta_decoder_survives_any_delta(d in delta()) {
        check_delta(&d)?;
    }

    #[test]
    fn the_delta_decoder_survives_a_damaged_real_delta(
        d in sane_delta(),
        requests in count(),
        failures in count(),
        kinds in failure_counts(),
        damaged in histogram_bytes(),
    ) {
        check_delta(&d)?;
        let mut d = d;
        d.requests = requests;
        d.failures = failures;
        d.failure_kinds = kinds;
        d.histograms.push(v1::Histogram {
            metric: "ttft".into(),
            hdr_v2: damaged.into(),
        });
        check_delta(&d)?;
    }
}
