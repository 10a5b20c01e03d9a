//! A job's checkpoints count one kind of source's offsets: a job of another kind, under the
//! same name and destination, is refused rather than resuming at offsets that are not its.
//! And a file job says whether it read its input to the end: stopped before, it fails.

use crate::helpers::*;
use crate::push::{push_acked, push_job, start};

/// `n` events (trace ids `<tag>-<i>`) as JSON lines in `path`.
fn events(path: &std::path::Path, tag: &str, n: usize) {
    let mut lines = String::new();
    for i in 0..n {
        lines.push_str(&format!(
            "{{\"ts\":\"2024-05-01T10:00:00Z\",\"host\":\"h\",\"status\":200,\"trace_id\":\"{tag}-{i}\"}}\n"
        ));
    }
    std::fs::write(path, lines).unwrap();
}

/// A file job `name` reading `input` (in `dir`) into `out/` (state `state`, stop deadline
/// 2 s), with `extra` appended: its path.
fn file_job(dir: &std::path::Path, name: &str, input: &str, extra: &str) -> std::path::PathBuf {
    let job = dir.join(format!("{name}.toml"));
    std::fs::write(
        &job,
        format!(
            "[job]\nname = \"{name}\"\nstate_dir = \"state\"\nstop_deadline = \"2s\"\n[source]\nkind = \"file\"\npaths = [{input:?}]\n[repo]\nschema = {:?}\n[sink]\nurl = \"file://out\"\n{extra}",
            schema("nginx_access")
        ),
    )
    .unwrap();
    job
}

/// Runs file job `job` (in `dir`, its log in `log`) while its worker holds what it read
/// (`hold_worker`), stops it (SIGTERM) once it holds, and lets it go once it spilled: its
/// exit status.
fn stopped_with_a_spill(
    dir: &std::path::Path,
    job: &std::path::Path,
    log: &std::path::Path,
) -> std::process::ExitStatus {
    let hold = dir.join("hold");
    let mut first = run_held(job, log, &hold, "hold_worker");
    said(log, "holding at hold_worker");
    sigterm(first.child());
    said(log, "spilled the channel to disk");
    std::fs::remove_file(&hold).unwrap();
    wait_exit(first.child(), "the stopped file job", 60)
}

/// A push job `push-test` writes into `out/` (partition `push-0`); then a file job of the
/// same name reads `push.jsonl` (also partition `push-0`) into the same folder. It is
/// refused, naming the push job's checkpoints. Before, it resumed at the push log's position
/// as a byte offset of the file: its first records were skipped without a word.
#[test]
fn a_file_job_is_refused_the_checkpoints_a_push_job_of_its_name_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let job = push_job(dir.path(), "wal", "", "");
    let (run, addr) = start(&job, &dir.path().join("push.log"));
    push_acked(&addr, "p", 20);
    let out = dir.path().join("out");
    wait_until("the pushed rows in out/", 60, || {
        trace_ids(&out).len() == 20
    });
    let status = run.stop("the push job", 60);
    assert!(status.success());

    events(&dir.path().join("push.jsonl"), "f", 30);
    let file_job = file_job(dir.path(), "push-test", "push.jsonl", "");
    let (status, log) = sluice_within(&["run", file_job.to_str().unwrap()], 60);
    assert!(!status.success(), "{log}");
    assert!(log.contains("written by a push job of this name"), "{log}");
    assert_eq!(trace_ids(&out).len(), 20, "the refused file job wrote");
}

/// A file job stopped (SIGTERM) before the end of its files, while its worker holds what it
/// read (`hold_worker`), spills it and fails, saying to run it again; the next run ends with
/// every record once, and succeeds. Before, the stopped run exited 0 with the same summary
/// as a finished one: `sluice run job && next` went on with the export unfinished.
#[test]
fn a_file_job_stopped_before_its_end_fails_saying_to_run_it_again() {
    let dir = tempfile::tempdir().unwrap();
    events(&dir.path().join("in.jsonl"), "f", 300);
    let job = file_job(dir.path(), "stopped", "in.jsonl", "");
    let log = dir.path().join("first.log");
    let status = stopped_with_a_spill(dir.path(), &job, &log);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!status.success(), "a stopped file job exited 0:\n{text}");
    assert!(
        text.contains("stopped before the end of its input"),
        "{text}"
    );
    let out = dir.path().join("out");
    assert_eq!(trace_ids(&out).len(), 0, "the held run committed");
    run_ok(&job);
    let ids = trace_ids(&out);
    assert_eq!(ids.len(), 300);
    assert!(ids.values().all(|n| *n == 1), "duplicates");
}

/// A file job stopped while its worker holds what it read spills it; the file is then
/// rewritten in place, its first 4 KiB (and length) the same, rows appended after. The next
/// start restores the spill and would read on after it, in the new file: the bytes before
/// that offset, as the spill's last item read them, are compared first, and the run is
/// refused, naming the file. Before, it went on with the appended rows, as if the file had
/// only grown.
#[test]
fn a_file_rewritten_in_place_after_a_spill_is_refused_where_the_spill_ends() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    events(&input, "f", 300);
    let job = file_job(dir.path(), "rewritten", "in.jsonl", "");
    stopped_with_a_spill(dir.path(), &job, &dir.path().join("first.log"));
    let old = std::fs::read_to_string(&input).unwrap();
    let lines: Vec<&str> = old.lines().collect();
    let kept: String = lines[..60].iter().map(|l| format!("{l}\n")).collect();
    assert!(kept.len() > 4096);
    let changed: String = lines[60..]
        .iter()
        .map(|l| format!("{}\n", l.replace("\"f-", "\"g-")))
        .collect();
    let more: String = (0..10)
        .map(|i| lines[0].replace("\"f-0\"", &format!("\"n-{i}\"")) + "\n")
        .collect();
    std::fs::write(&input, format!("{kept}{changed}{more}")).unwrap();
    let (status, text) = sluice_within(&["run", job.to_str().unwrap()], 60);
    assert!(!status.success(), "{text}");
    assert!(
        text.contains(&format!(
            "is not the file the job read to byte {}:",
            old.len()
        )) && text.contains("in.jsonl"),
        "{text}"
    );
    let ids = trace_ids(&dir.path().join("out"));
    assert!(!ids.keys().any(|k| k.starts_with("n-")), "{ids:?}");
}

/// A file job reloaded (SIGHUP) while its worker holds what it read: the reload's stop spills
/// it, the reloaded task restores it and reads on to the end, and the run exits 0. Before, the
/// summary kept the first task's "not to the end", and the finished run failed.
#[test]
fn a_file_job_reloaded_midway_and_then_finished_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    events(&dir.path().join("in.jsonl"), "r", 300);
    let job = file_job(
        dir.path(),
        "reloaded",
        "in.jsonl",
        "[sink.rotation]\nmax_rows = 1000\n",
    );
    let text = std::fs::read_to_string(&job).unwrap();
    let hold = dir.path().join("hold");
    let log = dir.path().join("run.log");
    let mut run = run_held(&job, &log, &hold, "hold_worker");
    said(&log, "holding at hold_worker");
    std::fs::write(&job, text.replace("max_rows = 1000", "max_rows = 2000")).unwrap();
    assert!(std::process::Command::new("kill")
        .args(["-HUP", &run.id().to_string()])
        .status()
        .unwrap()
        .success());
    said(&log, "spilled the channel to disk");
    std::fs::remove_file(&hold).unwrap();
    let status = wait_exit(run.child(), "the reloaded file job", 60);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{text}");
    let ids = trace_ids(&dir.path().join("out"));
    assert_eq!(ids.len(), 300, "{text}");
    assert!(ids.values().all(|n| *n == 1), "duplicates");
}

/// A file job stopped (SIGTERM) after its source was read to the end, whose workers then
/// commit everything within the stop deadline: the run is complete, and exits 0. (Reported
/// "stopped before the end" before this, though nothing was left to read.)
#[test]
fn a_file_job_stopped_after_reading_everything_and_committing_it_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    events(&dir.path().join("in.jsonl"), "c", 300);
    let job = file_job(dir.path(), "read-all", "in.jsonl", "");
    let hold = dir.path().join("hold");
    let log = dir.path().join("run.log");
    let mut run = run_held(&job, &log, &hold, "hold_worker");
    said(&log, "the source is read to its end");
    sigterm(run.child());
    said(&log, "to=Stopping");
    std::fs::remove_file(&hold).unwrap();
    let status = wait_exit(run.child(), "the stopped file job", 60);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !text.contains("spilled the channel"),
        "the workers did not commit in time: {text}"
    );
    assert!(status.success(), "{text}");
    assert_eq!(trace_ids(&dir.path().join("out")).len(), 300);
}

/// An input file renamed after it was exported, and listed under its new name, is refused
/// (its new name is a new partition: it was exported again from its first byte, every row
/// twice); so is a copy. A file that only begins with the same header is read, and with
/// `on_same_start = "read"` the renamed file is exported again, as asked. A file and its copy
/// both new to a job are refused too.
#[test]
fn an_exported_file_renamed_or_copied_is_not_exported_twice() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
    events(&a, "a", 30);
    let job = file_job(dir.path(), "files", "a.jsonl", "");
    run_ok(&job);
    let out = dir.path().join("out");
    assert_eq!(trace_ids(&out).len(), 30);

    std::fs::rename(&a, &b).unwrap();
    let renamed = file_job(dir.path(), "files", "b.jsonl", "");
    let err = sluice_refused(&["run", renamed.to_str().unwrap()]);
    assert!(
        err.contains("begins as") && err.contains("a.jsonl") && err.contains("on_same_start"),
        "{err}"
    );
    // A copy beside the original is the same file twice.
    std::fs::copy(&b, &a).unwrap();
    let both = two_files(file_job(dir.path(), "files", "a.jsonl", ""), "b.jsonl");
    let err = sluice_refused(&["run", both.to_str().unwrap()]);
    assert!(err.contains("begins as"), "{err}");
    assert_eq!(trace_ids(&out).len(), 30, "nothing more was written");

    // One line alike (a header, say) is no sign of a copy.
    let c = dir.path().join("c.jsonl");
    let first = std::fs::read_to_string(&a)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    std::fs::write(&c, format!("{first}\n")).unwrap();
    let mut text = std::fs::read_to_string(&c).unwrap();
    events(&c, "c", 5);
    text.push_str(&std::fs::read_to_string(&c).unwrap());
    std::fs::write(&c, text).unwrap();
    let third = two_files(file_job(dir.path(), "files", "a.jsonl", ""), "c.jsonl");
    run_ok(&third);
    assert_eq!(
        trace_ids(&out).len(),
        35,
        "a-0 is resumed; c's 5 new rows (its first is a-0's)"
    );

    let asked = file_job(dir.path(), "files", "b.jsonl", "");
    let text = std::fs::read_to_string(&asked).unwrap().replace(
        "kind = \"file\"\n",
        "kind = \"file\"\non_same_start = \"read\"\n",
    );
    std::fs::write(&asked, text).unwrap();
    run_ok(&asked);
    assert_eq!(
        trace_ids(&out).get("a-0"),
        Some(&3),
        "exported again, as asked"
    );

    // A file and its copy, both new to a job: neither is exported.
    let (x, y) = (dir.path().join("x.jsonl"), dir.path().join("y.jsonl"));
    events(&x, "x", 10);
    std::fs::copy(&x, &y).unwrap();
    let pair = two_files(file_job(dir.path(), "pair", "x.jsonl", ""), "y.jsonl");
    let err = sluice_refused(&["run", pair.to_str().unwrap()]);
    assert!(
        err.contains("begin alike, and neither is exported yet"),
        "{err}"
    );
    assert!(!trace_ids(&out).contains_key("x-0"));
}

/// The file job `job` reading `second` after its one input.
fn two_files(job: std::path::PathBuf, second: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(&job).unwrap();
    let text = text.replacen("\"]\n", &format!("\", {second:?}]\n"), 1);
    std::fs::write(&job, text).unwrap();
    job
}
