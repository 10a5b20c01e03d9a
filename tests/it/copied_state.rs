//! A copy of a push job's state folder (a volume snapshot) started as a second process: the
//! original and the copy are told apart by their logs' runs, and what a refused start holds
//! comes out with `sluice wal export` (a spill of the same records with it); a WAL left
//! behind by a switch to `durability = "memory"`; an export into a closed pipe.

use crate::helpers::*;
use crate::kafka::{spawn_run, spawn_with, wait_log};
use crate::owners::wal_segments;
use crate::push::{copy_state, long_files, push_acked, push_job, second_process, start};

/// A copy of a push process's state folder (a volume snapshot) started as a second process
/// of the job: both logs have one identity, and after the copy each appends other records at
/// the same positions. The original, holding acknowledged rows it had not committed, resumed
/// at the copy's checkpoint as if it were its own and skipped them. Checkpoints now name the
/// runs of the log that wrote them: the original refuses (naming the copy) and keeps its WAL,
/// while the copy, whose uncommitted rows the original committed after the copy was made (a
/// restore from a snapshot; committed by the original's next process, whose run the copy
/// does not know), continues from the original's checkpoint. The original's rows then come
/// out with `sluice wal export` and land once pushed again.
#[test]
fn a_copy_of_a_push_processs_state_folder_is_told_apart_from_the_original() {
    let dir = tempfile::tempdir().unwrap();
    let job_a = long_files(push_job(dir.path(), "wal", "", ""));
    let job_b = second_process(&job_a);
    let out = dir.path().join("out");

    // A acknowledges 20 rows; its state folder is copied while it runs; it acknowledges 10
    // more and dies; its next process commits all 30 at its stop.
    let (mut a, addr) = start(&job_a, &dir.path().join("a1.log"));
    push_acked(&addr, "base", 20);
    copy_state(dir.path());
    push_acked(&addr, "t", 10);
    a.kill().unwrap();
    a.wait().unwrap();
    let (a, _) = start(&job_a, &dir.path().join("a1b.log"));
    sigterm(&a);
    assert!(a.wait_with_output().unwrap().status.success());
    assert_eq!(trace_ids(&out).len(), 30);

    // A acknowledges 100 rows and dies before committing them.
    let (mut a, addr) = start(&job_a, &dir.path().join("a2.log"));
    push_acked(&addr, "a", 100);
    a.kill().unwrap();
    a.wait().unwrap();
    let held = wal_segments(&dir.path().join("state/wal"));

    // B, started from the copy, holds the 20 rows A committed after the copy: it continues
    // from A's checkpoint, and commits 50 rows of its own at the positions where A's 100
    // wait in A's WAL.
    let log = dir.path().join("b.log");
    let (b, addr) = start(&job_b, &log);
    push_acked(&addr, "b", 50);
    sigterm(&b);
    assert!(b.wait_with_output().unwrap().status.success());
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("continues from there"),
        "B did not continue from A's checkpoint"
    );
    assert_eq!(trace_ids(&out).len(), 80);

    // A again: B's checkpoint has A's log identity, but a run A's folder does not know.
    let log = dir.path().join("a3.log");
    let a = spawn_run(&job_a, &log);
    let text = wait_log(&log, "a copy of this process's log", 1, 60);
    sigterm(&a);
    a.wait_with_output().unwrap();
    assert!(
        text.contains("a copy of this process's log")
            && text.contains("which no commit of its own covered"),
        "A resumed from the copy's checkpoint:\n{text}"
    );
    assert_eq!(
        wal_segments(&dir.path().join("state/wal")),
        held,
        "A's WAL changed"
    );
    let ids = trace_ids(&out);
    assert_eq!(ids.len(), 80, "{ids:?}");
    assert!(ids.values().all(|n| *n == 1), "{ids:?}");
    for (tag, n) in [("base", 20), ("t", 10), ("b", 50)] {
        assert!(
            (0..n).all(|i| ids.contains_key(&format!("{tag}-{i}"))),
            "{tag}: {ids:?}"
        );
    }

    // The way out the refusal names: its rows exported from the position it gives, the WAL
    // moved aside, the rows pushed again. Every acknowledged row then lands once.
    let from = text
        .split("--from ")
        .nth(1)
        .and_then(|t| t.split('`').next())
        .expect("the refusal names `sluice wal export … --from N`");
    let held_rows = dir.path().join("held.jsonl");
    let export = sluice(&[
        "wal",
        "export",
        job_a.to_str().unwrap(),
        "--from",
        from,
        "--output",
        held_rows.to_str().unwrap(),
    ]);
    assert!(
        export.status.success(),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    assert_eq!(
        wal_segments(&dir.path().join("state/wal")),
        held,
        "the export changed the WAL"
    );
    let body = std::fs::read(&held_rows).unwrap();
    assert_eq!(
        body,
        crate::push::events("a", 100),
        "the rows A held, as pushed"
    );
    std::fs::rename(dir.path().join("state/wal"), dir.path().join("wal-aside")).unwrap();
    let (a, addr) = start(&job_a, &dir.path().join("a4.log"));
    let mut client = crate::push::http_client::Client::new(&addr);
    let answer = client.post("/v1/repos/nginx_access/data", "", &body);
    assert!(matches!(answer, Ok((200, _, _))), "{answer:?}");
    sigterm(&a);
    assert!(a.wait_with_output().unwrap().status.success());
    let ids = trace_ids(&out);
    assert_eq!(ids.len(), 180, "{ids:?}");
    assert!(ids.values().all(|n| *n == 1), "{ids:?}");
}

/// A push process A stopped with acknowledged rows in its channel, spilled (its workers held
/// still until the stop deadline passed); another process B of the job commits in its own
/// log's positions; A's start is refused, naming the export. Followed as the refusal says
/// (export, WAL moved aside, start, push the export again), every row lands once: the export
/// removes the spill, whose rows it holds. Before, the start restored the spill after B's
/// checkpoint and the pushed export wrote the same rows again.
#[test]
fn the_export_a_refused_start_names_takes_the_spill_of_its_records_with_it() {
    export_after_a_refusal(false);
}

/// The same where B started from a copy of A's state folder made while A ran (20 rows in,
/// 10 more after): the refusal names the copy's point, the spill's rows before it are the
/// copy's to commit, and those after are in the export. Before, the export refused that
/// `--from` and named 0, whose export put the copy's rows in a second time.
#[test]
fn the_export_after_a_copy_leaves_the_copys_rows_to_the_copy() {
    export_after_a_refusal(true);
}

fn export_after_a_refusal(copy: bool) {
    let dir = tempfile::tempdir().unwrap();
    let job_a = long_files(push_job(dir.path(), "wal", "", ""));
    let text = std::fs::read_to_string(&job_a)
        .unwrap()
        .replace("stop_deadline = \"20s\"", "stop_deadline = \"2s\"");
    std::fs::write(&job_a, &text).unwrap();
    let job_b = second_process(&job_a);
    let out = dir.path().join("out");

    // A's workers are held from the start: what it acknowledges waits in its channel.
    let hold = dir.path().join("hold");
    std::fs::write(&hold, b"").unwrap();
    let log = dir.path().join("a1.log");
    let a = spawn_with(
        "run",
        &job_a,
        &log,
        &[("SLUICE_FAULT", &format!("hold_worker:@{}", hold.display()))],
    );
    let addr = crate::admin::admin_addr(&log);
    let running = wait_log(&log, "to=Running", 1, 60);
    assert!(running.contains("to=Running"), "{running}");
    let rows = if copy {
        push_acked(&addr, "base", 20);
        copy_state(dir.path());
        push_acked(&addr, "t", 10);
        30
    } else {
        for i in 0..3 {
            push_acked(&addr, &format!("s{i}"), 100);
        }
        300
    };
    sigterm(&a);
    let spilled = wait_log(&log, "spilled the channel to disk", 1, 60);
    assert!(spilled.contains("spilled the channel"), "{spilled}");
    std::fs::remove_file(&hold).unwrap();
    assert!(a.wait_with_output().unwrap().status.success());
    assert!(dir.path().join("state/spill/manifest.json").exists());
    assert_eq!(trace_ids(&out).len(), 0);

    // B commits 50 rows of its own (at its stop); from the copy, the 20 it holds too.
    let (b, addr) = start(&job_b, &dir.path().join("b.log"));
    push_acked(&addr, "b", 50);
    sigterm(&b);
    assert!(b.wait_with_output().unwrap().status.success());

    // A is refused, naming the export.
    let log = dir.path().join("a2.log");
    let a = spawn_run(&job_a, &log);
    let refused = wait_log(&log, "which no commit of its own covered", 1, 60);
    sigterm(&a);
    a.wait_with_output().unwrap();
    let from = refused
        .split("--from ")
        .nth(1)
        .and_then(|t| t.split('`').next())
        .unwrap_or_else(|| panic!("the refusal names `sluice wal export … --from N`:\n{refused}"));
    let held_rows = dir.path().join("held.jsonl");
    let export = sluice(&[
        "wal",
        "export",
        job_a.to_str().unwrap(),
        "--output",
        held_rows.to_str().unwrap(),
        "--from",
        from,
    ]);
    let said = String::from_utf8_lossy(&export.stderr);
    assert!(export.status.success(), "{said}");
    assert!(said.contains("removed the spill"), "{said}");
    assert!(!dir.path().join("state/spill/manifest.json").exists());

    // As the refusal says: the WAL moved aside, A started, the export pushed again.
    std::fs::rename(dir.path().join("state/wal"), dir.path().join("wal-aside")).unwrap();
    let (a, addr) = start(&job_a, &dir.path().join("a3.log"));
    let body = std::fs::read(&held_rows).unwrap();
    let mut client = crate::push::http_client::Client::new(&addr);
    let answer = client.post("/v1/repos/nginx_access/data", "", &body);
    assert!(matches!(answer, Ok((200, _, _))), "{answer:?}");
    sigterm(&a);
    assert!(a.wait_with_output().unwrap().status.success());
    let ids = trace_ids(&out);
    let twice: Vec<_> = ids.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "{} rows written twice, such as {:?}",
        twice.len(),
        &twice[..twice.len().min(5)]
    );
    assert_eq!(ids.len(), rows + 50, "{ids:?}");
}

/// A push job switched from `durability = "wal"` to `"memory"` while its WAL held
/// acknowledged rows no commit covered (the process was killed): the start is refused, naming
/// the folder and the way out, and writes nothing. Started once with the WAL, the rows are
/// committed; then the memory start goes on, the folder only mentioned. Before, the memory
/// start never read the folder and the rows were lost without a word.
#[test]
fn a_switch_to_memory_durability_is_refused_while_the_wal_holds_uncommitted_rows() {
    let dir = tempfile::tempdir().unwrap();
    let job = long_files(push_job(dir.path(), "wal", "", ""));
    let wal = std::fs::read_to_string(&job).unwrap();
    let memory = wal.replace("durability = \"wal\"", "durability = \"memory\"");
    let out = dir.path().join("out");
    let (mut a, addr) = start(&job, &dir.path().join("a1.log"));
    push_acked(&addr, "w", 40);
    a.kill().unwrap();
    a.wait().unwrap();

    std::fs::write(&job, &memory).unwrap();
    let log = dir.path().join("refused.log");
    let mut refused = spawn_run(&job, &log);
    let status = wait_exit(&mut refused, "the memory start to be refused", 30);
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(!status.success(), "{said}");
    assert!(
        said.contains("that no commit of its log covered") && said.contains("durability = \"wal\""),
        "{said}"
    );
    assert_eq!(trace_ids(&out).len(), 0);
    // A log without an identity (an earlier version's) cannot be matched to commits: refused
    // while it holds records.
    std::fs::remove_file(dir.path().join("state/wal/log-id")).unwrap();
    let log = dir.path().join("refused2.log");
    let mut refused = spawn_run(&job, &log);
    let status = wait_exit(&mut refused, "the memory start to be refused", 30);
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(
        !status.success() && said.contains("has no identity"),
        "{said}"
    );

    std::fs::write(&job, &wal).unwrap();
    let (a, _) = start(&job, &dir.path().join("a2.log"));
    sigterm(&a);
    assert!(a.wait_with_output().unwrap().status.success());
    assert_eq!(trace_ids(&out).len(), 40);

    std::fs::write(&job, &memory).unwrap();
    let log = dir.path().join("a3.log");
    let (a, addr) = start(&job, &log);
    push_acked(&addr, "m", 10);
    sigterm(&a);
    assert!(a.wait_with_output().unwrap().status.success());
    let ids = trace_ids(&out);
    assert_eq!(ids.len(), 50, "{ids:?}");
    assert!(ids.values().all(|n| *n == 1), "{ids:?}");
    assert!(std::fs::read_to_string(&log)
        .unwrap()
        .contains("every record it holds is committed"));
}

/// `sluice wal export` into a pipe its reader closed (`… | head -c 1`): the error names
/// standard output, not a WAL segment. Before: "WAL …/000….wal: Broken pipe".
#[test]
fn a_wal_export_into_a_closed_pipe_blames_standard_output() {
    let dir = tempfile::tempdir().unwrap();
    let job = push_job(dir.path(), "wal", "", "");
    let (run, addr) = start(&job, &dir.path().join("push.log"));
    push_acked(&addr, "w", 2000);
    assert!(run.stop("the push job", 60).success());
    let mut export = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["wal", "export", job.to_str().unwrap(), "--from", "0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(export.stdout.take());
    let out = export.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("writing to standard output"), "{err}");
    assert!(!err.contains(".wal:"), "{err}");
}

/// A WAL damaged in the middle of acknowledged pushes (a byte flipped in the second of three,
/// after a kill): the refused start points at `wal export --past-damage`, which writes out the
/// first and third pushes and names the positions passed over. Without it the export stops
/// at the damage, naming its byte (it said "corrupt at byte 0"); an export that wrote nothing
/// leaves no file (it left an empty one).
#[test]
fn acknowledged_pushes_after_damage_in_the_wal_can_be_exported() {
    let dir = tempfile::tempdir().unwrap();
    let job = long_files(push_job(dir.path(), "wal", "", ""));
    let (mut run, addr) = start(&job, &dir.path().join("a.log"));
    for tag in ["a", "b", "c"] {
        push_acked(&addr, tag, 50);
    }
    run.child().kill().unwrap();
    let _ = run.child().wait();
    let segments: Vec<_> = files_under(&dir.path().join("state"), true)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    let [segment] = &segments[..] else {
        panic!("{segments:?}")
    };
    let first = crate::push::events("a", 50).len();
    let mut bytes = std::fs::read(segment).unwrap();
    bytes[8 + 16 + first + 16 + 100] ^= 0xff;
    std::fs::write(segment, bytes).unwrap();

    let j = job.to_str().unwrap();
    let refused = sluice_refused(&["run", j]);
    // It names the position the records after the damage begin at: the third push's.
    let second = crate::push::events("b", 50).len();
    let from = (first + second).to_string();
    assert!(
        refused.contains(&format!("--past-damage --from {from} ")),
        "{refused}"
    );
    let out = dir.path().join("x.jsonl");
    let o = sluice(&[
        "wal",
        "export",
        j,
        "--from",
        "0",
        "--output",
        out.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("valid records follow"),
        "{err}"
    );
    assert!(!err.contains("byte 0:"), "{err}");
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(
        text.lines().count(),
        50,
        "the first push, before the damage"
    );

    let o = sluice(&[
        "wal",
        "export",
        j,
        "--from",
        "0",
        "--past-damage",
        "--output",
        out.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains(&format!("passed over positions {first} to ")),
        "{err}"
    );
    let text = std::fs::read_to_string(&out).unwrap();
    let tags: Vec<&str> = text
        .lines()
        .map(|l| &l[l.find("\"trace_id\":\"").unwrap() + 12..][..1])
        .collect();
    assert_eq!(tags.len(), 100, "{err}");
    assert!(tags[..50].iter().all(|t| *t == "a") && tags[50..].iter().all(|t| *t == "c"));

    // The recovery the refusal names: the records after the damage out, the damage moved
    // aside, those records pushed again. Every acknowledged push but the damaged one, once.
    let rest = dir.path().join("rest.jsonl");
    let r = rest.to_str().unwrap();
    sluice_ok(&[
        "wal",
        "export",
        j,
        "--past-damage",
        "--from",
        &from,
        "--output",
        r,
    ]);
    let log = dir.path().join("b.log");
    let run = KillOnDrop::new(
        std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["run", j, "--move-wal-damage"])
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let addr = crate::admin::admin_addr(&log);
    wait_log(&log, "to=Running", 1, 60);
    let mut client = crate::push::http_client::Client::new(&addr);
    let answer = client.post(
        "/v1/repos/nginx_access/data",
        "",
        &std::fs::read(&rest).unwrap(),
    );
    assert!(matches!(answer, Ok((200, _, _))), "{answer:?}");
    // (Files stay open until the stop commits them.)
    assert!(run.stop("the job", 60).success());
    let ids = trace_ids(&dir.path().join("out"));
    assert_eq!(ids.len(), 100, "{ids:?}");
    assert!(ids.values().all(|n| *n == 1), "{ids:?}");
    assert!(ids.keys().all(|k| !k.starts_with("b-")), "{ids:?}");

    let none = dir.path().join("none.jsonl");
    let o = sluice(&[
        "wal",
        "export",
        j,
        "--from",
        "999999999",
        "--output",
        none.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(!none.exists(), "an export of nothing leaves no file");
}
