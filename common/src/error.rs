//! Errors of the shared domain layer. Every variant names the thing and the fix,
//! because these messages reach users verbatim (exit code 2 for scenario errors).

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The scenario file could not be read or parsed.
    #[error("{file}: {message}")]
    ScenarioFile { file: PathBuf, message: String },
    /// A field of the scenario is invalid; `field` is a path like `users[0].tasks[2].wait`.
    #[error("{file}: {field}: {message}")]
    ScenarioField {
        file: String,
        field: String,
        message: String,
    },
    /// A histogram on the wire could not be decoded.
    #[error("histogram `{metric}` is malformed: {message}")]
    Histogram { metric: String, message: String },
    /// A protocol message is missing a required part or carries an impossible value.
    #[error("protocol: {0}")]
    Protocol(String),
}

impl Error {
    pub fn field(file: &str, field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::ScenarioField {
            file: file.to_string(),
            field: field.into(),
            message: message.into(),
        }
    }
}
