//! Schema evolution tests: the comparison, the records and their races.

use super::*;
use arrow::array::{Array, Int32Array, StringArray};
use arrow::datatypes::{DataType, Field};

fn schema(fields: &[(&str, DataType, bool)]) -> SchemaRef {
    Arc::new(Schema::new(
        fields
            .iter()
            .map(|(n, t, nl)| Field::new(*n, t.clone(), *nl))
            .collect::<Vec<_>>(),
    ))
}

/// A destination in memory, with the runtime it runs on.
fn memory() -> (tokio::runtime::Runtime, Destination) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dest = Destination::parse("memory:///e", rt.handle().clone()).unwrap();
    (rt, dest)
}

#[test]
fn new_nullable_fields_and_drops_pass_type_changes_and_new_required_fields_do_not() {
    let old = schema(&[("a", DataType::Int32, false), ("b", DataType::Utf8, true)]);
    let grown = schema(&[("a", DataType::Int32, true), ("c", DataType::Utf8, true)]);
    let changes = compare(&old, &old, &grown).unwrap();
    assert_eq!(changes.len(), 3, "{changes:?}");
    let required = schema(&[("a", DataType::Int32, false), ("b", DataType::Utf8, false)]);
    let problems = compare(&old, &old, &required).unwrap_err();
    assert!(
        problems[0].contains("`b` was nullable and is required now"),
        "{problems:?}"
    );
    let retyped = schema(&[("a", DataType::Int64, false), ("d", DataType::Utf8, false)]);
    let problems = compare(&old, &old, &retyped).unwrap_err();
    assert!(
        problems[0].contains("`a` is Int32") && problems[0].contains("Int64"),
        "{problems:?}"
    );
    assert!(
        problems[1].contains("`d` is new and not nullable"),
        "{problems:?}"
    );
}

#[test]
fn the_record_round_trips_and_guards_the_next_start() {
    let (_rt, dest) = memory();
    let v1 = schema(&[("a", DataType::Int32, false)]);
    assert!(check(&dest, "j", &v1, true, false).unwrap().is_empty());
    assert_eq!(
        recorded(&dest, "j").unwrap().unwrap().0.fields(),
        v1.fields()
    );
    let v2 = schema(&[("a", DataType::Int32, false), ("b", DataType::Utf8, true)]);
    assert_eq!(check(&dest, "j", &v2, false, false).unwrap().len(), 1);
    // Not recorded without `record`: v1 is still what the files have.
    assert_eq!(
        recorded(&dest, "j").unwrap().unwrap().0.fields(),
        v1.fields()
    );
    check(&dest, "j", &v2, true, false).unwrap();
    let bad = schema(&[("a", DataType::Utf8, false), ("b", DataType::Utf8, true)]);
    let e = check(&dest, "j", &bad, true, false)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("field `a` is Int32") && e.contains("Utf8"),
        "{e}"
    );
    assert_eq!(
        recorded(&dest, "j").unwrap().unwrap().0.fields(),
        v2.fields()
    );
    // `b` is dropped, then comes back with another type: older files still have it.
    let dropped = schema(&[("a", DataType::Int32, false)]);
    assert_eq!(check(&dest, "j", &dropped, true, false).unwrap().len(), 1);
    let back = schema(&[("a", DataType::Int32, false), ("b", DataType::Int64, true)]);
    let e = check(&dest, "j", &back, true, false)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("field `b` is Utf8 in the files already written"),
        "{e}"
    );
}

#[test]
fn the_single_record_of_earlier_versions_is_read_until_a_numbered_one_exists() {
    let (_rt, dest) = memory();
    let v1 = schema(&[("a", DataType::Int32, false), ("b", DataType::Utf8, true)]);
    let text = record_text("j", &v1, None).unwrap();
    dest.put_atomic("_sluice/j/schema.json", &text, false)
        .unwrap();
    let dropped = schema(&[("a", DataType::Int32, false)]);
    assert_eq!(check(&dest, "j", &dropped, true, false).unwrap().len(), 1);
    assert!(dest.exists("_sluice/j/schemas/000000000001.json").unwrap());
    // The dropped field's type came from the earlier record, and the copy follows.
    let back = schema(&[("a", DataType::Int32, false), ("b", DataType::Int64, true)]);
    let e = check(&dest, "j", &back, true, false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("field `b` is Utf8"), "{e}");
    assert_eq!(
        dest.read("_sluice/j/schema.json").unwrap(),
        record_text("j", &dropped, Some(&v1)).unwrap()
    );
}

#[test]
fn an_earlier_version_recording_in_the_copy_alone_still_counts() {
    let (_rt, dest) = memory();
    let v1 = schema(&[("a", DataType::Int32, false)]);
    check(&dest, "j", &v1, true, false).unwrap();
    // An earlier version, beside this one, adds `c` as Int64 where it only looks.
    let theirs = schema(&[("a", DataType::Int32, false), ("c", DataType::Int64, true)]);
    let text = record_text("j", &theirs, Some(&v1)).unwrap();
    dest.put_atomic("_sluice/j/schema.json", &text, false)
        .unwrap();
    let ours = schema(&[("a", DataType::Int32, false), ("c", DataType::Utf8, true)]);
    let e = check(&dest, "j", &ours, true, false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("field `c` is Int64"), "{e}");
    // The same schema again: recorded anew, keeping `c`, and the copy caught up.
    assert!(check(&dest, "j", &v1, true, false).unwrap().is_empty());
    let two = dest.read("_sluice/j/schemas/000000000002.json").unwrap();
    assert_eq!(dest.read("_sluice/j/schema.json").unwrap(), two);
    let (_, ever) = recorded(&dest, "j").unwrap().unwrap();
    assert_eq!(
        ever.field_with_name("c").unwrap().data_type(),
        &DataType::Int64
    );
}

#[test]
fn a_next_record_in_the_way_that_no_listing_shows_is_an_error_not_a_race() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = format!("file://{}", dir.path().display());
    let dest = Destination::parse(&url, rt.handle().clone()).unwrap();
    let v1 = schema(&[("a", DataType::Int32, false)]);
    check(&dest, "j", &v1, true, false).unwrap();
    std::fs::create_dir(dir.path().join("_sluice/j/schemas/000000000002.json")).unwrap();
    let v2 = schema(&[("a", DataType::Int32, false), ("b", DataType::Utf8, true)]);
    let e = check(&dest, "j", &v2, true, false).unwrap_err().to_string();
    assert!(
        e.contains("000000000002.json") && e.contains("does not show it"),
        "{e}"
    );
}

#[test]
fn an_old_batch_is_adapted_by_name() {
    let old = schema(&[("b", DataType::Utf8, true), ("a", DataType::Int32, false)]);
    let batch = RecordBatch::try_new(
        old,
        vec![
            Arc::new(StringArray::from(vec!["x", "y"])),
            Arc::new(Int32Array::from(vec![1, 2])),
        ],
    )
    .unwrap();
    let new = schema(&[("a", DataType::Int32, false), ("c", DataType::Utf8, true)]);
    let out = adapt(&batch, &new).unwrap();
    assert_eq!(out.schema(), new);
    assert_eq!(
        out.column(0)
            .as_any()
            .downcast_ref::<Int32Array>()
            .unwrap()
            .value(1),
        2
    );
    assert_eq!(out.column(1).null_count(), 2);
    let retyped = schema(&[("a", DataType::Int64, false)]);
    assert!(adapt(&batch, &retyped)
        .unwrap_err()
        .contains("`a` was Int32"));
}

/// A field dropped, then added back under another case with another type, is one column
/// with two types to readers that take names without case: refused. Another case of the
/// same type is a rename those readers do not see.
#[test]
fn a_field_of_another_case_and_type_is_refused() {
    let old = schema(&[("Status", DataType::Int32, true)]);
    let renamed = schema(&[("status", DataType::Utf8, true)]);
    let problems = compare(&old, &old, &renamed).unwrap_err();
    assert!(
        problems[0].contains(
            "`status` (Utf8) is new, but the files already written have `Status` (Int32)"
        ),
        "{problems:?}"
    );
    let dropped = schema(&[("x", DataType::Int32, true)]);
    assert!(
        compare(&dropped, &old, &renamed).is_err(),
        "a field dropped earlier"
    );
    let same_type = schema(&[("status", DataType::Int32, true)]);
    assert!(compare(&old, &old, &same_type).is_ok());
}

/// CSV or TSV without a header is read by position: a field inserted, dropped or moved is
/// refused there, and accepted where readers find columns by name.
#[test]
fn positional_files_keep_their_fields_and_order() {
    let (_rt, dest) = memory();
    let v1 = schema(&[("a", DataType::Int32, true), ("b", DataType::Utf8, true)]);
    check(&dest, "j", &v1, true, true).unwrap();
    let inserted = schema(&[
        ("a", DataType::Int32, true),
        ("x", DataType::Utf8, true),
        ("b", DataType::Utf8, true),
    ]);
    let e = check(&dest, "j", &inserted, false, true)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("read by position") && e.contains("(a, x, b)"),
        "{e}"
    );
    let moved = schema(&[("b", DataType::Utf8, true), ("a", DataType::Int32, true)]);
    assert!(check(&dest, "j", &moved, false, true).is_err());
    assert_eq!(check(&dest, "j", &inserted, false, false).unwrap().len(), 1);
    let nullable_again = schema(&[("a", DataType::Int32, true), ("b", DataType::Utf8, true)]);
    assert!(check(&dest, "j", &nullable_again, false, true)
        .unwrap()
        .is_empty());
}

/// A record whose Arrow message claims a body of 2^62 bytes (a damaged or hostile file of a
/// few hundred bytes): an error naming the record. Before, reading it allocated the claimed
/// body, and the process aborted at every start.
#[test]
fn a_record_whose_message_claims_a_huge_body_is_an_error() {
    use arrow::ipc::writer::{DictionaryTracker, IpcDataGenerator, IpcWriteOptions};
    let s = schema(&[("a", DataType::Int32, false)]);
    let batch = RecordBatch::try_new(
        s.clone(),
        vec![Arc::new(Int32Array::from((0..1026).collect::<Vec<i32>>()))],
    )
    .unwrap();
    // The one-batch encoder, deprecated for one that shares a write context: enough here.
    #[allow(deprecated)]
    let (_, encoded) = IpcDataGenerator::default()
        .encoded_batch(
            &batch,
            &mut DictionaryTracker::new(false),
            &IpcWriteOptions::default(),
        )
        .unwrap();
    let body = (encoded.arrow_data.len() as u64).to_le_bytes();
    let mut message = encoded.ipc_message.clone();
    let at = message
        .windows(8)
        .position(|w| w == body)
        .expect("the body's length in the message");
    message[at..at + 8].copy_from_slice(&(1u64 << 62).to_le_bytes());
    let mut ipc = vec![0xff; 4];
    ipc.extend_from_slice(&(message.len() as i32).to_le_bytes());
    ipc.extend_from_slice(&message);
    let text = format!(
        r#"{{"version":1,"fields":[],"arrow_ipc":"{}"}}"#,
        base64::engine::general_purpose::STANDARD.encode(&ipc)
    );
    let e = parse_record("_sluice/j/schemas/000000000001.json", text.as_bytes()).unwrap_err();
    assert!(
        e.to_string().contains("000000000001.json")
            && e.to_string().contains("not an Arrow schema"),
        "{e}"
    );
}

/// A Delta job's files hold every timestamp in microseconds: a stage's nanoseconds (`now()`)
/// and an explicit microsecond cast write the same files, so one may replace the other, also
/// against a record an earlier version made in nanoseconds. Other files keep the unit they
/// are given: there the change is a type change.
#[test]
fn a_delta_jobs_timestamp_units_are_its_files_microseconds() {
    use arrow::datatypes::TimeUnit;
    let ts = |u| DataType::Timestamp(u, Some("UTC".into()));
    let nanos = schema(&[
        ("a", DataType::Int32, false),
        ("at", ts(TimeUnit::Nanosecond), true),
    ]);
    let micros = schema(&[
        ("a", DataType::Int32, false),
        ("at", ts(TimeUnit::Microsecond), true),
    ]);
    let delta = Form {
        positional: false,
        micros: true,
    };
    for first in [&nanos, &micros] {
        let (_rt, dest) = memory();
        // Recorded as an earlier version did: the stage's own unit.
        check(&dest, "j", first, true, false).unwrap();
        for next in [&micros, &nanos] {
            assert_eq!(
                check_all(&dest, ("j", "r"), next, true, delta).unwrap(),
                Vec::<String>::new()
            );
        }
        // One record in all: the same schema, as the files hold it.
        assert_eq!(latest(&dest, "j").unwrap().number, 1);
    }
    // Other files: the unit is the files' type.
    let (_rt, dest) = memory();
    check(&dest, "j", &nanos, true, false).unwrap();
    let e = check_all(&dest, ("j", "r"), &micros, true, false).unwrap_err();
    assert!(e.to_string().contains("`at`"), "{e}");
}

/// A backfill's files beside the job's are checked even when another name's range record in
/// the destination cannot be read (damaged, or a newer version's): before, one such record
/// switched the check off for every backfill, and the job recorded a type the intact
/// backfill's files contradict.
#[test]
fn a_record_that_cannot_be_read_hides_no_other_backfill() {
    let (_rt, dest) = memory();
    let range = crate::commit::ranges::BackfillRange {
        from: "earliest".into(),
        to: "latest".into(),
        repo: "r".into(),
        at: None,
        by: None,
        state: None,
        spans: None,
    };
    let bytes = serde_json::to_vec(&range).unwrap();
    dest.put_atomic("_sluice/b1/range.json", &bytes, false)
        .unwrap();
    let text = schema(&[("x", DataType::Utf8, true)]);
    check(&dest, "b1", &text, true, false).unwrap();
    dest.put_atomic("_sluice/zz/range.json", b"{", false)
        .unwrap();
    let int = schema(&[("x", DataType::Int64, true)]);
    let e = check_beside(&dest, "j", "r", &int, false).unwrap_err();
    assert!(
        matches!(&e, EvolutionError::Beside { backfill, .. } if backfill == "b1"),
        "{e}"
    );
}
