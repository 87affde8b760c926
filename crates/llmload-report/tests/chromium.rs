//! The HTML report in headless Chromium (Debian's `chromium`, installed by .ci/run): the page
//! loads with no console message and no network request, and every chart has a rendered
//! series. Skipped, with a printed notice, when /usr/bin/chromium is missing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{data, temp_dir};

const CHROMIUM: &str = "/usr/bin/chromium";

struct Loaded {
    dom: String,
    console: Vec<String>,
    page_requests: Vec<String>,
}

fn chromium_available() -> bool {
    if Path::new(CHROMIUM).exists() {
        return true;
    }
    eprintln!(
        "NOTICE: {CHROMIUM} not found: skipping the headless Chromium test (apt-get install -y chromium)"
    );
    false
}

/// Loads `page` in headless Chromium; returns the DOM after load, console lines, and the URLs
/// of network requests made on behalf of the page (from Chromium's net log).
fn load(page: &Path, work: &Path) -> Loaded {
    let netlog = work.join("netlog.json");
    let profile = work.join("profile");
    let stdout = std::fs::File::create(work.join("dom.html")).unwrap();
    let stderr = std::fs::File::create(work.join("stderr.txt")).unwrap();
    let mut child = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            // Hermetic: no name resolves, whatever the browser tries on its own.
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--log-net-log={}", netlog.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .expect("start chromium");
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish in 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let err = std::fs::read_to_string(work.join("stderr.txt")).unwrap_or_default();
    assert!(status.success(), "chromium failed: {status}\n{err}");
    let console = err
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_string)
        .collect();
    let log: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&netlog).expect("net log written"))
            .expect("net log is JSON");
    let mut page_requests = Vec::new();
    for e in log["events"].as_array().into_iter().flatten() {
        let p = &e["params"];
        // Requests in the page's context carry its (file://) network isolation key; the
        // browser's own background requests carry other keys.
        if let (Some(url), Some(nik)) = (p["url"].as_str(), p["network_isolation_key"].as_str())
            && nik.contains("file://")
            && !page_requests.iter().any(|u| u == url)
        {
            page_requests.push(url.to_string());
        }
    }
    Loaded {
        dom: std::fs::read_to_string(work.join("dom.html")).unwrap(),
        console,
        page_requests,
    }
}

fn charts(dom: &str) -> Vec<&str> {
    dom.split("<svg class=\"chart\"")
        .skip(1)
        .map(|s| &s[..s.find("</svg>").expect("closed svg")])
        .collect()
}

fn rendered_report(dir: &Path) -> PathBuf {
    for f in ["results.json", "requests.jsonl"] {
        std::fs::copy(data(&format!("sweep/{f}")), dir.join(f)).unwrap();
    }
    let written = llmload_report::render_default(dir).unwrap();
    written[0].clone()
}

#[test]
fn report_loads_offline_without_console_errors_and_draws_every_chart() {
    if !chromium_available() {
        return;
    }
    let work = temp_dir("chromium");
    let page = rendered_report(&work);
    let source = std::fs::read_to_string(&page).unwrap();
    let loaded = load(&page, &work);
    assert!(loaded.console.is_empty(), "console: {:?}", loaded.console);
    assert!(
        loaded.page_requests.is_empty(),
        "network requests: {:?}",
        loaded.page_requests
    );
    let cs = charts(&loaded.dom);
    assert_eq!(cs.len(), charts(&source).len());
    assert!(cs.len() >= 6 + 5, "{} charts", cs.len());
    for c in cs {
        let paths: Vec<&str> = c
            .split("<path ")
            .skip(1)
            .filter(|p| p.contains("class=\"series\""))
            .filter_map(|p| p.split(" d=\"").nth(1))
            .map(|d| &d[..d.find('"').unwrap()])
            .collect();
        assert!(
            paths.iter().any(|d| d.starts_with('M') && d.contains(' ')),
            "no rendered series in chart {}",
            &c[..c.len().min(120)]
        );
    }
    assert!(
        loaded
            .dom
            .contains("Maximum sustainable load under the SLA")
    );
    std::fs::remove_dir_all(&work).unwrap();
}

/// The checks above can fail: a page with a remote image and a console message is caught.
#[test]
fn the_checks_catch_network_requests_and_console_messages() {
    if !chromium_available() {
        return;
    }
    let work = temp_dir("chromium-ctl");
    let page = work.join("bad.html");
    std::fs::write(
        &page,
        "<!DOCTYPE html><html><body><img src=\"http://127.0.0.1:9/x.png\">\
<script>console.error('boom')</script></body></html>",
    )
    .unwrap();
    let loaded = load(&page, &work);
    assert!(
        loaded.console.iter().any(|l| l.contains("boom")),
        "{:?}",
        loaded.console
    );
    assert!(
        loaded
            .page_requests
            .iter()
            .any(|u| u.contains("127.0.0.1:9")),
        "{:?}",
        loaded.page_requests
    );
    std::fs::remove_dir_all(&work).unwrap();
}
