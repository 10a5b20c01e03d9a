//! `sluice vacuum` against a local table: what it keeps (commits in flight, files versions
//! written during it add or remove) and what it deletes.

use std::time::{Duration, SystemTime};

use super::{commit, open, schema, setup};
use crate::commit::checkpoint::VERSION;
use crate::table::vacuum::{vacuum, VacuumOptions};
use crate::table::Publisher;

/// Writes `name` under `dir`, dated two hours ago.
fn old_file(dir: &std::path::Path, name: &str) {
    let p = dir.join(name);
    std::fs::write(&p, b"PAR1").unwrap();
    let f = std::fs::File::options().write(true).open(&p).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(7200))
        .unwrap();
}

/// A commit in flight (claimed, its file visible, not sealed yet) keeps its file through a
/// vacuum however old the file looks (S3 dates an upload by its start, so a file kept open
/// longer than the retention lands looking old); an old file nothing names is deleted.
#[test]
fn vacuum_keeps_the_file_of_a_claimed_commit_and_deletes_an_old_file_nothing_names() {
    use crate::commit::checkpoint::Checkpoints;
    use crate::commit::fence::Claim;
    let (dir, rt, dest) = setup();
    let t = open(&dest, &rt, &schema(None));
    for name in ["in-flight.parquet", "stray.parquet"] {
        old_file(dir.path(), name);
    }
    // Another job's writer, with no checkpoint yet: only its claim names the file.
    let cps = Checkpoints::new(dest.clone(), "other");
    let term = cps.take_term("t-0", "w").unwrap();
    cps.claim(&Claim {
        version: VERSION,
        key: "t-0".into(),
        seq: 1,
        term,
        owner: "w".into(),
        from_offset: 0,
        next_offset: 10,
        next_line: 0,
        files: vec!["in-flight.parquet".into()],
        staged: Vec::new(),
        dead_letter_files: Vec::new(),
        dead_letter_staged: Vec::new(),
        claimed_at_ms: 1,
        undo: false,
    })
    .unwrap();
    let opts = VacuumOptions {
        older_than: Duration::from_secs(3600),
        dry_run: false,
    };
    let report = vacuum(&t, &dest, &opts, &|_, _| {}).unwrap();
    assert_eq!(report.files, vec!["stray.parquet".to_string()]);
    assert_eq!(report.kept_unpublished, 1);
    assert!(dir.path().join("in-flight.parquet").exists());
    assert!(!dir.path().join("stray.parquet").exists());
}

/// A file the plan found unnamed (its upload dated before the retention: S3 dates an upload
/// by its start), which a version written while the vacuum ran adds and a compaction then
/// removes: readers of the version between may still read it, so it stays until its removal
/// is older than the retention. Before, only the files live at the end were kept, and this
/// one was deleted.
#[test]
fn a_file_added_and_compacted_away_while_the_vacuum_ran_is_kept() {
    use crate::table::delta::LiveFile;
    let (dir, rt, dest) = setup();
    let t = open(&dest, &rt, &schema(None));
    for name in ["slow.parquet", "stray.parquet"] {
        old_file(dir.path(), name);
    }
    let writer = open(&dest, &rt, &schema(None));
    let root = dir.path().to_path_buf();
    crate::hooks::set("vacuum: after the plan", move || {
        writer
            .publish(&[commit("t-0", 1, 10, &["slow.parquet"])])
            .unwrap();
        std::fs::write(root.join("compacted.parquet"), b"PAR1").unwrap();
        let f = |p: &str| LiveFile {
            path: p.into(),
            size: 4,
            rows: Some(10),
            ..Default::default()
        };
        let mut gone = Default::default();
        writer
            .replace(1, &[f("slow.parquet")], &f("compacted.parquet"), &mut gone)
            .unwrap();
    });
    let opts = VacuumOptions {
        older_than: Duration::from_secs(3600),
        dry_run: false,
    };
    let report = vacuum(&t, &dest, &opts, &|_, _| {}).unwrap();
    crate::hooks::clear("vacuum: after the plan");
    assert_eq!(report.files, vec!["stray.parquet".to_string()]);
    assert_eq!(report.kept_recent, 1);
    assert!(
        dest.exists("slow.parquet").unwrap(),
        "a removed file of a recent version was deleted"
    );
    assert!(!dest.exists("stray.parquet").unwrap());
}

/// A version written after the plan whose `add` this process cannot read (a path whose
/// escapes decode to no UTF-8 text) stops the vacuum before anything is deleted: the file it
/// names cannot be told from the planned ones.
#[test]
fn a_version_after_the_plan_that_cannot_be_read_stops_the_vacuum() {
    let (dir, rt, dest) = setup();
    let t = open(&dest, &rt, &schema(None));
    old_file(dir.path(), "stray.parquet");
    let d = dest.clone();
    crate::hooks::set("vacuum: after the plan", move || {
        let add = r#"{"add":{"path":"%ff.parquet","partitionValues":{},"size":4,"modificationTime":1,"dataChange":true}}"#;
        d.put_atomic(
            "_delta_log/00000000000000000001.json",
            format!("{add}\n").as_bytes(),
            true,
        )
        .unwrap();
    });
    let opts = VacuumOptions {
        older_than: Duration::from_secs(3600),
        dry_run: false,
    };
    let e = vacuum(&t, &dest, &opts, &|_, _| {})
        .unwrap_err()
        .to_string();
    crate::hooks::clear("vacuum: after the plan");
    assert!(e.contains("cannot read"), "{e}");
    assert!(dest.exists("stray.parquet").unwrap());
}
