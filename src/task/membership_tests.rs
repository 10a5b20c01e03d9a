//! Tests of partitions joining: terms claimed side by side, roll-backs refused or pruned,
//! damaged records.

use super::*;
use crate::store::Destination;
use crate::task::claims::{claim, ClaimFailed};

/// Checkpoints of job `j` in a folder of their own (kept with the runtime while used).
fn checkpoints() -> (tempfile::TempDir, tokio::runtime::Runtime, Checkpoints) {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dest = Destination::parse(dir.path().to_str().unwrap(), rt.handle().clone()).unwrap();
    (dir, rt, Checkpoints::new(dest, "j"))
}

/// Partitions claimed side by side come back in the order asked, each with its next term;
/// two processes claiming the same partitions at once never both hold one term (one write
/// wins each term's name), and a claim that loses says it is fenced.
#[test]
fn partitions_claimed_side_by_side_get_their_own_terms_in_order() {
    let (_dir, _rt, cps) = checkpoints();
    let keys: Vec<(String, Option<FromCheckpoint>)> =
        (0..40).map(|i| (format!("t-{i}"), None)).collect();
    for _ in 0..3 {
        cps.take_term("t-7", "before").unwrap();
    }
    let terms: Vec<u64> = match claim_all(&cps, None, &keys) {
        Ok(c) => c.into_iter().map(|c| c.term).collect(),
        Err(f) => panic!("t-{}: {}", f.index, f.error),
    };
    for (i, t) in terms.iter().enumerate() {
        assert_eq!(*t, if i == 7 { 4 } else { 1 }, "t-{i}");
    }
    // Another process takes terms of the same partitions meanwhile.
    let (mine, theirs) = std::thread::scope(|s| {
        let other = s.spawn(|| {
            keys.iter()
                .map(|(k, _)| cps.take_term(k, "another process").unwrap())
                .collect::<Vec<u64>>()
        });
        (claim_all(&cps, None, &keys), other.join().unwrap())
    });
    match mine {
        Ok(mine) => {
            for (i, c) in mine.iter().enumerate() {
                assert!(c.term > terms[i] && c.term != theirs[i], "t-{i}");
            }
        }
        // Fenced by the other process's newer term: then nothing after it is claimed.
        Err(ClaimFailed {
            error: TaskError::Checkpoint(e),
            ..
        }) if e.is_fenced() => {}
        Err(f) => panic!("t-{}: {}", f.index, f.error),
    }
}

/// A roll-back to a checkpoint the partition's history no longer holds (pruned) says so,
/// and what to do when the flag was left from a roll-back already made; one that never
/// existed is unknown.
#[test]
fn a_roll_back_to_a_pruned_checkpoint_says_it_was_pruned() {
    let (_dir, _rt, cps) = checkpoints();
    cps.record_abort_for_tests("t-0", 1, false);
    let unknown = check_replay(&cps, "t-0", 5, None).unwrap_err().to_string();
    assert!(unknown.contains("no checkpoint 5"), "{unknown}");
    cps.record_abort_for_tests("t-0", 40, true);
    let pruned = check_replay(&cps, "t-0", 5, None).unwrap_err().to_string();
    assert!(
        pruned.contains("was pruned")
            && pruned.contains("from 40 on")
            && pruned.contains("start without --from-checkpoint"),
        "{pruned}"
    );
}

/// Another process, with a table, holds partition `t-0` of job `j` and has sealed and
/// published two commits (files `f1`, `f2`); its term. With `during`, it makes the table and
/// publishes while this process claims, just after the claim's new term.
fn a_table_owner(
    dir: &std::path::Path,
    rt: &tokio::runtime::Runtime,
    cps: &Checkpoints,
    during: bool,
) -> u64 {
    use crate::commit::checkpoint::Checkpoint;
    use crate::table::Publisher;
    let theirs = cps.take_term("t-0", "other").unwrap();
    let commits: Vec<Checkpoint> = (1..=2)
        .map(|seq| {
            let file = format!("f{seq}.parquet");
            std::fs::write(dir.join(&file), b"PAR1").unwrap();
            let c = Checkpoint::for_tests("j", "t-0", seq, seq * 10, &[&file]);
            cps.record_for_tests(&c);
            c
        })
        .collect();
    let dest = cps.destination().clone();
    let handle = rt.handle().clone();
    let publish = move || {
        let schema = std::sync::Arc::new(arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new("n", arrow::datatypes::DataType::Int64, true),
        ]));
        let table =
            crate::table::delta::DeltaTable::open(&dest, "j", &schema, &[], 100, handle).unwrap();
        for c in &commits {
            table.publish(std::slice::from_ref(c)).unwrap();
        }
    };
    if during {
        crate::hooks::set("claim: after the term", publish);
    } else {
        publish();
    }
    theirs
}

/// This process (a table-less config, started when no table was there) claims `t-0`, rolling
/// back to commit 1: refused, naming the table, and the files the table names stay.
fn roll_back_refused(dir: &std::path::Path, cps: &Checkpoints) {
    let roll = Some(FromCheckpoint {
        seq: 1,
        again: false,
        compacted: false,
    });
    let e = match claim(cps, None, "t-0", roll) {
        Ok(_) => panic!("a partition the table holds was rolled back"),
        Err(e) => e.to_string(),
    };
    crate::hooks::clear("claim: after the term");
    assert!(e.contains("another process made a table"), "{e}");
    assert!(
        dir.join("f2.parquet").exists(),
        "a file the table names was deleted"
    );
}

/// A roll-back whose start found no table, where another process has made one since and
/// published the partition's commits: refused before a new term is taken, so the table's
/// owner goes on unfenced.
#[test]
fn a_roll_back_is_refused_when_a_table_was_made_after_its_start() {
    let (dir, rt, cps) = checkpoints();
    let theirs = a_table_owner(dir.path(), &rt, &cps, false);
    roll_back_refused(dir.path(), &cps);
    cps.check_term("t-0", theirs).unwrap();
}

/// The same, with the table made while the claim takes its term: refused under the new term.
/// Before, the commits' files were deleted and the table named files that were gone.
#[test]
fn a_roll_back_is_refused_when_a_table_is_made_while_it_claims() {
    let (dir, rt, cps) = checkpoints();
    a_table_owner(dir.path(), &rt, &cps, true);
    roll_back_refused(dir.path(), &cps);
}

/// A table-less process (an older job file, a second process) claiming a partition of a
/// destination where another process has made a table: refused, naming the table, before
/// its new term when the table was there (the table's owner goes on unfenced) and under it
/// when the table is made while it claims. Before, its plain commits stopped the table's
/// writers at their next catch-up (files without partition values, refused for good).
#[test]
fn a_table_less_claim_is_refused_where_a_table_was_made_since_its_start() {
    for during in [false, true] {
        let (dir, rt, cps) = checkpoints();
        let theirs = a_table_owner(dir.path(), &rt, &cps, during);
        let e = match claim_all(&cps, None, &[("t-0".to_string(), None)]) {
            Ok(_) => panic!("a table-less process claimed a partition of a table"),
            Err(f) => f.error.to_string(),
        };
        crate::hooks::clear("claim: after the term");
        assert!(e.contains("holds a Delta table"), "{e}");
        if !during {
            cps.check_term("t-0", theirs).unwrap();
        }
    }
}

/// A partition whose records are damaged fails the claims, named by its place in the list,
/// whichever thread met it.
#[test]
fn a_damaged_partition_fails_the_claims_and_names_itself() {
    let (dir, _rt, cps) = checkpoints();
    let damaged = dir.path().join("_sluice/j/checkpoints/t-5");
    std::fs::create_dir_all(&damaged).unwrap();
    std::fs::write(damaged.join("000000000001.json"), b"{ not json").unwrap();
    let keys: Vec<(String, Option<FromCheckpoint>)> =
        (0..40).map(|i| (format!("t-{i}"), None)).collect();
    match claim_all(&cps, None, &keys) {
        Ok(_) => panic!("a damaged record was claimed past"),
        Err(f) => {
            assert_eq!(f.index, 5, "{}", f.error);
            assert!(f.error.to_string().contains("t-5"), "{}", f.error);
        }
    }
}

/// `--from-checkpoint 2` left set after t-0 was rolled back: t-1, a partition new since
/// (none of its own yet, then commits 1 to 5 made after the roll-back), is not rolled back
/// and its files stay. Before, a start with the flag failed on it ("no checkpoint 2") while
/// it was new, then rolled it back to its own commit 2, deleting files readers had seen. A
/// partition whose checkpoint 2 predates the roll-back (processes of a group started
/// together) is still rolled back.
#[test]
fn a_flag_left_set_leaves_a_partition_newer_than_the_roll_back_alone() {
    use crate::commit::checkpoint::Checkpoint;
    let (dir, _rt, cps) = checkpoints();
    for key in ["t-0", "t-2"] {
        for seq in 1..=3 {
            cps.record_for_tests(&Checkpoint::for_tests("j", key, seq, seq * 10, &[]));
        }
    }
    let flag = Some(FromCheckpoint {
        seq: 2,
        again: false,
        compacted: false,
    });
    assert!(claim(&cps, None, "t-0", flag).unwrap().rolled_back);
    // The next start with the flag still set: t-0 is not repeated, new t-1 is left alone,
    // t-2 (its checkpoint 2 made before the roll-back) is rolled back.
    let asked = |keys: &[&str]| {
        roll_backs(&cps, keys.iter().map(|k| (k.to_string(), flag)).collect()).unwrap()
    };
    let got = asked(&["t-0", "t-1", "t-2"]);
    assert_eq!(
        got.iter().map(|(_, f)| f.is_some()).collect::<Vec<_>>(),
        [false, false, true]
    );
    // Later t-1 has commits 1 to 5 with files.
    let now = crate::commit::now_ms();
    for seq in 1..=5 {
        let f = format!("p1-{seq}.parquet");
        std::fs::write(dir.path().join(&f), b"PAR1").unwrap();
        let mut c = Checkpoint::for_tests("j", "t-1", seq, seq * 10, &[&f]);
        c.committed_at_ms = now + 1;
        cps.record_for_tests(&c);
    }
    let got = asked(&["t-1"]);
    assert_eq!(got[0].1, None, "t-1 is left alone");
    let c = claim(&cps, None, "t-1", got[0].1).unwrap();
    assert!(!c.rolled_back);
    assert!((1..=5).all(|s| dir.path().join(format!("p1-{s}.parquet")).exists()));
    // Another topic's roll-back says nothing of this one's checkpoint 2.
    for seq in 1..=3 {
        let mut c = Checkpoint::for_tests("j", "u-0", seq, seq * 10, &[]);
        c.committed_at_ms = now + 1;
        cps.record_for_tests(&c);
    }
    assert_eq!(asked(&["u-0"])[0].1, flag, "u-0 is rolled back");
}

/// A roll-back this process made is not asked again once its record is pruned (a few hundred
/// commits later): a task its supervisor restarts keeps the flag. Before, every restart
/// asked it again and failed ("was pruned"), for good.
#[test]
fn a_roll_back_made_here_is_not_asked_again_once_its_record_is_pruned() {
    use crate::commit::checkpoint::Checkpoint;
    let (dir, _rt, cps) = checkpoints();
    for seq in 1..=3 {
        cps.record_for_tests(&Checkpoint::for_tests("j", "p-0", seq, seq * 10, &[]));
    }
    let flag = Some(FromCheckpoint {
        seq: 2,
        again: false,
        compacted: false,
    });
    assert!(claim(&cps, None, "p-0", flag).unwrap().rolled_back);
    std::fs::remove_dir_all(dir.path().join("_sluice/j/checkpoints/p-0")).unwrap();
    cps.record_abort_for_tests("p-0", 40, true);
    let asked = roll_backs(&cps, vec![("p-0".to_string(), flag)]).unwrap();
    assert_eq!(asked[0].1, None, "asked again");
    // Another destination's partition of the same name is its own.
    let (_other, _rt2, elsewhere) = checkpoints();
    for seq in 1..=3 {
        elsewhere.record_for_tests(&Checkpoint::for_tests("j", "p-0", seq, seq * 10, &[]));
    }
    let asked = roll_backs(&elsewhere, vec![("p-0".to_string(), flag)]).unwrap();
    assert_eq!(asked[0].1, flag);
}

/// `--from-checkpoint 2` met by a partition that another member, started without the flag,
/// went on exporting for hours after its topic's roll-back (it moved here, or this start is
/// weeks later): not rolled back, its later files stay. Before, it was rolled back then,
/// deleting everything exported since. One committed within the hour after the roll-back (a
/// rolling restart adding the flag member by member) is still rolled back.
#[test]
fn a_partition_exported_on_for_hours_after_its_topics_roll_back_is_left_alone() {
    use crate::commit::checkpoint::Checkpoint;
    let (dir, _rt, cps) = checkpoints();
    for key in ["t-0", "t-1", "t-2"] {
        for seq in 1..=3 {
            cps.record_for_tests(&Checkpoint::for_tests("j", key, seq, seq * 10, &[]));
        }
    }
    let flag = Some(FromCheckpoint {
        seq: 2,
        again: false,
        compacted: false,
    });
    assert!(claim(&cps, None, "t-0", flag).unwrap().rolled_back);
    let now = crate::commit::now_ms();
    for (key, later) in [("t-1", 2 * 3_600_000), ("t-2", 30 * 60_000)] {
        let f = format!("{key}-4.parquet");
        std::fs::write(dir.path().join(&f), b"PAR1").unwrap();
        let mut c = Checkpoint::for_tests("j", key, 4, 40, &[&f]);
        c.committed_at_ms = now + later;
        cps.record_for_tests(&c);
    }
    let asked = roll_backs(&cps, ["t-1", "t-2"].map(|k| (k.to_string(), flag)).to_vec()).unwrap();
    assert_eq!(asked[0].1, None, "t-1 is left alone");
    assert_eq!(asked[1].1, flag, "t-2 is rolled back");
    assert!(!claim(&cps, None, "t-1", asked[0].1).unwrap().rolled_back);
    assert!(dir.path().join("t-1-4.parquet").exists());
}
