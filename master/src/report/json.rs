//! `--json FILE`: the final report as JSON, in the shape of the committed schema
//! `master/schema/report.schema.json` (checked by a test), and such a saved file read
//! back, for `barrage report` and its `--compare`.

use std::path::Path;

use anyhow::Context;
use serde_json::Value;

use super::{FinalReport, SCHEMA_ID};

/// The final report as a JSON value, the shape of the committed schema.
pub fn to_json(report: &FinalReport) -> serde_json::Value {
    // The report holds only plain numbers and strings: serialization cannot fail.
    serde_json::to_value(report).unwrap_or(serde_json::Value::Null)
}

/// Writes the final report to `path` as pretty-printed JSON (`--json FILE`).
pub fn write(report: &FinalReport, path: &Path) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(&to_json(report))?;
    std::fs::write(path, text).with_context(|| format!("writing the JSON report to {}", path.display()))
}

/// Reads a saved report (a file written by `--json`) as plain JSON, checked to be a
/// Barrage report by its `schema`; the message names the file.
pub fn load(path: &Path) -> Result<Value, String> {
    let shown = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{shown}: cannot read: {e}"))?;
    let value: Value = serde_json::from_str(&text).map_err(|e| format!("{shown}: not JSON: {e}"))?;
    match value.get("schema").and_then(Value::as_str) {
        Some(SCHEMA_ID) => Ok(value),
        Some(other) => Err(format!(
            "{shown}: not a Barrage report: schema `{other}`, expected `{SCHEMA_ID}` (a file written by --json)"
        )),
        None => Err(format!(
            "{shown}: not a Barrage report: no `schema` field `{SCHEMA_ID}` (a file written by --json)"
        )),
    }
}

/// Reads a saved report (a file written by `--json`) and recomputes its tables and its
/// percentile spectrum from the merged histograms it carries, the way the run computed
/// them (so files saved before the spectrum existed draw it too).
pub fn read(path: &Path) -> Result<FinalReport, String> {
    let shown = path.display();
    let value = load(path)?;
    let mut report: FinalReport =
        serde_json::from_value(value).map_err(|e| format!("{shown}: not a complete Barrage report: {e}"))?;
    if !report.merged.is_empty() {
        let again = super::rows_from_merged(&report.merged, report.duration_s - report.stats_since_s)
            .map_err(|e| format!("{shown}: merged data: {e}"))?;
        let rows = again.stats.iter().map(|(m, n, s)| (m.as_str(), n.as_str(), s));
        report.spectrum = super::spectrum::spectrum(&again.all, rows);
        let rows = again.stats.iter().map(|(m, n, s)| (m.as_str(), n.as_str(), s));
        report.where_time_goes = super::nodes::where_time_goes(rows);
        report.endpoints = again.endpoints;
        report.aggregated = again.aggregated;
    }
    Ok(report)
}

/// The committed schema, for tests and for `barrage` itself to point people at.
pub const SCHEMA: &str = include_str!("../../schema/report.schema.json");
