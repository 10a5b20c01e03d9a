//! Several repos in one job file (`[[repos]]`): one task per repo. A repo whose destination is
//! down fails and is started again while the others keep committing; two repos reading the
//! same topic into the same folder do not overwrite each other's files; a repo stopped through
//! the admin API stops alone.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;

use crate::admin::{admin_addr, http, metric_sum};
use crate::helpers::*;
use crate::kafka::produce_events;

/// A job file with three repos over one broker: `alpha` and `mirror` read topic `alpha` into
/// the same folder (`mirror` through a stage), `beta` reads topic `beta` into an S3 endpoint
/// where nothing listens.
fn job(dir: &Path, bootstrap: &str, dead_port: u16) -> std::path::PathBuf {
    let text = format!(
        r#"
[job]
name = "multi"
state_dir = "state"
[source]
kind = "kafka"
brokers = {bootstrap:?}
chunk_bytes = "16KiB"
[source.options]
"fetch.wait.max.ms" = "10"
[repo]
schema = {schema:?}
[sink]
url = "out/"
[sink.rotation]
max_rows = 400
idle = "1s"
[admin]
listen = "127.0.0.1:0"

[[repos]]
name = "alpha"
source.topics = ["alpha"]

[[repos]]
name = "mirror"
source.topics = ["alpha"]
[[repos.repo.stages]]
filter = "status = 200"

[[repos]]
name = "beta"
source.topics = ["beta"]
sink.url = "s3://nowhere/beta/"
[repos.sink.storage]
endpoint = "http://127.0.0.1:{dead_port}"
allow_http = true
access_key_id = "k"
secret_access_key = "s"
connect_timeout_secs = 1
max_retries = 1
retry_timeout_secs = 1
"#,
        schema = schema("nginx_access").display().to_string()
    );
    let p = dir.join("job.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// A local port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// The task of `repo` in the `/v1/tasks` listing.
fn task(addr: &str, repo: &str) -> serde_json::Value {
    let (code, body) = http(addr, "GET", "/v1/tasks", None);
    assert_eq!(code, 200, "{body}");
    let list: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    list.into_iter()
        .find(|t| t["repo"] == repo)
        .unwrap_or_else(|| panic!("no task {repo} in {body}"))
}

/// Waits until `done` holds for `repo`'s task; returns the last listing of it.
fn wait_task(
    addr: &str,
    repo: &str,
    secs: u64,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let t = task(addr, repo);
        if done(&t) || Instant::now() > deadline {
            return t;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until every trace id below `n` is in `out` twice (once per repo reading `alpha`).
fn wait_twice(out: &Path, n: usize, secs: u64) -> std::collections::HashMap<String, usize> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let ids = trace_ids(out);
        if (ids.len() == n && ids.values().all(|c| *c == 2)) || Instant::now() > deadline {
            return ids;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn a_repo_whose_destination_is_down_stalls_no_other() {
    let c = MockCluster::new(1).unwrap();
    c.create_topic("alpha", 4, 1).unwrap();
    c.create_topic("beta", 4, 1).unwrap();
    let bootstrap = c.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let job = job(dir.path(), &bootstrap, closed_port());
    let out = dir.path().join("out");

    // validate checks every repo; the one whose destination is down says it could not look.
    let v = sluice(&["validate", job.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&v.stdout);
    assert!(
        v.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&v.stderr)
    );
    for r in ["alpha", "mirror", "beta"] {
        assert!(
            text.contains(&format!(
                "job `multi.{r}` is valid: repo `{r}` (schema `nginx_access`"
            )),
            "{text}"
        );
    }
    assert!(
        text.contains("the schema was not checked against the written files"),
        "{text}"
    );

    let log = dir.path().join("run.log");
    let stdout = dir.path().join("run.out");
    let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", job.to_str().unwrap()])
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let addr = admin_addr(&log);

    produce_events(&bootstrap, "beta", 0, 500, 4, None);
    produce_events(&bootstrap, "alpha", 0, 1000, 4, None);
    let ids = wait_twice(&out, 1000, 60);
    assert_eq!(ids.len(), 1000, "alpha and mirror export topic alpha");
    assert!(
        ids.values().all(|c| *c == 2),
        "each of them once, no file overwritten"
    );

    // beta fails at start (its S3 endpoint refuses connections) and is started again.
    let beta = wait_task(&addr, "beta", 60, |t| {
        t["state"] == "failed" && t["error"].is_string()
    });
    assert_eq!(beta["state"], "failed", "{beta}");
    assert!(beta["job"] == "multi.beta", "{beta}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric_sum(
        &http(&addr, "GET", "/metrics", None).1,
        "sluice_task_restarts_total",
    ) < 1.0
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(300));
    }
    let metrics = http(&addr, "GET", "/metrics", None).1;
    assert!(
        metrics.contains(r#"sluice_task_restarts_total{repo="beta"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"sluice_task_state{repo="alpha",state="running"} 1"#),
        "{metrics}"
    );
    assert_eq!(
        metrics.matches("# TYPE sluice_task_state gauge").count(),
        1,
        "one exposition for every repo"
    );
    let (code, body) = http(&addr, "GET", "/readyz", None);
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("beta is"), "{body}");
    // Each repo's own, for a load balancer in front of one.
    assert_eq!(http(&addr, "GET", "/readyz/alpha", None).0, 200);
    assert_eq!(http(&addr, "GET", "/readyz/beta", None).0, 503);
    assert_eq!(http(&addr, "GET", "/readyz/nope", None).0, 404);

    // alpha keeps committing while beta is down.
    produce_events(&bootstrap, "alpha", 1000, 1000, 4, None);
    let ids = wait_twice(&out, 2000, 60);
    assert_eq!(ids.len(), 2000);
    assert!(ids.values().all(|c| *c == 2));
    assert_ne!(task(&addr, "beta")["state"], "running");
    assert_eq!(task(&addr, "alpha")["state"], "running");

    // A stop through the API stops one repo; the others run on.
    let (code, body) = http(&addr, "POST", "/v1/tasks/mirror/stop", None);
    assert_eq!(code, 200, "{body}");
    let mirror = wait_task(&addr, "mirror", 30, |t| t["state"] == "stopped");
    assert_eq!(mirror["state"], "stopped", "{mirror}");
    produce_events(&bootstrap, "alpha", 2000, 200, 4, None);
    let deadline = Instant::now() + Duration::from_secs(60);
    while trace_ids(&out).len() < 2200 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(300));
    }
    let ids = trace_ids(&out);
    assert_eq!(ids.len(), 2200, "alpha runs on after mirror stopped");
    assert_eq!(task(&addr, "alpha")["state"], "running");
    // A repo stopped on purpose does not hold the process back from ready (beta does).
    let (_, body) = http(&addr, "GET", "/readyz", None);
    assert!(
        body.contains("beta is") && !body.contains("mirror"),
        "{body}"
    );

    sigterm(&child);
    let status = child.wait_with_output().unwrap().status;
    let summary = std::fs::read_to_string(&stdout).unwrap();
    assert!(
        !status.success(),
        "beta never ran: the run reports it\n{summary}"
    );
    assert!(
        summary.contains("repo alpha (job multi.alpha): Stopped"),
        "{summary}"
    );
    assert!(
        summary.contains("repo mirror (job multi.mirror): Stopped"),
        "{summary}"
    );
    assert!(
        summary.contains("repo beta (job multi.beta): failed"),
        "{summary}"
    );

    // Each repo has checkpoints of its own.
    let list = sluice_ok(&[
        "checkpoints",
        "list",
        job.to_str().unwrap(),
        "--repo",
        "alpha",
    ]);
    assert!(list.contains("alpha-0: seq"), "{list}");
    let err = sluice(&[
        "checkpoints",
        "list",
        job.to_str().unwrap(),
        "--repo",
        "gamma",
    ]);
    assert!(String::from_utf8_lossy(&err.stderr)
        .contains("--repo gamma: no such repo (the job file has alpha, mirror, beta)"));
    assert!(out.join("_sluice/multi.alpha").is_dir() && out.join("_sluice/multi.mirror").is_dir());
}

/// `--from-checkpoint N` names one repo's commit: with several repos and no `--repo` it is
/// refused. Before, every repo rolled back to its own commit N (deleting files readers may
/// have seen), and one with fewer commits failed at every restart, for good.
#[test]
fn a_roll_back_of_several_repos_without_repo_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let job = job(dir.path(), "127.0.0.1:9", closed_port());
    let job = job.to_str().unwrap();
    let (status, err) = sluice_within(&["run", job, "--from-checkpoint", "3"], 30);
    assert!(!status.success(), "{err}");
    assert!(
        err.contains("the job file has 3 repos") && err.contains("--repo"),
        "{err}"
    );
    let (status, err) = sluice_within(&["run", job, "--from-checkpoint", "3", "--dry-run"], 30);
    assert!(!status.success() && err.contains("--repo"), "{err}");
    assert!(!dir.path().join("out").exists(), "the refused run wrote");
}

/// Two Kafka repos in groups of their own; the job file is edited to merge them: repo `a`
/// removed, and `b` given `a`'s topic and group. `a`'s reload is refused (a repo gone from
/// the file runs on as it was), so `b`'s must be too: taken, it put both repos in one group,
/// where the assignor split `t1`'s partitions between two jobs' checkpoints, each exporting
/// again what the other wrote.
#[test]
fn a_repo_reloaded_into_the_group_another_repo_runs_in_is_refused() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("t1", 2, 1).unwrap();
    cluster.create_topic("t2", 1, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let text = |repos: &str| {
        format!(
            "[job]\nname = \"merge\"\nstate_dir = \"state\"\n[source]\nkind = \"kafka\"\nbrokers = {bootstrap:?}\n[repo]\nschema = {:?}\n[sink]\nurl = \"out/\"\n[admin]\nlisten = \"127.0.0.1:0\"\n{repos}",
            schema("nginx_access").display().to_string()
        )
    };
    let job = dir.path().join("job.toml");
    std::fs::write(
        &job,
        text("[[repos]]\nname = \"a\"\nsource = { topics = [\"t1\"], group = \"g-orders\" }\n[[repos]]\nname = \"b\"\nsource = { topics = [\"t2\"], group = \"g-audit\" }\n"),
    )
    .unwrap();
    let log = dir.path().join("run.log");
    let mut run = KillOnDrop::new(crate::kafka::spawn_with("run", &job, &log, &[]));
    let seen = crate::kafka::wait_log(&log, "partitions assigned", 2, 60);
    assert!(
        seen.matches("partitions assigned").count() >= 2,
        "waiting for both repos' assignments:\n{seen}"
    );
    std::fs::write(
        &job,
        text("[[repos]]\nname = \"b\"\nsource = { topics = [\"t1\", \"t2\"], group = \"g-orders\" }\n"),
    )
    .unwrap();
    assert!(Command::new("kill")
        .args(["-HUP", &run.child().id().to_string()])
        .status()
        .unwrap()
        .success());
    // One outcome per repo's reload check.
    let outcomes = |t: &str| {
        t.matches("SIGHUP: not reloaded").count()
            + t.matches("SIGHUP: the job file and schema check out")
                .count()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = String::new();
    while Instant::now() < deadline {
        seen = std::fs::read_to_string(&log).unwrap();
        if outcomes(&seen) >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        outcomes(&seen),
        2,
        "waiting for both repos' reload checks:\n{seen}"
    );
    assert!(
        !seen.contains("SIGHUP: the job file and schema check out"),
        "a reload was taken:\n{seen}"
    );
    assert!(
        seen.contains("is the group repo a runs in now"),
        "b's reload refused for a's group:\n{seen}"
    );
    assert!(
        run.child().try_wait().unwrap().is_none(),
        "the process ended"
    );
}
