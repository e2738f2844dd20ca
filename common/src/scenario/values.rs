//! Parsers of one field's value, shared by every section of the file: a target host, a
//! spawn rate, a wait, a weight. The command line checks `--host` and `--spawn-rate`
//! with the same functions, so a value means the same wherever it is given.

use std::time::Duration;

use crate::duration;
use crate::plan::Wait;

/// A weight (of a class or a task): absent means 1; 0 switches it off.
pub(super) fn check_weight(w: Option<i64>) -> Result<u32, String> {
    match w {
        None => Ok(1),
        Some(w) => u32::try_from(w).map_err(|_| format!("{w} is not a weight; expected 0 or more")),
    }
}

/// Spawn rates are users per second, above 0.
pub fn check_rate(r: f64) -> Result<f64, String> {
    if r.is_finite() && r > 0.0 {
        Ok(r)
    } else {
        Err(format!("{r} is not a spawn rate; expected users per second above 0"))
    }
}

/// A target host: `http(s)://name[:port]`, no path, query or credentials.
pub fn check_host(host: &str) -> Result<String, String> {
    let host = host.trim().trim_end_matches('/');
    let rest = if let Some(rest) = host.strip_prefix("http://").or_else(|| host.strip_prefix("https://")) {
        rest
    } else {
        return Err(format!(
            "\"{host}\" is not a target; expected http://host:port or https://host:port"
        ));
    };
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
        return Err(format!(
            "\"{host}\" is not a target; expected http://host:port without a path"
        ));
    }
    if let Some((_, port)) = rest.rsplit_once(':')
        && !rest.ends_with(']')
        && port.parse::<u16>().is_err()
    {
        return Err(format!("\"{host}\": port `{port}` is not a number from 0 to 65535"));
    }
    Ok(host.to_string())
}

/// `constant(S)`, `between(A, B)`, `pacing(S)`; each argument a duration or seconds.
pub fn parse_wait(text: &str) -> Result<Wait, String> {
    let bad = || format!("\"{text}\" is not a wait; expected constant(S), between(A, B) or pacing(S)");
    let t = text.trim();
    let (func, args) = t.split_once('(').ok_or_else(bad)?;
    let args = args.strip_suffix(')').ok_or_else(bad)?;
    let args: Vec<Duration> = args
        .split(',')
        .map(|a| duration::parse(a).map_err(|m| format!("{}: {m}", bad())))
        .collect::<Result<_, _>>()?;
    match (func.trim(), args.as_slice()) {
        ("constant", [d]) => Ok(Wait::Constant(*d)),
        ("pacing", [d]) if !d.is_zero() => Ok(Wait::Pacing(*d)),
        ("between", [a, b]) if a <= b => Ok(Wait::Between(*a, *b)),
        ("between", [_, _]) => Err(format!("\"{text}\": the first bound must not exceed the second")),
        _ => Err(bad()),
    }
}
