//! The web UI as a person uses it, in headless Chromium: open the page of a master
//! started with `--start-from-ui`, start a run against the mock from the form, watch
//! the charts fill, change the users, stop, download the report, close the master.
//! Screenshots of each stage land in `target/browser-artifacts/webui_*.png`.
//!
//! What the page shows is checked against the run's own figures and the mock's count.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::browser;
use crate::support::*;

const SOON: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_ui_starts_steers_stops_and_downloads_a_run() {
    let mock = mock(sse_mock_config(5, 2, 5)).await;
    // The flags' load (9 users) is what the form offers; the form asks for 3.
    let (m, web, w) = ui_master(mock.addr, "ui-token").await;

    let url = format!("http://{web}/");
    let truth = mock.state.clone();
    let seen = tokio::task::spawn_blocking(move || drive(&url, &truth)).await.unwrap();
    let Some(seen) = seen else {
        // No browser here (and not CI): the harness said SKIPPED.
        m.run.abort();
        return;
    };
    let out = tokio::time::timeout(SOON, m.run)
        .await
        .expect("Close master ends the master")
        .unwrap()
        .unwrap();
    let _ = w.await;
    let r = &out.report;
    assert_eq!(r.stop_reason, "stopped from the web API");
    assert_eq!(r.users, 3, "the report says the users the run was started with");
    assert_eq!(r.aggregated.requests, mock.state.ground_truth().requests);
    // The page's final tables are the final report's.
    assert_eq!(seen["requests"], json!(r.aggregated.requests), "{seen}");
    assert_eq!(seen["download_requests"], json!(r.aggregated.requests), "{seen}");
}

/// Drives the page; None when there is no browser. Returns what the page showed at
/// the end.
fn drive(url: &str, target: &barrage_mock::MockState) -> Option<Value> {
    let page = browser::launch("webui")?;
    page.goto(url);

    // Waiting: the form is there, offering the flags' load; nothing is sent yet.
    page.wait_for(
        "document.getElementById('ui-phase').textContent === 'waiting' && !document.getElementById('start-form').hidden",
        SOON,
    );
    page.wait_for("document.querySelectorAll('#ui-workers-body tr').length === 1", SOON);
    assert_eq!(page.eval("document.getElementById('start-users').value"), json!("9"));
    page.screenshot_stage("1-waiting");
    assert_eq!(target.ground_truth().requests, 0);

    // Start 3 users from the form.
    page.fill("#start-users", "3");
    page.fill("#start-rate", "100");
    page.click("#start");
    page.wait_for("document.getElementById('ui-phase').textContent === 'running'", SOON);

    // The charts fill: users, req/s and the latency lines have points.
    page.wait_for(
        "(() => { const p = document.querySelector('#chart-rps path.bc-series'); \
         return p && (p.getAttribute('d').match(/L/g) || []).length >= 2; })()",
        SOON,
    );
    page.wait_for(
        "document.getElementById('ui-users').textContent.startsWith('3 / 3')",
        SOON,
    );
    let drawn = page.eval(
        "Array.from(document.querySelectorAll('.chart-card')).filter((c) => c.querySelector('path.bc-series')).map((c) => c.id)",
    );
    for id in ["chart-spectrum", "chart-users", "chart-rps", "chart-response-time"] {
        assert!(
            drawn.as_array().unwrap().contains(&json!(id)),
            "{id} not drawn: {drawn}"
        );
    }
    // The live percentile spectrum (from /api/stats) on its nines axis, response time first.
    let spectrum = page.eval(
        "[Array.from(document.querySelectorAll('#chart-spectrum .bc-xtick')).map((t) => t.textContent), \
          document.querySelector('#chart-spectrum path.bc-series').dataset.series]",
    );
    assert_eq!(
        spectrum,
        json!([["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"], "response time"])
    );
    page.screenshot_stage("2-running");

    // Change the users: the workers run 6.
    page.fill("#change-users", "6");
    page.fill("#change-rate", "100");
    page.click("#change");
    page.wait_for(
        "document.getElementById('ui-users').textContent.startsWith('6 / 6')",
        SOON,
    );
    page.wait_for(
        "Array.from(document.querySelectorAll('#ui-workers-body tr td:nth-child(4)')).map((td) => Number(td.textContent)).reduce((a, b) => a + b, 0) === 6",
        SOON,
    );
    page.screenshot_stage("3-changed");

    // Stop: the final report replaces the live one.
    page.click("#stop");
    page.wait_for("document.getElementById('ui-phase').textContent === 'done'", SOON);
    page.wait_for("document.getElementById('stop').textContent === 'Close master'", SOON);
    let requests = page
        .eval("Number(document.querySelector('#endpoints-table tfoot tr .c-requests').textContent.replace(/,/g, ''))");
    assert_eq!(
        requests,
        json!(target.ground_truth().requests),
        "the page's Aggregated row"
    );

    // Download the JSON as a person would (the button), catching the file the page
    // hands to the browser.
    page.eval(
        "(() => { window.__downloads = []; const make = URL.createObjectURL; \
         URL.createObjectURL = (blob) => { window.__downloads.push(blob); return make(blob); }; return true; })()",
    );
    page.click("[data-download='report.json']");
    page.wait_for("window.__downloads.length === 1", SOON);
    let download_requests = page.eval(
        "window.__downloads[0].text().then((t) => { const r = JSON.parse(t); \
         if (r.merged.length === 0) throw new Error('no merged data'); return r.aggregated.requests; })",
    );
    page.click("[data-download='report.html']");
    page.wait_for("window.__downloads.length === 2", SOON);
    let html = page.eval("window.__downloads[1].text()");
    assert!(html.as_str().unwrap().contains("id=\"barrage-report\""));
    page.wait_for(
        "document.getElementById('ui-message').textContent.startsWith('Downloaded')",
        SOON,
    );
    page.screenshot_stage("4-done");
    page.assert_no_problems();
    // report.js shows a part that threw as a note instead of failing the page: none.
    assert_eq!(page.eval("document.querySelectorAll('.render-error').length"), json!(0));

    page.click("#stop");
    Some(json!({"requests": requests, "download_requests": download_requests}))
}
