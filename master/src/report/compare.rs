//! The engine of `barrage report --compare BASE.json NEW.json`: two saved `--json` reports
//! (`barrage.report.v1`) side by side, per endpoint (matched by method + name) and for
//! the aggregated row, with a verdict per figure for CI regression gates.
//!
//! Judged figures: req/s and business events/s (a regression when down by more than the
//! tolerance), the failure ratio (up by more than `--tolerance-errors` percentage
//! points), response time and TTFE p50/p95/p99 (up by more than the tolerance; a
//! latency whose base is under 1 ms must also move by more than 1 ms, so noise at
//! sub-millisecond latencies fails no gate). A figure missing from either file is shown
//! as `-` and not judged; a row in only one file is listed, not judged.
//!
//! The reports are read as plain JSON ([`serde_json::Value`], loaded by
//! [`super::json::load`]): every figure is looked up, none is assumed, and nothing here
//! panics on a malformed file.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

/// The `schema` of the comparison written by `--json`.
pub const SCHEMA_ID: &str = "barrage.compare.v1";
/// `--tolerance` by default, in percent.
pub const DEFAULT_TOLERANCE_PCT: f64 = 10.0;
/// `--tolerance-errors` by default, in percentage points.
pub const DEFAULT_TOLERANCE_ERRORS_PP: f64 = 1.0;
/// A latency whose base is below this (ms) must also move by more than this to count.
pub const LATENCY_SLACK_MS: f64 = 1.0;

/// What counts as a regression.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerances {
    /// Latencies up, or throughput down, by more than this many percent.
    pub pct: f64,
    /// The failure ratio up by more than this many percentage points.
    pub errors_pp: f64,
}

impl Default for Tolerances {
    fn default() -> Self {
        Tolerances {
            pct: DEFAULT_TOLERANCE_PCT,
            errors_pp: DEFAULT_TOLERANCE_ERRORS_PP,
        }
    }
}

/// `--tolerance` / `--tolerance-errors`: a finite number, 0 or more.
pub fn parse_tolerance(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .trim_end_matches('%')
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number"))?;
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(format!("`{s}`: expected 0 or more"))
    }
}

/// What the comparison says of one figure (written as `snake_case` in `--json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Within the tolerances.
    Ok,
    /// Improved beyond the tolerances.
    Better,
    /// Worse beyond the tolerances: the comparison exits 1.
    Regressed,
    /// The row (endpoint) is only in the base report: not judged.
    OnlyInBase,
    /// The row (endpoint) is only in the new report: not judged.
    OnlyInNew,
    /// The figure is missing from one of the reports.
    NotJudged,
}

impl Verdict {
    /// As the table shows it.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Better => "better",
            Verdict::Regressed => "REGRESSED",
            Verdict::OnlyInBase => "only in base",
            Verdict::OnlyInNew => "only in new",
            Verdict::NotJudged => "-",
        }
    }
}

/// How a figure is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Higher is worse; relative, with the sub-millisecond slack.
    Latency,
    /// Lower is worse; relative.
    Throughput,
    /// A fraction; judged by its absolute change in percentage points.
    Ratio,
    /// A fraction where lower is worse (the good share); in percentage points.
    Share,
}

/// The figures compared, in table order: (path in an endpoint row of the report, label, kind).
const FIGURES: &[(&str, &str, Kind)] = &[
    ("rps", "req/s", Kind::Throughput),
    ("failure_ratio", "failure ratio", Kind::Ratio),
    ("response_time_ms.p50", "response time p50 (ms)", Kind::Latency),
    ("response_time_ms.p95", "response time p95 (ms)", Kind::Latency),
    ("response_time_ms.p99", "response time p99 (ms)", Kind::Latency),
    ("ttfe_ms.p50", "TTFE p50 (ms)", Kind::Latency),
    ("ttfe_ms.p95", "TTFE p95 (ms)", Kind::Latency),
    ("ttfe_ms.p99", "TTFE p99 (ms)", Kind::Latency),
    ("business_events_per_s", "business events/s", Kind::Throughput),
    ("goodput.per_s", "goodput (good/s)", Kind::Throughput),
    ("goodput.share", "good share", Kind::Share),
];

/// One figure of one row, or a row present in only one report.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// `METHOD name`, or `Aggregated`.
    pub row: String,
    /// The HTTP method of the endpoint row; empty for `Aggregated`.
    pub method: String,
    /// The stats row's name (`name` in the scenario); `Aggregated` for the total row.
    pub name: String,
    /// The figure's path in an endpoint row of the report, e.g. `ttfe_ms.p50`.
    pub figure: &'static str,
    /// The figure in the base report; None when missing there.
    pub base: Option<f64>,
    /// The figure in the new report; None when missing there.
    pub new: Option<f64>,
    /// Relative change in percent, or for `failure_ratio` the absolute change in
    /// percentage points (`change_unit`); null when not computable (base 0, a side missing).
    pub change: Option<f64>,
    /// `%` for a relative change, `pp` for percentage points.
    pub change_unit: &'static str,
    /// What the change means against the tolerances.
    pub verdict: Verdict,
}

impl Row {
    /// The figure as the table names it.
    pub fn label(&self) -> &'static str {
        FIGURES
            .iter()
            .find(|(path, _, _)| *path == self.figure)
            .map_or(self.figure, |(_, label, _)| label)
    }
}

/// One report file, as much of it as the comparison needs.
#[derive(Debug, Clone, Serialize)]
pub struct Source {
    /// The file as named on the command line.
    pub path: String,
    /// The report's `scenario` (its scenario file); None when missing.
    pub scenario: Option<String>,
    /// The run's length in seconds; None when missing.
    pub duration_s: Option<f64>,
}

/// Two reports compared: every judged figure and the totals, as `--json` writes it.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// [`SCHEMA_ID`].
    pub schema: &'static str,
    /// The baseline report.
    pub base: Source,
    /// The report judged against the baseline.
    pub new: Source,
    /// `--tolerance`, in percent.
    pub tolerance_pct: f64,
    /// `--tolerance-errors`, in percentage points.
    pub tolerance_errors_pp: f64,
    /// [`LATENCY_SLACK_MS`]: latencies under it must also move by more than it.
    pub latency_slack_ms: f64,
    /// Every figure of every row, in table order; the aggregated row last.
    pub rows: Vec<Row>,
    /// Figures judged `regressed`.
    pub regressions: usize,
    /// Rows (endpoints) found in only one of the reports.
    pub only_in_one: usize,
}

impl Comparison {
    /// Whether any figure regressed beyond the tolerances.
    pub fn regressed(&self) -> bool {
        self.regressions > 0
    }

    /// 0 without a regression, 1 (as a failed threshold) with one.
    pub fn exit_code(&self) -> u8 {
        if self.regressed() {
            crate::exit::EXIT_FAILURES
        } else {
            0
        }
    }
}

/// Loads both files and compares them.
pub fn compare_files(base: &Path, new: &Path, tol: Tolerances) -> Result<Comparison, String> {
    let b = super::json::load(base)?;
    let n = super::json::load(new)?;
    Ok(compare(
        &b,
        &n,
        &base.display().to_string(),
        &new.display().to_string(),
        tol,
    ))
}

/// A number at a dotted path; None when missing, null or not a number.
fn figure(row: &Value, path: &str) -> Option<f64> {
    path.split('.')
        .try_fold(row, |v, key| v.get(key))
        .and_then(Value::as_f64)
        .filter(|v| v.is_finite())
}

fn text<'a>(row: &'a Value, key: &str) -> &'a str {
    row.get(key).and_then(Value::as_str).unwrap_or("")
}

fn row_label(method: &str, name: &str) -> String {
    if method.is_empty() {
        name.to_string()
    } else {
        format!("{method} {name}")
    }
}

/// The endpoint rows of a report, keyed by (method, name), in the report's order.
fn endpoints(report: &Value) -> Vec<(String, String, &Value)> {
    let mut out: Vec<(String, String, &Value)> = Vec::new();
    for e in report.get("endpoints").and_then(Value::as_array).into_iter().flatten() {
        if !e.is_object() {
            continue;
        }
        let (method, name) = (text(e, "method").to_string(), text(e, "name").to_string());
        if !out.iter().any(|(m, n, _)| *m == method && *n == name) {
            out.push((method, name, e));
        }
    }
    out
}

/// Whether a report row counts business events other than one per request
/// (a task's `events_per_request`): only then is business events/s its own figure.
fn has_business_events(row: &Value) -> bool {
    row.get("events_per_request")
        .and_then(Value::as_f64)
        .is_some_and(|epr| epr != 1.0)
}

/// Relative change in percent; None when the base is 0 and the new value is not.
fn relative(base: f64, new: f64) -> Option<f64> {
    if base == 0.0 {
        (new == 0.0).then_some(0.0)
    } else {
        Some((new - base) / base.abs() * 100.0)
    }
}

/// The change and the verdict of one figure.
fn judge(kind: Kind, base: Option<f64>, new: Option<f64>, tol: Tolerances) -> (Option<f64>, Verdict) {
    let (Some(b), Some(n)) = (base, new) else {
        return (None, Verdict::NotJudged);
    };
    let diff = n - b;
    match kind {
        Kind::Ratio | Kind::Share => {
            let pp = diff * 100.0;
            // A failure ratio going up is worse; a good share going down is.
            let worse = if kind == Kind::Share { -pp } else { pp };
            let verdict = if worse > tol.errors_pp {
                Verdict::Regressed
            } else if worse < -tol.errors_pp {
                Verdict::Better
            } else {
                Verdict::Ok
            };
            (Some(pp), verdict)
        }
        Kind::Latency | Kind::Throughput => {
            let change = relative(b, n);
            // Beyond the tolerance: relative (a change from 0 is beyond any), and for
            // a sub-millisecond latency also beyond the absolute slack.
            let beyond = change.is_none_or(|c| c.abs() > tol.pct)
                && (kind != Kind::Latency || b >= LATENCY_SLACK_MS || diff.abs() > LATENCY_SLACK_MS);
            let worse = match kind {
                Kind::Latency => diff > 0.0,
                _ => diff < 0.0,
            };
            let verdict = match (beyond && diff != 0.0, worse) {
                (false, _) => Verdict::Ok,
                (true, true) => Verdict::Regressed,
                (true, false) => Verdict::Better,
            };
            (change, verdict)
        }
    }
}

/// The rows of one report row (endpoint or aggregated) present in both reports.
fn compare_row(
    out: &mut Vec<Row>,
    method: &str,
    name: &str,
    base: &Value,
    new: &Value,
    business: bool,
    tol: Tolerances,
) {
    for &(path, _, kind) in FIGURES {
        let (b, n) = (figure(base, path), figure(new, path));
        let shown = match path.split('.').next() {
            // TTFE where present: an HTTP row has none in either report; goodput
            // only on rows with objectives.
            Some("ttfe_ms" | "goodput") => b.is_some() || n.is_some(),
            Some("business_events_per_s") => business,
            _ => true,
        };
        if !shown {
            continue;
        }
        let (change, verdict) = judge(kind, b, n, tol);
        out.push(Row {
            row: row_label(method, name),
            method: method.to_string(),
            name: name.to_string(),
            figure: path,
            base: b,
            new: n,
            change,
            change_unit: if matches!(kind, Kind::Ratio | Kind::Share) {
                "pp"
            } else {
                "%"
            },
            verdict,
        });
    }
}

/// A row present in only one report: listed with its req/s, not judged.
fn only_row(method: &str, name: &str, row: &Value, in_base: bool) -> Row {
    let rps = figure(row, "rps");
    Row {
        row: row_label(method, name),
        method: method.to_string(),
        name: name.to_string(),
        figure: "rps",
        base: if in_base { rps } else { None },
        new: if in_base { None } else { rps },
        change: None,
        change_unit: "%",
        verdict: if in_base {
            Verdict::OnlyInBase
        } else {
            Verdict::OnlyInNew
        },
    }
}

fn source(path: &str, report: &Value) -> Source {
    Source {
        path: path.to_string(),
        scenario: report.get("scenario").and_then(Value::as_str).map(String::from),
        duration_s: figure(report, "duration_s"),
    }
}

/// Compares two parsed reports: each endpoint of the base (then those only in the
/// new one), the aggregated row last.
pub fn compare(base: &Value, new: &Value, base_path: &str, new_path: &str, tol: Tolerances) -> Comparison {
    let (be, ne) = (endpoints(base), endpoints(new));
    let mut rows = Vec::new();
    let mut only_in_one = 0;
    for (method, name, b) in &be {
        match ne.iter().find(|(m, n, _)| m == method && n == name) {
            Some((_, _, n)) => {
                let business = has_business_events(b) || has_business_events(n);
                compare_row(&mut rows, method, name, b, n, business, tol);
            }
            None => {
                only_in_one += 1;
                rows.push(only_row(method, name, b, true));
            }
        }
    }
    for (method, name, n) in &ne {
        if !be.iter().any(|(m, nm, _)| m == method && nm == name) {
            only_in_one += 1;
            rows.push(only_row(method, name, n, false));
        }
    }
    let null = Value::Null;
    let (ba, na) = (
        base.get("aggregated").unwrap_or(&null),
        new.get("aggregated").unwrap_or(&null),
    );
    let business = be.iter().chain(&ne).any(|(_, _, r)| has_business_events(r));
    compare_row(&mut rows, "", "Aggregated", ba, na, business, tol);
    let regressions = rows.iter().filter(|r| r.verdict == Verdict::Regressed).count();
    Comparison {
        schema: SCHEMA_ID,
        base: source(base_path, base),
        new: source(new_path, new),
        tolerance_pct: tol.pct,
        tolerance_errors_pp: tol.errors_pp,
        latency_slack_ms: LATENCY_SLACK_MS,
        rows,
        regressions,
        only_in_one,
    }
}

fn value(r: &Row, v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if r.figure == "failure_ratio" => format!("{:.2} %", v * 100.0),
        Some(v) => format!("{v:.2}"),
    }
}

fn change(r: &Row) -> String {
    match (r.change, r.base, r.new) {
        (Some(c), _, _) if r.change_unit == "pp" => format!("{c:+.2} pp"),
        (Some(c), _, _) => format!("{c:+.1} %"),
        // Both there, base 0: no relative change.
        (None, Some(_), Some(n)) => format!("from 0 to {n:.2}"),
        _ => "-".into(),
    }
}

/// The comparison as the console shows it: a Markdown table and the verdict.
pub fn render(c: &Comparison) -> String {
    let mut out = String::new();
    let describe = |s: &Source| {
        let mut d = s.path.clone();
        if let Some(sc) = &s.scenario {
            let _ = write!(d, " ({sc}");
            if let Some(secs) = s.duration_s {
                let _ = write!(d, ", {secs:.1} s");
            }
            d.push(')');
        }
        d
    };
    let _ = writeln!(out, "Base: {}\nNew:  {}", describe(&c.base), describe(&c.new));
    let _ = writeln!(
        out,
        "Regression: latencies up or req/s down by more than {} %, failure ratio up by more than {} pp \
(latencies under {} ms must also move by more than {} ms)",
        c.tolerance_pct, c.tolerance_errors_pp, c.latency_slack_ms, c.latency_slack_ms
    );
    let _ = writeln!(
        out,
        "\n| Row | Figure | Base | New | Change | Verdict |\n|---|---|---|---|---|---|"
    );
    for r in &c.rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            r.row,
            r.label(),
            value(r, r.base),
            value(r, r.new),
            change(r),
            r.verdict.label()
        );
    }
    let only: Vec<String> = c
        .rows
        .iter()
        .filter(|r| matches!(r.verdict, Verdict::OnlyInBase | Verdict::OnlyInNew))
        .map(|r| format!("{} ({})", r.row, r.verdict.label()))
        .collect();
    if !only.is_empty() {
        let _ = writeln!(
            out,
            "\n{} row(s) in only one report, not compared (not counted as regressions): {}",
            only.len(),
            only.join(", ")
        );
    }
    let regressed: Vec<String> = c
        .rows
        .iter()
        .filter(|r| r.verdict == Verdict::Regressed)
        .map(|r| format!("{} {} {}", r.row, r.label(), change(r)))
        .collect();
    if regressed.is_empty() {
        let _ = writeln!(out, "\nNo regression.");
    } else {
        let _ = writeln!(out, "\n{} regression(s): {}", regressed.len(), regressed.join("; "));
    }
    out
}

/// `--json OUT`: the comparison as JSON (`barrage.compare.v1`).
pub fn write_json(c: &Comparison, path: &Path) -> Result<(), String> {
    let text = serde_json::to_string_pretty(c).map_err(|e| format!("{}: cannot encode: {e}", path.display()))?;
    std::fs::write(path, text).map_err(|e| format!("{}: cannot write: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn endpoint(method: &str, name: &str, rps: f64, fail: f64, rt_p50: f64, ttfe_p50: Option<f64>) -> Value {
        let pct = |p50: f64| json!({"count": 10, "avg": p50, "min": p50, "max": p50, "p50": p50, "p90": p50, "p95": p50, "p99": p50, "p999": p50});
        json!({
            "kind": "sse", "method": method, "name": name, "rps": rps, "failure_ratio": fail,
            "response_time_ms": pct(rt_p50), "ttfe_ms": ttfe_p50.map(pct),
            "events_per_request": 1, "business_events_per_s": rps,
        })
    }

    fn report(endpoints: Vec<Value>, aggregated: Value) -> Value {
        json!({"schema": crate::report::SCHEMA_ID, "scenario": "s.toml", "duration_s": 2.0,
               "endpoints": endpoints, "aggregated": aggregated})
    }

    fn verdict(c: &Comparison, row: &str, figure: &str) -> Verdict {
        c.rows
            .iter()
            .find(|r| r.row == row && r.figure == figure)
            .unwrap_or_else(|| panic!("no {row} {figure} in {:#?}", c.rows))
            .verdict
    }

    #[test]
    fn goodput_is_compared_where_a_row_has_it() {
        let mut with = endpoint("POST", "/run", 10.0, 0.0, 100.0, None);
        with["goodput"] = json!({"good": 95, "requests": 100, "per_s": 9.5, "share": 0.95});
        let mut worse = with.clone();
        worse["goodput"] = json!({"good": 80, "requests": 100, "per_s": 8.0, "share": 0.80});
        let plain = endpoint("GET", "/health", 10.0, 0.0, 100.0, None);
        let base = report(vec![with, plain.clone()], json!({}));
        let new = report(vec![worse, plain], json!({}));
        let c = compare(&base, &new, "a", "b", Tolerances::default());
        assert_eq!(verdict(&c, "POST /run", "goodput.per_s"), Verdict::Regressed);
        assert_eq!(verdict(&c, "POST /run", "goodput.share"), Verdict::Regressed);
        assert!(
            !c.rows
                .iter()
                .any(|r| r.name == "/health" && r.figure.starts_with("goodput"))
        );
    }

    #[test]
    fn tolerances_decide_the_verdicts() {
        let t = Tolerances::default();
        // Latency: up 15 % regressed, up 5 % ok, down 20 % better.
        assert_eq!(judge(Kind::Latency, Some(100.0), Some(115.0), t).1, Verdict::Regressed);
        // A good share falling 5 pp is worse, rising is better (failure ratio: the reverse).
        assert_eq!(judge(Kind::Share, Some(0.95), Some(0.90), t).1, Verdict::Regressed);
        assert_eq!(judge(Kind::Share, Some(0.90), Some(0.95), t).1, Verdict::Better);
        assert_eq!(judge(Kind::Ratio, Some(0.90), Some(0.95), t).1, Verdict::Regressed);
        assert_eq!(judge(Kind::Latency, Some(100.0), Some(105.0), t).1, Verdict::Ok);
        assert_eq!(judge(Kind::Latency, Some(100.0), Some(80.0), t).1, Verdict::Better);
        // Exactly the tolerance is not beyond it.
        assert_eq!(judge(Kind::Latency, Some(100.0), Some(110.0), t).1, Verdict::Ok);
        // Throughput: down is worse.
        assert_eq!(
            judge(Kind::Throughput, Some(100.0), Some(85.0), t).1,
            Verdict::Regressed
        );
        assert_eq!(judge(Kind::Throughput, Some(100.0), Some(120.0), t).1, Verdict::Better);
        assert_eq!(
            judge(Kind::Throughput, Some(0.0), Some(5.0), t),
            (None, Verdict::Better)
        );
        assert_eq!(
            judge(Kind::Throughput, Some(0.0), Some(0.0), t),
            (Some(0.0), Verdict::Ok)
        );
        // Failure ratio in percentage points.
        let (pp, v) = judge(Kind::Ratio, Some(0.01), Some(0.025), t);
        assert!((pp.unwrap() - 1.5).abs() < 1e-9);
        assert_eq!(v, Verdict::Regressed);
        assert_eq!(judge(Kind::Ratio, Some(0.01), Some(0.015), t).1, Verdict::Ok);
        assert_eq!(judge(Kind::Ratio, Some(0.05), Some(0.0), t).1, Verdict::Better);
        // A missing figure is not judged.
        assert_eq!(judge(Kind::Latency, None, Some(1.0), t), (None, Verdict::NotJudged));
    }

    #[test]
    fn sub_millisecond_latencies_get_a_millisecond_of_slack() {
        let t = Tolerances::default();
        // +100 % but 0.4 ms: noise.
        assert_eq!(judge(Kind::Latency, Some(0.4), Some(0.8), t).1, Verdict::Ok);
        assert_eq!(judge(Kind::Latency, Some(0.4), Some(1.3), t).1, Verdict::Ok);
        assert_eq!(judge(Kind::Latency, Some(0.5), Some(2.0), t).1, Verdict::Regressed);
        assert_eq!(judge(Kind::Latency, Some(0.0), Some(0.9), t).1, Verdict::Ok);
        assert_eq!(
            judge(Kind::Latency, Some(0.0), Some(3.0), t),
            (None, Verdict::Regressed)
        );
        // From 1 ms up the tolerance alone decides.
        assert_eq!(judge(Kind::Latency, Some(1.0), Some(1.2), t).1, Verdict::Regressed);
    }

    #[test]
    fn rows_are_matched_by_method_and_name() {
        let base = report(
            vec![
                endpoint("POST", "/run", 10.0, 0.0, 100.0, Some(20.0)),
                endpoint("GET", "/old", 5.0, 0.0, 10.0, None),
            ],
            endpoint("", "Aggregated", 15.0, 0.0, 50.0, Some(20.0)),
        );
        let new = report(
            vec![
                endpoint("GET", "/new", 5.0, 0.0, 10.0, None),
                endpoint("POST", "/run", 10.0, 0.03, 100.0, Some(120.0)),
            ],
            endpoint("", "Aggregated", 15.0, 0.0, 50.0, Some(20.0)),
        );
        let c = compare(&base, &new, "a.json", "b.json", Tolerances::default());
        assert_eq!(verdict(&c, "POST /run", "ttfe_ms.p50"), Verdict::Regressed);
        assert_eq!(verdict(&c, "POST /run", "failure_ratio"), Verdict::Regressed);
        assert_eq!(verdict(&c, "POST /run", "rps"), Verdict::Ok);
        assert_eq!(verdict(&c, "GET /old", "rps"), Verdict::OnlyInBase);
        assert_eq!(verdict(&c, "GET /new", "rps"), Verdict::OnlyInNew);
        assert_eq!(verdict(&c, "Aggregated", "ttfe_ms.p50"), Verdict::Ok);
        // Business events/s only where a task sets events_per_request.
        assert!(!c.rows.iter().any(|r| r.figure == "business_events_per_s"));
        // TTFE p50, p95, p99 (the helper sets them alike) and the failure ratio.
        assert_eq!((c.regressions, c.only_in_one, c.exit_code()), (4, 2, 1));
        let table = render(&c);
        assert!(
            table.contains("| POST /run | TTFE p50 (ms) | 20.00 | 120.00 | +500.0 % | REGRESSED |"),
            "{table}"
        );
        assert!(
            table.contains("| POST /run | failure ratio | 0.00 % | 3.00 % | +3.00 pp | REGRESSED |"),
            "{table}"
        );
        assert!(
            table.contains("| GET /old | req/s | 5.00 | - | - | only in base |"),
            "{table}"
        );
        assert!(table.contains("not counted as regressions"), "{table}");
    }

    #[test]
    fn missing_figures_are_shown_and_not_judged() {
        let base = report(vec![], json!({"name": "Aggregated", "rps": 3.0, "ttfe_ms": null}));
        let mut agg = endpoint("", "Aggregated", 3.0, 0.0, 5.0, Some(1.0));
        agg["events_per_request"] = json!(2);
        let new = report(vec![json!("junk")], agg);
        let c = compare(&base, &new, "a", "b", Tolerances::default());
        assert_eq!(verdict(&c, "Aggregated", "rps"), Verdict::Ok);
        assert_eq!(verdict(&c, "Aggregated", "response_time_ms.p50"), Verdict::NotJudged);
        assert_eq!(verdict(&c, "Aggregated", "ttfe_ms.p99"), Verdict::NotJudged);
        assert_eq!(verdict(&c, "Aggregated", "failure_ratio"), Verdict::NotJudged);
        assert!(render(&c).contains("| Aggregated | TTFE p50 (ms) | - | 1.00 | - | - |"));
        assert_eq!(c.exit_code(), 0);
        // No aggregated row at all: every figure shown as missing.
        let c = compare(&json!({}), &json!([]), "a", "b", Tolerances::default());
        assert!(c.rows.iter().all(|r| r.verdict == Verdict::NotJudged));
    }

    #[test]
    fn tolerances_parse() {
        assert_eq!(parse_tolerance("10"), Ok(10.0));
        assert_eq!(parse_tolerance("2.5%"), Ok(2.5));
        assert!(parse_tolerance("-1").is_err());
        assert!(parse_tolerance("inf").is_err());
        assert!(parse_tolerance("ten").is_err());
    }
}
