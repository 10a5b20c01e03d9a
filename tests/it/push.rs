//! The push source over real HTTP: concurrent pushers against a small channel held full (503s,
//! all or nothing), limits and errors, a graceful restart with `memory` durability, kill -9
//! under push load with the WAL, and a torn WAL tail at start.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::admin::{admin_addr, http, metric_sum};
use crate::helpers::*;
use crate::kafka::{spawn_run, spawn_with, wait_for, wait_log};

#[path = "../../benches/common/http_client.rs"]
pub(crate) mod http_client;
use http_client::Client;

/// Pushes `rows` events with trace ids `<tag>-<i>` in one request; asserts it was acknowledged.
pub(crate) fn push_acked(addr: &str, tag: &str, rows: usize) {
    let mut client = Client::new(addr);
    let answer = client.post("/v1/repos/nginx_access/data", "", &events(tag, rows));
    assert!(matches!(answer, Ok((200, _, _))), "{answer:?}");
}

/// `rows` nginx_access events with trace ids `<tag>-<i>`.
pub(crate) fn events(tag: &str, rows: usize) -> Vec<u8> {
    let mut out = String::new();
    for i in 0..rows {
        out.push_str(&format!(
            "{{\"ts\":\"2024-05-01T10:{:02}:00Z\",\"host\":\"api.example.com\",\"method\":\"GET\",\"path\":\"/p/{i}\",\"status\":200,\"bytes\":{i},\"latency_ms\":1.5,\"client_ip\":\"10.0.0.1\",\"user_agent\":\"t\",\"region\":\"eu-west-1\",\"user_id\":null,\"cache_hit\":false,\"trace_id\":\"{tag}-{i}\"}}\n",
            i % 60
        ));
    }
    out.into_bytes()
}

pub(crate) fn push_job(dir: &Path, durability: &str, extra_source: &str, extra: &str) -> PathBuf {
    let job = dir.join("job.toml");
    std::fs::write(
        &job,
        format!(
            r#"
[job]
name = "push-test"
state_dir = "state"
stop_deadline = "20s"

[source]
kind = "push"
durability = "{durability}"
{extra_source}

[repo]
schema = "{schema}"

[sink]
url = "file://out"
format = "parquet"
workers = 2

[sink.rotation]
max_rows = 5000
idle = "1s"

[admin]
listen = "127.0.0.1:0"
{extra}
"#,
            schema = schema("nginx_access").display()
        ),
    )
    .unwrap();
    job
}

/// A second process of the job in `job_a` (its own state folder, `state-b`): `job-b.toml`
/// beside it.
pub(crate) fn second_process(job_a: &Path) -> PathBuf {
    let job_b = job_a.with_file_name("job-b.toml");
    let text = std::fs::read_to_string(job_a)
        .unwrap()
        .replace("state_dir = \"state\"", "state_dir = \"state-b\"");
    std::fs::write(&job_b, text).unwrap();
    job_b
}

/// Copies the state folder `state` in `dir` to `state-b`, as a volume snapshot would.
pub(crate) fn copy_state(dir: &Path) {
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(dir.join("state"))
        .arg(dir.join("state-b"))
        .status()
        .unwrap();
    assert!(copied.success());
}

/// The job with files that stay open (no rotation during the test).
pub(crate) fn long_files(job: PathBuf) -> PathBuf {
    let text = std::fs::read_to_string(&job)
        .unwrap()
        .replace("max_rows = 5000", "max_rows = 1000000")
        .replace("idle = \"1s\"", "idle = \"300s\"");
    std::fs::write(&job, text).unwrap();
    job
}

/// Starts a run logging to `log`; returns it and its listener's address once it runs.
pub(crate) fn start(job: &Path, log: &Path) -> (KillOnDrop, String) {
    start_with(job, log, &[])
}

/// [`start`] with extra environment (fault points). The run is killed when dropped (a
/// failing test leaves none behind).
pub(crate) fn start_with(job: &Path, log: &Path, env: &[(&str, &str)]) -> (KillOnDrop, String) {
    let child = KillOnDrop::new(crate::kafka::spawn_with("run", job, log, env));
    let addr = admin_addr(log);
    let text = wait_log(log, "to=Running", 1, 60);
    assert!(
        text.contains("to=Running"),
        "the run did not start:\n{text}"
    );
    (child, addr)
}

/// What the pushers learned: ids acknowledged (200), refused (503), unknown (no answer).
#[derive(Default)]
struct Outcomes {
    acked: Vec<String>,
    refused: Vec<String>,
    unknown: Vec<String>,
    retry_after: bool,
    /// Answers other than 200 and 503.
    errors: Vec<String>,
}

/// `clients` threads push requests of `rows` rows until `stop` is set or `requests` each.
fn pushers(
    addr: &str,
    tag: &str,
    clients: usize,
    requests: usize,
    rows: usize,
    stop: &Arc<AtomicBool>,
) -> Outcomes {
    let out = Arc::new(Mutex::new(Outcomes::default()));
    std::thread::scope(|s| {
        for c in 0..clients {
            let out = out.clone();
            let stop = stop.clone();
            let addr = addr.to_string();
            s.spawn(move || {
                let mut client = Client::new(&addr);
                for r in 0..requests {
                    if stop.load(Ordering::Acquire) {
                        break;
                    }
                    let id = format!("{tag}c{c}r{r}");
                    let body = events(&id, rows);
                    let ids = (0..rows).map(|i| format!("{id}-{i}"));
                    match client.post("/v1/repos/nginx_access/data", "", &body) {
                        Ok((200, _, b)) => {
                            assert!(b.contains(&format!("\"accepted\":{rows}")), "{b}");
                            out.lock().unwrap().acked.extend(ids);
                        }
                        Ok((503, h, _)) => {
                            let mut o = out.lock().unwrap();
                            o.refused.extend(ids);
                            o.retry_after |= h.contains_key("retry-after");
                        }
                        Ok((code, _, b)) => {
                            out.lock().unwrap().errors.push(format!("{code}: {b}"));
                            break;
                        }
                        Err(_) => {
                            out.lock().unwrap().unknown.extend(ids);
                            if stop.load(Ordering::Acquire) {
                                break;
                            }
                            std::thread::sleep(Duration::from_millis(20));
                        }
                    }
                }
            });
        }
    });
    Arc::try_unwrap(out).ok().unwrap().into_inner().unwrap()
}

fn stop_via_api(addr: &str, child: KillOnDrop) {
    let (code, body) = http(addr, "POST", "/v1/tasks/nginx_access/stop", None);
    assert_eq!(code, 200, "{body}");
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the run failed");
}

/// Every acknowledged id is in the output exactly once, no refused id is, nothing twice.
fn assert_acked_once(out: &Path, o: &Outcomes) {
    let seen = trace_ids(out);
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(twice.is_empty(), "duplicated rows: {twice:?}");
    let missing: Vec<_> = o
        .acked
        .iter()
        .filter(|id| !seen.contains_key(*id))
        .take(5)
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged rows missing: {missing:?} (of {})",
        o.acked.len()
    );
    let leaked: Vec<_> = o
        .refused
        .iter()
        .filter(|id| seen.contains_key(*id))
        .take(5)
        .collect();
    assert!(
        leaked.is_empty(),
        "rows of refused requests in the output: {leaked:?}"
    );
    let known: HashSet<&String> = o.acked.iter().chain(&o.unknown).collect();
    let foreign: Vec<_> = seen
        .keys()
        .filter(|id| !known.contains(id))
        .take(5)
        .collect();
    assert!(foreign.is_empty(), "rows nobody pushed: {foreign:?}");
}

#[test]
fn pushers_get_503s_while_the_channel_is_full_and_every_acknowledged_row_lands_once() {
    let dir = tempfile::tempdir().unwrap();
    let job = push_job(
        dir.path(),
        "memory",
        "max_pending = \"256KiB\"\nmax_body = \"1MiB\"",
        "",
    );
    std::fs::write(
        &job,
        std::fs::read_to_string(&job).unwrap()
            + "\n[channel]\nmax_bytes = \"1MiB\"\nmax_batches = 8\nbatch_rows = 1000\n",
    )
    .unwrap();
    let (child, addr) = start(&job, &dir.path().join("run.log"));

    // Limits and errors first: each a JSON error, and nothing enters.
    let mut c = Client::new(&addr);
    let big = events("big", 6000);
    let (code, _, b) = c.post("/v1/repos/nginx_access/data", "", &big).unwrap();
    assert_eq!(code, 413, "{b}");
    assert!(b.contains("max_body"), "{b}");
    let (code, _, b) = c.post("/v1/repos/other/data", "", b"{}").unwrap();
    assert_eq!((code, b.contains("no repo `other`")), (404, true), "{b}");
    let (code, _, b) = c
        .post(
            "/v1/repos/nginx_access/data",
            "Content-Encoding: gzip\r\n",
            b"plain",
        )
        .unwrap();
    assert_eq!((code, b.contains("gzip")), (400, true), "{b}");
    // A coding in a second header counts (gzip here: the plain body is refused as not
    // gzip, not read as text); two codings are refused.
    let (code, _, b) = c
        .post(
            "/v1/repos/nginx_access/data",
            "Content-Encoding: identity\r\nContent-Encoding: gzip\r\n",
            b"{}\n",
        )
        .unwrap();
    assert_eq!((code, b.contains("not valid gzip")), (400, true), "{b}");
    let (code, _, b) = c
        .post(
            "/v1/repos/nginx_access/data",
            "Content-Encoding: gzip\r\nContent-Encoding: br\r\n",
            b"{}\n",
        )
        .unwrap();
    assert_eq!((code, b.contains("gzip, br")), (415, true), "{b}");
    let (code, _, b) = c
        .post("/v1/repos/nginx_access/data", "", b"{\"ts\":1}\nnot json\n")
        .unwrap();
    assert_eq!(code, 200, "{b}");
    assert!(
        b.contains("\"accepted\":0") && b.contains("\"dead_letters\":2"),
        "{b}"
    );

    // 16 pushers; the task is paused (nothing taken or committed) for 2 s in the middle.
    let stop = Arc::new(AtomicBool::new(false));
    let outcomes = std::thread::scope(|s| {
        let pushing = s.spawn(|| pushers(&addr, "a", 16, 40, 200, &stop));
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(
            http(&addr, "POST", "/v1/tasks/nginx_access/pause", None).0,
            200
        );
        std::thread::sleep(Duration::from_secs(2));
        assert_eq!(
            http(&addr, "POST", "/v1/tasks/nginx_access/resume", None).0,
            200
        );
        pushing.join().unwrap()
    });
    assert!(!outcomes.acked.is_empty(), "no push was acknowledged");
    assert!(
        !outcomes.refused.is_empty(),
        "the full channel refused nothing"
    );
    assert!(outcomes.retry_after, "a 503 without Retry-After");
    assert!(outcomes.unknown.is_empty(), "requests without an answer");
    wait_for(&dir.path().join("out"), outcomes.acked.len(), 60);
    let (_, m) = http(&addr, "GET", "/metrics", None);
    assert!(
        m.lines()
            .any(|l| l.starts_with("sluice_push_requests_total{") && l.contains("code=\"503\"")),
        "no 503 counted:\n{m}"
    );
    assert_eq!(
        metric_sum(&m, "sluice_push_rows_total"),
        outcomes.acked.len() as f64
    );
    // The two dead letters pushed first are committed, each under its reason class.
    assert!(
        m.lines()
            .any(|l| l.starts_with("sluice_dead_letters_total{")
                && l.contains("reason=\"malformed\"")),
        "no malformed dead letter counted:\n{m}"
    );
    assert_eq!(metric_sum(&m, "sluice_dead_letters_total"), 2.0);
    stop_via_api(&addr, child);
    assert_acked_once(&dir.path().join("out"), &outcomes);
}

#[test]
fn memory_pushes_survive_a_graceful_restart() {
    let dir = tempfile::tempdir().unwrap();
    // Files stay open: what is acknowledged is in the channel or open files at the stop.
    let job = long_files(push_job(dir.path(), "memory", "", ""));
    let (child, addr) = start(&job, &dir.path().join("run1.log"));
    let stop = Arc::new(AtomicBool::new(false));
    let first = pushers(&addr, "m", 4, 10, 300, &stop);
    assert_eq!(first.acked.len(), 12_000, "every push fits");
    sigterm(&child);
    assert!(child.wait_with_output().unwrap().status.success());
    // What was not committed by the stop is in the spill, restored by the next start.

    // The second run takes more; the first run's rows stay once.
    let (child, addr) = start(&job, &dir.path().join("run2.log"));
    let mut second = pushers(&addr, "n", 2, 5, 100, &stop);
    sigterm(&child);
    assert!(child.wait_with_output().unwrap().status.success());
    second.acked.extend(first.acked);
    assert_acked_once(&dir.path().join("out"), &second);
}

/// A memory log does not hold the records of a spill its start restored (they were
/// acknowledged by the process before): the spill stays until they are committed (a crash
/// restores them again), and a commit of them that fails replays them from what was
/// restored, not from the log, which never had them.
#[test]
fn a_restored_memory_spill_survives_a_crash_and_a_commit_that_fails() {
    let dir = tempfile::tempdir().unwrap();
    let job = push_job(dir.path(), "memory", "", "");
    let (child, addr) = start(&job, &dir.path().join("run1.log"));
    // Paused: the workers take nothing more (at most the take each may be in, up to 8
    // requests), so most of the 20 requests are spilled at the stop.
    assert_eq!(
        http(&addr, "POST", "/v1/tasks/nginx_access/pause", None).0,
        200
    );
    let mut acked = Outcomes::default();
    for i in 0..20 {
        let tag = format!("s{i}");
        push_acked(&addr, &tag, 100);
        acked.acked.extend((0..100).map(|r| format!("{tag}-{r}")));
    }
    sigterm(&child);
    assert!(child.wait_with_output().unwrap().status.success());
    assert!(
        dir.path().join("state/spill/manifest.json").exists(),
        "the stop spilled nothing:\n{}",
        std::fs::read_to_string(dir.path().join("run1.log")).unwrap()
    );

    // The first start after it dies at its first commit, claimed and not sealed.
    let log = dir.path().join("crash.log");
    let crash = spawn_with("run", &job, &log, &[("SLUICE_FAULT", "after_claim:1")]);
    let out = crash.wait_with_output().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !out.status.success() && text.contains("aborting at after_claim"),
        "the first commit did not crash:\n{text}"
    );

    // The next one's first commit (of restored rows) fails and replays.
    let log = dir.path().join("run2.log");
    let child = KillOnDrop::new(spawn_with(
        "run",
        &job,
        &log,
        &[("SLUICE_FAULT", "fail_commit:1")],
    ));
    let addr = admin_addr(&log);
    let text = wait_log(&log, "SLUICE_FAULT: failing commit 1", 1, 60);
    assert!(
        text.contains("failing commit 1"),
        "no commit failed:\n{text}"
    );
    wait_for(&dir.path().join("out"), acked.acked.len(), 60);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !text.contains("already released") && text.contains("replaying restored spill items"),
        "the replay did not come from the restored items:\n{text}"
    );
    stop_via_api(&addr, child);
    assert_acked_once(&dir.path().join("out"), &acked);
}

#[test]
fn wal_pushes_survive_kill_9_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let job = push_job(dir.path(), "wal", "wal_segment_bytes = \"256KiB\"", "");
    let mut all = Outcomes::default();
    for round in 0..10 {
        let log = dir.path().join(format!("run{round}.log"));
        let (mut child, addr) = start(&job, &log);
        let stop = Arc::new(AtomicBool::new(false));
        let o = std::thread::scope(|s| {
            let pushing = s.spawn(|| pushers(&addr, &format!("k{round}"), 4, 1000, 100, &stop));
            std::thread::sleep(Duration::from_millis(400 + 150 * round as u64));
            child.kill().unwrap();
            stop.store(true, Ordering::Release);
            pushing.join().unwrap()
        });
        child.wait().unwrap();
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(o.errors.is_empty(), "round {round}: {:?}\n{text}", o.errors);
        assert!(!o.acked.is_empty(), "round {round}: nothing acknowledged");
        all.acked.extend(o.acked);
        all.refused.extend(o.refused);
        all.unknown.extend(o.unknown);
    }
    let (child, addr) = start(&job, &dir.path().join("final.log"));
    wait_for(&dir.path().join("out"), all.acked.len(), 120);
    stop_via_api(&addr, child);
    assert_acked_once(&dir.path().join("out"), &all);
    // Committed segments were released: what is left is about the open one.
    let segments = std::fs::read_dir(dir.path().join("state/wal"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "wal")
        })
        .count();
    assert!(
        segments <= 3,
        "{segments} WAL segments left after everything was committed"
    );
}

#[test]
fn a_torn_wal_tail_is_cut_and_reported_and_the_rest_replays() {
    let dir = tempfile::tempdir().unwrap();
    let job = long_files(push_job(dir.path(), "wal", "", ""));
    let (mut child, addr) = start(&job, &dir.path().join("run1.log"));
    let stop = Arc::new(AtomicBool::new(false));
    let o = pushers(&addr, "t", 2, 10, 100, &stop);
    assert_eq!(o.acked.len(), 2000);
    child.kill().unwrap();
    child.wait().unwrap();
    // A crash in the middle of an append: half a record at the end of the last segment.
    let wal = dir.path().join("state/wal");
    let mut segs: Vec<_> = std::fs::read_dir(&wal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    segs.sort();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(segs.last().unwrap())
        .unwrap();
    f.write_all(&[200, 1, 0, 0, 9, 9, 9, 9, 1, 2, 3]).unwrap();
    drop(f);
    let log = dir.path().join("run2.log");
    let (child, addr) = start(&job, &log);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("torn tail"),
        "the damage was not reported:\n{text}"
    );
    assert!(text.contains("dropped_bytes=11"), "{text}");
    stop_via_api(&addr, child);
    assert_acked_once(&dir.path().join("out"), &o);
}

#[test]
fn a_push_job_needs_the_admin_listener_and_a_known_durability() {
    let dir = tempfile::tempdir().unwrap();
    let job = push_job(dir.path(), "disk", "", "");
    let text = std::fs::read_to_string(&job).unwrap();
    let text = text.split("[admin]").next().unwrap().to_string();
    std::fs::write(&job, text).unwrap();
    let out = sluice(&["validate", job.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("source.durability: `disk` (expected wal or memory)"),
        "{err}"
    );
    assert!(
        err.contains("admin.listen: a push source takes its data on the admin listener"),
        "{err}"
    );
}

#[test]
fn csv_pushes_decode_per_the_repo_input_kind_and_refuse_a_torn_quote() {
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("pairs.toml");
    std::fs::write(
        &schema,
        "name = \"pairs\"\n[[fields]]\nname = \"trace_id\"\ntype = \"string\"\nnullable = false\n[[fields]]\nname = \"n\"\ntype = \"int64\"\n",
    )
    .unwrap();
    let job = push_job(dir.path(), "wal", "format = \"csv\"", "");
    let text = std::fs::read_to_string(&job).unwrap().replace(
        &crate::helpers::schema("nginx_access").display().to_string(),
        &schema.display().to_string(),
    );
    std::fs::write(&job, text).unwrap();
    let (child, addr) = start(&job, &dir.path().join("run.log"));
    let mut c = Client::new(&addr);
    let path = "/v1/repos/pairs/data";
    let (code, _, b) = c
        .post(path, "", b"a,1\n\"b, with comma\",2\nc,x\nd,4")
        .unwrap();
    assert_eq!(code, 200, "{b}");
    assert!(
        b.contains("\"accepted\":3") && b.contains("\"dead_letters\":1"),
        "{b}"
    );
    let (code, _, b) = c.post(path, "", b"e,5\n\"f,6\n").unwrap();
    assert_eq!(code, 400, "{b}");
    assert!(b.contains("quoted field"), "{b}");
    let (code, _, b) = c.post(path, "", b"g,7\n").unwrap();
    assert_eq!(code, 200, "{b}");
    // A line of spaces is a row in CSV (its first field); line ends alone are no records.
    let (code, _, b) = c.post(path, "", b"  \n").unwrap();
    assert_eq!(code, 200, "{b}");
    assert!(b.contains("\"accepted\":1"), "{b}");
    let (code, _, b) = c.post(path, "", b"\r\n\n").unwrap();
    assert_eq!(code, 400, "{b}");
    assert!(b.contains("holds no records"), "{b}");
    // A byte order mark at a body's start is not data, as at a file's (it began the first
    // row's first value; JSON's first record was a dead letter).
    let (code, _, b) = c.post(path, "", b"\xEF\xBB\xBFh,8\n").unwrap();
    assert_eq!(code, 200, "{b}");
    assert!(
        b.contains("\"accepted\":1") && b.contains("\"dead_letters\":0"),
        "{b}"
    );
    wait_for(&dir.path().join("out"), 6, 30);
    let (code, body) = http(&addr, "POST", "/v1/tasks/pairs/stop", None);
    assert_eq!(code, 200, "{body}");
    assert!(child.wait_with_output().unwrap().status.success());
    let mut ids: Vec<String> = trace_ids(&dir.path().join("out")).into_keys().collect();
    ids.sort();
    assert_eq!(ids, ["  ", "a", "b, with comma", "d", "g", "h"]);
}

#[test]
fn two_push_repos_share_the_listener_and_each_keeps_its_own_wal() {
    let dir = tempfile::tempdir().unwrap();
    let job = push_job(dir.path(), "wal", "", "");
    let text = std::fs::read_to_string(&job).unwrap()
        + "\n[[repos]]\nname = \"left\"\nsink.url = \"file://out-left\"\n\n[[repos]]\nname = \"right\"\nsink.url = \"file://out-right\"\n";
    std::fs::write(&job, text).unwrap();
    let log = dir.path().join("run.log");
    let child = spawn_run(&job, &log);
    let addr = admin_addr(&log);
    let text = wait_log(&log, "to=Running", 2, 60);
    assert_eq!(text.matches("to=Running").count(), 2, "{text}");
    let mut c = Client::new(&addr);
    for (repo, tag) in [("left", "l"), ("right", "r"), ("left", "l2")] {
        let (code, _, b) = c
            .post(&format!("/v1/repos/{repo}/data"), "", &events(tag, 100))
            .unwrap();
        assert_eq!(code, 200, "{b}");
    }
    let (code, _, b) = c.post("/v1/repos/push-test/data", "", b"{}\n").unwrap();
    assert_eq!(code, 404, "{b}");
    assert!(b.contains("it runs `left`, `right`"), "{b}");
    // One repo stopped: it takes no more pushes; the other does.
    let (code, body) = http(&addr, "POST", "/v1/tasks/left/stop", None);
    assert_eq!(code, 200, "{body}");
    // Pushes acknowledged while it stops still land (at the latest after a restart).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut late = 0;
    let refused = loop {
        let tag = format!("late{late}");
        let (code, _, b) = c.post("/v1/repos/left/data", "", &events(&tag, 1)).unwrap();
        if code != 200 || Instant::now() > deadline {
            break (code, b);
        }
        late += 1;
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(refused.0, 503, "{}", refused.1);
    let (code, _, b) = c
        .post("/v1/repos/right/data", "", &events("r2", 100))
        .unwrap();
    assert_eq!(code, 200, "{b}");
    wait_for(&dir.path().join("out-right"), 200, 30);
    crate::helpers::sigterm(&child);
    assert!(child.wait_with_output().unwrap().status.success());
    // A push acknowledged as the stop took hold can still be in the channel when the task
    // stops: it is spilled (or left in the WAL), not written, and lands at the next start.
    let log = dir.path().join("restart.log");
    let child = spawn_run(&job, &log);
    let text = wait_log(&log, "to=Running", 2, 60);
    assert_eq!(text.matches("to=Running").count(), 2, "{text}");
    wait_for(&dir.path().join("out-left"), 200 + late, 30);
    crate::helpers::sigterm(&child);
    assert!(child.wait_with_output().unwrap().status.success());
    let left = trace_ids(&dir.path().join("out-left"));
    let right = trace_ids(&dir.path().join("out-right"));
    assert_eq!(
        left.len(),
        200 + late,
        "left's rows and those acknowledged as it stopped"
    );
    assert!((0..late).all(|k| left.contains_key(&format!("late{k}-0"))));
    assert_eq!(right.len(), 200);
    assert!(left.values().chain(right.values()).all(|n| *n == 1));
    for repo in ["left", "right"] {
        assert!(
            dir.path().join("state").join(repo).join("wal").is_dir(),
            "{repo}'s WAL"
        );
    }
}

/// A WAL job stopped with everything committed, in a segment larger than `max_retained` (the
/// WAL releases whole segments): the next start counts room from its checkpoint, and takes
/// pushes. Before, the committed bytes still in the segment counted as retained, nothing was
/// left to read and commit, and every push got 503 until someone intervened.
#[test]
fn a_restart_counts_room_from_the_checkpoint_not_the_segments_start() {
    let dir = tempfile::tempdir().unwrap();
    let job = push_job(
        dir.path(),
        "wal",
        "wal_segment_bytes = \"4MiB\"\nmax_retained = \"256KiB\"",
        "",
    );
    let (child, addr) = start(&job, &dir.path().join("run1.log"));
    // 1,800 rows of about 240 bytes, pushed and committed (files close when idle) in three
    // rounds of 600 (145 KB), each under `max_retained`.
    let out = dir.path().join("out");
    for round in 0..3 {
        for i in 0..6 {
            push_acked(&addr, &format!("a{round}-{i}"), 100);
        }
        wait_for(&out, 600 * (round + 1), 60);
        assert_eq!(trace_ids(&out).len(), 600 * (round + 1), "rows committed");
    }
    stop_via_api(&addr, child);
    // 435 KB committed in one segment, short of the 4 MiB that releases it.
    let (child, addr) = start(&job, &dir.path().join("run2.log"));
    let mut client = Client::new(&addr);
    let answer = client.post("/v1/repos/nginx_access/data", "", &events("b", 100));
    assert!(
        matches!(answer, Ok((200, _, _))),
        "a push after the restart: {answer:?}"
    );
    wait_for(&out, 1900, 60);
    assert_eq!(trace_ids(&out).len(), 1900, "rows committed");
    stop_via_api(&addr, child);
}
