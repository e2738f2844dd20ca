//! Errors that end a worker (a failed request is data, never one of these).

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The master refused this worker (version, duplicate id, run over).
    #[error("the master refused this worker: {0}")]
    Refused(String),
    /// No contact with the master for the give-up period.
    #[error("gave up: no contact with the master at {master} for {waited:?}")]
    MasterLost {
        master: String,
        waited: std::time::Duration,
    },
    #[error("bad master address `{0}`: expected HOST:PORT or http://HOST:PORT")]
    BadMasterAddress(String),
    #[error("the run plan from the master is unusable: {0}")]
    BadPlan(String),
}
