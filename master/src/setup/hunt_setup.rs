//! `barrage hunt`'s settings: a run whose load the breaking-point search steps
//! ([`crate::hunt`]), lowered from the hunt's flags over the ordinary run settings.

use std::sync::Arc;
use std::time::Duration;

use barrage_common::plan::RunPlan;
use barrage_common::scenario::{self, Scenario};
use barrage_common::threshold::Threshold;

use crate::cli::{HuntArgs, LoadArgs};
use crate::exit::Failure;

use super::MasterSetup;

/// A run whose users the breaking-point search decides.
pub fn hunt_setup(args: &HuntArgs, scenario: Scenario, workers: u32) -> Result<MasterSetup, Failure> {
    refuse_load_flags(args)?;
    let mean_wait = mean_wait(&scenario.plan);
    // The hunt applies the in-flight cap to its own arrival steps.
    let load = LoadArgs {
        max_in_flight: None,
        ..args.load.clone()
    };
    let mut setup = MasterSetup::resolve(&load, scenario, workers, Some(Duration::from_secs(60)))?;
    let slos = args
        .slo
        .iter()
        .map(|s| Threshold::parse(s).map_err(|m| Failure::usage(format!("--slo: {m}"))))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(slo) = slos
        .iter()
        .find(|t| super::threshold_flags::needs_goodput(t, &setup.plan))
    {
        return Err(Failure::usage(format!(
            "--slo {}: no task has goodput objectives to judge; add goodput = {{ ttfe = \"500ms\" }} to a task, [goodput] to the scenario, or --goodput",
            slo.text
        )));
    }
    let mut search = crate::hunt::search::SearchPlan {
        kind: args.search,
        start: args.start,
        max: args.max,
        step: args.step,
        bisect: args.bisect,
        growth: 2.0,
        resolution: args.resolution,
        budget: args.max_probes.saturating_sub(u32::from(!args.no_remeasure)),
    };
    if search.kind == crate::hunt::search::SearchKind::Geometric {
        search.growth = crate::hunt::search::plan_growth(&search);
    }
    let cfg = crate::hunt::HuntConfig {
        search,
        step_time: args.step_time,
        stop: crate::hunt::stable::StopRule {
            within: args.stable_within.0,
            min: args.min_step_time.unwrap_or(args.step_time / 4),
        },
        warmup: args.warmup.unwrap_or(args.step_time / 6),
        slos,
        stall: (!args.no_stall).then_some((args.stall_users, args.stall_gain)),
        remeasure: !args.no_remeasure,
        mean_wait,
        rate_mode: args.arrival,
    };
    cfg.check().map_err(Failure::usage)?;
    // Each step is reached within a tenth of its shortest time unless -r says
    // otherwise: the largest jump is --step, or a geometric climb's last one.
    let jump = match cfg.search.kind {
        crate::hunt::search::SearchKind::Linear => f64::from(args.step),
        crate::hunt::search::SearchKind::Geometric => f64::from(args.max) * (1.0 - 1.0 / cfg.search.growth),
    };
    let shortest = if cfg.stop.within.is_some() {
        cfg.stop.min.max(Duration::from_secs(1))
    } else {
        cfg.step_time
    };
    setup.run.spawn_rate = args
        .load
        .spawn_rate
        .unwrap_or_else(|| (f64::from(args.start).max(jump) * 10.0 / shortest.as_secs_f64()).max(1.0));
    setup.run.users = args.max;
    setup.info.users = args.max;
    setup.info.spawn_rate = setup.run.spawn_rate;
    setup.run.shape = None;
    // The steps change the load by design: no drift table.
    setup.info.load_varies = true;
    if args.arrival {
        let a = scenario::Arrival {
            schedule: barrage_common::arrival_schedule::Schedule::constant(f64::from(args.start.max(1))),
            max_in_flight: args.load.max_in_flight.unwrap_or(scenario::DEFAULT_MAX_IN_FLIGHT),
            process: Default::default(),
            seed: None,
            trace: None,
        };
        setup.run.users = 0;
        setup.info.users = 0;
        setup.run.arrival = Some(a.clone());
        setup.info.arrival = Some(a);
    }
    setup.run.run_time = Some(args.load.run_time.unwrap_or(cfg.bound()));
    // Failed requests are what a hunt looks for: they fail the run only through
    // --threshold or an explicit --exit-code-on-error.
    setup.exit_code_on_error = args.load.exit_code_on_error.unwrap_or(0);
    setup.run.hunt = Some(Arc::new(std::sync::Mutex::new(crate::hunt::Hunt::new(cfg))));
    Ok(setup)
}

/// The mean pause between a user's tasks, over the classes by weight (Little's law).
pub(super) fn mean_wait(plan: &RunPlan) -> Duration {
    let weighted: Vec<(f64, f64)> = plan
        .classes
        .iter()
        .map(|c| {
            let wait = match c.wait {
                barrage_common::plan::Wait::Constant(d) => d.as_secs_f64(),
                barrage_common::plan::Wait::Between(a, b) => (a.as_secs_f64() + b.as_secs_f64()) / 2.0,
                // A pacing user's cycle is its pacing, not response time + wait.
                barrage_common::plan::Wait::Pacing(_) => 0.0,
            };
            (f64::from(c.weight.max(c.fixed_count.unwrap_or(0))), wait)
        })
        .collect();
    let total: f64 = weighted.iter().map(|(w, _)| w).sum();
    if total <= 0.0 {
        return Duration::ZERO;
    }
    Duration::from_secs_f64(weighted.iter().map(|(w, s)| w * s).sum::<f64>() / total)
}

/// The flags that set the load, which a hunt sets itself: a usage error naming them.
fn refuse_load_flags(args: &HuntArgs) -> Result<(), Failure> {
    if args.load.users.is_some()
        || !args.load.stage.is_empty()
        || args.load.arrival_rate.is_some()
        || !args.load.arrival_stage.is_empty()
        || args.load.arrival_trace.is_some()
    {
        return Err(Failure::usage(
            "hunt sets the load itself (--start, --step, --max; --arrival for rates); leave out -u, --stage, --arrival-rate and --arrival-stage".to_string(),
        ));
    }
    if args.load.start_from_ui {
        return Err(Failure::usage(
            "hunt steps the load itself; --start-from-ui is for runs started from the web UI".to_string(),
        ));
    }
    if args.load.arrival_process.is_some() || args.load.arrival_burstiness.is_some() || args.load.arrival_seed.is_some()
    {
        return Err(Failure::usage(
            "hunt --arrival steps a constant arrival rate; leave out --arrival-process, --arrival-burstiness and \
             --arrival-seed"
                .to_string(),
        ));
    }
    if args.load.max_in_flight.is_some() && !args.arrival {
        return Err(Failure::usage(
            "--max-in-flight caps the open model; hunt with --arrival to step arrival rates".to_string(),
        ));
    }
    Ok(())
}
