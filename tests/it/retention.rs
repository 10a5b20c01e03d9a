//! Retention on a real broker (tansu; `Tansu::retain_from` deletes a partition's oldest
//! records while the broker is stopped, as retention would): records deleted before they were
//! exported stop a live run's partition (refused at its assignment, the others read) or a
//! resumed backfill, naming the range, or are skipped and counted with `on_gap = "skip"`; a roll-back to a checkpoint the broker no longer holds is
//! refused before anything is deleted.

use std::path::{Path, PathBuf};

use crate::helpers::*;
use crate::kafka::{
    assert_once, job_with, produce_events, refused_then_stopped, spawn_run, wait_for,
};
use crate::tansu::{ids, Tansu};

/// A topic of `n` events over `partitions`, exported whole by a live run of the test job
/// that is then stopped: the job file and its output folder.
pub(crate) fn exported(
    broker: &Tansu,
    dir: &Path,
    topic: &str,
    partitions: u32,
    n: usize,
) -> (PathBuf, PathBuf) {
    broker.create_topic(topic, partitions);
    produce_events(&broker.bootstrap(), topic, 0, n, partitions as i32, None);
    let job = job_with(dir, &broker.bootstrap(), topic, "");
    let out = dir.join("out");
    let run = spawn_run(&job, &dir.join("first.log"));
    wait_for(&out, n, 120);
    assert!(run.stop("the first run to stop", 60).success());
    assert_once(&out, n);
    (job, out)
}

/// `run --from-checkpoint 1` of a Kafka job whose first checkpoint resumes below what
/// retention left on the broker is refused before anything is deleted: files, checkpoints and
/// the output stay as they were.
#[test]
fn tansu_a_roll_back_past_retention_is_refused_before_anything_is_deleted() {
    let Some(mut broker) = Tansu::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (job, out) = exported(&broker, dir.path(), "retained", 2, 2000);
    // Checkpoint 1 of each partition resumes after about 400 records (max_rows = 400), far
    // below offset 900.
    let listing = |out: &Path| -> Vec<(PathBuf, u64)> {
        files_under(out, false)
            .into_iter()
            .filter(|p| !p.to_string_lossy().contains("/fence/"))
            .map(|p| {
                let len = std::fs::metadata(&p).unwrap().len();
                (p, len)
            })
            .collect()
    };
    let before = listing(&out);
    broker.retain_from("retained", 0, 900);
    let (status, err) = sluice_within(
        &["run", job.to_str().unwrap(), "--from-checkpoint", "1"],
        90,
    );
    assert!(
        !status.success() && err.contains("cannot replay partition retained-0"),
        "{err}"
    );
    assert!(err.contains("nothing was deleted"), "{err}");
    assert_eq!(listing(&out), before, "nothing deleted");
    assert_once(&out, 2000);
}

/// Retention deleted records the job had not exported yet (while it was down): the next run
/// refuses the partition, naming it and the lost range (`on_gap = "fail"`, the default); with
/// `on_gap = "skip"` it goes on from the low watermark, logs the range and counts it in
/// `sluice_offsets_skipped_total`, and nothing else is lost or repeated. Before, librdkafka's
/// `auto.offset.reset` moved on past the gap without a word.
#[test]
fn tansu_records_retention_deleted_before_export_refuse_the_partition_or_are_skipped_and_counted() {
    let Some(mut broker) = Tansu::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (job, out) = exported(&broker, dir.path(), "aged", 1, 500);
    // While the job is down, 500 more arrive and retention deletes offsets below 800.
    produce_events(&broker.bootstrap(), "aged", 500, 500, 1, None);
    broker.retain_from("aged", 0, 800);

    let log = dir.path().join("fail.log");
    refused_then_stopped(
        spawn_run(&job, &log),
        &log,
        &[
            "resumes at offset 500",
            "records 500..800 were deleted by the broker (retention)",
        ],
        60,
    );
    assert_eq!(ids(&out), (0..500).collect::<Vec<_>>(), "nothing written");

    let text = std::fs::read_to_string(&job).unwrap().replace(
        "chunk_bytes = \"16KiB\"",
        "chunk_bytes = \"16KiB\"\non_gap = \"skip\"",
    ) + "\n[admin]\nlisten = \"127.0.0.1:0\"\n";
    std::fs::write(&job, text).unwrap();
    let log = dir.path().join("skip.log");
    let run = spawn_run(&job, &log);
    let addr = crate::admin::admin_addr(&log);
    wait_for(&out, 700, 120);
    let skipped = || {
        let (_, m) = crate::admin::http(&addr, "GET", "/metrics", None);
        crate::admin::metric_sum(&m, "sluice_offsets_skipped_total")
    };
    wait_until("300 skipped offsets in the metrics", 30, || {
        skipped() == 300.0
    });
    assert!(run.stop("the run to stop", 60).success());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("skipped (on_gap = skip), reading from 800"),
        "{text}"
    );
    let want: Vec<usize> = (0..500).chain(800..1000).collect();
    assert_eq!(ids(&out), want);
}

/// Where a job has no checkpoint of a partition, it starts at the consumer group's committed
/// offset. Here the job writes into a new folder (as the gap error advises) after retention
/// deleted records it had not exported: the group's offset (500) was clamped into the log
/// and records 500..800 were skipped without a word. Now it is a gap like a checkpoint's: the
/// partition is refused, naming the range and the group's offset, and nothing is written. So does a
/// backfill asked to start at a deleted offset.
#[test]
fn tansu_offsets_below_the_log_start_from_the_group_or_asked_are_gaps_not_silent_skips() {
    let Some(mut broker) = Tansu::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (job, _) = exported(&broker, dir.path(), "regrouped", 1, 500);
    produce_events(&broker.bootstrap(), "regrouped", 500, 500, 1, None);
    broker.retain_from("regrouped", 0, 800);
    let text = std::fs::read_to_string(&job)
        .unwrap()
        .replace("url = \"out/\"", "url = \"fresh/\"")
        .replace("state_dir = \"state\"", "state_dir = \"fresh-state\"");
    std::fs::write(&job, text).unwrap();
    let log = dir.path().join("fresh.log");
    refused_then_stopped(
        spawn_run(&job, &log),
        &log,
        &[
            "the consumer group's committed offset, 500, where it starts",
            "records 500..800 were deleted by the broker (retention)",
        ],
        60,
    );
    assert!(ids(&dir.path().join("fresh")).is_empty(), "nothing written");
    // With `on_gap = "skip"` it starts at the log's start, and says what it skipped.
    let skipping = std::fs::read_to_string(&job).unwrap().replace(
        "chunk_bytes = \"16KiB\"",
        "chunk_bytes = \"16KiB\"\non_gap = \"skip\"",
    );
    std::fs::write(&job, &skipping).unwrap();
    let log = dir.path().join("skip.log");
    let run = spawn_run(&job, &log);
    wait_for(&dir.path().join("fresh"), 200, 120);
    assert!(run.stop("the skipping run to stop", 60).success());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("records 500..800 of partition regrouped-0 were deleted"),
        "{text}"
    );
    assert_eq!(
        ids(&dir.path().join("fresh")),
        (800..1000).collect::<Vec<_>>()
    );
    // A backfill asked to start at an offset retention deleted: it was moved to the log's
    // start without a word, and the run ended as done.
    let jobs = job.to_str().unwrap();
    let asked = skipping.replace("url = \"fresh/\"", "url = \"asked/\"");
    std::fs::write(&job, asked.replace("\non_gap = \"skip\"", "")).unwrap();
    let err = sluice_refused(&["backfill", jobs, "--name", "asked", "--from", "0=100"]);
    assert!(
        err.contains("regrouped/0: the range starts at offset 100")
            && err.contains("records 100..800 were deleted by the broker (retention)"),
        "{err}"
    );
    assert!(ids(&dir.path().join("asked")).is_empty(), "nothing written");
    std::fs::write(&job, asked).unwrap();
    let done = sluice(&["backfill", jobs, "--name", "asked", "--from", "0=100"]);
    let err = String::from_utf8_lossy(&done.stderr);
    assert!(done.status.success(), "{err}");
    assert!(
        err.contains("records 100..800 were deleted by the broker (retention); skipped"),
        "{err}"
    );
    assert_eq!(
        ids(&dir.path().join("asked")),
        (800..1000).collect::<Vec<_>>()
    );
}

/// A backfill interrupted after its first commit (kill -9 there, `SLUICE_FAULT`) while
/// retention then deleted records it had not exported: run again, it stops naming the range
/// (`on_gap = "fail"`); with `on_gap = "skip"` it goes on from the low watermark and says so.
/// Before, it was assigned its checkpoint's offset and librdkafka's `auto.offset.reset`
/// moved it to the low watermark without a word.
#[test]
fn tansu_a_backfill_resuming_below_the_low_watermark_stops_or_skips() {
    let Some(mut broker) = Tansu::start() else {
        return;
    };
    broker.create_topic("resumed", 1);
    produce_events(&broker.bootstrap(), "resumed", 0, 1000, 1, None);
    let dir = tempfile::tempdir().unwrap();
    let job = job_with(dir.path(), &broker.bootstrap(), "resumed", "");
    let jobs = job.to_str().unwrap();
    let out = dir.path().join("out");
    let killed = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["backfill", jobs])
        .env("SLUICE_FAULT", "after_checkpoint:1")
        .output()
        .unwrap();
    assert!(!killed.status.success());
    let first = ids(&out).len();
    assert!(
        first > 0 && first < 800,
        "one commit: {first} records\n{}",
        String::from_utf8_lossy(&killed.stderr)
    );
    broker.retain_from("resumed", 0, 800);

    let err = sluice_refused(&["backfill", jobs]);
    assert!(
        err.contains(&format!(
            "records {first}..800 were deleted by the broker (retention)"
        )),
        "{err}"
    );
    assert_eq!(ids(&out).len(), first, "nothing written");

    let text = std::fs::read_to_string(&job).unwrap().replace(
        "chunk_bytes = \"16KiB\"",
        "chunk_bytes = \"16KiB\"\non_gap = \"skip\"",
    );
    std::fs::write(&job, text).unwrap();
    let skipped = sluice(&["backfill", jobs]);
    let err = String::from_utf8_lossy(&skipped.stderr);
    assert!(skipped.status.success(), "{err}");
    assert!(
        err.contains("skipped (on_gap = skip), reading from 800"),
        "{err}"
    );
    let want: Vec<usize> = (0..first).chain(800..1000).collect();
    assert_eq!(ids(&out), want);
}

/// A live job on topic `topic` (1,000 records, one partition) whose commit 2 fails; the
/// rewind's seek is held (`refuse_seek:@<file>`) while retention deletes the records below
/// offset 800 (a store down for longer than the topic's retention), then released. Returns
/// the broker, the job, its output folder, the run (still running or ended), its log, and how
/// many records the first commit wrote.
fn rewind_past_retention(
    dir: &Path,
    topic: &str,
    options: &str,
) -> Option<(Tansu, PathBuf, PathBuf, KillOnDrop, PathBuf, usize)> {
    let mut broker = Tansu::start()?;
    broker.create_topic(topic, 1);
    produce_events(&broker.bootstrap(), topic, 0, 1000, 1, None);
    let job = job_with(
        dir,
        &broker.bootstrap(),
        topic,
        "\"reconnect.backoff.max.ms\" = \"1000\"",
    );
    let text = std::fs::read_to_string(&job).unwrap().replace(
        "chunk_bytes = \"16KiB\"",
        &format!("chunk_bytes = \"16KiB\"\n{options}"),
    );
    std::fs::write(&job, text).unwrap();
    let out = dir.join("out");
    let hold = dir.join("hold-seeks");
    std::fs::write(&hold, "").unwrap();
    let log = dir.join("run.log");
    let run = KillOnDrop::new(
        std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["run", job.to_str().unwrap()])
            .env(
                "SLUICE_FAULT",
                format!("fail_commit:2,refuse_seek:@{}", hold.display()),
            )
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let text = crate::kafka::wait_log(&log, "SLUICE_FAULT: refusing a seek", 1, 60);
    assert!(text.contains("SLUICE_FAULT: failing commit 2"), "{text}");
    let first = ids(&out).len();
    assert!(
        first > 0 && first < 800,
        "{first} records before the rewind"
    );
    broker.retain_from(topic, 0, 800);
    std::fs::remove_file(&hold).unwrap();
    Some((broker, job, out, run, log, first))
}

/// `rewind_past_retention` with `on_gap = "fail"`: the member refuses the partition, naming
/// the range, and runs on (before, the run stopped; before that, the partition went on from
/// the low watermark without a word: the assignment was checked, a rewind was not, and tansu
/// answers a fetch below its log with the records that follow). The next start refuses it at
/// its assignment.
#[test]
fn tansu_a_rewind_to_an_offset_retention_deleted_refuses_the_partition() {
    let dir = tempfile::tempdir().unwrap();
    let Some((_broker, job, out, run, log, first)) =
        rewind_past_retention(dir.path(), "rewound", "")
    else {
        return;
    };
    let gap = format!("records {first}..800 were deleted by the broker (retention)");
    refused_then_stopped(run, &log, &[&gap], 60);
    assert_eq!(ids(&out).len(), first, "nothing past the gap written");

    // The next start refuses the partition at its assignment.
    let log = dir.path().join("again.log");
    refused_then_stopped(spawn_run(&job, &log), &log, &[&gap], 60);
    assert_eq!(ids(&out).len(), first, "nothing past the gap written");
}

/// `rewind_past_retention` with `on_gap = "skip"`: the run goes on from offset 800, logs and
/// counts the range once (`sluice_offsets_skipped_total`), and writes every other record once.
#[test]
fn tansu_a_rewind_to_an_offset_retention_deleted_is_skipped_and_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    let Some((_broker, _job, out, run, log, first)) = rewind_past_retention(
        dir.path(),
        "skipped",
        "on_gap = \"skip\"\n[admin]\nlisten = \"127.0.0.1:0\"",
    ) else {
        return;
    };
    let addr = crate::admin::admin_addr(&log);
    wait_for(&out, first + 200, 60);
    let skipped = || {
        let (_, m) = crate::admin::http(&addr, "GET", "/metrics", None);
        crate::admin::metric_sum(&m, "sluice_offsets_skipped_total")
    };
    let want = (800 - first) as f64;
    wait_until("the skipped offsets in the metrics", 30, || {
        skipped() == want
    });
    assert!(run.stop("the run to stop", 60).success());
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        text.matches(&format!("records {first}..800 of partition skipped-0"))
            .count(),
        1,
        "{text}"
    );
    let want: Vec<usize> = (0..first).chain(800..1000).collect();
    assert_eq!(ids(&out), want);
}

/// Two partitions, retention having overtaken the checkpoint of one (`on_gap = "fail"`): the
/// member refuses that one, naming the range, counts it in `sluice_partitions_refused`, and
/// exports the other's new records; a reload (SIGHUP) with `on_gap = "skip"` then takes it
/// from the log's start. Before, the refusal failed the member's whole assignment and its
/// task (the process exited): the group handed the partition to the next member, which failed
/// the same way, so no partition of the topic was read anywhere.
#[test]
fn tansu_a_partition_refused_at_its_assignment_stops_alone() {
    let Some(mut broker) = Tansu::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let topic = "isolated";
    // Ids 0..1000, even ones on partition 0 and odd on 1: each checkpointed at offset 500.
    let (job, out) = exported(&broker, dir.path(), topic, 2, 1000);
    produce_events(&broker.bootstrap(), topic, 1000, 1000, 2, None);
    // Partition 0's offsets 500..800 (ids 1000, 1002, ..., 1598) are gone.
    broker.retain_from(topic, 0, 800);
    let text = std::fs::read_to_string(&job).unwrap() + "[admin]\nlisten = \"127.0.0.1:0\"\n";
    std::fs::write(&job, &text).unwrap();
    let log = dir.path().join("refusing.log");
    let run = spawn_run(&job, &log);
    let addr = crate::admin::admin_addr(&log);
    let refused = || {
        let (_, body) = crate::admin::http(&addr, "GET", "/metrics", None);
        crate::admin::metric_sum(&body, "sluice_partitions_refused")
    };
    let exported = |what: &str, want: &[usize]| {
        wait_until_showing(
            what,
            120,
            || ids(&out) == want,
            || format!(": {} records of {}", ids(&out).len(), want.len()),
        )
    };
    let odd: Vec<usize> = (1001..2000).step_by(2).collect();
    let want: Vec<usize> = (0..1000).chain(odd.iter().copied()).collect();
    exported(
        "partition 1's new records exported beside refused partition 0",
        &want,
    );
    wait_until("partition 0 counted as refused", 30, || refused() == 1.0);
    let seen = std::fs::read_to_string(&log).unwrap();
    let gap = "records 500..800 were deleted by the broker (retention)";
    assert!(
        seen.contains("partition refused") && seen.contains(gap),
        "{seen}"
    );
    // The API and the status page say which partition is not read, and why.
    let held = crate::admin::one_not_read(&addr, "isolated-0", "refused");
    assert!(held["error"].as_str().unwrap().contains(gap), "{held}");
    if let Some(browser) = crate::status_page::chromium() {
        let url = format!("http://{addr}/");
        let out = crate::status_page::browse(&browser, &url, &["--dump-dom"]);
        let dom = String::from_utf8_lossy(&out.stdout);
        assert!(
            dom.contains("<tr data-not-read=\"isolated-0\">") && dom.contains(gap),
            "the status page does not show the refused partition:\n{dom}"
        );
    }
    // The operator's remedy, applied by a reload: partition 0 goes on from offset 800.
    let skipping = text.replace(
        "chunk_bytes = \"16KiB\"",
        "chunk_bytes = \"16KiB\"\non_gap = \"skip\"",
    );
    std::fs::write(&job, skipping).unwrap();
    assert!(std::process::Command::new("kill")
        .args(["-HUP", &run.id().to_string()])
        .status()
        .unwrap()
        .success());
    let even: Vec<usize> = (1600..2000).step_by(2).collect();
    let mut want: Vec<usize> = want.into_iter().chain(even).collect();
    want.sort_unstable();
    exported("partition 0 read from offset 800 after the reload", &want);
    wait_until("no partition counted as refused", 30, || refused() == 0.0);
    assert_eq!(
        crate::admin::not_read(&addr),
        Vec::<serde_json::Value>::new()
    );
    let seen = std::fs::read_to_string(&log).unwrap();
    assert!(
        seen.contains("skipped (on_gap = skip), reading from 800"),
        "{seen}"
    );
    assert!(run.stop("the run to stop", 60).success(), "{seen}");
    assert_once(&out, 1500 + 200);
}
