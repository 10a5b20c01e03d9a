//! Partitions a job no longer reads (a file dropped from `paths`) whose commit a process died
//! in: the next start settles the claim it left, though it never reads the partition again
//! (an unfinished commit's files removed, a sealed one published into the job's table).

use std::process::Command;

use crate::delta::{events, file_job, read_table, sealed_rows};
use crate::helpers::*;

/// `sluice run JOB` with `SLUICE_FAULT` set to `fault`.
fn run_with(job: &str, fault: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", job])
        .env("SLUICE_FAULT", fault)
        .output()
        .unwrap()
}

/// A crash between a commit's seal and its publish, then the file dropped from `paths` (it
/// rotated away): the next start, which never claims its partition again, still publishes
/// the sealed commit the table lacks. Before, it stayed out of the table for good while
/// `checkpoints list` showed it committed.
#[test]
fn a_sealed_commit_of_a_file_dropped_from_the_job_is_published_by_the_next_start() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
    events(&a, 0, 5000, false);
    events(&b, 5000, 3000, false);
    let job = file_job(dir.path(), &a, &schema("nginx_access"), "out/", "");
    let jobs = job.to_str().unwrap();
    let o = run_with(jobs, "after_checkpoint:3");
    assert!(!o.status.success(), "the fault did not stop the run");
    let table = dir.path().join("out");
    let sealed = sealed_rows(&table, "a-0");
    let text = std::fs::read_to_string(&job).unwrap();
    let (from, to) = (
        format!("{:?}", a.display().to_string()),
        format!("{:?}", b.display().to_string()),
    );
    std::fs::write(&job, text.replace(&from, &to)).unwrap();
    let o = run_with(jobs, "claim_left_after:0");
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{log}");
    assert!(
        log.contains("settled the claim a process left of a partition this job no longer reads"),
        "{log}"
    );
    read_table(&py, table.to_str().unwrap(), None, "").once(sealed + 3000);
}

/// A file job dies with a commit's files visible and no checkpoint, then the file is dropped
/// from `paths`: a start once the claim is older than a commit under way elsewhere could be
/// removes those files (the partition's claim settled). Before,
/// they stayed visible for good, records no checkpoint counts, which the file's return to the
/// job would export a second time.
#[test]
fn an_unfinished_commit_of_a_file_dropped_from_the_job_is_removed_by_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
    events(&a, 0, 2000, false);
    events(&b, 2000, 1000, false);
    let job = dir.path().join("job.toml");
    let text = |input: &std::path::Path| {
        format!(
            "[job]\nname = \"plain\"\nstate_dir = \"state\"\n[source]\nkind = \"file\"\n\
             paths = [{:?}]\n[repo]\nschema = {:?}\n[sink]\nurl = \"out/\"\n",
            input.display().to_string(),
            schema("nginx_access").display().to_string()
        )
    };
    std::fs::write(&job, text(&a)).unwrap();
    let jobs = job.to_str().unwrap();
    let o = run_with(jobs, "after_files:1");
    assert!(!o.status.success(), "the fault did not stop the run");
    let out = dir.path().join("out");
    assert!(
        !trace_ids(&out).is_empty(),
        "the unfinished commit's files are not visible"
    );
    let left = trace_ids(&out).len();
    std::fs::write(&job, text(&b)).unwrap();
    // A claim younger than 15 minutes may be another process's commit under way: left alone.
    let o = sluice(&["run", jobs]);
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{log}");
    assert_eq!(trace_ids(&out).len(), left + 1000, "{log}");
    // Once it is older, it is taken for one left, and settled.
    let o = run_with(jobs, "claim_left_after:0");
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{log}");
    let ids = trace_ids(&out);
    assert_eq!(ids.len(), 1000, "{log}");
    assert!(
        ids.keys().all(|k| k[1..].parse::<usize>().unwrap() >= 2000),
        "{log}"
    );
    // Settled once: the aborted claim the settle keeps a while is not claimed again.
    let o = run_with(jobs, "claim_left_after:0");
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{log}");
    assert!(!log.contains("settled the claim"), "{log}");
}
