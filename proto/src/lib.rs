//! Generated code for the Barrage cluster protocol, package `barrage.v1`.
//!
//! Nothing but generated code lives here; conversions to domain types are in
//! `barrage-common::wire`.

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v1 {
    tonic::include_proto!("barrage.v1");
}

/// The protocol version this build speaks. Bumped on any change that an older peer
/// cannot ignore; additive fields with new tags do not bump it.
pub const PROTOCOL_VERSION: u32 = 1;

/// Oldest protocol version this build still accepts from a peer.
pub const MIN_PROTOCOL_VERSION: u32 = 1;
