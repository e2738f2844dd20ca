//! The final report's goodput table: per row with objectives and Aggregated, the
//! requests that met every objective of their task, per second and as a share.
//! Nothing is printed when no task has objectives.

use std::fmt::Write;

use super::truncate;
use crate::report::model::FinalReport;

/// Goodput per row with objectives, then Aggregated (nothing without objectives).
pub(super) fn goodput_table(out: &mut String, r: &FinalReport) {
    if r.aggregated.goodput.is_none() {
        return;
    }
    let _ = writeln!(
        out,
        "\nGoodput (successful requests that met every goodput objective of their task)"
    );
    let _ = writeln!(
        out,
        "{:<6} {:<30} {:>8} {:>8} {:>9} {:>11}",
        "Type", "Name", "# reqs", "# good", "good/s", "good share"
    );
    let rows = r.endpoints.iter().chain(std::iter::once(&r.aggregated));
    for (e, g) in rows.filter_map(|e| e.goodput.map(|g| (e, g))) {
        let _ = writeln!(
            out,
            "{:<6} {:<30} {:>8} {:>8} {:>9.2} {:>10.2}%",
            e.method,
            truncate(&e.name, 30),
            g.requests,
            g.good,
            g.per_s,
            g.share * 100.0
        );
    }
}
