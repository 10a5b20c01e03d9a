//! A table whose log entries are cleaned up soon after each checkpoint: positions survive the
//! clean-up, and a version placed long after the log was listed (below a newer checkpoint,
//! where no reader looks) is found out, by a publish and by a compaction.

use super::{adds, commit, schema, setup};
use crate::store::Destination;
use crate::table::delta::{DeltaTable, LiveFile, Replaced};
use crate::table::Publisher;
use arrow::datatypes::SchemaRef;
use delta_kernel::engine::arrow_conversion::TryFromArrow;

/// A table whose log keeps entries for one second, checkpointed every 2 versions.
fn short_retention_table(dest: &Destination, s: &SchemaRef) {
    table_with(dest, s, "interval 1 second");
}

/// A table whose log keeps entries for `retention`, checkpointed every 2 versions.
fn table_with(dest: &Destination, s: &SchemaRef, retention: &str) {
    let kernel = delta_kernel::schema::StructType::try_from_arrow(s.as_ref()).unwrap();
    let meta = serde_json::json!({"metaData": {"id": "x", "format": {"provider": "parquet", "options": {}}, "schemaString": serde_json::to_string(&kernel).unwrap(), "partitionColumns": [], "configuration": {"delta.checkpointInterval": "2", "delta.logRetentionDuration": retention}, "createdTime": 1}});
    dest.put_atomic(
        "_delta_log/00000000000000000000.json",
        format!("{{\"protocol\":{{\"minReaderVersion\":1,\"minWriterVersion\":2}}}}\n{meta}\n")
            .as_bytes(),
        true,
    )
    .unwrap();
}

/// Publishes commits of partition `key` into `t` until the log entry `gone` (there, or
/// written by the first of them) is cleaned up.
fn publish_until_cleaned_up(dest: &Destination, t: &DeltaTable, key: &str, gone: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    for seq in 1.. {
        let file = format!("{key}-{seq}.parquet");
        t.publish(&[commit(key, seq, seq * 10, &[&file])]).unwrap();
        if !dest.exists(gone).unwrap() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for the log clean-up of {gone}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Another writer (its own table) publishes commits of `key` until the log entry `gone` is
/// cleaned up: what happens while a paused publisher waits.
fn another_writer_until_cleaned_up(
    dest: &Destination,
    s: &SchemaRef,
    h: tokio::runtime::Handle,
    key: &str,
    gone: &str,
) {
    let other = DeltaTable::open(dest, "job", s, &[], 2, h).unwrap();
    publish_until_cleaned_up(dest, &other, key, gone);
    other.close();
}

/// A short-retention table where `t` (returned) published t-0's commit 1 as version 1 and
/// another writer then took version 2 unknown to `t`: `t`'s put of it is refused, and it
/// reads the log.
fn behind_another_writer(
    dest: &Destination,
    s: &SchemaRef,
    rt: &tokio::runtime::Runtime,
) -> DeltaTable {
    short_retention_table(dest, s);
    let t = DeltaTable::open(dest, "job", s, &[], 2, rt.handle().clone()).unwrap();
    t.publish(&[commit("t-0", 1, 10, &["a1.parquet"])]).unwrap();
    let other = DeltaTable::open(dest, "job", s, &[], 2, rt.handle().clone()).unwrap();
    other
        .publish(&[commit("t-1", 1, 10, &["b1.parquet"])])
        .unwrap();
    other.close();
    t
}

/// t-0's commit 2 stands in the table read afresh, its file added once (after the newest
/// checkpoint), and the entry `below`, written below that checkpoint, is gone again (the
/// log's clean-up would stop at it).
fn published_once_where_seen(
    dest: &Destination,
    s: &SchemaRef,
    rt: &tokio::runtime::Runtime,
    below: &str,
) {
    let fresh = DeltaTable::open(dest, "job", s, &[], 2, rt.handle().clone()).unwrap();
    assert_eq!(fresh.published("t-0").unwrap(), Some(20));
    assert!(!dest.exists(below).unwrap());
    assert_eq!(adds(dest).0.get("a2.parquet"), Some(&1));
}

#[test]
fn log_entries_past_the_retention_are_removed_after_a_checkpoint_and_positions_survive() {
    let (_d, rt, dest) = setup();
    let s = schema(None);
    short_retention_table(&dest, &s);
    let t = DeltaTable::open(&dest, "job", &s, &[], 2, rt.handle().clone()).unwrap();
    // Publish until a checkpoint after the retention removes the oldest entries.
    publish_until_cleaned_up(&dest, &t, "t-0", "_delta_log/00000000000000000000.json");
    let held = t.published("t-0").unwrap();
    let fresh = DeltaTable::open(&dest, "job", &s, &[], 2, rt.handle().clone()).unwrap();
    assert_eq!(fresh.published("t-0").unwrap(), held);
    assert!(held.is_some());
}

/// A publisher lists the log, then is paused just before its put of the next version for
/// longer than the log's retention: meanwhile another writer publishes on, checkpoints, and
/// its clean-up removes the entry that held that version's name. The late put wins the
/// free name, below the newest checkpoint, where no reader looks. Before, the publisher took
/// its commit as published and the table lost it for good; now it reads the log again and
/// publishes the commit after the newest version.
#[test]
fn a_version_written_after_a_pause_past_the_log_retention_is_written_again_where_it_is_seen() {
    let (_d, rt, dest) = setup();
    let s = schema(None);
    short_retention_table(&dest, &s);
    let t = DeltaTable::open(&dest, "job", &s, &[], 2, rt.handle().clone()).unwrap();
    t.publish(&[commit("t-0", 1, 10, &["a1.parquet"])]).unwrap();
    let (d2, s2, h2) = (dest.clone(), s.clone(), rt.handle().clone());
    crate::hooks::set("delta: before a version's put", move || {
        another_writer_until_cleaned_up(
            &d2,
            &s2,
            h2,
            "t-1",
            "_delta_log/00000000000000000002.json",
        );
    });
    t.publish(&[commit("t-0", 2, 20, &["a2.parquet"])]).unwrap();
    published_once_where_seen(&dest, &s, &rt, "_delta_log/00000000000000000002.json");
}

/// As above, but the late put lands while it reports failure, and the store's retry of it
/// finds the name taken: the publisher finds its own version there, after a version taken
/// by another writer made it read the log. Before, it took its commit as published without
/// the check above, and the table lost it for good.
#[test]
fn a_version_found_there_after_a_pause_past_the_log_retention_is_checked_as_one_written() {
    let (_d, rt, dest) = setup();
    let s = schema(None);
    let t = behind_another_writer(&dest, &s, &rt);
    let (d2, s2, h2) = (dest.clone(), s.clone(), rt.handle().clone());
    // Its put of version 3: paused until the log's clean-up freed that name, then it lands
    // and its retry finds it there.
    crate::hooks::set("delta: before a version's put", move || {
        crate::hooks::set("delta: before a version's put", move || {
            another_writer_until_cleaned_up(
                &d2,
                &s2,
                h2,
                "t-2",
                "_delta_log/00000000000000000003.json",
            );
            crate::hooks::set("delta: a put that lands first", || {});
        });
    });
    t.publish(&[commit("t-0", 2, 20, &["a2.parquet"])]).unwrap();
    published_once_where_seen(&dest, &s, &rt, "_delta_log/00000000000000000003.json");
}

/// A publisher whose version was taken reads the log again, then is paused before its next
/// put for longer than the log's retention: meanwhile another writer publishes on and its
/// clean-up frees that version's name, and a third writer (the partition's fenced earlier
/// owner, paused as long) writes the same commit there, below the newest checkpoint, and
/// dies. The publisher finds that version taken: it must not learn the commit as published
/// from it. Before, it did, returned success having written nothing, and the table lost the
/// commit for good.
#[test]
fn another_writers_version_below_a_checkpoint_is_not_learned_as_published() {
    let (_d, rt, dest) = setup();
    let s = schema(None);
    let t = behind_another_writer(&dest, &s, &rt);
    let (d2, s2, h2) = (dest.clone(), s.clone(), rt.handle().clone());
    let ghost = "_delta_log/00000000000000000003.json";
    crate::hooks::set("delta: before a version's put", move || {
        crate::hooks::set("delta: before a version's put", move || {
            another_writer_until_cleaned_up(&d2, &s2, h2, "t-2", ghost);
            let lines = [
                serde_json::json!({"commitInfo": {"timestamp": 1, "operation": "STREAMING UPDATE"}}),
                serde_json::json!({"txn": {"appId": "sluice/job/t-0", "version": 20, "lastUpdated": 1}}),
                serde_json::json!({"add": {"path": "a2.parquet", "partitionValues": {}, "size": 1, "modificationTime": 1, "dataChange": true}}),
            ];
            let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
            d2.put_atomic(ghost, text.as_bytes(), true).unwrap();
        });
    });
    t.publish(&[commit("t-0", 2, 20, &["a2.parquet"])]).unwrap();
    let fresh = DeltaTable::open(&dest, "job", &s, &[], 2, rt.handle().clone()).unwrap();
    assert_eq!(fresh.published("t-0").unwrap(), Some(20));
    assert_eq!(adds(&dest).0.get("a2.parquet"), Some(&1));
    assert!(
        !dest.exists(ghost).unwrap(),
        "the entry below the checkpoint stays"
    );
}

/// A publisher whose version was taken reads the log again and is paused after listing it,
/// while it reads the entries, for longer than the log's retention: meanwhile another writer
/// publishes on, checkpoints, and its clean-up removes the entry that held the next version's
/// name. Before, the listing was dated when the read ended, so the late put of that name,
/// below the newest checkpoint, looked fresh and the commit was lost for good; now the
/// listing is dated before it was made, and the commit is published where it is seen.
#[test]
fn a_pause_while_the_log_is_read_ages_the_listing() {
    let (_d, rt, dest) = setup();
    let s = schema(None);
    let t = behind_another_writer(&dest, &s, &rt);
    let (d2, s2, h2) = (dest.clone(), s.clone(), rt.handle().clone());
    crate::hooks::set("delta: after the log's read", move || {
        another_writer_until_cleaned_up(
            &d2,
            &s2,
            h2,
            "t-2",
            "_delta_log/00000000000000000003.json",
        );
    });
    t.publish(&[commit("t-0", 2, 20, &["a2.parquet"])]).unwrap();
    crate::hooks::clear("delta: after the log's read");
    published_once_where_seen(&dest, &s, &rt, "_delta_log/00000000000000000003.json");
}

/// The log's retention lowered by another writer while the job runs: a listing is trusted
/// for half of the new one (it was for half of the retention when the table was opened, so
/// a pause between the two ends placed a version below a checkpoint unchecked).
#[test]
fn a_retention_lowered_while_the_job_runs_is_the_one_pauses_are_judged_by() {
    let (_d, rt, dest) = setup();
    let s = schema(None);
    table_with(&dest, &s, "interval 30 days");
    let t = DeltaTable::open(&dest, "job", &s, &[], 2, rt.handle().clone()).unwrap();
    assert_eq!(t.stale_after(), std::time::Duration::from_secs(600));
    let kernel = delta_kernel::schema::StructType::try_from_arrow(s.as_ref()).unwrap();
    let meta = serde_json::json!({"metaData": {"id": "x", "format": {"provider": "parquet", "options": {}}, "schemaString": serde_json::to_string(&kernel).unwrap(), "partitionColumns": [], "configuration": {"delta.checkpointInterval": "2", "delta.logRetentionDuration": "interval 2 seconds"}, "createdTime": 1}});
    dest.put_atomic(
        "_delta_log/00000000000000000001.json",
        format!("{meta}\n").as_bytes(),
        true,
    )
    .unwrap();
    t.published("t-0").unwrap();
    assert_eq!(t.stale_after(), std::time::Duration::from_secs(1));
}

/// A compaction lists the table, then is paused before placing its version for longer than
/// the log's retention: meanwhile another writer publishes on, checkpoints, and its clean-up
/// removes the entry that held that version's name. The late put wins the free name, below
/// the newest checkpoint. Before, the compaction counted the group as done, its output named
/// by no version a reader sees and the entry in the clean-up's way; now the version is found
/// unseen and removed.
#[test]
fn a_compaction_placed_after_a_pause_past_the_log_retention_is_found_unseen() {
    let (_d, rt, dest) = setup();
    let s = schema(None);
    short_retention_table(&dest, &s);
    let t = DeltaTable::open(&dest, "job", &s, &[], 2, rt.handle().clone()).unwrap();
    t.publish(&[commit("t-0", 1, 10, &["a1.parquet"])]).unwrap();
    t.publish(&[commit("t-0", 2, 20, &["a2.parquet"])]).unwrap();
    let (version, files) = t.live_files(|_| true).unwrap();
    assert_eq!(files.len(), 2);
    let next = format!("_delta_log/{:020}.json", version + 1);
    let (d2, s2, h2) = (dest.clone(), s.clone(), rt.handle().clone());
    crate::hooks::set("delta: before a replacement's put", move || {
        let other = DeltaTable::open(&d2, "job", &s2, &[], 2, h2).unwrap();
        publish_until_cleaned_up(&d2, &other, "t-1", &next);
        other.close();
    });
    let output = LiveFile {
        path: "compact-x.parquet".into(),
        size: 8,
        rows: Some(2),
        ..Default::default()
    };
    let placed = t
        .replace(version, &files, &output, &mut Default::default())
        .unwrap();
    assert_eq!(placed, Replaced::Unseen);
    assert!(!dest
        .exists(&format!("_delta_log/{:020}.json", version + 1))
        .unwrap());
    // The table still reads its files, not the compaction's output.
    let fresh = DeltaTable::open(&dest, "job", &s, &[], 2, rt.handle().clone()).unwrap();
    let (_, live) = fresh.live_files(|f| !f.path.starts_with("t-1")).unwrap();
    let mut paths: Vec<_> = live.into_iter().map(|f| f.path).collect();
    paths.sort();
    assert_eq!(paths, ["a1.parquet", "a2.parquet"]);
}

/// A compaction's version is seen, compacted again by another writer and checkpointed, all
/// before the compaction checks it: no live file names its output any more, yet the version
/// is in the table's history (and the checkpoint), and stays.
#[test]
fn a_compaction_seen_and_compacted_again_before_its_check_stays() {
    let (_d, rt, dest) = setup();
    let s = schema(None);
    table_with(&dest, &s, "interval 30 days");
    let t = DeltaTable::open(&dest, "job", &s, &[], 2, rt.handle().clone()).unwrap();
    t.publish(&[commit("t-0", 1, 10, &["a1.parquet"])]).unwrap();
    t.publish(&[commit("t-0", 2, 20, &["a2.parquet"])]).unwrap();
    let (version, files) = t.live_files(|_| true).unwrap();
    let output = LiveFile {
        path: "compact-x.parquet".into(),
        size: 8,
        rows: Some(2),
        ..Default::default()
    };
    let (d2, s2, h2, out2) = (dest.clone(), s.clone(), rt.handle().clone(), output.clone());
    crate::hooks::set("delta: after a replacement's put", move || {
        let other = DeltaTable::open(&d2, "job", &s2, &[], 2, h2).unwrap();
        let (v, live) = other.live_files(|f| f.path == out2.path).unwrap();
        assert_eq!(live.len(), 1, "the first compaction's output is live");
        let again = LiveFile {
            path: "compact-y.parquet".into(),
            ..out2.clone()
        };
        let placed = other.replace(v, &live, &again, &mut Default::default());
        assert!(matches!(placed, Ok(Replaced::Done(_))), "{placed:?}");
        other
            .publish(&[commit("t-1", 1, 10, &["b1.parquet"])])
            .unwrap();
        other.close();
    });
    let placed = t
        .replace(version, &files, &output, &mut Default::default())
        .unwrap();
    assert_eq!(placed, Replaced::Done(version + 1));
    assert!(dest
        .exists(&format!("_delta_log/{:020}.json", version + 1))
        .unwrap());
    assert!(dest
        .list("_delta_log/")
        .unwrap()
        .iter()
        .any(|n| n.contains(".checkpoint.")));
}

/// A start that adds a field reads the table, then is paused before its put of the schema
/// change for longer than the log's retention: meanwhile another writer publishes on,
/// checkpoints, and its clean-up frees the name the change takes. The change lands below the
/// newest checkpoint, where no reader looks: the files gained the column and the table's
/// schema did not. Now it is found unseen, removed, and written after the newest version.
#[test]
fn a_schema_change_written_after_a_pause_past_the_log_retention_is_written_again_where_it_is_seen()
{
    schema_change_after_a_clean_up(false);
}

/// As above, in a table that keeps entries for 30 days, whose retention another writer
/// lowers to one second in the version the change was to take, during a pause far shorter
/// than the 10 minutes a listing is trusted for. Before, the change was not checked.
#[test]
fn a_schema_change_written_after_a_retention_lowered_during_the_pause_is_written_again() {
    schema_change_after_a_clean_up(true);
}

/// A start adding field `c` paused before its put while another writer frees the name it
/// takes (`lower`: in a 30-day table, by lowering the retention in that version).
fn schema_change_after_a_clean_up(lower: bool) {
    let (_d, rt, dest) = setup();
    let s = schema(None);
    if lower {
        table_with(&dest, &s, "interval 30 days");
    } else {
        short_retention_table(&dest, &s);
    }
    let (d2, s2, h2) = (dest.clone(), s.clone(), rt.handle().clone());
    crate::hooks::set("delta: before an evolution's put", move || {
        if lower {
            lower_retention_at(&d2, &s2, 1);
        }
        let other = DeltaTable::open(&d2, "job", &s2, &[], 2, h2).unwrap();
        publish_until_cleaned_up(&d2, &other, "t-1", "_delta_log/00000000000000000001.json");
        other.close();
    });
    let wider = schema(Some(("c", arrow::datatypes::DataType::Utf8)));
    let t = DeltaTable::open(&dest, "job", &wider, &[], 2, rt.handle().clone()).unwrap();
    crate::hooks::clear("delta: before an evolution's put");
    t.close();
    assert!(!dest.exists("_delta_log/00000000000000000001.json").unwrap());
    // A reader of the table sees the field: a start with the narrower schema is told the
    // table has more (its schema is the table's, read from the newest checkpoint on).
    let table = DeltaTable::open(&dest, "job", &wider, &[], 2, rt.handle().clone()).unwrap();
    assert!(
        table.holds_field("c").unwrap(),
        "the table's schema lacks `c`"
    );
}

/// A publisher lists the log of a table that keeps entries for 30 days (so it trusts its
/// listing for 10 minutes), then is paused before its put of the next version. Meanwhile
/// another writer lowers the retention to one second in that very version, publishes on,
/// checkpoints, and its clean-up removes the entry. The late put wins the free name, below
/// the newest checkpoint, well within the 10 minutes. Before, the publisher took its commit as
/// published and the table lost it for good; now every won version is checked against the
/// checkpoints after it.
#[test]
fn a_version_written_after_a_retention_lowered_during_the_pause_is_written_again_where_it_is_seen()
{
    let (_d, rt, dest) = setup();
    let s = schema(None);
    table_with(&dest, &s, "interval 30 days");
    let t = DeltaTable::open(&dest, "job", &s, &[], 2, rt.handle().clone()).unwrap();
    t.publish(&[commit("t-0", 1, 10, &["a1.parquet"])]).unwrap();
    assert_eq!(t.stale_after(), std::time::Duration::from_secs(600));
    let (d2, s2, h2) = (dest.clone(), s.clone(), rt.handle().clone());
    crate::hooks::set("delta: before a version's put", move || {
        lower_retention_at(&d2, &s2, 2);
        let other = DeltaTable::open(&d2, "job", &s2, &[], 2, h2).unwrap();
        publish_until_cleaned_up(&d2, &other, "t-1", "_delta_log/00000000000000000002.json");
        other.close();
    });
    t.publish(&[commit("t-0", 2, 20, &["a2.parquet"])]).unwrap();
    crate::hooks::clear("delta: before a version's put");
    let fresh = DeltaTable::open(&dest, "job", &s, &[], 2, rt.handle().clone()).unwrap();
    assert_eq!(fresh.published("t-0").unwrap(), Some(20));
    assert!(!dest.exists("_delta_log/00000000000000000002.json").unwrap());
    assert_eq!(adds(&dest).0.get("a2.parquet"), Some(&1));
}

/// Another writer's version `v` of a table of schema `s`: its retention lowered to one second.
fn lower_retention_at(dest: &Destination, s: &SchemaRef, v: u64) {
    let kernel = delta_kernel::schema::StructType::try_from_arrow(s.as_ref()).unwrap();
    let meta = serde_json::json!({"metaData": {"id": "x", "format": {"provider": "parquet", "options": {}}, "schemaString": serde_json::to_string(&kernel).unwrap(), "partitionColumns": [], "configuration": {"delta.checkpointInterval": "2", "delta.logRetentionDuration": "interval 1 second"}, "createdTime": 1}});
    dest.put_atomic(
        &format!("_delta_log/{v:020}.json"),
        format!("{meta}\n").as_bytes(),
        true,
    )
    .unwrap();
}
