//! Values an output format cannot hold as they are, found while their records are known, so
//! each is its record's dead letter rather than a file (and with it the whole batch, at every
//! retry) that fails to encode.
//!
//! ORC: a timestamp in the second before 1970 with a fraction of a millisecond or more
//! (`1969-12-31T23:59:59.5Z`) has no encoding that readers decode back to it
//! (ORC-763: seconds and nanoseconds are stored apart, and readers move a negative second with
//! nanoseconds past 999,999 by one); the ORC writer refuses the batch.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{
    DataType, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
};

/// Rows of `batch` (top-level timestamp columns) an ORC file cannot hold, each with its
/// reason, in row order; a row appears once.
pub fn orc_refusals(batch: &RecordBatch) -> Vec<(usize, String)> {
    let mut refused: Vec<(usize, String)> = Vec::new();
    for (field, col) in batch.schema().fields().iter().zip(batch.columns()) {
        let (values, per_second, nanos_per_unit): (&[i64], i64, i64) = match field.data_type() {
            DataType::Timestamp(TimeUnit::Millisecond, _) => (
                col.as_primitive::<TimestampMillisecondType>().values(),
                1_000,
                1_000_000,
            ),
            DataType::Timestamp(TimeUnit::Microsecond, _) => (
                col.as_primitive::<TimestampMicrosecondType>().values(),
                1_000_000,
                1_000,
            ),
            DataType::Timestamp(TimeUnit::Nanosecond, _) => (
                col.as_primitive::<TimestampNanosecondType>().values(),
                1_000_000_000,
                1,
            ),
            // Whole seconds have no fraction.
            _ => continue,
        };
        for (row, &v) in values.iter().enumerate() {
            if col.is_null(row) {
                continue;
            }
            let seconds = v.div_euclid(per_second);
            let nanos = v.rem_euclid(per_second) * nanos_per_unit;
            if seconds == -1 && nanos > 999_999 {
                refused.push((
                    row,
                    format!(
                        "field `{}`: timestamp value {v} is in the second before 1970 with a \
                         fraction, which ORC cannot hold (ORC-763)",
                        field.name()
                    ),
                ));
            }
        }
    }
    refused.sort_by_key(|(row, _)| *row);
    refused.dedup_by_key(|(row, _)| *row);
    refused
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::TimestampMicrosecondArray;
    use std::sync::Arc;

    #[test]
    fn the_second_before_1970_with_a_fraction_is_refused_for_orc() {
        let col = TimestampMicrosecondArray::from(vec![
            Some(-500_000),
            Some(-1_000_000),
            Some(-999_001),
            Some(-999_000),
            None,
            Some(0),
            Some(-1_500_000),
        ])
        .with_timezone("UTC");
        let batch = RecordBatch::try_from_iter([("t", Arc::new(col) as _)]).unwrap();
        let rows: Vec<usize> = orc_refusals(&batch).into_iter().map(|(r, _)| r).collect();
        // -0.999001 s is -1 s + 999,000 ns: held; -0.999 s is -1 s + 1,000,000 ns: not.
        assert_eq!(rows, [0, 3]);
    }
}
