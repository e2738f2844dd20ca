//! Errors that end a worker (a failed request is data, never one of these).

/// A result whose error ends the worker.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a worker stopped short of its run's end.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The master refused this worker (version, duplicate id, run over).
    #[error("the master refused this worker: {0}")]
    Refused(String),
    /// No contact with the master for the give-up period.
    #[error("gave up: no contact with the master at {master} for {waited:?}")]
    MasterLost {
        /// The master address it tried (`--master`).
        master: String,
        /// How long it went without contact (`--give-up-after`).
        waited: std::time::Duration,
    },
    /// `--master` is not `HOST:PORT` (with an optional scheme).
    #[error("bad master address `{0}`: expected HOST:PORT or http://HOST:PORT")]
    BadMasterAddress(String),
    /// The plan in Welcome did not parse, or the engine could not start from it
    /// (a class without a host, a bad target URL, load threads that would not start).
    #[error("the run plan from the master is unusable: {0}")]
    BadPlan(String),
}
