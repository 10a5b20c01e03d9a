//! Stage tests: each kind with nulls, unicode and empty batches; planning errors name the stage
//! and column; failing rows are isolated; a filter never changes the rows it keeps.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, AsArray, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, TimeUnit};
use proptest::prelude::*;

use super::*;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new("method", DataType::Utf8, true),
        Field::new("status", DataType::Int64, true),
        Field::new("ip", DataType::Utf8, true),
    ]))
}

fn batch() -> RecordBatch {
    let cols: Vec<ArrayRef> = vec![
        Arc::new(
            TimestampMillisecondArray::from(vec![
                1_714_557_600_000, // 2024-05-01T10:00:00Z
                1_714_559_400_500, // 10:30:00.5
                1_714_561_200_000, // 11:00
                1_714_563_000_000,
            ])
            .with_timezone("UTC"),
        ),
        Arc::new(StringArray::from(vec![
            Some("GET"),
            Some("pÖst"),
            None,
            Some("Déléte"),
        ])),
        Arc::new(Int64Array::from(vec![
            Some(200),
            Some(503),
            None,
            Some(500),
        ])),
        Arc::new(StringArray::from(vec![
            Some("10.0.0.1"),
            Some("10.0.0.2"),
            None,
            Some("x"),
        ])),
    ];
    RecordBatch::try_new(schema(), cols).unwrap()
}

/// A stage spec from its TOML.
pub(super) fn stage(spec: &str) -> StageSpec {
    toml::from_str(spec).unwrap()
}

fn plan(specs: &[&str]) -> Result<Stages, StageError> {
    Stages::plan(
        &specs.iter().map(|s| stage(s)).collect::<Vec<_>>(),
        schema(),
        OnError::DeadLetter,
    )
}

/// A column's values as text.
pub(super) fn strings(b: &RecordBatch, col: &str) -> Vec<Option<String>> {
    let c = b.column_by_name(col).unwrap();
    let c = arrow::compute::cast(c, &DataType::Utf8).unwrap();
    c.as_string::<i32>()
        .iter()
        .map(|v| v.map(str::to_string))
        .collect()
}

#[test]
fn a_filter_keeps_matching_rows_and_drops_null_conditions() {
    let s = plan(&["filter = \"status >= 500 AND method <> 'GET'\""]).unwrap();
    assert_eq!(s.output_schema(), schema());
    let a = s.apply(batch());
    let b = a.batch.unwrap();
    assert_eq!(
        strings(&b, "method"),
        vec![Some("pÖst".into()), Some("Déléte".into())]
    );
    assert_eq!(a.filtered, 2, "GET and the null status");
    assert!(a.failed.is_empty());
    let empty = s.apply(RecordBatch::new_empty(schema()));
    assert!(empty.batch.is_none() && empty.filtered == 0);
}

#[test]
fn a_select_renames_drops_casts_derives_and_masks() {
    let s = plan(&[r#"select = [
        "date_trunc('hour', ts) AS hour",
        "lower(method) AS method",
        "CAST(status AS VARCHAR) AS status_text",
        "coalesce(status, -1) AS status",
        "regexp_replace(ip, '\\.[0-9]+$', '.0') AS net",
        "encode(sha256(ip), 'hex') AS ip_hash",
        "'web' AS source",
    ]"#])
    .unwrap();
    let names: Vec<String> = s
        .output_schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(
        names,
        [
            "hour",
            "method",
            "status_text",
            "status",
            "net",
            "ip_hash",
            "source"
        ]
    );
    let a = s.apply(batch());
    assert!(a.failed.is_empty(), "{:?}", a.failed);
    let b = a.batch.unwrap();
    assert_eq!(b.num_rows(), 4);
    assert_eq!(
        strings(&b, "hour")[1].as_deref(),
        Some("2024-05-01T10:00:00Z"),
        "truncated to the hour"
    );
    assert_eq!(
        strings(&b, "method"),
        vec![
            Some("get".into()),
            Some("pöst".into()),
            None,
            Some("déléte".into())
        ]
    );
    assert_eq!(strings(&b, "status_text")[2], None);
    assert_eq!(
        b.column_by_name("status")
            .unwrap()
            .as_primitive::<Int64Type>()
            .values()
            .to_vec(),
        [200, 503, -1, 500]
    );
    assert_eq!(strings(&b, "net")[0].as_deref(), Some("10.0.0.0"));
    assert_eq!(
        strings(&b, "ip_hash")[0].as_deref(),
        Some("f5047344122f0dee9974ba6761e61c6b8649e1f3968d13a635ebbf7be53a3a0d")
    );
    assert_eq!(strings(&b, "ip_hash")[2], None);
    assert_eq!(strings(&b, "source"), vec![Some("web".into()); 4]);
}

#[test]
fn stages_chain_and_an_sql_stage_filters_and_projects() {
    let s = plan(&[
        "select = [\"status\", \"upper(method) AS m\"]",
        "sql = \"SELECT m, status * 2 AS double FROM input WHERE status > 200\"",
    ])
    .unwrap();
    let a = s.apply(batch());
    let b = a.batch.unwrap();
    assert_eq!(
        strings(&b, "m"),
        vec![Some("PÖST".into()), Some("DÉLÉTE".into())]
    );
    assert_eq!(
        b.column_by_name("double")
            .unwrap()
            .as_primitive::<Int64Type>()
            .values()
            .to_vec(),
        [1006, 1000]
    );
    assert_eq!(a.filtered, 2);
    assert_eq!(s.describe().len(), 2);
}

#[test]
fn planning_errors_name_the_stage_and_the_column() {
    let e = plan(&[
        "name = \"keep\"\nfilter = \"status > 1\"",
        "select = [\"nope AS x\"]",
    ])
    .unwrap_err();
    assert_eq!((e.number, e.name.as_str()), (2, "select-2"));
    assert!(e.reason.contains("nope"), "{e}");
    let e = plan(&["filter = \"status >\""]).unwrap_err();
    assert_eq!(e.name, "filter-1");
    let e = plan(&["filter = \"method\""]).unwrap_err().to_string();
    assert!(e.contains("stage 1"), "{e}");
    let e = plan(&["sql = \"SELECT count(*) FROM input\""])
        .unwrap_err()
        .to_string();
    assert!(e.contains("not allowed in a stage"), "{e}");
    let e = plan(&["sql = \"SELECT * FROM input ORDER BY status\""])
        .unwrap_err()
        .to_string();
    assert!(e.contains("not allowed in a stage"), "{e}");
    let e = plan(&["filter = \"status > 1\"\nselect = [\"status\"]"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("exactly one"), "{e}");
}

#[test]
fn rows_a_stage_fails_on_are_isolated_with_the_reason() {
    // One value of four does not cast.
    let cols: Vec<ArrayRef> = vec![
        batch().column(0).clone(),
        Arc::new(StringArray::from(vec![
            Some("1"),
            Some("x2"),
            None,
            Some("4"),
        ])),
        batch().column(2).clone(),
        batch().column(3).clone(),
    ];
    let b = RecordBatch::try_new(schema(), cols).unwrap();
    let s =
        plan(&["name = \"num\"\nselect = [\"CAST(method AS BIGINT) AS n\", \"status\"]"]).unwrap();
    let a = s.apply(b);
    assert_eq!(a.failed.len(), 1, "{:?}", a.failed);
    assert_eq!(a.failed[0].0, 1, "the row with `x2`");
    assert!(
        a.failed[0].1.starts_with("stage `num`:"),
        "{}",
        a.failed[0].1
    );
    let out = a.batch.unwrap();
    assert_eq!(
        out.column(0)
            .as_primitive::<Int64Type>()
            .iter()
            .collect::<Vec<_>>(),
        [Some(1), None, Some(4)]
    );
    assert_eq!(crate::decode::reason_class(&a.failed[0].1), "stage");
}

/// A product of two `decimal(20, 0)` is typed `decimal(38, 0)`, and arrow does not check the
/// values against that: 10^19 × 10^19 has 39 digits. That row fails (before, it was written
/// as is, into a file readers fail on); the others are kept.
#[test]
fn a_decimal_a_stage_computes_past_its_precision_fails_its_row() {
    use arrow::array::Decimal128Array;
    let dec = DataType::Decimal128(20, 0);
    let schema = Arc::new(Schema::new(vec![
        Field::new("a", dec.clone(), true),
        Field::new("b", dec, true),
    ]));
    let big = 10i128.pow(19);
    let col = |v: Vec<Option<i128>>| -> ArrayRef {
        Arc::new(
            Decimal128Array::from(v)
                .with_precision_and_scale(20, 0)
                .unwrap(),
        )
    };
    let b = RecordBatch::try_new(
        schema.clone(),
        vec![
            col(vec![Some(3), Some(big), None]),
            col(vec![Some(4), Some(big), Some(1)]),
        ],
    )
    .unwrap();
    let s = Stages::plan(
        &[stage("name = \"mul\"\nselect = [\"a * b AS p\"]")],
        schema,
        OnError::DeadLetter,
    )
    .unwrap();
    let a = s.apply(b);
    assert_eq!(a.failed.len(), 1, "{:?}", a.failed);
    assert_eq!(a.failed[0].0, 1);
    assert!(
        a.failed[0].1.contains("decimal(38, 0)"),
        "{}",
        a.failed[0].1
    );
    assert_eq!(strings(&a.batch.unwrap(), "p"), [Some("12".into()), None]);
}

proptest! {
    #[test]
    fn a_filter_never_changes_the_rows_it_keeps(
        values in proptest::collection::vec((proptest::option::of(-50i64..50), "[a-zé]{0,4}"), 0..200),
        k in -50i64..50,
    ) {
        let s = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, true),
            Field::new("s", DataType::Utf8, false),
        ]));
        let b = RecordBatch::try_new(s.clone(), vec![
            Arc::new(Int64Array::from(values.iter().map(|v| v.0).collect::<Vec<_>>())),
            Arc::new(StringArray::from(values.iter().map(|v| v.1.clone()).collect::<Vec<_>>())),
        ]).unwrap();
        let st = Stages::plan(&[stage(&format!("filter = \"n > {k}\""))], s, OnError::DeadLetter).unwrap();
        let a = st.apply(b);
        let expected: Vec<(i64, String)> = values.iter().filter(|v| v.0.is_some_and(|n| n > k)).map(|v| (v.0.unwrap(), v.1.clone())).collect();
        let got: Vec<(i64, String)> = match a.batch {
            None => Vec::new(),
            Some(out) => {
                let n = out.column(0).as_primitive::<Int64Type>();
                let s = out.column(1).as_string::<i32>();
                (0..out.num_rows()).map(|i| (n.value(i), s.value(i).to_string())).collect()
            }
        };
        prop_assert_eq!(got, expected);
        prop_assert_eq!(a.filtered as usize, values.len() - values.iter().filter(|v| v.0.is_some_and(|n| n > k)).count());
    }
}

#[test]
fn planned_types_are_what_evaluation_gives_and_odd_queries_plan_or_fail_clearly() {
    // CASE with an Int64 column and a literal: the output column has the evaluated type.
    let s = plan(&[
        "select = [\"CASE WHEN status > 300 THEN status ELSE 0 END AS big\", \"now() AS at\"]",
    ])
    .unwrap();
    let a = s.apply(batch());
    assert!(a.failed.is_empty(), "{:?}", a.failed);
    assert_eq!(a.batch.unwrap().num_rows(), 4);
    // A WHERE over an alias of `input`.
    let s =
        plan(&["sql = \"SELECT i.status FROM public.input AS i WHERE i.status > 300\""]).unwrap();
    assert_eq!(s.apply(batch()).batch.unwrap().num_rows(), 2);
    // VARCHAR is Utf8.
    let s = plan(&["select = [\"CAST(status AS VARCHAR) AS s\"]"]).unwrap();
    assert_eq!(s.output_schema().field(0).data_type(), &DataType::Utf8);
    let e = plan(&["sql = \"SELECT FROM input\""])
        .unwrap_err()
        .to_string();
    assert!(e.contains("selects no columns"), "{e}");
    let e = plan(&["filter = \"NULL\""]).unwrap_err().to_string();
    assert!(e.contains("not a boolean"), "{e}");
}

/// `printf GET | md5sum`
const MD5_OF_GET: &str = "7528035a93ee69cedb1dbddb2f0bfcc8";

#[test]
fn sql_forms_users_write_plan_and_evaluate() {
    // Special syntax (EXTRACT, SUBSTRING .. FROM .. FOR, POSITION .. IN, ||, struct fields) and
    // functions of each enabled family, with the values they give.
    let user = Field::new(
        "u",
        DataType::Struct(vec![Field::new("name", DataType::Utf8, true)].into()),
        true,
    );
    let input = Arc::new(Schema::new(vec![
        Field::new("method", DataType::Utf8, true),
        Field::new("status", DataType::Int64, true),
        user.clone(),
    ]));
    let names: ArrayRef = Arc::new(StringArray::from(vec![Some("ann"), None]));
    let users = arrow::array::StructArray::new(
        vec![Field::new("name", DataType::Utf8, true)].into(),
        vec![names],
        None,
    );
    let b = RecordBatch::try_new(
        input.clone(),
        vec![
            Arc::new(StringArray::from(vec![Some("GET"), Some("POST")])),
            Arc::new(Int64Array::from(vec![Some(200), Some(503)])),
            Arc::new(users),
        ],
    )
    .unwrap();
    let s = Stages::plan(
        &[stage(
            r#"select = [
              "EXTRACT(YEAR FROM TIMESTAMP '2024-05-01T10:00:00Z') AS y",
              "SUBSTRING(method FROM 2 FOR 2) AS sub",
              "POSITION('T' IN method) AS pos",
              "method || '-' || CAST(status AS VARCHAR) AS joined",
              "u.name AS who",
              "coalesce(u.name, 'nobody') AS who3",
              "md5(method) AS h",
              "encode(method, 'hex') AS hex",
              "regexp_like(method, '^P') AS p",
              "date_trunc('hour', TIMESTAMP '2024-05-01T10:30:00Z') AS hour",
              "abs(status - 300) AS dist",
              "arrow_cast(status, 'Int32') AS small",
              "upper(method) AS up",
            ]"#,
        )],
        input,
        OnError::DeadLetter,
    )
    .unwrap();
    let a = s.apply(b);
    assert!(a.failed.is_empty(), "{:?}", a.failed);
    let out = a.batch.unwrap();
    let col = |name: &str| strings(&out, name);
    let some = |v: &[&str]| v.iter().map(|s| Some(s.to_string())).collect::<Vec<_>>();
    assert_eq!(col("y"), some(&["2024", "2024"]));
    assert_eq!(col("sub"), some(&["ET", "OS"]));
    assert_eq!(col("pos"), some(&["3", "4"]));
    assert_eq!(col("joined"), some(&["GET-200", "POST-503"]));
    assert_eq!(col("who"), vec![Some("ann".to_string()), None]);
    assert_eq!(col("who3"), some(&["ann", "nobody"]));
    assert_eq!(col("h")[0].as_deref(), Some(MD5_OF_GET));
    assert_eq!(col("hex"), some(&["474554", "504f5354"]));
    assert_eq!(col("p"), some(&["false", "true"]));
    assert_eq!(col("dist"), some(&["100", "203"]));
    assert_eq!(
        out.column_by_name("small").unwrap().data_type(),
        &DataType::Int32
    );
    assert_eq!(col("up"), some(&["GET", "POST"]));
    assert!(col("hour")[0]
        .as_deref()
        .unwrap()
        .starts_with("2024-05-01T10:00:00"));
    // Aggregates, window functions and other tables are refused by name.
    for (sql, says) in [
        ("SELECT sum(status) AS s FROM input", "`sum`"),
        (
            "SELECT row_number() OVER () AS n FROM input",
            "`row_number`",
        ),
        ("SELECT status FROM other", "a stage reads only `input`"),
        (
            "SELECT status FROM other.input",
            "a stage reads only `input`",
        ),
        ("SELECT var_pop(status) AS v FROM input", "`var_pop`"),
        ("SELECT cume_dist() OVER () AS c FROM input", "`cume_dist`"),
        ("SELECT nosuchfn(status) AS x FROM input", "nosuchfn"),
        (
            "SELECT 1 AS a FROM input; SELECT 2 AS b FROM input",
            "one SQL statement",
        ),
    ] {
        let e = plan(&[&format!("sql = \"{sql}\"")])
            .unwrap_err()
            .to_string();
        assert!(e.contains(says), "{sql}: {e}");
    }
}

/// When the two halves' outputs cannot be one batch (a string column past 2 GiB), the second
/// half's kept rows fail and the first half's output goes on; a row a filter left out, or one
/// that failed already, stays as it was. Before, `concat_batches` was expected to succeed and
/// the task panicked.
#[test]
fn halves_that_do_not_fit_one_batch_fail_the_second_half() {
    let s = plan(&["select = [\"method\"]"]).unwrap();
    let st = &s.planned[0];
    let a_out = RecordBatch::try_new(
        st.schema.clone(),
        vec![Arc::new(StringArray::from(vec!["GET", "PUT"]))],
    )
    .unwrap();
    let overflow = arrow::error::ArrowError::ComputeError("offset overflow".into());
    // The second half holds rows 12 (failed), 15 (left out by a filter) and 17 (kept), at
    // indices 2, 3 and 4 of the batch.
    let (out, kept, failed) = join(
        st,
        &[12, 15, 17],
        2,
        (a_out.clone(), UInt32Array::from(vec![3, 8])),
        (UInt32Array::from(vec![17]), vec![(2, "earlier".into())]),
        Err(overflow),
    );
    assert_eq!((out, kept.values().to_vec()), (a_out, vec![3, 8]));
    let at: Vec<usize> = failed.iter().map(|f| f.0).collect();
    assert_eq!(at, [2, 4]);
    assert_eq!(failed[0].1, "earlier");
    assert!(failed[1].1.contains("does not fit one batch"), "{failed:?}");
}

/// Stage SQL reads an unquoted name in lower case: with fields `A` and `a`, an unquoted `A`
/// is refused (it read `a`'s values without a word), a quoted name keeps its case, and the
/// error for a name with capitals says to quote it, not to change a DataFusion setting.
#[test]
fn names_differing_only_in_case_are_refused_and_capitals_are_quoted() {
    let twins: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("A", DataType::Int64, true),
        Field::new("a", DataType::Int64, true),
    ]));
    let e = Stages::plan(
        &[stage(r#"select = ["A AS x"]"#)],
        twins.clone(),
        OnError::DeadLetter,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.contains("reads an unquoted `A` as `a`") && e.contains("\"A\""),
        "{e}"
    );
    // Quoted, lower case, a wildcard or a filter on other fields: what is meant is plain.
    let ok = [
        r#"select = ["\"A\" AS x", "a AS y"]"#,
        r#"filter = "a > 1 AND 'A' <> 'B'""#,
        r#"sql = "SELECT * FROM input""#,
    ];
    for spec in ok {
        Stages::plan(&[stage(spec)], twins.clone(), OnError::DeadLetter).unwrap();
    }

    let schema: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("a", DataType::Int64, true),
        Field::new("UserId", DataType::Utf8, true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(vec![1, 10])),
            Arc::new(StringArray::from(vec!["u1", "u2"])),
        ],
    )
    .unwrap();
    let specs = [
        stage(r#"filter = "a > 1 AND \"UserId\" <> 'x'""#),
        stage(r#"select = ["A AS first", "UPPER(\"UserId\") AS \"Uid\""]"#),
    ];
    let s = Stages::plan(&specs, schema.clone(), OnError::DeadLetter).unwrap();
    let out = s.output_schema();
    let names: Vec<&String> = out.fields().iter().map(|f| f.name()).collect();
    assert_eq!(names, ["first", "Uid"]);
    let b = s.apply(batch).batch.unwrap();
    assert_eq!(strings(&b, "first"), vec![Some("10".into())]);
    assert_eq!(strings(&b, "Uid"), vec![Some("U2".into())]);
    let e = Stages::plan(
        &[stage(r#"filter = "UserId <> 'x'""#)],
        schema,
        OnError::DeadLetter,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.contains("\"UserId\"") && e.contains("double-quoted"),
        "{e}"
    );
    assert!(!e.contains("datafusion.sql_parser"), "{e}");
}

/// A derived column needs a name: without one it was named after its expression
/// (`input.status * Int64(2)`), which the output then carried. The error says how to keep it.
#[test]
fn a_derived_column_without_a_name_is_refused() {
    let e = plan(&[r#"select = ["method", "status * 2"]"#])
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("has no name") && e.contains("AS \"input.status * Int64(2)\""),
        "{e}"
    );
    for ok in [
        r#"select = ["method", "status * 2 AS s2"]"#,
        r#"sql = "SELECT ip, status FROM input""#,
    ] {
        plan(&[ok]).unwrap();
    }
}
