//! How a request fails on the wire ([`Failure`]): a kind to count it by, a detail
//! (`refused`, `reset`, `parse`, ..) and a message, with the I/O errors' mapping.

use barrage_common::metrics::FailureKind;

/// Why a request failed, before the response was classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    /// The failure kind it is counted by ([`barrage_common::metrics::FailureKind`]).
    pub(crate) kind: FailureKind,
    /// The finer reason within the kind (`refused`, `dns`, `parse`, a status code, ..).
    pub(crate) detail: String,
    /// What happened, for the report's failure samples.
    pub(crate) message: String,
}

impl Failure {
    /// A failure of `kind` with its detail and message.
    pub(crate) fn new(kind: FailureKind, detail: impl Into<String>, message: impl Into<String>) -> Self {
        Failure {
            kind,
            detail: detail.into(),
            message: message.into(),
        }
    }
}

/// A body that ended before its framing said it would.
pub(super) fn incomplete(message: &str) -> Failure {
    Failure::new(FailureKind::Io, "incomplete_message", message)
}

/// An I/O error while `doing` something on an open connection.
pub(super) fn io_failure(e: &std::io::Error, doing: &str) -> Failure {
    use std::io::ErrorKind::*;
    let detail = match e.kind() {
        ConnectionReset | ConnectionAborted | BrokenPipe => "reset",
        UnexpectedEof => "incomplete_message",
        TimedOut => "timeout",
        _ => "other",
    };
    Failure::new(FailureKind::Io, detail, format!("{doing}: {e}"))
}

/// The detail of a connect that found no free local port (`EADDRNOTAVAIL`,
/// `EADDRINUSE`).
pub(super) const SOURCE_PORT_EXHAUSTION: &str = "source_port_exhaustion";

/// The detail of a failed connect.
pub(super) fn io_detail(e: &std::io::Error) -> &'static str {
    use std::io::ErrorKind::*;
    // EMFILE / ENFILE: the worker is out of file descriptors, not the target at fault.
    if matches!(e.raw_os_error(), Some(23 | 24)) {
        return "too_many_open_files";
    }
    match e.kind() {
        ConnectionRefused => "refused",
        ConnectionReset => "reset",
        TimedOut => "timeout",
        // No ephemeral port left for this (source address, target address): a
        // generator limit, not the target's failure (see `--source-addresses`).
        AddrNotAvailable | AddrInUse => SOURCE_PORT_EXHAUSTION,
        _ => "other",
    }
}
