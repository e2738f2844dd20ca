//! The web UI (`GET /` on the web port): a page that starts, steers and stops the run
//! and draws it live. It is a client of the JSON API in [`crate::web`] and nothing
//! more: the figures and tables are the HTML report's own renderer
//! (`assets/report.js`) fed with `GET /api/stats` every 2 s; the controls are
//! `assets/ui.js`.
//!
//! The page carries the token for POST calls only when it can do so safely: served
//! without `--web-auth` and asked for by a loopback name (`127.0.0.1`, `localhost`,
//! `[::1]`), so a DNS-rebinding page on another name gets no token. Otherwise the user
//! pastes the token once.

use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};

use crate::report::html::{CHART_JS, CSS, REPORT_JS, escape_html};

const UI_JS: &str = include_str!("../assets/ui.js");

/// Scripts and styles are inline; fetches go to this master only.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data: blob:; connect-src 'self'";

const UI_CSS: &str = r#"
[hidden] { display: none !important; }
.bar { display: flex; flex-wrap: wrap; gap: 1.5rem; align-items: baseline; padding: .75rem 1rem;
       background: #0f172a; color: #e2e8f0; }
.bar h1 { font-size: 1.2rem; margin: 0; color: #fff; }
.bar .figure span { color: #94a3b8; margin-right: .3rem; }
.phase { padding: .1rem .5rem; border-radius: .25rem; background: #475569; color: #fff; }
.phase-running { background: #16a34a; } .phase-waiting { background: #ca8a04; }
.phase-stopping { background: #ea580c; } .phase-done { background: #2563eb; }
.phase-unreachable { background: #dc2626; }
.controls { display: flex; flex-wrap: wrap; gap: 1rem; padding: 1rem; align-items: flex-end;
            border-bottom: 1px solid #e2e8f0; }
.controls form { display: flex; flex-wrap: wrap; gap: .5rem; align-items: flex-end; }
.controls label { display: flex; flex-direction: column; font-size: .8rem; color: #475569; }
.controls input { font: inherit; padding: .3rem .4rem; width: 8rem; }
.controls input.wide { width: 16rem; }
.controls button { font: inherit; padding: .35rem .9rem; cursor: pointer; }
#ui-message { padding: .5rem 1rem; color: #166534; min-height: 1.2rem; }
#ui-message.error { color: #b91c1c; }
.state-lost, .state-disconnected { color: #b91c1c; font-weight: 600; }
section.ui-workers { padding: 0 1rem; }
"#;

/// `GET /`: the page, for a web API whose POST calls take `token` (`auth_all`:
/// every call does, `--web-auth`).
pub(crate) fn page(headers: &HeaderMap, token: &str, auth_all: bool) -> Response {
    let loopback_name = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| h.rsplit_once(':').map_or(h, |(name, _)| name))
        .is_some_and(|name| matches!(name, "127.0.0.1" | "localhost" | "[::1]"));
    let token = (!auth_all && loopback_name).then_some(token);
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::CACHE_CONTROL, "no-store"),
        ],
        render(token),
    )
        .into_response()
}

/// The page, with the token for POST calls when given.
pub fn render(token: Option<&str>) -> String {
    let token_meta = token
        .map(|t| format!("<meta name=\"barrage-token\" content=\"{}\">\n", escape_html(t)))
        .unwrap_or_default();
    format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
{token_meta}<title>Barrage</title>
<link rel="icon" href="data:,">
<style>
{CSS}
{UI_CSS}
</style>
</head>
<body>
<header class="bar">
  <h1>Barrage</h1>
  <span class="figure"><span>state</span><b id="ui-phase" class="phase">…</b></span>
  <span class="figure"><span>scenario</span><b id="ui-scenario"></b></span>
  <span class="figure"><span>host</span><b id="ui-host"></b></span>
  <span class="figure"><span>users (running / target)</span><b id="ui-users"></b></span>
  <span class="figure"><span>elapsed</span><b id="ui-elapsed"></b></span>
  <span class="figure"><span>workers</span><b id="ui-workers-count"></b></span>
  <span class="figure"><span>updated</span><b id="ui-updated"></b></span>
</header>
<div class="controls">
  <form id="token-form" hidden>
    <label>Token (X-Barrage-Token) <input id="token" class="wide" type="password" autocomplete="off"></label>
    <button type="submit">Use token</button>
  </form>
  <form id="start-form" hidden>
    <label>Users <input id="start-users" type="number" min="0" step="1" required></label>
    <label>Spawn rate (users/s) <input id="start-rate" type="number" min="0.001" step="any" required></label>
    <label>Host <input id="start-host" class="wide" type="url" placeholder="http://dify-api:5001"></label>
    <label>Run time (s, empty: until stopped) <input id="start-time" type="number" min="1" step="any"></label>
    <button id="start" type="submit">Start</button>
  </form>
  <p id="waiting-note" hidden>Waiting for workers; the run starts when they are in.</p>
  <form id="change-form" hidden>
    <span id="users-fields">
      <label>Users <input id="change-users" type="number" min="0" step="1"></label>
      <label>Spawn rate (users/s) <input id="change-rate" type="number" min="0.001" step="any"></label>
    </span>
    <span id="rate-fields" hidden>
      <label>Arrival rate (/s) <input id="change-arrival" type="number" min="0.001" step="any"></label>
    </span>
    <button id="change" type="submit">Change</button>
  </form>
  <button id="reset" type="button" disabled>Reset statistics</button>
  <button id="stop" type="button" disabled>Stop</button>
  <span>Download:
    <button type="button" data-download="report.html">HTML report</button>
    <button type="button" data-download="report.json">JSON</button>
    <button type="button" data-download="stats.csv">stats CSV</button>
    <button type="button" data-download="failures.csv">failures CSV</button>
  </span>
</div>
<div id="ui-message" class="message"></div>
<section class="ui-workers">
  <h2>Workers</h2>
  <table id="ui-workers">
    <thead><tr><th>Worker</th><th>Host</th><th>State</th><th>Users</th><th>CPU</th><th>Memory</th><th>Last report</th></tr></thead>
    <tbody id="ui-workers-body"></tbody>
  </table>
</section>
<main id="report"></main>
<script>
{CHART_JS}
</script>
<script>
{REPORT_JS}
</script>
<script>
{UI_JS}
</script>
</body>
</html>
"#
    )
}
