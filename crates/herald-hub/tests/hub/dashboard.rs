//! The dashboard in a real browser: headless Chromium driven through chromedriver
//! (WebDriver, with `fantoccini`) against a real hub on `127.0.0.1:0`.
//!
//! Each test waits on the DOM with a deadline, never on a sleep; each saves a
//! screenshot under `target/dashboard-screenshots/` to be looked at. Without Chromium
//! and chromedriver the tests say so on stderr and return, unless `CI=true`, where they
//! fail and say what to install.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use herald_hub::{Hub, HubConfig, SqliteStore};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

use crate::util::{
    ADMIN, DEADLINE, Run, StoreKind, TestHub, cannot_run, find_program, finished, within,
};

/// What the tests need installed, and how to install it on Debian.
const INSTALL: &str = "apt-get install -y --no-install-recommends chromium chromium-driver";

/// Chromium's flags for this machine: headless as root, and quiet on a closed network
/// (without the background-networking flags it keeps trying to reach Google).
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--disable-extensions",
    "--hide-scrollbars",
    "--force-color-profile=srgb",
];

/// Chromium and chromedriver, or `None` after saying why the test does not run. Under
/// `CI=true` a missing browser fails the test instead.
fn programs() -> Option<(PathBuf, PathBuf)> {
    let chromium = find_program(&["chromium", "chromium-browser", "google-chrome"]);
    let driver = find_program(&["chromedriver"]);
    if let (Some(chromium), Some(driver)) = (&chromium, &driver) {
        return Some((chromium.clone(), driver.clone()));
    }
    let missing: Vec<&str> = [
        chromium.is_none().then_some("chromium"),
        driver.is_none().then_some("chromedriver"),
    ]
    .into_iter()
    .flatten()
    .collect();
    cannot_run(&format!(
        "the dashboard's browser tests need {} on PATH; install them with `{INSTALL}`",
        missing.join(" and ")
    ));
    None
}

/// A free port on loopback (the chromedriver is told to listen there).
fn free_port() -> u16 {
    StdListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A headless Chromium in a WebDriver session. Dropping it ends the session (so that no
/// browser outlives a failed test) and stops chromedriver.
struct Browser {
    client: Option<Client>,
    session: Option<String>,
    driver: Child,
    driver_port: u16,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// A browser whose viewport is `width` x `height` CSS pixels; `None` when Chromium is
    /// not installed (outside CI).
    async fn start(width: u32, height: u32) -> Option<Browser> {
        let (chromium, driver_path) = programs()?;
        let driver_port = free_port();
        let driver = Command::new(&driver_path)
            .arg(format!("--port={driver_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", driver_path.display()));
        let webdriver = format!("http://127.0.0.1:{driver_port}");
        let probe = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let ready = probe
                .get(format!("{webdriver}/status"))
                .send()
                .await
                .ok()
                .filter(|r| r.status().is_success());
            if ready.is_some() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver did not answer on {webdriver} within {DEADLINE:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().expect("a temp dir");
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|f| (*f).to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        args.push(format!("--window-size={width},{height}"));
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".to_owned(),
            json!({
                "binary": chromium,
                "args": args,
                // The viewport itself, whatever the window's frame takes.
                "mobileEmulation": {"deviceMetrics": {"width": width, "height": height, "pixelRatio": 1, "touch": false}},
            }),
        );
        let client = tokio::time::timeout(
            Duration::from_secs(60),
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(caps)
                .connect(&webdriver),
        )
        .await
        .expect("Chromium started within 60 s")
        .unwrap_or_else(|e| panic!("a WebDriver session with {}: {e}", chromium.display()));
        let session = client.session_id().await.expect("a session id");
        Some(Browser {
            client: Some(client),
            session,
            driver,
            driver_port,
            _profile: profile,
        })
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("the session is open")
    }

    async fn goto(&self, url: &str) {
        self.client()
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("opening {url}: {e}"));
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page.
    async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.client()
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("running {script:?}: {e}"))
    }

    /// The visible text of the page's `<main>`, for failure messages.
    async fn main_text(&self) -> String {
        match self
            .client()
            .execute(
                "const m = document.querySelector('main'); return m ? m.innerText : document.body.innerText;",
                vec![],
            )
            .await
        {
            Ok(Value::String(text)) => text,
            other => format!("(could not read the page: {other:?})"),
        }
    }

    /// Waits until the JavaScript expression `expr` is truthy in the page, failing after
    /// [`DEADLINE`] with what the page showed (and a screenshot `failed-{what}`).
    #[track_caller]
    fn wait(&self, what: &str, expr: &str) -> impl Future<Output = ()> {
        let location = std::panic::Location::caller();
        let script = format!("try {{ return Boolean({expr}); }} catch (e) {{ return false; }}");
        async move {
            let deadline = tokio::time::Instant::now() + DEADLINE;
            loop {
                if self.js(&script, vec![]).await == Value::Bool(true) {
                    return;
                }
                if tokio::time::Instant::now() >= deadline {
                    let name: String = what
                        .chars()
                        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                        .collect();
                    self.screenshot(&format!("failed-{name}")).await;
                    panic!(
                        "{location}: gave up after {DEADLINE:?} waiting for {what} ({expr}); the page showed:\n{}",
                        self.main_text().await
                    );
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
    }

    /// The text of the first element matching `css` ("" when there is none).
    async fn text(&self, css: &str) -> String {
        let value = self
            .js(
                "const e = document.querySelector(arguments[0]); return e ? e.innerText : '';",
                vec![json!(css)],
            )
            .await;
        value.as_str().unwrap_or_default().to_owned()
    }

    async fn click(&self, css: &str) {
        self.client()
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("finding {css}: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("clicking {css}: {e}"));
    }

    async fn type_into(&self, css: &str, text: &str) {
        let field = self
            .client()
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("finding {css}: {e}"));
        field.clear().await.expect("the field clears");
        field
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("typing into {css}: {e}"));
    }

    /// Marks the document, so that [`Browser::not_reloaded`] can tell a live update
    /// from a page load.
    async fn mark(&self) {
        self.js("window.__heraldTestMark = 42; return null;", vec![])
            .await;
    }

    async fn not_reloaded(&self) {
        assert_eq!(
            self.js("return window.__heraldTestMark ?? null;", vec![])
                .await,
            json!(42),
            "the page was loaded again; it should update in place"
        );
    }

    /// Saves what the viewport shows as `target/dashboard-screenshots/{name}.png`.
    async fn screenshot(&self, name: &str) {
        let Ok(png) = self.client().screenshot().await else {
            eprintln!("could not take the screenshot {name}");
            return;
        };
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("the screenshot folder");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("the screenshot is written");
        eprintln!("screenshot: {}", path.display());
    }

    /// Ends the session and closes the browser.
    async fn close(mut self) {
        if let Some(client) = self.client.take() {
            let _ = within("the browser to close", client.close()).await;
            self.session = None;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // A test that panicked never reached `close`, and its runtime is going away:
        // end the session with a plain blocking request, so Chromium quits with it.
        if let Some(session) = self.session.take() {
            delete_session(self.driver_port, &session);
        }
        let _ = self.driver.start_kill();
    }
}

/// `DELETE /session/{id}` to chromedriver, blocking, without the async runtime.
fn delete_session(port: u16, session: &str) {
    use std::io::Read;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let request = format!(
        "DELETE /session/{session} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).is_ok() {
        let mut reply = Vec::new();
        let _ = stream.read_to_end(&mut reply);
    }
}

/// `target/dashboard-screenshots`, beside the test binary's `debug` folder.
fn screenshot_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/debug/deps/hub-HASH -> target
    let target = exe
        .ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("target"));
    target.join("dashboard-screenshots")
}

/// A hub with a short sweep, so that runs with a short heartbeat timeout stall soon.
async fn hub_with_admin(sweep: Duration) -> TestHub {
    TestHub::start(
        StoreKind::Sqlite,
        HubConfig {
            admin_token: Some(ADMIN.to_owned()),
            sweep_interval: sweep,
            ..HubConfig::default()
        },
        None,
    )
    .await
}

/// The CSS selector of a run's row in the list.
fn row(id: &str) -> String {
    format!("li.run[data-key=\"{id}\"]")
}

/// A JavaScript expression: the row of run `id`.
fn row_js(id: &str) -> String {
    format!("document.querySelector('{}')", row(id).replace('\'', "\\'"))
}

fn stage_started(stage: &str, total: u64) -> Value {
    json!({"event": "stage.started", "stage": stage, "total": total})
}

fn progress(stage: &str, done: u64, total: u64) -> Value {
    json!({"event": "progress", "stage": stage, "done": done, "total": total, "elapsed_s": done as f64})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_updates_live_nests_sub_runs_and_filters_by_status() {
    let Some(browser) = Browser::start(1280, 900).await else {
        return;
    };
    let hub = hub_with_admin(Duration::from_secs(1)).await;
    let crawl = hub
        .create(json!({"id": "crawl", "name": "Crawl the docs"}))
        .await;
    hub.append(
        &crawl,
        json!([{"event": "run.started", "name": "Crawl the docs"}, stage_started("fetch", 10), progress("fetch", 2, 10)]),
    )
    .await;

    // The admin token in the fragment: it never reaches the hub's logs, and the page
    // keeps it for the tab.
    browser.goto(&format!("{}/#token={ADMIN}", hub.url)).await;
    browser.wait("the run in the list", &row_js("crawl")).await;
    browser.mark().await;
    assert_eq!(
        browser
            .js(
                "return location.hash + '|' + sessionStorage.getItem('herald.admin-token');",
                vec![]
            )
            .await,
        json!(format!("|{ADMIN}")),
        "the token moved from the address bar to sessionStorage"
    );
    browser
        .wait(
            "20 percent",
            &format!(
                "{}.querySelector('.pct').textContent === '20%'",
                row_js("crawl")
            ),
        )
        .await;
    assert_eq!(
        browser.text(&format!("{} .run-name", row("crawl"))).await,
        "Crawl the docs"
    );

    // Progress arrives over HTTP; the row follows without a reload.
    hub.append(&crawl, json!([progress("fetch", 7, 10)])).await;
    browser
        .wait(
            "70 percent",
            &format!(
                "{r}.querySelector('.pct').textContent === '70%' && {r}.querySelector('progress').value === 70",
                r = row_js("crawl")
            ),
        )
        .await;
    browser.not_reloaded().await;

    // A sub-agent nests under its parent; a failed run stands out; a new run appears.
    let child = hub
        .create(json!({"id": "crawl-sub", "name": "Summarize page 3", "parent": "crawl"}))
        .await;
    hub.append(
        &child,
        json!([{"event": "run.started", "name": "Summarize page 3"}, stage_started("read", 4), progress("read", 1, 4)]),
    )
    .await;
    let broken = hub
        .create(json!({"id": "broken", "name": "Nightly import"}))
        .await;
    hub.append(
        &broken,
        json!([{"event": "run.started", "name": "Nightly import"}, {"event": "run.finished", "status": "failed", "error": "disk full"}]),
    )
    .await;
    let done = hub.create(json!({"id": "done", "name": "Backfill"})).await;
    hub.append(
        &done,
        json!([{"event": "run.started", "name": "Backfill"}, stage_started("copy", 3), progress("copy", 3, 3), finished("succeeded")]),
    )
    .await;
    browser
        .wait(
            "the sub-run nested under its parent",
            &format!(
                "{}.querySelector('.children {}')",
                row_js("crawl"),
                row("crawl-sub").replace('\'', "\\'")
            ),
        )
        .await;
    browser
        .wait(
            "the failed run marked",
            &format!(
                "{r} && {r}.dataset.status === 'failed' && {r}.querySelector('.badge').textContent.includes('Failed') && {r}.querySelector('.run-note').textContent.includes('disk full')",
                r = row_js("broken")
            ),
        )
        .await;
    browser
        .wait(
            "the summary line",
            "document.getElementById('summary').textContent === '2 running · 1 failed'",
        )
        .await;
    browser.screenshot("list").await;

    // The filter: only failed runs, by keyboard-reachable radio buttons.
    browser.click("label[for='filter-failed']").await;
    browser
        .wait(
            "only the failed run",
            "document.querySelectorAll('li.run').length === 1 && document.querySelector('li.run').dataset.key === 'broken'",
        )
        .await;
    assert!(
        browser
            .js("return location.search;", vec![])
            .await
            .as_str()
            .is_some_and(|s| s == "?status=failed"),
        "the filter is in the address, so it can be linked"
    );
    browser.screenshot("list-failed-only").await;
    browser.click("label[for='filter-all']").await;
    browser
        .wait(
            "every run again",
            "document.querySelectorAll('li.run').length === 4",
        )
        .await;

    // A deleted run leaves the list.
    let (status, _) = hub
        .call(Method::DELETE, "/v1/runs/done", Some(ADMIN), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    browser
        .wait("the deleted run gone", &format!("!{}", row_js("done")))
        .await;
    browser.not_reloaded().await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_page_shows_a_failed_item_tools_and_text_as_they_happen() {
    let Some(browser) = Browser::start(1280, 1500).await else {
        return;
    };
    let hub = TestHub::open(StoreKind::Sqlite).await;
    let run = hub
        .create(json!({"id": "triage", "name": "Triage 40 documents"}))
        .await;
    hub.append(
        &run,
        json!([
            {"event": "run.started", "name": "Triage 40 documents", "total_steps": 2},
            stage_started("fetch", 40),
            {"event": "item.started", "item": "doc-1", "stage": "fetch", "label": "report.pdf"},
            {"event": "item.finished", "item": "doc-1", "stage": "fetch", "status": "succeeded", "elapsed_s": 0.4},
            progress("fetch", 12, 40),
        ]),
    )
    .await;
    browser.goto(&format!("{}/runs/triage", hub.url)).await;
    browser
        .wait(
            "the stage's bar",
            "document.querySelector('#stages li.stage progress')?.value === 30",
        )
        .await;
    assert_eq!(browser.text("#run-title").await, "Triage 40 documents");
    assert_eq!(
        browser
            .js(
                "return document.querySelector('#stages progress').labels[0].textContent;",
                vec![]
            )
            .await,
        json!("fetch"),
        "each stage's bar has its label"
    );
    browser.mark().await;

    // A failed item shows the moment it is reported.
    hub.append(
        &run,
        json!([
            {"event": "item.started", "item": "doc-7", "stage": "fetch", "label": "scan-007.tiff"},
            {"event": "item.finished", "item": "doc-7", "stage": "fetch", "status": "failed", "error": "HTTP 503 from the archive"},
        ]),
    )
    .await;
    browser
        .wait(
            "the failed item",
            "document.querySelector('#failed-items')?.innerText.includes('scan-007.tiff') && document.querySelector('#failed-items').innerText.includes('HTTP 503 from the archive')",
        )
        .await;
    browser.not_reloaded().await;

    // Tools in flight with their feedback (a repeated message shown once), the
    // streamed text, and "preparing response".
    hub.append(
        &run,
        json!([
            {"event": "stage.finished", "stage": "fetch", "status": "succeeded", "elapsed_s": 12.5},
            stage_started("summarize", 2),
            {"event": "agent.iteration", "iteration": 2},
            {"event": "tool.started", "call_id": "c1", "tool": "search_docs", "input": {"q": "refund policy"}, "feedback": "Searching the docs"},
            {"event": "tool.started", "call_id": "c2", "tool": "search_docs", "input": {"q": "refund policy"}, "feedback": "Searching the docs"},
            {"event": "tool.started", "call_id": "c3", "tool": "read_file", "input": {"path": "policy.md"}, "feedback": "Reading policy.md"},
            {"event": "text.delta", "text": "The refund policy "},
        ]),
    )
    .await;
    browser
        .wait(
            "tools in flight with feedback",
            "document.querySelector('#tools-in-flight')?.innerText.includes('Reading policy.md')",
        )
        .await;
    assert_eq!(
        browser
            .js(
                "return [...document.querySelectorAll('#tools-in-flight .feedback')].filter(f => f.textContent === 'Searching the docs').length;",
                vec![],
            )
            .await,
        json!(1),
        "a feedback message repeated by the same tool with the same input is shown once"
    );
    hub.append(
        &run,
        json!([
            {"event": "tool.finished", "call_id": "c1", "tool": "search_docs", "status": "succeeded", "elapsed_s": 1.25},
            {"event": "tool.finished", "call_id": "c2", "tool": "search_docs", "status": "succeeded", "elapsed_s": 0.75},
            {"event": "tool.finished", "call_id": "c3", "tool": "read_file", "status": "failed", "error": "permission denied", "elapsed_s": 0.05},
            {"event": "agent.preparing_response"},
            {"event": "text.delta", "text": "allows returns within 30 days."},
        ]),
    )
    .await;
    browser
        .wait(
            "preparing response",
            "!document.getElementById('preparing').hidden && document.getElementById('preparing').textContent.includes('Preparing response')",
        )
        .await;
    browser
        .wait(
            "the streamed text",
            "document.getElementById('text').textContent === 'The refund policy allows returns within 30 days.'",
        )
        .await;
    browser
        .wait(
            "finished tools with durations",
            "document.getElementById('tools-done').innerText.includes('750ms, 1.3s') && document.getElementById('tools-done').innerText.includes('permission denied')",
        )
        .await;
    browser
        .wait(
            "the timeline",
            "document.getElementById('timeline').innerText.includes('agent.preparing_response')",
        )
        .await;
    browser
        .wait(
            "the last error",
            "document.getElementById('last-error').innerText.includes('permission denied')",
        )
        .await;
    browser.not_reloaded().await;
    browser.screenshot("run").await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_page_shows_a_tool_s_own_progress_on_its_row() {
    let Some(browser) = Browser::start(1280, 1000).await else {
        return;
    };
    let hub = TestHub::open(StoreKind::Sqlite).await;
    let run = hub.create(json!({"id": "crawler", "name": "Crawl"})).await;
    hub.append(
        &run,
        json!([
            {"event": "run.started", "name": "Crawl"},
            {"event": "tool.started", "call_id": "t1", "tool": "crawl", "feedback": "Crawling the site"},
            {"event": "tool.started", "call_id": "t2", "tool": "search_docs", "feedback": "Searching the docs"},
            {"event": "progress", "call_id": "t1", "done": 3, "total": 12, "unit": "pages",
             "message": "Page 3 of 12", "elapsed_s": 1.0},
        ]),
    )
    .await;
    browser.goto(&format!("{}/runs/crawler", hub.url)).await;
    let crawl_row = "[...document.querySelectorAll('#tools-in-flight li.tool')].find(li => li.querySelector('.tool-name').textContent === 'crawl')";
    browser
        .wait(
            "the tool's bar",
            &format!("{crawl_row}?.querySelector('.tool-progress progress')?.value === 25"),
        )
        .await;
    let row = |what: &str| format!("const row = {crawl_row}; return {what};");
    assert_eq!(
        browser
            .js(
                &row("[row.querySelector('.feedback').textContent, row.querySelector('.tool-progress .pct').textContent, row.querySelector('.tool-count').textContent, row.querySelector('.tool-progress').hidden, row.querySelector('progress').getAttribute('aria-label')]"),
                vec![]
            )
            .await,
        json!(["Page 3 of 12", "25%", "3 / 12 pages", false, "Progress of crawl"]),
        "the tool's row shows its message, percent and count"
    );
    // A tool that reports no progress shows no bar; the run has no percent of its own.
    assert_eq!(
        browser
            .js(
                "const rows = [...document.querySelectorAll('#tools-in-flight li.tool')]; const other = rows.find(li => li.querySelector('.tool-name').textContent === 'search_docs'); return [rows.length, other.querySelector('.tool-progress').hidden, document.getElementById('overall-progress').hasAttribute('value')];",
                vec![]
            )
            .await,
        json!([2, true, false])
    );
    browser.mark().await;

    hub.append(
        &run,
        json!([{"event": "progress", "call_id": "t1", "done": 9, "elapsed_s": 2.0}]),
    )
    .await;
    browser
        .wait(
            "the tool's bar to move live",
            &format!("{crawl_row}?.querySelector('.tool-progress progress')?.value === 75 && {crawl_row}.querySelector('.tool-count').textContent === '9 / 12 pages'"),
        )
        .await;
    browser.not_reloaded().await;
    browser.screenshot("tool-progress").await;
    browser.close().await;
}

/// The demo's shape as a producer recorded it: four stages of ten items, one a
/// second, the last event `upto` seconds after the start, which was `ago` seconds ago;
/// `total_steps` in `run.started` when given.
fn four_stages(name: &str, total_steps: Option<u64>, upto: u64, ago: f64) -> Value {
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    let ts = |secs: u64| {
        json!(herald_protocol::Timestamp::from_unix_micros(
            now_us - ((ago - secs as f64) * 1e6) as i64
        ))
    };
    let mut started = json!({"event": "run.started", "name": name, "ts": ts(0)});
    if let Some(steps) = total_steps {
        started["total_steps"] = json!(steps);
    }
    let mut events = vec![started];
    for (k, stage) in ["fetch", "parse", "index", "report"]
        .into_iter()
        .enumerate()
    {
        let t0 = k as u64 * 10;
        if t0 > upto {
            break;
        }
        events.push(json!({"event": "stage.started", "stage": stage, "total": 10, "ts": ts(t0)}));
        for i in 1..=10u64.min(upto - t0) {
            events.push(
                json!({"event": "item.finished", "item": format!("{stage}{i}"),
                               "stage": stage, "status": "succeeded", "ts": ts(t0 + i)}),
            );
        }
        if t0 + 10 <= upto {
            events.push(
                json!({"event": "stage.finished", "stage": stage, "status": "succeeded",
                               "elapsed_s": 10, "ts": ts(t0 + 10)}),
            );
        }
    }
    json!(events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_eta_is_a_range_when_wide_and_the_run_s_covers_the_run() {
    let Some(browser) = Browser::start(1280, 900).await else {
        return;
    };
    let hub = TestHub::open(StoreKind::Sqlite).await;
    // A producer's own range, 200 to 290 s: shown as "3–5 min" for the stage and,
    // the stage being the run's only one, for the run.
    let told = hub.create(json!({"id": "told", "name": "Told"})).await;
    hub.append(
        &told,
        json!([
            {"event": "run.started", "name": "Told", "total_steps": 1},
            stage_started("upload", 100),
            {"event": "progress", "stage": "upload", "done": 10, "total": 100, "elapsed_s": 10,
             "eta_s": 240, "eta_low_s": 200, "eta_high_s": 290},
        ]),
    )
    .await;
    // The demo's shape at 19 s, two stages still to come: the run's ETA covers them.
    let demo = hub.create(json!({"id": "demo", "name": "Demo"})).await;
    hub.append(&demo, four_stages("Demo", Some(4), 19, 19.2))
        .await;
    // The same without `total_steps`: the run's ETA is not known, the stage's is.
    let open = hub
        .create(json!({"id": "open", "name": "Open-ended"}))
        .await;
    hub.append(&open, four_stages("Open-ended", None, 13, 13.1))
        .await;

    browser.goto(&hub.url).await;
    let eta_of = |id: &str| format!("{}?.querySelector('.eta')?.textContent", row_js(id));
    browser
        .wait(
            "the list's ETAs",
            &format!(
                "{} === '3–5 min' && /^stage parse: /.test({}) && /^[0-9]+(–[0-9]+)?(s| min)$/.test({})",
                eta_of("told"),
                eta_of("open"),
                eta_of("demo")
            ),
        )
        .await;
    let listed = browser
        .js(&format!("return {};", eta_of("demo")), vec![])
        .await;
    browser.screenshot("list-eta").await;

    browser.goto(&format!("{}/runs/told", hub.url)).await;
    browser
        .wait(
            "the run's range and the stage's",
            "document.querySelector('dd.eta')?.textContent === '3–5 min' && document.querySelector('#stages .stage-facts')?.textContent.includes('ETA 3–5 min')",
        )
        .await;

    browser.goto(&format!("{}/runs/demo", hub.url)).await;
    browser
        .wait(
            "the run's ETA, not the stage's",
            "/^[0-9]+(–[0-9]+)?(s| min)$/.test(document.querySelector('dd.eta')?.textContent)",
        )
        .await;
    // The page and the list say the same (read a moment apart: within a second or so
    // of each other at either end).
    let shown = browser
        .js(
            "return document.querySelector('dd.eta').textContent;",
            vec![],
        )
        .await;
    let ends = |v: &Value| -> Vec<f64> {
        v.as_str()
            .unwrap()
            .trim_end_matches(" min")
            .trim_end_matches('s')
            .split('–')
            .map(|x| x.parse::<f64>().unwrap())
            .collect()
    };
    let (a, b) = (ends(&shown), ends(&listed));
    assert_eq!(a.len(), b.len(), "page {shown}, list {listed}");
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() <= 2.0, "page {shown}, list {listed}");
    }
    // Two stages of about 10 s are still to come: far more than the stage's second.
    assert!(a.iter().all(|&x| x >= 10.0), "page {shown}");
    browser.screenshot("run-eta").await;

    browser.goto(&format!("{}/runs/open", hub.url)).await;
    browser
        .wait(
            "the stage's ETA, said to be the stage's",
            "/^stage parse: /.test(document.querySelector('dd.eta')?.textContent)",
        )
        .await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_run_is_marked_in_the_list_and_on_its_page() {
    let Some(browser) = Browser::start(1280, 800).await else {
        return;
    };
    let hub = hub_with_admin(Duration::from_millis(100)).await;
    let busy = hub.create(json!({"id": "busy", "name": "Busy"})).await;
    hub.append(&busy, json!([{"event": "run.started", "name": "Busy"}]))
        .await;
    browser.goto(&format!("{}/#token={ADMIN}", hub.url)).await;
    browser
        .wait(
            "the running run",
            &format!(
                "{r} && {r}.dataset.status === 'running'",
                r = row_js("busy")
            ),
        )
        .await;
    // Created while the page watches, silent past its heartbeat timeout of 0.5 s.
    let quiet = hub
        .create(json!({"id": "quiet", "name": "Quiet worker", "heartbeat_timeout_s": 0.5}))
        .await;
    hub.append(
        &quiet,
        json!([{"event": "run.started", "name": "Quiet worker"}, stage_started("work", 10), progress("work", 3, 10)]),
    )
    .await;
    browser
        .wait(
            "the stalled run marked",
            &format!(
                "{r} && {r}.dataset.status === 'stalled' && {r}.querySelector('.badge').textContent.includes('Stalled') && {r}.querySelector('.run-note').textContent.includes('may be stuck')",
                r = row_js("quiet")
            ),
        )
        .await;
    assert_eq!(
        browser
            .js(
                &format!("return getComputedStyle({}).borderLeftColor !== getComputedStyle({}).borderLeftColor;", row_js("quiet"), row_js("busy")),
                vec![],
            )
            .await,
        json!(true),
        "a stalled run looks different from a running one (besides its words)"
    );
    browser.screenshot("list-stalled").await;

    browser.click(&format!("{} .run-name", row("quiet"))).await;
    browser
        .wait(
            "the run page, stalled",
            "document.getElementById('run-status')?.dataset.status === 'stalled' && document.getElementById('run-title').textContent === 'Quiet worker'",
        )
        .await;
    assert_eq!(
        browser.js("return location.pathname;", vec![]).await,
        json!("/runs/quiet")
    );
    browser
        .wait(
            "run.stalled in the timeline",
            "document.getElementById('timeline').innerText.includes('run.stalled')",
        )
        .await;
    browser.screenshot("run-stalled").await;

    // The producer speaks again: running.
    hub.append(&quiet, json!([progress("work", 4, 10)])).await;
    browser
        .wait(
            "running again",
            "document.getElementById('run-status').dataset.status === 'running'",
        )
        .await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_from_the_run_page_is_stored_and_shown() {
    let Some(browser) = Browser::start(1280, 900).await else {
        return;
    };
    let hub = hub_with_admin(Duration::from_secs(1)).await;
    let run = hub.create(json!({"id": "long", "name": "Long job"})).await;
    hub.append(
        &run,
        json!([{"event": "run.started", "name": "Long job"}, stage_started("work", 100), progress("work", 10, 100)]),
    )
    .await;
    browser
        .goto(&format!("{}/runs/long#token={ADMIN}", hub.url))
        .await;
    browser
        .wait(
            "the cancel button",
            "document.getElementById('cancel') && !document.getElementById('cancel').hidden",
        )
        .await;
    browser.click("#cancel").await;
    browser
        .wait(
            "the confirmation",
            "document.getElementById('cancel-dialog').open",
        )
        .await;
    browser.screenshot("run-cancel-dialog").await;
    browser.click("#cancel-confirm").await;
    browser
        .wait(
            "cancel requested on the page",
            "!document.getElementById('cancel-note').hidden && document.getElementById('cancel-note').textContent.includes('Cancel requested') && document.getElementById('cancel').hidden",
        )
        .await;
    assert_eq!(hub.state(&run).await["cancel_requested"], json!(true));
    let events = hub.all_events(&run).await;
    assert_eq!(
        events.last().map(|e| e.event_type()),
        Some("run.cancel_requested")
    );
    browser
        .wait(
            "the cancel request, with its reason, in the note and the timeline",
            "document.getElementById('cancel-note').textContent === 'Cancel requested (cancelled from the dashboard): waiting for the run to stop.' && document.getElementById('timeline').innerText.includes('run.cancel_requested')",
        )
        .await;
    browser.screenshot("run-cancel-requested").await;

    // The producer stops: the page shows it cancelled, and the button stays away.
    hub.append(&run, json!([finished("cancelled")])).await;
    browser
        .wait(
            "cancelled",
            "document.getElementById('run-status').dataset.status === 'cancelled' && document.getElementById('cancel').hidden",
        )
        .await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_bad_token_gets_a_clear_message_and_a_form() {
    let Some(browser) = Browser::start(1000, 700).await else {
        return;
    };
    let hub = hub_with_admin(Duration::from_secs(1)).await;
    hub.create(json!({"id": "secret", "name": "Secret run"}))
        .await;

    browser.goto(&format!("{}/", hub.url)).await;
    browser
        .wait(
            "the needs-a-token message",
            "document.querySelector('.auth h1')?.textContent === 'This hub needs a token'",
        )
        .await;
    assert!(
        browser
            .text(".auth-message")
            .await
            .starts_with("This hub needs a token"),
    );
    browser.screenshot("token-needed").await;

    browser.type_into("#token-input", "not-the-token").await;
    browser.click(".token-form button[type=submit]").await;
    browser
        .wait(
            "the refusal with the hub's message",
            "document.querySelector('.auth-message')?.textContent === 'The token was refused: the token is not valid on this hub.'",
        )
        .await;
    browser.screenshot("token-refused").await;

    // A bad `?token=` on a run's link is refused the same way, with the hub's words.
    browser
        .goto(&format!("{}/runs/secret?token=hr_0000", hub.url))
        .await;
    browser
        .wait(
            "the refusal on the run page",
            "document.querySelector('.auth-message')?.textContent.startsWith('The token was refused: ')",
        )
        .await;

    // The right token opens the list, without a page load.
    browser.goto(&format!("{}/", hub.url)).await;
    browser
        .wait("the form", "document.getElementById('token-input')")
        .await;
    browser.mark().await;
    browser.type_into("#token-input", ADMIN).await;
    browser.click(".token-form button[type=submit]").await;
    browser.wait("the list", &row_js("secret")).await;
    browser.not_reloaded().await;
    assert_eq!(
        browser
            .js(
                "return sessionStorage.getItem('herald.admin-token');",
                vec![]
            )
            .await,
        json!(ADMIN)
    );
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_token_link_of_a_run_opens_its_page_without_a_cancel_button() {
    let Some(browser) = Browser::start(1280, 900).await else {
        return;
    };
    let hub = hub_with_admin(Duration::from_secs(1)).await;
    let (status, reply) = hub
        .call(
            Method::POST,
            "/v1/runs",
            Some(ADMIN),
            Some(json!({"id": "shared", "name": "Shared with a viewer"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let run = Run {
        id: "shared".to_owned(),
        write_token: reply["write_token"]
            .as_str()
            .expect("a write token")
            .to_owned(),
        read_token: reply["read_token"]
            .as_str()
            .expect("a read token")
            .to_owned(),
    };
    hub.append(
        &run,
        json!([{"event": "run.started", "name": "Shared with a viewer"}, stage_started("render", 8), progress("render", 2, 8)]),
    )
    .await;
    let link = reply["urls"]["dashboard"]
        .as_str()
        .expect("a dashboard link");
    assert!(link.contains("?token=hr_"), "{link}");
    browser.goto(link).await;
    browser
        .wait(
            "the run page",
            "document.getElementById('run-title')?.textContent === 'Shared with a viewer' && document.querySelector('#stages progress')?.value === 25",
        )
        .await;
    browser.mark().await;
    hub.append(&run, json!([progress("render", 6, 8)])).await;
    browser
        .wait(
            "live progress with the read token",
            "document.getElementById('overall-pct').textContent === '75%'",
        )
        .await;
    browser.not_reloaded().await;
    assert_eq!(
        browser
            .js("return document.getElementById('cancel').hidden;", vec![])
            .await,
        json!(true),
        "a read token cannot cancel, so there is no button"
    );
    browser.screenshot("run-read-token").await;
    browser.close().await;
}

/// Whether the page is wider than its viewport (a horizontal scroll).
const OVERFLOWS: &str = "document.documentElement.scrollWidth > window.innerWidth || document.body.scrollWidth > window.innerWidth";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_375_px_wide_viewport_has_no_horizontal_scroll() {
    let Some(browser) = Browser::start(375, 812).await else {
        return;
    };
    let hub = TestHub::open(StoreKind::Sqlite).await;
    let long_name = "Summarize every quarterly report of the last ten years into one brief";
    let id = "a-rather-long-run-identifier-from-a-scheduler:2030-01-01T00:00:00Z.attempt-3";
    let run = hub.create(json!({"id": id, "name": long_name})).await;
    hub.append(
        &run,
        json!([
            {"event": "run.started", "name": long_name},
            stage_started("download_the_archive_of_reports", 120),
            progress("download_the_archive_of_reports", 45, 120),
            {"event": "item.finished", "item": "https://example.invalid/reports/2021/q3/a-very-long-path/that-does-not-break.pdf", "status": "failed", "error": "ConnectionResetError: the peer closed the connection while reading the body of the response"},
            {"event": "tool.started", "call_id": "t1", "tool": "fetch_url_with_retries", "feedback": "Fetching https://example.invalid/reports/2021/q3/a-very-long-path/that-does-not-break.pdf"},
            {"event": "text.delta", "text": "Revenue_grew_in_every_quarter_without_any_spaces_in_this_very_long_token_of_streamed_text_to_test_wrapping"},
        ]),
    )
    .await;
    let child = hub
        .create(json!({"id": "child-of-long", "name": "A sub-agent with a long name too", "parent": id}))
        .await;
    hub.append(
        &child,
        json!([{"event": "run.started", "name": "A sub-agent with a long name too"}]),
    )
    .await;

    browser.goto(&format!("{}/", hub.url)).await;
    assert_eq!(
        browser.js("return window.innerWidth;", vec![]).await,
        json!(375)
    );
    browser
        .wait(
            "the list with the nested run",
            &format!(
                "{} && document.querySelector('.children li.run')",
                row_js(id)
            ),
        )
        .await;
    assert_eq!(
        browser.js(&format!("return {OVERFLOWS};"), vec![]).await,
        json!(false),
        "the list scrolls sideways at 375 px"
    );
    browser.screenshot("list-375").await;

    browser
        .goto(&format!("{}/runs/{}", hub.url, urlencode(id)))
        .await;
    browser
        .wait(
            "the run page",
            "document.querySelector('#failed-items li') && document.getElementById('text').textContent.length > 0",
        )
        .await;
    assert_eq!(
        browser.js(&format!("return {OVERFLOWS};"), vec![]).await,
        json!(false),
        "the run page scrolls sideways at 375 px"
    );
    browser.screenshot("run-375").await;
    browser.close().await;
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A hub over a given SQLite file, to be stopped and started again.
struct Restartable {
    stop: Option<oneshot::Sender<()>>,
    served: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Serves a hub over `db` on a clone of `listener`, which the test keeps: a stopped
/// hub closes only its clone, so the port stays the test's between hubs (connections
/// wait in its backlog meanwhile), and no other process can take it before the next
/// hub starts.
async fn serve_on(listener: &StdListener, db: &Path) -> Restartable {
    let store = SqliteStore::open(db).await.expect("the store opens");
    let hub = Hub::new(Arc::new(store), HubConfig::default());
    let listener = listener.try_clone().expect("the listener clones");
    listener
        .set_nonblocking(true)
        .expect("the listener is non-blocking");
    let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
    let (stop, stopped) = oneshot::channel::<()>();
    let served = tokio::spawn(herald_hub::serve(listener, hub, async move {
        let _ = stopped.await;
    }));
    Restartable {
        stop: Some(stop),
        served,
    }
}

impl Restartable {
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        within("the hub to stop", &mut self.served)
            .await
            .expect("the serve task ran")
            .expect("the hub served");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_reconnect_by_themselves_after_a_hub_restart() {
    let Some(browser) = Browser::start(1280, 900).await else {
        return;
    };
    let dir = tempfile::tempdir().expect("a temp dir");
    let db = dir.path().join("herald.db");
    let listener = StdListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("a port on loopback");
    let url = format!("http://{}", listener.local_addr().expect("an address"));
    let hub = serve_on(&listener, &db).await;
    let client = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        let req = client.post(format!("{url}{path}")).json(&body);
        async move {
            let resp = within("the hub's answer", req.send())
                .await
                .expect("the hub answers");
            assert!(resp.status().is_success(), "{}", resp.status());
        }
    };
    post("/v1/runs", json!({"id": "phoenix", "name": "Phoenix"})).await;
    post(
        "/v1/runs/phoenix/events",
        json!([{"event": "run.started", "name": "Phoenix"}, stage_started("rise", 10), progress("rise", 1, 10)]),
    )
    .await;
    browser.goto(&format!("{url}/runs/phoenix")).await;
    browser
        .wait(
            "live",
            "document.getElementById('conn').dataset.state === 'live' && document.getElementById('overall-pct').textContent === '10%'",
        )
        .await;
    browser.mark().await;

    hub.stop().await;
    browser
        .wait(
            "the reconnecting indicator",
            "document.getElementById('conn').textContent === 'Reconnecting…'",
        )
        .await;
    browser.screenshot("run-reconnecting").await;

    let hub = serve_on(&listener, &db).await;
    post("/v1/runs/phoenix/events", json!([progress("rise", 9, 10)])).await;
    browser
        .wait(
            "live again with the new progress",
            "document.getElementById('conn').dataset.state === 'live' && document.getElementById('overall-pct').textContent === '90%'",
        )
        .await;
    browser
        .wait(
            "the timeline resumed without a gap",
            "[...document.querySelectorAll('#timeline .type')].filter(t => t.textContent.startsWith('progress')).length >= 1",
        )
        .await;
    browser.not_reloaded().await;
    browser.close().await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_and_assets_are_served_with_their_types_and_cache_headers() {
    let hub = TestHub::with_admin(StoreKind::Sqlite).await;
    for path in ["/", "/runs/anything"] {
        let resp = hub
            .request(Method::GET, path, None)
            .send()
            .await
            .expect("the hub answers");
        assert_eq!(resp.status(), StatusCode::OK, "{path} needs no token");
        let headers = resp.headers().clone();
        assert_eq!(headers["content-type"], "text/html; charset=utf-8");
        assert_eq!(headers["referrer-policy"], "no-referrer");
        assert!(
            headers["content-security-policy"]
                .to_str()
                .is_ok_and(|v| v.contains("script-src 'self'")),
        );
        let body = resp.text().await.expect("a body");
        assert!(body.contains("<script type=\"module\" src=\"/assets/app.js\">"));
        assert!(
            !body.contains("http://") && !body.contains("https://"),
            "nothing from elsewhere"
        );
    }
    for (file, content_type) in [
        ("app.js", "text/javascript; charset=utf-8"),
        ("sse.js", "text/javascript; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
        ("icon.svg", "image/svg+xml"),
    ] {
        let path = format!("/assets/{file}");
        let resp = hub
            .request(Method::GET, &path, None)
            .send()
            .await
            .expect("the hub answers");
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        assert_eq!(resp.headers()["content-type"], content_type, "{path}");
        assert_eq!(resp.headers()["cache-control"], "no-cache", "{path}");
        let etag = resp.headers()["etag"].clone();
        let again = hub
            .request(Method::GET, &path, None)
            .header("if-none-match", etag.clone())
            .send()
            .await
            .expect("the hub answers");
        assert_eq!(
            again.status(),
            StatusCode::NOT_MODIFIED,
            "{path} revalidates"
        );
        assert_eq!(again.headers()["etag"], etag);
    }
    let (status, body) = hub.call(Method::GET, "/assets/nope.js", None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");
}

/// A page of another origin that does what an AG-UI front end's `HttpAgent` does:
/// `POST` a `RunAgentInput` to a run's `?format=ag-ui` stream with a bearer token, and
/// read the events as they come. It lists their types in `#events`, and any failure
/// in `#error`. Its query says where: `?hub=URL&run=ID&token=TOKEN`.
const FRONT_END: &str = r#"<!doctype html>
<meta charset="utf-8"><title>AG-UI front end</title>
<main><ol id="events"></ol><p id="error"></p><p id="done"></p></main>
<script type="module">
const q = new URLSearchParams(location.search);
const list = document.getElementById("events");
try {
  const res = await fetch(`${q.get("hub")}/v1/runs/${q.get("run")}/stream?format=ag-ui`, {
    method: "POST",
    headers: {
      "Authorization": `Bearer ${q.get("token")}`,
      "Content-Type": "application/json",
      "Accept": "text/event-stream",
    },
    body: JSON.stringify({threadId: "t", runId: "r", messages: [], tools: [], context: [], state: {}, forwardedProps: {}}),
  });
  if (!res.ok) throw new Error(`HTTP ${res.status}`);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += value;
    let end;
    while ((end = buf.indexOf("\n\n")) >= 0) {
      const frame = buf.slice(0, end);
      buf = buf.slice(end + 2);
      const data = frame.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("\n");
      if (!data) continue;
      const li = document.createElement("li");
      li.textContent = JSON.parse(data).type;
      list.append(li);
    }
  }
  document.getElementById("done").textContent = "done";
} catch (e) {
  document.getElementById("error").textContent = `failed: ${e.name}: ${e.message}`;
}
</script>
"#;

/// A page of another origin that tries what any web page the user visits could: post
/// to an open hub on loopback with requests a browser sends without a preflight (a
/// `text/plain` body, a form, a bodiless cancel), in `no-cors` mode as a form or an
/// image would, where the page cannot read the answers but the hub gets the requests.
/// It says in `#done` when every one has settled. Its query says where:
/// `?hub=URL&run=ID`.
const ATTACKER: &str = r#"<!doctype html>
<meta charset="utf-8"><title>Any web page</title>
<main><p id="done"></p></main>
<script type="module">
const q = new URLSearchParams(location.search);
const hub = q.get("hub");
const run = q.get("run");
const text = { "Content-Type": "text/plain" };
const settled = await Promise.allSettled([
  fetch(`${hub}/v1/runs`, { method: "POST", mode: "no-cors", headers: text,
    body: JSON.stringify({ id: "planted", name: "planted by a web page" }) }),
  fetch(`${hub}/v1/runs`, { method: "POST", mode: "no-cors",
    body: new URLSearchParams({ name: "planted by a form" }) }),
  fetch(`${hub}/v1/runs/${run}/events`, { method: "POST", mode: "no-cors", headers: text,
    body: JSON.stringify([{ event: "log", level: "error", message: "planted" }]) }),
  fetch(`${hub}/v1/runs/${run}/cancel`, { method: "POST", mode: "no-cors" }),
]);
document.getElementById("done").textContent = settled.map((s) => s.status).join(",");
</script>
"#;

/// Serves [`FRONT_END`] (and [`ATTACKER`] at `/attack`) on a free loopback port: an
/// origin other than the hub's.
async fn serve_front_end() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let origin = format!("http://{}", listener.local_addr().expect("an address"));
    let app = axum::Router::new()
        .route(
            "/",
            axum::routing::get(|| async { axum::response::Html(FRONT_END) }),
        )
        .route(
            "/attack",
            axum::routing::get(|| async { axum::response::Html(ATTACKER) }),
        );
    let served = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (origin, served)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agui_front_end_on_another_origin_follows_a_run_when_the_hub_allows_its_origin() {
    let Some(browser) = Browser::start(1024, 768).await else {
        return;
    };
    let (origin, front_end) = serve_front_end().await;
    let allowing = TestHub::start(
        StoreKind::Sqlite,
        HubConfig {
            admin_token: Some(ADMIN.to_owned()),
            cors_origins: vec![origin.clone()],
            ..HubConfig::default()
        },
        None,
    )
    .await;
    let run = allowing.create_named("cross-origin").await;
    allowing
        .append(
            &run,
            json!([{"event": "run.started", "name": "agent"}, stage_started("plan", 1),
                   {"event": "text.delta", "call_id": "c1", "text": "Hi"}]),
        )
        .await;
    let page = |hub: &TestHub, run: &Run| {
        format!(
            "{origin}/?hub={}&run={}&token={}",
            hub.url, run.id, run.read_token
        )
    };
    browser.goto(&page(&allowing, &run)).await;
    browser
        .wait(
            "the first events, live",
            "document.querySelectorAll('#events li').length >= 4",
        )
        .await;
    allowing.append(&run, json!([finished("succeeded")])).await;
    browser
        .wait(
            "the end of the run",
            "document.getElementById('done').textContent === 'done'",
        )
        .await;
    let kinds = browser
        .js(
            "return [...document.querySelectorAll('#events li')].map((li) => li.textContent);",
            vec![],
        )
        .await;
    assert_eq!(
        kinds,
        json!([
            "RUN_STARTED",
            "STEP_STARTED",
            "TEXT_MESSAGE_START",
            "TEXT_MESSAGE_CONTENT",
            "TEXT_MESSAGE_END",
            "STEP_FINISHED",
            "RUN_FINISHED"
        ]),
        "{}",
        browser.main_text().await
    );
    assert_eq!(browser.text("#error").await, "");
    browser.screenshot("agui-front-end").await;

    // A hub that names no origins is out of the page's reach: the browser refuses.
    let closed = TestHub::with_admin(StoreKind::Sqlite).await;
    let run = closed.create_named("same-origin-only").await;
    browser.goto(&page(&closed, &run)).await;
    browser
        .wait(
            "the browser to refuse",
            "document.getElementById('error').textContent !== ''",
        )
        .await;
    let error = browser.text("#error").await;
    assert!(error.contains("TypeError"), "{error}");
    front_end.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_page_of_another_origin_plants_nothing_on_an_open_hub() {
    let Some(browser) = Browser::start(1024, 768).await else {
        return;
    };
    let (origin, front_end) = serve_front_end().await;
    // An open hub on loopback: any page the user visits can make the browser post to
    // it without a preflight. The hub refuses each (a foreign origin, a body not typed
    // as JSON), and nothing is stored.
    let open = TestHub::open(StoreKind::Sqlite).await;
    let target = open.create_named("target").await;
    browser
        .goto(&format!(
            "{origin}/attack?hub={}&run={}",
            open.url, target.id
        ))
        .await;
    browser
        .wait(
            "the page's requests to settle",
            "document.getElementById('done').textContent !== ''",
        )
        .await;
    let (_, list) = open.call(Method::GET, "/v1/runs", None, None).await;
    let ids: Vec<&str> = list["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(ids, ["target"], "no run planted: {list}");
    assert!(
        open.all_events(&target).await.is_empty(),
        "no event planted"
    );
    assert_eq!(
        open.state(&target).await["cancel_requested"],
        false,
        "no cancel"
    );
    front_end.abort();
}
