//! The final report: one model ([`FinalReport`]) computed from the merged cluster
//! data, rendered to the console ([`console`]), to JSON ([`json`]), to HTML ([`html`])
//! and to Locust's CSV files ([`csv`]).
//!
//! Every figure comes from merged HDR histograms or exact counters; percentiles are
//! exact to the histograms' 3 significant digits, never rounded to two like Locust.
//!
//! The model's types live in [`model`] (the report as saved), [`rows`] (a stats row and
//! its percentiles), [`spectrum`] (the percentile spectrum), [`goodput`], [`nodes`] (where a Dify workflow's time goes), [`workers`], [`arrivals`], [`drift`] and [`completeness`]; what
//! the run hands over in [`run`]; the assembly from the aggregate in [`build`]. Every
//! item is re-exported here, so `report::FinalReport` names the same type as
//! `report::model::FinalReport`.

pub mod arrivals;
pub mod build;
pub mod compare;
pub mod completeness;
pub mod console;
pub mod csv;
pub mod drift;
pub mod goodput;
pub mod html;
pub mod json;
pub mod model;
pub mod nodes;
pub mod rows;
pub mod run;
pub mod spectrum;
pub mod workers;

pub use arrivals::ArrivalFigures;
pub use completeness::{Completeness, Verdict};
pub use drift::{Drift, DriftRow};
pub use goodput::Goodput;
pub use model::{
    Bucket, Connections, Distributions, FailureRow, FinalReport, MaxAvgMin, Qps, ReplicaFailure, ReplicaRow, SCHEMA_ID,
    TimelinePoint,
};
pub use nodes::{NodeRow, PhaseRow, WhereTimeGoes};
pub use rows::{EndpointRow, MergedRow, Percentiles, Recomputed, rows_from_merged};
pub use run::{Roster, RosterWorker, RunInfo, RunSummary};
pub use spectrum::{SpectrumLine, SpectrumRow};
pub use workers::{WorkerRow, saturation_warning};
