//! `sluice run` with the file source: exactly-once output across rotation, partitioned paths,
//! kill -9 at random moments and at chosen points of the commit, and graceful stops with a
//! spill. Roll-backs (`--from-checkpoint`) are in `rollback.rs`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::*;

/// Writes `n` web-log events with unique trace ids `t<i>` over two days of record time.
pub(super) fn write_events(path: &Path, n: usize, start: usize) {
    let mut s = String::with_capacity(n * 200);
    for i in start..start + n {
        let minute = i % 2880;
        s.push_str(&format!(
            "{{\"ts\":\"2024-05-0{}T{:02}:{:02}:00Z\",\"host\":\"h{}\",\"method\":\"GET\",\"path\":\"/p/{}\",\"status\":{},\"bytes\":{},\"latency_ms\":{}.5,\"region\":\"r{}\",\"user_id\":{},\"cache_hit\":{},\"trace_id\":\"t{i}\"}}\n",
            1 + minute / 1440,
            (minute % 1440) / 60,
            minute % 60,
            i % 7,
            i % 100,
            200 + (i % 5) * 100,
            i * 3,
            i % 11,
            i % 4,
            i * 7,
            i % 2 == 0
        ));
        if i % 997 == 0 {
            s.push_str("{\"ts\": broken\n");
        }
    }
    std::fs::write(path, s).unwrap();
}

/// How many broken lines `write_events(_, n, start)` adds.
pub(super) fn broken(start: usize, n: usize) -> usize {
    (start..start + n).filter(|i| i % 997 == 0).count()
}

pub(super) fn job_file(dir: &Path, inputs: &[PathBuf], extra: &str) -> PathBuf {
    let paths: Vec<String> = inputs
        .iter()
        .map(|p| format!("{:?}", p.display().to_string()))
        .collect();
    let text = format!(
        r#"
[job]
name = "it"
state_dir = "state"
stop_deadline = "20s"

[source]
kind = "file"
chunk_bytes = "64KiB"
paths = [{}]

[repo]
schema = {:?}

[channel]
max_bytes = "8MiB"
max_batches = 16
batch_rows = 1024

[sink]
url = "out/"
{extra}
"#,
        paths.join(", "),
        schema("nginx_access").display().to_string()
    );
    let p = dir.join("job.toml");
    std::fs::write(&p, text).unwrap();
    p
}

pub(super) fn start(job: &Path, env: &[(&str, &str)]) -> Child {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sluice"));
    c.arg("run")
        .arg(job)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c.env("SLUICE_LOG", "info");
    for (k, v) in env {
        c.env(k, v);
    }
    c.spawn().expect("start sluice run")
}

pub(super) fn finish(child: Child) -> (bool, String) {
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Runs `job` with its workers held (`hold_worker`) and stops it with SIGTERM once an item is
/// in the channel: the stop, past its deadline (1 s for this run), spills what the channel
/// holds, and the workers are let go. Whether a spill was left, and the stop's log.
pub(super) fn stop_until_spilled(dir: &Path, job: &Path) -> (bool, String) {
    let original = std::fs::read_to_string(job).unwrap();
    let quick = original.replace("stop_deadline = \"20s\"", "stop_deadline = \"1s\"");
    assert_ne!(quick, original, "the job sets stop_deadline = \"20s\"");
    std::fs::write(job, quick).unwrap();
    let hold = dir.join("hold-workers");
    let log = dir.join("stop.log");
    let mut child = run_held(job, &log, &hold, "hold_worker");
    said(&log, "an item is in the channel");
    sigterm(&child);
    let spilled = crate::kafka::wait_log(&log, "spilled the channel to disk", 1, 60);
    std::fs::remove_file(&hold).unwrap();
    let status = wait_exit(child.child(), "the stopped run", 60);
    std::fs::write(job, original).unwrap();
    let log = std::fs::read_to_string(&log).unwrap();
    // A file job stopped before its end says so, and exits non-zero: it is not done.
    assert!(
        status.success() != log.contains("stopped before the end of its input"),
        "a graceful stop exits 0 only when the run is done:\n{spilled}"
    );
    assert!(log.contains("to=Stopping"), "{log}");
    (dir.join("state/spill/manifest.json").exists(), log)
}

/// Every object of the gzip JSON lines files under `out`.
pub(super) fn gzip_json_rows(out: &Path) -> Vec<serde_json::Value> {
    let mut rows = Vec::new();
    for p in files_under(out, true) {
        if !p.to_string_lossy().ends_with(".jsonl.gz") {
            continue;
        }
        let mut text = String::new();
        use std::io::Read;
        flate2::read::MultiGzDecoder::new(std::fs::File::open(&p).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        rows.extend(text.lines().map(|l| serde_json::from_str(l).unwrap()));
    }
    rows
}

pub(super) fn run_to_end(job: &Path) -> String {
    let (ok, text) = finish(start(job, &[]));
    assert!(ok, "sluice run failed:\n{text}");
    text
}

pub(super) fn dead_letter_count(out: &Path) -> usize {
    lines_in(&out.join("_dead_letters/nginx_access"))
}

/// Lines in the visible files of a folder.
pub(super) fn lines_in(dir: &Path) -> usize {
    if !dir.exists() {
        return 0;
    }
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .map(|p| std::fs::read_to_string(p).unwrap().lines().count())
        .sum()
}

pub(super) fn assert_exactly_once(out: &Path, n: usize, bad: usize) {
    let counts = trace_ids(out);
    let dups: Vec<_> = counts.iter().filter(|(_, c)| **c > 1).take(5).collect();
    assert!(dups.is_empty(), "duplicated records: {dups:?}");
    let missing: Vec<String> = (0..n)
        .map(|i| format!("t{i}"))
        .filter(|t| !counts.contains_key(t))
        .take(5)
        .collect();
    assert!(
        missing.is_empty(),
        "missing records: {missing:?} ({} of {n} present)",
        counts.len()
    );
    assert_eq!(counts.len(), n);
    assert_eq!(dead_letter_count(out), bad, "dead letters exactly once too");
}

#[test]
fn run_writes_partitioned_rotated_files_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.jsonl");
    let b = dir.path().join("b.jsonl");
    write_events(&a, 6000, 0);
    write_events(&b, 4000, 6000);
    let job = job_file(
        dir.path(),
        &[a, b],
        "[sink.rotation]\nmax_rows = 1500\n[sink.partition]\ntemplate = \"dt={ts:%Y-%m-%d}/\"\n",
    );
    let o = sluice(&["validate", job.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = run_to_end(&job);
    assert!(text.contains("Stopped"), "{text}");
    let out = dir.path().join("out");
    assert_exactly_once(&out, 10_000, broken(0, 6000) + broken(6000, 4000));
    assert!(out.join("dt=2024-05-01").is_dir() && out.join("dt=2024-05-02").is_dir());
    let files = std::fs::read_dir(out.join("dt=2024-05-01"))
        .unwrap()
        .count();
    assert!(
        files >= 4,
        "rotation by rows made several files, got {files}"
    );

    // Checkpoints are listed; a second run has nothing to do.
    let list = sluice_ok(&["checkpoints", "list", job.to_str().unwrap()]);
    assert!(
        list.contains("a-0: seq") && list.contains("b-0: seq"),
        "{list}"
    );
    let text = run_to_end(&job);
    assert!(text.contains("nothing new to export"), "{text}");
    assert_exactly_once(&out, 10_000, broken(0, 10_000));
}

#[test]
fn editing_paths_between_runs_neither_repeats_nor_skips_a_record() {
    let dir = tempfile::tempdir().unwrap();
    let [a, b, c] = ["a", "b", "c"].map(|n| dir.path().join(format!("{n}.jsonl")));
    write_events(&a, 3000, 0);
    write_events(&b, 2000, 3000);
    write_events(&c, 1000, 5000);
    let extra = "[sink.rotation]\nmax_rows = 700\n";
    let job = job_file(dir.path(), &[a.clone(), b.clone()], extra);
    run_to_end(&job);
    let out = dir.path().join("out");
    assert_exactly_once(&out, 5000, broken(0, 5000));
    // An earlier version kept `b`'s checkpoints under its place in `paths` (`b-1`).
    let cps = out.join("_sluice/it/checkpoints");
    std::fs::rename(cps.join("b-0"), cps.join("b-1")).unwrap();
    for f in files_under(&cps.join("b-1"), false) {
        let text = std::fs::read_to_string(&f).unwrap();
        std::fs::write(&f, text.replace("\"key\": \"b-0\"", "\"key\": \"b-1\"")).unwrap();
    }
    std::fs::remove_dir_all(out.join("_sluice/it/fence/b-0")).unwrap();
    // Reordered, and a file inserted in front: keys follow the files, not their places.
    let job = job_file(dir.path(), &[c, b, a], extra);
    let text = run_to_end(&job);
    assert!(text.contains("from=b-1"), "{text}");
    assert_exactly_once(&out, 6000, broken(0, 6000));
}

#[test]
fn the_open_file_cap_commits_early_and_stays_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("paths.jsonl");
    write_events(&input, 5000, 0);
    // 100 distinct paths, at most 8 open files per worker.
    let job = job_file(
        dir.path(),
        &[input],
        "max_open_files = 8
[sink.partition]
template = \"{path}/\"\nhive = false\n",
    );
    let text = run_to_end(&job);
    let out = dir.path().join("out");
    assert_exactly_once(&out, 5000, broken(0, 5000));
    let commits: usize = text.matches("committed").count();
    assert!(
        commits >= 10,
        "the cap forces a commit per input chunk, saw {commits}"
    );
    assert!(
        out.join("%2Fp%2F42").is_dir(),
        "sanitized bare values name the folders"
    );
}

#[test]
fn dead_letters_elsewhere_are_recovered_with_their_commit() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("dl.jsonl");
    write_events(&input, 20_000, 0);
    let job = job_file(
        dir.path(),
        &[input],
        "[sink.rotation]\nmax_rows = 1000\n[dead_letters]\nurl = \"dl/\"\n",
    );
    let (ok, text) = finish(start(&job, &[("SLUICE_FAULT", "after_files:3")]));
    assert!(!ok && text.contains("SLUICE_FAULT"), "{text}");
    run_to_end(&job);
    assert_eq!(
        lines_in(&dir.path().join("dl/nginx_access")),
        broken(0, 20_000)
    );
    assert_eq!(trace_ids(&dir.path().join("out")).len(), 20_000);
}

#[test]
fn kill_9_at_random_moments_is_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("big.jsonl");
    let n = 300_000;
    write_events(&input, n, 0);
    let job = job_file(
        dir.path(),
        &[input],
        "format = \"parquet\"\ncompression = \"gzip:6\"\n[sink.rotation]\nmax_rows = 1000\n[sink.partition]\ntemplate = \"dt={ts:%Y-%m-%d}/\"\n",
    );
    // Deterministic crash points inside the commit protocol first.
    for (i, point) in ["after_claim", "after_files", "after_checkpoint"]
        .iter()
        .enumerate()
    {
        let spec = format!("{point}:{}", i + 2);
        let (ok, text) = finish(start(&job, &[("SLUICE_FAULT", &spec)]));
        assert!(!ok, "the fault {spec} should abort the run:\n{text}");
        assert!(text.contains("SLUICE_FAULT"), "{text}");
    }
    // Then kill -9 at random moments.
    let mut seed = 0x2545F4914F6CDD1Du64;
    let mut kills = 0;
    let deadline = Instant::now() + Duration::from_secs(240);
    while kills < 20 && Instant::now() < deadline {
        let mut child = start(&job, &[]);
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let wait = Duration::from_millis(80 + seed % 300);
        std::thread::sleep(wait);
        match child.try_wait().unwrap() {
            Some(_) => break, // finished before the kill
            None => {
                child.kill().unwrap(); // SIGKILL
                let _ = child.wait();
                kills += 1;
            }
        }
    }
    run_to_end(&job);
    eprintln!("kill -9 landed {kills} times");
    assert!(
        kills >= 20,
        "only {kills} kills landed before the run finished"
    );
    assert_exactly_once(&dir.path().join("out"), n, broken(0, n));
    // No hidden temporary is left behind by the last, clean run's own files.
    let list = sluice_ok(&["checkpoints", "list", job.to_str().unwrap()]);
    assert!(list.contains("big-0: seq"), "{list}");
}

#[test]
fn sigterm_spills_the_channel_and_the_next_start_restores_it() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("big.jsonl");
    let n = 120_000;
    write_events(&input, n, 0);
    // Slow encoding (gzip 9 JSON) keeps the channel full when the stop arrives.
    let job = job_file(
        dir.path(),
        &[input],
        "format = \"json\"\ncompression = \"gzip:9\"\nworkers = 1\n[sink.rotation]\nmax_rows = 20000\n",
    );
    let (spilled, stop_log) = stop_until_spilled(dir.path(), &job);
    let text = run_to_end(&job);
    if spilled {
        assert!(
            text.contains("to=Restoring") && text.contains("restored the spill"),
            "{text}"
        );
    }
    assert!(!dir.path().join("state/spill/manifest.json").exists());
    let mut counts: HashMap<String, usize> = HashMap::new();
    for v in gzip_json_rows(&dir.path().join("out")) {
        *counts
            .entry(v["trace_id"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    assert_eq!(counts.len(), n);
    assert!(
        counts.values().all(|c| *c == 1),
        "duplicates after stop and restore"
    );
    assert!(
        spilled,
        "the stop left no spill: the test did not exercise restore:\n{stop_log}"
    );
}

#[test]
fn bad_job_files_report_every_error_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("job.toml");
    std::fs::write(
        &job,
        "[job]\nname = \"bad name\"\n[source]\nkind = \"file\"\npaths = []\n[repo]\nschema = \"x.toml\"\n[sink]\nurl = \"out/\"\nworkers = 0\n[sink.rotation]\nidle = \"soon\"\n[admin]\nlisten = \"localhost\"\n",
    )
    .unwrap();
    let o = sluice(&["validate", job.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    for key in [
        "job.name",
        "source.paths",
        "sink.workers",
        "sink.rotation.idle",
        "admin.listen",
    ] {
        assert!(err.contains(key), "no {key} in: {err}");
    }
    std::fs::write(
        &job,
        format!(
            "[job]\nname = \"j\"\n[source]\nkind = \"file\"\npaths = [\"missing.jsonl\"]\n[repo]\nschema = {:?}\n[sink]\nurl = \"out/\"\n",
            schema("nginx_access").display().to_string()
        ),
    )
    .unwrap();
    let o = sluice(&["validate", job.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("missing.jsonl"));
    // A folder, or a glob, in `paths`: said as such, not "no such file".
    let text = std::fs::read_to_string(&job).unwrap();
    for (path, said) in [
        (dir.path().display().to_string(), "is a folder"),
        ("data/*.jsonl".to_string(), "globs are not expanded"),
    ] {
        std::fs::write(&job, text.replace("missing.jsonl", &path)).unwrap();
        let o = sluice(&["validate", job.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(said), "{path}: {err}");
    }
    // A destination that is a file: every run would fail at its first write.
    let input = dir.path().join("present.jsonl");
    std::fs::write(&input, "").unwrap();
    std::fs::write(dir.path().join("afile"), "x").unwrap();
    std::fs::write(
        &job,
        format!(
            "[job]\nname = \"j\"\n[source]\nkind = \"file\"\npaths = [{:?}]\n[repo]\nschema = {:?}\n[sink]\nurl = {:?}\n",
            input.display().to_string(),
            schema("nginx_access").display().to_string(),
            dir.path().join("afile").display().to_string()
        ),
    )
    .unwrap();
    let o = sluice(&["validate", job.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("is a file, not a folder"),
        "{err}"
    );
}

#[test]
fn the_shipped_example_jobs_validate() {
    for job in ["examples/file_job.toml", "examples/kafka_job.toml"] {
        let out = sluice_ok(&["validate", root().join(job).to_str().unwrap()]);
        assert!(out.contains("is valid"), "{job}: {out}");
    }
}

/// `run --log-format json`: every log line is one JSON object with a level and a message (what
/// log shippers read), and the run's commits are among them.
#[test]
fn run_log_format_json_writes_one_json_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    write_events(&input, 3000, 0);
    let job = job_file(dir.path(), &[input], "");
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", job.to_str().unwrap(), "--log-format", "json"])
        .env("SLUICE_LOG", "info")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let lines: Vec<serde_json::Value> = err
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.iter().all(|l| l["level"].is_string()), "{err}");
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "committed" && l["fields"]["rows"].is_u64()),
        "{err}"
    );
}

/// A file job over two files of 1,000 events each, with two workers.
fn two_files_two_workers() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let inputs = [dir.path().join("a.jsonl"), dir.path().join("b.jsonl")];
    write_events(&inputs[0], 1000, 0);
    write_events(&inputs[1], 1000, 1000);
    let job = job_file(dir.path(), &inputs, "workers = 2\n");
    (dir, job)
}

/// Every row of [`two_files_two_workers`]' files is in `out/` once.
fn assert_both_files_once(dir: &Path) {
    assert_exactly_once(&dir.join("out"), 2000, broken(0, 1000) + broken(1000, 1000));
}

/// A bounded run whose final commit fails (`fail_commit:1`) and rewinds, while the worker that
/// said "done" right after it is slow to take the replay (`hold_after_rewind`): the run waits
/// for the replay and commits it. Before, it ended as soon as every worker had said "done",
/// dropped the replay from the channel and exited 0 without that file's rows (seen once in CI
/// on a Kafka backfill whose dead-letter deliveries were refused).
#[test]
fn a_replay_after_a_failed_final_commit_is_committed_before_the_run_ends() {
    let (dir, job) = two_files_two_workers();
    let (ok, text) = finish(start(
        &job,
        &[("SLUICE_FAULT", "fail_commit:1,hold_after_rewind:1500")],
    ));
    assert!(ok, "{text}");
    assert!(
        text.contains("SLUICE_FAULT: failing commit 1")
            && text.contains("SLUICE_FAULT: holding at hold_after_rewind"),
        "{text}"
    );
    assert_both_files_once(dir.path());
}

/// A worker that asks for a replay and is then paused before it goes on
/// (`hold_before_purge`), while the source reads the replay to its end: the run still ends,
/// with every row once. Before, the worker marked the source "not done" after the source had
/// ended for good, and the bounded run never ended.
#[test]
fn a_replay_read_to_its_end_before_the_worker_goes_on_still_ends_the_run() {
    let (dir, job) = two_files_two_workers();
    let err = tempfile::NamedTempFile::new().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("run")
        .arg(&job)
        .env("SLUICE_LOG", "info")
        .env("SLUICE_FAULT", "fail_commit:1,hold_before_purge:1500")
        .stdout(Stdio::null())
        .stderr(err.reopen().unwrap())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop::new(child);
    let status = wait_exit(child.child(), "the bounded run to end after its replay", 60);
    let text = std::fs::read_to_string(err.path()).unwrap();
    assert!(status.success(), "{text}");
    assert!(
        text.contains("SLUICE_FAULT: failing commit 1")
            && text.contains("SLUICE_FAULT: holding at hold_before_purge"),
        "{text}"
    );
    assert_both_files_once(dir.path());
}

/// A data file's rename whose folder sync fails (`fail_rename_sync`, as a disk error would):
/// the file is visible but not durable, so the commit fails and the partition replays; every
/// row lands once. Before, the error was dropped and the commit went on, so a power loss could
/// lose a file its checkpoint names.
#[test]
fn a_failed_folder_sync_after_a_rename_fails_the_commit_which_replays() {
    let (dir, job) = two_files_two_workers();
    // The first renames are the job's schema record (its copy for earlier versions; the
    // record itself is a link) and the two files' identities; the fourth, a data file's.
    let (ok, text) = finish(start(&job, &[("SLUICE_FAULT", "fail_rename_sync:4")]));
    assert!(ok, "{text}");
    assert!(
        text.contains("SLUICE_FAULT: failing the folder sync after rename 4")
            && text.contains("commit failed; rewinding the partition"),
        "{text}"
    );
    assert_both_files_once(dir.path());
}

/// The end-of-run safety net: with the check above taken out (`end_early`), the same run ends
/// while the replay is still in the channel. It must fail, naming the partition and how far it
/// was read and committed, instead of exiting 0 without those rows; run again, it exports them
/// exactly once.
#[test]
fn a_bounded_run_that_ends_with_records_read_but_not_committed_fails() {
    let (dir, job) = two_files_two_workers();
    let (ok, text) = finish(start(
        &job,
        &[(
            "SLUICE_FAULT",
            "fail_commit:1,hold_after_rewind:1500,end_early:1",
        )],
    ));
    assert!(!ok, "the run reported success: {text}");
    assert!(
        text.contains("records read but not committed") && text.contains("committed to 0"),
        "{text}"
    );
    let (ok, text) = finish(start(&job, &[]));
    assert!(ok, "{text}");
    assert_both_files_once(dir.path());
}

/// A worker over its memory share writes its biggest partition's row groups in progress into
/// their files, which stay open: each partition still commits once, into one file, with
/// several row groups, exactly once (the share used to commit partitions early, many times
/// over, each commit a file of its own).
#[test]
fn over_the_memory_share_row_groups_are_written_early_not_committed() {
    let dir = tempfile::tempdir().unwrap();
    let inputs: Vec<PathBuf> = (0..4)
        .map(|k| {
            let p = dir.path().join(format!("part{k}.jsonl"));
            write_events(&p, 20_000, k * 20_000);
            p
        })
        .collect();
    let job = job_file(
        dir.path(),
        &inputs,
        "workers = 1\nmax_buffered_bytes = \"4MiB\"\n",
    );
    let text = run_to_end(&job);
    let out = dir.path().join("out");
    let bad: usize = (0..4).map(|k| broken(k * 20_000, 20_000)).sum();
    assert_exactly_once(&out, 80_000, bad);
    let files: Vec<PathBuf> = files_under(&out, true)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    assert_eq!(
        files.len(),
        4,
        "one file per partition, found {}",
        files.len()
    );
    assert_eq!(
        text.matches("committed partition").count(),
        4,
        "one commit each"
    );
    let groups: Vec<usize> = files
        .iter()
        .map(|f| {
            let r = parquet::file::serialized_reader::SerializedFileReader::new(
                std::fs::File::open(f).unwrap(),
            )
            .unwrap();
            parquet::file::reader::FileReader::metadata(&r).num_row_groups()
        })
        .collect();
    assert!(
        groups.iter().any(|g| *g > 1),
        "the share made row groups close early: {groups:?}"
    );
}

/// A commit whose seal landed while its writer saw a failure (`lose_seal_answer:1`, as a
/// store whose answer was lost): the resync finds it standing and resumes after it, and its
/// rows and dead letters are counted then. Before, the run's summary (and `rows_out`, the
/// dead-letter counters) never counted them, while its checkpoints did.
#[test]
fn a_commit_that_landed_after_reporting_failure_is_counted_once() {
    let (dir, job) = two_files_two_workers();
    let (ok, text) = finish(start(&job, &[("SLUICE_FAULT", "lose_seal_answer:1")]));
    assert!(ok, "{text}");
    assert!(
        text.contains("SLUICE_FAULT: failing the answer to seal 1")
            && text.contains("resuming after a commit that looked failed but landed"),
        "{text}"
    );
    assert_both_files_once(dir.path());
    let dead = broken(0, 1000) + broken(1000, 1000);
    assert!(
        text.contains(&format!("; 2000 rows, {dead} dead letters in ")),
        "{text}"
    );
}

/// `max_open_files` counts a partition's dead-letter file: with a cap of 1, good records
/// followed by broken lines commit the open data file before the dead-letter file opens.
/// Before, the item holding the first broken lines opened the dead-letter file beside the
/// open data file: two files open under a cap of one (one commit held both).
#[test]
fn the_open_file_cap_counts_the_dead_letter_file() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("mixed.jsonl");
    write_events(&input, 3000, 0);
    // Good records only, then broken lines only.
    let good: String = std::fs::read_to_string(&input)
        .unwrap()
        .lines()
        .filter(|l| !l.contains("broken"))
        .map(|l| format!("{l}\n"))
        .collect();
    let broken_lines = "{\"ts\": broken\n".repeat(20_000);
    std::fs::write(&input, format!("{good}{broken_lines}")).unwrap();
    let broken = 20_000;
    let job = job_file(dir.path(), &[input], "max_open_files = 1\n");
    run_to_end(&job);
    assert_exactly_once(&dir.path().join("out"), 3000, broken);
    // The first commit holds the data file alone: it was committed before the dead-letter
    // file opened (the item that opened it may open a data file beside it: one item may open
    // more than the cap).
    let mut records = files_under(&dir.path().join("out/_sluice/it/checkpoints"), false);
    records.sort();
    let first: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&records[0]).unwrap()).unwrap();
    let first = first.get("Commit").unwrap_or(&first);
    let n = |k: &str| first[k].as_array().map_or(0, Vec::len);
    assert!(
        n("files") == 1 && n("dead_letter_files") == 0,
        "the first commit: {first}"
    );
}
