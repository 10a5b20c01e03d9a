//! Record batches the Kafka client cannot read. A broker stores a producer's record batch as
//! it came, and librdkafka reports one it cannot decompress as an error at the batch's first
//! offset, then fetches the same batch again, for ever. Such a batch must become one dead
//! letter naming its offsets, and reading must go on after it: never a stuck partition (a
//! backfill that does not end) and never a silent skip.
//!
//! The batch is written by a Produce request made by hand (any producer can send one): a
//! batch that says gzip and holds bytes that are not (see `kafka_wire`).

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use crate::helpers::*;
use crate::kafka::{cluster, job_full, spawn_with};
use crate::kafka_wire::{commit_marker, produce_raw, record_batch, CONTROL, GZIP};

/// Appends to `partition` of `topic` one record batch of `count` records flagged as gzip whose
/// payload is not gzip (its CRC right, so only the codec fails).
fn produce_undecompressable(broker: &str, topic: &str, partition: i32, count: i32) {
    produce_with_codec(broker, topic, partition, count, GZIP);
}

/// The same, flagged with codec bits `codec` (5 to 7 name no codec Kafka defines).
fn produce_with_codec(broker: &str, topic: &str, partition: i32, count: i32, codec: i16) {
    let batch = record_batch(codec, count, -1, b"these bytes are not gzip at all");
    produce_raw(broker, topic, partition, &batch);
}

/// Appends to `partition` of `topic` one uncompressed record batch of 3 records whose bytes
/// are no records (its CRC right, so only the records fail to parse).
fn produce_unparsable(broker: &str, topic: &str, partition: i32) {
    let batch = record_batch(0, 3, -1, b"these bytes are no records at all");
    produce_raw(broker, topic, partition, &batch);
}

/// Produces `{"trace_id":"p<partition>-<i>"}` for each `i` of `ids` to `partition`.
pub(crate) fn produce(
    producer: &BaseProducer,
    topic: &str,
    partition: i32,
    ids: std::ops::Range<usize>,
) {
    for i in ids {
        let payload = format!("{{\"trace_id\":\"p{partition}-{i}\"}}");
        producer
            .send(
                BaseRecord::<(), [u8]>::to(topic)
                    .partition(partition)
                    .payload(payload.as_bytes()),
            )
            .map_err(|(e, _)| e)
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

/// A mock cluster holding `topic`, its bootstrap servers, its first broker (for hand-made
/// requests), and a producer.
pub(crate) fn cluster_and_producer(
    topic: &str,
) -> (
    rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    String,
    String,
    BaseProducer,
) {
    let c = cluster(topic);
    let bootstrap = c.bootstrap_servers();
    let broker = bootstrap.split(',').next().unwrap().to_string();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    (c, bootstrap, broker, producer)
}

/// Runs `sluice backfill JOB ARGS…` to its end (120 s at most), its standard error in `log`;
/// fails unless it exits 0. Returns the log.
pub(crate) fn backfill(job: &std::path::Path, log: &std::path::Path, args: &[&str]) -> String {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["backfill", job.to_str().unwrap()])
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let status = wait_exit(&mut child, "the backfill to end", 120);
    let text = std::fs::read_to_string(log).unwrap_or_default();
    assert!(status.success(), "{status:?}\n{text}");
    // A run that succeeds logs no error: an operator reads an ERROR line as something to act on.
    let errors: Vec<&str> = text.lines().filter(|l| l.contains(" ERROR ")).collect();
    assert!(
        errors.is_empty(),
        "a successful backfill logged errors: {errors:#?}"
    );
    text
}

/// The dead letters under `out`, by source then offset.
fn dead_letters(out: &std::path::Path) -> Vec<serde_json::Value> {
    let mut dl = crate::abuse::dead_letter_lines(&out.join("_dead_letters"));
    dl.sort_by_key(|d| (d["source"].to_string(), d["offset"].as_u64()));
    dl
}

/// A job reading `topic` into `dir/out` with a schema of one field, `trace_id`.
pub(crate) fn ids_job(dir: &std::path::Path, bootstrap: &str, topic: &str) -> std::path::PathBuf {
    let schema_path = dir.join("ids.toml");
    std::fs::write(
        &schema_path,
        "name = \"ids\"\n[[fields]]\nname = \"trace_id\"\ntype = \"string\"\nnullable = false\n",
    )
    .unwrap();
    job_full(dir, bootstrap, topic, "", &schema_path)
}

/// Checks the run's output: every readable message once (`readable` in all), and one dead
/// letter per unreadable batch, (partition, first, last, words in its reason), at its last
/// offset and naming its offsets.
fn check(out: &std::path::Path, readable: usize, batches: &[(i32, i64, i64, &str)], log: &str) {
    let ids = trace_ids(out);
    assert_eq!(
        ids.len(),
        readable,
        "every readable message: {ids:?}\n{log}"
    );
    assert!(ids.values().all(|&n| n == 1), "once each: {ids:?}");
    let dl = dead_letters(out);
    assert_eq!(
        dl.len(),
        batches.len(),
        "one dead letter per batch: {dl:?}\n{log}"
    );
    for (d, (part, first, last, words)) in dl.iter().zip(batches) {
        assert_eq!(d["source"], format!("unreadable-{part}"), "{d}");
        assert_eq!(d["offset"], *last, "{d}");
        assert_eq!(d["class"], "malformed", "{d}");
        assert_eq!(d["record"], "", "{d}");
        let reason = d["reason"].as_str().unwrap();
        assert!(
            reason.contains(&format!("offsets {first} to {last}")) && reason.contains(words),
            "{reason}"
        );
    }
}

/// Partition 0: 10 messages, a batch of 25 that does not decompress, 10 more. Partition 1: 5
/// messages, then a batch of 3, and a transaction's marker ending the log (a fetch past the
/// batch brings no message, only the end of the log). Partition 2: 4 messages, two such
/// batches side by side (2 records, and 5 whose codec bits name no codec), 4 more. The
/// backfill ends with every readable message once and one dead letter per batch; a second
/// backfill has nothing to do. Then a group member (`run`) meets one in partition 3 and goes
/// on past it too.
#[test]
fn a_record_batch_that_cannot_be_read_is_one_dead_letter_and_reading_goes_on() {
    let topic = "unreadable";
    let (_c, bootstrap, broker, producer) = cluster_and_producer(topic);
    produce(&producer, topic, 0, 0..10);
    produce_undecompressable(&broker, topic, 0, 25);
    produce(&producer, topic, 0, 10..20);
    produce(&producer, topic, 1, 0..5);
    produce_undecompressable(&broker, topic, 1, 3);
    produce_raw(
        &broker,
        topic,
        1,
        &record_batch(CONTROL, 1, 7, &commit_marker()),
    );
    // Two side by side, then messages.
    produce(&producer, topic, 2, 0..4);
    produce_undecompressable(&broker, topic, 2, 2);
    produce_with_codec(&broker, topic, 2, 5, 5);
    produce(&producer, topic, 2, 4..8);

    let dir = tempfile::tempdir().unwrap();
    let job = ids_job(dir.path(), &bootstrap, topic);
    let out = dir.path().join("out");
    let mut batches = vec![
        (0, 10, 34, "Decompression"),
        (1, 5, 7, "Decompression"),
        (2, 4, 5, "Decompression"),
        (2, 6, 10, "(codec 0x5)"),
    ];
    for attempt in 1..=2 {
        let text = backfill(
            &job,
            &dir.path().join(format!("backfill{attempt}.log")),
            &[],
        );
        check(&out, 33, &batches, &text);
    }

    produce(&producer, topic, 3, 0..3);
    produce_undecompressable(&broker, topic, 3, 4);
    produce(&producer, topic, 3, 3..6);
    batches.push((3, 3, 6, "Decompression"));
    // A job of its own (a backfill's checkpoints are its own too), reading every partition.
    let run_dir = dir.path().join("run");
    std::fs::create_dir(&run_dir).unwrap();
    let job = ids_job(&run_dir, &bootstrap, topic);
    let out = run_dir.join("out");
    let log = run_dir.join("run.log");
    let mut child = KillOnDrop(Some(spawn_with("run", &job, &log, &[])));
    crate::kafka::wait_for(&out, 39, 120);
    // A live member has no end-of-log event: the fetch past partition 1's batch (only the
    // marker follows) brings nothing, and counts as past the batch after the probe's wait.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while dead_letters(&out).len() < batches.len() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {} dead letters: {:?}",
            batches.len(),
            dead_letters(&out)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let proc = child.0.as_mut().unwrap();
    sigterm(proc);
    let status = wait_exit(proc, "the run to stop", 60);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "{status:?}\n{text}");
    check(&out, 39, &batches, &text);
}

/// What the run says of a partition stuck on a batch.
const STALLED: &str = "a partition has read nothing for a while";

/// Runs the live job of `topic` (in `dir`, into `dir/out`), saying a stall after 3 s, until it
/// says one: its job file, output folder, process and log so far.
fn run_until_stalled(
    dir: &std::path::Path,
    bootstrap: &str,
    topic: &str,
) -> (std::path::PathBuf, std::path::PathBuf, KillOnDrop, String) {
    let job = ids_job(dir, bootstrap, topic);
    let log = dir.join("run.log");
    let child = KillOnDrop(Some(spawn_with(
        "run",
        &job,
        &log,
        &[("SLUICE_FAULT", "stall_after:3000")],
    )));
    let text = crate::kafka::wait_log(&log, STALLED, 1, 90);
    (job, dir.join("out"), child, text)
}

/// Runs the job again (after a skip) until `dir/out` holds `n` records, stops it, and checks
/// they are every record but the batch's, each once.
fn run_again_to(job: &std::path::Path, dir: &std::path::Path, n: usize) {
    let out = dir.join("out");
    let mut again = KillOnDrop(Some(spawn_with("run", job, &dir.join("run2.log"), &[])));
    crate::kafka::wait_for(&out, n, 60);
    sigterm(again.child());
    assert!(wait_exit(again.child(), "the second run to stop", 60).success());
    let ids = trace_ids(&out);
    assert_eq!(ids.len(), n, "every record but the batch's: {ids:?}");
    assert!(ids.values().all(|c| *c == 1), "{ids:?}");
}

/// A record batch whose CRC is right but whose records do not parse: librdkafka fetches it
/// again for ever and reports nothing, so the partition stands still. The run says so in its
/// log (here after 3 s instead of 10 minutes), naming the partition and the offset; the
/// partitions that read on are not named, and what came before the batch is committed.
#[test]
fn a_partition_stuck_on_a_batch_that_does_not_parse_is_named_in_the_log() {
    let topic = "unparsable";
    let (_c, bootstrap, broker, producer) = cluster_and_producer(topic);
    produce(&producer, topic, 0, 0..10);
    produce_unparsable(&broker, topic, 0);
    produce(&producer, topic, 0, 10..20);
    produce(&producer, topic, 1, 0..5);
    let dir = tempfile::tempdir().unwrap();
    let (job, out, mut child, text) = run_until_stalled(dir.path(), &bootstrap, topic);
    let said = STALLED;
    let warnings: Vec<&str> = text.lines().filter(|l| l.contains(said)).collect();
    assert_eq!(warnings.len(), 1, "one stall said:\n{text}");
    assert!(
        warnings[0].contains(&format!("partition={topic}-0"))
            && warnings[0].contains("offset=10")
            && warnings[0].contains("waiting=13"),
        "{}",
        warnings[0]
    );
    crate::kafka::wait_for(&out, 15, 60);
    let ids = trace_ids(&out);
    assert_eq!(
        ids.len(),
        15,
        "what precedes the batch, and partition 1: {ids:?}"
    );
    let proc = child.0.as_mut().unwrap();
    sigterm(proc);
    assert!(wait_exit(proc, "the run to stop", 60).success());

    // The operator's way past it, with the job stopped: the checkpoint moves past the batch
    // (offsets 10 to 12), never back, and the next run reads on from offset 13.
    let jobs = job.to_str().unwrap();
    let key = format!("{topic}-0");
    let back = sluice(&["checkpoints", "skip", jobs, &key, "--to", "10"]);
    assert!(!back.status.success(), "a skip to where it stands ran");
    // A key spelled otherwise than checkpoints name it (`t-00`) is refused: it committed a
    // key of its own, and the partition stayed stuck.
    let other = format!("{topic}-00");
    let err = sluice_refused(&["checkpoints", "skip", jobs, &other, "--to", "13"]);
    assert!(err.contains("as checkpoints name it"), "{err}");
    let past = sluice(&["checkpoints", "skip", jobs, &key, "--to", "24"]);
    let err = String::from_utf8_lossy(&past.stderr);
    assert!(
        err.contains("past the end"),
        "a skip past the log's end: {err}"
    );
    assert!(
        dead_letters(&out).is_empty(),
        "refused skips wrote dead letters"
    );
    let said = sluice_ok(&["checkpoints", "skip", jobs, &key, "--to", "13"]);
    assert!(said.contains("offsets 10 to 12 skipped"), "{said}");
    let shown = sluice_ok(&["checkpoints", "show", jobs, &key]);
    assert!(shown.contains("skipped offsets 10 to 12"), "{shown}");
    // The records are not lost silently: one dead letter names them.
    let dl = dead_letters(&out);
    assert!(
        dl.len() == 1
            && dl[0]["class"] == "skipped"
            && dl[0]["offset"] == 12
            && dl[0]["source"] == key.as_str()
            && dl[0]["reason"]
                .as_str()
                .is_some_and(|r| r.contains("offsets 10 to 12 were not read")),
        "{dl:?}"
    );
    run_again_to(&job, dir.path(), 25);
}

/// The batch first in its partition: the stuck partition never commits, so it has no
/// checkpoint, and the skip makes its first one (before, the skip was refused for want of a
/// checkpoint and the partition could not be moved past the batch at all), from where the job
/// starts it (no group offset: `auto_offset_reset`, earliest); the next run reads on after the
/// batch.
#[test]
fn a_partition_stuck_on_its_first_batch_is_skipped_to_its_first_checkpoint() {
    let topic = "unparsable-first";
    let (_c, bootstrap, broker, producer) = cluster_and_producer(topic);
    produce_unparsable(&broker, topic, 0);
    produce(&producer, topic, 0, 3..13);
    produce(&producer, topic, 1, 0..5);
    let dir = tempfile::tempdir().unwrap();
    let (job, out, mut child, text) = run_until_stalled(dir.path(), &bootstrap, topic);
    let said = STALLED;
    assert!(
        text.lines()
            .any(|l| l.contains(said) && l.contains(&format!("partition={topic}-0"))),
        "{text}"
    );
    crate::kafka::wait_for(&out, 5, 60);
    sigterm(child.child());
    assert!(wait_exit(child.child(), "the run to stop", 60).success());

    let jobs = job.to_str().unwrap();
    let key = format!("{topic}-0");
    let none = sluice(&["checkpoints", "skip", jobs, &key, "--to", "0"]);
    assert!(!none.status.success(), "a skip of nothing ran");
    let said = sluice_ok(&["checkpoints", "skip", jobs, &key, "--to", "3"]);
    assert!(
        said.contains(
            "it had no checkpoint: offsets 0 to 2 (from where its run starts it) skipped"
        ),
        "{said}"
    );
    let dl = dead_letters(&out);
    assert!(
        dl.len() == 1 && dl[0]["class"] == "skipped" && dl[0]["offset"] == 2,
        "{dl:?}"
    );
    run_again_to(&job, dir.path(), 15);
}

/// A backfill's partition stuck on its first batch (`--from 1=10`, the batch at 10 to 12): the
/// skip starts where the backfill's recorded range starts it, so one to before it (5) is
/// refused (it would have the backfill export records 5 to 9, outside its range), and one past
/// the batch makes the first checkpoint; the rerun ends with the range's readable records once.
#[test]
fn a_backfill_partition_stuck_on_its_first_batch_is_skipped_within_its_range() {
    let topic = "unparsable-range";
    let (_c, bootstrap, broker, producer) = cluster_and_producer(topic);
    produce(&producer, topic, 1, 0..10);
    produce_unparsable(&broker, topic, 1);
    produce(&producer, topic, 1, 13..20);
    // Past the range (it ends at 20): the live job's.
    produce(&producer, topic, 1, 20..25);
    let dir = tempfile::tempdir().unwrap();
    let job = ids_job(dir.path(), &bootstrap, topic);
    let jobs = job.to_str().unwrap();
    let range = ["--from", "0=0,1=10,2=0,3=0", "--to", "0=0,1=20,2=0,3=0"];
    let log = dir.path().join("b1.log");
    let mut child = KillOnDrop(Some(
        std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["backfill", jobs])
            .args(range)
            .env("SLUICE_FAULT", "stall_after:3000")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    ));
    crate::kafka::wait_log(&log, STALLED, 1, 90);
    sigterm(child.child());
    wait_exit(child.child(), "the backfill to stop", 60);
    let key = format!("{topic}-1");
    let back = sluice(&["checkpoints", "skip", jobs, &key, "--to", "5", "--backfill"]);
    let err = String::from_utf8_lossy(&back.stderr);
    assert!(
        !back.status.success() && err.contains("starts at offset 10"),
        "{err}"
    );
    // Past the range's end (20): records the live job exports, not the backfill's.
    let err = sluice_refused(&[
        "checkpoints",
        "skip",
        jobs,
        &key,
        "--to",
        "21",
        "--backfill",
    ]);
    assert!(
        err.contains("past the end of the backfill's range"),
        "{err}"
    );
    let said = sluice_ok(&[
        "checkpoints",
        "skip",
        jobs,
        &key,
        "--to",
        "13",
        "--backfill",
    ]);
    assert!(said.contains("offsets 10 to 12"), "{said}");
    // `--name` of no backfill that ran here (another job's, a typo): refused, where it
    // fenced that job's partition and skipped its records.
    let err = sluice_refused(&[
        "checkpoints",
        "skip",
        jobs,
        &key,
        "--to",
        "14",
        "--name",
        "nosuch",
    ]);
    assert!(err.contains("no backfill named `nosuch` ran here"), "{err}");
    // A file job's name (it records which files it read, and has checkpoints): refused too.
    let files = dir.path().join("out/_sluice/filejob");
    std::fs::create_dir_all(files.join("files")).unwrap();
    std::fs::write(files.join("files/x-0.json"), "{}").unwrap();
    let cp = files.join(format!("checkpoints/{key}"));
    std::fs::create_dir_all(&cp).unwrap();
    std::fs::write(cp.join("000000000001.json"), "{}").unwrap();
    let err = sluice_refused(&[
        "checkpoints",
        "skip",
        jobs,
        &key,
        "--to",
        "14",
        "--backfill",
        "--name",
        "filejob",
    ]);
    assert!(err.contains("is a file job's name"), "{err}");
    let args: Vec<&str> = range.to_vec();
    backfill(&job, &dir.path().join("b2.log"), &args);
    let ids = trace_ids(&dir.path().join("out"));
    assert_eq!(ids.len(), 7, "p1-13 to p1-19: {ids:?}");
    assert!(
        ids.iter().all(|(k, n)| *n == 1 && k.starts_with("p1-1")),
        "{ids:?}"
    );
}

/// The same batch in a backfill: the partition stuck on it is named; those that reached their
/// end (`--to`: partition 0 after 5 records, partition 2 before any, so it is never assigned)
/// while their logs went on wait for nothing, and are not. `checkpoints skip --backfill` then
/// moves the backfill's own checkpoint past the batch (before, skip knew only the live job's).
#[test]
fn a_backfill_names_its_stuck_partition_not_one_that_reached_its_end() {
    let topic = "unparsable-bounded";
    let (_c, bootstrap, broker, producer) = cluster_and_producer(topic);
    produce(&producer, topic, 0, 0..20);
    produce(&producer, topic, 1, 0..10);
    produce_unparsable(&broker, topic, 1);
    produce(&producer, topic, 1, 10..20);
    produce(&producer, topic, 2, 0..5);
    let dir = tempfile::tempdir().unwrap();
    let job = ids_job(dir.path(), &bootstrap, topic);
    let log = dir.path().join("backfill.log");
    let mut child = KillOnDrop(Some(
        std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args([
                "backfill",
                job.to_str().unwrap(),
                "--to",
                "0=5,1=23,2=0,3=0",
            ])
            .env("SLUICE_FAULT", "stall_after:3000")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    ));
    let said = STALLED;
    crate::kafka::wait_log(&log, said, 1, 90);
    // Partitions 0's and 2's logs go on past the run's end: two more looks (5 s apart, 3 s
    // to wait) still name only partition 1.
    produce(&producer, topic, 0, 20..30);
    produce(&producer, topic, 2, 5..10);
    let text = crate::kafka::wait_log(&log, said, 2, 15);
    let warnings: Vec<&str> = text.lines().filter(|l| l.contains(said)).collect();
    assert_eq!(warnings.len(), 1, "one stall said:\n{text}");
    assert!(
        warnings[0].contains(&format!("partition={topic}-1")) && warnings[0].contains("offset=10"),
        "{}",
        warnings[0]
    );

    // The way past it: the backfill stopped, its own checkpoint skipped past the batch
    // (`--backfill`: the live job has no checkpoint there), and the backfill run again over
    // its range ends with every readable record once.
    sigterm(child.child());
    wait_exit(child.child(), "the backfill to stop", 60);
    let jobs = job.to_str().unwrap();
    let key = format!("{topic}-1");
    let said = sluice_ok(&[
        "checkpoints",
        "skip",
        jobs,
        &key,
        "--to",
        "13",
        "--backfill",
    ]);
    assert!(said.contains("offsets 10 to 12 skipped"), "{said}");
    let again = sluice(&["backfill", jobs, "--to", "0=5,1=23,2=0,3=0"]);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let ids = trace_ids(&dir.path().join("out"));
    assert_eq!(ids.len(), 25, "{ids:?}");
    assert!(ids.values().all(|n| *n == 1), "{ids:?}");
}
