//! Exit codes and the error that carries one. Everything may import this module.
//!
//! 0 success; 1 a threshold failed, the run had failed requests (`--exit-code-on-error`),
//! or `report --compare` found a regression; 2 usage or scenario error; 3 cluster error
//! (not enough workers, every worker lost) or incomplete data; 130 interrupted.

pub const EXIT_FAILURES: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_CLUSTER: u8 = 3;
/// Interrupted before the run started (the shell's convention for SIGINT).
pub const EXIT_INTERRUPTED: u8 = 130;

/// An error with the exit code it maps to.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn usage(e: impl std::fmt::Display) -> Self {
        Failure {
            code: EXIT_USAGE,
            message: e.to_string(),
        }
    }
}
