//! The run's thresholds: the scenario's `thresholds = [...]` and the `--threshold` /
//! `--threshold-abort` flags, each checked against the plan's stats rows, and the
//! events each request stands for (which event-rate thresholds count by).

use std::collections::BTreeMap;

use barrage_common::plan::RunPlan;
use barrage_common::threshold::Threshold;

use crate::cli::LoadArgs;
use crate::exit::Failure;

/// The scenario's thresholds followed by the flags' (`--threshold-abort` ones stop the
/// run when they fail); an error names a `{name=..}` that matches no stats row.
pub(super) fn merged(load: &LoadArgs, from_file: Vec<Threshold>, plan: &RunPlan) -> Result<Vec<Threshold>, Failure> {
    let mut thresholds = from_file;
    for (text, abort_on_fail) in load
        .threshold
        .iter()
        .map(|t| (t, false))
        .chain(load.threshold_abort.iter().map(|t| (t, true)))
    {
        let t = Threshold::parse(text).map_err(|m| Failure::usage(format!("--threshold: {m}")))?;
        thresholds.push(Threshold { abort_on_fail, ..t });
    }
    if let Some(name) = thresholds
        .iter()
        .filter_map(|t| t.endpoint.as_ref())
        .find(|n| !plan.endpoints.iter().any(|e| &e.name == *n))
    {
        let rows: Vec<&str> = plan.endpoints.iter().map(|e| e.name.as_str()).collect();
        return Err(Failure::usage(format!(
            "threshold on {{name={name}}}: no stats row has that name; the rows are {}",
            rows.join(", ")
        )));
    }
    if let Some(t) = thresholds.iter().find(|t| needs_goodput(t, plan)) {
        return Err(Failure::usage(format!(
            "threshold \"{t}\": no task{} has goodput objectives to judge; add goodput = {{ ttfe = \"500ms\" }} to a task, [goodput] to the scenario, or --goodput",
            t.endpoint.as_ref().map(|n| format!(" of {n}")).unwrap_or_default()
        )));
    }
    Ok(thresholds)
}

/// A `goodput` or `good_rate` threshold whose rows (all, or its `{name=..}`) have no
/// goodput objectives: it could only ever say "no data".
pub(super) fn needs_goodput(t: &Threshold, plan: &RunPlan) -> bool {
    use barrage_common::threshold::Stat;
    matches!(t.stat, Stat::Goodput | Stat::GoodRate)
        && !(0..plan.endpoints.len())
            .filter(|&i| t.endpoint.as_ref().is_none_or(|n| *n == plan.endpoints[i].name))
            .any(|i| plan.endpoint_has_goodput(i))
}

/// Business events per request, by (name, method), for the tasks that send other than
/// one; read from every task, before `--tags` filters any out.
pub(super) fn events_per_request(plan: &RunPlan) -> BTreeMap<(String, String), u32> {
    plan.classes
        .iter()
        .flat_map(|c| c.tasks.iter().chain(&c.on_start))
        .filter(|t| t.events_per_request != 1)
        .filter_map(|t| {
            let e = plan.endpoints.get(t.endpoint)?;
            Some(((e.name.clone(), e.method.clone()), t.events_per_request))
        })
        .collect()
}
