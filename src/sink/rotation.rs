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

/// Min and max of a timestamp or date column, in microseconds.
pub(super) fn time_range(col: &dyn Array) -> Option<(i64, i64)> {
    let scale: i64 = match col.data_type() {
        DataType::Timestamp(TimeUnit::Second, _) => 1_000_000,
        DataType::Timestamp(TimeUnit::Millisecond, _) => 1_000,
        DataType::Timestamp(TimeUnit::Microsecond, _) => 1,
        DataType::Date32 => 86_400_000_000,
        _ => return None,
    };
    let ints = arrow::compute::cast(col, &DataType::Int64).ok()?;
    let ints = ints.as_primitive::<arrow::datatypes::Int64Type>();
    let lo = arrow::compute::min(ints)?;
    let hi = arrow::compute::max(ints)?;
    Some((lo.saturating_mul(scale), hi.saturating_mul(scale)))
}
