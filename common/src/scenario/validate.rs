//! The one pass from the file as written ([`RawScenario`]) to a [`Scenario`]: the
//! sections in a fixed order (host, run and presets, thresholds, limits, resolve, goodput, data
//! pools, user classes), stopping at the first error, which is the one reported.
//! Every error names the field path (`users[0].tasks[1].wait`) and what was expected.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::endpoints::Endpoints;
use super::pools::pools;
use super::raw::{RawClass, RawLimits, RawScenario, RawThreshold};
use super::run_defaults::{load_trace, presets, run_defaults};
use super::task::{Vars, task};
use super::values::{check_host, check_weight, parse_wait};
use super::{FieldErr, Scenario};
use crate::duration;
use crate::error::{Error, Result};
use crate::plan::{Endpoint, Limits, PLAN_FORMAT, Pool, RunPlan, TaskOrder, UserClass, Wait};
use crate::threshold::Threshold;

/// Checks `raw`, read from `file` (named so in messages); data files are found under
/// `base`, and `env` resolves `${NAME}` secrets and `env` pools.
pub(super) fn scenario(
    raw: RawScenario,
    file: &str,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Scenario> {
    let err = |field: &str, message: String| Error::field(file, field, message);
    let host = raw
        .host
        .as_deref()
        .map(|h| check_host(h).map_err(|m| err("host", m)))
        .transpose()?;
    let mut run = run_defaults(&raw.run, "run", base, &err)?;
    let mut presets = presets(&raw.presets, base, &err)?;
    let thresholds = thresholds(&raw.thresholds, &err)?;
    let limits = limits(&raw.limits, &err)?;
    let resolve = resolve(raw.resolve, &err)?;
    let pools = pools(raw.data, base, env, &err)?;
    let default_slo = raw
        .goodput
        .as_ref()
        .map(|g| super::goodput::slo(g, None))
        .transpose()
        .map_err(|(field, m)| err(&field, m))?;
    let (classes, endpoints) = classes(raw.users, &pools, file, env)?;
    let plan = RunPlan {
        format: PLAN_FORMAT,
        source: file.to_string(),
        host,
        classes,
        pools,
        endpoints,
        limits,
        resolve,
    };
    // A trace is read once the tasks its lines may name are known.
    load_trace(&mut run, &plan, "run", &err)?;
    for (name, preset) in &mut presets {
        load_trace(preset, &plan, &format!("presets.{name}"), &err)?;
    }
    Ok(Scenario {
        plan,
        run,
        presets,
        thresholds,
        goodput: default_slo,
    })
}

/// `thresholds = [...]`: each an expression, or a table adding `abort_on_fail`.
fn thresholds(raw: &[RawThreshold], err: FieldErr<'_>) -> Result<Vec<Threshold>> {
    raw.iter()
        .enumerate()
        .map(|(i, t)| {
            let (expr, abort_on_fail) = match t {
                RawThreshold::Expr(e) => (e, false),
                RawThreshold::Full(t) => (&t.expr, t.abort_on_fail),
            };
            Threshold::parse(expr)
                .map(|t| Threshold { abort_on_fail, ..t })
                .map_err(|m| err(&format!("thresholds[{i}]"), m))
        })
        .collect()
}

/// `[limits]`: the defaults of [`Limits`] with what the file sets.
fn limits(raw: &RawLimits, err: FieldErr<'_>) -> Result<Limits> {
    let mut limits = Limits::default();
    if let Some(bytes) = raw.sse_max_event_bytes {
        limits.sse_max_event_bytes = usize::try_from(bytes).ok().filter(|b| *b >= 64).ok_or_else(|| {
            err(
                "limits.sse_max_event_bytes",
                format!("{bytes} is too small; expected at least 64"),
            )
        })?;
    }
    limits.tls_insecure = raw.tls_insecure.unwrap_or(false);
    if let Some(t) = raw.connect_timeout.as_deref() {
        limits.connect_timeout = duration::parse(t).map_err(|m| err("limits.connect_timeout", m))?;
    }
    if let Some(t) = raw.dns_refresh.as_deref() {
        limits.dns_refresh = duration::parse(t)
            .and_then(|d| {
                if d.is_zero() {
                    Err("a refresh interval must be above 0".to_string())
                } else {
                    Ok(d)
                }
            })
            .map_err(|m| err("limits.dns_refresh", m))?;
    }
    Ok(limits)
}

/// `[resolve]`: host names pinned to IP:PORT addresses, at least one each.
fn resolve(raw: BTreeMap<String, Vec<String>>, err: FieldErr<'_>) -> Result<BTreeMap<String, Vec<SocketAddr>>> {
    let mut resolve = BTreeMap::new();
    for (host, addrs) in raw {
        let field = format!("resolve.{host}");
        let parsed = addrs
            .iter()
            .map(|a| {
                a.parse::<SocketAddr>()
                    .map_err(|_| err(&field, format!("\"{a}\" is not an IP:PORT address")))
            })
            .collect::<Result<Vec<_>>>()?;
        if parsed.is_empty() {
            return Err(err(&field, "give at least one IP:PORT address".into()));
        }
        resolve.insert(host, parsed);
    }
    Ok(resolve)
}

/// `[[users]]`: the classes, with the endpoints (stats rows) their tasks name.
fn classes(
    raw: Vec<RawClass>,
    pools: &BTreeMap<String, Pool>,
    file: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Vec<UserClass>, Vec<Endpoint>)> {
    let err = |field: &str, message: String| Error::field(file, field, message);
    if raw.is_empty() {
        return Err(err(
            "users",
            "no user classes; add at least one [[users]] with tasks".into(),
        ));
    }
    let mut endpoints = Endpoints::default();
    let mut classes = Vec::new();
    let mut names = HashSet::new();
    for (ci, rc) in raw.into_iter().enumerate() {
        let cf = format!("users[{ci}]");
        let name = rc.name.clone().unwrap_or_else(|| format!("User{}", ci + 1));
        if !names.insert(name.clone()) {
            return Err(err(
                &format!("{cf}.name"),
                format!("`{name}` is used twice; class names must be unique"),
            ));
        }
        classes.push(class(rc, name, &cf, pools, file, env, &mut endpoints)?);
    }
    if classes.iter().all(|c| c.weight == 0 && c.fixed_count.is_none()) {
        return Err(err(
            "users",
            "every user class has weight 0; give at least one a weight above 0".into(),
        ));
    }
    Ok((classes, endpoints.list))
}

/// One `[[users]]` class named `name`, at field path `cf` (`users[0]`).
fn class(
    rc: RawClass,
    name: String,
    cf: &str,
    pools: &BTreeMap<String, Pool>,
    file: &str,
    env: &dyn Fn(&str) -> Option<String>,
    endpoints: &mut Endpoints,
) -> Result<UserClass> {
    let err = |field: &str, message: String| Error::field(file, format!("{cf}.{field}"), message);
    let weight = check_weight(rc.weight).map_err(|m| err("weight", m))?;
    let wait = match rc.wait.as_deref() {
        None => Wait::Constant(Duration::ZERO),
        Some(w) => parse_wait(w).map_err(|m| err("wait", m))?,
    };
    let host = rc
        .host
        .as_deref()
        .map(|h| check_host(h).map_err(|m| err("host", m)))
        .transpose()?;
    if rc.tasks.is_empty() {
        return Err(err("tasks", "no tasks; add at least one [[users.tasks]]".into()));
    }
    // Variables captured anywhere in the class may be used by any of its tasks.
    let captured: BTreeSet<String> = rc
        .on_start
        .iter()
        .chain(&rc.tasks)
        .flat_map(|t| t.capture.keys().cloned())
        .collect();
    let vars = Vars {
        pools,
        captured: &captured,
    };
    let mut tasks = Vec::new();
    for (ti, rt) in rc.tasks.into_iter().enumerate() {
        tasks.push(task(rt, &format!("{cf}.tasks[{ti}]"), file, env, &vars, endpoints)?);
    }
    let mut on_start = Vec::new();
    for (ti, rt) in rc.on_start.into_iter().enumerate() {
        on_start.push(task(rt, &format!("{cf}.on_start[{ti}]"), file, env, &vars, endpoints)?);
    }
    let order = match rc.order.as_deref() {
        None | Some("weighted") => TaskOrder::Weighted,
        Some("sequential") => TaskOrder::Sequential,
        Some(other) => {
            return Err(err(
                "order",
                format!("\"{other}\" is not a task order; expected \"weighted\" or \"sequential\""),
            ));
        }
    };
    if tasks.iter().all(|t| t.weight == 0) {
        return Err(err(
            "tasks",
            "every task has weight 0; give at least one a weight above 0".into(),
        ));
    }
    let fixed_count = rc
        .fixed_count
        .map(|n| u32::try_from(n).map_err(|_| err("fixed_count", format!("{n} is not a user count"))))
        .transpose()?;
    Ok(UserClass {
        name,
        weight,
        fixed_count,
        wait,
        host,
        order,
        on_start,
        tasks,
    })
}
