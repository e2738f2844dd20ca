//! `barrage report`: a saved run (a file written by `--json`) rendered again (console,
//! and HTML / CSV on request), or two saved runs compared as a CI regression gate
//! ([`crate::report::compare`]).

use std::path::Path;

use crate::cli::ReportArgs;
use crate::exit::{EXIT_CLUSTER, Failure};
use crate::report::{console, json};

/// `barrage report --compare BASE NEW`: exit code 0 without a regression, 1 with one,
/// 2 when a file is missing, not JSON or not a report (or --json cannot be written), 3
/// when either run's data is incomplete.
pub(super) fn command(args: ReportArgs) -> anyhow::Result<u8> {
    if let Some(file) = &args.file {
        return render_saved(file, &args);
    }
    let [base, new] = args.compare.as_slice() else {
        return Err(Failure::usage("--compare takes two files: BASE.json NEW.json").into());
    };
    let tolerances = crate::report::compare::Tolerances {
        pct: args.tolerance,
        errors_pp: args.tolerance_errors,
    };
    let comparison = crate::report::compare::compare_files(base, new, tolerances).map_err(Failure::usage)?;
    print!("{}", crate::report::compare::render(&comparison));
    if let Some(path) = &args.json {
        crate::report::compare::write_json(&comparison, path).map_err(Failure::usage)?;
    }
    let code = comparison.exit_code();
    if code != 0 {
        eprintln!(
            "{} figure(s) regressed beyond the tolerances (exit code {code})",
            comparison.regressions
        );
    }
    // A comparison with a run whose data is incomplete proves nothing either way.
    let incomplete: Vec<String> = [base, new]
        .into_iter()
        .filter_map(|f| json::read(f).ok().map(|r| (f, r)))
        .filter(|(_, r)| !r.completeness.is_complete())
        .map(|(f, r)| format!("{}: {}", f.display(), r.completeness.reasons.join("; ")))
        .collect();
    if !incomplete.is_empty() {
        eprintln!(
            "error: a compared run's data is incomplete, so the comparison cannot gate (exit code {EXIT_CLUSTER}): {}",
            incomplete.join(" | ")
        );
        return Ok(EXIT_CLUSTER);
    }
    Ok(code)
}

/// `barrage report RUN.json [--html OUT] [--csv PREFIX]`: the console report of a saved
/// result, and the files asked for. Exit code 2 when the file is not a usable report.
fn render_saved(file: &Path, args: &ReportArgs) -> anyhow::Result<u8> {
    let report = json::read(file).map_err(Failure::usage)?;
    print!("{}", console::render_final(&report));
    if let Some(path) = &args.html {
        crate::report::html::write(&json::to_json(&report), path)?;
        eprintln!("HTML report written to {}", path.display());
    }
    if let Some(prefix) = &args.csv {
        crate::report::csv::Csv::new(prefix).write_final(&report)?;
        eprintln!(
            "CSV files written with prefix {} (PREFIX_stats_history.csv is only written during a run)",
            prefix.display()
        );
    }
    Ok(0)
}
