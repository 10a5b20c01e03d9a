//! Backfill ranges and the live job's recorded starts, case by case.

use super::*;

/// A backfill range of repo `repo` over offsets `from..to` of partition `t-0`.
fn one_span(repo: &str, from: i64, to: i64) -> BackfillRange {
    BackfillRange {
        from: "earliest".into(),
        to: "latest".into(),
        repo: repo.into(),
        at: None,
        by: None,
        state: None,
        spans: Some(vec![Span {
            topic: "t".into(),
            partition: 0,
            from,
            to,
        }]),
    }
}

/// Offsets two spans both read: only of one partition, and only where they meet (end
/// exclusive: spans that touch share nothing).
#[test]
fn spans_overlap_only_on_one_partition_where_they_meet() {
    let s = |topic: &str, partition, from, to| Span {
        topic: topic.into(),
        partition,
        from,
        to,
    };
    let a = s("t", 0, 100, 200);
    assert_eq!(a.overlap(&s("t", 0, 150, 300)), Some((150, 200)));
    assert_eq!(a.overlap(&s("t", 0, 0, 1000)), Some((100, 200)));
    assert_eq!(a.overlap(&s("t", 0, 200, 300)), None, "touching");
    assert_eq!(a.overlap(&s("t", 0, 150, 150)), None, "empty");
    assert_eq!(a.overlap(&s("t", 1, 100, 200)), None, "another partition");
    assert_eq!(a.overlap(&s("u", 0, 100, 200)), None, "another topic");
}

/// The job's first start under `latest` is recorded once: a later call (another member,
/// a restart) reads the first one's time, and a partition's origins stay apart from it.
#[test]
fn the_first_start_is_recorded_once() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dest = Destination::parse("memory:///o", rt.handle().clone()).unwrap();
    assert_eq!(first_start(&dest, "job", 1_000).unwrap(), (1_000, true));
    assert_eq!(first_start(&dest, "job", 9_000).unwrap(), (1_000, false));
    assert_eq!(first_start(&dest, "other", 9_000).unwrap(), (9_000, true));
    assert_eq!(origin(&dest, "job", "first-start.json").unwrap(), None);
}

/// The newest term's origin counts, whatever its value (a paused owner's late record is
/// of an older term); a term's record is written once (a repeat keeps the first).
#[test]
fn the_newest_claims_origin_counts() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dest = Destination::parse("memory:///o", rt.handle().clone()).unwrap();
    assert_eq!(origin(&dest, "job", "t-0").unwrap(), None);
    record_origin(&dest, "job", ("t-0", 3), 500, false).unwrap();
    record_origin(&dest, "job", ("t-0", 3), 10, false).unwrap();
    assert_eq!(origin(&dest, "job", "t-0").unwrap(), Some(500));
    record_origin(&dest, "job", ("t-0", 3), 800, true).unwrap();
    assert_eq!(origin(&dest, "job", "t-0").unwrap(), Some(800), "moved");
    record_origin(&dest, "job", ("t-0", 12), 700, false).unwrap();
    assert_eq!(origin(&dest, "job", "t-0").unwrap(), Some(700));
    assert_eq!(
        dest.list("_sluice/job/origins/t-0/").unwrap(),
        ["_sluice/job/origins/t-0/000000000012.json"],
        "older terms removed"
    );
    record_origin(&dest, "job", ("t-0", 5), 200, false).unwrap();
    assert_eq!(
        origin(&dest, "job", "t-0").unwrap(),
        Some(700),
        "a late, older claim"
    );
    assert_eq!(origin(&dest, "job", "t-1").unwrap(), None);
    assert_eq!(origin(&dest, "job", "t-").unwrap(), None);
}

/// A live start is recorded before the backfills are looked at. A backfill of another
/// repo, or ending at or before the start, is no clash; a start inside the range of a
/// backfill that has committed moves to its end (and on through the next such range);
/// an uncommitted backfill's range, or one past the start, is a clash.
#[test]
fn a_live_start_is_recorded_then_checked_against_the_repos_backfills() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dest = Destination::parse("memory:///s", rt.handle().clone()).unwrap();
    let put = |name: &str, repo: &str, (from, to): (i64, i64), committed: bool| {
        let r = one_span(repo, from, to);
        dest.put_atomic(&range_record(name), &serde_json::to_vec(&r).unwrap(), false)
            .unwrap();
        let cps = crate::commit::checkpoint::Checkpoints::new(dest.clone(), name);
        // A commit that died half-way (an abort) is no commit.
        cps.record_abort_for_tests("t-0", 1, false);
        if committed {
            let c =
                crate::commit::checkpoint::Checkpoint::for_tests(name, "t-0", 2, to as u64, &[]);
            cps.record_for_tests(&c);
        }
    };
    put("old", "r", (0, 100), true);
    put("next", "r", (100, 400), true);
    put("other-repo", "q", (0, 1000), false);
    let (at, found) = hold_starts(&dest, "job", "r", &[("t-0".into(), 7, 50)]).unwrap();
    assert_eq!(
        origin(&dest, "job", "t-0").unwrap(),
        Some(400),
        "recorded where it moved"
    );
    assert_eq!((at, found), (vec![400], vec![]), "moved past both ranges");
    put("late", "r", (600, 700), false);
    let (at, found) = hold_starts(&dest, "job", "r", &[("t-0".into(), 8, 450)]).unwrap();
    assert_eq!(at, [450]);
    assert_eq!(
        found,
        [StartClash {
            key: "t-0".into(),
            backfill: "late".into(),
            range: ("earliest".into(), "latest".into()),
            start: 450,
            from: 600,
            to: 700,
            committed: false,
        }]
    );
    // A range past the start: not cleared by the backfill's commit (the start would not
    // move past it), so the remedy is to move the start.
    assert!(!found[0].clears_by_itself());
    assert!(found[0].to_string().contains("move the job's start"));
    let inside = StartClash {
        from: 450,
        ..found[0].clone()
    };
    assert!(inside.clears_by_itself());
    assert!(inside
        .to_string()
        .contains("once the backfill has committed"));
    assert!(hold_starts(&dest, "job", "r", &[("t-0".into(), 9, 700)])
        .unwrap()
        .1
        .is_empty());
    assert_eq!(origin(&dest, "job", "t-0").unwrap(), Some(700));
}

/// Backfills of [0, 100) and [100, 200): a start at 200 follows them, one at 300 leaves
/// 200..300 to neither (said once, from the last end), one inside a range or on
/// another partition is not a gap.
#[test]
fn a_start_past_the_backfills_ranges_is_a_gap_from_their_last_end() {
    let all = vec![
        ("a".to_string(), one_span("r", 0, 100)),
        ("b".to_string(), one_span("r", 100, 200)),
    ];
    let start = |key: &str, at| (key.to_string(), 1, at);
    let starts = vec![
        start("t-0", 200),
        start("t-0", 300),
        start("t-0", 150),
        start("t-1", 300),
    ];
    assert_eq!(gaps(&all, &starts), [("t-0", "b", 200, 300)]);
}

/// A backfill's record that it finished is about the recording of its range it read: a
/// record of another (written late by a run whose write reported failure, after a run from
/// its state folder that committed nothing replaced the range) says nothing of the range
/// now; the same range resumed from another state folder is the same. (It was a
/// bare mark: `checkpoints list` said "finished" of a range stopped half way, and the live
/// job did not warn of the offsets it left.)
#[test]
fn a_finished_record_is_about_the_recording_of_the_range_it_read() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dest = Destination::parse("memory:///f", rt.handle().clone()).unwrap();
    let mut first = one_span("r", 0, 100);
    first.state = Some("s1".into());
    assert!(!finished(&dest, "b", &first).unwrap(), "nothing recorded");
    record_finished(&dest, "b", &first).unwrap();
    assert!(finished(&dest, "b", &first).unwrap());
    // As the live job's copy holds it (the backfill's folder named): the same recording.
    let mut copy = first.clone();
    copy.at = Some("backfills/b".into());
    copy.by = Some("elsewhere".into());
    assert!(finished(&dest, "b", &copy).unwrap());
    let mut replaced = one_span("r", 0, 250);
    replaced.state = Some("s1".into());
    assert!(!finished(&dest, "b", &replaced).unwrap(), "another range");
    // A run from another state folder resumed it (the live job's copy then names that one).
    let mut resumed = first.clone();
    resumed.state = Some("s2".into());
    assert!(finished(&dest, "b", &resumed).unwrap(), "resumed elsewhere");
    dest.put_atomic("_sluice/b/finished.json", br#"{"at_ms":1}"#, false)
        .unwrap();
    assert!(
        !finished(&dest, "b", &first).unwrap(),
        "a record without its range"
    );
}
