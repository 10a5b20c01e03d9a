//! Path template tests: splitting, rendering, sanitizing, and every compile error.

use super::*;
use arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Decimal128Array, Int32Array, Int64Array, StringArray,
    TimestampMicrosecondArray, TimestampMillisecondArray,
};
use arrow::datatypes::{Field, Schema};

fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
    RecordBatch::try_from_iter(columns).unwrap()
}

fn compile(template: &str, b: &RecordBatch, hive: bool) -> PathTemplate {
    PathTemplate::compile(template, &b.schema(), "events", hive).unwrap_or_else(|e| panic!("{e}"))
}

fn paths(groups: &[(String, RecordBatch)]) -> Vec<(&str, usize)> {
    groups
        .iter()
        .map(|(p, b)| (p.as_str(), b.num_rows()))
        .collect()
}

fn strings(b: &RecordBatch, col: &str) -> Vec<Option<String>> {
    b.column_by_name(col)
        .unwrap()
        .as_string::<i32>()
        .iter()
        .map(|v| v.map(str::to_string))
        .collect()
}

fn ms(rfc3339: &str) -> i64 {
    DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .timestamp_millis()
}

#[test]
fn time_zone_offset_splits_across_midnight() {
    let ts = TimestampMillisecondArray::from(vec![
        ms("2024-01-01T15:30:00Z"),
        ms("2024-01-01T16:30:00Z"),
        ms("2024-01-01T15:59:59.999Z"),
    ])
    .with_timezone("+08:00");
    let b = batch(vec![("ts", Arc::new(ts) as ArrayRef)]);
    let t = compile("{repo}/dt={ts:%Y-%m-%d}/hr={ts:%H}/", &b, true);
    assert!(!t.is_constant());
    let groups = t.split(&b, 0).unwrap();
    assert_eq!(
        paths(&groups),
        vec![
            ("events/dt=2024-01-01/hr=23/", 2),
            ("events/dt=2024-01-02/hr=00/", 1)
        ]
    );
}

#[test]
fn time_formats_work_for_every_unit_and_dates() {
    let at = ms("2024-03-05T06:07:08.123Z");
    let us = TimestampMicrosecondArray::from(vec![at * 1000]);
    let naive = TimestampMillisecondArray::from(vec![at]);
    let named = TimestampMillisecondArray::from(vec![at]).with_timezone("Asia/Tokyo");
    let day = Date32Array::from(vec![19787]); // 2024-03-05
    let b = batch(vec![
        ("us", Arc::new(us) as ArrayRef),
        ("naive", Arc::new(naive) as ArrayRef),
        ("named", Arc::new(named) as ArrayRef),
        ("day", Arc::new(day) as ArrayRef),
    ]);
    let t = compile(
        "{us:%H%M%S%.3f}/{naive:%H}/{named:%H}/{day:%Y%m%d}/",
        &b,
        false,
    );
    let groups = t.split(&b, 0).unwrap();
    assert_eq!(paths(&groups), vec![("060708.123/06/15/20240305/", 1)]);
}

#[test]
fn sub_second_formats_are_not_reused_within_a_second() {
    let base = ms("2024-03-05T06:07:08Z");
    let ts = TimestampMillisecondArray::from(vec![base + 1, base + 2, base + 1]);
    let b = batch(vec![("ts", Arc::new(ts) as ArrayRef)]);
    let t = compile("{ts:%S%3f}/", &b, false);
    assert_eq!(
        paths(&t.split(&b, 0).unwrap()),
        vec![("08001/", 2), ("08002/", 1)]
    );
    let t = compile("{ts:%S}/", &b, false);
    assert_eq!(paths(&t.split(&b, 0).unwrap()), vec![("08/", 3)]);
}

#[test]
fn hive_style_applies_to_bare_field_segments_only() {
    let region = StringArray::from(vec!["eu-west-1", "us-east-1", "eu-west-1"]);
    let b = batch(vec![("region", Arc::new(region) as ArrayRef)]);
    let groups = compile("{region}/", &b, true).split(&b, 0).unwrap();
    assert_eq!(
        paths(&groups),
        vec![("region=eu-west-1/", 2), ("region=us-east-1/", 1)]
    );
    let groups = compile("{region}/", &b, false).split(&b, 0).unwrap();
    assert_eq!(paths(&groups), vec![("eu-west-1/", 2), ("us-east-1/", 1)]);
    let groups = compile("r-{region}/{repo}/", &b, true)
        .split(&b, 0)
        .unwrap();
    assert_eq!(
        paths(&groups),
        vec![("r-eu-west-1/events/", 2), ("r-us-east-1/events/", 1)]
    );
}

#[test]
fn nulls_and_empty_strings_use_the_hive_default_partition() {
    let region = StringArray::from(vec![Some("eu"), None, Some(""), Some("eu")]);
    let n = Int32Array::from(vec![Some(1), Some(1), None, Some(1)]);
    let ts = TimestampMillisecondArray::from(vec![Some(0), Some(0), None, Some(0)]);
    let b = batch(vec![
        ("region", Arc::new(region) as ArrayRef),
        ("n", Arc::new(n) as ArrayRef),
        ("ts", Arc::new(ts) as ArrayRef),
    ]);
    let groups = compile("{region}/{n}/d={ts:%Y}/", &b, true)
        .split(&b, 0)
        .unwrap();
    assert_eq!(
        paths(&groups),
        vec![
            ("region=eu/n=1/d=1970/", 2),
            ("region=__HIVE_DEFAULT_PARTITION__/n=1/d=1970/", 1),
            (
                "region=__HIVE_DEFAULT_PARTITION__/n=__HIVE_DEFAULT_PARTITION__/\
                 d=__HIVE_DEFAULT_PARTITION__/",
                1
            ),
        ]
    );
}

#[test]
fn a_null_starting_a_segment_stays_visible() {
    let v = StringArray::from(vec![None, Some("")]);
    let b = batch(vec![("v", Arc::new(v) as ArrayRef)]);
    let bare = compile("{v}/", &b, false).split(&b, 0).unwrap();
    assert_eq!(paths(&bare), vec![("%5F_HIVE_DEFAULT_PARTITION__/", 2)]);
}

#[test]
fn values_are_sanitized_for_paths() {
    let v = StringArray::from(vec!["a/b c", "_x", ".x", "é=1", "..", "ok-_.~9"]);
    let b = batch(vec![("v", Arc::new(v) as ArrayRef)]);
    let bare = compile("{v}/", &b, false).split(&b, 0).unwrap();
    assert_eq!(
        paths(&bare),
        vec![
            ("a%2Fb%20c/", 1),
            ("%5Fx/", 1),
            ("%2Ex/", 1),
            ("%C3%A9%3D1/", 1),
            ("%2E%2E/", 1),
            ("ok-_.~9/", 1),
        ]
    );
    // Not at the start of a segment, `_` and `.` are kept.
    let hive = compile("{v}/", &b, true).split(&b, 0).unwrap();
    assert_eq!(hive[1].0, "v=_x/");
    assert_eq!(hive[2].0, "v=.x/");
    let inner = compile("k-{v}/", &b, false).split(&b, 0).unwrap();
    assert_eq!(inner[1].0, "k-_x/");
    assert_eq!(inner[0].0, "k-a%2Fb%20c/");
}

/// No rendered folder name ends in `.`: Azure Blob Storage refuses such a path segment (and
/// Windows file systems drop the dot), so one record's value stopped its partition for good.
#[test]
fn no_folder_name_ends_in_a_dot() {
    let v = StringArray::from(vec!["api.", ".", "..", "a..", "a.b", "x"]);
    let b = batch(vec![("v", Arc::new(v) as ArrayRef)]);
    for (template, hive) in [("{v}/", false), ("{v}/", true), ("k-{v}/", false)] {
        for (path, _) in paths(&compile(template, &b, hive).split(&b, 0).unwrap()) {
            assert!(
                path.split('/').all(|seg| !seg.ends_with('.')),
                "{template} (hive {hive}): {path}"
            );
        }
    }
    let hive = compile("{v}/", &b, true).split(&b, 0).unwrap();
    assert_eq!(hive[0].0, "v=api%2E/");
    assert_eq!(hive[4].0, "v=a.b/");
    // Nor a template's own text.
    let Err(e) = PathTemplate::compile("v1./{v}/", &b.schema(), "events", false) else {
        panic!("a segment ending in `.` was taken");
    };
    let e = e.to_string();
    assert!(e.contains("ends in `.`"), "{e}");
}

#[test]
fn other_primitive_types_render_as_text() {
    let b = batch(vec![
        ("i", Arc::new(Int64Array::from(vec![-42])) as ArrayRef),
        ("f", Arc::new(BooleanArray::from(vec![true])) as ArrayRef),
        (
            "d",
            Arc::new(
                Decimal128Array::from(vec![12345])
                    .with_precision_and_scale(10, 2)
                    .unwrap(),
            ) as ArrayRef,
        ),
        ("day", Arc::new(Date32Array::from(vec![19787])) as ArrayRef),
        (
            "ts",
            Arc::new(
                TimestampMillisecondArray::from(vec![ms("2024-03-05T06:07:08Z")])
                    .with_timezone("+08:00"),
            ) as ArrayRef,
        ),
        (
            "utc",
            Arc::new(TimestampMillisecondArray::from(vec![ms(
                "2024-03-05T06:07:08.5Z",
            )])) as ArrayRef,
        ),
    ]);
    let t = compile("{i}/{f}/{d}/{day}/{ts}/{utc}/", &b, false);
    assert_eq!(
        paths(&t.split(&b, 0).unwrap()),
        vec![(
            "-42/true/123.45/2024-03-05/2024-03-05T14%3A07%3A08%2B08%3A00/\
             2024-03-05T06%3A07%3A08.500Z/",
            1
        )]
    );
}

#[test]
fn ingest_time_is_formatted_in_utc() {
    let b = batch(vec![(
        "v",
        Arc::new(Int32Array::from(vec![1, 2])) as ArrayRef,
    )]);
    let t = compile("y={_ingest:%Y}/h={_ingest:%H}/", &b, false);
    assert!(t.is_constant());
    assert!(t.uses_ingest_time());
    let at = ms("2025-06-30T23:30:00-02:00");
    let groups = t.split(&b, at).unwrap();
    assert_eq!(paths(&groups), vec![("y=2025/h=01/", 2)]);
    assert_eq!(
        t.constant_path(at).unwrap().as_deref(),
        Some("y=2025/h=01/")
    );
    let mixed = compile("{_ingest:%Y}/{v}/", &b, true);
    assert!(!mixed.is_constant());
    assert_eq!(
        paths(&mixed.split(&b, at).unwrap()),
        vec![("2025/v=1/", 1), ("2025/v=2/", 1)]
    );
}

#[test]
fn rows_keep_their_order_within_groups() {
    let k = StringArray::from(vec!["b", "a", "b", "c", "a", "b"]);
    let id = Int32Array::from(vec![0, 1, 2, 3, 4, 5]);
    let b = batch(vec![
        ("k", Arc::new(k) as ArrayRef),
        ("id", Arc::new(id) as ArrayRef),
    ]);
    let groups = compile("{k}/", &b, false).split(&b, 0).unwrap();
    let got: Vec<(&str, Vec<i32>)> = groups
        .iter()
        .map(|(p, g)| {
            let ids = g.column(1).as_primitive::<arrow::datatypes::Int32Type>();
            (p.as_str(), ids.values().to_vec())
        })
        .collect();
    assert_eq!(
        got,
        vec![("b/", vec![0, 2, 5]), ("a/", vec![1, 4]), ("c/", vec![3])]
    );
    assert_eq!(strings(&groups[0].1, "k"), vec![Some("b".to_string()); 3]);
}

#[test]
fn one_group_returns_the_batch_itself() {
    let k = StringArray::from(vec!["x", "x", "x"]);
    let b = batch(vec![("k", Arc::new(k) as ArrayRef)]);
    for template in ["{k}/", "const/", ""] {
        let groups = compile(template, &b, true).split(&b, 0).unwrap();
        assert_eq!(groups.len(), 1);
        assert!(
            Arc::ptr_eq(groups[0].1.column(0), b.column(0)),
            "{template}"
        );
    }
    let empty = compile("", &b, true);
    assert!(empty.is_constant());
    assert_eq!(empty.split(&b, 0).unwrap()[0].0, "");
    assert_eq!(compile("a/b", &b, true).split(&b, 0).unwrap()[0].0, "a/b/");
    assert!(compile("{k}/", &b, true)
        .split(&b.slice(0, 0), 0)
        .unwrap()
        .is_empty());
}

#[test]
fn a_batch_with_another_schema_is_an_error() {
    let b = batch(vec![(
        "k",
        Arc::new(StringArray::from(vec!["x"])) as ArrayRef,
    )]);
    let t = compile("{k}/", &b, true);
    let other = batch(vec![("k", Arc::new(Int32Array::from(vec![1])) as ArrayRef)]);
    let e = t.split(&other, 0).unwrap_err().to_string();
    assert!(e.contains("template `{k}/`") && e.contains("`k`"), "{e}");
}

#[test]
fn compile_errors_name_the_template_and_the_cause() {
    let item = Arc::new(Field::new("item", DataType::Int32, true));
    let schema: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
        Field::new("region", DataType::Utf8, true),
        Field::new("tags", DataType::List(item.clone()), true),
        Field::new(
            "s",
            DataType::Struct(vec![Field::new("a", DataType::Int32, true)].into()),
            true,
        ),
        Field::new("blob", DataType::Binary, true),
        Field::new("_hidden", DataType::Utf8, true),
    ]));
    let cases = [
        ("dt={tss:%Y}/", "unknown field `tss`"),
        ("dt={ts:%Y/", "unbalanced braces"),
        ("dt={ts{:%Y}/", "unbalanced braces"),
        ("dt=ts}/", "unbalanced braces"),
        ("dt={}/", "empty field name"),
        ("dt={:%Y}/", "empty field name"),
        ("dt={ts:}/", "empty format"),
        ("r={region:%Y}/", "a format needs a timestamp or date field"),
        ("{tags}/", "nested"),
        ("{s}/", "nested"),
        ("{tags:%Y}/", "nested"),
        ("{blob}/", "cannot be rendered in a path"),
        ("dt={ts:%Y-%Q}/", "invalid strftime format `%Y-%Q`"),
        ("dt={ts:%Y/%m}/", "cannot contain `/`"),
        ("_tmp/{region}/", "starts with `_`"),
        (".cache/{region}/", "starts with `.`"),
        ("a/../{region}/", "contains `..`"),
        ("a..b/{region}/", "contains `..`"),
        ("/abs/{region}/", "relative path"),
        ("a//{region}/", "empty path segment"),
        ("{_ingest}/", "needs a format"),
        ("{repo:%Y}/", "takes no format"),
    ];
    for (template, cause) in cases {
        let e = PathTemplate::compile(template, &schema, "events", true)
            .expect_err(template)
            .to_string();
        assert!(
            e.contains(&format!("template `{template}`")) && e.contains(cause),
            "{template}: {e}"
        );
    }
    let e = PathTemplate::compile("dt={tss:%Y}/", &schema, "events", true).unwrap_err();
    assert_eq!(
        e.to_string(),
        "template `dt={tss:%Y}/`: unknown field `tss`"
    );
    // A field whose name starts with `_` gets an encoded Hive key, not a hidden folder.
    let b = batch(vec![(
        "_hidden",
        Arc::new(StringArray::from(vec!["v"])) as ArrayRef,
    )]);
    let t = PathTemplate::compile("{_hidden}/", &b.schema(), "events", true).unwrap();
    assert_eq!(t.split(&b, 0).unwrap()[0].0, "%5Fhidden=v/");
}

#[test]
fn templates_can_be_shared_between_threads() {
    fn shared<T: Clone + std::fmt::Debug + Send + Sync>() {}
    shared::<PathTemplate>();
    shared::<TemplateError>();
}

#[test]
fn groups_are_exactly_the_input_rows() {
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let alphabet = ["a", "b", "_c", "d e", "", "é"];
    for round in 0..200 {
        let rows = (next() % 300) as usize + 1;
        let keys = 1 + (next() % alphabet.len() as u64) as usize;
        let k: StringArray = (0..rows)
            .map(|_| {
                let r = next();
                (r % 7 != 0).then(|| alphabet[(r as usize / 7) % keys])
            })
            .collect();
        let n: Int64Array = (0..rows)
            .map(|_| {
                let r = next();
                (r % 5 != 0).then_some((r % 3) as i64)
            })
            .collect();
        let ts: TimestampMillisecondArray = (0..rows)
            .map(|_| Some((next() % (3 * 86_400_000)) as i64))
            .collect();
        let id = Int32Array::from_iter_values(0..rows as i32);
        let b = batch(vec![
            ("k", Arc::new(k) as ArrayRef),
            ("n", Arc::new(n) as ArrayRef),
            ("ts", Arc::new(ts.with_timezone("-03:30")) as ArrayRef),
            ("id", Arc::new(id) as ArrayRef),
        ]);
        let t = compile("{k}/{n}/d={ts:%d}/", &b, round % 2 == 0);
        let groups = t.split(&b, 0).unwrap();
        let mut seen = vec![false; rows];
        let mut distinct = std::collections::HashSet::new();
        for (path, g) in &groups {
            assert!(distinct.insert(path.clone()), "path {path} twice");
            let ids = g.column(3).as_primitive::<arrow::datatypes::Int32Type>();
            assert!(ids.values().windows(2).all(|w| w[0] < w[1]));
            for (j, &id) in ids.values().iter().enumerate() {
                let i = id as usize;
                assert!(!seen[i], "row {i} twice");
                seen[i] = true;
                // Same values as the input row, and the row renders to its group's path.
                let original = b.slice(i, 1);
                let copy = g.slice(j, 1);
                assert_eq!(original, copy);
                assert_eq!(t.split(&original, 0).unwrap()[0].0, *path);
            }
        }
        assert!(seen.iter().all(|&s| s), "round {round}: rows lost");
    }
}

/// A value whose rendering is longer than a file name may be (here 1,800 bytes escaped) gets
/// a folder name of bounded length, different for values that share a long prefix; a value of
/// exactly `MAX_VALUE` bytes stays whole.
#[test]
fn long_values_are_cut_and_hashed() {
    let long_a = "é".repeat(300);
    let long_b = format!("{}x", "é".repeat(300));
    let exact = "v".repeat(MAX_VALUE);
    let b = batch(vec![(
        "region",
        Arc::new(StringArray::from(vec![
            long_a.as_str(),
            long_b.as_str(),
            exact.as_str(),
        ])) as ArrayRef,
    )]);
    let t = compile("{region}/", &b, true);
    let groups = t.split(&b, 0).unwrap();
    let mut names: Vec<&str> = groups.iter().map(|(p, _)| p.as_str()).collect();
    names.sort();
    assert_eq!(names.len(), 3, "{names:?}");
    for n in &names {
        let value = n
            .strip_prefix("region=")
            .unwrap()
            .strip_suffix('/')
            .unwrap();
        assert!(value.len() <= MAX_VALUE + 17, "{n}");
    }
    assert!(names.contains(&format!("region={exact}/").as_str()));
    let hashed: Vec<&&str> = names
        .iter()
        .filter(|n| n.len() == 7 + MAX_VALUE + 17 + 1)
        .collect();
    assert_eq!(hashed.len(), 2, "{names:?}");
    assert!(hashed
        .iter()
        .all(|n| n.starts_with("region=%C3%A9") && !n.contains("%C~")));
}

/// A long value is rendered only as far as it is cut: a 16 MiB value of spaces was escaped
/// whole first, 48 MiB for one row's path.
#[test]
fn a_long_value_is_rendered_only_as_far_as_its_cut() {
    let huge = " ".repeat(16 << 20);
    let mut out = String::new();
    super::sanitize::push_sanitized(&mut out, &huge, true);
    assert!(out.capacity() < 4096, "{} bytes held", out.capacity());
    assert_eq!(out.len(), MAX_VALUE + 17);
    assert_eq!(&out[..MAX_VALUE - 1], "%20".repeat(33));
}

#[test]
fn partition_fields_are_the_placeholders_alone_in_a_folder_name() {
    let b = batch(vec![
        (
            "region",
            Arc::new(StringArray::from(vec!["us"])) as ArrayRef,
        ),
        ("zone", Arc::new(StringArray::from(vec!["a"])) as ArrayRef),
        ("n", Arc::new(Int32Array::from(vec![1])) as ArrayRef),
        (
            "ts",
            Arc::new(TimestampMillisecondArray::from(vec![0]).with_timezone("UTC")) as ArrayRef,
        ),
    ]);
    let fields = |t: &str, hive: bool| -> Vec<String> {
        compile(t, &b, hive)
            .partition_fields()
            .into_iter()
            .map(|(n, _)| n)
            .collect()
    };
    assert_eq!(fields("region={region}/n={n}/", false), ["region", "n"]);
    assert_eq!(fields("{region}/{zone}/", true), ["region", "zone"]);
    assert_eq!(fields("{region}/{zone}/", false), ["region", "zone"]);
    // Two values in one name: ("us-east", "1") and ("us", "east-1") meet.
    assert!(fields("{region}-{zone}/", false).is_empty());
    assert!(fields("x{region}/", false).is_empty());
    assert!(fields("zone={region}/", false).is_empty());
    // A time placeholder is no column.
    assert_eq!(fields("dt={ts:%Y-%m-%d}/{zone}/", true), ["zone"]);
}

#[test]
fn a_value_spelled_like_the_null_folder_gets_a_folder_of_its_own() {
    let b = batch(vec![(
        "host",
        Arc::new(StringArray::from(vec![
            None,
            Some(NULL_PARTITION),
            Some(""),
        ])) as ArrayRef,
    )]);
    for (template, hive) in [("host={host}/", false), ("{host}/", false)] {
        let t = compile(template, &b, hive);
        let groups = t.split(&b, 0).unwrap();
        let ps = paths(&groups);
        // Null and the empty string share the null folder (Delta reads "" as null too).
        assert_eq!(ps.len(), 2, "{template}: {ps:?}");
        assert!(ps
            .iter()
            .any(|(p, n)| p.contains("%5F%5FHIVE%5FDEFAULT%5FPARTITION%5F%5F") && *n == 1));
    }
}

/// A data file named after a topic that starts with `_` or `.` gets that character encoded:
/// query engines skip such names. Other names stay as they are.
#[test]
fn file_names_that_readers_would_skip_are_made_visible() {
    use super::visible_name;
    assert_eq!(
        visible_name("_audit-0-5-ab.parquet"),
        "%5Faudit-0-5-ab.parquet"
    );
    assert_eq!(visible_name(".x-1-0-ab.orc"), "%2Ex-1-0-ab.orc");
    assert_eq!(
        visible_name("events-0-0-ab.parquet"),
        "events-0-0-ab.parquet"
    );
    assert_eq!(
        visible_name("app._x-0-0-ab.parquet"),
        "app._x-0-0-ab.parquet"
    );
    assert_eq!(visible_name(""), "");
}

/// A folder name joining several long values (three of 117 bytes, 353 in all) passed the 255
/// bytes a file system holds: every write of its rows failed, for good. Now it is cut to
/// `MAX_SEGMENT` bytes and hashed like a long value; names that differ stay apart, and the
/// other folders of the path are kept as they are.
#[test]
fn a_folder_name_of_several_long_values_is_cut_and_hashed() {
    let long = |c: &str| c.repeat(150);
    let (a, b2, c) = (long("a"), long("b"), long("c"));
    let c2 = format!("{c}x");
    let b = batch(vec![
        (
            "host",
            Arc::new(StringArray::from(vec![a.as_str(), a.as_str(), "h"])) as ArrayRef,
        ),
        (
            "service",
            Arc::new(StringArray::from(vec![b2.as_str(), b2.as_str(), "s"])) as ArrayRef,
        ),
        (
            "path",
            Arc::new(StringArray::from(vec![c.as_str(), c2.as_str(), "p"])) as ArrayRef,
        ),
    ]);
    let t = compile("{host}-{service}-{path}/{host}/", &b, false);
    let groups = t.split(&b, 0).unwrap();
    let names: Vec<&str> = groups.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(names.len(), 3, "{names:?}");
    for n in &names[..2] {
        let segments: Vec<&str> = n.trim_end_matches('/').split('/').collect();
        assert_eq!(segments[0].len(), MAX_SEGMENT + 17, "{n}");
        assert!(segments[0].starts_with(&"a".repeat(100)), "{n}");
        assert_eq!(
            segments[1].len(),
            MAX_VALUE + 17,
            "the value's own cut: {n}"
        );
    }
    assert_ne!(names[0], names[1]);
    assert_eq!(names[2], "h-s-p/h/");
    // Escapes are not cut in two.
    let mut out = "%20".repeat(100);
    super::sanitize::cap_segments(&mut out, &mut Vec::new());
    assert_eq!(out.len(), MAX_SEGMENT + 17);
    assert!(!out.contains("%2~") && !out.contains("%~"), "{out}");
    // Nor a template's literal characters (`é` is 2 bytes: one falls across the cut).
    for shift in 0..2 {
        let mut out = format!("{}{}/x/", "a".repeat(shift), "é".repeat(150));
        super::sanitize::cap_segments(&mut out, &mut Vec::new());
        let first = out.split('/').next().unwrap();
        assert_eq!(first.len(), MAX_SEGMENT + 17, "{out}");
        assert!(out.ends_with("/x/"), "{out}");
    }
}
