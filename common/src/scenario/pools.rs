//! Data pools (`[data.NAME]`): the values `{{NAME}}` renders, from an inline list, a
//! text file (one per line), a CSV file (one pool per column, sharing rows) or
//! environment variables (secrets), each with its pick mode.

use std::collections::BTreeMap;
use std::path::Path;

use super::FieldErr;
use super::raw::RawPool;
use crate::error::Result;
use crate::plan::{Pool, PoolMode};
use crate::template::BUILTIN_VARS;

/// Every `[data.NAME]`, checked and read; a CSV pool adds one `NAME.column` per column.
pub(super) fn pools(
    data: BTreeMap<String, RawPool>,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    err: FieldErr<'_>,
) -> Result<BTreeMap<String, Pool>> {
    let mut pools = BTreeMap::new();
    let mut row_groups = 0u32;
    for (name, pool) in data {
        let field = format!("data.{name}");
        if BUILTIN_VARS.contains(&name.as_str()) {
            return Err(err(
                &field,
                format!("`{name}` is a builtin variable; choose another pool name"),
            ));
        }
        let mode = pool_mode(pool.mode.as_deref()).map_err(|m| err(&format!("{field}.mode"), m))?;
        if let Some(f) = &pool.csv {
            if pool.values.is_some() || pool.file.is_some() || pool.env.is_some() {
                return Err(err(&field, "a CSV pool has only `csv` (and `mode`)".into()));
            }
            let columns = read_csv(&base.join(f)).map_err(|m| err(&format!("{field}.csv"), m))?;
            for (column, entries) in columns {
                let pool = Pool {
                    entries,
                    mode,
                    secret: false,
                    row_group: Some(row_groups),
                };
                pools.insert(format!("{name}.{column}"), pool);
            }
            row_groups += 1;
            continue;
        }
        let secret = pool.env.is_some();
        let entries = entries(pool, &field, base, env, err)?;
        if entries.is_empty() {
            return Err(err(&field, "the pool is empty; give at least one entry".into()));
        }
        let entries = Pool {
            entries,
            mode,
            secret,
            row_group: None,
        };
        pools.insert(name, entries);
    }
    Ok(pools)
}

/// `mode`: how users pick from the pool; absent means random.
fn pool_mode(mode: Option<&str>) -> std::result::Result<PoolMode, String> {
    match mode {
        None | Some("random") => Ok(PoolMode::Random),
        Some("sequential") => Ok(PoolMode::Sequential),
        Some("per_user") => Ok(PoolMode::PerUser),
        Some(other) => Err(format!(
            "\"{other}\" is not a pool mode; expected \"random\", \"sequential\" or \"per_user\""
        )),
    }
}

/// The entries of a pool that is not a CSV one: exactly one of `values`, `file`, `env`.
fn entries(
    pool: RawPool,
    field: &str,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    err: FieldErr<'_>,
) -> Result<Vec<String>> {
    match (pool.values, pool.file, pool.env) {
        (Some(values), None, None) => Ok(values),
        (None, Some(f), None) => {
            let p = base.join(&f);
            let text = std::fs::read_to_string(&p)
                .map_err(|e| err(&format!("{field}.file"), format!("cannot read {}: {e}", p.display())))?;
            Ok(text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect())
        }
        (None, None, Some(names)) => names
            .iter()
            .map(|n| {
                env(n).ok_or_else(|| {
                    err(
                        &format!("{field}.env"),
                        format!("environment variable `{n}` is not set"),
                    )
                })
            })
            .collect::<Result<Vec<String>>>(),
        _ => Err(err(
            field,
            "give exactly one of `values = [...]`, `file = \"path\"` or `env = [\"VAR\", ...]`".into(),
        )),
    }
}

/// Reads a CSV file with a header row into its columns, in file order: (column name,
/// the column's values). Every row must have every column.
fn read_csv(path: &Path) -> std::result::Result<Vec<(String, Vec<String>)>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let headers = reader
        .headers()
        .map_err(|e| format!("{}: {e}", path.display()))?
        .clone();
    let mut columns: Vec<(String, Vec<String>)> = Vec::new();
    for h in &headers {
        if h.is_empty() || !h.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "{}: column `{h}` is not a variable name (letters, digits and _ only)",
                path.display()
            ));
        }
        if columns.iter().any(|(c, _)| c == h) {
            return Err(format!("{}: column `{h}` appears twice", path.display()));
        }
        columns.push((h.to_string(), Vec::new()));
    }
    for record in reader.records() {
        let record = record.map_err(|e| format!("{}: {e}", path.display()))?;
        for ((_, values), field) in columns.iter_mut().zip(record.iter()) {
            values.push(field.to_string());
        }
    }
    if columns.first().is_none_or(|(_, v)| v.is_empty()) {
        return Err(format!("{}: no rows under the header", path.display()));
    }
    Ok(columns)
}
