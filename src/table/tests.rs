//! The Delta publisher against a local table: versions another writer took, a partition
//! published twice, callers sharing a version, schema changes, and the catch-up.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use delta_kernel::engine::arrow_conversion::TryFromArrow;

use super::delta::DeltaTable;
use super::{catch_up, Publisher, TableError};
use crate::commit::checkpoint::Checkpoint;
use crate::store::Destination;

mod retention;
mod vacuum;

fn schema(extra: Option<(&str, DataType)>) -> SchemaRef {
    let mut fields = vec![
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new("id", DataType::Utf8, false),
        Field::new("n", DataType::Int64, true),
    ];
    if let Some((name, t)) = extra {
        fields.push(Field::new(name, t, true));
    }
    Arc::new(Schema::new(fields))
}

fn setup() -> (tempfile::TempDir, tokio::runtime::Runtime, Destination) {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dest = Destination::parse(dir.path().to_str().unwrap(), rt.handle().clone()).unwrap();
    (dir, rt, dest)
}

fn open(dest: &Destination, rt: &tokio::runtime::Runtime, s: &SchemaRef) -> DeltaTable {
    DeltaTable::open(dest, "job", s, &[], 100, rt.handle().clone()).unwrap()
}

/// [`open`] partitioned by `id`.
fn open_by_id(dest: &Destination, rt: &tokio::runtime::Runtime, s: &SchemaRef) -> DeltaTable {
    DeltaTable::open(
        dest,
        "job",
        s,
        &["id".to_string()],
        100,
        rt.handle().clone(),
    )
    .unwrap()
}

fn commit(key: &str, seq: u64, next_offset: u64, files: &[&str]) -> Checkpoint {
    Checkpoint::for_tests("job", key, seq, next_offset, files)
}

/// Records `c` as sealed, its files written first (a catch-up names only files that exist).
fn record(cps: &crate::commit::checkpoint::Checkpoints, c: &Checkpoint) {
    for f in &c.files {
        cps.destination()
            .put_atomic(&f.path, b"PAR1", false)
            .unwrap();
    }
    cps.record_for_tests(c);
}

/// Every `add` path in the log, with how many versions added it, and the newest version.
fn adds(dest: &Destination) -> (std::collections::BTreeMap<String, usize>, usize) {
    let mut out = std::collections::BTreeMap::new();
    let mut versions = 0;
    for f in dest.list("_delta_log/").unwrap() {
        if !f.ends_with(".json") {
            continue;
        }
        versions += 1;
        for line in String::from_utf8(dest.read(&f).unwrap()).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            if let Some(p) = v["add"]["path"].as_str() {
                *out.entry(p.to_string()).or_default() += 1;
            }
        }
    }
    (out, versions - 1)
}

#[test]
fn a_partition_another_writer_published_as_far_is_not_published_again() {
    let (_d, rt, dest) = setup();
    let s = schema(None);
    let a = open(&dest, &rt, &s);
    // Opened before `a` publishes: it believes version 0 is the newest.
    let b = open(&dest, &rt, &s);
    a.publish(&[commit("t-0", 1, 10, &["f1.parquet"])]).unwrap();
    // `b` loses version 1, reads it, finds its commit there, and writes nothing.
    b.publish(&[commit("t-0", 1, 10, &["f1.parquet"])]).unwrap();
    let (paths, newest) = adds(&dest);
    assert_eq!(paths.get("f1.parquet"), Some(&1));
    assert_eq!(newest, 1);
    assert_eq!(a.published("t-0").unwrap(), Some(10));
    // Its next commit goes after what it read.
    b.publish(&[
        commit("t-0", 2, 20, &["f2.parquet"]),
        commit("t-1", 1, 5, &["g1.parquet"]),
    ])
    .unwrap();
    let (paths, newest) = adds(&dest);
    assert_eq!(paths.len(), 3);
    assert!(paths.values().all(|n| *n == 1));
    assert_eq!(newest, 2);
    assert_eq!(a.published("t-0").unwrap(), Some(20));
    assert_eq!(a.published("t-1").unwrap(), Some(5));
    assert_eq!(a.published("t-2").unwrap(), None);
}

#[test]
fn callers_publishing_at_once_share_versions_and_each_commit_lands_once() {
    let (_d, rt, dest) = setup();
    let t = Arc::new(open(&dest, &rt, &schema(None)));
    let threads: Vec<_> = (0..8)
        .map(|k| {
            let t = t.clone();
            std::thread::spawn(move || {
                for seq in 1..=5u64 {
                    let f = format!("p{k}-{seq}.parquet");
                    t.publish(&[commit(&format!("t-{k}"), seq, seq * 10, &[&f])])
                        .unwrap();
                }
            })
        })
        .collect();
    for h in threads {
        h.join().unwrap();
    }
    let (paths, newest) = adds(&dest);
    assert_eq!(paths.len(), 40);
    assert!(paths.values().all(|n| *n == 1));
    assert!(newest <= 40, "{newest} versions");
    for k in 0..8 {
        assert_eq!(t.published(&format!("t-{k}")).unwrap(), Some(50));
    }
}

#[test]
fn a_new_nullable_field_is_added_to_the_table_and_a_type_change_is_refused() {
    let (_d, rt, dest) = setup();
    open(&dest, &rt, &schema(None));
    let wider = schema(Some(("extra", DataType::Utf8)));
    let t = open(&dest, &rt, &wider);
    t.publish(&[commit("t-0", 1, 10, &["f1.parquet"])]).unwrap();
    let log =
        String::from_utf8(dest.read("_delta_log/00000000000000000001.json").unwrap()).unwrap();
    assert!(log.contains("\\\"extra\\\""), "{log}");
    // The narrower schema still fits (files without `extra` read it as null).
    open(&dest, &rt, &schema(None));
    let changed = Arc::new(Schema::new(vec![
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new("id", DataType::Utf8, false),
        Field::new("n", DataType::Utf8, true),
    ]));
    match DeltaTable::open(&dest, "job", &changed, &[], 100, rt.handle().clone()) {
        Err(TableError::Schema { problems, .. }) => {
            assert!(problems.iter().any(|p| p.contains("`n`")), "{problems:?}")
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a type change was accepted"),
    }
}

#[test]
fn a_schema_another_writer_narrowed_fails_the_publish() {
    let (_d, rt, dest) = setup();
    let wide = schema(Some(("extra", DataType::Utf8)));
    let t = open(&dest, &rt, &wide);
    // Another writer replaces the schema with one without `extra` (version 1).
    let narrow = delta_kernel::schema::StructType::try_from_arrow(schema(None).as_ref()).unwrap();
    let meta = serde_json::json!({"metaData": {"id": "x", "format": {"provider": "parquet", "options": {}}, "schemaString": serde_json::to_string(&narrow).unwrap(), "partitionColumns": [], "configuration": {}, "createdTime": 1}});
    dest.put_atomic(
        "_delta_log/00000000000000000001.json",
        format!("{meta}\n").as_bytes(),
        true,
    )
    .unwrap();
    // Refused, and again on the next try (the version it cannot follow stays unread), as a
    // conflict retrying cannot mend.
    for _ in 0..2 {
        let e = t
            .publish(&[commit("t-0", 1, 10, &["f1.parquet"])])
            .unwrap_err();
        assert!(e.is_permanent(), "{e}");
        assert!(e.to_string().contains("extra"), "{e}");
        assert!(t.published("t-0").is_err());
    }
    assert!(!dest.exists("_delta_log/00000000000000000002.json").unwrap());
}

#[test]
fn catch_up_publishes_the_sealed_commits_the_table_lacks_oldest_first() {
    use crate::commit::checkpoint::Checkpoints;
    let (_d, rt, dest) = setup();
    let t = open(&dest, &rt, &schema(None));
    let cps = Checkpoints::new(dest.clone(), "job");
    // Three sealed commits of which the table holds the first.
    for (seq, next) in [(1u64, 10u64), (2, 20), (3, 30)] {
        let c = commit("t-0", seq, next, &[&format!("f{seq}.parquet")]);
        record(&cps, &c);
    }
    t.publish(&[commit("t-0", 1, 10, &["f1.parquet"])]).unwrap();
    assert_eq!(catch_up(&t, &cps, "t-0").unwrap(), Some(30));
    assert_eq!(t.published("t-0").unwrap(), Some(30));
    let (paths, newest) = adds(&dest);
    assert_eq!(paths.len(), 3);
    assert!(paths.values().all(|n| *n == 1));
    assert_eq!(newest, 2, "both in one version");
    // Nothing left: no new version.
    assert_eq!(catch_up(&t, &cps, "t-0").unwrap(), Some(30));
    assert_eq!(adds(&dest).1, 2);
    // A commit given again (a late publish beside the catch-up) adds nothing and does not
    // move the partition's position back.
    t.publish(&[commit("t-0", 2, 20, &["f2.parquet"])]).unwrap();
    assert_eq!(adds(&dest).1, 2);
    assert_eq!(t.published("t-0").unwrap(), Some(30));
}

/// A sealed commit whose file was deleted since (a bucket's lifecycle rule) is refused by the
/// catch-up, naming the file: the table named it, and every reader of the table failed.
#[test]
fn a_catch_up_refuses_a_commit_whose_file_is_gone() {
    use crate::commit::checkpoint::Checkpoints;
    let (_d, rt, dest) = setup();
    let t = open(&dest, &rt, &schema(None));
    let cps = Checkpoints::new(dest.clone(), "job");
    record(&cps, &commit("t-0", 1, 10, &["f1.parquet", "f1b.parquet"]));
    dest.delete("f1b.parquet").unwrap();
    match catch_up(&t, &cps, "t-0") {
        Err(e @ TableError::History { .. }) => {
            assert!(
                e.to_string()
                    .contains("f1b.parquet is no longer in the destination"),
                "{e}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(t.published("t-0").unwrap(), None, "nothing published");
}

#[test]
fn an_aborted_first_commit_is_not_taken_for_pruned_history_and_pruned_history_is_refused() {
    use crate::commit::checkpoint::Checkpoints;
    let (_d, rt, dest) = setup();
    let t = open(&dest, &rt, &schema(None));
    let cps = Checkpoints::new(dest.clone(), "job");
    // Seq 1 aborted (a claim fenced), seq 2 sealed and not published.
    cps.record_abort_for_tests("t-0", 1, false);
    record(&cps, &commit("t-0", 2, 20, &["f2.parquet"]));
    assert_eq!(catch_up(&t, &cps, "t-0").unwrap(), Some(20));
    // Another partition whose oldest commits were pruned: the table cannot be made whole.
    cps.record_abort_for_tests("t-1", 5, true);
    record(&cps, &commit("t-1", 5, 50, &["g5.parquet"]));
    match catch_up(&t, &cps, "t-1") {
        Err(e @ TableError::History { .. }) => {
            assert!(e.is_permanent());
            assert!(e.to_string().contains("pruned"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(t.published("t-1").unwrap(), None);
}

#[test]
fn tables_sluice_cannot_append_to_are_refused() {
    for (config, partition, want) in [
        (
            r#"{"delta.setTransactionRetentionDuration": "interval 1 day"}"#,
            "[]",
            "setTransactionRetentionDuration",
        ),
        ("{}", r#"["n"]"#, "partitioned"),
    ] {
        let (_d, rt, dest) = setup();
        let s = delta_kernel::schema::StructType::try_from_arrow(schema(None).as_ref()).unwrap();
        let meta = format!(
            r#"{{"metaData":{{"id":"x","format":{{"provider":"parquet","options":{{}}}},"schemaString":{},"partitionColumns":{partition},"configuration":{config},"createdTime":1}}}}"#,
            serde_json::to_string(&serde_json::to_string(&s).unwrap()).unwrap()
        );
        let protocol = r#"{"protocol":{"minReaderVersion":1,"minWriterVersion":2}}"#;
        dest.put_atomic(
            "_delta_log/00000000000000000000.json",
            format!("{protocol}\n{meta}\n").as_bytes(),
            true,
        )
        .unwrap();
        match DeltaTable::open(&dest, "job", &schema(None), &[], 100, rt.handle().clone()) {
            Err(e @ TableError::Conflict { .. }) => assert!(e.to_string().contains(want), "{e}"),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("accepted a table with {want}"),
        }
    }
}

/// Another writer makes the table expire `txn` actions while the job runs, and the job reads
/// that only in a checkpoint (the entry that set it cleaned up, or more than 100 entries
/// behind): the checkpoint's settings were not read, and the job went on publishing into a
/// table whose positions may vanish. Now it stops, naming the setting.
#[test]
fn a_table_made_to_expire_positions_is_refused_when_read_from_its_checkpoint() {
    let (_d, rt, dest) = setup();
    let t = open(&dest, &rt, &schema(None));
    t.publish(&[commit("t-0", 1, 10, &["a.parquet"])]).unwrap();
    let s = delta_kernel::schema::StructType::try_from_arrow(schema(None).as_ref()).unwrap();
    let meta = format!(
        r#"{{"metaData":{{"id":"x","format":{{"provider":"parquet","options":{{}}}},"schemaString":{},"partitionColumns":[],"configuration":{{"delta.setTransactionRetentionDuration":"interval 1 day"}},"createdTime":1}}}}"#,
        serde_json::to_string(&serde_json::to_string(&s).unwrap()).unwrap()
    );
    dest.put_atomic(
        "_delta_log/00000000000000000002.json",
        format!("{meta}\n").as_bytes(),
        true,
    )
    .unwrap();
    super::delta::kernel_checkpoint(&dest, 2, rt.handle());
    dest.delete("_delta_log/00000000000000000002.json").unwrap();
    match t.published("t-0") {
        Err(e @ TableError::Conflict { .. }) => {
            assert!(
                e.to_string().contains("setTransactionRetentionDuration"),
                "{e}"
            )
        }
        other => panic!("went on with a table that expires txn actions: {other:?}"),
    }
}

#[test]
fn a_compaction_never_swaps_in_a_group_another_compaction_removed_while_it_placed_another() {
    use super::delta::{LiveFile, Replaced};
    let (_d, rt, dest) = setup();
    let t = open(&dest, &rt, &schema(None));
    t.publish(&[commit(
        "t-0",
        1,
        10,
        &["a/1.parquet", "a/2.parquet", "b/1.parquet", "b/2.parquet"],
    )])
    .unwrap();
    let f = |p: &str| LiveFile {
        path: p.into(),
        size: 100,
        rows: Some(10),
        ..Default::default()
    };
    let (listed, _) = t.live_files(|_| true).unwrap();
    assert_eq!(listed, 1);
    // Y compacts b/ first (version 2).
    let y = open(&dest, &rt, &schema(None));
    let mut y_gone = Default::default();
    assert_eq!(
        y.replace(
            1,
            &[f("b/1.parquet"), f("b/2.parquet")],
            &f("b/y.parquet"),
            &mut y_gone
        )
        .unwrap(),
        Replaced::Done(2)
    );
    // X, which listed at version 1, places its a/ group after Y's version, then its b/ group:
    // lost, though Y's version removed nothing of the a/ group.
    let mut gone = Default::default();
    assert_eq!(
        t.replace(
            1,
            &[f("a/1.parquet"), f("a/2.parquet")],
            &f("a/x.parquet"),
            &mut gone
        )
        .unwrap(),
        Replaced::Done(3)
    );
    assert_eq!(
        t.replace(
            3,
            &[f("b/1.parquet"), f("b/2.parquet")],
            &f("b/x.parquet"),
            &mut gone
        )
        .unwrap(),
        Replaced::Lost
    );
    let (_, live) = t.live_files(|_| true).unwrap();
    let mut live: Vec<_> = live.into_iter().map(|f| f.path).collect();
    live.sort();
    assert_eq!(live, ["a/x.parquet", "b/y.parquet"]);
}

#[test]
fn positions_come_from_the_log_checkpoint_when_older_entries_were_cleaned_up() {
    let (_d, rt, dest) = setup();
    let s = schema(None);
    let stale = open(&dest, &rt, &s);
    let t = DeltaTable::open(&dest, "job", &s, &[], 2, rt.handle().clone()).unwrap();
    for seq in 1..=4u64 {
        let f = format!("f{seq}.parquet");
        t.publish(&[
            commit("t-0", seq, seq * 10, &[&f]),
            commit(&format!("t-{seq}"), 1, 7, &[&format!("g{seq}.parquet")]),
        ])
        .unwrap();
    }
    // Versions 2 and 4 are checkpointed on a thread of their own (the second one only if the
    // first is done by then).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let checkpointed = loop {
        let l = dest.list("_delta_log/").unwrap();
        if let Some(v) = [4u64, 2].into_iter().find(|v| {
            l.iter()
                .any(|f| f.ends_with(&format!("{v:020}.checkpoint.parquet")))
        }) {
            break v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for a checkpoint: {l:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    // A clean-up removes the entries the checkpoint covers.
    for v in 0..=checkpointed {
        dest.delete(&format!("_delta_log/{v:020}.json")).unwrap();
    }
    // A new reader, and one that read version 0 only, both find every position.
    let fresh = DeltaTable::open(&dest, "job", &s, &[], 2, rt.handle().clone()).unwrap();
    for r in [&fresh, &stale] {
        assert_eq!(r.published("t-0").unwrap(), Some(40));
        for k in 1..=4 {
            assert_eq!(r.published(&format!("t-{k}")).unwrap(), Some(7));
        }
        assert_eq!(r.published("t-9").unwrap(), None);
    }
    // And the stale one writes after the newest version.
    stale
        .publish(&[commit("t-0", 5, 50, &["f5.parquet"])])
        .unwrap();
    assert!(dest.exists("_delta_log/00000000000000000005.json").unwrap());
    assert_eq!(fresh.published("t-0").unwrap(), Some(50));
}

#[test]
fn a_table_made_without_partition_columns_keeps_none() {
    let (_d, rt, dest) = setup();
    let s = schema(None);
    DeltaTable::open(&dest, "job", &s, &[], 100, rt.handle().clone()).unwrap();
    let t = open_by_id(&dest, &rt, &s);
    assert!(t.partition_columns().is_empty());
    // A new table takes them.
    let (_d2, rt2, dest2) = setup();
    let t2 = open_by_id(&dest2, &rt2, &s);
    assert_eq!(t2.partition_columns(), ["id"]);
    // And a table partitioned otherwise is refused.
    let e = DeltaTable::open(
        &dest2,
        "job",
        &s,
        &["n".to_string()],
        100,
        rt2.handle().clone(),
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("partitioned by"), "{e}");
}

#[test]
fn timestamps_in_any_zone_are_delta_timestamps_and_one_without_a_zone_is_refused_by_name() {
    let (_d, rt, dest) = setup();
    let zoned = Arc::new(Schema::new(vec![Field::new(
        "at",
        DataType::Timestamp(TimeUnit::Millisecond, Some("+08:00".into())),
        true,
    )]));
    let t = DeltaTable::open(&dest, "job", &zoned, &[], 100, rt.handle().clone()).unwrap();
    t.publish(&[commit("t-0", 1, 10, &["f1.parquet"])]).unwrap();
    let log =
        String::from_utf8(dest.read("_delta_log/00000000000000000000.json").unwrap()).unwrap();
    assert!(log.contains("\\\"type\\\":\\\"timestamp\\\""), "{log}");
    let (_d2, rt2, dest2) = setup();
    let naive = Arc::new(Schema::new(vec![Field::new(
        "local_at",
        DataType::Timestamp(TimeUnit::Millisecond, None),
        true,
    )]));
    let e = DeltaTable::open(&dest2, "job", &naive, &[], 100, rt2.handle().clone())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("`local_at`") && e.contains("time zone"), "{e}");
    // Nothing was written: a fixed schema can still make the table.
    assert!(!dest2
        .exists("_delta_log/00000000000000000000.json")
        .unwrap());
}

/// A partition whose records were all filtered out or dead letters for hundreds of commits
/// (commits without files), then a commit with a file whose publish failed: the catch-up
/// walks back from the newest record to what the table holds. Before, the table's position
/// stayed at the last commit with files, which a prune had taken out of the records, and the
/// catch-up refused the partition for good ("no longer all recorded"); now a prune's commit
/// carries the position even without files, so the walk reaches it.
#[test]
fn a_long_run_of_commits_without_files_leaves_the_catch_up_a_record_to_reach() {
    use crate::commit::checkpoint::Checkpoints;
    use crate::commit::{PRUNE_EVERY, PRUNE_KEEP};
    let (_d, rt, dest) = setup();
    let t = open(&dest, &rt, &schema(None));
    let cps = Checkpoints::new(dest.clone(), "job");
    let term = cps.take_term("t-0", "o").unwrap();
    // What a worker does at each commit: seal, publish, and prune at every 64th.
    let live = |c: Checkpoint| {
        record(&cps, &c);
        t.publish(std::slice::from_ref(&c)).unwrap();
        if c.seq.is_multiple_of(PRUNE_EVERY) {
            cps.prune("t-0", PRUNE_KEEP, term).unwrap();
        }
    };
    live(commit("t-0", 1, 10, &["f1.parquet"]));
    for seq in 2..=321 {
        live(commit("t-0", seq, 9 + seq, &[]));
    }
    assert!(cps.pruned_below("t-0").unwrap().is_some());
    // Sealed, and its publish failed (or the process died before it).
    record(&cps, &commit("t-0", 322, 400, &["f322.parquet"]));
    assert_eq!(catch_up(&t, &cps, "t-0").unwrap(), Some(400));
    let (paths, _) = adds(&dest);
    assert_eq!(
        paths.keys().map(String::as_str).collect::<Vec<_>>(),
        ["f1.parquet", "f322.parquet"]
    );
}

/// Files a job wrote before it had a table hold no partition values: a table partitioned by
/// a column would name them with none, and its readers read the column as null. The catch-up
/// refuses them, naming the file; files with their values are published.
#[test]
fn files_written_before_a_partitioned_table_are_refused_by_its_catch_up() {
    use crate::commit::checkpoint::Checkpoints;
    let (_d, rt, dest) = setup();
    let s = schema(None);
    let t = open_by_id(&dest, &rt, &s);
    let cps = Checkpoints::new(dest.clone(), "job");
    record(&cps, &commit("t-0", 1, 10, &["id=a/f1.parquet"]));
    match catch_up(&t, &cps, "t-0") {
        Err(e @ TableError::History { .. }) => {
            assert!(e.is_permanent());
            let text = e.to_string();
            assert!(
                text.contains("id=a/f1.parquet") && text.contains("id"),
                "{text}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(t.published("t-0").unwrap(), None);
    let mut with = commit("t-1", 1, 10, &["id=b/g1.parquet"]);
    with.files[0]
        .partition
        .insert("id".into(), Some("b".into()));
    record(&cps, &with);
    assert_eq!(catch_up(&t, &cps, "t-1").unwrap(), Some(10));
}

/// A checkpoint whose `txn` column is no struct (damaged, or another writer's bug), read by a
/// publisher behind it: an error naming the checkpoint, where it panicked.
#[test]
fn a_checkpoint_whose_txn_is_no_struct_is_an_error_not_a_panic() {
    let (_d, rt, dest) = setup();
    let s = schema(None);
    let behind = open(&dest, &rt, &s);
    let other = open(&dest, &rt, &s);
    other
        .publish(&[commit("t-0", 1, 10, &["f1.parquet"])])
        .unwrap();
    let bad = arrow::record_batch::RecordBatch::try_from_iter([(
        "txn",
        Arc::new(arrow::array::Int64Array::from(vec![1i64])) as arrow::array::ArrayRef,
    )])
    .unwrap();
    let mut bytes = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut bytes, bad.schema(), None).unwrap();
    w.write(&bad).unwrap();
    w.close().unwrap();
    dest.put_atomic(
        "_delta_log/00000000000000000001.checkpoint.parquet",
        &bytes,
        true,
    )
    .unwrap();
    // Its entry gone: the log is read from the checkpoint.
    dest.delete("_delta_log/00000000000000000001.json").unwrap();
    let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| behind.published("t-0")));
    match read {
        Ok(Err(e)) => assert!(e.to_string().contains("checkpoint"), "{e}"),
        Ok(Ok(held)) => panic!("a damaged checkpoint was read: {held:?}"),
        Err(_) => panic!("a damaged checkpoint panicked"),
    }
}
