//! Timestamps a stage computes, checked for what DataFusion does not refuse: a float past the
//! range of nanoseconds is saturated (`to_timestamp(1e300)` is `i64::MAX` ns, year 2262,
//! without a word), and such a value fails its row. Values outside years 1 to 9999 in other
//! units are failed by the range check after each stage (`decode::first_out_of_range`).
//!
//! A stage's types are kept as DataFusion gives them: a job's written types are recorded, and
//! changing them (seconds to milliseconds, nanoseconds to microseconds) would make every job
//! that ran before refuse to start (`evolution.rs`). OPERATIONS says how to write seconds and
//! nanoseconds as a reader-friendly timestamp (`arrow_cast`).

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, TimeUnit, TimestampNanosecondType};

/// The first value of `col` (named `name`) that DataFusion saturated, described.
pub fn saturated(col: &dyn Array, name: &str) -> Option<String> {
    if !matches!(
        col.data_type(),
        DataType::Timestamp(TimeUnit::Nanosecond, _)
    ) {
        return None;
    }
    col.as_primitive::<TimestampNanosecondType>()
        .iter()
        .flatten()
        .find(|v| *v == i64::MAX || *v == i64::MIN)
        .map(|v| {
            format!(
                "field `{name}`: timestamp value {v} (ns) is at the end of its range (a value \
                 past it, saturated)"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::TimestampNanosecondArray;

    #[test]
    fn a_saturated_nanosecond_value_is_named() {
        let ok = TimestampNanosecondArray::from(vec![Some(-500), None, Some(i64::MAX - 1)]);
        assert_eq!(saturated(&ok, "t"), None);
        let sat = TimestampNanosecondArray::from(vec![Some(1), Some(i64::MIN)]);
        assert!(saturated(&sat, "t").unwrap().contains("saturated"));
    }
}
