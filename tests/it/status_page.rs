//! The status page (`GET /` on the admin listener) in a real browser: headless Chromium loads
//! it from a live Kafka job, its script reads `/v1/status` and draws the page, and what it
//! shows (rows written, each partition's checkpoint and committed offset, dead letters by
//! reason) is what the API says. A screenshot is kept under the test's target folder.

use std::path::PathBuf;
use std::process::Command;

use crate::admin::{http, metric_sum};
use crate::helpers::*;

/// The browser: `scripts/test.sh` installs Debian's `chromium`; without it the test says SKIP
/// (under CI it fails).
pub(crate) fn chromium() -> Option<PathBuf> {
    let found = ["chromium", "chromium-browser"].iter().find_map(|name| {
        let ok = Command::new(name).arg("--version").output().ok()?;
        ok.status.success().then(|| PathBuf::from(name))
    });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but chromium is not installed: the status page test needs it"
        );
        eprintln!("SKIP: the status page test needs chromium (scripts/test.sh installs it)");
    }
    found
}

/// Chromium, headless, on `url` with `args`: the page's scripts run for a few seconds of
/// virtual time first.
pub(crate) fn browse(browser: &PathBuf, url: &str, args: &[&str]) -> std::process::Output {
    let profile = tempfile::tempdir().unwrap();
    Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1280,1100",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .output()
        .unwrap()
}

#[test]
fn the_status_page_shows_what_the_api_says_in_a_real_browser() {
    let Some(browser) = chromium() else { return };
    let n = 2000;
    let job = crate::admin::observed("shown", n);
    let (addr, bad) = (job.addr.clone(), job.bad);
    // Every record committed, dead letters included (they commit with the rows).
    wait_until("every record and dead letter committed", 30, || {
        let (_, m) = http(&addr, "GET", "/metrics", None);
        metric_sum(&m, "sluice_rows_out_total") == n as f64
            && metric_sum(&m, "sluice_dead_letters_total") == bad as f64
    });
    let (code, tasks) = http(&addr, "GET", "/v1/tasks", None);
    assert_eq!(code, 200, "{tasks}");
    let tasks: serde_json::Value = serde_json::from_str(&tasks).unwrap();
    let partitions = tasks[0]["partitions"].as_array().unwrap().clone();
    assert_eq!(partitions.len(), 4, "{tasks}");

    let url = format!("http://{addr}/");
    let out = browse(&browser, &url, &["--dump-dom"]);
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains("data-loaded=\"1\""),
        "the page's script did not draw it:\n{dom}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dom.contains("data-state=\"running\""), "{dom}");
    assert!(
        dom.contains(&format!("data-total=\"rows_out\">{n}<")),
        "rows written: {dom}"
    );
    assert!(
        dom.contains(&format!(
            "<tr data-reason=\"malformed\"><td>malformed</td><td>{bad}</td></tr>"
        )),
        "dead letters by reason: {dom}"
    );
    for p in &partitions {
        let row = format!(
            "<tr data-partition=\"{0}\">\n      <td>{0}</td><td class=\"seq\">{1}</td>\n      \
             <td class=\"offset\">{2}</td>",
            p["partition"].as_str().unwrap(),
            p["checkpoint_seq"],
            p["committed_offset"]
        );
        assert!(dom.contains(&row), "{row} not on the page: {dom}");
    }
    for chart in ["records read/s", "rows written/s", "lag", "channel"] {
        assert!(
            dom.contains(&format!("<div class=\"chart\" data-chart=\"{chart}\">")),
            "no {chart} chart: {dom}"
        );
    }

    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    let out = browse(
        &browser,
        &url,
        &[&format!("--screenshot={}", shot.display())],
    );
    let png = std::fs::read(&shot).unwrap_or_else(|e| {
        panic!(
            "no screenshot at {}: {e}\n{}",
            shot.display(),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{}",
        png.len()
    );
    eprintln!("status page screenshot: {}", shot.display());
    assert!(job.run.stop("the run to stop", 60).success());
}
