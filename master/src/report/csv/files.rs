//! Writing a CSV file the way Python's `csv.writer` does (the `excel` dialect: CRLF,
//! fields quoted only when needed), and the error naming the file that failed.

use std::fs::File;
use std::path::{Path, PathBuf};

/// A CSV file that could not be written.
#[derive(Debug, Clone, thiserror::Error)]
#[error("--csv: cannot write {}: {reason}", path.display())]
pub struct CsvError {
    /// The file.
    pub path: PathBuf,
    /// What went wrong, from the OS or the writer.
    pub reason: String,
}

impl CsvError {
    /// `reason` writing `path`.
    pub(crate) fn new(path: &Path, reason: impl std::fmt::Display) -> Self {
        CsvError {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        }
    }
}

/// A writer with Python's `csv.writer` conventions (CRLF, minimal quoting).
pub(crate) fn create(path: &Path) -> Result<::csv::Writer<File>, CsvError> {
    let file = File::create(path).map_err(|e| CsvError::new(path, e))?;
    Ok(::csv::WriterBuilder::new()
        .terminator(::csv::Terminator::CRLF)
        .from_writer(file))
}

/// One row, the error naming the file.
pub(crate) fn write_row<I, T>(out: &mut ::csv::Writer<File>, path: &Path, row: I) -> Result<(), CsvError>
where
    I: IntoIterator<Item = T>,
    T: AsRef<[u8]>,
{
    out.write_record(row).map_err(|e| CsvError::new(path, e))
}

/// A whole file as text (the web UI's downloads), with the files' conventions.
pub(crate) fn to_text(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = ::csv::WriterBuilder::new()
        .terminator(::csv::Terminator::CRLF)
        .from_writer(Vec::new());
    // Writing to memory cannot fail.
    let _ = out.write_record(header);
    for row in rows {
        let _ = out.write_record(row);
    }
    String::from_utf8_lossy(&out.into_inner().unwrap_or_default()).into_owned()
}

/// A whole file: the header, then the rows.
pub(crate) fn write_file(path: &Path, header: &[&str], rows: &[Vec<String>]) -> Result<(), CsvError> {
    let mut out = create(path)?;
    write_row(&mut out, path, header)?;
    for row in rows {
        write_row(&mut out, path, row)?;
    }
    out.flush().map_err(|e| CsvError::new(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::csv::columns::FAILURES_COLUMNS;

    #[test]
    fn files_follow_pythons_csv_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.csv");
        write_file(
            &path,
            &FAILURES_COLUMNS,
            &[vec![
                "GET".into(),
                "/a,b".into(),
                "say \"hi\"".into(),
                "1".into(),
                String::new(),
                String::new(),
            ]],
        )
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "Method,Name,Error,Occurrences,First Seen,Last Seen\r\nGET,\"/a,b\",\"say \"\"hi\"\"\",1,,\r\n"
        );
        // Errors name the file.
        let missing = dir.path().join("no/such/dir/x.csv");
        let e = write_file(&missing, &FAILURES_COLUMNS, &[]).unwrap_err();
        assert!(e.to_string().contains(&missing.display().to_string()), "{e}");
    }
}
