//! Paths held to a room: cut only past it, Hive heads kept, names that differ kept apart,
//! and a path of many folders folded to fit.

use std::sync::Arc;

use arrow::array::{ArrayRef, StringArray};
use arrow::record_batch::RecordBatch;

use super::super::PathTemplate;
use super::{cap_path, Room, MAX_SEGMENT, TIGHT_HEAD, TIGHT_SEGMENT};

fn strings(columns: &[(&str, Vec<&str>)]) -> RecordBatch {
    RecordBatch::try_from_iter(
        columns
            .iter()
            .map(|(n, v)| (*n, Arc::new(StringArray::from(v.clone())) as ArrayRef)),
    )
    .unwrap()
}

fn names(groups: &[(String, RecordBatch)]) -> Vec<&str> {
    groups.iter().map(|(p, _)| p.as_str()).collect()
}

/// Sixteen folders of three long values each: 4,096 bytes cut only to 255 a name, past a
/// local path's 4,095 (and far past an object key's 1,024), so every write of those rows
/// failed, for good. Held to a room, the path fits, and short names are kept whole.
#[test]
fn a_path_of_many_long_values_is_held_to_its_room() {
    let long = "h".repeat(150);
    let other = format!("{long}x");
    let b = strings(&[("host", vec![&long, &other, "x"])]);
    let template = "{host}-{host}-{host}/".repeat(16);
    let t = PathTemplate::compile(&template, &b.schema(), "events", true).unwrap();
    let uncut = t.split(&b, 0).unwrap();
    assert!(uncut[0].0.len() > 4_095, "{}", uncut[0].0.len());
    for room in [16 * (TIGHT_SEGMENT + 1), 3_000] {
        let t = t.clone().limit_to(room).unwrap();
        let groups = t.split(&b, 0).unwrap();
        let names = names(&groups);
        assert_eq!(names.len(), 3, "{names:?}");
        for n in &names[..2] {
            assert!(n.len() <= room, "{} > {room}: {n}", n.len());
            for seg in n.trim_end_matches('/').split('/') {
                assert_eq!(seg.len(), TIGHT_SEGMENT, "{seg}");
                assert!(seg.starts_with("hhhh"), "{seg}");
            }
        }
        assert_ne!(
            names[0], names[1],
            "values that differ keep their folders apart"
        );
        assert_eq!(
            names[2],
            "x-x-x/".repeat(16),
            "short names are kept as they are"
        );
    }
    // A template whose paths always fit its room keeps every name whole.
    let v = "v".repeat(90);
    let b = strings(&[("host", vec![&v])]);
    let t = PathTemplate::compile("{host}/", &b.schema(), "events", true)
        .unwrap()
        .limit_to(300)
        .unwrap();
    assert_eq!(t.split(&b, 0).unwrap()[0].0, format!("host={v}/"));
}

fn tight(bytes: usize) -> Room {
    Room { bytes, tight: true }
}

/// A Hive-style folder cut short keeps its `name=` head, so readers still find its column;
/// a head longer than `TIGHT_HEAD` is not kept, and a room that is not tight cuts nothing.
#[test]
fn a_cut_folder_keeps_its_column_name() {
    let v = "v".repeat(200);
    let mut path = format!("dt=2024-01-01/host={v}/{}={v}/", "c".repeat(TIGHT_HEAD));
    let whole = path.clone();
    let loose = Room {
        bytes: whole.len(),
        tight: false,
    };
    cap_path(&mut path, loose, &mut Vec::new());
    assert_eq!(path, whole);
    cap_path(&mut path, tight(200), &mut Vec::new());
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    assert_eq!(segs.len(), 3, "{path}");
    assert_eq!(segs[0], "dt=2024-01-01");
    assert!(segs[1].starts_with("host=vvv"), "{path}");
    assert_eq!(segs[1].len(), "host=".len() + TIGHT_SEGMENT);
    assert!(segs[2].starts_with("ccc"), "{path}");
    assert_eq!(segs[2].len(), TIGHT_SEGMENT);
    // A name of exactly the cut length is cut too, so a value cannot spell a cut name.
    let exact = "e".repeat(TIGHT_SEGMENT);
    let mut path = format!("{exact}/{v}/");
    cap_path(&mut path, tight(300), &mut Vec::new());
    let first = path.split('/').next().unwrap();
    assert_eq!(first.len(), TIGHT_SEGMENT);
    assert_ne!(first, exact, "{path}");
    // A `%XX` escape is not cut in two.
    let mut path = format!("k={}/", "%20".repeat(60));
    cap_path(&mut path, tight(300), &mut Vec::new());
    assert!(!path.contains("%2~") && !path.contains("%~"), "{path}");
}

/// A path still too long once its names are cut short keeps the leading folders that fit and
/// folds the rest into one name of 255 bytes, cut like a long one (longer than any name kept
/// whole); paths that differ only in their folded folders stay apart. A constant path is held
/// to the room too, and a room too small for a folded name is refused.
#[test]
fn a_path_of_many_folders_is_folded_to_fit() {
    let long = "h".repeat(150);
    let other = format!("{long}x");
    let b = strings(&[("host", vec![&long, &other])]);
    let t = PathTemplate::compile(
        &format!("dt=2024/{}", "{host}-{host}/".repeat(40)),
        &b.schema(),
        "events",
        false,
    )
    .unwrap()
    .limit_to(500)
    .unwrap();
    let groups = t.split(&b, 0).unwrap();
    let names = names(&groups);
    assert_eq!(names.len(), 2, "{names:?}");
    for n in &names {
        assert!(n.len() <= 500, "{} bytes: {n}", n.len());
        assert!(n.starts_with("dt=2024/hhhh"), "{n}");
        let last = n.trim_end_matches('/').rsplit('/').next().unwrap();
        assert_eq!(last.len(), MAX_SEGMENT + 17, "{n}");
        assert_eq!(&last[MAX_SEGMENT..MAX_SEGMENT + 1], "~", "{n}");
    }
    assert_ne!(names[0], names[1]);
    let long = "l".repeat(200);
    let t = PathTemplate::compile(&format!("{long}/").repeat(10), &b.schema(), "events", false)
        .unwrap()
        .limit_to(300)
        .unwrap();
    let p = t.constant_path(0).unwrap().unwrap();
    assert!(p.len() <= 300 && p.starts_with("lll"), "{p}");
    let err = t.limit_to(MAX_SEGMENT + 17).unwrap_err().to_string();
    assert!(err.contains("leaves 255 for folders"), "{err}");
    // A template that always fits is taken whatever the room.
    let t = PathTemplate::compile("ab/", &b.schema(), "events", false).unwrap();
    assert!(!t.limit_to(10).unwrap().cuts_names());
}

/// A time renders to what its pattern can print (`%Y-%m-%d` 10 bytes, a null's name 28), not
/// to a long value's 117: a day and an hour folder beside four Hive folders of values fit an
/// S3 bucket's root (703 bytes), and keep their layout; eight such value folders do not.
#[test]
fn times_count_what_their_pattern_prints() {
    use arrow::array::TimestampMillisecondArray;
    let mut columns: Vec<(&str, ArrayRef)> = vec![(
        "ts",
        Arc::new(TimestampMillisecondArray::from(vec![0i64])) as ArrayRef,
    )];
    let names = ["a", "b", "c", "d", "e", "f", "g", "h"];
    for n in names {
        columns.push((n, Arc::new(StringArray::from(vec!["v"])) as ArrayRef));
    }
    let b = RecordBatch::try_from_iter(columns).unwrap();
    let template = |values: usize| {
        let folders: String = names[..values]
            .iter()
            .map(|n| format!("{{{n}}}/"))
            .collect();
        PathTemplate::compile(
            &format!("dt={{ts:%Y-%m-%d}}/hr={{ts:%H}}/{folders}"),
            &b.schema(),
            "events",
            true,
        )
        .unwrap()
    };
    assert!(!template(4).limit_to(703).unwrap().cuts_names());
    assert!(template(8).limit_to(703).unwrap().cuts_names());
}

/// A file's name stays whole while it fits; past `MAX_FILE_NAME` (a 249-byte topic,
/// a long repo and backfill name) the key and suffix are cut as one, and the offset, the tag
/// and the extension stay, so two keys that differ only past the cut still name apart.
#[test]
fn a_file_name_past_what_a_file_system_holds_is_cut_to_fit() {
    use crate::sink::paths::{file_name, MAX_FILE_NAME};
    assert_eq!(
        file_name("app.events-3", "-17-00ff", ".backfill-b", ".parquet"),
        "app.events-3-17-00ff.backfill-b.parquet"
    );
    let topic = "t".repeat(249);
    let suffix = format!(".backfill-{}", "n".repeat(100));
    let (a, b) = (format!("{topic}-0"), format!("{topic}-1"));
    let unique = "-18446744073709551615-0123456789abcdef";
    let (na, nb) = (
        file_name(&a, unique, &suffix, ".json.gz"),
        file_name(&b, unique, &suffix, ".json.gz"),
    );
    assert!(
        na.len() <= MAX_FILE_NAME && nb.len() <= MAX_FILE_NAME,
        "{na}"
    );
    assert!(
        na.ends_with(&format!("{unique}.json.gz")) && na.starts_with("ttt"),
        "{na}"
    );
    assert_ne!(na, nb);
}
