//! A real browser for the tests that must see a page as a person would (the HTML
//! report, the web UI): Debian's headless Chromium, driven over the DevTools protocol
//! by the `headless_chrome` crate.
//!
//! ```ignore
//! let Some(page) = browser::launch("my_test") else { return }; // skipped: no Chromium
//! page.goto("http://127.0.0.1:8089/");
//! page.wait_for("document.querySelector('#app table') !== null", Duration::from_secs(10));
//! let rows = page.eval("document.querySelectorAll('tbody tr').length");
//! page.click("#stop");
//! page.assert_no_problems(); // no console error, no uncaught exception
//! page.screenshot();         // target/browser-artifacts/my_test.png
//! ```
//!
//! Every call blocks (the crate runs its own threads). From a tokio test, drive the page
//! inside `tokio::task::spawn_blocking` (or a `multi_thread` runtime) so the servers the
//! page talks to keep running.
//!
//! Chromium comes from Debian's `chromium` package: [`chromium`] installs it once per
//! test process when it is missing and we are root. Without it a test is skipped with
//! `SKIPPED browser test: <reason>` on stderr, unless `CI` is set: then it fails.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use headless_chrome::protocol::cdp::types::Event;
use headless_chrome::protocol::cdp::{Log, Network, Page as Cdp, Runtime};
use headless_chrome::{Browser, LaunchOptions, Tab};
use serde_json::Value;

/// Where Debian's package puts the browser (`/usr/bin/chromium` is its launcher script).
const CANDIDATES: [&str; 3] = [
    "/usr/bin/chromium",
    "/usr/lib/chromium/chromium",
    "/usr/bin/chromium-browser",
];
/// The page's size: a laptop screen.
const WINDOW: (u32, u32) = (1366, 900);
/// Chromium caps a screenshot's side at 16384 px.
const SCREENSHOT_MAX_HEIGHT: f64 = 16_000.0;
/// Browsers open at once in this test process: a Chromium start takes a core for a
/// moment, and the load tests running beside these measure latencies on 2 cores.
const MAX_BROWSERS: usize = 2;

/// A place among the [`MAX_BROWSERS`]; given back when the page is dropped.
struct Slot;

static SLOTS: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());

impl Slot {
    fn take() -> Slot {
        let (open, freed) = &SLOTS;
        let mut open = open.lock().unwrap_or_else(|e| e.into_inner());
        while *open >= MAX_BROWSERS {
            open = freed.wait(open).unwrap_or_else(|e| e.into_inner());
        }
        *open += 1;
        Slot
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let (open, freed) = &SLOTS;
        *open.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        freed.notify_one();
    }
}

/// The Chromium binary; installed with apt-get the first time it is needed (root only).
pub(crate) fn chromium() -> Result<PathBuf, String> {
    static CHROMIUM: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    CHROMIUM
        .get_or_init(|| crate::support::tools::debian_tool("chromium", &CANDIDATES))
        .clone()
}

/// `target/browser-artifacts`, created: screenshots land there.
pub(crate) fn artifacts_dir() -> PathBuf {
    let target = option_env!("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("browser-artifacts");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    dir
}

/// A headless Chromium with one tab for test `name`; None when there is no Chromium
/// and `CI` is not set (the test should return: it is skipped, and says so).
pub(crate) fn launch(name: &str) -> Option<Page> {
    let path = crate::support::tools::required("browser test", name, chromium())?;
    Some(Page::launch(name, &path).unwrap_or_else(|e| panic!("launching {}: {e:#}", path.display())))
}

/// One tab of a headless Chromium, recording what went wrong in the page.
pub(crate) struct Page {
    name: String,
    tab: Arc<Tab>,
    /// Console errors, uncaught exceptions and error log entries, as they came.
    problems: Arc<Mutex<Vec<String>>>,
    /// Every URL the page asked for (documents, scripts, fetches), in order.
    requests: Arc<Mutex<Vec<String>>>,
    // The tab goes before the browser process it lives in, then the slot.
    _browser: Browser,
    _slot: Slot,
}

impl Page {
    fn launch(name: &str, path: &Path) -> anyhow::Result<Page> {
        let slot = Slot::take();
        let options = LaunchOptions {
            path: Some(path.to_path_buf()),
            // `--headless=new` (below) rather than the crate's bare `--headless`.
            headless: false,
            // We run as root, in a container: Chromium's sandbox needs namespaces we lack.
            sandbox: false,
            window_size: Some(WINDOW),
            args: [
                "--headless=new",
                "--hide-scrollbars",
                "--mute-audio",
                "--no-default-browser-check",
                // /dev/shm is small in containers (also in the crate's defaults).
                "--disable-dev-shm-usage",
            ]
            .iter()
            .map(std::ffi::OsStr::new)
            .collect(),
            // A test may run load for a while between two calls: keep the connection.
            idle_browser_timeout: Duration::from_secs(600),
            ..LaunchOptions::default()
        };
        let browser = Browser::new(options)?;
        let tab = browser.new_tab()?;
        tab.set_default_timeout(Duration::from_secs(20));
        let problems = Arc::new(Mutex::new(Vec::new()));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (p, r) = (problems.clone(), requests.clone());
        tab.add_event_listener(Arc::new(move |event: &Event| {
            if let Some(problem) = problem(event) {
                p.lock().unwrap().push(problem);
            }
            if let Event::NetworkRequestWillBeSent(e) = event {
                r.lock().unwrap().push(e.params.request.url.clone());
            }
        }))?;
        tab.enable_runtime()?;
        tab.enable_log()?;
        tab.call_method(Network::Enable {
            max_total_buffer_size: None,
            max_resource_buffer_size: None,
            max_post_data_size: None,
            report_direct_socket_traffic: None,
            enable_durable_messages: None,
        })?;
        Ok(Page {
            name: name.to_string(),
            tab,
            problems,
            requests,
            _browser: browser,
            _slot: slot,
        })
    }

    /// Opens `url` (http://127.0.0.1:..., file://...) and waits for it to load.
    pub(crate) fn goto(&self, url: &str) {
        self.tab
            .navigate_to(url)
            .and_then(|t| t.wait_until_navigated())
            .unwrap_or_else(|e| panic!("{}: opening {url}: {e:#}", self.name));
    }

    /// Opens a local file.
    pub(crate) fn goto_file(&self, path: &Path) {
        let path = path
            .canonicalize()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        self.goto(&format!("file://{}", path.display()));
    }

    /// Evaluates the JavaScript expression `js` (a promise is awaited) and returns its
    /// value as JSON (undefined is null). A throw fails the test with the JS error.
    pub(crate) fn eval(&self, js: &str) -> Value {
        self.try_eval(js)
            .unwrap_or_else(|e| panic!("{}: evaluating `{js}`: {e}", self.name))
    }

    /// [`Page::eval`], with the JS error as Err instead of a panic.
    pub(crate) fn try_eval(&self, js: &str) -> Result<Value, String> {
        // The expression's own exception is caught here, so it is not reported as an
        // uncaught one of the page.
        let wrapped = format!(
            "(async () => {{ try {{ const v = await ({js}\n); return JSON.stringify({{ ok: v === undefined ? null : v }}); }} \
             catch (e) {{ return JSON.stringify({{ err: String(e && e.stack || e) }}); }} }})()"
        );
        let result = self.tab.evaluate(&wrapped, true).map_err(|e| format!("{e:#}"))?;
        let text = result
            .value
            .as_ref()
            .and_then(Value::as_str)
            .ok_or_else(|| format!("no result: {result:?}"))?;
        let mut v: Value = serde_json::from_str(text).map_err(|e| format!("{e}: {text}"))?;
        match v.get_mut("err") {
            Some(err) => Err(err.as_str().unwrap_or_default().to_string()),
            None => Ok(v["ok"].take()),
        }
    }

    /// Polls the expression `condition` every 50 ms until it is truthy; fails the test
    /// after `limit`, naming the condition and the page's problems so far.
    pub(crate) fn wait_for(&self, condition: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let last = self.try_eval(&format!("!!({condition})"));
            if last == Ok(Value::Bool(true)) {
                return;
            }
            if Instant::now() >= deadline {
                self.screenshot();
                panic!(
                    "{}: `{condition}` did not hold within {limit:?} (last: {last:?}); page problems: {:?}",
                    self.name,
                    self.problems()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Clicks the first element matching the CSS `selector` (as a user would: the
    /// element's `click()`, which fires the same handlers).
    pub(crate) fn click(&self, selector: &str) {
        let sel = serde_json::to_string(selector).unwrap();
        self.eval(&format!(
            "(() => {{ const e = document.querySelector({sel}); if (!e) throw new Error('no element ' + {sel}); e.click(); return true; }})()"
        ));
    }

    /// Sets the value of the input matching `selector` and fires `input` and `change`.
    pub(crate) fn fill(&self, selector: &str, value: &str) {
        let (sel, val) = (
            serde_json::to_string(selector).unwrap(),
            serde_json::to_string(value).unwrap(),
        );
        self.eval(&format!(
            "(() => {{ const e = document.querySelector({sel}); if (!e) throw new Error('no element ' + {sel}); \
             e.focus(); e.value = {val}; e.dispatchEvent(new Event('input', {{ bubbles: true }})); \
             e.dispatchEvent(new Event('change', {{ bubbles: true }})); return true; }})()"
        ));
    }

    /// Console errors (`console.error`, `console.assert`), uncaught exceptions and
    /// error log entries (a resource that failed to load, a CSP violation) so far.
    pub(crate) fn problems(&self) -> Vec<String> {
        self.problems.lock().unwrap().clone()
    }

    /// Fails the test (after a screenshot) if the page had any problem.
    pub(crate) fn assert_no_problems(&self) {
        let problems = self.problems();
        if !problems.is_empty() {
            self.screenshot();
            panic!("{}: the page had problems: {problems:#?}", self.name);
        }
    }

    /// Every URL the page requested since the browser started.
    pub(crate) fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    /// [`Page::screenshot`] of one stage of a test: `<test name>-<stage>.png`.
    pub(crate) fn screenshot_stage(&self, stage: &str) -> PathBuf {
        let path = self.screenshot();
        let staged = artifacts_dir().join(format!("{}-{stage}.png", self.name));
        std::fs::rename(&path, &staged).unwrap_or_else(|e| panic!("renaming {}: {e}", path.display()));
        staged
    }

    /// A PNG of the whole page (beyond the window) in
    /// `target/browser-artifacts/<test name>.png`; its path.
    pub(crate) fn screenshot(&self) -> PathBuf {
        let size = self
            .try_eval("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
            .unwrap_or_default();
        let side = |i: usize, default: u32| size[i].as_f64().unwrap_or(f64::from(default)).max(1.0);
        let clip = Cdp::Viewport {
            x: 0.0,
            y: 0.0,
            width: side(0, WINDOW.0),
            height: side(1, WINDOW.1).min(SCREENSHOT_MAX_HEIGHT),
            scale: 1.0,
        };
        let png = self
            .tab
            .call_method(Cdp::CaptureScreenshot {
                format: Some(Cdp::CaptureScreenshotFormatOption::Png),
                quality: None,
                clip: Some(clip),
                from_surface: Some(true),
                capture_beyond_viewport: Some(true),
                optimize_for_speed: None,
            })
            .unwrap_or_else(|e| panic!("{}: screenshot: {e:#}", self.name));
        let png = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &png.data)
            .unwrap_or_else(|e| panic!("{}: the screenshot is not base64: {e}", self.name));
        let path = artifacts_dir().join(format!("{}.png", self.name));
        std::fs::write(&path, png).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        path
    }

    /// The tab itself, for what this harness does not wrap.
    pub(crate) fn tab(&self) -> &Arc<Tab> {
        &self.tab
    }
}

/// An event that means something went wrong in the page, in words.
fn problem(event: &Event) -> Option<String> {
    match event {
        Event::RuntimeConsoleAPICalled(e) => {
            use Runtime::ConsoleAPICalledEventTypeOption as Kind;
            let p = &e.params;
            matches!(p.Type, Kind::Error | Kind::Assert).then(|| {
                let args: Vec<String> = p.args.iter().map(remote_text).collect();
                format!("console.{:?}: {}", p.Type, args.join(" "))
            })
        }
        Event::RuntimeExceptionThrown(e) => {
            let d = &e.params.exception_details;
            let what = d.exception.as_ref().map(remote_text).unwrap_or_default();
            Some(format!(
                "uncaught exception: {} {what} at {}:{}:{}",
                d.text,
                d.url.as_deref().unwrap_or("?"),
                d.line_number,
                d.column_number
            ))
        }
        Event::LogEntryAdded(e) => {
            let entry = &e.params.entry;
            matches!(entry.level, Log::LogEntryLevel::Error).then(|| {
                format!(
                    "log error ({:?}): {} {}",
                    entry.source,
                    entry.text,
                    entry.url.as_deref().unwrap_or("")
                )
            })
        }
        _ => None,
    }
}

fn remote_text(o: &Runtime::RemoteObject) -> String {
    match (&o.value, &o.description) {
        (Some(Value::String(s)), _) => s.clone(),
        (Some(v), _) => v.to_string(),
        (None, Some(d)) => d.clone(),
        (None, None) => format!("{:?}", o.Type),
    }
}

/// The harness itself: it drives inputs and sees what goes wrong in a page.
#[test]
fn the_harness_fills_clicks_and_sees_console_errors_and_exceptions() {
    let Some(page) = launch("browser_harness") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("form.html");
    std::fs::write(
        &path,
        r#"<!DOCTYPE html><input id="n"><button id="go">go</button><p id="out"></p><script>
        document.getElementById('go').addEventListener('click', () => {
          const v = document.getElementById('n').value;
          document.getElementById('out').textContent = 'got ' + v;
          console.error('clicked with', v);
          setTimeout(() => { throw new Error('late ' + v); }, 0);
        });</script>"#,
    )
    .unwrap();
    page.goto_file(&path);
    assert!(page.problems().is_empty(), "{:?}", page.problems());
    page.fill("#n", "42");
    page.click("#go");
    page.wait_for(
        "document.getElementById('out').textContent === 'got 42'",
        Duration::from_secs(5),
    );
    page.wait_for("true", Duration::from_secs(1));
    let deadline = Instant::now() + Duration::from_secs(5);
    while page.problems().len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let problems = page.problems();
    assert!(problems.iter().any(|p| p.contains("clicked with 42")), "{problems:?}");
    assert!(
        problems.iter().any(|p| p.contains("uncaught") && p.contains("late 42")),
        "{problems:?}"
    );
    // A failed expression is an Err, not an uncaught exception of the page.
    assert!(page.try_eval("null.x").unwrap_err().contains("TypeError"));
    assert_eq!(
        page.tab().get_url(),
        format!("file://{}", path.canonicalize().unwrap().display())
    );
    assert!(page.screenshot().is_file());
}
