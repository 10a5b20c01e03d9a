//! A partition whose key starts with `.` (a Kafka topic may: `.audit`) has its state folders
//! listed on a local destination as on an object store.

use std::io::Write;

use super::checkpoint::Checkpoints;
use super::tests::{checkpoint, claim, setup};

/// Its claims, commits and keys are seen: before, local listings passed over every folder
/// starting with `.`, so the partition's commits were not `committed()`, its claims not
/// `claimed_files()` (a vacuum's guard) and its key not among `keys()`. Hidden temporary
/// files, and hidden folders outside `_sluice/`, are still passed over.
#[test]
fn a_partition_of_a_topic_starting_with_a_dot_is_listed_like_any() {
    let (d, _rt, dest) = setup();
    let cps = Checkpoints::new(dest.clone(), "j");
    let key = ".audit-0";
    let t = cps.take_term(key, "a").unwrap();
    cps.reconcile(key, t, "a").unwrap();
    let rel = "d/%2Eaudit-0-0.txt";
    let mut f = dest.create(rel).unwrap();
    f.write_all(b"x").unwrap();
    let mut c = claim(1, t, "a", &[&f], &[rel]);
    c.key = key.into();
    cps.claim(&c).unwrap();
    assert_eq!(cps.claimed_files().unwrap(), [rel], "the claim in flight");
    f.commit().unwrap();
    let mut sealed = checkpoint(&c, 10);
    sealed.key = key.into();
    cps.seal(&c, &sealed).unwrap();
    cps.release(key, 1, t, "a").unwrap();
    assert!(cps.committed().unwrap(), "its commit stands");
    assert_eq!(cps.keys().unwrap(), [key]);
    let (committed, _) = cps.settle_unfinished("b").unwrap();
    assert!(committed);
    let r = cps
        .reconcile(key, cps.take_term(key, "c").unwrap(), "c")
        .unwrap();
    assert_eq!(r.latest.map(|l| l.next_offset), Some(10));

    let root = d.path();
    std::fs::create_dir_all(root.join(".snapshot/d")).unwrap();
    std::fs::write(root.join(".snapshot/d/old.txt"), b"x").unwrap();
    std::fs::write(root.join("d/.e.txt.1-0.tmp"), b"x").unwrap();
    std::fs::write(root.join("_sluice/j/checkpoints/.audit-0/.x.tmp"), b"x").unwrap();
    let listed = dest.list("").unwrap();
    assert!(listed.contains(&rel.to_string()), "{listed:?}");
    assert!(
        listed
            .iter()
            .any(|p| p.starts_with("_sluice/j/checkpoints/.audit-0/")),
        "{listed:?}"
    );
    assert!(
        !listed
            .iter()
            .any(|p| p.starts_with(".snapshot") || p.ends_with(".tmp")),
        "{listed:?}"
    );
}
