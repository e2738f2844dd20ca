//! The Barrage master: coordinator ([`cluster`], [`controller`], [`partition`]),
//! aggregator ([`aggregate`]), reports ([`report`]), and the commands of the
//! `barrage` binary ([`app`]).

pub mod aggregate;
pub mod app;
pub mod auth;
pub mod cli;
pub mod cluster;
pub mod compare;
pub mod controller;
pub mod describe;
pub mod exit;
pub mod hunt;
pub mod partition;
pub mod prometheus;
pub mod report;
pub mod serve;
pub mod signals;
pub mod thresholds;
pub mod ui;
pub mod web;
