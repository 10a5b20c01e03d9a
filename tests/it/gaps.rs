//! A Kafka checkpoint past what the broker holds: the partition was re-created (here: a new
//! broker with a shorter log under the same topic). The member refuses the partition, naming
//! the range, with `source.on_gap = "skip"` too (reading the new log's offsets again would
//! give its files the names of committed ones), and runs on. Before, `auto.offset.reset` moved on without a word. (A checkpoint
//! below the low watermark, which `skip` goes past, needs retention: `tansu.rs` tests it, and
//! the last test here a live member overtaken, with the mock broker's 5 MiB per partition.)
//! And the discontinuity a rewind could make: messages taken while its seek was pending.

use crate::helpers::*;
use crate::kafka::{
    produce_events, refused_then_stopped, spawn_run, spawn_with, wait_for, wait_log,
};

#[test]
fn a_checkpoint_past_the_end_of_the_log_is_refused_even_with_skip() {
    let topic = "regap";
    let first = rdkafka::mocking::MockCluster::new(1).unwrap();
    first.create_topic(topic, 1, 1).unwrap();
    produce_events(&first.bootstrap_servers(), topic, 0, 100, 1, None);
    let dir = tempfile::tempdir().unwrap();
    let job = crate::kafka::job_with(dir.path(), &first.bootstrap_servers(), topic, "");
    let out = dir.path().join("out");
    let log = dir.path().join("first.log");
    let run = spawn_run(&job, &log);
    wait_for(&out, 100, 120);
    let text = wait_log(&log, "committed", 1, 0);
    assert_eq!(trace_ids(&out).len(), 100, "{text}");
    sigterm(&run);
    assert!(run.wait_with_output().unwrap().status.success());
    let checkpoints = sluice_ok(&["checkpoints", "list", job.to_str().unwrap()]);
    assert!(checkpoints.contains("100"), "{checkpoints}");

    // The topic again, on another broker, with 10 records: the checkpoint (100) is past them.
    let second = rdkafka::mocking::MockCluster::new(1).unwrap();
    second.create_topic(topic, 1, 1).unwrap();
    produce_events(&second.bootstrap_servers(), topic, 1000, 10, 1, None);
    let text = std::fs::read_to_string(&job)
        .unwrap()
        .replace(&first.bootstrap_servers(), &second.bootstrap_servers());
    std::fs::write(&job, &text).unwrap();
    refused_whatever_on_gap_says(
        dir.path(),
        &job,
        &text,
        &["resumes at offset 100", "re-created"],
        100,
    );
}

/// Runs `job` as `text` has it with `on_gap = "fail"`, then `"skip"`: each run refuses the
/// partition, its log holding each of `expect`, and runs on until stopped; the output is
/// still `rows` records.
fn refused_whatever_on_gap_says(
    dir: &std::path::Path,
    job: &std::path::Path,
    text: &str,
    expect: &[&str],
    rows: usize,
) {
    let out = dir.join("out");
    let skip = text.replace(
        "chunk_bytes = \"16KiB\"",
        "chunk_bytes = \"16KiB\"\non_gap = \"skip\"",
    );
    for (attempt, job_text) in [("fail", text), ("skip", &skip[..])] {
        std::fs::write(job, job_text).unwrap();
        let log = dir.join(format!("{attempt}.log"));
        let run = spawn_run(job, &log);
        refused_then_stopped(run, &log, expect, 60);
        assert_eq!(trace_ids(&out).len(), rows, "nothing written");
    }
}

/// A rewind (here: commit 2 fails, `SLUICE_FAULT=fail_commit:2`) whose seek librdkafka refuses
/// for a while, as it does while a partition's fetch is starting (forced with
/// `refuse_seek:<n>`), while the fetcher is far ahead of the rewind point: what it delivers
/// meanwhile is dropped and read again after the seek, never taken as if it followed the
/// rewind point. Taking it lost the records in between without a word (the chunk still began
/// where the worker expected it).
#[test]
fn messages_arriving_while_a_rewind_seek_is_pending_are_read_again_not_taken() {
    let topic = "pending";
    let cluster = rdkafka::mocking::MockCluster::new(1).unwrap();
    cluster.create_topic(topic, 1, 1).unwrap();
    let n = 6000;
    produce_events(&cluster.bootstrap_servers(), topic, 0, 500, 1, None);
    let dir = tempfile::tempdir().unwrap();
    let job = crate::kafka::job_with(dir.path(), &cluster.bootstrap_servers(), topic, "");
    let out = dir.path().join("out");
    let log = dir.path().join("run.log");
    let run = KillOnDrop::new(spawn_with(
        "run",
        &job,
        &log,
        &[("SLUICE_FAULT", "fail_commit:2,refuse_seek:50")],
    ));
    // Records keep arriving while the seek is refused (about 5 s): paced, not waited on.
    let bootstrap = cluster.bootstrap_servers();
    let producer = std::thread::spawn(move || {
        for first in (500..n).step_by(250) {
            produce_events(&bootstrap, topic, first, 250, 1, None);
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    });
    producer.join().unwrap();
    wait_for(&out, n, 60);
    assert!(run.stop("the run to stop", 60).success());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("SLUICE_FAULT: failing commit 2"), "{text}");
    let refused = text.matches("SLUICE_FAULT: refusing a seek").count();
    assert!(refused > 0, "the rewind's seek was never refused:\n{text}");
    crate::kafka::assert_once(&out, n);
}

/// A broker that answers a fetch with "offset out of range" where its log holds the offset
/// (an answer that raced a check, or a broker's error): the partition is checked, found
/// inside the log, said so, and fetched again from the same offset: nothing skipped, nothing
/// twice. Before, librdkafka's `auto.offset.reset` moved the partition elsewhere without a
/// word; it is `error` now (every assignment and seek names its offset). (The run stopped on
/// such an answer once; with the partition named by the answer, it goes on.)
#[test]
fn an_offset_out_of_range_answer_inside_the_log_fetches_again_without_a_silent_reset() {
    let topic = "ranged";
    let cluster = rdkafka::mocking::MockCluster::new(1).unwrap();
    cluster.create_topic(topic, 1, 1).unwrap();
    produce_events(&cluster.bootstrap_servers(), topic, 0, 500, 1, None);
    let dir = tempfile::tempdir().unwrap();
    let job = crate::kafka::job_with(dir.path(), &cluster.bootstrap_servers(), topic, "");
    let out = dir.path().join("out");
    let log = dir.path().join("run.log");
    let run = spawn_run(&job, &log);
    wait_for(&out, 500, 60);
    assert_eq!(trace_ids(&out).len(), 500);
    cluster.request_errors(
        rdkafka::types::RDKafkaApiKey::Fetch,
        &[rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE],
    );
    produce_events(&cluster.bootstrap_servers(), topic, 500, 10, 1, None);
    wait_for(&out, 510, 60);
    let text = wait_log(&log, "fetching again", 1, 30);
    assert!(
        text.contains("out of range") && text.contains("fetching again"),
        "{text}"
    );
    let ids = trace_ids(&out);
    assert_eq!(ids.len(), 510, "{text}");
    assert!(ids.values().all(|&n| n == 1), "once each");
    assert!(run.stop("the run to stop", 60).success());
}

/// A backfill's rewind (commit 3 fails, `SLUICE_FAULT=fail_commit:3`) assigns its partitions
/// again. librdkafka's stop of each running fetcher clears the forwarding of its messages to
/// the source's batch queue, and restarting it then forwarded them nowhere: every partition
/// went silent and the backfill never ended. It must read every partition to its end, each
/// record once.
#[test]
fn a_backfill_that_rewinds_mid_run_reads_every_partition_to_its_end() {
    let topic = "rewound";
    let cluster = rdkafka::mocking::MockCluster::new(1).unwrap();
    cluster.create_topic(topic, 4, 1).unwrap();
    let n = 8000;
    produce_events(&cluster.bootstrap_servers(), topic, 0, n, 4, None);
    let dir = tempfile::tempdir().unwrap();
    let job = crate::kafka::job_with(dir.path(), &cluster.bootstrap_servers(), topic, "");
    let log = dir.path().join("run.log");
    let mut run = KillOnDrop::new(spawn_with(
        "backfill",
        &job,
        &log,
        &[("SLUICE_FAULT", "fail_commit:3")],
    ));
    let status = wait_exit(run.child(), "the backfill to end", 120);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{text}");
    assert!(text.contains("SLUICE_FAULT: failing commit 3"), "{text}");
    crate::kafka::assert_once(&dir.path().join("out"), n);
}

/// A live member whose positions retention deletes while it is held still (SIGSTOP): the
/// mock broker keeps 5 MiB per partition, and 6.5 MiB more arrive in each of two partitions
/// (led by two brokers) meanwhile. Their next fetches are answered "offset out of range";
/// with `on_gap = "skip"` each goes on from its log's start, logging and counting the gap,
/// and reads what arrives after. librdkafka stops fetching a partition on that answer
/// (`auto.offset.reset = error`) and refuses every seek of it, so the member's skip was
/// retried for ever and the partition read nothing more.
#[test]
fn a_member_overtaken_by_retention_skips_to_the_log_start_and_reads_on() {
    let topic = "overtaken";
    let (_cluster, bootstrap, dir, run) = reading_two_partitions(topic, "on_gap = \"skip\"");
    let out = dir.path().join("out");
    let log = dir.path().join("run.log");
    let lows = overtake(&bootstrap, topic, &[0, 1], run.id());

    // Then more: read after the gaps, as every message from the logs' starts.
    produce_events(&bootstrap, topic, 12_500, 10, 2, None);
    let want = 500 + lows.iter().map(|low| 6255 - low).sum::<usize>();
    wait_for(&out, want, 120);
    let ids = trace_ids(&out);
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(ids.len(), want, "{text}");
    assert!(ids.values().all(|&n| n == 1), "duplicates");
    for (p, low) in lows.iter().enumerate() {
        // Offset `low` of partition p holds event 2 × low + p.
        let first = format!("t{}", 2 * low + p);
        assert!(ids.contains_key(&first), "{first} missing");
    }
    assert!(ids.contains_key("t12509"));
    assert_eq!(
        text.matches("were deleted by the broker").count(),
        2,
        "{text}"
    );
    let status = run.stop("the run to stop", 60);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{text}");
    // The partition assigned again still reads through the batch queue, in order.
    assert!(text.contains(" polled=0"), "{text}");
}

/// The same with `on_gap = "fail"`, retention overtaking partition 0 only: the member refuses
/// partition 0 (the "out of range" answer checked, the range named), counts it, and reads
/// partition 1's new records. Before, the gap stopped the run, and with it partition 1.
#[test]
fn a_member_overtaken_by_retention_on_one_partition_refuses_it_and_reads_the_other() {
    let topic = "overtaken-one";
    let (_cluster, bootstrap, dir, run) =
        reading_two_partitions(topic, "[admin]\nlisten = \"127.0.0.1:0\"");
    let out = dir.path().join("out");
    let log = dir.path().join("run.log");
    let addr = crate::admin::admin_addr(&log);
    let lows = overtake(&bootstrap, topic, &[0], run.id());
    // Partition 1's new records (odd event numbers).
    produce_events(&bootstrap, topic, 12_500, 10, 2, None);
    wait_until_showing(
        "partition 1's new records beside refused partition 0",
        120,
        || {
            let ids = trace_ids(&out);
            (12_500..12_510)
                .step_by(2)
                .all(|i| ids.contains_key(&format!("t{}", i + 1)))
        },
        || format!(": {} records", trace_ids(&out).len()),
    );
    let ids = trace_ids(&out);
    assert!(ids.values().all(|&n| n == 1), "duplicates");
    let event = |k: &String| k[1..].parse::<usize>().unwrap();
    assert!(
        !ids.keys().any(|k| event(k) >= 500 && event(k) % 2 == 0),
        "nothing of partition 0 past the gap"
    );
    let refused = || {
        let (_, body) = crate::admin::http(&addr, "GET", "/metrics", None);
        crate::admin::metric_sum(&body, "sluice_partitions_refused")
    };
    wait_until("partition 0 counted as refused", 30, || refused() == 1.0);
    let text = refused_then_stopped(
        run,
        &log,
        &[&format!(
            "records 250..{} were deleted by the broker",
            lows[0]
        )],
        30,
    );
    assert!(text.contains("overtaken-one-0"), "{text}");
}

/// A live run of a job reading `topic`'s two partitions (led by two brokers of a mock
/// cluster), with `extra` in its job file, once it has exported their first 500 events.
fn reading_two_partitions(
    topic: &str,
    extra: &str,
) -> (
    rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    String,
    tempfile::TempDir,
    KillOnDrop,
) {
    let cluster = rdkafka::mocking::MockCluster::new(2).unwrap();
    cluster.create_topic(topic, 2, 1).unwrap();
    cluster.partition_leader(topic, 0, Some(1)).unwrap();
    cluster.partition_leader(topic, 1, Some(2)).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    produce_events(&bootstrap, topic, 0, 500, 2, None);
    let dir = tempfile::tempdir().unwrap();
    let job = crate::kafka::job_with(dir.path(), &bootstrap, topic, "");
    let text = std::fs::read_to_string(&job).unwrap().replace(
        "chunk_bytes = \"16KiB\"",
        &format!("chunk_bytes = \"16KiB\"\n{extra}"),
    );
    std::fs::write(&job, text).unwrap();
    let out = dir.path().join("out");
    let run = spawn_run(&job, &dir.path().join("run.log"));
    wait_for(&out, 500, 60);
    assert_eq!(trace_ids(&out).len(), 500);
    (cluster, bootstrap, dir, run)
}

/// Holds process `pid` still (SIGSTOP) while 6,000 events of about 1.1 KiB arrive in each
/// of `partitions` of `topic` (event numbers 500..12,500, partition `i % 2`): the mock
/// broker's retention deletes the first ~1,000 offsets of each. Returns each partition's
/// log start then (offset), and wakes the process.
fn overtake(bootstrap: &str, topic: &str, partitions: &[i32], pid: u32) -> Vec<usize> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::producer::Producer;
    let signal = |sig: &str| {
        assert!(std::process::Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap()
            .success());
    };
    signal("-STOP");
    let producer: rdkafka::producer::BaseProducer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .create()
        .unwrap();
    let pad = "x".repeat(1024);
    for i in (500..12_500).filter(|i| partitions.contains(&(i % 2))) {
        let payload = format!(
            "{{\"ts\":\"2024-05-01T00:00:00Z\",\"host\":\"{pad}\",\"status\":200,\"trace_id\":\"t{i}\"}}"
        );
        let mut record = rdkafka::producer::BaseRecord::<(), [u8]>::to(topic)
            .partition(i % 2)
            .payload(payload.as_bytes());
        while let Err((_, r)) = producer.send(record) {
            record = r;
            producer.poll(std::time::Duration::from_millis(50));
        }
    }
    producer.flush(std::time::Duration::from_secs(60)).unwrap();
    let consumer: BaseConsumer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let mut lows = Vec::new();
    for &p in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, std::time::Duration::from_secs(10))
            .unwrap();
        assert!(
            low > 250 && high == 6250,
            "retention ran in {p}: [{low}, {high})"
        );
        lows.push(low as usize);
    }
    signal("-CONT");
    lows
}

/// A topic re-created (here: on another broker) whose new log has grown past the checkpoint:
/// the checkpoint's offset lies inside the new log, so its watermarks say nothing, and every
/// record of it below that offset was skipped without a word. The message the checkpoint ends
/// with is read again and compared: the member refuses the partition, naming it, whatever
/// `on_gap` says. On the same log the comparison finds the same message and the run goes on.
#[test]
fn a_re_created_topic_grown_past_the_checkpoint_is_refused() {
    let topic = "regrown";
    let first = rdkafka::mocking::MockCluster::new(1).unwrap();
    first.create_topic(topic, 1, 1).unwrap();
    produce_events(&first.bootstrap_servers(), topic, 0, 100, 1, None);
    let dir = tempfile::tempdir().unwrap();
    // A quick session: a run refused inside the rebalance leaves no member behind for long.
    let quick = crate::kafka::QUICK_GROUP;
    let job = crate::kafka::job_with(dir.path(), &first.bootstrap_servers(), topic, quick);
    let out = dir.path().join("out");
    for (round, (from, upto)) in [(0, 100), (100, 120)].into_iter().enumerate() {
        if from > 0 {
            produce_events(
                &first.bootstrap_servers(),
                topic,
                from,
                upto - from,
                1,
                None,
            );
        }
        let log = dir.path().join(format!("same-{round}.log"));
        let run = spawn_run(&job, &log);
        wait_for(&out, upto, 120);
        let text = wait_log(&log, "committed", 1, 0);
        assert_eq!(trace_ids(&out).len(), upto, "{text}");
        sigterm(&run);
        assert!(run.wait_with_output().unwrap().status.success());
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(
            !text.contains("could not be read again") && !text.contains("not the one exported"),
            "the same log resumes after a comparison that finds its message:\n{text}"
        );
    }

    // The topic again, on another broker, with 150 other records: past the checkpoint (120).
    let second = rdkafka::mocking::MockCluster::new(1).unwrap();
    second.create_topic(topic, 1, 1).unwrap();
    produce_events(&second.bootstrap_servers(), topic, 1000, 150, 1, None);
    let text = std::fs::read_to_string(&job)
        .unwrap()
        .replace(&first.bootstrap_servers(), &second.bootstrap_servers());
    refused_whatever_on_gap_says(
        dir.path(),
        &job,
        &text,
        &[
            "resumes at offset 120",
            "message at offset 119 is not the one exported there",
        ],
        120,
    );
}

/// The same for a backfill resumed from its checkpoint (a static assignment): its first run
/// died after its first commit (`SLUICE_FAULT=after_checkpoint:1`); the topic, re-created,
/// has grown past the whole range planned, so only the comparison tells.
#[test]
fn a_backfill_resumed_on_a_re_created_topic_grown_past_its_checkpoint_stops() {
    let topic = "regrown-bf";
    let first = rdkafka::mocking::MockCluster::new(1).unwrap();
    first.create_topic(topic, 1, 1).unwrap();
    produce_events(&first.bootstrap_servers(), topic, 0, 600, 1, None);
    let dir = tempfile::tempdir().unwrap();
    let job = crate::kafka::job_with(dir.path(), &first.bootstrap_servers(), topic, "");
    let text = std::fs::read_to_string(&job)
        .unwrap()
        .replace("max_rows = 400", "max_rows = 100");
    std::fs::write(&job, &text).unwrap();
    let out = dir.path().join("out");
    let args = ["backfill", job.to_str().unwrap(), "--name", "bf"];
    let log = dir.path().join("first.log");
    let mut died = KillOnDrop::new(
        std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(args)
            .env("SLUICE_FAULT", "after_checkpoint:1")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let status = wait_exit(
        died.child(),
        "the backfill to abort after its first commit",
        60,
    );
    let err = std::fs::read_to_string(&log).unwrap();
    assert!(
        !status.success() && err.contains("aborting at after_checkpoint"),
        "{err}"
    );
    let exported = trace_ids(&out).len();
    assert!((1..600).contains(&exported), "{exported} exported:\n{err}");

    let second = rdkafka::mocking::MockCluster::new(1).unwrap();
    second.create_topic(topic, 1, 1).unwrap();
    produce_events(&second.bootstrap_servers(), topic, 5000, 700, 1, None);
    std::fs::write(
        &job,
        text.replace(&first.bootstrap_servers(), &second.bootstrap_servers()),
    )
    .unwrap();
    let (status, err) = sluice_within(&args, 60);
    assert!(!status.success(), "{err}");
    assert!(
        err.contains(&format!("resumes at offset {exported}"))
            && err.contains("is not the one exported there"),
        "{err}"
    );
    assert_eq!(trace_ids(&out).len(), exported, "nothing written");
}
