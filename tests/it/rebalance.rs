//! A group member whose sink worker is held still (`hold_worker`) while its partition is
//! taken away, committed further by another member, and given back.

use std::path::Path;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use crate::helpers::*;
use crate::kafka::{assert_once, spawn_run, spawn_with, wait_log};

/// Events `first..first + n` (trace ids `t<i>`) with `host`, into `partition`.
fn produce_host(bootstrap: &str, topic: &str, partition: i32, first: usize, n: usize, host: &str) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    for i in first..first + n {
        let payload = format!(
            "{{\"ts\":\"2024-05-01T00:00:00Z\",\"host\":\"{host}\",\"status\":200,\"trace_id\":\"t{i}\"}}"
        );
        let mut record = BaseRecord::<(), [u8]>::to(topic)
            .partition(partition)
            .payload(payload.as_bytes());
        while let Err((_, r)) = producer.send(record) {
            record = r;
            producer.poll(Duration::from_millis(50));
        }
    }
    producer.flush(Duration::from_secs(60)).unwrap();
}

/// A live job of one group in `dir`, written to `name`: files by host, two files open at a
/// time, revocations that wait 1 s, and `idle` before an idle file commits.
fn job(dir: &Path, name: &str, bootstrap: &str, topic: &str, idle: &str) -> std::path::PathBuf {
    let text = format!(
        r#"
[job]
name = "held"
state_dir = "state-{name}"
stop_deadline = "1s"
[source]
kind = "kafka"
brokers = {bootstrap:?}
topics = [{topic:?}]
chunk_bytes = "16KiB"
[source.options]
"fetch.wait.max.ms" = "10"
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "500"
[repo]
schema = {:?}
[sink]
url = "out/"
workers = 1
max_open_files = 2
[sink.partition]
template = "{{host}}/"
[sink.rotation]
max_rows = 100000
idle = {idle:?}
"#,
        schema("nginx_access").display().to_string()
    );
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(&p, text).unwrap();
    p
}

/// Member A writes records 0..100 of each of two partitions into open files, and its worker
/// is then held still (at the top of its loop, before it looks for revocations). B joins and takes one partition (A's revocation gives up after its
/// deadline, the file still open), commits its 0..100 and leaves; A gets the partition back
/// at 100. A's worker goes on with records 100..200 of both partitions (the same host
/// folder), then 200..300 of the moved one in another folder, past the cap of two open
/// files. Every record must land once. Before, A appended the moved partition's 100..200 to
/// its file of the earlier registration, which the commit for the cap then refused and
/// dropped, and the new file started at 200: records 100..200 were lost while the checkpoint
/// moved past them.
#[test]
fn a_worker_held_across_a_revocation_and_reassignment_loses_nothing() {
    let topic = "held";
    let c = MockCluster::new(1).unwrap();
    c.create_topic(topic, 2, 1).unwrap();
    let bootstrap = c.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let hold = dir.path().join("hold");
    let fault = format!("hold_worker:@{}", hold.display());
    let (loga, logb) = (dir.path().join("a.log"), dir.path().join("b.log"));
    let a = KillOnDrop::new(spawn_with(
        "run",
        &job(dir.path(), "a", &bootstrap, topic, "10m"),
        &loga,
        &[("SLUICE_FAULT", &fault)],
    ));
    // Trace ids: partition p's record i is `t<p * 1000 + i>`.
    for p in 0..2 {
        produce_host(&bootstrap, topic, p, p as usize * 1000, 100, "a");
    }
    let reach = |p: i32, n: u64| format!("open files of partition {p} reach offset {n}");
    for p in 0..2 {
        let text = wait_log(&loga, &reach(p, 100), 1, 60);
        assert!(text.contains(&reach(p, 100)), "{text}");
    }
    std::fs::write(&hold, b"").unwrap();
    let text = wait_log(&loga, "SLUICE_FAULT: holding at hold_worker", 1, 60);
    assert!(text.contains("holding at hold_worker"), "{text}");

    let b = spawn_run(&job(dir.path(), "b", &bootstrap, topic, "1s"), &logb);
    let text = wait_log(&logb, "committed", 1, 90);
    assert!(text.contains("committed"), "B never committed:\n{text}");
    let moved: i32 = if text.contains("partition=held-0") {
        0
    } else {
        1
    };
    let status = b.stop("the second member to stop", 60);
    assert!(status.success());
    let text = wait_log(&loga, "partitions assigned", 2, 60);
    assert_eq!(
        text.matches("partitions assigned").count(),
        2,
        "A never got the partition back:\n{text}"
    );

    for p in 0..2 {
        produce_host(&bootstrap, topic, p, p as usize * 1000 + 100, 100, "a");
    }
    std::fs::remove_file(&hold).unwrap();
    for p in 0..2 {
        let text = wait_log(&loga, &reach(p, 200), 1, 60);
        assert!(text.contains(&reach(p, 200)), "{text}");
    }
    produce_host(
        &bootstrap,
        topic,
        moved,
        moved as usize * 1000 + 200,
        100,
        "b",
    );
    let text = wait_log(&loga, &reach(moved, 300), 1, 60);
    assert!(text.contains(&reach(moved, 300)), "{text}");
    assert!(a.stop("the first member to stop", 60).success());
    let text = std::fs::read_to_string(&loga).unwrap();
    assert!(
        text.contains("files opened before the partition was registered again are aborted"),
        "{text}"
    );
    assert_once(&out, 500);
}
