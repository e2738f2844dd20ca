//! `barrage validate -f SCENARIO`: loads a scenario and prints the normalised plan as
//! text, every default filled in, every secret as `***`. What a reader checks before
//! sending load: who runs, what each user sends and how often, what counts as success.

use std::fmt::Write;

use barrage_common::duration::format as dur;
use barrage_common::plan::{Capture, CheckRule, ConnectionPolicy, PoolMode, RunPlan, Task, TaskKind, TaskOrder, Wait};
use barrage_common::scenario::{RunDefaults, Scenario};

use crate::cli::ValidateArgs;
use crate::setup::{env_lookup, load_scenario};

/// Runs `barrage validate`: exit code 0 with the plan printed, or a usage error (2).
pub(super) fn command(args: ValidateArgs) -> anyhow::Result<u8> {
    let mut scenario = load_scenario(&args.scenario, &env_lookup)?;
    // As a run would have it: every task without objectives takes `[goodput]`'s.
    barrage_common::scenario::apply_goodput(&mut scenario.plan, scenario.goodput);
    print!("{}", describe(&scenario));
    Ok(0)
}

/// The whole scenario, normalised: the text `barrage validate` prints.
pub(crate) fn describe(s: &Scenario) -> String {
    let plan = &s.plan;
    let mut out = String::new();
    let _ = writeln!(out, "{}: valid", plan.source);
    let _ = writeln!(out, "host: {}", plan.host.as_deref().unwrap_or("(none: pass -H)"));
    let _ = writeln!(out, "run: {}", run(&s.run));
    for (name, preset) in &s.presets {
        let _ = writeln!(out, "preset `{name}`: {}", run(&preset.over(&s.run)));
    }
    for (name, addrs) in &plan.resolve {
        let shown: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
        let _ = writeln!(out, "resolve {name}: {}", shown.join(", "));
    }
    let _ = writeln!(
        out,
        "limits: sse_max_event_bytes {}, connect_timeout {}, tls_insecure {}",
        plan.limits.sse_max_event_bytes,
        dur(plan.limits.connect_timeout),
        plan.limits.tls_insecure
    );
    for (name, pool) in &plan.pools {
        let origin = if pool.secret {
            ", secret (from the environment)"
        } else if pool.row_group.is_some() {
            ", a CSV column (one row per request)"
        } else {
            ""
        };
        let mode = match pool.mode {
            PoolMode::Random => "random",
            PoolMode::Sequential => "sequential",
            PoolMode::PerUser => "per_user",
        };
        let _ = writeln!(out, "data `{name}`: {} entries, {mode}{origin}", pool.entries.len());
    }
    classes(plan, &mut out);
    out
}

fn run(r: &RunDefaults) -> String {
    let run_time = r
        .run_time
        .or(r.shape.as_ref().map(|s| s.duration()))
        .map_or("(until stopped)".into(), dur);
    if let Some(t) = r.arrival.as_ref().and_then(|a| a.trace.as_ref()) {
        let ends = r.run_time.map_or("(the trace's end)".into(), dur);
        return format!(
            "open model: replaying trace {} ({} arrivals over {:.3}s), at most {} in flight, run time {ends}",
            t.name,
            t.lines.len(),
            t.span().as_secs_f64(),
            r.arrival.as_ref().map_or(0, |a| a.max_in_flight)
        );
    }
    if let Some(a) = &r.arrival {
        let stages: Vec<String> = a
            .schedule
            .stages
            .iter()
            .map(|s| format!("to {}/s over {}", s.rate, dur(s.duration)))
            .collect();
        // The process only when it is not the constant rate: the examples' output stays.
        let process = match (a.process.is_random(), a.seed) {
            (false, _) => String::new(),
            (true, Some(seed)) => format!(", {} arrivals, seed {seed}", a.process),
            (true, None) => format!(", {} arrivals, seed random (printed in the report)", a.process),
        };
        return format!(
            "open model: {}/s{}{}{process}, at most {} in flight, run time {run_time}",
            a.schedule.start_rate,
            if stages.is_empty() { "" } else { ", then " },
            stages.join(", "),
            a.max_in_flight
        );
    }
    match &r.shape {
        None => format!(
            "users {}, spawn rate {}/s, run time {run_time}",
            r.users.map_or("(flag or 1)".into(), |u| u.to_string()),
            r.spawn_rate.map_or("(flag or 1)".into(), |r| r.to_string()),
        ),
        Some(shape) => {
            let stages: Vec<String> = shape
                .stages
                .iter()
                .map(|s| match s.spawn_rate {
                    Some(rate) => format!(
                        "{} users for {} at {}/s",
                        s.users,
                        dur(s.duration),
                        format!("{rate:.3}").trim_end_matches('0').trim_end_matches('.')
                    ),
                    None => format!("{} users for {} (reached by its end)", s.users, dur(s.duration)),
                })
                .collect();
            format!("stages [{}], run time {run_time}", stages.join(", "))
        }
    }
}

fn classes(plan: &RunPlan, out: &mut String) {
    let weighted: u64 = plan
        .classes
        .iter()
        .filter(|c| c.fixed_count.is_none())
        .map(|c| u64::from(c.weight))
        .sum();
    for c in &plan.classes {
        let share = match c.fixed_count {
            Some(n) => format!("exactly {n} users"),
            None if weighted > 0 => format!(
                "weight {} ({:.1} % of the weighted users)",
                c.weight,
                100.0 * f64::from(c.weight) / weighted as f64
            ),
            None => format!("weight {}", c.weight),
        };
        let wait = match c.wait {
            Wait::Constant(d) => format!("constant({})", dur(d)),
            Wait::Between(a, b) => format!("between({}, {})", dur(a), dur(b)),
            Wait::Pacing(p) => format!("pacing({})", dur(p)),
        };
        let order = match c.order {
            TaskOrder::Weighted => "weighted",
            TaskOrder::Sequential => "sequential",
        };
        let _ = writeln!(out, "user class `{}`: {share}, wait {wait}, order {order}", c.name);
        if let Some(host) = &c.host {
            let _ = writeln!(out, "  host {host}");
        }
        for t in &c.on_start {
            task(t, "on_start", None, out);
        }
        let total: u64 = c.tasks.iter().map(|t| u64::from(t.weight)).sum();
        for t in &c.tasks {
            let share = (c.order == TaskOrder::Weighted && total > 0).then(|| f64::from(t.weight) / total as f64);
            task(t, "task", share, out);
        }
    }
}

/// A task's goodput objectives as `ttfe <= 500ms, response_time <= 10s`.
fn objectives(slo: &barrage_common::goodput::Slo) -> String {
    let bound = |us: u64| dur(std::time::Duration::from_micros(us));
    [
        ("ttfe", slo.ttfe_us),
        ("ttft", slo.ttft_us),
        ("chunk_gap_p95", slo.chunk_gap_p95_us),
        ("response_time", slo.response_time_us),
    ]
    .into_iter()
    .filter_map(|(key, us)| us.map(|us| format!("{key} <= {}", bound(us))))
    .collect::<Vec<_>>()
    .join(", ")
}

fn task(t: &Task, role: &str, share: Option<f64>, out: &mut String) {
    let _ = write!(out, "  {role} `{}`: {} {}", t.name, t.method, t.path.redacted());
    if let Some(share) = share {
        let _ = write!(out, ", weight {} ({:.1} % of picks)", t.weight, 100.0 * share);
    }
    let _ = writeln!(out);
    let kind = match &t.kind {
        TaskKind::Http => "http".to_string(),
        TaskKind::Sse(sse) => {
            let judged = match (&sse.dify, &sse.terminal_event) {
                (Some(d), _) => format!("dify {:?}", d.app).to_lowercase(),
                (None, Some(e)) => format!("sse until `{e}`"),
                (None, None) => "sse".into(),
            };
            format!(
                "{judged}, first_event_timeout {}, read_timeout {}",
                dur(sse.first_event_timeout),
                dur(sse.read_timeout)
            )
        }
    };
    let expect = if t.expect.is_empty() {
        "any 2xx".to_string()
    } else {
        t.expect.iter().map(u16::to_string).collect::<Vec<_>>().join(", ")
    };
    let connection = match t.connection {
        ConnectionPolicy::KeepAlive => "keep-alive",
        ConnectionPolicy::PerRequest => "per-request",
    };
    let _ = writeln!(
        out,
        "    {kind}, timeout {}, expect {expect}, connection {connection}",
        dur(t.timeout)
    );
    if t.events_per_request != 1 {
        let _ = writeln!(out, "    events_per_request {}", t.events_per_request);
    }
    if !t.tags.is_empty() {
        let _ = writeln!(out, "    tags {}", t.tags.join(", "));
    }
    if let Some(slo) = &t.goodput {
        let _ = writeln!(out, "    goodput {}", objectives(slo));
    }
    for (k, v) in &t.headers {
        let _ = writeln!(out, "    {k}: {}", v.redacted());
    }
    if let Some(b) = &t.body {
        let what = if t.json_body { "json" } else { "body" };
        let _ = writeln!(out, "    {what}: {}", b.redacted());
    }
    for (var, from) in &t.capture {
        let from = match from {
            Capture::Json(p) => format!("json {p}"),
            Capture::Header(h) => format!("header {h}"),
        };
        let _ = writeln!(out, "    capture {{{{{var}}}}} from {from}");
    }
    for c in &t.checks {
        let rule = match &c.rule {
            CheckRule::JsonExists(p) => format!("json {p} exists"),
            CheckRule::JsonEquals { pointer, text, .. } => format!("json {pointer} equals {text:?}"),
            CheckRule::BodyContains(s) => format!("body contains {s:?}"),
        };
        let _ = writeln!(out, "    check `{}`: {rule}", c.name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_line(keys: &str) -> String {
        let text = format!(
            "host = \"http://127.0.0.1:9\"\n[run]\n{keys}\n[[users]]\nname = \"U\"\n[[users.tasks]]\nname = \"/a\"\npath = \"/a\"\n"
        );
        let s =
            barrage_common::scenario::parse_str(&text, config::FileFormat::Toml, "t.toml", &|_: &str| None).unwrap();
        run(&s.run)
    }

    #[test]
    fn the_open_model_line_names_a_random_process_and_its_seed() {
        assert_eq!(
            run_line("arrival_rate = 5"),
            "open model: 5/s, at most 1000 in flight, run time (until stopped)"
        );
        assert_eq!(
            run_line("arrival_rate = 5\narrival_process = \"poisson\"\nseed = 42"),
            "open model: 5/s, poisson arrivals, seed 42, at most 1000 in flight, run time (until stopped)"
        );
        assert_eq!(
            run_line("arrival_rate = 5\narrival_process = \"gamma\"\nburstiness = 0.5"),
            "open model: 5/s, gamma (burstiness 0.5) arrivals, seed random (printed in the report), at most 1000 in \
             flight, run time (until stopped)"
        );
    }
}

#[cfg(test)]
mod goodput_tests {
    use super::*;

    #[test]
    fn a_task_shows_its_goodput_objectives() {
        let text = "[goodput]\nresponse_time = \"10s\"\n[[users]]\n[[users.tasks]]\npath = \"/a\"\n\
                    [[users.tasks]]\npath = \"/s\"\nkind = \"sse\"\ngoodput = { ttfe = \"500ms\", chunk_gap_p95 = \"200ms\" }\n";
        let mut s =
            barrage_common::scenario::parse_str(text, config::FileFormat::Toml, "t.toml", &|_: &str| None).unwrap();
        barrage_common::scenario::apply_goodput(&mut s.plan, s.goodput);
        let shown = describe(&s);
        assert!(shown.contains("    goodput response_time <= 10s\n"), "{shown}");
        assert!(
            shown.contains("    goodput ttfe <= 500ms, chunk_gap_p95 <= 200ms\n"),
            "{shown}"
        );
    }
}
