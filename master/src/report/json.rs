//! `--json FILE`: the final report as JSON, in the shape of the committed schema
//! `master/schema/report.schema.json` (checked by a test).

use std::path::Path;

use anyhow::Context;

use super::FinalReport;

pub fn to_json(report: &FinalReport) -> serde_json::Value {
    // The report holds only plain numbers and strings: serialization cannot fail.
    serde_json::to_value(report).unwrap_or(serde_json::Value::Null)
}

pub fn write(report: &FinalReport, path: &Path) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(&to_json(report))?;
    std::fs::write(path, text).with_context(|| format!("writing the JSON report to {}", path.display()))
}

/// The committed schema, for tests and for `barrage` itself to point people at.
pub const SCHEMA: &str = include_str!("../../schema/report.schema.json");
