//! `sluice run --from-checkpoint`: a dry run, a replay the source can no longer make (refused
//! before anything is deleted), kill -9 half-way through a roll-back, and a roll-back made
//! once: a later start with the flag still set does not repeat it, `--again` does.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::helpers::*;
use crate::run::{assert_exactly_once, broken, job_file, run_to_end, write_events};

/// Two partitions (files) of 6,000 and 4,000 events, rotated every 1,500 rows, run to their
/// end: several commits each.
fn committed(dir: &Path) -> (PathBuf, PathBuf) {
    let a = dir.join("a.jsonl");
    let b = dir.join("b.jsonl");
    write_events(&a, 6000, 0);
    write_events(&b, 4000, 6000);
    let job = job_file(
        dir,
        &[a, b],
        "[sink.rotation]\nmax_rows = 1500\n[sink.partition]\ntemplate = \"dt={ts:%Y-%m-%d}/\"\n",
    );
    run_to_end(&job);
    let out = dir.join("out");
    assert_exactly_once(&out, 10_000, broken(0, 10_000));
    (job, out)
}

#[test]
fn a_roll_back_is_planned_refused_when_it_cannot_replay_and_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let (job, out) = committed(dir.path());
    let job_s = job.to_str().unwrap();
    // A dry run lists what a roll-back would delete, and deletes nothing.
    // Data, dead letters and checkpoint records (fence records may change).
    let listing = |out: &Path| -> Vec<PathBuf> {
        files_under(out, false)
            .into_iter()
            .filter(|p| !p.to_string_lossy().contains("/_sluice/it/fence/"))
            .collect()
    };
    let before = listing(&out);
    let plan = sluice_ok(&["run", job_s, "--from-checkpoint", "1", "--dry-run"]);
    assert!(
        plan.contains("resume partition a-0 at offset") && plan.contains("delete dt="),
        "{plan}"
    );
    assert_eq!(listing(&out), before);
    // A source that can no longer replay from there (the file shrank, its start kept) is
    // refused before anything is deleted.
    let a = dir.path().join("a.jsonl");
    let full = std::fs::read(&a).unwrap();
    std::fs::write(&a, &full[..5000]).unwrap();
    let o = sluice(&["run", job_s, "--from-checkpoint", "1"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("cannot replay partition a-0"),
        "{err}"
    );
    assert_eq!(listing(&out), before, "nothing deleted");
    // Nor is another file as long as the one read, whose start differs (the check of a
    // file's start comes before a roll-back's claims, which delete).
    let mut other = full.clone();
    other[0] = b' ';
    std::fs::write(&a, &other).unwrap();
    let err = sluice_refused(&["run", job_s, "--from-checkpoint", "1"]);
    assert!(err.contains("is not the file the job read"), "{err}");
    assert_eq!(listing(&out), before, "nothing deleted");
    std::fs::write(&a, &full).unwrap();
    // A kill -9 half-way through a roll-back (claimed; sealed, files not yet deleted), then a
    // plain run: still exactly once.
    for point in ["roll_back_claimed:1", "roll_back_sealed:1"] {
        let half = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["run", job_s, "--from-checkpoint", "1"])
            .env("SLUICE_FAULT", point)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&half.stderr);
        assert!(
            !half.status.success() && text.contains("SLUICE_FAULT"),
            "{point}: {text}"
        );
        run_to_end(&job);
        assert_exactly_once(&out, 10_000, broken(0, 10_000));
    }
}

/// The data files of the destination (a roll-back replaces files with new names).
fn data_files(out: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = files_under(out, true)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    files.sort();
    files
}

/// Moves the time recorded in every roll-back of the destination back by `ms`: what a start
/// that much later sees.
fn age_roll_backs(out: &Path, ms: i64) {
    let mut aged = 0;
    for p in files_under(&out.join("_sluice"), false) {
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        if !text.contains("\"rollback_to\"") {
            continue;
        }
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let at = v["at_ms"].as_i64().expect("a roll-back records its time");
        v["at_ms"] = (at - ms).into();
        std::fs::write(&p, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
        aged += 1;
    }
    assert!(aged > 0, "no roll-back record under {}", out.display());
}

/// A roll-back is made once: started again an hour later with the flag still set (a service
/// definition nobody edited), the job leaves the replayed files alone and says why; the dry
/// run says so too. `--again` rolls back once more, and processes of a group started together
/// with it (here: a second start right after) roll back once between them.
#[test]
fn a_roll_back_is_made_once_unless_asked_again() {
    let dir = tempfile::tempdir().unwrap();
    let (job, out) = committed(dir.path());
    let job_s = job.to_str().unwrap();
    let run = |extra: &[&str]| -> String {
        let o = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["run", job_s, "--from-checkpoint", "1"])
            .args(extra)
            .env("SLUICE_LOG", "info")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(o.status.success(), "{text}");
        assert_exactly_once(&out, 10_000, broken(0, 10_000));
        text
    };
    let before = data_files(&out);
    let text = run(&[]);
    assert!(
        text.contains("replaying from an older checkpoint"),
        "{text}"
    );
    let replayed = data_files(&out);
    assert_ne!(replayed, before, "the roll-back replaced the later files");

    age_roll_backs(&out, 3_600_000);
    let text = run(&[]);
    assert!(
        text.contains("already rolled back to this checkpoint by an earlier run; not repeated"),
        "{text}"
    );
    assert!(
        !text.contains("replaying from an older checkpoint"),
        "{text}"
    );
    assert_eq!(
        data_files(&out),
        replayed,
        "a start an hour later rolled back again"
    );
    let plan = sluice_ok(&["run", job_s, "--from-checkpoint", "1", "--dry-run"]);
    assert!(
        plan.contains("leave partition a-0 as it is") && !plan.contains("delete "),
        "{plan}"
    );
    let plan = sluice_ok(&[
        "run",
        job_s,
        "--from-checkpoint",
        "1",
        "--again",
        "--dry-run",
    ]);
    assert!(plan.contains("delete "), "{plan}");

    let text = run(&["--again"]);
    assert!(
        text.contains("replaying from an older checkpoint"),
        "{text}"
    );
    let again = data_files(&out);
    assert_ne!(again, replayed, "--again rolled back once more");
    let text = run(&["--again"]);
    assert!(
        text.contains("already rolled back to this checkpoint minutes ago"),
        "{text}"
    );
    assert_eq!(data_files(&out), again);
}

/// A dry run says what the run would do, no more: it fails where the run would stop (a
/// partition without the checkpoint asked for; it exited 0), leaves out the files the job no
/// longer reads (it listed their files for deletion; the run leaves them), and refuses a
/// table as the run does (it listed deletes).
#[test]
fn a_dry_run_fails_leaves_out_and_refuses_as_the_run_would() {
    let dir = tempfile::tempdir().unwrap();
    let (job, _) = committed(dir.path());
    let job_s = job.to_str().unwrap();
    let o = sluice(&["run", job_s, "--from-checkpoint", "99", "--dry-run"]);
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(!o.status.success(), "{out}");
    assert!(
        out.contains("stop at partition a-0: it has no checkpoint 99"),
        "{out}"
    );
    assert!(err.contains("would stop at 2 partition(s)"), "{err}");

    // The job reads only b.jsonl now.
    let text = std::fs::read_to_string(&job).unwrap();
    let a = format!("{:?}, ", dir.path().join("a.jsonl").display().to_string());
    assert!(text.contains(&a), "{text}");
    std::fs::write(&job, text.replace(&a, "")).unwrap();
    let plan = sluice_ok(&["run", job_s, "--from-checkpoint", "1", "--dry-run"]);
    assert!(
        plan.contains("leave partition a-0 as it is: the job no longer reads its file")
            && plan.contains("resume partition b-0 at offset")
            && !plan.contains("delete dt=2024-05-01/a-"),
        "{plan}"
    );

    let text = std::fs::read_to_string(&job).unwrap();
    std::fs::write(
        &job,
        text.replace("[sink]\n", "[sink]\ntable = \"delta\"\n"),
    )
    .unwrap();
    let err = sluice_refused(&["run", job_s, "--from-checkpoint", "1", "--dry-run"]);
    assert!(err.contains("cannot roll back a table"), "{err}");
}
