//! The Barrage master: coordinator ([`cluster`], [`controller`], [`partition`]),
//! aggregator ([`aggregate`]), reports ([`report`]), the commands of the `barrage`
//! binary ([`commands`]) and the lowering of their flags into run settings ([`setup`]).

pub mod aggregate;
pub mod auth;
pub mod cli;
pub mod cluster;
pub mod commands;
pub mod controller;
pub mod exit;
pub mod hunt;
pub mod partition;
pub mod prometheus;
pub mod report;
pub mod serve;
pub mod setup;
pub mod signals;
pub mod threshold_eval;
pub mod ui;
pub mod web;
