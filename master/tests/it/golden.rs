//! Byte-for-byte outputs of fixed saved runs: the console final report, the JSON the
//! report command re-serialises (inside the HTML), every CSV file, the comparison and
//! `barrage validate` for each example. The inputs in `master/tests/golden/` are real
//! runs saved once; the expected outputs beside them were written by the code before
//! the #15 reshaping, which must not change a byte of them.
//!
//! After a deliberate change of an output, `BARRAGE_BLESS=1 cargo test -p barrage-master
//! --test it golden` rewrites the expected files; review their diff like code.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::barrage;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Compares `actual` with the expected file `name`, or writes it when blessing.
fn check(name: &str, actual: &[u8], mismatches: &mut Vec<String>) {
    let path = dir().join("expected").join(name);
    if std::env::var_os("BARRAGE_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    match std::fs::read(&path) {
        Ok(expected) if expected == actual => {}
        Ok(expected) => {
            let at = expected
                .iter()
                .zip(actual)
                .position(|(a, b)| a != b)
                .unwrap_or(expected.len().min(actual.len()));
            mismatches.push(format!(
                "{name}: differs from byte {at} (expected {} bytes, got {}); got near there: {:?}",
                expected.len(),
                actual.len(),
                String::from_utf8_lossy(&actual[at.saturating_sub(40)..(at + 80).min(actual.len())])
            ));
        }
        Err(e) => mismatches.push(format!("{name}: cannot read {}: {e}", path.display())),
    }
}

/// [`barrage`] run from the repository's root, with the default log level and no colours.
fn barrage_in_repo() -> Command {
    let mut cmd = barrage();
    cmd.current_dir(repo()).env_remove("RUST_LOG").env("NO_COLOR", "1");
    cmd
}

#[test]
fn saved_runs_render_byte_for_byte_as_before() {
    let mut mismatches = Vec::new();
    let out = tempfile::tempdir().unwrap();
    for run in ["workflow-run", "chat-arrivals", "hunt"] {
        let html = out.path().join(format!("{run}.html"));
        let prefix = out.path().join(run);
        let result = barrage_in_repo()
            .arg("report")
            .arg(dir().join(format!("{run}.json")))
            .arg("--html")
            .arg(&html)
            .arg("--csv")
            .arg(&prefix)
            .output()
            .unwrap();
        assert!(result.status.success(), "{run}: {result:?}");
        check(&format!("{run}.console.txt"), &result.stdout, &mut mismatches);
        check(&format!("{run}.html"), &std::fs::read(&html).unwrap(), &mut mismatches);
        let mut csvs: Vec<_> = std::fs::read_dir(out.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with(&format!("{run}_")) && n.ends_with(".csv"))
            .collect();
        csvs.sort();
        assert!(csvs.len() >= 3, "{run}: CSV files {csvs:?}");
        for csv in csvs {
            check(&csv, &std::fs::read(out.path().join(&csv)).unwrap(), &mut mismatches);
        }
    }

    let json = out.path().join("compare.json");
    let result = barrage_in_repo()
        .args(["report", "--compare"])
        // Relative to the repository (the command's working directory): the output
        // names the files, and must not depend on where the checkout lives.
        .arg("master/tests/golden/workflow-run.json")
        .arg("master/tests/golden/hunt.json")
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    check("compare.txt", &result.stdout, &mut mismatches);
    check("compare.stderr.txt", &result.stderr, &mut mismatches);
    check(
        "compare.code.txt",
        format!("{:?}\n", result.status.code()).as_bytes(),
        &mut mismatches,
    );
    check("compare.json", &std::fs::read(&json).unwrap(), &mut mismatches);

    assert!(
        mismatches.is_empty(),
        "golden outputs changed:\n{}",
        mismatches.join("\n")
    );
}

#[test]
fn validate_prints_every_example_as_before() {
    let mut mismatches = Vec::new();
    let mut examples: Vec<_> = std::fs::read_dir(repo().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    examples.sort();
    assert!(examples.len() >= 6, "{examples:?}");
    for example in examples {
        let name = example.file_stem().unwrap().to_string_lossy().into_owned();
        let result = barrage_in_repo()
            .args(["validate", "-f"])
            .arg(Path::new("examples").join(example.file_name().unwrap()))
            .env("DIFY_API_KEY", "app-golden-secret")
            .env("DIFY_CHAT_KEY", "app-golden-secret")
            .env("ORCHESTRATOR_USER", "golden@example.com")
            .env("ORCHESTRATOR_PASSWORD", "golden-secret")
            .env("PROMPT_API_KEY", "golden-secret")
            .env("PROMPT_RATE_LIMIT_KEY", "golden-secret")
            .output()
            .unwrap();
        let mut text = result.stdout.clone();
        text.extend_from_slice(b"--- stderr\n");
        text.extend_from_slice(&result.stderr);
        text.extend_from_slice(format!("--- exit {:?}\n", result.status.code()).as_bytes());
        check(&format!("validate-{name}.txt"), &text, &mut mismatches);
    }
    assert!(
        mismatches.is_empty(),
        "golden outputs changed:\n{}",
        mismatches.join("\n")
    );
}
