//! `--html FILE`: the report as one self-contained page (charts and every table) that
//! opens anywhere, offline: the styles, the chart module and the page script are inlined,
//! and the report rides along as JSON in a `<script type="application/json">`.
//!
//! The page is drawn in the browser by `assets/report.js` (on `assets/chart.js`), the
//! same code the live web UI runs on `GET /api/stats`: one renderer for both. Its
//! Content-Security-Policy forbids every fetch, so a page that tried one would say so in
//! the console instead of leaking where it was opened.

use std::path::Path;

use anyhow::Context;

/// The page's styles: light, print-friendly, tables that scroll on narrow screens.
pub const CSS: &str = include_str!("../../assets/report.css");
/// `window.BarrageChart`: SVG line and bar charts, no dependencies.
pub const CHART_JS: &str = include_str!("../../assets/chart.js");
/// `window.BarrageReport.render(root, report, options)`: every table and chart.
pub const REPORT_JS: &str = include_str!("../../assets/report.js");

/// Nothing may be loaded: no network, no font, no image but inline ones.
pub const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:";

/// Parses the embedded report and draws it (`#barrage-report` holds the JSON).
const BOOTSTRAP: &str = r#"(function () {
  'use strict';
  var data = document.getElementById('barrage-report');
  var report = JSON.parse(data.textContent);
  window.BarrageReport.render(document.getElementById('app'), report, {});
})();"#;

/// The whole document for `report` (the JSON of a `barrage.report.v1` report).
pub fn render(report: &serde_json::Value) -> String {
    let scenario = report.get("scenario").and_then(|s| s.as_str()).unwrap_or("");
    let title = if scenario.is_empty() {
        "Barrage report".to_string()
    } else {
        format!("Barrage report: {scenario}")
    };
    let mut page = String::with_capacity(CSS.len() + CHART_JS.len() + REPORT_JS.len() + 4096);
    page.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    page.push_str(&format!(
        "<meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">\n"
    ));
    page.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    page.push_str("<meta name=\"generator\" content=\"barrage\">\n");
    page.push_str(&format!("<title>{}</title>\n", escape_html(&title)));
    page.push_str(&format!("<style>\n{CSS}</style>\n</head>\n<body>\n"));
    page.push_str("<main id=\"app\"><noscript>This report draws its tables and charts with JavaScript; the data is the JSON below.</noscript></main>\n");
    page.push_str(&format!(
        "<script type=\"application/json\" id=\"barrage-report\">{}</script>\n",
        embed_json(report)
    ));
    for script in [CHART_JS, REPORT_JS, BOOTSTRAP] {
        page.push_str(&format!("<script>\n{script}\n</script>\n"));
    }
    page.push_str("</body>\n</html>\n");
    page
}

/// Writes [`render`]'s page for `report` (the JSON of a final report) to `path`.
pub fn write(report: &serde_json::Value, path: &Path) -> anyhow::Result<()> {
    std::fs::write(path, render(report)).with_context(|| format!("writing the HTML report to {}", path.display()))
}

/// JSON that cannot end its `<script>` element early: every `<` is written `\u003c`
/// (valid JSON, the same string once parsed). That covers `</script>` in a failure
/// sample and also `<!--`, which puts an HTML parser in a state where `</script>` no
/// longer closes the element. Outside strings JSON has no `<` to escape.
fn embed_json(value: &serde_json::Value) -> String {
    // A Value always serializes.
    serde_json::to_string(value)
        .unwrap_or_else(|_| "null".into())
        .replace('<', "\\u003c")
}

/// `s` safe as HTML text or a quoted attribute value: `& < > " '` as entities.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const HOSTILE: &str = "</script><script>alert(1)</script><!--<script>";

    fn report_with_sample(sample: &str) -> serde_json::Value {
        json!({
            "schema": "barrage.report.v1",
            "scenario": "<b>scenario</b>",
            "failures": [{"method": "GET", "name": "/x", "kind": "http_status", "detail": "500", "count": 1, "sample": sample}],
        })
    }

    /// The text between the data element's tags, as an HTML parser would cut it: up to
    /// the first `</script`.
    fn embedded(page: &str) -> &str {
        let open = "<script type=\"application/json\" id=\"barrage-report\">";
        let start = page.find(open).expect("the data element") + open.len();
        let len = page[start..].find("</script").expect("its end tag");
        &page[start..start + len]
    }

    #[test]
    fn a_failure_sample_cannot_break_out_of_the_embedded_json() {
        let report = report_with_sample(HOSTILE);
        let page = render(&report);
        let data = embedded(&page);
        assert!(!data.contains('<'), "{data}");
        // What the page parses is the report, byte for byte.
        let back: serde_json::Value = serde_json::from_str(data).unwrap();
        assert_eq!(back, report);
        // No script element was added: the page's own (data, chart, report, bootstrap).
        assert_eq!(page.matches("<script").count(), 4, "{page}");
        assert!(!page.contains("alert(1)</script>"));
    }

    #[test]
    fn the_title_is_escaped_and_nothing_is_fetched() {
        let page = render(&report_with_sample("x"));
        assert!(page.contains("<title>Barrage report: &lt;b&gt;scenario&lt;/b&gt;</title>"));
        assert!(page.contains(CSP));
        // Self-contained: no URL the browser would follow.
        for pattern in ["src=", "href=", "@import", "url("] {
            assert!(!page.contains(pattern), "{pattern} in the page");
        }
    }

    #[test]
    fn write_puts_the_page_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.html");
        write(&report_with_sample("x"), &path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("<!DOCTYPE html>") && text.contains("BarrageReport.render"));
        let err = write(&json!({}), &dir.path().join("missing/report.html")).unwrap_err();
        assert!(format!("{err:#}").contains("writing the HTML report"), "{err:#}");
    }
}
