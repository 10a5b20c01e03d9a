//! Records whose folder sync failed on a local destination: visible, not yet durable. A
//! reader that settles a partition on one (where it resumes, what a push log releases) waits
//! until a sync of its folder succeeds, since a power loss could still take it.

use std::io::Write;

use super::checkpoint::{CheckpointError, Checkpoints};
use super::tests::{checkpoint, claim, setup, KEY};

const FAIL: &str = "local folder sync: fail";

#[test]
fn a_seal_whose_folder_sync_failed_is_not_resumed_after_until_a_sync_succeeds() {
    let (_d, _rt, dest) = setup();
    let cps = Checkpoints::new(dest.clone(), "j");
    let t = cps.take_term(KEY, "a").unwrap();
    let mut f = dest.create("d/a.txt").unwrap();
    f.write_all(b"x").unwrap();
    let c = claim(1, t, "a", &[&f], &["d/a.txt"]);
    cps.claim(&c).unwrap();
    f.commit().unwrap();
    // The seal's record is linked into place, then its folder's sync fails: the commit
    // reports failure with its record visible.
    crate::hooks::set(FAIL, || {});
    let e = cps.seal(&c, &checkpoint(&c, 10)).unwrap_err();
    assert!(matches!(e, CheckpointError::Sink(_)), "{e}");
    // The resync after the failure: the folder still cannot be synced, so the partition is
    // not settled on that record (it was, and a push log released the commit's records).
    crate::hooks::set(FAIL, || {});
    let e = cps.reconcile(KEY, t, "a").unwrap_err();
    assert!(e.to_string().contains("a folder sync failed"), "{e}");
    // Nothing was settled on it either: the claim stays (removed, a power loss could leave
    // the commit's files with neither its record nor its claim, and nothing would abort them).
    assert!(dest
        .exists(&format!("_sluice/j/fence/{KEY}/claim-000000000001.json"))
        .unwrap());
    // The disk answers again: the commit stands and the partition resumes after it.
    let r = cps.reconcile(KEY, t, "a").unwrap();
    assert_eq!((r.latest.unwrap().next_offset, r.next_seq), (10, 2));
    assert!(dest.exists("d/a.txt").unwrap());
}

#[test]
fn a_claim_or_seal_written_again_after_a_failed_folder_sync_stands_once_synced() {
    let (_d, _rt, dest) = setup();
    let cps = Checkpoints::new(dest.clone(), "j");
    let t = cps.take_term(KEY, "a").unwrap();
    let c = claim(1, t, "a", &[], &[]);
    crate::hooks::set(FAIL, || {});
    assert!(cps.claim(&c).is_err());
    // Written again, found there as this writer's own: taken only once its folder syncs.
    crate::hooks::set(FAIL, || {});
    assert!(cps.claim(&c).is_err());
    cps.claim(&c).unwrap();
    let cp = checkpoint(&c, 5);
    crate::hooks::set(FAIL, || {});
    assert!(cps.seal(&c, &cp).is_err());
    crate::hooks::set(FAIL, || {});
    assert!(cps.seal(&c, &cp).is_err());
    cps.seal(&c, &cp).unwrap();
    crate::hooks::clear(FAIL);
}
