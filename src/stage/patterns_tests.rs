//! Patterns from the data, measured as DataFusion compiles them: the distinct patterns of
//! one call held to what it may compile, and case-insensitive operators measured with their
//! case folding.

use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};

use super::super::guard::tests::select;
use super::super::guard::{account, set_account, Account};

/// Distinct patterns from the data that together compile past what one call may hold
/// (`\w{120}` and a number: about 2 MiB of NFA each, with empty texts, whose steps count
/// nothing) fail the call, and its rows are tried in smaller groups: every row gets its
/// answer, none fails. Before, DataFusion compiled and kept all of them for the batch (300
/// of them took 2 GiB).
#[test]
fn distinct_patterns_of_a_batch_are_held_to_what_one_call_may_compile() {
    let input = Arc::new(Schema::new(vec![
        Field::new("a", DataType::Utf8, true),
        Field::new("b", DataType::Utf8, true),
    ]));
    let n = 12;
    let patterns: Vec<String> = (0..n).map(|i| format!(r"\w{{120}}{i}")).collect();
    let texts: Vec<&str> = (0..n).map(|i| if i % 2 == 0 { "" } else { "x" }).collect();
    let b = RecordBatch::try_new(
        input.clone(),
        vec![
            Arc::new(StringArray::from(texts)),
            Arc::new(StringArray::from(
                patterns.iter().map(String::as_str).collect::<Vec<_>>(),
            )),
        ],
    )
    .unwrap();
    let weights = crate::stage::patterns::regex_weights(
        &datafusion_expr::ColumnarValue::Array(b.column(1).clone()),
        None,
        false,
        n,
    );
    let e = weights.unwrap_err().to_string();
    assert!(
        e.contains("patterns from the data may compile to at most"),
        "{e}"
    );
    for call in ["regexp_like(a, b)", "a ~ b"] {
        set_account(Account::default());
        let applied = select(&input, call).unwrap().apply(b.clone());
        assert!(applied.failed.is_empty(), "{call}: {:?}", applied.failed);
        let out = applied.batch.unwrap();
        assert_eq!(out.num_rows(), n, "{call}");
        let r = out.column(out.num_columns() - 1).as_boolean();
        assert!((0..n).all(|i| !r.value(i)), "{call}");
    }
}

/// `~*` and `!~*` from the data are measured as DataFusion compiles them, with the flag `i`:
/// case folding makes `[a-z]{40}` compile to several times the states (`k` and `s` match
/// the Kelvin sign and the long s, three and two bytes). Before, they were measured without
/// it, under what their matching walks.
#[test]
fn case_insensitive_patterns_from_the_data_are_measured_with_their_folding() {
    let input = Arc::new(Schema::new(vec![
        Field::new("a", DataType::Utf8, true),
        Field::new("b", DataType::Utf8, true),
    ]));
    let (text, pattern) = ("x".repeat(100), "[a-z]{40}");
    let b = RecordBatch::try_new(
        input.clone(),
        vec![
            Arc::new(StringArray::from(vec![text.as_str()])),
            Arc::new(StringArray::from(vec![pattern])),
        ],
    )
    .unwrap();
    let states = |flags| crate::stage::patterns::regex_states(pattern, flags).unwrap();
    let (plain, folded) = (states(None), states(Some("i")));
    assert!(folded > plain * 2, "{plain} {folded}");
    for (call, want) in [("a ~ b", plain), ("a ~* b", folded), ("a !~* b", folded)] {
        set_account(Account::default());
        let applied = select(&input, call).unwrap().apply(b.clone());
        assert!(applied.failed.is_empty(), "{call}: {:?}", applied.failed);
        let steps = account().steps;
        assert_eq!(steps, text.len() as u64 * want, "{call}");
    }
}
