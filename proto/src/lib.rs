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

/// Largest gRPC message either way, on master and worker alike (tonic's default is
/// 4 MiB). A report of 10 endpoints with every histogram is tens of KiB; the plan in
/// `Welcome`, with inline data pools, can be larger. Bigger is refused
/// (ResourceExhausted) before it is decoded; the master refuses at start a plan that
/// would not fit ([`MAX_PLAN_BYTES`]).
pub const MAX_MESSAGE: usize = 16 << 20;

/// Largest plan JSON the master ships: a `Welcome` is the plan plus a few dozen bytes
/// of other fields, so this leaves it ample room under [`MAX_MESSAGE`].
pub const MAX_PLAN_BYTES: usize = MAX_MESSAGE - (64 << 10);
