//! The commit protocol's records, claims, fence and roll-back, case by case (the model test
//! in `model.rs` interleaves them at random).

use std::io::Write;

use super::checkpoint::{Checkpoint, CheckpointError, Checkpoints, FileEntry, Outcome, VERSION};
use super::fence::Claim;
use crate::store::{Destination, OutputFile};

pub(super) const KEY: &str = "t-0";

pub(super) fn setup() -> (tempfile::TempDir, tokio::runtime::Runtime, Destination) {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dest = Destination::parse(dir.path().to_str().unwrap(), rt.handle().clone()).unwrap();
    (dir, rt, dest)
}

pub(super) fn claim(
    seq: u64,
    term: u64,
    owner: &str,
    files: &[&OutputFile],
    rels: &[&str],
) -> Claim {
    Claim {
        version: VERSION,
        key: KEY.into(),
        seq,
        term,
        owner: owner.into(),
        from_offset: 0,
        next_offset: 0,
        next_line: 0,
        files: rels.iter().map(|r| r.to_string()).collect(),
        staged: files
            .iter()
            .filter_map(|f| f.staged().map(str::to_string))
            .collect(),
        dead_letter_files: vec![],
        dead_letter_staged: vec![],
        claimed_at_ms: 0,
        undo: false,
    }
}

pub(super) fn checkpoint(c: &Claim, next: u64) -> Checkpoint {
    Checkpoint {
        version: VERSION,
        job: "j".into(),
        key: KEY.into(),
        seq: c.seq,
        next_offset: next,
        next_line: 0,
        files: c
            .files
            .iter()
            .map(|f| FileEntry {
                path: f.clone(),
                first_offset: 0,
                last_offset: 0,
                rows: 1,
                bytes: 1,
                partition: Default::default(),
            })
            .collect(),
        dead_letter_files: vec![],
        rows: 1,
        dead_letters: 0,
        committed_at_ms: 0,
        term: c.term,
        owner: c.owner.clone(),
        log: None,
        log_runs: Vec::new(),
        file: None,
        record: None,
        behind: None,
    }
}

fn file(dest: &Destination, rel: &str) -> OutputFile {
    let mut f = dest.create(rel).unwrap();
    f.write_all(b"x").unwrap();
    f
}

#[test]
fn a_commit_claims_publishes_seals_and_releases() {
    let (_d, _rt, dest) = setup();
    let cps = Checkpoints::new(dest.clone(), "j");
    let t = cps.take_term(KEY, "a").unwrap();
    assert_eq!(t, 1);
    let r = cps.reconcile(KEY, t, "a").unwrap();
    assert!(r.latest.is_none() && r.next_seq == 1);
    let f = file(&dest, "d/a.txt");
    let c = claim(1, t, "a", &[&f], &["d/a.txt"]);
    cps.claim(&c).unwrap();
    // A claim write that reported failure but landed: the retry is not a conflict.
    cps.claim(&c).unwrap();
    f.commit().unwrap();
    cps.seal(&c, &checkpoint(&c, 10)).unwrap();
    cps.seal(&c, &checkpoint(&c, 10)).unwrap();
    assert!(cps.release(KEY, 1, t, "a").unwrap().removed.is_empty());
    assert!(dest.exists("d/a.txt").unwrap());
    let r = cps.reconcile(KEY, t, "a").unwrap();
    assert_eq!((r.latest.unwrap().next_offset, r.next_seq), (10, 2));
    // A decided sequence number cannot be claimed again.
    let again = claim(1, t, "a", &[], &["d/other.txt"]);
    assert!(matches!(
        cps.claim(&again).unwrap_err(),
        CheckpointError::Taken { .. }
    ));
}

#[test]
fn a_newer_term_fences_an_older_writer_before_anything_is_visible() {
    let (_d, _rt, dest) = setup();
    let cps = Checkpoints::new(dest.clone(), "j");
    let old = cps.take_term(KEY, "old").unwrap();
    cps.reconcile(KEY, old, "old").unwrap();
    // The old writer claims, then pauses before publishing.
    let f = file(&dest, "d/old.txt");
    let c = claim(1, old, "old", &[&f], &["d/old.txt"]);
    cps.claim(&c).unwrap();
    // A new owner takes over: the claim is aborted and the staged file deleted.
    let new = cps.take_term(KEY, "new").unwrap();
    let r = cps.reconcile(KEY, new, "new").unwrap();
    assert_eq!(r.next_seq, 2);
    assert!(matches!(
        cps.outcome(KEY, 1).unwrap(),
        Some(Outcome::Abort(_))
    ));
    // The old writer wakes up: its rename finds nothing, its seal loses.
    assert!(
        f.commit().is_err(),
        "a fenced writer's file must not publish"
    );
    assert!(!dest.exists("d/old.txt").unwrap());
    let e = cps.seal(&c, &checkpoint(&c, 10)).unwrap_err();
    assert!(e.is_fenced(), "{e}");
    assert!(e.to_string().contains("new"), "{e}");
    // And its next claim is refused by the term check.
    let e = cps
        .claim(&claim(2, old, "old", &[], &["d/x.txt"]))
        .unwrap_err();
    assert!(e.is_fenced(), "{e}");
    assert!(cps.reconcile(KEY, old, "old").unwrap_err().is_fenced());
}

#[test]
fn files_published_after_a_fence_are_removed_by_the_next_release() {
    let (_d, _rt, dest) = setup();
    let cps = Checkpoints::new(dest.clone(), "j");
    let old = cps.take_term(KEY, "old").unwrap();
    cps.claim(&claim(1, old, "old", &[], &["d/late.txt"]))
        .unwrap();
    let new = cps.take_term(KEY, "new").unwrap();
    cps.reconcile(KEY, new, "new").unwrap();
    // An upload the old writer completes after its fence (object stores cannot refuse it).
    dest.put_atomic("d/late.txt", b"x", false).unwrap();
    let f = file(&dest, "d/new.txt");
    let c = claim(2, new, "new", &[&f], &["d/new.txt"]);
    cps.claim(&c).unwrap();
    f.commit().unwrap();
    cps.seal(&c, &checkpoint(&c, 10)).unwrap();
    assert_eq!(
        cps.release(KEY, 2, new, "new").unwrap().removed,
        vec!["d/late.txt"]
    );
    assert!(!dest.exists("d/late.txt").unwrap() && dest.exists("d/new.txt").unwrap());
}

#[test]
fn roll_back_removes_later_commits_and_survives_a_crash_half_way() {
    let (_d, _rt, dest) = setup();
    let cps = Checkpoints::new(dest.clone(), "j");
    let t = cps.take_term(KEY, "a").unwrap();
    for seq in 1..=3u64 {
        let rel = format!("d/{seq}.txt");
        let f = file(&dest, &rel);
        let c = claim(seq, t, "a", &[&f], &[&rel]);
        cps.claim(&c).unwrap();
        f.commit().unwrap();
        cps.seal(&c, &checkpoint(&c, seq * 10)).unwrap();
        cps.release(KEY, seq, t, "a").unwrap();
    }
    // A crash after a roll-back claim was written but before the commit record went: the
    // commit still stands, its file stays.
    let c3 = cps.history(KEY).unwrap().pop().unwrap();
    let mut half = claim(3, c3.term, &c3.owner, &[], &["d/3.txt"]);
    half.next_offset = 30;
    dest.put_atomic(
        "_sluice/j/fence/t-0/claim-000000000003.json",
        &serde_json::to_vec(&half).unwrap(),
        false,
    )
    .unwrap();
    let t2 = cps.take_term(KEY, "b").unwrap();
    let r = cps.reconcile(KEY, t2, "b").unwrap();
    assert_eq!(r.latest.unwrap().next_offset, 30);
    assert!(dest.exists("d/3.txt").unwrap());
    let r = cps.roll_back_to(KEY, 1, t2, "b").unwrap();
    assert_eq!(r.latest.unwrap().next_offset, 10);
    assert!(dest.exists("d/1.txt").unwrap());
    assert!(!dest.exists("d/2.txt").unwrap() && !dest.exists("d/3.txt").unwrap());
    assert_eq!(cps.history(KEY).unwrap().len(), 1);
    assert!(matches!(
        cps.roll_back_to(KEY, 7, t2, "b").unwrap_err(),
        CheckpointError::Unknown { .. }
    ));
}

#[test]
fn a_roll_back_still_resumes_at_its_target_once_the_target_record_is_pruned() {
    let (_d, _rt, dest) = setup();
    let cps = Checkpoints::new(dest.clone(), "j");
    let t = cps.take_term(KEY, "a").unwrap();
    for seq in 1..=3u64 {
        let c = claim(seq, t, "a", &[], &[]);
        cps.claim(&c).unwrap();
        cps.seal(&c, &checkpoint(&c, seq * 10)).unwrap();
        cps.release(KEY, seq, t, "a").unwrap();
    }
    let r = cps.roll_back_to(KEY, 1, t, "a").unwrap();
    assert_eq!(r.latest.unwrap().next_offset, 10);
    // The target's own record goes (as a concurrent prune could); the roll-back keeps its
    // resume point.
    dest.delete("_sluice/j/checkpoints/t-0/000000000001.json")
        .unwrap();
    let latest = cps
        .latest(KEY)
        .unwrap()
        .expect("the roll-back's target stands");
    assert_eq!((latest.seq, latest.next_offset), (1, 10));
    // A fenced writer prunes nothing.
    let t2 = cps.take_term(KEY, "b").unwrap();
    assert!(cps.prune(KEY, 1, t).unwrap_err().is_fenced());
    cps.prune(KEY, 1, t2).unwrap();
    assert_eq!(cps.latest(KEY).unwrap().unwrap().next_offset, 10);
}

#[test]
fn a_pending_record_of_an_older_version_is_finished() {
    let (_d, _rt, dest) = setup();
    let cps = Checkpoints::new(dest.clone(), "j");
    dest.put_atomic("d/unfinished.txt", b"x", false).unwrap();
    dest.put_atomic(
        "_sluice/j/pending/t-0.json",
        br#"{"key":"t-0","from_offset":0,"next_offset":5,"files":["d/unfinished.txt"]}"#,
        false,
    )
    .unwrap();
    let t = cps.take_term(KEY, "a").unwrap();
    let r = cps.reconcile(KEY, t, "a").unwrap();
    assert_eq!(r.removed, vec!["d/unfinished.txt"]);
    assert!(!dest.exists("d/unfinished.txt").unwrap());
    assert!(!dest.exists("_sluice/j/pending/t-0.json").unwrap());
}

#[test]
fn damaged_records_are_clear_errors() {
    let (_d, _rt, dest) = setup();
    let c = Checkpoints::new(dest.clone(), "j");
    dest.put_atomic(
        "_sluice/j/checkpoints/t-0/000000000001.json",
        b"{oops",
        false,
    )
    .unwrap();
    let e = c.latest("t-0").unwrap_err().to_string();
    assert!(
        e.contains("000000000001.json") && e.contains("damaged"),
        "{e}"
    );
}

/// A checkpoint record of 64 MiB and more (a sparse file here) is named as damaged without
/// being read into memory; one whose next offset is past any offset is damaged too (a seek
/// to it read as a negative offset, taken for one the broker had deleted).
#[test]
fn a_huge_record_or_an_offset_past_any_is_damage() {
    let (d, _rt, dest) = setup();
    let c = Checkpoints::new(dest.clone(), "j");
    let rel = "_sluice/j/checkpoints/t-0/000000000001.json";
    dest.put_atomic(rel, b"{}", false).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(d.path().join(rel))
        .unwrap()
        .set_len(crate::store::RECORD_CAP + 1)
        .unwrap();
    let e = c.outcome("t-0", 1).unwrap_err().to_string();
    assert!(
        e.contains("000000000001.json") && e.contains("more than any checkpoint record"),
        "{e}"
    );
    let mut far = checkpoint(&claim(1, 1, "a", &[], &[]), 0);
    far.key = "t-0".into();
    far.next_offset = 1 << 63;
    let text = serde_json::to_vec(&Outcome::Commit(Box::new(far))).unwrap();
    dest.put_atomic(rel, &text, false).unwrap();
    let e = c.outcome("t-0", 1).unwrap_err().to_string();
    assert!(e.contains("past any offset"), "{e}");
}

/// A term or claim record numbered u64::MAX (a hostile or damaged destination) is named as
/// such; the next term wrapped to 0 in a release build, and every later registration was
/// fenced by it, for good.
#[test]
fn a_term_or_sequence_at_the_top_of_u64_is_named_not_wrapped() {
    let (_d, _rt, dest) = setup();
    let c = Checkpoints::new(dest.clone(), "j");
    let top = c.term_path(KEY, u64::MAX);
    dest.put_atomic(&top, b"{}", false).unwrap();
    let e = c.take_term(KEY, "a").unwrap_err().to_string();
    assert!(e.contains("leaves no next term"), "{e}");
    dest.delete(&top).unwrap();
    let t = c.take_term(KEY, "a").unwrap();
    let top = claim(u64::MAX, t, "a", &[], &[]);
    let path = format!("{}claim-{}.json", c.fence_dir(KEY), u64::MAX);
    dest.put_atomic(&path, &serde_json::to_vec(&top).unwrap(), false)
        .unwrap();
    let e = c.reconcile(KEY, t, "a").err().map(|e| e.to_string());
    assert!(
        e.as_deref()
            .is_some_and(|e| e.contains("leaves no next one")),
        "{e:?}"
    );
}

/// One commit of `seq` by `owner` in term `t`: file `d/<seq>.txt`, resuming at `seq * 10`.
fn commit_n(cps: &Checkpoints, dest: &Destination, t: u64, owner: &str, seq: u64) {
    let rel = format!("d/{seq}.txt");
    let f = file(dest, &rel);
    let c = claim(seq, t, owner, &[&f], &[&rel]);
    cps.claim(&c).unwrap();
    f.commit().unwrap();
    cps.seal(&c, &checkpoint(&c, seq * 10)).unwrap();
    cps.release(KEY, seq, t, owner).unwrap();
}

/// The partitions with records are the keys: an empty local folder (a crash before the first
/// record's rename) or one holding only a hidden temporary file is not one.
#[test]
fn keys_are_the_folders_that_hold_records() {
    let (d, _rt, dest) = setup();
    let cps = Checkpoints::new(dest.clone(), "j");
    let t = cps.take_term(KEY, "a").unwrap();
    commit_n(&cps, &dest, t, "a", 1);
    let root = d.path().join("_sluice/j/checkpoints");
    std::fs::create_dir_all(root.join("empty-0")).unwrap();
    std::fs::create_dir_all(root.join("tmp-0")).unwrap();
    std::fs::write(root.join("tmp-0/.000000000001.json.tmp"), b"{}").unwrap();
    assert_eq!(cps.keys().unwrap(), vec![KEY.to_string()]);
}

/// A prune that stopped after recording its horizon (fenced by a newer owner, who then rolls
/// back to 5 and commits on) leaves the next prune scanning from where the stopped one
/// began: the undone commits 6 and 7 go before the roll-back that undid them, never after
/// (which would make them stand again, naming files the roll-back deleted).
#[test]
fn a_prune_that_stopped_half_way_is_finished_oldest_first() {
    let (_d, _rt, dest) = setup();
    let cps = Checkpoints::new(dest.clone(), "j");
    let a = cps.take_term(KEY, "a").unwrap();
    cps.reconcile(KEY, a, "a").unwrap();
    for s in 1..=10 {
        commit_n(&cps, &dest, a, "a", s);
    }
    // What a's first prune (keep 3) records before it deletes anything.
    for h in [1, 8] {
        dest.put_atomic(&format!("_sluice/j/pruned/{KEY}/{h:012}"), b"", true)
            .unwrap();
    }
    let b = cps.take_term(KEY, "b").unwrap();
    cps.reconcile(KEY, b, "b").unwrap();
    assert_eq!(
        cps.roll_back_to(KEY, 5, b, "b")
            .unwrap()
            .latest
            .unwrap()
            .seq,
        5
    );
    for s in 12..=20 {
        commit_n(&cps, &dest, b, "b", s);
    }
    cps.prune(KEY, 3, b).unwrap();
    let standing: Vec<u64> = cps.history(KEY).unwrap().iter().map(|c| c.seq).collect();
    assert!(
        !standing.contains(&7),
        "undone commit 7 stands again: {standing:?}"
    );
    for s in &standing {
        assert!(
            dest.exists(&format!("d/{s}.txt")).unwrap(),
            "{s} names a gone file"
        );
    }
    // The pass finished: one horizon record is left.
    assert_eq!(
        dest.list(&format!("_sluice/j/pruned/{KEY}/"))
            .unwrap()
            .len(),
        1
    );
}

/// A skip commits the next sequence number with no data files at the offset asked, under a
/// new term that fences the writer that stood there; it never moves a partition back, and the
/// commit names what it skipped, in its owner and in one dead letter.
#[test]
fn a_skip_moves_the_checkpoint_forward_under_a_new_term_and_never_back() {
    let (_d, _rt, dest) = setup();
    let cps = Checkpoints::new(dest.clone(), "j");
    let t = cps.take_term(KEY, "w").unwrap();
    commit_n(&cps, &dest, t, "w", 1);
    let letter = |name: &str| {
        crate::deadletter::DeadLetterWriter::new(dest.clone(), name.into(), KEY.into())
    };
    let s = cps
        .skip_to(KEY, 13, 0, "operator", letter("dl/skip.jsonl"))
        .unwrap();
    assert_eq!((s.from, s.to, s.seq, s.stood), (10, 13, 2, true));
    let latest = cps.latest(KEY).unwrap().unwrap();
    assert_eq!((latest.seq, latest.next_offset), (2, 13));
    assert!(latest.files.is_empty());
    assert!(
        latest.owner.contains("skipped offsets 10 to 12"),
        "{}",
        latest.owner
    );
    assert_eq!(
        (latest.dead_letters, latest.dead_letter_files.as_slice()),
        (1, &["dl/skip.jsonl".to_string()][..])
    );
    let line: serde_json::Value =
        serde_json::from_slice(&dest.read("dl/skip.jsonl").unwrap()).unwrap();
    assert_eq!(line["offset"], 12);
    assert_eq!(line["class"], "skipped");
    assert_eq!(line["source"], KEY);
    assert_eq!(
        line["reason"],
        "skipped by operator: offsets 10 to 12 were not read (at most 3 records)"
    );
    assert!(cps.check_term(KEY, t).unwrap_err().is_fenced());
    for (to, name) in [(13, "dl/again.jsonl"), (5, "dl/back.jsonl")] {
        assert!(matches!(
            cps.skip_to(KEY, to, 0, "operator", letter(name)),
            Err(CheckpointError::Skip { .. })
        ));
        assert!(dest.read(name).is_err(), "a refused skip wrote {name}");
    }
    assert_eq!(cps.latest(KEY).unwrap().unwrap().next_offset, 13);
}

/// A partition stuck on its first batch has no checkpoint: the skip makes its first one, from
/// where its run starts it (given). A skip to at or before there would move it back and is
/// refused.
#[test]
fn a_skip_gives_a_partition_with_no_checkpoint_its_first() {
    let (_d, _rt, dest) = setup();
    let cps = Checkpoints::new(dest.clone(), "j");
    let letter = |name: &str| {
        crate::deadletter::DeadLetterWriter::new(dest.clone(), name.into(), KEY.into())
    };
    assert!(matches!(
        cps.skip_to(KEY, 4, 4, "operator", letter("dl/none.jsonl")),
        Err(CheckpointError::Skip { .. })
    ));
    assert!(dest.read("dl/none.jsonl").is_err());
    let s = cps
        .skip_to(KEY, 13, 4, "operator", letter("dl/first.jsonl"))
        .unwrap();
    assert_eq!((s.from, s.to, s.seq, s.stood), (4, 13, 1, false));
    let latest = cps.latest(KEY).unwrap().unwrap();
    assert_eq!((latest.seq, latest.next_offset), (1, 13));
    let line: serde_json::Value =
        serde_json::from_slice(&dest.read("dl/first.jsonl").unwrap()).unwrap();
    assert_eq!(
        line["reason"],
        "skipped by operator: offsets 4 to 12 (it had no checkpoint) were not read (at most 9 records)"
    );
}

/// W takes a term and claims sequence 1 (file `d/w.txt`, not yet published); then P takes
/// the next term. (W's term, W's file, W's claim, P's term)
fn claimed_by_w_then_p_took_a_term(
    cps: &Checkpoints,
    dest: &Destination,
) -> (u64, OutputFile, Claim, u64) {
    let w = cps.take_term(KEY, "w").unwrap();
    cps.reconcile(KEY, w, "w").unwrap();
    let f = file(dest, "d/w.txt");
    let c = claim(1, w, "w", &[&f], &["d/w.txt"]);
    cps.claim(&c).unwrap();
    let p = cps.take_term(KEY, "p").unwrap();
    (w, f, c, p)
}

/// Q takes over, commits sequences 2 to 5, and prunes the record of sequence 1.
fn q_commits_on_and_prunes_the_first(cps: &Checkpoints, dest: &Destination) {
    let q = cps.take_term(KEY, "q").unwrap();
    cps.reconcile(KEY, q, "q").unwrap();
    for s in 2..=5 {
        commit_n(cps, dest, q, "q", s);
    }
    cps.prune(KEY, 2, q).unwrap();
    assert!(cps.outcome(KEY, 1).unwrap().is_none(), "pruned");
}

/// A writer paused inside a settle, after it read that a claim has no outcome and before it
/// writes the abort: meanwhile the claim's writer seals its commit, and a newer owner commits
/// on and prunes that commit's record. The abort then finds the name free and wins. Before,
/// the settle went on to delete the files of the standing commit (records lost for good);
/// the horizon now tells that the name was decided and pruned, and the files stay.
#[test]
fn a_settle_paused_while_the_commit_it_would_abort_wins_and_is_pruned_deletes_nothing() {
    let (_d, _rt, dest) = setup();
    let cps = Checkpoints::new(dest.clone(), "j");
    let (w, f, c, p) = claimed_by_w_then_p_took_a_term(&cps, &dest);
    let (others, d2) = (cps.clone(), dest.clone());
    crate::hooks::set("settle: before an abort", move || {
        // W publishes and seals (it passed its term checks before P took its term).
        f.commit().unwrap();
        others.seal(&c, &checkpoint(&c, 10)).unwrap();
        assert!(others.release(KEY, 1, w, "w").unwrap_err().is_fenced());
        // Q takes over, commits on, and prunes the commit of W.
        q_commits_on_and_prunes_the_first(&others, &d2);
    });
    // P's registration settles W's claim, pausing where the hook runs the others.
    let r = cps.reconcile(KEY, p, "p");
    assert!(
        dest.exists("d/w.txt").unwrap(),
        "the standing commit's file was deleted: {r:?}"
    );
}

/// A settle's abort refused because the claim's writer sealed the name first, and the settle
/// paused before reading the winner back while a newer owner committed on and pruned it:
/// the name is empty when read. That was "damaged", which stops the whole task; this
/// registration is fenced, and says so.
#[test]
fn an_outcome_gone_between_a_refused_write_and_its_read_back_is_a_fence_not_damage() {
    let (_d, _rt, dest) = setup();
    let cps = Checkpoints::new(dest.clone(), "j");
    let (_, f, c, p) = claimed_by_w_then_p_took_a_term(&cps, &dest);
    let (wc, wd) = (cps.clone(), c.clone());
    crate::hooks::set("settle: before an abort", move || {
        f.commit().unwrap();
        wc.seal(&wd, &checkpoint(&wd, 10)).unwrap();
    });
    let (others, d2) = (cps.clone(), dest.clone());
    crate::hooks::set("decide: after a refused write", move || {
        q_commits_on_and_prunes_the_first(&others, &d2);
    });
    let e = cps.reconcile(KEY, p, "p").err();
    crate::hooks::clear("decide: after a refused write");
    assert!(e.as_ref().is_some_and(|e| e.is_fenced()), "{e:?}");
    assert!(
        dest.exists("d/w.txt").unwrap(),
        "the standing commit's file"
    );
}

/// On a store where a publish may land late: a lost claim may still have an upload under way
/// when this reconcile aborted it, or when it was claimed or decided within the late window
/// and `RECENT_SKEW` (a later registration, after the task that aborted it failed); one
/// claimed and aborted long ago may not. A local folder has no late publish.
#[test]
fn a_recent_lost_claim_may_land_late_and_an_old_one_not() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dest = Destination::parse("memory://", rt.handle().clone()).unwrap();
    let cps = Checkpoints::new(dest.clone(), "j");
    let w = cps.take_term(KEY, "w").unwrap();
    cps.reconcile(KEY, w, "w").unwrap();
    let recent = Claim {
        claimed_at_ms: super::now_ms(),
        ..claim(1, w, "w", &[], &["d/w.txt"])
    };
    cps.claim(&recent).unwrap();
    let p = cps.take_term(KEY, "p").unwrap();
    let r = cps.reconcile(KEY, p, "p").unwrap();
    assert!(r.may_land_late && !r.lost_own, "aborted now");
    let q = cps.take_term(KEY, "q").unwrap();
    assert!(
        cps.reconcile(KEY, q, "q").unwrap().may_land_late,
        "decided just now"
    );
    // Claimed and aborted an hour ago: not, on either store.
    let (_d, _rt, local) = setup();
    for store in [&dest, &local] {
        let cps = Checkpoints::new(store.clone(), "old");
        let t = cps.take_term(KEY, "w").unwrap();
        let old = Claim {
            claimed_at_ms: super::now_ms() - 3_600_000,
            ..claim(1, t, "w", &[], &["d/old.txt"])
        };
        cps.put_claim(&old).unwrap();
        cps.record_abort_for_tests(KEY, 1, false);
        let t = cps.take_term(KEY, "q").unwrap();
        assert!(!cps.reconcile(KEY, t, "q").unwrap().may_land_late);
    }
    // A local folder: a claim aborted now is flagged (the worker's late window, none here,
    // decides); once decided, only its age counts, and a local folder has no window.
    let cps = Checkpoints::new(local.clone(), "recent");
    let t = cps.take_term(KEY, "w").unwrap();
    cps.put_claim(&Claim {
        claimed_at_ms: super::now_ms(),
        ..claim(1, t, "w", &[], &["d/r.txt"])
    })
    .unwrap();
    let t = cps.take_term(KEY, "q").unwrap();
    assert!(cps.reconcile(KEY, t, "q").unwrap().may_land_late);
    assert!(
        !cps.reconcile(KEY, t, "q").unwrap().may_land_late,
        "decided, local"
    );
}

/// Abort records are read once per process: they are never pruned nor rewritten, and while a
/// commit keeps failing every retry adds one above the last commit, which each reconcile's
/// walk down to that commit passes. Here the records are damaged after the first walk: the
/// same `Checkpoints` walks again without reading them (a fresh one reads, and fails).
#[test]
fn abort_records_are_read_once() {
    let (dir, _rt, dest) = setup();
    let cps = Checkpoints::new(dest.clone(), "job");
    cps.record_for_tests(&Checkpoint::for_tests("job", KEY, 1, 10, &[]));
    for seq in 2..=40 {
        cps.record_abort_for_tests(KEY, seq, false);
    }
    assert_eq!(cps.latest(KEY).unwrap().map(|c| c.seq), Some(1));
    for seq in 2..=40 {
        std::fs::write(dir.path().join(cps.record_path(KEY, seq)), b"{").unwrap();
    }
    assert_eq!(cps.latest(KEY).unwrap().map(|c| c.seq), Some(1));
    assert_eq!(cps.clone().latest(KEY).unwrap().map(|c| c.seq), Some(1));
    assert!(matches!(
        Checkpoints::new(dest, "job").latest(KEY),
        Err(CheckpointError::Corrupt { .. })
    ));
}
