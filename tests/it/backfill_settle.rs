//! A refused backfill takes back its range record only once the commits its earlier runs
//! left unfinished are settled: their files were visible, and without the record the live job
//! wrote their offsets again.

use crate::helpers::*;
use crate::kafka::{cluster, produce_events};

/// A backfill into the live folder dies after its first commit's files became visible and
/// before its checkpoint. The live job, starting, refuses its partitions at the backfill's
/// range (not committed) having recorded where they start. The backfill run again is refused
/// (the live job started inside its range): it settles its unfinished commit (the visible
/// files go), then takes back its range record, and the live job, judging its partitions
/// again by itself, writes every record once. Before, the record was taken back with the
/// files still there, and the live job wrote their records a second time; and the live job
/// stopped at the range (later, it refused the partitions until restarted).
#[test]
fn a_refused_backfill_settles_its_unfinished_commits_before_it_takes_back_its_range() {
    let (_cluster, dir, job) = crashed_backfill("settle");
    let jobs = job.to_str().unwrap();
    let out = dir.path().join("out");
    let crashed: Vec<_> = files_under(&out, true)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    assert!(!crashed.is_empty());
    // The live job refuses each partition at the range of a backfill that has not
    // committed, and keeps running.
    let log = dir.path().join("live.log");
    let live = crate::kafka::spawn_run(&job, &log);
    let text = crate::kafka::wait_log(&log, "once the backfill has committed", 4, 120);
    assert_eq!(
        text.matches("partition refused").count(),
        4,
        "every partition refused at the backfill's range:\n{text}"
    );
    // The backfill again: refused, the live job having started inside its range.
    let err = sluice_refused(&["backfill", jobs, "--to", "latest"]);
    assert!(err.contains("other writers of"), "{err}");
    let left: Vec<_> = crashed.iter().filter(|p| p.exists()).collect();
    assert!(
        left.is_empty(),
        "the refused backfill left its unfinished commit's files visible: {left:?}"
    );
    // The range taken back, the live job takes its partitions by itself (judged again after
    // 30 s) and writes every record once.
    let text = crate::kafka::wait_log(&log, "what refused it is gone", 4, 150);
    assert_eq!(
        text.matches("what refused it is gone").count(),
        4,
        "the live job did not take its partitions again by itself:\n{text}"
    );
    crate::kafka::wait_for(&out, 4000, 120);
    let stopped = live.stop("the live job to stop", 60);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(stopped.success(), "{text}");
    let ids = trace_ids(&out);
    assert_eq!(ids.len(), 4000);
    assert!(ids.values().all(|c| *c == 1), "a record twice");
}

/// A backfill that cannot tell whether its `--url` is the live job's destination spelled
/// another way (the probe cannot be looked for there: the live store does not answer) is
/// refused, having written nothing. Before, it went on unchecked against what the live job
/// wrote, which a destination spelled another way writes twice.
#[test]
fn a_backfill_whose_probe_cannot_be_looked_for_is_refused() {
    let topic = "probe";
    let c = cluster(topic);
    let bootstrap = c.bootstrap_servers();
    produce_events(&bootstrap, topic, 0, 100, 4, None);
    let dir = tempfile::tempdir().unwrap();
    let job = crate::kafka::job_with(dir.path(), &bootstrap, topic, "");
    // The live job's destination: a store nobody answers at.
    let text = std::fs::read_to_string(&job).unwrap().replace(
        "url = \"out/\"",
        "url = \"s3://nowhere/live/\"\n[sink.storage]\nendpoint = \"http://127.0.0.1:9\"\nallow_http = true\nregion = \"us-east-1\"\naccess_key_id = \"k\"\nsecret_access_key = \"s\"",
    );
    assert!(text.contains("nowhere"), "{text}");
    std::fs::write(&job, text).unwrap();
    let ours = dir.path().join("history");
    let (status, err) = sluice_within(
        &[
            "backfill",
            job.to_str().unwrap(),
            "--to",
            "latest",
            "--url",
            ours.to_str().unwrap(),
        ],
        300,
    );
    assert!(!status.success(), "{err}");
    assert!(err.contains("could not tell whether --url"), "{err}");
    assert!(trace_ids(&ours).is_empty(), "the refused backfill wrote");
}

/// A backfill without a table into a folder that holds one is refused before it records its
/// range (or its schema): that range would stop the table's job from starting the
/// partitions inside it. Before, the range was recorded, then the run refused.
#[test]
fn a_table_less_backfill_into_a_table_is_refused_before_it_records_its_range() {
    let topic = "tabled";
    let c = cluster(topic);
    let bootstrap = c.bootstrap_servers();
    produce_events(&bootstrap, topic, 0, 100, 4, None);
    let dir = tempfile::tempdir().unwrap();
    let job = crate::kafka::job_with(dir.path(), &bootstrap, topic, "");
    let table = dir.path().join("table");
    std::fs::create_dir_all(table.join("_delta_log")).unwrap();
    std::fs::write(table.join("_delta_log/00000000000000000000.json"), "{}\n").unwrap();
    let err = sluice_refused(&[
        "backfill",
        job.to_str().unwrap(),
        "--to",
        "latest",
        "--url",
        table.to_str().unwrap(),
    ]);
    assert!(err.contains("holds a Delta table"), "{err}");
    let recorded = files_under(&table.join("_sluice"), false);
    assert!(
        recorded.is_empty(),
        "the refused backfill recorded its range or schema: {recorded:?}"
    );
}

/// A backfill dies after its first commit's files became visible and before its checkpoint.
/// A run of the name from another state folder is refused (the first one may be running);
/// its record removed as the refusal says, a run of the name over another topic (the job
/// changed) records its range and claims only that topic's partitions. The first run's
/// visible files must be settled (removed) before that: nothing else would claim their
/// partition again. Before, they stayed visible for good, with no checkpoint and no range
/// holding their offsets.
#[test]
fn a_backfill_whose_earlier_record_was_removed_settles_that_runs_unfinished_commits() {
    let (c, dir, job) = crashed_backfill("removed");
    let jobs = job.to_str().unwrap();
    let out = dir.path().join("out");
    // Another machine's state folder.
    let text = std::fs::read_to_string(&job).unwrap();
    let state = text.lines().find(|l| l.starts_with("state_dir")).unwrap();
    std::fs::write(&job, text.replace(state, "state_dir = \"elsewhere\"")).unwrap();
    c.create_topic("other", 1, 1).unwrap();
    let err = sluice_refused(&["backfill", jobs, "--from", "latest", "--to", "latest"]);
    assert!(err.contains("which has committed nothing"), "{err}");
    std::fs::remove_file(out.join("_sluice/kafka-it-backfill/range.json")).unwrap();
    let text = std::fs::read_to_string(&job).unwrap();
    std::fs::write(
        &job,
        text.replace("topics = [\"removed\"]", "topics = [\"other\"]"),
    )
    .unwrap();
    let (status, log) = sluice_within(
        &["backfill", jobs, "--from", "latest", "--to", "latest"],
        60,
    );
    assert!(status.success(), "{log}");
    assert!(
        trace_ids(&out).is_empty(),
        "the earlier run's unfinished commit's files are still visible"
    );
}

/// A topic of 4,000 events on a Mock cluster and a backfill of it into the live folder that
/// died after its first commit's files became visible and before its checkpoint.
fn crashed_backfill(
    topic: &str,
) -> (
    rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    tempfile::TempDir,
    std::path::PathBuf,
) {
    let c = cluster(topic);
    let bootstrap = c.bootstrap_servers();
    produce_events(&bootstrap, topic, 0, 4000, 4, None);
    let dir = tempfile::tempdir().unwrap();
    let job = crate::kafka::job_with(dir.path(), &bootstrap, topic, "");
    let crashed = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["backfill", job.to_str().unwrap(), "--to", "latest"])
        .env("SLUICE_FAULT", "after_files:1")
        .output()
        .unwrap();
    assert!(!crashed.status.success());
    assert!(
        !trace_ids(&dir.path().join("out")).is_empty(),
        "the crashed backfill's files are not visible"
    );
    (c, dir, job)
}
