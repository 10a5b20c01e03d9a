//! What the metrics say while a destination refuses every commit: the records read and not
//! committed get older in `sluice_uncommitted_age_seconds`, every retry counts, and both
//! settle once the destination is back. (The feed and the workers are blocked meanwhile:
//! these gauges are measured when scraped.) And a Kafka job whose broker goes away says so in
//! `sluice_source_silent_seconds`, with lag and position unchanged.

use crate::admin::{http, metric_sum};
use crate::helpers::*;
use crate::push::{push_acked, push_job, start};

fn metrics(addr: &str) -> String {
    let (code, text) = http(addr, "GET", "/metrics", None);
    assert_eq!(code, 200, "{text}");
    text
}

/// The one sample of `name` (a family of one series), if there is one.
fn sample(text: &str, name: &str) -> Option<f64> {
    let found: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .collect();
    assert!(found.len() <= 1, "{found:?}");
    found
        .first()
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
}

#[test]
fn a_destination_refusing_commits_shows_in_the_age_of_what_is_not_committed() {
    let dir = tempfile::tempdir().unwrap();
    let job = push_job(dir.path(), "wal", "", "");
    // The admin listener takes the pushes too.
    let (_run, admin) = start(&job, &dir.path().join("run.log"));
    let age = "sluice_uncommitted_age_seconds";
    assert_eq!(sample(&metrics(&admin), age), None, "nothing read yet");

    // The destination folder becomes a file: every write under it fails.
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let away = dir.path().join("out.away");
    std::fs::rename(&out, &away).unwrap();
    std::fs::write(&out, b"not a folder").unwrap();
    push_acked(&admin, "a", 100);
    wait_until(
        &format!("{age} of at least 3 s and 3 retries in /metrics"),
        60,
        || {
            let m = metrics(&admin);
            sample(&m, age).is_some_and(|a| a >= 3.0)
                && metric_sum(&m, "sluice_sink_retries_total") >= 3.0
        },
    );
    let m = metrics(&admin);
    assert_eq!(metric_sum(&m, "sluice_rows_out_total"), 0.0, "{m}");

    // Back: the rows are committed and the age goes.
    std::fs::remove_file(&out).unwrap();
    std::fs::rename(&away, &out).unwrap();
    wait_until(&format!("100 rows out and no {age} series"), 90, || {
        let m = metrics(&admin);
        metric_sum(&m, "sluice_rows_out_total") == 100.0 && sample(&m, age).is_none()
    });
    assert_eq!(trace_ids(&out).len(), 100);
}
