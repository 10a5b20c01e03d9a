//! The partition table's lifecycle, without threads.

use super::*;

fn reg(key: &str, offset: u64, term: u64) -> Registration {
    Registration {
        key: key.into(),
        topic: "t".into(),
        offset,
        line: 0,
        seq: 3,
        term,
        settle_late: false,
    }
}

fn landed(next_offset: u64, seq: u64) -> Option<Landed> {
    Some(Landed {
        next_offset,
        next_line: 0,
        seq,
    })
}

#[test]
fn a_commit_moves_the_partition_and_is_reported_once() {
    let t = Partitions::default();
    let e = t.register(7, reg("k", 100, 1));
    assert_eq!((e, t.source_epoch(7)), (0, 0));
    let ticket = t.begin_commit(7, e).expect("owned, current epoch");
    assert!(t.committing(&[7]));
    t.end_commit(7, &ticket, landed(150, 4));
    assert!(!t.committing(&[7]));
    let s = t.owned(7).unwrap();
    assert_eq!((s.committed_offset, s.seq), (150, 4));
    assert_eq!(t.take_committed(), vec![(7, 150)]);
    assert!(t.take_committed().is_empty());
    // A failed commit moves nothing and reports nothing.
    let ticket = t.begin_commit(7, e).unwrap();
    t.end_commit(7, &ticket, None);
    assert_eq!(t.owned(7).unwrap().committed_offset, 150);
    assert!(t.take_committed().is_empty());
}

#[test]
fn files_of_an_older_epoch_or_a_lost_partition_are_not_committed() {
    let t = Partitions::default();
    let e = t.register(1, reg("k", 0, 1));
    let r = t.rewind(1, Some(1)).expect("owned in term 1");
    assert_eq!(r.epoch, e + 1);
    assert!(
        t.begin_commit(1, e).is_none(),
        "files written before the rewind"
    );
    assert!(t.begin_commit(1, r.epoch).is_some());
    let t = Partitions::default();
    let e = t.register(1, reg("k", 0, 1));
    assert_eq!(t.revoke(&[1]), vec![(1, e + 1, "k".to_string(), true)]);
    assert!(t.begin_commit(1, e + 1).is_none(), "no longer owned");
    assert!(t.owned(1).is_none());
    assert_eq!(t.not_owned([1, 2]), vec![1, 2]);
}

#[test]
fn a_commit_that_outlived_its_registration_does_not_write_into_the_next() {
    let t = Partitions::default();
    let e = t.register(1, reg("k", 0, 1));
    let ticket = t.begin_commit(1, e).unwrap();
    // Revoked and assigned again (a newer term) while the commit ran.
    t.revoke(&[1]);
    let e2 = t.register(1, reg("k", 40, 2));
    assert_eq!(e2, e + 2);
    t.end_commit(1, &ticket, landed(90, 4));
    let s = t.owned(1).unwrap();
    assert_eq!((s.committed_offset, s.term, s.seq), (40, 2, 3));
    // The source still learns of the commit (it stands in the store).
    assert_eq!(t.take_committed(), vec![(1, 90)]);
    // A reconcile made for term 1 is not applied to term 2 either.
    assert_eq!(t.resynced(1, 1, 10, Some((90, 0))), None);
    assert_eq!(t.owned(1).unwrap().seq, 3);
    assert_eq!(t.resynced(1, 2, 10, Some((90, 0))), Some(40));
    let s = t.owned(1).unwrap();
    assert_eq!((s.committed_offset, s.seq), (90, 9));
    assert_eq!(t.resynced(1, 2, 2, Some((90, 0))), None, "did not move");
    assert_eq!(t.owned(1).unwrap().seq, 9, "seq never goes back");
}

/// A commit of an earlier registration that ends after the next registration's commits
/// moved past it is not reported: the group's offset stepped back (lag tools read it).
#[test]
fn a_late_commit_of_an_earlier_registration_does_not_move_the_group_back() {
    let t = Partitions::default();
    let e = t.register(1, reg("k", 0, 1));
    let old = t.begin_commit(1, e).unwrap();
    t.revoke(&[1]);
    let e2 = t.register(1, reg("k", 50, 2));
    let ticket = t.begin_commit(1, e2).unwrap();
    t.end_commit(1, &ticket, landed(120, 6));
    t.end_commit(1, &old, landed(50, 5));
    assert_eq!(t.take_committed(), vec![(1, 120)]);
    assert_eq!(t.committed_offsets(&[1]), vec![(1, 120)]);
}

/// A commit still running when its partition was revoked, fenced before it ended (the next
/// owner took a newer term and committed): the revocation does not hand the group this
/// registration's offset, which is behind the next owner's.
#[test]
fn a_commit_fenced_after_the_revocation_leaves_the_group_offset_alone() {
    let t = Partitions::default();
    let e = t.register(1, reg("k", 30, 1));
    let ticket = t.begin_commit(1, e).unwrap();
    assert_eq!(t.revoke(&[1]), vec![(1, e + 1, "k".to_string(), true)]);
    assert_eq!(
        t.fence(1, Some((1, "other")), true),
        None,
        "no longer owned"
    );
    assert!(t.overdue_fence(std::time::Duration::ZERO).is_none());
    drop(ticket);
    assert_eq!(t.committed_offsets(&[1]), vec![]);
    // A fence of an earlier registration does not mark the next one.
    t.register(1, reg("k", 40, 2));
    assert_eq!(t.fence(1, Some((1, "other")), true), None);
    assert_eq!(t.committed_offsets(&[1]), vec![(1, 40)]);
}

#[test]
fn a_fence_takes_the_partition_away_only_from_the_fenced_registration() {
    let t = Partitions::default();
    t.register(1, reg("k", 0, 5));
    // A fence of term 4 is of an earlier ownership: term 5 is newer.
    assert_eq!(t.fence(1, Some((4, "other")), true), None);
    assert!(t.owned(1).is_some());
    let e = t.fence(1, Some((5, "other")), true).expect("fenced");
    assert_eq!(t.epoch(1), e);
    assert!(t.owned(1).is_none());
    assert_eq!(t.fence(1, None, true), None, "already gone");
    assert_eq!(t.overdue_fence(Duration::from_secs(3600)), None);
    let o = t.overdue_fence(Duration::ZERO).expect("overdue");
    assert_eq!((o.partition, o.owner.as_deref()), (1, Some("other")));
    // The group's revocation (or a new registration) clears it.
    t.revoke(&[1]);
    assert_eq!(t.overdue_fence(Duration::ZERO), None);
    t.register(2, reg("j", 0, 1));
    t.fence(2, None, true).unwrap();
    t.register(2, reg("j", 0, 2));
    assert_eq!(t.overdue_fence(Duration::ZERO), None);
    // Outside a group nothing waits for a revocation.
    t.register(3, reg("i", 0, 1));
    t.fence(3, None, false).unwrap();
    assert_eq!(t.overdue_fence(Duration::ZERO), None);
}

#[test]
fn a_rewind_reaches_the_source_side_only_while_current() {
    let t = Partitions::default();
    t.register(1, reg("k", 30, 1));
    assert_eq!(t.rewind(1, Some(2)), None, "another registration's failure");
    assert_eq!(t.rewind(1, None), None);
    let r = t.rewind(1, Some(1)).unwrap();
    assert_eq!((r.offset, r.epoch), (30, 1));
    assert_eq!(t.source_epoch(1), 0, "until the source applies it");
    let rs = t.take_rewinds();
    assert_eq!(rs, vec![r]);
    assert!(t.is_current(&r));
    assert!(t.seeked(&r));
    assert_eq!(t.source_epoch(1), 1);
    // A rewind overtaken by a revocation is dropped.
    let r = t.rewind(1, Some(1)).unwrap();
    t.revoke(&[1]);
    assert!(!t.is_current(&r));
    assert!(!t.seeked(&r));
    assert_eq!(t.source_epoch(1), 1);
}

#[test]
fn a_revocation_flush_is_asked_served_and_dropped() {
    let t = Partitions::default();
    for p in 0..4 {
        t.register(p, reg(&format!("k{p}"), 0, 1));
    }
    t.ask_flush([0, 1, 2]);
    let mut mine = t.flush_asked(|p| p % 2 == 0);
    mine.sort_unstable();
    assert_eq!(mine, vec![0, 2]);
    assert!(!t.all_flushed(&[0, 2]));
    t.flushed(0);
    t.flushed(2);
    assert!(t.all_flushed(&[0, 2]));
    assert!(!t.all_flushed(&[1]));
    t.revoke(&[1]);
    assert!(
        t.all_flushed(&[1]),
        "a revocation drops what was not served"
    );
    assert_eq!(t.committed_offsets(&[0, 1, 9]), vec![(0, 0), (1, 0)]);
    assert_eq!(t.all_owned().len(), 3);
    assert_eq!(t.keys().len(), 4);
    assert_eq!(t.positions()[&3], (0, 0));
}

#[test]
fn edges_a_regression_would_hide_in() {
    let t = Partitions::default();
    let e = t.register(1, reg("k", 0, 5));
    // A new registration moves the source side's epoch with it (else its chunks are stale).
    t.revoke(&[1]);
    let e2 = t.register(1, reg("k", 0, 6));
    assert_eq!((t.source_epoch(1), e2), (e + 2, e + 2));
    // A failed commit still ends: a revocation waits on `committing`.
    let ticket = t.begin_commit(1, e2).unwrap();
    t.end_commit(1, &ticket, None);
    assert!(!t.committing(&[1]));
    // A commit that lands after a revocation in the same term still moves the position the
    // revocation hands to the group.
    let ticket = t.begin_commit(1, e2).unwrap();
    t.revoke(&[1]);
    t.end_commit(1, &ticket, landed(70, 4));
    assert_eq!(t.committed_offsets(&[1]), vec![(1, 70)]);
    // Neither a rewind nor a reconcile applies to a partition no longer owned.
    assert_eq!(t.rewind(1, Some(6)), None);
    assert_eq!(t.resynced(1, 6, 9, Some((99, 0))), None);
    // A refused fence leaves nothing to wait for; a fence naming a newer term applies.
    t.register(2, reg("j", 0, 5));
    assert_eq!(t.fence(2, Some((4, "other")), true), None);
    assert_eq!(t.overdue_fence(Duration::ZERO), None);
    assert!(t.fence(2, Some((6, "other")), true).is_some());
}

#[test]
fn a_registration_with_a_late_upload_is_handed_to_its_worker_once() {
    let t = Partitions::default();
    t.register(
        4,
        Registration {
            settle_late: true,
            ..reg("k4", 0, 1)
        },
    );
    t.register(5, reg("k5", 0, 1));
    assert_eq!(t.take_settle_late(|p| p % 2 == 1), Vec::<u32>::new());
    assert_eq!(t.take_settle_late(|p| p % 2 == 0), vec![4]);
    assert_eq!(t.take_settle_late(|_| true), Vec::<u32>::new());
}

/// A fenced partition is revoked as not owned: its committed offset, behind the writer that
/// fenced it, is not the group's to take.
#[test]
fn a_fenced_partition_is_revoked_as_not_owned() {
    let t = Partitions::default();
    t.register(1, reg("k", 0, 1));
    t.register(2, reg("j", 0, 1));
    t.fence(1, Some((1, "other")), true).unwrap();
    let owned: Vec<(u32, bool)> = t
        .revoke(&[1, 2])
        .into_iter()
        .map(|(p, _, _, owned)| (p, owned))
        .collect();
    assert_eq!(owned, vec![(1, false), (2, true)]);
}
