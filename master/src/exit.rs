//! Exit codes and the error that carries one. Everything may import this module.
//!
//! 0 success; 1 a threshold failed, the run had failed requests (`--exit-code-on-error`),
//! or `report --compare` found a regression; 2 usage or scenario error; 3 cluster error
//! (not enough workers, every worker lost) or incomplete data; 130 interrupted.

/// A threshold failed, the run had failed requests (`--exit-code-on-error`), or
/// `report --compare` found a regression.
pub const EXIT_FAILURES: u8 = 1;
/// A usage or scenario error: a flag, a file or a setting to fix before any load.
pub const EXIT_USAGE: u8 = 2;
/// A cluster error (not enough workers, every worker lost) or incomplete data.
pub const EXIT_CLUSTER: u8 = 3;
/// Interrupted before the run started (the shell's convention for SIGINT).
pub const EXIT_INTERRUPTED: u8 = 130;

/// An error with the exit code it maps to.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    /// The process exit code, one of the `EXIT_*` constants.
    pub code: u8,
    /// What went wrong, printed after `error: `.
    pub message: String,
}

impl Failure {
    /// A usage error ([`EXIT_USAGE`]) saying `e`.
    pub fn usage(e: impl std::fmt::Display) -> Self {
        Failure {
            code: EXIT_USAGE,
            message: e.to_string(),
        }
    }
}
