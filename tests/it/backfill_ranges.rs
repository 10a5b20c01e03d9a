//! Backfill names sharing one destination: each records the offsets it reads, a name whose
//! offsets another name recorded there is refused before it writes, and a name run again
//! reads exactly the offsets its first run planned.

use std::path::Path;

use crate::helpers::*;
use crate::kafka::{cluster, produce_events};

/// Offsets `o` of every partition of the test topic (4 partitions), as `--from`/`--to` take them.
fn at(o: u32) -> String {
    (0..4)
        .map(|p| format!("{p}={o}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn visible_files(out: &Path) -> Vec<std::path::PathBuf> {
    let mut f = files_under(out, true);
    f.retain(|p| !p.to_string_lossy().contains("/_sluice/"));
    f.sort();
    f
}

/// Two names over overlapping offsets into one folder: the second is refused before it
/// writes, naming the first and the offsets, and takes back its range record (so the name
/// can be run over another range). Over the offsets that follow it runs, and every record is
/// in the folder once. Run again after more records arrived, a name reads the offsets its
/// first run planned (`--to latest` is the end then), not the new end. Before, the second
/// name wrote offsets 200..250 of every partition a second time, and the third run wrote the
/// new records.
#[test]
fn backfills_of_overlapping_offsets_into_one_folder_are_refused() {
    let topic = "ranges";
    let c = cluster(topic);
    let bootstrap = c.bootstrap_servers();
    // 500 a partition: event i is offset i / 4 of partition i % 4.
    produce_events(&bootstrap, topic, 0, 2000, 4, None);
    let dir = tempfile::tempdir().unwrap();
    let job = crate::kafka::job_with(dir.path(), &bootstrap, topic, "");
    let jobs = job.to_str().unwrap();
    let out = dir.path().join("out");

    sluice_ok(&["backfill", jobs, "--name", "a", "--to", &at(250)]);
    let ids = trace_ids(&out);
    assert_eq!(ids.len(), 1000, "offsets 0..250 of 4 partitions");
    assert!(ids.values().all(|c| *c == 1));
    let written = visible_files(&out);

    let err = sluice_refused(&["backfill", jobs, "--name", "b", "--from", &at(200)]);
    assert!(
        err.contains("backfill `a`") && err.contains("offsets 200..250"),
        "{err}"
    );
    assert_eq!(visible_files(&out), written, "the refused backfill wrote");
    assert!(
        !out.join("_sluice/b/range.json").exists(),
        "the refused backfill left its range recorded"
    );
    // Offsets past the log's end: before, moved to its end, and the run ended "done" short
    // of what was asked for.
    let past = [
        "backfill",
        jobs,
        "--name",
        "past",
        "--from",
        &at(250),
        "--to",
        &at(900),
    ];
    let err = sluice_refused(&past);
    assert!(
        err.contains("the range ends at offset 900, past the log's end (500)"),
        "{err}"
    );
    assert_eq!(visible_files(&out), written, "the refused backfill wrote");
    // A partition, or a topic, the job does not read (a typo): its offsets went unused and
    // every partition ran from the default, the whole topic. Times the wrong way round ran
    // nothing and ended "done".
    for (flag, asked, says) in [
        ("--from", "9=100", "names partition 9"),
        ("--from", "ranges:7=100", "names ranges:7"),
        ("--to", "2024-05-01T00:00:00Z", "later than --to"),
    ] {
        let mut args = vec!["backfill", jobs, "--name", "typo", flag, asked];
        if says.contains("later") {
            args.extend(["--from", "2024-06-01T00:00:00Z"]);
        }
        let err = sluice_refused(&args);
        assert!(err.contains(says), "{args:?}: {err}");
    }
    assert_eq!(visible_files(&out), written, "a refused backfill wrote");

    sluice_ok(&["backfill", jobs, "--name", "b", "--from", &at(250)]);
    let ids = trace_ids(&out);
    assert_eq!(ids.len(), 2000);
    assert!(ids.values().all(|c| *c == 1), "a record written twice");

    // The name's recorded plan ends where its first run ended.
    produce_events(&bootstrap, topic, 2000, 400, 4, None);
    sluice_ok(&["backfill", jobs, "--name", "b", "--from", &at(250)]);
    let ids = trace_ids(&out);
    assert_eq!(ids.len(), 2000, "the rerun read past its planned end");
    // A new name over the new records only, and one over everything into another folder.
    let err = sluice_refused(&["backfill", jobs, "--name", "c"]);
    assert!(
        err.contains("backfill `a`") && err.contains("backfill `b`"),
        "{err}"
    );
    sluice_ok(&["backfill", jobs, "--name", "c", "--from", &at(500)]);
    let ids = trace_ids(&out);
    assert_eq!(ids.len(), 2400);
    assert!(ids.values().all(|c| *c == 1), "a record written twice");
    let other = dir.path().join("other");
    sluice_ok(&[
        "backfill",
        jobs,
        "--name",
        "d",
        "--url",
        other.to_str().unwrap(),
    ]);
    assert_eq!(trace_ids(&other).len(), 2400);
}

/// A live job first claiming partitions a backfill recorded in its folder (here a folder
/// inside it, which readers of the live folder read too): past the range of a backfill that
/// has committed it starts where that range ends, recorded so the backfill, interrupted
/// here after its first commit, then finishes its range; every record is in the folder once
/// (before, the live job wrote the backfill's records again; then the rerun of the backfill
/// was refused, its records lost). A backfill that recorded its range and has not committed
/// yet (paused before its first commit: its record is written here as it would) has the
/// live job refuse that partition alone, naming the backfill, and export the others (before,
/// it stopped the job). The name is taken in the live folder by
/// the first, for another folder; a folder around the live one is refused.
#[test]
fn a_live_job_starts_past_a_committed_backfill_and_refuses_a_partition_of_an_uncommitted_one() {
    let topic = "first";
    let c = cluster(topic);
    let bootstrap = c.bootstrap_servers();
    produce_events(&bootstrap, topic, 0, 8000, 4, None);
    let dir = tempfile::tempdir().unwrap();
    let job = crate::kafka::job_with(dir.path(), &bootstrap, topic, "");
    let jobs = job.to_str().unwrap();
    let out = dir.path().join("out");
    let inside = out.join("history");
    let history = [
        "backfill",
        jobs,
        "--to",
        &at(1500),
        "--url",
        inside.to_str().unwrap(),
    ];
    let crashed = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(history)
        .env("SLUICE_FAULT", "after_checkpoint:1")
        .output()
        .unwrap();
    assert!(!crashed.status.success());
    let partial = trace_ids(&out).len();
    assert!(partial > 0 && partial < 6000, "{partial}");
    let elsewhere = out.join("elsewhere").display().to_string();
    let around = dir.path().display().to_string();
    for (url, taken) in [
        (&elsewhere, "is taken in the live job's"),
        (&around, "holds the live job's destination"),
    ] {
        let refused = sluice(&["backfill", jobs, "--to", &at(300), "--url", url]);
        let err = String::from_utf8_lossy(&refused.stderr);
        assert!(
            !refused.status.success() && err.contains(taken),
            "{url}: {err}"
        );
    }
    // Another folder inside the live one, over offsets the first recorded: refused (the
    // first left a copy of its record in the live folder).
    let second = out.join("second");
    let err = sluice_refused(&[
        "backfill",
        jobs,
        "--name",
        "second",
        "--to",
        &at(100),
        "--url",
        second.to_str().unwrap(),
    ]);
    assert!(err.contains("backfill `kafka-it-backfill`"), "{err}");
    assert!(
        !out.join("_sluice/second/range.json").exists(),
        "its copy was left"
    );
    let log = dir.path().join("live.log");
    let mut live = crate::kafka::spawn_run(&job, &log);
    crate::kafka::wait_for(&out, 8000 - 6000 + partial, 120);
    let text = crate::kafka::wait_log(&log, "committed", 1, 0);
    assert!(
        text.contains("the partition starts where the backfills' ranges"),
        "{text}"
    );
    // The offsets the stopped backfill has not written are named, in the log and by
    // `checkpoints list`, until it has run again.
    assert!(
        text.contains("the partition starts past the range of a backfill that has not finished it"),
        "{text}"
    );
    sigterm(live.child());
    assert!(wait_exit(live.child(), "the live job to stop", 60).success());
    let listed = sluice_ok(&["checkpoints", "list", jobs]);
    assert!(
        listed.contains("backfill kafka-it-backfill (--from earliest --to ")
            && listed.contains(", into history/): not finished")
            && listed.contains(" not yet")
            && listed.contains("`sluice backfill --name kafka-it-backfill"),
        "{listed}"
    );
    sluice_ok(&history);
    let ids = trace_ids(&out);
    assert_eq!(ids.len(), 8000, "{text}");
    assert!(ids.values().all(|c| *c == 1), "a record twice:\n{text}");
    let listed = sluice_ok(&["checkpoints", "list", jobs]);
    assert!(
        listed.contains(", into history/): finished") && !listed.contains("not yet"),
        "{listed}"
    );

    // Another job (its own group) and folder, where a backfill recorded offsets 0..400 of
    // partition 2 and has not committed.
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let job2 = other.join("job.toml");
    std::fs::write(
        &job2,
        std::fs::read_to_string(&job)
            .unwrap()
            .replace("name = \"kafka-it\"", "name = \"kafka-it2\""),
    )
    .unwrap();
    let paused = other.join("out/_sluice/paused/range.json");
    std::fs::create_dir_all(paused.parent().unwrap()).unwrap();
    std::fs::write(
        &paused,
        format!(r#"{{"from":"earliest","to":"latest","repo":"nginx_access","spans":[{{"topic":"{topic}","partition":2,"from":0,"to":400}}]}}"#),
    )
    .unwrap();
    let log2 = dir.path().join("live2.log");
    let live2 = crate::kafka::spawn_run(&job2, &log2);
    // Partition 2 alone is refused; the others are exported (ids 2 mod 4 are partition 2's).
    let others: Vec<String> = (0..8000)
        .filter(|i| i % 4 != 2)
        .map(|i| format!("t{i}"))
        .collect();
    let out2 = other.join("out");
    wait_until_showing(
        "partitions 0, 1 and 3 exported beside refused partition 2",
        120,
        || trace_ids(&out2).len() >= others.len(),
        || {
            let text = std::fs::read_to_string(&log2).unwrap_or_default();
            format!(": {} of {}\n{text}", trace_ids(&out2).len(), others.len())
        },
    );
    let text = crate::kafka::wait_log(&log2, "partition refused", 1, 30);
    assert!(
        text.contains("partition refused")
            && text.contains("backfill `paused` (--from earliest --to latest) reads offsets 0..400 of partition first-2")
            && text.contains("once the backfill has committed"),
        "{text}"
    );
    assert!(live2.stop("the live job to stop", 60).success(), "{text}");
    let mut written: Vec<String> = trace_ids(&out2).into_keys().collect();
    written.sort_unstable();
    let mut want = others;
    want.sort_unstable();
    assert_eq!(
        written, want,
        "partition 2 was written, or another partition's record lost"
    );
}

/// A name's recorded range ending past the log's end now (the topic was re-created since
/// its first run: its record is written here as that run left it) fails at once, naming the
/// partition; before, the run waited for other records to take those offsets. The same
/// record made from another state folder, with nothing committed, is refused: that run may
/// still be going on.
#[test]
fn a_recorded_range_past_the_end_of_a_re_created_topic_fails_at_once() {
    let topic = "recreated";
    let c = cluster(topic);
    let bootstrap = c.bootstrap_servers();
    produce_events(&bootstrap, topic, 0, 400, 4, None);
    let dir = tempfile::tempdir().unwrap();
    let job = crate::kafka::job_with(dir.path(), &bootstrap, topic, "");
    let record = dir.path().join("out/_sluice/old/range.json");
    // As the run from this state folder left it.
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("backfill-id"), "the-state-id").unwrap();
    std::fs::create_dir_all(record.parent().unwrap()).unwrap();
    let spans: Vec<String> = (0..4)
        .map(|p| {
            format!(
                r#"{{"topic":"{topic}","partition":{p},"from":0,"to":{}}}"#,
                if p == 1 { 900 } else { 100 }
            )
        })
        .collect();
    let write_spans = |state: &str, spans: &[String]| {
        std::fs::write(
            &record,
            format!(
                r#"{{"from":"earliest","to":"latest","repo":"nginx_access","spans":[{}],"state":"{state}","by":"host:/elsewhere"}}"#,
                spans.join(",")
            ),
        )
        .unwrap()
    };
    let write = |state: &str| write_spans(state, &spans);
    // Made from another state folder, which committed nothing: it may be running.
    write("another-state-id");
    let err = sluice_refused(&["backfill", job.to_str().unwrap(), "--name", "old"]);
    assert!(
        err.contains(
            "by a run from host:/elsewhere, which has committed nothing: it may be running"
        ),
        "{err}"
    );
    write("the-state-id");
    let log = dir.path().join("backfill.log");
    let mut run = KillOnDrop::new(
        std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["backfill", job.to_str().unwrap(), "--name", "old"])
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let status = wait_exit(run.child(), "the backfill to fail", 60);
    let err = std::fs::read_to_string(&log).unwrap();
    assert!(!status.success(), "{err}");
    assert!(
        err.contains("recreated-1: the log ends at offset 100, before the end of the range planned at the first run (900)"),
        "{err}"
    );
    // A partition the topic no longer has (re-created with fewer): before, nothing ended it,
    // and the run waited for good.
    let spans: Vec<String> = (0..5)
        .map(|p| format!(r#"{{"topic":"{topic}","partition":{p},"from":0,"to":100}}"#))
        .collect();
    write_spans("the-state-id", &spans);
    let (status, err) = sluice_within(&["backfill", job.to_str().unwrap(), "--name", "old"], 60);
    assert!(
        !status.success()
            && err.contains(
                "partition recreated/4 of the range planned at the first run is not on the broker"
            ),
        "{err}"
    );
}

/// A live partition committed by an earlier version recorded no start, so any offset below
/// its checkpoint may be in its files: a backfill into its folder over such offsets is
/// refused, naming why. Before, only the newest commit's files counted, and a backfill over
/// the offsets of its older commits wrote them a second time.
#[test]
fn a_backfill_below_a_live_checkpoint_with_no_recorded_start_is_refused() {
    let topic = "upgraded";
    let c = cluster(topic);
    let bootstrap = c.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let job = crate::kafka::job_with(dir.path(), &bootstrap, topic, "");
    let jobs = job.to_str().unwrap();
    let out = dir.path().join("out");
    let live = crate::kafka::spawn_run(&job, &dir.path().join("live.log"));
    // Two rounds, each committed before the next: every partition's newest commit holds
    // offsets 100..200 only.
    produce_events(&bootstrap, topic, 0, 400, 4, None);
    crate::kafka::wait_for(&out, 400, 120);
    produce_events(&bootstrap, topic, 400, 400, 4, None);
    crate::kafka::wait_for(&out, 800, 120);
    sigterm(&live);
    assert!(live.wait_with_output().unwrap().status.success());
    // As an earlier version left it: checkpoints, no start records.
    std::fs::remove_dir_all(out.join("_sluice/kafka-it/origins")).unwrap();
    let before = visible_files(&out);

    let err = sluice_refused(&["backfill", jobs, "--to", &at(50)]);
    assert!(
        err.contains(
            "upgraded/0 offsets 0..50 (it committed the partition up to 200 and recorded no start"
        ),
        "{err}"
    );
    assert_eq!(visible_files(&out), before, "the refused backfill wrote");
    let ids = trace_ids(&out);
    assert_eq!(ids.len(), 800);
    assert!(ids.values().all(|c| *c == 1), "a record twice");
}

/// A backfill that committed into the live folder before the live job's start records were
/// lost (or were never made, by an earlier version) finishes when run again: its run looked
/// when it started, and refusing it now would leave its range half written. A new name over
/// those offsets is refused.
#[test]
fn a_committed_backfill_into_the_live_folder_finishes_when_no_live_start_is_recorded() {
    let topic = "resumed";
    let c = cluster(topic);
    let bootstrap = c.bootstrap_servers();
    // 100 a partition before the live job starts (at `latest`), 100 after.
    produce_events(&bootstrap, topic, 0, 400, 4, None);
    let dir = tempfile::tempdir().unwrap();
    let (job, live) = crate::owners::live_at_latest(dir.path(), &bootstrap, topic, &[]);
    let jobs = job.to_str().unwrap();
    let out = dir.path().join("out");
    let origins = out.join("_sluice/kafka-it/origins");
    produce_events(&bootstrap, topic, 400, 400, 4, None);
    crate::kafka::wait_for(&out, 400, 120);
    sigterm(&live);
    assert!(live.wait_with_output().unwrap().status.success());
    // The history the live job did not write.
    sluice_ok(&["backfill", jobs, "--to", &at(100)]);
    std::fs::remove_dir_all(&origins).unwrap();
    let before = visible_files(&out);
    sluice_ok(&["backfill", jobs, "--to", &at(100)]);
    assert_eq!(
        visible_files(&out),
        before,
        "the finished backfill wrote again"
    );
    let err = sluice_refused(&["backfill", jobs, "--to", &at(50), "--name", "other"]);
    assert!(
        err.contains(
            "resumed/0 offsets 0..50 (it committed the partition up to 200 and recorded no start"
        ),
        "{err}"
    );
    let ids = trace_ids(&out);
    assert_eq!(ids.len(), 800);
    assert!(ids.values().all(|c| *c == 1), "a record twice");
}

/// A backfill stopped before its first commit spills what it read; run again over a smaller
/// range (allowed: it committed nothing), it must not restore the spilled records past the
/// new range's end. Before, the restore took them all: the run committed offsets 0..500 of
/// every partition while its range record said 0..30, so the live job (starting past the
/// range) and other names (checked against it) wrote those records again.
#[test]
fn a_spill_of_a_wider_range_is_not_restored_past_the_rerun_range() {
    let topic = "respill";
    let c = cluster(topic);
    let bootstrap = c.bootstrap_servers();
    produce_events(&bootstrap, topic, 0, 2000, 4, None);
    let dir = tempfile::tempdir().unwrap();
    let job = crate::kafka::job_with(dir.path(), &bootstrap, topic, "");
    let text = std::fs::read_to_string(&job).unwrap().replace(
        "state_dir = \"state\"",
        "state_dir = \"state\"\nstop_deadline = \"2s\"",
    ) + "\n[admin]\nlisten = \"127.0.0.1:0\"\n";
    std::fs::write(&job, text).unwrap();
    let jobs = job.to_str().unwrap();
    let out = dir.path().join("out");

    // The first run's worker is held: everything it reads waits in its channel.
    let hold = dir.path().join("hold");
    std::fs::write(&hold, b"").unwrap();
    let log = dir.path().join("first.log");
    let first = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["backfill", jobs, "--name", "n"])
        .env("SLUICE_FAULT", format!("hold_worker:@{}", hold.display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut first = KillOnDrop::new(first);
    let addr = crate::admin::admin_addr(&log);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (_, m) = crate::admin::http(&addr, "GET", "/metrics", None);
        let read = crate::admin::metric_sum(&m, "sluice_records_in_total");
        if read >= 2000.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the held backfill never read its 2000 records (read {read})"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    sigterm(first.child());
    let spilled = crate::kafka::wait_log(&log, "spilled the channel to disk", 1, 60);
    assert!(spilled.contains("spilled the channel"), "{spilled}");
    std::fs::remove_file(&hold).unwrap();
    let status = wait_exit(first.child(), "the stopped backfill's exit", 60);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !status.success() && text.contains("stopped before the end of its range"),
        "{text}"
    );
    assert!(dir.path().join("state/spill/manifest.json").exists());
    assert_eq!(trace_ids(&out).len(), 0, "the held run committed");

    // The same name over 0..30: what it writes is its range, once.
    let said = sluice_ok(&["backfill", jobs, "--name", "n", "--to", &at(30)]);
    let ids = trace_ids(&out);
    assert_eq!(
        ids.len(),
        120,
        "offsets 0..30 of 4 partitions, not the spill's 0..500:\n{said}"
    );
    assert!(ids.values().all(|c| *c == 1));
    let range = std::fs::read_to_string(out.join("_sluice/n/range.json")).unwrap();
    assert!(range.contains("\"to\":30"), "{range}");
    assert!(!dir.path().join("state/spill/manifest.json").exists());
}

/// A backfill into a folder inside a live job's Delta table is refused before it writes: the
/// table's readers read only the files its log names, so it would be a second table inside
/// the first that they never read, which a vacuum of the live table deletes. Into the live
/// folder itself (its commits join the table), it runs.
#[test]
fn a_backfill_into_a_folder_inside_a_live_delta_table_is_refused() {
    let topic = "nested";
    let c = cluster(topic);
    let bootstrap = c.bootstrap_servers();
    produce_events(&bootstrap, topic, 0, 400, 4, None);
    let dir = tempfile::tempdir().unwrap();
    let job = crate::kafka::job_with(dir.path(), &bootstrap, topic, "");
    let text = std::fs::read_to_string(&job)
        .unwrap()
        .replace("[sink]\n", "[sink]\ntable = \"delta\"\n");
    std::fs::write(&job, text).unwrap();
    let jobs = job.to_str().unwrap();
    let out = dir.path().join("out");
    let inside = out.join("history");
    let err = sluice_refused(&[
        "backfill",
        jobs,
        "--to",
        &at(100),
        "--url",
        inside.to_str().unwrap(),
    ]);
    assert!(err.contains("inside the live job's Delta table"), "{err}");
    assert!(!inside.exists(), "the refused backfill wrote {inside:?}");
    let done = sluice_ok(&[
        "backfill",
        jobs,
        "--to",
        &at(100),
        "--url",
        out.to_str().unwrap(),
    ]);
    assert!(done.contains("400 rows"), "{done}");
    assert!(out.join("_delta_log").exists());
}

/// A live job named like another job's default backfill (`kafka-it-backfill`) has committed
/// in the shared folder; a backfill of `kafka-it` there under its default name is refused,
/// naming the other job. Before, it took the live job's partitions over (a newer term fences
/// it) and resumed from its checkpoints, not exporting the range asked for.
#[test]
fn a_backfill_named_like_another_live_job_is_refused() {
    let topic = "names";
    let c = cluster(topic);
    let bootstrap = c.bootstrap_servers();
    produce_events(&bootstrap, topic, 0, 400, 4, None);
    let dir = tempfile::tempdir().unwrap();
    let job = crate::kafka::job_with(dir.path(), &bootstrap, topic, "");
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let live = other.join("job.toml");
    std::fs::write(
        &live,
        std::fs::read_to_string(&job)
            .unwrap()
            .replace("name = \"kafka-it\"", "name = \"kafka-it-backfill\"")
            .replace(
                "url = \"out/\"",
                &format!("url = {:?}", dir.path().join("out")),
            ),
    )
    .unwrap();
    let log = dir.path().join("live.log");
    let mut run = crate::kafka::spawn_run(&live, &log);
    crate::kafka::wait_for(&dir.path().join("out"), 400, 120);
    sigterm(run.child());
    assert!(wait_exit(run.child(), "the live job to stop", 60).success());
    let err = sluice_refused(&["backfill", job.to_str().unwrap(), "--to", &at(50)]);
    assert!(
        err.contains("`kafka-it-backfill`")
            && err.contains("is the name of a job that is not a backfill"),
        "{err}"
    );
}

/// A backfill of the history up to offset 50, then the live job with `auto_offset_reset =
/// "latest"`, which starts at the log's end (100): offsets 50..100 are exported by neither,
/// and the live job's first start says so, naming the backfill.
#[test]
fn a_live_start_past_a_backfills_end_warns_of_the_offsets_between() {
    let topic = "between";
    let c = cluster(topic);
    let bootstrap = c.bootstrap_servers();
    produce_events(&bootstrap, topic, 0, 400, 4, None);
    let dir = tempfile::tempdir().unwrap();
    let job = crate::kafka::job_with(dir.path(), &bootstrap, topic, "");
    sluice_ok(&["backfill", job.to_str().unwrap(), "--to", &at(50)]);
    let text = std::fs::read_to_string(&job).unwrap().replace(
        "chunk_bytes = \"16KiB\"",
        "chunk_bytes = \"16KiB\"\nauto_offset_reset = \"latest\"",
    );
    std::fs::write(&job, text).unwrap();
    let log = dir.path().join("live.log");
    let mut run = crate::kafka::spawn_run(&job, &log);
    let text = crate::kafka::wait_log(&log, "exported by neither", 4, 60);
    sigterm(run.child());
    assert!(wait_exit(run.child(), "the live job to stop", 60).success());
    assert_eq!(text.matches("exported by neither").count(), 4, "{text}");
    assert!(text.contains("offsets 50..100"), "{text}");
}
