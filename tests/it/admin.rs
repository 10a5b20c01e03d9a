//! The admin listener during a live Kafka run: Prometheus metrics that match the output and
//! whose lag reaches 0, task listing behind a bearer token, pause (no commits) and resume, and
//! stop through the API; without a token, cross-site requests and open listeners refused.

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::helpers::*;
use crate::kafka::{cluster, job_with, produce, produce_events, spawn_run, wait_for, wait_log};
use crate::push::{push_job, start};

/// One HTTP/1.1 request; returns (status, body).
pub(crate) fn http(addr: &str, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

/// Sum of a metric's samples (lines starting with `name{`).
pub(crate) fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

/// The first repo's partitions not read (`not_read` in `GET /v1/tasks`).
pub(crate) fn not_read(addr: &str) -> Vec<serde_json::Value> {
    let (code, body) = http(addr, "GET", "/v1/tasks", None);
    assert_eq!(code, 200, "{body}");
    let tasks: serde_json::Value = serde_json::from_str(&body).unwrap();
    tasks[0]["not_read"].as_array().cloned().unwrap_or_default()
}

/// Waits until the first repo lists one partition not read; asserts it is `partition`, in
/// `state`, and returns it.
pub(crate) fn one_not_read(addr: &str, partition: &str, state: &str) -> serde_json::Value {
    wait_until(&format!("{partition} listed as not read"), 30, || {
        not_read(addr).len() == 1
    });
    let held = not_read(addr).remove(0);
    assert_eq!(held["partition"], partition, "{held}");
    assert_eq!(held["state"], state, "{held}");
    held
}

pub(crate) fn admin_addr(log: &Path) -> String {
    let text = wait_log(log, "admin API listening", 1, 30);
    logged_addr(log, "admin API listening").unwrap_or_else(|| panic!("no admin line:\n{text}"))
}

/// A live Kafka job on a mock cluster of its own, with an admin listener on a free port, after
/// `n` events (and the malformed messages `produce` adds) are in its files.
pub(crate) struct Observed {
    /// Kept alive for the run.
    pub _cluster: rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    pub dir: tempfile::TempDir,
    pub run: KillOnDrop,
    /// The admin listener's address.
    pub addr: String,
    /// Malformed messages among the events.
    pub bad: usize,
}

pub(crate) fn observed(topic: &str, n: usize) -> Observed {
    let c = cluster(topic);
    let bootstrap = c.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let job = job_with(dir.path(), &bootstrap, topic, "");
    let mut text = std::fs::read_to_string(&job).unwrap();
    text.push_str("\n[admin]\nlisten = \"127.0.0.1:0\"\n");
    std::fs::write(&job, text).unwrap();
    let log = dir.path().join("run.log");
    let run = spawn_run(&job, &log);
    let addr = admin_addr(&log);
    let bad = produce(&bootstrap, topic, n);
    wait_for(&dir.path().join("out"), n, 60);
    Observed {
        _cluster: c,
        dir,
        run,
        addr,
        bad,
    }
}

fn stop_via_api(addr: &str, child: KillOnDrop) -> std::process::Output {
    let (code, body) = http(addr, "POST", "/v1/tasks/nginx_access/stop", Some("s3cret"));
    assert_eq!(code, 200, "{body}");
    child.wait_with_output().unwrap()
}

#[test]
fn admin_api_serves_metrics_tasks_pause_resume_and_stop() {
    let topic = "observed";
    let c = cluster(topic);
    let bootstrap = c.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let job = job_with(dir.path(), &bootstrap, topic, "");
    let mut text = std::fs::read_to_string(&job).unwrap();
    text.push_str("\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"s3cret\"\n");
    std::fs::write(&job, text).unwrap();
    let log = dir.path().join("run.log");
    let child = spawn_run(&job, &log);
    let addr = admin_addr(&log);
    let outdir = dir.path().join("out");

    let n = 2000;
    let bad = produce(&bootstrap, topic, n);
    wait_for(&outdir, n, 60);
    assert_eq!(http(&addr, "GET", "/healthz", None).0, 200);
    assert_eq!(http(&addr, "GET", "/readyz", None).0, 200);

    // Metrics match the output, and lag reaches 0 once caught up.
    let deadline = Instant::now() + Duration::from_secs(30);
    let metrics = loop {
        let (code, m) = http(&addr, "GET", "/metrics", None);
        assert_eq!(code, 200);
        let lag_series = m
            .lines()
            .filter(|l| l.starts_with("sluice_consumer_lag{"))
            .count();
        if (lag_series == 4
            && metric_sum(&m, "sluice_consumer_lag") == 0.0
            && metric_sum(&m, "sluice_rows_out_total") == n as f64)
            || Instant::now() > deadline
        {
            break m;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(
        metric_sum(&metrics, "sluice_rows_out_total"),
        n as f64,
        "{metrics}"
    );
    assert_eq!(
        metric_sum(&metrics, "sluice_dead_letters_total"),
        bad as f64,
        "{metrics}"
    );
    assert_eq!(
        metric_sum(&metrics, "sluice_consumer_lag"),
        0.0,
        "{metrics}"
    );
    assert_eq!(
        metrics
            .lines()
            .filter(|l| l.starts_with("sluice_consumer_lag{"))
            .count(),
        4,
        "{metrics}"
    );
    assert!(metrics.contains(r#"sluice_task_state{repo="nginx_access",state="running"} 1"#));
    assert!(metric_sum(&metrics, "sluice_files_committed_total") >= 4.0);
    assert!(metric_sum(&metrics, "sluice_bytes_written_total") > 0.0);
    // The group's assignment (one member: one rebalance), timed; no rejoin.
    assert!(metric_sum(&metrics, "sluice_group_assignments_total") >= 1.0);
    assert_eq!(
        metric_sum(&metrics, "sluice_group_assignments_total"),
        metric_sum(&metrics, "sluice_group_assignment_seconds_count"),
        "{metrics}"
    );
    assert_eq!(metric_sum(&metrics, "sluice_group_rejoins_total"), 0.0);
    assert!(!metrics.contains("s3cret"));

    // The task listing needs the token.
    let (code, body) = http(&addr, "GET", "/v1/tasks", None);
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("Bearer"));
    let (code, body) = http(&addr, "GET", "/v1/tasks", Some("s3cret"));
    assert_eq!(code, 200, "{body}");
    let tasks: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(tasks[0]["state"], "running");
    assert_eq!(tasks[0]["partitions"].as_array().unwrap().len(), 4);
    // The scheme's name in any case (RFC 9110); it was refused unless spelled `Bearer`.
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /v1/tasks HTTP/1.1\r\nHost: {addr}\r\nAuthorization: bearer s3cret\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(
        http(&addr, "POST", "/v1/tasks/nope/pause", Some("s3cret")).0,
        404
    );

    // Paused: new data is not committed; resumed: it is.
    assert_eq!(
        http(
            &addr,
            "POST",
            "/v1/tasks/nginx_access/pause",
            Some("s3cret")
        )
        .0,
        200
    );
    // Shown as soon as it is answered (a scrape read the old value for a second or more).
    let (_, now) = http(&addr, "GET", "/metrics", None);
    assert!(
        now.contains("sluice_task_paused{repo=\"nginx_access\"} 1"),
        "{now}"
    );
    produce_events(&bootstrap, topic, n, 400, 4, None);
    // The pause shows in the metrics (alerts tell it from a stall by it), and the 400 records
    // are accounted for: read into the source (its positions passed them) before the pause
    // took hold, or waiting (lag), but not exported.
    let paused = |on: bool| {
        format!(
            "sluice_task_paused{{repo=\"nginx_access\"}} {}",
            u8::from(on)
        )
    };
    let mut last = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(last.contains(&paused(true))
        && metric_sum(&last, "sluice_consumer_position") + metric_sum(&last, "sluice_consumer_lag")
            == (n + bad + 400) as f64)
    {
        assert!(
            Instant::now() < deadline,
            "timed out after 60 s waiting for the pause in the metrics and all {} messages read or waiting: {}",
            n + bad + 400,
            last.lines()
                .filter(|l| l.starts_with("sluice_task_paused") || l.starts_with("sluice_consumer_"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::thread::sleep(Duration::from_millis(100));
        last = http(&addr, "GET", "/metrics", None).1;
    }

    // Stop through the API: a graceful stop, exit 0.
    let out = stop_via_api(&addr, child);
    assert!(out.status.success());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("to=Stopping"), "{text}");
    assert!(!text.contains("s3cret"), "the token must not be logged");
}

/// A member paused through the API gives partitions up in a rebalance while paused, is
/// resumed, and gets them back when the other member stops: it must read them. librdkafka
/// keeps an application's pause on a partition across its revocation, and resuming covered
/// only the partitions then assigned: the ones given back stayed paused for good.
#[test]
fn partitions_given_up_while_paused_and_given_back_later_are_read() {
    let topic = "paused-group";
    let c = cluster(topic);
    let bootstrap = c.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let job = job_with(
        dir.path(),
        &bootstrap,
        topic,
        "\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"",
    );
    let mut text = std::fs::read_to_string(&job).unwrap();
    text.push_str("\n[admin]\nlisten = \"127.0.0.1:0\"\n");
    std::fs::write(&job, text).unwrap();
    let out = dir.path().join("out");
    let (loga, logb) = (dir.path().join("a.log"), dir.path().join("b.log"));
    let spawn = |log: &Path| {
        KillOnDrop::new(
            std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
                .args(["run", job.to_str().unwrap()])
                .env("SLUICE_LOG", "info,sluice::source::kafka=debug")
                .stdout(std::process::Stdio::null())
                .stderr(std::fs::File::create(log).unwrap())
                .spawn()
                .unwrap(),
        )
    };
    let expect = |log: &Path, what: &str, times: usize| {
        let text = wait_log(log, what, times, 60);
        assert!(
            text.matches(what).count() >= times,
            "timed out waiting for {times} × {what:?}:\n{text}"
        );
    };
    let a = spawn(&loga);
    let addr = admin_addr(&loga);
    produce_events(&bootstrap, topic, 0, 400, 4, None);
    wait_for(&out, 400, 60);

    let task = "/v1/tasks/nginx_access";
    assert_eq!(http(&addr, "POST", &format!("{task}/pause"), None).0, 200);
    expect(&loga, "paused=true", 1);
    let b = spawn(&logb);
    expect(&logb, "partitions assigned", 1);
    expect(&loga, "partitions revoked", 1);
    assert_eq!(http(&addr, "POST", &format!("{task}/resume"), None).0, 200);
    expect(&loga, "paused=false", 1);
    let status = b.stop("the second member to stop", 60);
    assert!(status.success());
    expect(&loga, "partitions assigned", 2);

    produce_events(&bootstrap, topic, 400, 400, 4, None);
    wait_for(&out, 800, 60);
    crate::kafka::assert_once(&out, 800);
    assert!(a.stop("the first member to stop", 60).success());
}

/// Without a token, the API refuses what a browser sends on behalf of another site (a foreign
/// `Origin`, a rebound host name); a non-loopback listener without a token is refused at load.
#[test]
fn the_admin_api_refuses_cross_site_requests_and_open_listeners() {
    let dir = tempfile::tempdir().unwrap();
    let job = push_job(dir.path(), "wal", "", "");
    let (child, addr) = start(&job, &dir.path().join("run.log"));
    let raw = |headers: &str| {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        write!(
            s,
            "POST /v1/tasks/nginx_access/stop HTTP/1.1\r\n{headers}Content-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    let foreign = raw(&format!("Host: {addr}\r\nOrigin: https://evil.example\r\n"));
    assert!(foreign.starts_with("HTTP/1.1 403"), "{foreign}");
    let rebound = raw("Host: evil.example:9464\r\n");
    assert!(rebound.starts_with("HTTP/1.1 403"), "{rebound}");
    let (_, tasks) = http(&addr, "GET", "/v1/tasks", None);
    assert!(tasks.contains("\"running\""), "still running: {tasks}");
    sigterm(&child);
    assert!(child.wait_with_output().unwrap().status.success());

    let text = std::fs::read_to_string(&job)
        .unwrap()
        .replace("listen = \"127.0.0.1:0\"", "listen = \"0.0.0.0:0\"");
    std::fs::write(&job, &text).unwrap();
    let out = sluice(&["validate", job.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("admin.listen") && err.contains("admin.insecure"),
        "{err}"
    );
    std::fs::write(
        &job,
        text.replace("[admin]\n", "[admin]\ninsecure = true\n"),
    )
    .unwrap();
    sluice_ok(&["validate", job.to_str().unwrap()]);
}

/// A backfill of a job file with a fixed admin address, while the live job holds it (here, a
/// listener of the test's): the backfill listens on another port of the host, logged, and
/// runs. Before, it failed ("address in use"), and a backfill started first kept the live
/// job from starting until it ended.
#[test]
fn a_backfill_listens_beside_the_live_jobs_admin_address() {
    let topic = "beside";
    let c = cluster(topic);
    let bootstrap = c.bootstrap_servers();
    produce_events(&bootstrap, topic, 0, 100, 4, None);
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let job = job_with(dir.path(), &bootstrap, topic, "");
    let text = std::fs::read_to_string(&job).unwrap();
    std::fs::write(
        &job,
        format!("{text}\n[admin]\nlisten = \"127.0.0.1:{port}\"\n"),
    )
    .unwrap();
    let (status, log) = sluice_within(&["backfill", job.to_str().unwrap()], 60);
    assert!(status.success(), "{log}");
    let addr = logged_addr_in(&log);
    assert!(
        addr.starts_with("127.0.0.1:") && !addr.ends_with(&format!(":{port}")),
        "{log}"
    );
    assert_eq!(trace_ids(&dir.path().join("out")).len(), 100);
}

/// The address of the "admin API listening" line of `log`.
fn logged_addr_in(log: &str) -> String {
    let line = log
        .lines()
        .find(|l| l.contains("admin API listening"))
        .unwrap_or_else(|| panic!("no admin line:\n{log}"));
    line.split("addr=").nth(1).unwrap().trim().to_string()
}
