//! A memory push's spill beside another process's commits: the spilled rows continue the
//! checkpoint another process of the job wrote (in its own log's positions), each once.

use crate::helpers::*;
use crate::kafka::{wait_for, wait_log};
use crate::push::{push_acked, push_job, second_process, start, start_with};

/// Memory durability, two processes of one push job with a state folder each: A acknowledges
/// rows and stops gracefully with some of them spilled (not committed); B commits rows of its
/// own in its own log's positions; A's next start restores its spill after B's checkpoint.
/// Every acknowledged row lands once (before, A dropped spilled rows below B's checkpoint as
/// committed and could not replay the rest from its empty memory log).
#[test]
fn a_memory_push_spill_lands_after_another_processs_commits() {
    spill_lands_after_b("memory", &[]);
}

/// The same with B a WAL process whose log has no identity (a full disk at its first start):
/// its checkpoint names no log, only runs. Before, A took it for its own line's and dropped
/// 15,000 of its 20,000 spilled rows.
#[test]
fn a_memory_push_spill_lands_after_commits_of_a_wal_without_an_identity() {
    spill_lands_after_b("wal", &[("SLUICE_FAULT", "no_room_for_log_id:1")]);
}

/// A memory push job in `dir` whose one slow worker (zstd at its highest level) keeps pushed
/// rows in the channel at a stop; its path and text.
fn slow_memory_job(dir: &std::path::Path) -> (std::path::PathBuf, String) {
    let job = push_job(dir, "memory", "", "");
    let text = std::fs::read_to_string(&job)
        .unwrap()
        .replace("workers = 2", "workers = 1\ncompression = \"zstd:22\"");
    std::fs::write(&job, &text).unwrap();
    (job, text)
}

/// Runs `job` (memory durability, one slow worker) once, pushing 20,000 acknowledged rows
/// (`a0-0`..`a3-4999`), and stops it gracefully with some of them committed in `out/` and
/// the rest spilled. Returns how many were committed.
fn spilled_after_commits(dir: &std::path::Path, job: &std::path::Path) -> usize {
    let out = dir.join("out");
    let spill = dir.join("state/spill/manifest.json");
    // Whether rows are still queued when the stop lands depends on the machine's pace: a stop
    // that left no spill, or committed nothing, is tried again from scratch.
    for attempt in 0..6 {
        for sub in ["out", "state", "state-b"] {
            let _ = std::fs::remove_dir_all(dir.join(sub));
        }
        let (a, addr) = start(job, &dir.join(format!("a{attempt}.log")));
        for k in 0..4 {
            push_acked(&addr, &format!("a{k}"), 5000);
        }
        sigterm(&a);
        assert!(a.wait_with_output().unwrap().status.success());
        let before = trace_ids(&out).len();
        if spill.exists() && before > 0 {
            assert!(before < 20_000, "A committed every row before its stop");
            return before;
        }
    }
    panic!("no stop left both commits and a spill: the test did not exercise it");
}

/// Runs `job` (logging to `log`) until `rows` rows are in `out`, stops it gracefully, and
/// returns the rows' trace ids, having checked there are `rows` of them, each once.
fn land_once(
    job: &std::path::Path,
    log: &std::path::Path,
    out: &std::path::Path,
    rows: usize,
) -> std::collections::HashMap<String, usize> {
    let (a, _) = start(job, log);
    // Every row committed before it stops (else the rest would be spilled again).
    wait_for(out, rows, 120);
    sigterm(&a);
    assert!(a.wait_with_output().unwrap().status.success());
    let ids = trace_ids(out);
    assert_eq!(ids.len(), rows, "every acknowledged row");
    assert!(ids.values().all(|n| *n == 1), "a row written twice");
    ids
}

/// Memory durability: a stop spills acknowledged rows that continue the checkpoint in `out/`;
/// the job file's destination is then changed to `moved/`, which holds no checkpoint. The
/// start is refused, naming the spill, which is kept (its rows' only copy); back at `out/`,
/// every row lands once. Before, the start dropped the spill as not continuing the
/// destination's checkpoint, and those acknowledged rows were in neither destination.
#[test]
fn a_memory_push_spill_is_kept_when_the_destination_moved() {
    let dir = tempfile::tempdir().unwrap();
    let (job, text) = slow_memory_job(dir.path());
    spilled_after_commits(dir.path(), &job);
    let spill = dir.path().join("state/spill/manifest.json");
    std::fs::write(
        &job,
        text.replace("url = \"file://out\"", "url = \"file://moved\""),
    )
    .unwrap();
    let (status, err) = sluice_within(&["run", job.to_str().unwrap()], 60);
    assert!(!status.success(), "{err}");
    assert!(
        err.contains("their only copy is the spill, which is kept")
            && err.contains("--discard-spill"),
        "{err}"
    );
    assert!(spill.exists(), "the spill was dropped");
    assert!(trace_ids(&dir.path().join("moved")).is_empty());

    std::fs::write(&job, &text).unwrap();
    let out = dir.path().join("out");
    land_once(&job, &dir.path().join("back.log"), &out, 20_000);
}

/// Memory durability: a stop spills acknowledged rows; the job file then reads a file under
/// the same name and state folder. The start is refused, naming the spill, which is kept (the
/// rows' only copy); back on pushes, every row lands once. Before, the file job skipped the
/// spill's items (a partition it does not have) without a word and deleted the spill.
#[test]
fn a_memory_push_spill_is_kept_when_the_job_reads_another_source() {
    let dir = tempfile::tempdir().unwrap();
    let (job, text) = slow_memory_job(dir.path());
    spilled_after_commits(dir.path(), &job);
    let spill = dir.path().join("state/spill/manifest.json");
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, "").unwrap();
    let file = text.replace(
        "kind = \"push\"\ndurability = \"memory\"",
        &format!(
            "kind = \"file\"\npaths = [{:?}]",
            input.display().to_string()
        ),
    );
    assert_ne!(file, text);
    std::fs::write(&job, file).unwrap();
    let (status, err) = sluice_within(&["run", job.to_str().unwrap()], 60);
    assert!(!status.success(), "{err}");
    assert!(
        err.contains("holds pushed records") && err.contains("--discard-spill"),
        "{err}"
    );
    assert!(spill.exists(), "the spill was dropped");

    std::fs::write(&job, &text).unwrap();
    let out = dir.path().join("out");
    land_once(&job, &dir.path().join("back.log"), &out, 20_000);
}

/// A memory push job's spill, restored by the job switched to `durability = "wal"`: the new
/// log does not hold its records, so it goes on past them, and the spill stays until they are
/// committed. A crash before that commit (here at its claim, as a kill -9 there) left a log
/// that starts past the checkpoint: every later start failed ("already released"), the spill
/// never looked at. Now the next start restores it again, and every row lands once.
#[test]
fn a_spill_restored_into_a_new_wal_survives_a_crash_before_its_commit() {
    let dir = tempfile::tempdir().unwrap();
    let (job, text) = slow_memory_job(dir.path());
    let before = spilled_after_commits(dir.path(), &job);
    let spill = dir.path().join("state/spill/manifest.json");
    let wal = text.replace("durability = \"memory\"", "durability = \"wal\"");
    assert_ne!(wal, text);
    std::fs::write(&job, &wal).unwrap();
    let out = dir.path().join("out");
    let crash_log = dir.path().join("crash.log");
    let env = [("SLUICE_FAULT", "after_claim:1")];
    let mut crashed = crate::kafka::spawn_with("run", &job, &crash_log, &env);
    let status = wait_exit(&mut crashed, "the run to die at its first claim", 120);
    let said = std::fs::read_to_string(&crash_log).unwrap();
    assert!(!status.success(), "{said}");
    assert!(said.contains("to=Restoring"), "no restore: {said}");
    assert_eq!(trace_ids(&out).len(), before, "a commit landed: {said}");
    assert!(spill.exists());

    land_once(&job, &dir.path().join("again.log"), &out, 20_000);
    assert!(!spill.exists());
}

/// A's spill, B's commits (B with `durability` and `env`), A's rows landing once.
fn spill_lands_after_b(durability: &str, env: &[(&str, &str)]) {
    let dir = tempfile::tempdir().unwrap();
    let (job_a, _) = slow_memory_job(dir.path());
    let job_b = second_process(&job_a);
    let b_text = std::fs::read_to_string(&job_b).unwrap().replace(
        "durability = \"memory\"",
        &format!("durability = \"{durability}\""),
    );
    std::fs::write(&job_b, b_text).unwrap();
    let out = dir.path().join("out");
    let spill = dir.path().join("state/spill/manifest.json");
    let before = spilled_after_commits(dir.path(), &job_a);

    // B, with a log of its own, continues from A's checkpoint and commits 50 rows.
    let (b, addr) = start_with(&job_b, &dir.path().join("b.log"), env);
    push_acked(&addr, "b", 50);
    // Its rows committed before it stops (else they would wait in its own spill).
    wait_for(&out, before + 50, 60);
    sigterm(&b);
    assert!(b.wait_with_output().unwrap().status.success());
    assert_eq!(trace_ids(&out).len(), before + 50);

    // A again: its spill continues B's checkpoint, and its rows land once.
    let log = dir.path().join("a-again.log");
    let ids = land_once(&job_a, &log, &out, 20_050);
    let missing: Vec<String> = (0..4)
        .flat_map(|k| (0..5000).map(move |i| format!("a{k}-{i}")))
        .filter(|id| !ids.contains_key(id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged rows of A lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert_eq!(ids.len(), 20_050, "A's 20,000 rows and B's 50");
    assert!(ids.values().all(|n| *n == 1), "a row written twice");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("the spilled records continue its checkpoint"),
        "{text}"
    );
    assert!(!spill.exists());
}

/// Memory durability: the stop cannot write its spill (the state folder's `spill` is a file,
/// as a failing disk would refuse it). It tries again, then fails naming the acknowledged
/// records it loses; it said only that the spill failed.
#[test]
fn a_memory_push_whose_spill_cannot_be_written_names_the_acknowledged_loss() {
    let dir = tempfile::tempdir().unwrap();
    let job = push_job(dir.path(), "memory", "", "");
    let text = std::fs::read_to_string(&job)
        .unwrap()
        .replace("stop_deadline = \"20s\"", "stop_deadline = \"1s\"");
    std::fs::write(&job, text).unwrap();
    let hold = dir.path().join("hold");
    std::fs::write(&hold, b"").unwrap();
    let fault = format!("hold_worker:@{}", hold.display());
    let (mut run, addr) = start_with(
        &job,
        &dir.path().join("run.log"),
        &[("SLUICE_FAULT", &fault)],
    );
    push_acked(&addr, "lost", 20);
    std::fs::write(dir.path().join("state/spill"), b"not a folder").unwrap();
    sigterm(&run);
    let log = dir.path().join("run.log");
    said(&log, "writing the spill failed");
    std::fs::remove_file(&hold).unwrap();
    let status = wait_exit(run.child(), "the run", 60);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!status.success(), "{text}");
    assert!(
        text.contains("the 20 records it held, not committed, acknowledged to push clients (durability = \"memory\"), are lost"),
        "{text}"
    );
}

/// The same through a reload: SIGHUP after the job file's destination was changed. The
/// running task stops and spills; the reloaded one is refused at the spill, and the job that
/// ran before takes over again and restores it: every acknowledged row lands once, in `out/`.
#[test]
fn a_reload_that_moves_a_memory_push_keeps_its_spill() {
    let dir = tempfile::tempdir().unwrap();
    let (job, text) = slow_memory_job(dir.path());
    let out = dir.path().join("out");
    // The reload must find rows both committed and queued: tried again from scratch when not.
    for attempt in 0..6 {
        for sub in ["out", "moved", "state"] {
            let _ = std::fs::remove_dir_all(dir.path().join(sub));
        }
        std::fs::write(&job, &text).unwrap();
        let log = dir.path().join(format!("r{attempt}.log"));
        let (a, addr) = start(&job, &log);
        for k in 0..4 {
            push_acked(&addr, &format!("a{k}"), 5000);
        }
        std::fs::write(&job, text.replace("file://out", "file://moved")).unwrap();
        // Written a while ago as far as the reload can tell: it reads a file only once it was
        // left alone for a second, and the queue must still hold rows when it does.
        std::fs::File::options()
            .write(true)
            .open(&job)
            .unwrap()
            .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(5))
            .unwrap();
        assert!(std::process::Command::new("kill")
            .args(["-HUP", &a.id().to_string()])
            .status()
            .unwrap()
            .success());
        let seen = wait_log(&log, "to=Running", 2, 60);
        if !seen.contains("the reloaded job failed") {
            // Nothing was queued, or nothing committed, at the reload (then every row lands,
            // in one destination or the other), or the spill was dropped.
            let both = || trace_ids(&out).len() + trace_ids(&dir.path().join("moved")).len();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while both() < 20_000 && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            assert_eq!(
                both(),
                20_000,
                "acknowledged rows in neither destination:\n{seen}"
            );
            continue;
        }
        assert!(seen.contains("their only copy is the spill"), "{seen}");
        wait_for(&out, 20_000, 120);
        sigterm(&a);
        let ids = trace_ids(&out);
        assert_eq!(ids.len(), 20_000, "every acknowledged row");
        assert!(ids.values().all(|n| *n == 1), "a row written twice");
        assert!(trace_ids(&dir.path().join("moved")).is_empty());
        return;
    }
    panic!("no reload found rows both committed and queued: the test did not exercise it");
}

/// A memory push job stopped with SIGTERM whose final commit's seal lands while its answer is
/// lost (`lose_seal_answer:1`): the stop looks the commit up, so the pushes are not reported
/// lost and the summary counts their rows. Before, the log said acknowledged records were
/// lost (they stood in the output) and the summary counted none.
#[test]
fn a_final_commit_that_landed_after_reporting_failure_is_neither_lost_nor_uncounted() {
    let dir = tempfile::tempdir().unwrap();
    let job = crate::push::push_job(dir.path(), "memory", "", "");
    let text = std::fs::read_to_string(&job).unwrap();
    // No idle commit before the stop: the stop's commit is the first.
    std::fs::write(&job, text.replace("idle = \"1s\"", "idle = \"1h\"")).unwrap();
    let log = dir.path().join("run.log");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", job.to_str().unwrap()])
        .env("SLUICE_FAULT", "lose_seal_answer:1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop::new(child);
    let addr = crate::admin::admin_addr(&log);
    crate::push::push_acked(&addr, "a", 10);
    sigterm(child.child());
    let out = child.wait_with_output().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("SLUICE_FAULT: failing the answer to seal 1"),
        "{text}"
    );
    assert!(!text.contains("acknowledged records are lost"), "{text}");
    assert_eq!(trace_ids(&dir.path().join("out")).len(), 10);
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(summary.contains("; 10 rows, 0 dead letters"), "{summary}");
}
