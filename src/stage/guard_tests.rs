//! The size guards of stage functions, through planned stages: a record asking for too much
//! is a dead letter, a chunk's growth is bounded, nested calls count once.

use std::sync::Arc;

use arrow::array::{RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use super::*;
use crate::stage::tests::{stage, strings};
use crate::stage::{OnError, StageError, Stages};

/// One stage selecting `expr AS r` over batches of `input`.
pub(in crate::stage) fn select(input: &SchemaRef, expr: &str) -> Result<Stages, StageError> {
    Stages::plan(
        &[stage(&format!("select = [\"{expr} AS r\"]"))],
        input.clone(),
        OnError::DeadLetter,
    )
}

#[test]
fn replacements_a_record_could_grow_past_the_bound_fail_that_record() {
    // A text and a replacement from the data: a match at every character (or an empty match
    // between characters) makes len(s) × len(to) bytes, 100 MB for one 10 kB record; its
    // neighbours go on.
    let input = Arc::new(Schema::new(vec![
        Field::new("s", DataType::Utf8, true),
        Field::new("t", DataType::Utf8, true),
    ]));
    let big = "x".repeat(10_000);
    let b = RecordBatch::try_new(
        input.clone(),
        vec![
            Arc::new(StringArray::from(vec![
                Some("GET"),
                Some(big.as_str()),
                None,
            ])),
            Arc::new(StringArray::from(vec![
                Some("ab"),
                Some(big.as_str()),
                Some("c"),
            ])),
        ],
    )
    .unwrap();
    for (call, expect) in [
        ("replace(s, 'x', t)", "GET"),
        ("regexp_replace(s, '', t, 'g')", "abGabEabTab"),
        ("regexp_replace(s, '(.)', '$1$1', 'g')", "GGEETT"),
        ("replace(s, 'E', 'xx')", "GxxT"),
    ] {
        let s = select(&input, call).unwrap();
        let a = s.apply(b.clone());
        let out = a.batch.unwrap();
        assert_eq!(strings(&out, "r")[0].as_deref(), Some(expect), "{call}");
        if call.contains(", t") {
            assert_eq!(a.failed.len(), 1, "{call}: {:?}", a.failed);
            assert_eq!(a.failed[0].0, 1);
            assert!(
                a.failed[0].1.contains("a replacement could build"),
                "{:?}",
                a.failed
            );
            assert_eq!(out.num_rows(), 2);
        } else {
            assert!(a.failed.is_empty(), "{call}: {:?}", a.failed);
        }
    }
}

/// What stage functions grow a chunk's values by is bounded per chunk, not per evaluation: a
/// batch over the bound was halved, each half passed, and the halves were put together again
/// (1,000 records asking for 16 MiB each grew a 1 MiB chunk to 16 GiB, past what one string
/// column holds, and `concat_batches` panicked). Now the records past the bound are dead
/// letters; a call that does not grow its text counts nothing.
#[test]
fn what_stage_functions_grow_is_bounded_per_chunk() {
    let input = Arc::new(Schema::new(vec![Field::new("s", DataType::Utf8, true)]));
    // 24 records of 64 KiB, each repeated to 16 MiB (the most one value may be): 384 MiB.
    let text = "x".repeat(64 << 10);
    let b = RecordBatch::try_new(
        input.clone(),
        vec![Arc::new(StringArray::from(vec![text.as_str(); 24]))],
    )
    .unwrap();
    let planned = |sql: &str| select(&input, sql).unwrap();
    let s = planned("repeat(s, 256)");
    set_account(Account::default());
    let a = s.apply(b.clone());
    assert_eq!(a.batch.map(|b| b.num_rows()), Some(16));
    assert_eq!(account().grown, 16 * ((16 << 20) - (64 << 10)));
    let failed: Vec<usize> = a.failed.iter().map(|f| f.0).collect();
    assert_eq!(failed, (16..24).collect::<Vec<_>>());
    assert!(
        a.failed[0].1.contains("may grow a chunk by at most"),
        "{:?}",
        a.failed[0]
    );
    // The chunk's account is spent: a second batch of it grows nothing more.
    let again = s.apply(b.slice(0, 1));
    assert_eq!((again.batch.is_none(), again.failed.len()), (true, 1));
    // Redacting (a replacement no longer than what it replaces) grows nothing, however large
    // its worst case: 24 × 64 KiB rewritten in one chunk.
    set_account(Account::default());
    let a = planned("regexp_replace(s, 'x', 'y', 'g')").apply(b);
    assert_eq!(
        (a.batch.map(|b| b.num_rows()), a.failed.len()),
        (Some(24), 0)
    );
    assert_eq!(account().grown, 0);
}

/// A replacement's growth is known only once it is built: counted then, and given back when
/// its evaluation fails. 40 texts of 32 KiB, each `x` replaced by 255 bytes (a worst case of
/// 16,744,703 bytes, within the 16 MiB a value may ask for): each grows by 8,323,072 bytes,
/// so 32 fit the chunk's 256 MiB.
#[test]
fn a_replacement_past_the_chunks_growth_fails_after_it_is_built() {
    let input = Arc::new(Schema::new(vec![Field::new("s", DataType::Utf8, true)]));
    let text = "x".repeat(32 << 10);
    let b = RecordBatch::try_new(
        input.clone(),
        vec![Arc::new(StringArray::from(vec![text.as_str(); 40]))],
    )
    .unwrap();
    let to = "y".repeat(255);
    let s = select(&input, &format!("replace(s, 'x', '{to}')")).unwrap();
    set_account(Account::default());
    let a = s.apply(b);
    assert_eq!(a.batch.map(|b| b.num_rows()), Some(32));
    assert_eq!(account().grown, 32 * 8_323_072);
    let failed: Vec<usize> = a.failed.iter().map(|f| f.0).collect();
    assert_eq!(failed, (32..40).collect::<Vec<_>>());
    assert!(
        a.failed[0].1.contains("may grow a chunk by at most"),
        "{:?}",
        a.failed[0]
    );
}

/// Nested guarded calls count each call's own growth once: 16 texts of 1 KiB repeated 128
/// times, twice, grow by 16 × 16,776,192 bytes, within the chunk's 256 MiB. The inner call
/// was evaluated again for each guard that measured it, and counted two or three times.
#[test]
fn nested_guarded_calls_count_their_growth_once() {
    let input = Arc::new(Schema::new(vec![Field::new("s", DataType::Utf8, true)]));
    let text = "x".repeat(1 << 10);
    let b = RecordBatch::try_new(
        input.clone(),
        vec![Arc::new(StringArray::from(vec![text.as_str(); 16]))],
    )
    .unwrap();
    let s = select(&input, "repeat(repeat(s, 128), 128)").unwrap();
    set_account(Account::default());
    let a = s.apply(b);
    assert!(a.failed.is_empty(), "{:?}", a.failed);
    assert_eq!(a.batch.map(|b| b.num_rows()), Some(16));
    assert_eq!(account().grown, 16 * 16_776_192);
}

/// What constants alone would build is refused at planning: a folded constant past 64 KiB
/// (copied into every row of a batch: `repeat('ab', 500000)` made 8 GB a batch of 8,192 rows)
/// and a guarded call of constants past the guard's bounds (folding it built 2 GB at
/// planning). Small constants plan as before.
#[test]
fn constants_past_what_a_stage_may_build_are_refused_at_planning() {
    let input = Arc::new(Schema::new(vec![Field::new("s", DataType::Utf8, true)]));
    let planned = |sql: &str| select(&input, sql).map(|_| ()).map_err(|e| e.to_string());
    let e = planned("repeat('ab', 500000)").unwrap_err();
    assert!(e.contains("a constant of 1000000 bytes"), "{e}");
    let e = planned("concat(s, repeat('ab', 1000000000))").unwrap_err();
    assert!(
        e.contains("a value of 2000000000 bytes was asked for"),
        "{e}"
    );
    planned("lpad(s, 10, repeat('0', 3))").unwrap();
    planned("concat(s, repeat('-', 1000))").unwrap();
}

/// A negative count from the data pads to nothing, as a constant one does; DataFusion's pads
/// sized their buffer from it as an unsigned number and panicked (the record became a dead
/// letter saying "the function panicked: capacity overflow").
#[test]
fn a_negative_count_from_the_data_pads_nothing() {
    let input = Arc::new(Schema::new(vec![
        Field::new("s", DataType::Utf8, true),
        Field::new("n", DataType::Int64, true),
    ]));
    let b = RecordBatch::try_new(
        input.clone(),
        vec![
            Arc::new(StringArray::from(vec!["ab", "cd"])),
            Arc::new(arrow::array::Int64Array::from(vec![-1, 4])),
        ],
    )
    .unwrap();
    for (sql, want) in [
        ("lpad(s, n)", "  cd"),
        ("rpad(s, n, '*')", "cd**"),
        ("repeat(s, n)", "cdcdcdcd"),
    ] {
        let s = select(&input, sql).unwrap();
        let a = s.apply(b.clone());
        assert!(a.failed.is_empty(), "{sql}: {:?}", a.failed);
        let out = a.batch.unwrap();
        assert_eq!(
            strings(&out, "r"),
            [Some(String::new()), Some(want.to_string())],
            "{sql}"
        );
    }
}

/// Redacting with `replace` is held to what it can build: at most one replacement per
/// occurrence of the text it finds. A 1 MB record whose `password=` becomes `password=***`
/// was a dead letter (its worst case counted as if every byte matched: 25 MB).
#[test]
fn a_replace_is_held_to_its_own_worst_case() {
    let input = Arc::new(Schema::new(vec![Field::new("s", DataType::Utf8, true)]));
    let text = format!("password=x {}", "y".repeat(1 << 20));
    let b = RecordBatch::try_new(
        input.clone(),
        vec![Arc::new(StringArray::from(vec![text.as_str()]))],
    )
    .unwrap();
    let s = select(&input, "replace(s, 'password=', 'password=***')").unwrap();
    let a = s.apply(b);
    assert!(a.failed.is_empty(), "{:?}", a.failed);
    assert!(strings(&a.batch.unwrap(), "r")[0]
        .as_deref()
        .unwrap()
        .starts_with("password=***x "));
}

/// `levenshtein` and `strpos` work through a table or a search of `len(a) × len(b)` steps: a
/// record of two long texts held a decoding thread for minutes (and every partition behind
/// it). Past `MAX_STEPS` that record fails, its neighbours go on; a chunk's steps are bounded.
#[test]
fn functions_whose_work_is_a_product_of_lengths_fail_the_record_asking_too_much() {
    let input = Arc::new(Schema::new(vec![
        Field::new("a", DataType::Utf8, true),
        Field::new("b", DataType::Utf8, true),
    ]));
    // 2^14 × 2^13 = 2^27 steps: past the bound.
    let (x, y) = (
        "x".repeat(1 << 14),
        format!("{}b", "x".repeat((1 << 13) - 1)),
    );
    let b = RecordBatch::try_new(
        input.clone(),
        vec![
            Arc::new(StringArray::from(vec![
                Some("kitten"),
                Some(x.as_str()),
                None,
            ])),
            Arc::new(StringArray::from(vec![
                Some("sitting"),
                Some(y.as_str()),
                Some("c"),
            ])),
        ],
    )
    .unwrap();
    for (call, expect) in [
        ("levenshtein(a, b)", "3"),
        ("strpos(a, b)", "0"),
        ("instr(a, b)", "0"),
        ("position(b IN a)", "0"),
        ("btrim(a, b)", "kitte"),
        ("regexp_like(a, b)", "false"),
        ("regexp_replace(a, b, 'z')", "kitten"),
        ("a ~ b", "false"),
        ("a ~* b", "false"),
        ("a !~ b", "true"),
        ("a LIKE b", "false"),
        ("a NOT ILIKE b", "true"),
        ("a ~~ b", "false"),
        ("a !~~* b", "true"),
        ("a SIMILAR TO b", "false"),
    ] {
        set_account(Account::default());
        let s = select(&input, call).unwrap();
        let applied = s.apply(b.clone());
        let out = applied.batch.unwrap();
        assert_eq!(strings(&out, "r")[0].as_deref(), Some(expect), "{call}");
        assert_eq!(out.num_rows(), 2, "{call}");
        assert_eq!(applied.failed.len(), 1, "{call}: {:?}", applied.failed);
        assert_eq!(applied.failed[0].0, 1, "{call}");
        assert!(
            applied.failed[0].1.contains("steps"),
            "{call}: {:?}",
            applied.failed
        );
    }
    // A constant substring or pattern is searched for in linear time: not counted.
    for call in [
        "strpos(a, 'xb')",
        "regexp_like(a, 'x+b')",
        "regexp_replace(a, 'x+b', 'z')",
        "a ~ 'x+b'",
        "a LIKE '%xb'",
    ] {
        set_account(Account::default());
        let applied = select(&input, call).unwrap().apply(b.clone());
        assert!(applied.failed.is_empty(), "{call}: {:?}", applied.failed);
        assert_eq!(account().steps, 0, "{call}");
    }
    // Within the bound per value, a chunk's steps add up to its bound.
    let small = "x".repeat(1 << 12);
    let rows = 300;
    let b = RecordBatch::try_new(
        input.clone(),
        vec![
            Arc::new(StringArray::from(vec![small.as_str(); rows])),
            Arc::new(StringArray::from(vec![small.as_str(); rows])),
        ],
    )
    .unwrap();
    set_account(Account::default());
    let s = select(&input, "strpos(a, b)").unwrap();
    let applied = s.apply(b);
    // 2^24 steps a row: 256 rows fit the chunk's 2^32.
    assert_eq!(applied.batch.map_or(0, |b| b.num_rows()), 256);
    assert_eq!(applied.failed.len(), rows - 256);
    // An evaluation thrown away gives back what it grew values by and its steps (its rows are
    // tried again), not the work it did.
    set_account(Account {
        grown: 5,
        steps: 7,
        work: 9,
    });
    give_back(Account::default());
    assert_eq!(
        account(),
        Account {
            grown: 0,
            steps: 0,
            work: 9
        }
    );
    // A call of constants past the bound is refused at planning.
    let e = select(&input, &format!("levenshtein('{x}', '{y}')")).unwrap_err();
    assert!(e.to_string().contains("steps"), "{e}");
}

/// A chunk whose good rows take nearly the chunk's steps, beside one row that fails another
/// function: the failed evaluation is tried again in halves, its steps given back, so every
/// good row is kept. (Counted again at each halving, the steps ran past the bound and the
/// good rows became dead letters.)
#[test]
fn steps_of_an_evaluation_another_row_failed_are_given_back() {
    let input = Arc::new(Schema::new(vec![
        Field::new("a", DataType::Utf8, true),
        Field::new("b", DataType::Utf8, true),
        Field::new("c", DataType::Utf8, true),
    ]));
    let rows = 1000;
    // 2^11 × 2^11 = 2^22 steps a row: 1,000 rows take 98 % of the chunk's 2^32.
    let (a, b) = ("x".repeat(1 << 11), "y".repeat(1 << 11));
    let c: Vec<&str> = (0..rows)
        .map(|i| if i == 500 { "bad" } else { "1" })
        .collect();
    let batch = RecordBatch::try_new(
        input.clone(),
        vec![
            Arc::new(StringArray::from(vec![a.as_str(); rows])),
            Arc::new(StringArray::from(vec![b.as_str(); rows])),
            Arc::new(StringArray::from(c)),
        ],
    )
    .unwrap();
    let s = Stages::plan(
        &[stage(
            "select = [\"strpos(a, b) AS r\", \"CAST(c AS INT) AS n\"]",
        )],
        input,
        OnError::DeadLetter,
    )
    .unwrap();
    set_account(Account::default());
    let applied = s.apply(batch);
    assert_eq!(
        applied.failed.len(),
        1,
        "{:?}",
        &applied.failed[..3.min(applied.failed.len())]
    );
    assert_eq!(applied.failed[0].0, 500);
    assert_eq!(applied.batch.unwrap().num_rows(), rows - 1);
    let spent = account();
    assert_eq!(spent.steps, (rows as u64 - 1) << 22);
    assert!(spent.work > spent.steps && spent.work <= MAX_CHUNK_WORK);
}

/// A pattern operator with its pattern from the data is evaluated as DataFusion evaluates it
/// with the same pattern as a constant (which is left as it is): every form, on escapes,
/// case, anchors, nulls and a pattern that does not compile; its result is null only where
/// an argument may be.
#[test]
fn pattern_operators_from_the_data_answer_as_with_a_constant_pattern() {
    let pairs: [(Option<&str>, Option<&str>); 9] = [
        (Some("kitten"), Some("k%")),
        (Some("Kitten"), Some("k_tt%")),
        (Some("a%b"), Some("a\\%b")),
        (Some("a_b"), Some("a\\_%")),
        (Some("x.y"), Some("^x\\.y$")),
        (Some("XY"), Some("(?i)xy|z")),
        (Some("abc"), Some("a.c")),
        (None, Some("a%")),
        (Some("abc"), None),
    ];
    let ops = [
        "LIKE",
        "ILIKE",
        "NOT LIKE",
        "NOT ILIKE",
        "~",
        "~*",
        "!~",
        "!~*",
        "SIMILAR TO",
        "NOT SIMILAR TO",
        "~~",
        "~~*",
        "!~~",
        "!~~*",
    ];
    // Text columns of each type the decoder may give, the pattern's of another.
    let types = [
        (DataType::Utf8, DataType::Utf8),
        (DataType::LargeUtf8, DataType::Utf8),
        (DataType::Utf8View, DataType::LargeUtf8),
    ];
    for ((a, b), (ta, tb)) in pairs
        .into_iter()
        .flat_map(|p| types.iter().map(move |t| (p, t.clone())))
    {
        let input = Arc::new(Schema::new(vec![
            Field::new("a", ta.clone(), true),
            Field::new("b", tb.clone(), true),
        ]));
        let column = |v: Option<&str>, t: &DataType| {
            let text: arrow::array::ArrayRef = Arc::new(StringArray::from(vec![v]));
            arrow::compute::cast(&text, t).unwrap()
        };
        let batch =
            RecordBatch::try_new(input.clone(), vec![column(a, &ta), column(b, &tb)]).unwrap();
        let constant = match b {
            Some(p) => format!("'{}'", p.replace('\'', "''")),
            None => "CAST(NULL AS VARCHAR)".to_string(),
        };
        for op in ops {
            let answer = |expr: &str| {
                set_account(Account::default());
                // The stage's text is a TOML string: its backslashes are escaped there.
                let toml = expr.replace('\\', "\\\\");
                let applied = select(&input, &toml).unwrap().apply(batch.clone());
                assert!(applied.failed.is_empty(), "{expr}: {:?}", applied.failed);
                strings(&applied.batch.unwrap(), "r")
            };
            let ours = answer(&format!("a {op} b"));
            assert!(
                account().steps > 0 || a.is_none() || b.is_none(),
                "{op}: not counted"
            );
            if a.is_none() || b.is_none() {
                assert_eq!(ours, vec![None], "{a:?} {op} {b:?}");
                continue;
            }
            assert_eq!(
                ours,
                answer(&format!("a {op} {constant}")),
                "{a:?} {op} {b:?} ({ta} {tb})"
            );
        }
    }
    // Not null where neither argument may be.
    let input = Arc::new(Schema::new(vec![
        Field::new("a", DataType::Utf8, false),
        Field::new("b", DataType::Utf8, false),
    ]));
    for op in ops {
        let s = select(&input, &format!("a {op} b")).unwrap();
        let field = s.output_schema().field_with_name("r").unwrap().clone();
        assert!(!field.is_nullable(), "{op}: {field:?}");
    }
}

/// A pattern's work is its states, not its length: `(?:a{1000}){100}` is 16 bytes and
/// compiles to about 100,000 states, so one record of it and 4 KiB of text passed a count of
/// bytes and took 400 million steps. Flags from the data are compiled into a constant
/// pattern (`(?flags)pattern`), so they make it a pattern from the data.
#[test]
fn a_pattern_is_counted_by_the_states_it_compiles_to() {
    let input = Arc::new(Schema::new(vec![
        Field::new("a", DataType::Utf8, true),
        Field::new("b", DataType::Utf8, true),
    ]));
    let text = format!("{}b", "a".repeat(4096));
    let b = RecordBatch::try_new(
        input.clone(),
        vec![
            Arc::new(StringArray::from(vec![Some("abc"), Some(text.as_str())])),
            Arc::new(StringArray::from(vec![Some("b"), Some("(?:a{1000}){100}")])),
        ],
    )
    .unwrap();
    let flags = RecordBatch::try_new(
        input.clone(),
        vec![
            b.column(0).clone(),
            Arc::new(StringArray::from(vec![
                Some("i"),
                Some("i)(?:a{1000}){100}(?:"),
            ])),
        ],
    )
    .unwrap();
    for (call, batch) in [
        ("regexp_like(a, b)", &b),
        ("a ~ b", &b),
        ("regexp_count(a, b)", &b),
        ("regexp_replace(a, b, 'z')", &b),
        ("regexp_replace(a, b, 'z', 'g')", &b),
        ("regexp_like(a, 'x', b)", &flags),
        ("regexp_replace(a, 'x', 'z', b)", &flags),
    ] {
        set_account(Account::default());
        let applied = select(&input, call).unwrap().apply(batch.clone());
        assert_eq!(applied.batch.unwrap().num_rows(), 1, "{call}");
        assert_eq!(applied.failed.len(), 1, "{call}: {:?}", applied.failed);
        assert!(
            applied.failed[0].1.contains("steps"),
            "{call}: {:?}",
            applied.failed
        );
    }
    // A short pattern of few states counts about its length.
    let states = crate::stage::patterns::regex_states("abc", None).unwrap();
    assert!((3..=16).contains(&states), "{states}");
}

/// `to_char` with a format from the data is refused at planning: one 64 MiB record of `%+`
/// would make a value of about 1 GiB, outside every bound (the guard does not cover it).
/// A constant format plans as before.
#[test]
fn to_char_with_a_format_from_the_data_is_refused() {
    let input = Arc::new(Schema::new(vec![
        Field::new(
            "ts",
            DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        Field::new("f", DataType::Utf8, true),
    ]));
    let planned = |sql: &str| select(&input, sql).map(|_| ()).map_err(|e| e.to_string());
    for sql in ["to_char(ts, f)", "date_format(ts, concat(f, '%Y'))"] {
        let e = planned(sql).unwrap_err();
        assert!(e.contains("must not be taken from the data"), "{sql}: {e}");
    }
    planned("to_char(ts, '%Y-%m-%d')").unwrap();
    planned("to_char(ts, concat('%Y', '-%m'))").unwrap();
}
