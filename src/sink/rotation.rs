//! When a source partition's files roll: the limits (`Rotation`) and the record-time span of
//! a batch that `max_span` is measured by.

use std::time::Duration;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, TimeUnit};

/// When files roll.
#[derive(Debug, Clone)]
pub struct Rotation {
    pub max_rows: u64,
    pub max_bytes: u64,
    pub max_span: Option<Duration>,
    pub idle: Duration,
    /// Open files of a partition commit this long after its first record, however steadily
    /// records arrive.
    pub max_age: Duration,
    /// Column whose record time bounds `max_span`.
    pub time_column: Option<usize>,
}

/// Min and max of a timestamp or date column, in microseconds (nanoseconds, as a stage's
/// `to_timestamp` makes them, rounded down).
pub(super) fn time_range(col: &dyn Array) -> Option<(i64, i64)> {
    let (scale, div): (i64, i64) = match col.data_type() {
        DataType::Timestamp(TimeUnit::Second, _) => (1_000_000, 1),
        DataType::Timestamp(TimeUnit::Millisecond, _) => (1_000, 1),
        DataType::Timestamp(TimeUnit::Microsecond, _) => (1, 1),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => (1, 1_000),
        DataType::Date32 => (86_400_000_000, 1),
        _ => return None,
    };
    let ints = arrow::compute::cast(col, &DataType::Int64).ok()?;
    let ints = ints.as_primitive::<arrow::datatypes::Int64Type>();
    let lo = arrow::compute::min(ints)?;
    let hi = arrow::compute::max(ints)?;
    let us = |v: i64| v.div_euclid(div).saturating_mul(scale);
    Some((us(lo), us(hi)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{
        Date32Array, TimestampMillisecondArray, TimestampNanosecondArray, TimestampSecondArray,
    };

    /// Every unit a rotation column may have is read, nanoseconds too (a stage's
    /// `to_timestamp` makes them: `max_span` did nothing on such a column).
    #[test]
    fn every_timestamp_unit_gives_its_range_in_microseconds() {
        let s = TimestampSecondArray::from(vec![2, 1]);
        assert_eq!(time_range(&s), Some((1_000_000, 2_000_000)));
        let ms = TimestampMillisecondArray::from(vec![5, -3]);
        assert_eq!(time_range(&ms), Some((-3_000, 5_000)));
        let ns = TimestampNanosecondArray::from(vec![1_999, -1]);
        assert_eq!(time_range(&ns), Some((-1, 1)));
        let d = Date32Array::from(vec![1]);
        assert_eq!(time_range(&d), Some((86_400_000_000, 86_400_000_000)));
    }
}
