//! Errors of the shared domain layer. Every variant names the thing and the fix,
//! because these messages reach users verbatim (exit code 2 for scenario errors).

use std::path::PathBuf;

/// The result of the domain layer's fallible operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong reading a scenario, a histogram or a peer's message.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The scenario file could not be read or parsed.
    #[error("{file}: {message}")]
    ScenarioFile {
        /// The scenario file (or the source name given to `parse_str`).
        file: PathBuf,
        /// What is wrong: the I/O or syntax error.
        message: String,
    },
    /// A field of the scenario is invalid; `field` is a path like `users[0].tasks[2].wait`.
    #[error("{file}: {field}: {message}")]
    ScenarioField {
        /// The scenario file, as named in messages.
        file: String,
        /// The field path.
        field: String,
        /// What is wrong and what was expected.
        message: String,
    },
    /// A histogram on the wire could not be decoded.
    #[error("histogram `{metric}` is malformed: {message}")]
    Histogram {
        /// The metric the histogram was sent or saved as.
        metric: String,
        /// Why it does not decode.
        message: String,
    },
    /// A protocol message is missing a required part or carries an impossible value.
    #[error("protocol: {0}")]
    Protocol(String),
}

impl Error {
    /// A [`Error::ScenarioField`] of `field` in `file`.
    pub fn field(file: &str, field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::ScenarioField {
            file: file.to_string(),
            field: field.into(),
            message: message.into(),
        }
    }
}
