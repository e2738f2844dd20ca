//! The hunt's search in the final report: how each step ended (stable, or at the
//! longest step time), the boundary's re-measure, and the search's budget and stop
//! rule. Files saved before these existed print nothing here, as they did.

use std::fmt::Write;

use crate::hunt::outcome::{HuntReport, StepResult};

/// Whether the steps say how they ended (a column of their own then).
pub(super) fn has_stops(h: &HuntReport) -> bool {
    h.steps.iter().any(|s| s.stop.is_some())
}

/// A step's level's suffix: `(bisect)`, `(re-measure)` or nothing.
pub(super) fn level_note(s: &StepResult) -> &'static str {
    if s.remeasure {
        " (re-measure)"
    } else if s.bisecting {
        " (bisect)"
    } else {
        ""
    }
}

/// How a step ended, for its column: `stable after 14s (±3.1 %)` or `max 60s
/// (±7.9 %)`.
pub(super) fn step_end(s: &StepResult) -> String {
    let Some(stop) = &s.stop else {
        return "-".into();
    };
    let hw = stop
        .half_width
        .map_or(String::new(), |hw| format!(" (±{:.1} %)", hw * 100.0));
    if stop.stable {
        format!("stable after {:.0}s{hw}", stop.after_s)
    } else {
        format!("max {:.0}s{hw}", stop.after_s)
    }
}

/// The re-measure and the search's lines, after the capacity.
pub(super) fn lines(out: &mut String, h: &HuntReport) {
    if let Some(r) = &h.remeasure {
        let outcome = if r.confirmed {
            "confirmed; the verdict pools both measurements".to_string()
        } else {
            match r.moved_to {
                Some(l) => format!(
                    "NOT confirmed: an SLO broke; the sustainable level moves down to {l} {}",
                    h.level
                ),
                None => "NOT confirmed: an SLO broke, and no lower level was good".to_string(),
            }
        };
        let _ = writeln!(
            out,
            "Boundary re-measured: {} {} again: {outcome} ({}: {})",
            r.level, h.level, r.slo, r.shown
        );
    }
    if let Some(s) = &h.search {
        let stable = h
            .steps
            .iter()
            .filter(|s| s.stop.as_ref().is_some_and(|x| x.stable))
            .count();
        let growth = if s.kind == "geometric" {
            format!(" x{} per climbing step, to within {}", s.growth, s.resolution)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "Search: {}{growth}; {} of {} probes; steps {}: {stable} of {} ended stable",
            s.kind,
            s.probes,
            s.budget,
            s.stop_rule,
            h.steps.len()
        );
    }
}
