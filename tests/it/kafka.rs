//! The Kafka source against librdkafka's own broker (MockCluster, in this test process,
//! speaking the wire protocol over TCP): backfill exactly-once, resume, kill -9 during a
//! backfill, a live run stopped by SIGTERM, malformed messages as dead letters with their
//! partition and offset, and offsets committed to the group. Also the helpers the other Kafka
//! tests use: producing, job files, waits.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::TopicPartitionList;

use crate::helpers::*;

pub(crate) const PARTITIONS: i32 = 4;
/// Group options for tests that kill or add members: a dead member is noticed in seconds.
pub(crate) const QUICK_GROUP: &str =
    "\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"";

/// Produces `n` events (trace ids `t<i>`) round-robin over the partitions, plus one malformed
/// message every 500.
pub(crate) fn produce(bootstrap: &str, topic: &str, n: usize) -> usize {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .create()
        .unwrap();
    let mut bad = 0;
    for i in 0..n {
        let p = (i % PARTITIONS as usize) as i32;
        let payload = format!(
            "{{\"ts\":\"2024-05-01T{:02}:{:02}:00Z\",\"host\":\"h{}\",\"status\":200,\"trace_id\":\"t{i}\"}}",
            (i / 60) % 24,
            i % 60,
            i % 3
        );
        send(&producer, topic, p, payload.as_bytes());
        if i % 500 == 0 {
            send(&producer, topic, p, b"{\"ts\": not json");
            bad += 1;
        }
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    bad
}

fn send(producer: &BaseProducer, topic: &str, p: i32, payload: &[u8]) {
    loop {
        match producer.send(
            BaseRecord::<(), [u8]>::to(topic)
                .partition(p)
                .payload(payload),
        ) {
            Ok(()) => return,
            Err((_, _)) => {
                producer.poll(Duration::from_millis(50));
            }
        }
    }
}

pub(crate) fn cluster(
    topic: &str,
) -> MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
    let c = MockCluster::new(1).unwrap();
    c.create_topic(topic, PARTITIONS, 1).unwrap();
    c
}

fn job(dir: &Path, bootstrap: &str, topic: &str) -> PathBuf {
    job_with(dir, bootstrap, topic, "")
}

/// The test job, with extra librdkafka options (`"key" = "value"` lines).
pub(crate) fn job_with(dir: &Path, bootstrap: &str, topic: &str, options: &str) -> PathBuf {
    job_full(dir, bootstrap, topic, options, &schema("nginx_access"))
}

/// The test job with extra librdkafka options and another schema.
pub(crate) fn job_full(
    dir: &Path,
    bootstrap: &str,
    topic: &str,
    options: &str,
    schema: &Path,
) -> PathBuf {
    let text = format!(
        r#"
[job]
name = "kafka-it"
state_dir = "state"
[source]
kind = "kafka"
brokers = {bootstrap:?}
topics = [{topic:?}]
chunk_bytes = "16KiB"
[source.options]
"fetch.wait.max.ms" = "10"
{options}
[repo]
schema = {:?}
[sink]
url = "out/"
[sink.rotation]
max_rows = 400
idle = "1s"
"#,
        schema.display().to_string()
    );
    let p = dir.join("job.toml");
    std::fs::write(&p, text).unwrap();
    p
}

pub(crate) fn assert_once(out: &Path, n: usize) {
    let c = trace_ids(out);
    assert!(c.values().all(|v| *v == 1), "duplicates in the output");
    assert_eq!(c.len(), n, "records missing from the output");
}

fn dead_letters(out: &Path) -> Vec<serde_json::Value> {
    dead_letters_of(out, "nginx_access")
}

pub(crate) fn dead_letters_of(out: &Path, repo: &str) -> Vec<serde_json::Value> {
    let dir = out.join("_dead_letters").join(repo);
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.file_name().unwrap().to_string_lossy().starts_with('.') {
            continue;
        }
        for line in std::fs::read_to_string(p).unwrap().lines() {
            v.push(serde_json::from_str(line).unwrap());
        }
    }
    v
}

#[test]
fn backfill_is_exactly_once_resumes_and_survives_kill_9() {
    let topic = "events";
    let c = cluster(topic);
    let bootstrap = c.bootstrap_servers();
    let n = 120_000;
    let bad = produce(&bootstrap, topic, n);
    let dir = tempfile::tempdir().unwrap();
    let job = job(dir.path(), &bootstrap, topic);
    let jobs = job.to_str().unwrap();

    // kill -9 during the backfill, again and again.
    let mut kills = 0;
    let mut seed = 0x9E3779B97F4A7C15u64;
    let deadline = Instant::now() + Duration::from_secs(120);
    while kills < 10 && Instant::now() < deadline {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["backfill", jobs])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(20 + seed % 150));
        if child.try_wait().unwrap().is_some() {
            break;
        }
        child.kill().unwrap();
        let _ = child.wait();
        kills += 1;
    }
    let out = sluice(&["backfill", jobs]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("kill -9 landed {kills} times");
    assert!(kills >= 5, "only {kills} kills landed");
    let outdir = dir.path().join("out");
    assert_once(&outdir, n);
    let dl = dead_letters(&outdir);
    assert_eq!(
        dl.len(),
        bad,
        "every malformed message is a dead letter, once"
    );
    for d in &dl {
        assert!(d["source"].as_str().unwrap().starts_with("events-"));
        assert!(d["offset"].as_u64().is_some());
        assert!(d["reason"].as_str().unwrap().contains("parsing"), "{d}");
    }

    // Resuming finds nothing new.
    let again = sluice_ok(&["backfill", jobs]);
    assert!(again.contains(" 0 rows"), "{again}");
    // Another range under the same name would resume from these checkpoints, not at its
    // --from: refused, naming both ranges. (Before, it ended at once with 0 rows, exit 0.)
    let other = sluice(&["backfill", jobs, "--to", "0=100,1=100"]);
    let said = String::from_utf8_lossy(&other.stderr);
    assert!(!other.status.success(), "{said}");
    assert!(
        said.contains("already ran")
            && said.contains("--to latest")
            && said.contains("--to events:0=100,events:1=100"),
        "{said}"
    );
    let list = sluice_ok(&["checkpoints", "list", jobs]);
    assert!(
        list.is_empty() || list.contains("no checkpoints"),
        "the live job has none: {list}"
    );
}

/// A topic whose name starts with `_` (Kafka allows it): the data files' names do not, since
/// Spark, Hive, Trino and pyarrow's datasets skip files named so. Every record is read once by
/// a reader that skips such names (before, it found none).
#[test]
fn a_topic_named_with_a_leading_underscore_gets_files_readers_see() {
    let topic = "_audit";
    let c = cluster(topic);
    let bootstrap = c.bootstrap_servers();
    let n = 3_000;
    let bad = produce(&bootstrap, topic, n);
    let dir = tempfile::tempdir().unwrap();
    let job = job(dir.path(), &bootstrap, topic);
    // Dead letters in a folder of their own: readers of it skip hidden names too.
    let mut text = std::fs::read_to_string(&job).unwrap();
    text.push_str("[dead_letters]\nurl = \"dl/\"\n");
    std::fs::write(&job, text).unwrap();
    sluice_ok(&["backfill", job.to_str().unwrap()]);
    let names = |root: &Path, ext: &str| -> Vec<String> {
        files_under(root, false)
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == ext))
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    };
    let out = dir.path().join("out");
    let data = names(&out, "parquet");
    assert!(!data.is_empty(), "no data files under {}", out.display());
    assert!(data.iter().all(|n| n.starts_with("%5Faudit-")), "{data:?}");
    assert_once(&out, n);
    let dl = dir.path().join("dl");
    let dead = names(&dl, "jsonl");
    assert!(
        !dead.is_empty(),
        "no dead-letter files under {}",
        dl.display()
    );
    assert!(dead.iter().all(|n| n.starts_with("%5Faudit-")), "{dead:?}");
    let lines: usize = files_under(&dl, false)
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap().lines().count())
        .sum();
    assert_eq!(lines, bad, "dead letters under {}", dl.display());
}

#[test]
fn a_live_run_exports_until_sigterm_and_commits_group_offsets() {
    let topic = "live";
    let c = cluster(topic);
    let bootstrap = c.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let job = job(dir.path(), &bootstrap, topic);
    let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", job.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Data arrives while the job runs.
    let n = 4000;
    let bad = produce(&bootstrap, topic, n);
    let outdir = dir.path().join("out");
    let deadline = Instant::now() + Duration::from_secs(60);
    while trace_ids(&outdir).len() < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    sigterm(&child);
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("to=Stopping"), "{log}");
    assert_once(&outdir, n);

    // The group sees the committed offsets (what lag tools read).
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "sluice-kafka-it")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .unwrap();
    let total: i64 = committed
        .elements()
        .iter()
        .map(|e| e.offset().to_raw().unwrap_or(0).max(0))
        .sum();
    assert_eq!(total as usize, n + bad, "group offsets cover every message");
}

#[test]
fn a_missing_topic_is_a_clear_error() {
    let c = cluster("present");
    let dir = tempfile::tempdir().unwrap();
    let job = job(dir.path(), &c.bootstrap_servers(), "absent");
    let o = sluice(&["backfill", job.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("absent"), "{err}");
}

#[test]
fn the_demo_exports_the_fixture_through_an_embedded_broker() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let stdout = sluice_ok(&["demo", "--out", out.to_str().unwrap()]);
    assert!(stdout.contains("2000 rows, 0 dead letters"), "{stdout}");
    assert!(stdout.contains("duckdb"), "{stdout}");
    assert_once(&out, 2000);
    // A second demo into the same folder is refused, not duplicated.
    let again = sluice(&["demo", "--out", out.to_str().unwrap()]);
    assert!(!again.status.success());
    assert_once(&out, 2000);
}

/// Starts `sluice run`, its log going to `log`.
pub(crate) fn spawn_run(job: &Path, log: &Path) -> KillOnDrop {
    KillOnDrop::new(spawn_with("run", job, log, &[]))
}

/// `sluice COMMAND JOB` with extra environment (fault points), its standard error in `log`.
pub(crate) fn spawn_with(
    command: &str,
    job: &Path,
    log: &Path,
    env: &[(&str, &str)],
) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([command, job.to_str().unwrap()])
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

pub(crate) fn wait_for(out: &Path, n: usize, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while trace_ids(out).len() < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until the log of `run` (`log`) says a partition was refused and holds each of
/// `expect`, with the run still running (a refused partition stops alone), then stops it:
/// it ends well. Returns the log.
pub(crate) fn refused_then_stopped(
    mut run: KillOnDrop,
    log: &Path,
    expect: &[&str],
    secs: u64,
) -> String {
    let read = || std::fs::read_to_string(log).unwrap_or_default();
    wait_until_showing(
        "a partition refused, its log naming why",
        secs,
        || {
            let text = read();
            text.contains("partition refused") && expect.iter().all(|e| text.contains(e))
        },
        || format!(" ({expect:?}):\n{}", read()),
    );
    assert!(
        run.child().try_wait().unwrap().is_none(),
        "the run ended:\n{}",
        read()
    );
    assert!(run.stop("the run to stop", 60).success(), "{}", read());
    read()
}

/// Waits until `log` contains `what` `times` times; returns the log.
pub(crate) fn wait_log(log: &Path, what: &str, times: usize, secs: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.matches(what).count() >= times || Instant::now() >= deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn two_processes_in_one_group_share_the_partitions_exactly_once() {
    let topic = "shared";
    let c = MockCluster::new(1).unwrap();
    c.create_topic(topic, 8, 1).unwrap();
    let bootstrap = c.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let job = job_with(dir.path(), &bootstrap, topic, QUICK_GROUP);
    let outdir = dir.path().join("out");
    let (loga, logb) = (dir.path().join("a.log"), dir.path().join("b.log"));
    let a = spawn_run(&job, &loga);
    let mut n = 3000;
    produce8(&bootstrap, topic, 0, n);
    wait_for(&outdir, 1, 60);
    // A second member joins while data flows: the cooperative rebalance moves partitions
    // from the first, which commits what it holds for them before letting go.
    let b = spawn_run(&job, &logb);
    let mut rounds = 0;
    while rounds < 40
        && !wait_log(&logb, "partitions assigned", 1, 0).contains("partitions assigned")
    {
        produce8(&bootstrap, topic, n, 500);
        n += 500;
        rounds += 1;
        std::thread::sleep(Duration::from_millis(500));
    }
    for _ in 0..4 {
        produce8(&bootstrap, topic, n, 1000);
        n += 1000;
        std::thread::sleep(Duration::from_millis(300));
    }
    wait_for(&outdir, n, 90);
    let lb = wait_log(&logb, "committed", 1, 30);
    sigterm(&a);
    sigterm(&b);
    assert!(a.wait_with_output().unwrap().status.success());
    assert!(b.wait_with_output().unwrap().status.success());
    let la = std::fs::read_to_string(&loga).unwrap();
    assert!(
        la.contains("partitions revoked"),
        "the first member gave some up:\n{la}"
    );
    assert!(
        lb.contains("partitions assigned") && lb.contains("committed"),
        "the second member got partitions and committed files:\n{lb}"
    );
    assert_once(&outdir, n);
    // Through the rebalances, both members read every message in batches from their own
    // queue: none came by `poll` on the queue that carries the rebalances.
    let lb = std::fs::read_to_string(&logb).unwrap();
    for log in [&la, &lb] {
        let (batched, polled) = read_counts(log);
        assert!(
            batched > 0 && polled == 0,
            "batched {batched}, polled {polled}:\n{log}"
        );
    }
}

/// The counts of a Kafka source's closing log line: messages read in batches, and by `poll`.
fn read_counts(log: &str) -> (u64, u64) {
    let line = log
        .lines()
        .find(|l| l.contains("consumer closed"))
        .expect("the consumer's closing line");
    let field = |key: &str| -> u64 {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {line}"))
    };
    (field("batched="), field("polled="))
}

/// Produces `n` well-formed events with trace ids `t<first>`.. over 8 partitions.
fn produce8(bootstrap: &str, topic: &str, first: usize, n: usize) {
    produce_events(bootstrap, topic, first, n, 8, None)
}

/// Produces `n` well-formed events with trace ids `t<first>`.. round-robin over `partitions`
/// partitions; with `t0`, event i has message timestamp `t0 + i` seconds.
pub(crate) fn produce_events(
    bootstrap: &str,
    topic: &str,
    first: usize,
    n: usize,
    partitions: i32,
    t0: Option<i64>,
) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .create()
        .unwrap();
    for i in first..first + n {
        let payload = format!(
            "{{\"ts\":\"2024-05-01T00:00:00Z\",\"host\":\"h\",\"status\":200,\"trace_id\":\"t{i}\"}}"
        );
        let mut record = BaseRecord::<(), [u8]>::to(topic)
            .partition((i % partitions as usize) as i32)
            .payload(payload.as_bytes());
        if let Some(t0) = t0 {
            record = record.timestamp(t0 + 1000 * i as i64);
        }
        while let Err((_, r)) = producer.send(record) {
            record = r;
            producer.poll(Duration::from_millis(50));
        }
    }
    producer.flush(Duration::from_secs(60)).unwrap();
}

#[test]
fn kill_9_during_a_live_run_again_and_again_stays_exactly_once() {
    let topic = "killed";
    let c = cluster(topic);
    let bootstrap = c.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let job = job_with(dir.path(), &bootstrap, topic, QUICK_GROUP);
    let outdir = dir.path().join("out");
    // Data keeps arriving while the job is killed and restarted.
    let total = 30_000;
    let feeder = {
        let bootstrap = bootstrap.clone();
        std::thread::spawn(move || {
            for k in 0..30 {
                produce_events(&bootstrap, topic, k * 1000, 1000, PARTITIONS, None);
                std::thread::sleep(Duration::from_millis(300));
            }
        })
    };
    let mut kills = 0;
    let mut seed = 0x2545F4914F6CDD1Du64;
    let deadline = Instant::now() + Duration::from_secs(240);
    while kills < 10 && Instant::now() < deadline {
        let log = dir.path().join(format!("run-{kills}.log"));
        let mut child = spawn_run(&job, &log);
        // Kill it once it owns partitions, at a random moment of its work.
        wait_log(&log, "partitions assigned", 1, 30);
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(100 + seed % 1500));
        if child.try_wait().unwrap().is_some() {
            panic!(
                "the run ended by itself: {}",
                std::fs::read_to_string(&log).unwrap()
            );
        }
        child.kill().unwrap();
        let _ = child.wait();
        kills += 1;
    }
    feeder.join().unwrap();
    assert!(kills >= 10, "only {kills} kills landed");
    let last = spawn_run(&job, &dir.path().join("last.log"));
    wait_for(&outdir, total, 120);
    sigterm(&last);
    assert!(last.wait_with_output().unwrap().status.success());
    assert_once(&outdir, total);
}
