//! One `[[users.tasks]]` or `on_start` entry, checked into a [`Task`]: the request
//! (path, method, headers, body), its kind (plain HTTP, SSE, Dify), what it captures
//! and checks in the response, and the stats row it counts under.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::endpoints::Endpoints;
use super::raw::{RawCheck, RawTask};
use super::values::check_weight;
use crate::duration;
use crate::error::{Error, Result};
use crate::plan::{Capture, Check, CheckRule, ConnectionPolicy, DifyApp, DifySpec, Pool, SseSpec, Task, TaskKind};
use crate::template::{BUILTIN_VARS, Template};

const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

/// The `{{...}}` names a class's templates may use besides the builtins.
pub(super) struct Vars<'a> {
    /// The scenario's data pools (`{{question}}`, `{{users.email}}`).
    pub(super) pools: &'a BTreeMap<String, Pool>,
    /// Variables some task of the class captures from a response.
    pub(super) captured: &'a BTreeSet<String>,
}

/// Where one task's errors point and what its templates may name.
struct Scope<'a> {
    /// The scenario's name in messages (its path, or the source given).
    file: &'a str,
    /// The task's field path, `users[0].tasks[2]`.
    at: &'a str,
    /// Resolves `${NAME}` secrets.
    env: &'a dyn Fn(&str) -> Option<String>,
    vars: &'a Vars<'a>,
}

impl Scope<'_> {
    /// The error of `field` within the task.
    fn err(&self, field: &str, message: String) -> Error {
        Error::field(self.file, format!("{}.{field}", self.at), message)
    }

    /// Parses a template whose every `{{var}}` is a builtin, a pool or a captured name.
    fn template(&self, field: &str, text: &str) -> Result<Template> {
        let t = Template::parse(text, self.env).map_err(|m| self.err(field, m))?;
        let vars = self.vars;
        for var in t.vars() {
            if !BUILTIN_VARS.contains(&var) && !vars.pools.contains_key(var) && !vars.captured.contains(var) {
                let mut known: Vec<&str> = BUILTIN_VARS.to_vec();
                known.extend(vars.pools.keys().map(String::as_str));
                known.extend(vars.captured.iter().map(String::as_str));
                return Err(self.err(
                    field,
                    format!(
                        "`{{{{{var}}}}}` is neither a data pool nor a builtin; known: {}",
                        known.join(", ")
                    ),
                ));
            }
        }
        Ok(t)
    }
}

/// Checks the task at field path `at` and registers its stats row in `endpoints`.
pub(super) fn task(
    mut rt: RawTask,
    at: &str,
    file: &str,
    env: &dyn Fn(&str) -> Option<String>,
    vars: &Vars<'_>,
    endpoints: &mut Endpoints,
) -> Result<Task> {
    let s = Scope { file, at, env, vars };
    let path_text = rt
        .path
        .take()
        .ok_or_else(|| s.err("path", "missing; expected e.g. path = \"/v1/workflows/run\"".into()))?;
    if !path_text.starts_with('/') {
        return Err(s.err("path", format!("\"{path_text}\" must start with `/`")));
    }
    let path = s.template("path", &path_text)?;
    let method = rt.method.take().unwrap_or_else(|| "GET".into()).to_ascii_uppercase();
    if !METHODS.contains(&method.as_str()) {
        return Err(s.err(
            "method",
            format!("\"{method}\" is not a method; expected one of {}", METHODS.join(", ")),
        ));
    }
    let headers = headers(&s, std::mem::take(&mut rt.headers))?;
    let json_body = rt.json.is_some();
    let body = body(&s, rt.body.as_deref(), rt.json.take())?;
    let weight = check_weight(rt.weight).map_err(|m| s.err("weight", m))?;
    let timeout = match rt.timeout.as_deref() {
        None => Duration::from_secs(60),
        Some(t) => duration::parse(t).map_err(|m| s.err("timeout", m))?,
    };
    if timeout.is_zero() {
        return Err(s.err("timeout", "must be above 0".into()));
    }
    let expect = expect(&s, rt.expect.take())?;
    let kind = kind(&s, &rt, &path_text)?;
    let capture = captures(&s, &rt.capture, &kind)?;
    let checks = checks(&s, &rt.checks, &kind)?;
    let connection = connection(rt.connection.as_deref()).map_err(|m| s.err("connection", m))?;
    let goodput = rt
        .goodput
        .as_ref()
        .map(|g| super::goodput::slo(g, Some(kind.tag() == crate::plan::TaskKindTag::Sse)))
        .transpose()
        .map_err(|(field, m)| s.err(&field, m))?;
    let events_per_request = match rt.events_per_request {
        None => 1,
        // 0: a request that carries no business event (a query, a health check).
        Some(n @ 0..=1_000_000) => n as u32,
        Some(n) => return Err(s.err("events_per_request", format!("{n} is not between 0 and 1000000"))),
    };
    let name = rt.name.unwrap_or_else(|| path.redacted());
    let endpoint = endpoints
        .row(&name, &method, kind.tag(), events_per_request)
        .map_err(|(field, m)| s.err(field, m))?;
    Ok(Task {
        name,
        endpoint,
        method,
        path,
        headers,
        body,
        json_body,
        events_per_request,
        weight,
        timeout,
        expect,
        kind,
        connection,
        tags: rt.tags,
        capture,
        checks,
        goodput,
    })
}

/// `headers`: valid names, lower-cased, each value a template.
fn headers(s: &Scope<'_>, raw: BTreeMap<String, String>) -> Result<Vec<(String, Template)>> {
    let mut headers = Vec::new();
    for (k, v) in raw {
        if k.is_empty() || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b)) {
            return Err(s.err(&format!("headers.{k}"), "not a valid header name".into()));
        }
        headers.push((k.to_ascii_lowercase(), s.template(&format!("headers.{k}"), &v)?));
    }
    Ok(headers)
}

/// `body` (a template as written) or `json` (a table, serialized once), not both.
fn body(s: &Scope<'_>, body: Option<&str>, json: Option<serde_json::Value>) -> Result<Option<Template>> {
    match (body, json) {
        (Some(_), Some(_)) => Err(s.err("json", "a task has `body` or `json`, not both".into())),
        (Some(b), None) => Ok(Some(s.template("body", b)?)),
        (None, Some(value)) => {
            let text = serde_json::to_string(&value).map_err(|e| s.err("json", e.to_string()))?;
            Ok(Some(s.template("json", &text)?))
        }
        (None, None) => Ok(None),
    }
}

/// `expect`: the statuses that count as outcomes rather than failures.
fn expect(s: &Scope<'_>, codes: Option<Vec<i64>>) -> Result<Vec<u16>> {
    codes
        .unwrap_or_default()
        .into_iter()
        .map(|c| {
            u16::try_from(c)
                .ok()
                .filter(|c| (100..=599).contains(c))
                .ok_or_else(|| s.err("expect", format!("{c} is not an HTTP status code")))
        })
        .collect()
}

/// `kind` with the fields only some kinds take: `http`, `sse` or `dify`.
fn kind(s: &Scope<'_>, rt: &RawTask, path_text: &str) -> Result<TaskKind> {
    let sse_only = [
        ("terminal_event", rt.terminal_event.is_some()),
        ("first_event_timeout", rt.first_event_timeout.is_some()),
        ("read_timeout", rt.read_timeout.is_some()),
    ];
    let dify_only = [
        ("app", rt.app.is_some()),
        ("conversation_turns", rt.conversation_turns.is_some()),
        ("stop_on_cancel", rt.stop_on_cancel.is_some()),
    ];
    let kind_text = rt.kind.as_deref().unwrap_or("http");
    if kind_text != "dify"
        && let Some((field, _)) = dify_only.iter().find(|(_, set)| *set)
    {
        return Err(s.err(field, "only applies to kind = \"dify\"".into()));
    }
    match kind_text {
        "http" => {
            if let Some((field, _)) = sse_only.iter().find(|(_, set)| *set) {
                return Err(s.err(field, "only applies to kind = \"sse\" or \"dify\"".into()));
            }
            Ok(TaskKind::Http)
        }
        "sse" => {
            let (first_event_timeout, read_timeout) = stream_timeouts(s, rt)?;
            Ok(TaskKind::Sse(SseSpec {
                terminal_event: rt.terminal_event.clone(),
                first_event_timeout,
                read_timeout,
                dify: None,
            }))
        }
        "dify" => dify(s, rt, path_text),
        other => Err(s.err(
            "kind",
            format!("\"{other}\" is not a task kind; expected \"http\", \"sse\" or \"dify\""),
        )),
    }
}

/// `first_event_timeout` and `read_timeout` of a stream, 30 s each when absent.
fn stream_timeouts(s: &Scope<'_>, rt: &RawTask) -> Result<(Duration, Duration)> {
    let parse = |field: &str, v: &Option<String>| match v.as_deref() {
        None => Ok(Duration::from_secs(30)),
        Some(t) => duration::parse(t).map_err(|m| s.err(field, m)),
    };
    Ok((
        parse("first_event_timeout", &rt.first_event_timeout)?,
        parse("read_timeout", &rt.read_timeout)?,
    ))
}

/// `kind = "dify"`: an SSE stream whose app type (given, or told from the path) sets
/// the terminal event.
fn dify(s: &Scope<'_>, rt: &RawTask, path_text: &str) -> Result<TaskKind> {
    if rt.terminal_event.is_some() {
        return Err(s.err(
            "terminal_event",
            "is implied by the Dify app type; set `app` instead".into(),
        ));
    }
    let app = match rt.app.as_deref() {
        Some(a) => DifyApp::parse(a).ok_or_else(|| {
            s.err("app", format!("\"{a}\" is not a Dify app type; expected workflow, chat, chatflow or agent"))
        })?,
        None => DifyApp::from_path(path_text).ok_or_else(|| {
            s.err("app", format!("cannot tell the Dify app type from \"{path_text}\"; set app = \"workflow\", \"chat\", \"chatflow\" or \"agent\""))
        })?,
    };
    let conversation_turns = match rt.conversation_turns {
        None => 1,
        Some(n) => u32::try_from(n).map_err(|_| s.err("conversation_turns", format!("{n} is not a count")))?,
    };
    if conversation_turns > 1 && app == DifyApp::Workflow {
        return Err(s.err(
            "conversation_turns",
            "workflows have no conversations; use it with chat apps".into(),
        ));
    }
    let (first_event_timeout, read_timeout) = stream_timeouts(s, rt)?;
    Ok(TaskKind::Sse(SseSpec {
        terminal_event: None,
        first_event_timeout,
        read_timeout,
        dify: Some(DifySpec {
            app,
            conversation_turns,
            stop_on_cancel: rt.stop_on_cancel.unwrap_or(false),
        }),
    }))
}

/// `capture`: variables taken from an HTTP response (`/json/pointer` or `header:Name`).
fn captures(s: &Scope<'_>, raw: &BTreeMap<String, String>, kind: &TaskKind) -> Result<Vec<(String, Capture)>> {
    let mut capture = Vec::new();
    for (var, from) in raw {
        let field = format!("capture.{var}");
        if var.is_empty()
            || !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            || BUILTIN_VARS.contains(&var.as_str())
        {
            return Err(s.err(
                &field,
                "not a usable variable name (letters, digits and _; not a builtin)".into(),
            ));
        }
        if !matches!(kind, TaskKind::Http) {
            return Err(s.err(&field, "capture works on kind = \"http\" responses".into()));
        }
        let source = if let Some(h) = from.strip_prefix("header:") {
            Capture::Header(h.trim().to_ascii_lowercase())
        } else if from.is_empty() || from.starts_with('/') {
            Capture::Json(from.clone())
        } else {
            return Err(s.err(
                &field,
                format!("\"{from}\" is neither a JSON pointer (/data/id) nor header:NAME"),
            ));
        };
        capture.push((var.clone(), source));
    }
    Ok(capture)
}

/// `checks`: named rules an HTTP response must meet, else a `check` failure.
fn checks(s: &Scope<'_>, raw: &[RawCheck], kind: &TaskKind) -> Result<Vec<Check>> {
    let mut checks = Vec::new();
    for (i, c) in raw.iter().enumerate() {
        let field = format!("checks[{i}]");
        let name = c.name.clone().unwrap_or_default();
        if name.is_empty() || name.len() > 64 {
            return Err(s.err(
                &field,
                "give each check a `name` (up to 64 characters): it names the failure".into(),
            ));
        }
        if !matches!(kind, TaskKind::Http) {
            return Err(s.err(&field, "checks work on kind = \"http\" responses".into()));
        }
        let rule = match (&c.json, &c.equals, &c.body_contains) {
            (Some(p), None, None) if p.is_empty() || p.starts_with('/') => CheckRule::JsonExists(p.clone()),
            (Some(p), Some(v), None) if p.is_empty() || p.starts_with('/') => CheckRule::JsonEquals {
                pointer: p.clone(),
                text: v.clone(),
                value: serde_json::from_str(v).ok(),
            },
            (Some(p), _, None) => {
                return Err(s.err(&field, format!("\"{p}\" is not a JSON pointer (/data/status)")));
            }
            (None, None, Some(text)) if !text.is_empty() => CheckRule::BodyContains(text.clone()),
            _ => {
                return Err(s.err(
                    &field,
                    "give `json = \"/pointer\"` (optionally with `equals`) or `body_contains = \"text\"`".into(),
                ));
            }
        };
        checks.push(Check { name, rule });
    }
    Ok(checks)
}

/// `connection`: keep-alive (the default) or a fresh connection per request.
fn connection(text: Option<&str>) -> std::result::Result<ConnectionPolicy, String> {
    match text {
        None | Some("keep-alive") => Ok(ConnectionPolicy::KeepAlive),
        Some("per-request") => Ok(ConnectionPolicy::PerRequest),
        Some(other) => Err(format!(
            "\"{other}\" is not a connection policy; expected \"keep-alive\" or \"per-request\""
        )),
    }
}
