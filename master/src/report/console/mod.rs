//! Text rendering: the live view every few seconds (Dify's stress-suite box and a
//! Locust-style table, [`live`]) and the final report (per-endpoint table,
//! percentiles, the four tables of Dify's published benchmark, failures, workers,
//! [`final_report`]). Plain text, no colours: it reads the same in a terminal, a CI log
//! and a Kubernetes pod log.

pub mod final_report;
mod goodput;
mod hunt_search;
pub mod live;

pub use final_report::render_final;
pub use live::{Target, clear_progress, live_view, print_live, print_progress, progress_line};

/// The rule above and below the final report and the live view's box.
const RULE: &str = "============================================================";

/// `s` cut to `n` characters, the last one an ellipsis when cut.
fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n - 1).collect::<String>() + "…"
    }
}

/// Milliseconds as the tables show them: whole from 100, else two decimals.
fn fmt_ms(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}
