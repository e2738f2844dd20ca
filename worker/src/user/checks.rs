//! What a task asks of an answer: the `checks` that must hold on its body, and the
//! `capture` values taken from its headers and JSON body for later requests.

use barrage_common::metrics::FailureKind;
use barrage_common::plan::{Capture, CheckRule, Task};

use crate::http::Failure;

use super::sample::Sample;

/// Takes the `capture` values that come from response headers.
pub(super) fn capture_headers(task: &Task, headers: &http::HeaderMap, sample: &mut Sample) {
    for (name, source) in &task.capture {
        if let Capture::Header(h) = source
            && let Some(v) = headers.get(h.as_str()).and_then(|v| v.to_str().ok())
        {
            sample.captures.push((name.clone(), v.to_string()));
        }
    }
}

/// Takes the `capture` values that point into a JSON body.
pub(super) fn capture_json(task: &Task, body: &[u8], sample: &mut Sample) {
    if !task.capture.iter().any(|(_, c)| matches!(c, Capture::Json(_))) {
        return;
    }
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) else {
        return;
    };
    for (name, source) in &task.capture {
        if let Capture::Json(pointer) = source
            && let Some(v) = json.pointer(pointer)
        {
            let text = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            sample.captures.push((name.clone(), text));
        }
    }
}

/// A task's `checks` on a successful answer's body (the first 256 KiB): the first that
/// does not hold fails the request as `check`, with the check's name as detail.
pub(super) fn run_checks(task: &Task, body: &[u8]) -> Result<(), Failure> {
    if task.checks.is_empty() {
        return Ok(());
    }
    // Parsed once, and only when a check reads JSON.
    let needs_json = task
        .checks
        .iter()
        .any(|c| !matches!(c.rule, CheckRule::BodyContains(_)));
    let json: Option<serde_json::Value> = if needs_json {
        serde_json::from_slice(body).ok()
    } else {
        None
    };
    for check in &task.checks {
        let at = |pointer: &str| json.as_ref().and_then(|v| v.pointer(pointer));
        let held = match &check.rule {
            CheckRule::JsonExists(pointer) => at(pointer).is_some(),
            CheckRule::JsonEquals { pointer, text, value } => at(pointer).is_some_and(|found| match found {
                serde_json::Value::String(s) => s == text,
                other => value.as_ref() == Some(other),
            }),
            CheckRule::BodyContains(text) => body.windows(text.len()).any(|w| w == text.as_bytes()),
        };
        if !held {
            let what = match &check.rule {
                CheckRule::JsonExists(p) => format!("no JSON value at {p}"),
                CheckRule::JsonEquals { pointer, text, .. } => format!("the JSON value at {pointer} is not {text:?}"),
                CheckRule::BodyContains(t) => format!("the body does not contain {t:?}"),
            };
            return Err(Failure::new(
                FailureKind::Check,
                check.name.clone(),
                format!("check `{}` failed: {what}", check.name),
            ));
        }
    }
    Ok(())
}
