//! Pass/fail criteria: `p95(ttfe) < 500ms`, `error_rate < 1%`, `rps > 100`,
//! `p95(ttfe){name=/v1/workflows/run} < 500ms`, `p95(ttfe)[60s] < 500ms`.
//!
//! Parsed once (from `--threshold` and the scenario's `thresholds`), evaluated by the
//! master on its merged figures. Limits are kept in base units: microseconds for
//! latencies, a fraction for `error_rate` and `good_rate`, per second for rates
//! (`goodput` is good requests per second).

use std::fmt;
use std::time::Duration;

use crate::duration;
use crate::metrics::Metric;

/// One criterion, as parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    /// The expression as written (trimmed): how reports name it.
    pub text: String,
    /// What is measured.
    pub stat: Stat,
    /// `{name=...}`: one stats row (every method of that name) instead of the whole run.
    pub endpoint: Option<String>,
    /// `[60s]`: only the trailing window of the run, not all of it.
    pub window: Option<Duration>,
    /// How the measured value must compare with `limit` to pass.
    pub op: Op,
    /// In base units: µs for latencies, a fraction for `error_rate`, per second for rates.
    pub limit: f64,
    /// Stop the run, cluster-wide, as soon as this fails.
    pub abort_on_fail: bool,
}

/// What a threshold measures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stat {
    /// `p95(ttfe)`, `p99.9(response_time)`, `med(...)` = p50; the quantile in (0, 100].
    Percentile(f64, Metric),
    /// `avg(metric)`: the mean.
    Avg(Metric),
    /// `min(metric)`: the lowest value.
    Min(Metric),
    /// `max(metric)`: the highest value.
    Max(Metric),
    /// Failed requests / requests.
    ErrorRate,
    /// Requests per second.
    Rps,
    /// SSE events per second.
    EventsPerS,
    /// Successful requests x `events_per_request`, per second.
    BusinessEventsPerS,
    /// `requests`: requests sent.
    Requests,
    /// `failures`: failed requests.
    Failures,
    /// Open model: arrivals dropped at the in-flight cap.
    Dropped,
    /// `goodput`: requests that met their task's goodput objectives, per second.
    Goodput,
    /// `good_rate`: good requests / requests of the rows with goodput objectives.
    GoodRate,
}

impl Stat {
    /// How an observed value is shown, in the threshold's own unit.
    pub fn show(&self, v: f64) -> String {
        match self {
            Stat::Percentile(..) | Stat::Avg(_) | Stat::Min(_) | Stat::Max(_) => format!("{:.2}ms", v / 1000.0),
            Stat::ErrorRate | Stat::GoodRate => format!("{:.3}%", v * 100.0),
            Stat::Rps | Stat::EventsPerS | Stat::BusinessEventsPerS | Stat::Goodput => format!("{v:.2}/s"),
            Stat::Requests | Stat::Failures | Stat::Dropped => format!("{v:.0}"),
        }
    }

    /// Whether a trailing window can compute it: the master keeps per-second
    /// histograms of response time and TTFE only, and counts.
    pub fn windowable(&self) -> bool {
        match self {
            Stat::Percentile(_, m) | Stat::Avg(m) | Stat::Min(m) | Stat::Max(m) => {
                matches!(m, Metric::ResponseTime | Metric::Ttfe)
            }
            Stat::BusinessEventsPerS => false,
            _ => true,
        }
    }
}

/// The comparison of a threshold: the measured value on the left, the limit on the right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl Op {
    /// Whether `observed` passes against `limit`.
    pub fn holds(self, observed: f64, limit: f64) -> bool {
        match self {
            Op::Lt => observed < limit,
            Op::Le => observed <= limit,
            Op::Gt => observed > limit,
            Op::Ge => observed >= limit,
        }
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

const HELP: &str = "expected e.g. `p95(ttfe) < 500ms`, `error_rate < 1%`, `rps > 100`, \
`p99(response_time){name=/v1/chat-messages} < 2s` or `p95(ttfe)[60s] < 500ms`";

impl Threshold {
    /// Parses one expression; the error says what was wrong and shows the grammar.
    pub fn parse(text: &str) -> Result<Threshold, String> {
        let text = text.trim();
        let bad = |why: String| format!("threshold \"{text}\": {why}; {HELP}");
        let at = text
            .find(['<', '>'])
            .ok_or_else(|| bad("no comparison (<, <=, >, >=)".into()))?;
        let (lhs, rest) = text.split_at(at);
        let (op, rhs) = match rest.as_bytes() {
            [b'<', b'=', ..] => (Op::Le, &rest[2..]),
            [b'>', b'=', ..] => (Op::Ge, &rest[2..]),
            [b'<', ..] => (Op::Lt, &rest[1..]),
            _ => (Op::Gt, &rest[1..]),
        };
        let mut lhs = lhs.trim();
        let mut window = None;
        if let Some(open) = lhs.strip_suffix(']').and_then(|l| l.rfind('[').map(|i| (i, l))) {
            let (i, l) = open;
            let w = duration::parse(&l[i + 1..]).map_err(|m| bad(format!("window: {m}")))?;
            if w < Duration::from_secs(1) {
                return Err(bad("a window is at least 1s".into()));
            }
            window = Some(w);
            lhs = l[..i].trim_end();
        }
        let mut endpoint = None;
        if let Some(l) = lhs.strip_suffix('}') {
            let i = l.rfind('{').ok_or_else(|| bad("unmatched `}`".into()))?;
            let filter = l[i + 1..].trim();
            let name = filter
                .strip_prefix("name")
                .map(str::trim_start)
                .and_then(|f| f.strip_prefix('='))
                .map(|n| n.trim().trim_matches(|c| c == '"' || c == '\''))
                .filter(|n| !n.is_empty())
                .ok_or_else(|| {
                    bad(format!(
                        "`{{{filter}}}` is not a filter; the one filter is {{name=ROW}}"
                    ))
                })?;
            endpoint = Some(name.to_string());
            lhs = l[..i].trim_end();
        }
        let stat = parse_stat(lhs).map_err(bad)?;
        if window.is_some() && !stat.windowable() {
            return Err(bad(format!(
                "`{lhs}` has no trailing window (windows cover response_time and ttfe, error_rate, rps, events_per_s, requests, failures, goodput, good_rate)"
            )));
        }
        if stat == Stat::Dropped && endpoint.is_some() {
            return Err(bad(
                "dropped_iterations is the whole cluster's: arrivals are dropped before they pick a row".into(),
            ));
        }
        if window.is_some() && endpoint.is_some() {
            return Err(bad(
                "a trailing window covers the whole run's figures, not one row".into()
            ));
        }
        let limit = parse_limit(&stat, rhs.trim()).map_err(bad)?;
        Ok(Threshold {
            text: text.to_string(),
            stat,
            endpoint,
            window,
            op,
            limit,
            abort_on_fail: false,
        })
    }
}

fn parse_stat(s: &str) -> Result<Stat, String> {
    let simple = match s {
        "error_rate" => Some(Stat::ErrorRate),
        "rps" => Some(Stat::Rps),
        "events_per_s" => Some(Stat::EventsPerS),
        "business_events_per_s" => Some(Stat::BusinessEventsPerS),
        "requests" => Some(Stat::Requests),
        "failures" => Some(Stat::Failures),
        "dropped_iterations" => Some(Stat::Dropped),
        "goodput" => Some(Stat::Goodput),
        "good_rate" => Some(Stat::GoodRate),
        _ => None,
    };
    if let Some(stat) = simple {
        return Ok(stat);
    }
    let (func, arg) = s
        .strip_suffix(')')
        .and_then(|s| s.split_once('('))
        .ok_or_else(|| format!("`{s}` is not a figure"))?;
    let metric = Metric::parse(arg.trim()).ok_or_else(|| {
        let names: Vec<&str> = Metric::ALL.iter().map(|m| m.as_str()).collect();
        format!("`{}` is not a latency; one of {}", arg.trim(), names.join(", "))
    })?;
    match func.trim() {
        "avg" | "mean" => Ok(Stat::Avg(metric)),
        "min" => Ok(Stat::Min(metric)),
        "max" => Ok(Stat::Max(metric)),
        "med" | "median" => Ok(Stat::Percentile(50.0, metric)),
        f => {
            let q = f
                .strip_prefix('p')
                .map(|q| q.trim_start_matches('(').trim_end_matches(')'))
                .and_then(|q| q.parse::<f64>().ok())
                .filter(|q| *q > 0.0 && *q <= 100.0)
                .ok_or_else(|| format!("`{f}` is not a statistic; p50, p95, p99.9, avg, min, max or med"))?;
            Ok(Stat::Percentile(q, metric))
        }
    }
}

fn parse_limit(stat: &Stat, v: &str) -> Result<f64, String> {
    let number = |n: &str| {
        n.trim()
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite() && *x >= 0.0)
            .ok_or_else(|| format!("`{v}` is not a limit"))
    };
    match stat {
        Stat::Percentile(..) | Stat::Avg(_) | Stat::Min(_) | Stat::Max(_) => {
            // A bare number is milliseconds, as in k6.
            match v.parse::<f64>() {
                Ok(ms) if ms.is_finite() && ms >= 0.0 => Ok(ms * 1000.0),
                _ => {
                    let d = duration::parse(v).map_err(|m| format!("latency limit: {m}"))?;
                    Ok(d.as_secs_f64() * 1e6)
                }
            }
        }
        Stat::ErrorRate | Stat::GoodRate => match v.strip_suffix('%') {
            Some(p) => number(p).map(|p| p / 100.0),
            None => number(v),
        },
        _ => number(v.strip_suffix("/s").unwrap_or(v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_forms_parse() {
        let t = Threshold::parse("p95(ttfe) < 500ms").unwrap();
        assert_eq!(
            (t.stat, t.op, t.limit),
            (Stat::Percentile(95.0, Metric::Ttfe), Op::Lt, 500_000.0)
        );
        let t = Threshold::parse("error_rate < 1%").unwrap();
        assert_eq!((t.stat, t.limit), (Stat::ErrorRate, 0.01));
        assert_eq!(Threshold::parse("error_rate<=0.05").unwrap().limit, 0.05);
        let t = Threshold::parse("p99(response_time) < 2s").unwrap();
        assert_eq!(t.limit, 2_000_000.0);
        let t = Threshold::parse("rps > 100").unwrap();
        assert_eq!((t.stat, t.op, t.limit), (Stat::Rps, Op::Gt, 100.0));
        assert_eq!(Threshold::parse("events_per_s >= 500").unwrap().op, Op::Ge);
        let t = Threshold::parse("p95(ttfe){name=/v1/workflows/run} < 500ms").unwrap();
        assert_eq!(t.endpoint.as_deref(), Some("/v1/workflows/run"));
        let t = Threshold::parse("p95(ttfe)[60s] < 500").unwrap();
        assert_eq!((t.window, t.limit), (Some(Duration::from_secs(60)), 500_000.0));
        let t = Threshold::parse("p99.9(response_time){name=\"/api/leads/:id\"} <= 1.5s").unwrap();
        assert_eq!(t.stat, Stat::Percentile(99.9, Metric::ResponseTime));
        assert_eq!(t.endpoint.as_deref(), Some("/api/leads/:id"));
        assert_eq!(
            Threshold::parse("med(ttft) < 1s").unwrap().stat,
            Stat::Percentile(50.0, Metric::Ttft)
        );
        assert_eq!(
            Threshold::parse("max(time_to_headers) < 1s").unwrap().stat,
            Stat::Max(Metric::TimeToHeaders)
        );
        assert_eq!(Threshold::parse("  failures < 1 ").unwrap().text, "failures < 1");
        assert_eq!(Threshold::parse("dropped_iterations < 1").unwrap().stat, Stat::Dropped);
        let t = Threshold::parse("good_rate > 95%").unwrap();
        assert_eq!((t.stat, t.op, t.limit), (Stat::GoodRate, Op::Gt, 0.95));
        let t = Threshold::parse("goodput{name=/v1/chat-messages} >= 12.5/s").unwrap();
        assert_eq!((t.stat, t.limit), (Stat::Goodput, 12.5));
        assert_eq!(t.endpoint.as_deref(), Some("/v1/chat-messages"));
        let t = Threshold::parse("good_rate[30s] > 0.9").unwrap();
        assert_eq!((t.window, t.limit), (Some(Duration::from_secs(30)), 0.9));
        assert!(Stat::GoodRate.windowable() && Stat::Goodput.windowable());
        assert_eq!(Stat::GoodRate.show(0.9), "90.000%");
    }

    #[test]
    fn bad_forms_say_what_is_wrong() {
        for (text, says) in [
            ("p95(ttfe)", "no comparison"),
            ("p95(ttfx) < 1s", "`ttfx` is not a latency"),
            ("p101(ttfe) < 1s", "`p101` is not a statistic"),
            ("q95(ttfe) < 1s", "`q95` is not a statistic"),
            ("latency < 1s", "`latency` is not a figure"),
            ("p95(ttfe) < soon", "latency limit"),
            ("error_rate < lots%", "is not a limit"),
            ("rps > -1", "is not a limit"),
            ("p95(ttft)[60s] < 1s", "has no trailing window"),
            ("p95(ttfe)[0s] < 1s", "at least 1s"),
            ("p95(ttfe)[1 fortnight] < 1s", "window"),
            ("p95(ttfe){method=GET} < 1s", "not a filter"),
            ("p95(ttfe){name=/x}[60s] < 1s", "whole run"),
            ("dropped_iterations{name=/x} < 1", "before they pick a row"),
        ] {
            let err = Threshold::parse(text).unwrap_err();
            assert!(err.contains(says), "{text}: {err}");
            assert!(err.contains("expected e.g."), "{text}: {err}");
        }
    }

    #[test]
    fn comparisons_and_display() {
        assert!(Op::Lt.holds(1.0, 2.0) && !Op::Lt.holds(2.0, 2.0) && Op::Le.holds(2.0, 2.0));
        assert!(Op::Gt.holds(3.0, 2.0) && !Op::Gt.holds(2.0, 2.0) && Op::Ge.holds(2.0, 2.0));
        assert_eq!(Stat::ErrorRate.show(0.0125), "1.250%");
        assert_eq!(Stat::Avg(Metric::Ttfe).show(51_234.0), "51.23ms");
        assert_eq!(Stat::Rps.show(99.5), "99.50/s");
    }
}
