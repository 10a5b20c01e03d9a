//! The columns the fast path fills, and the arrays they finish as: the room reserved for
//! records handed back given back, timestamps labelled with their zone.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, BooleanBufferBuilder, Date32Array, Float32Array, Float64Array,
    Int32Array, Int64Array, PrimitiveArray, StringArray,
};
use arrow::buffer::{NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{
    DataType, Field, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType,
};

use super::Kind;

/// A column being filled.
pub(super) enum Column {
    Utf8 { offsets: Vec<i32>, bytes: Vec<u8> },
    I32(Vec<i32>),
    I64(Vec<i64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    Bool(BooleanBufferBuilder),
}

impl Column {
    /// The finished column as an array of `field`'s type, with nulls `n`; a string column
    /// records its bytes per row in `typical` (the next batch's reservation).
    pub(super) fn into_array(
        self,
        n: Option<NullBuffer>,
        kind: &Kind,
        field: &Field,
        typical: &mut Option<usize>,
    ) -> ArrayRef {
        // What the batch holds is what is counted against memory bounds: room reserved for
        // records that were handed back is given back.
        let mut column = self;
        match &mut column {
            Column::Utf8 { offsets, bytes } => {
                fit(offsets);
                fit(bytes);
            }
            Column::I32(v) => fit(v),
            Column::I64(v) => fit(v),
            Column::F32(v) => fit(v),
            Column::F64(v) => fit(v),
            Column::Bool(_) => {}
        }
        let array: ArrayRef = match column {
            Column::Utf8 { offsets, bytes } => {
                let rows = offsets.len() - 1;
                *typical = Some(bytes.len().div_ceil(rows.max(1)));

                // Offsets grow and every value is whole UTF-8 (checked when read).
                let offsets = OffsetBuffer::new(ScalarBuffer::from(offsets));
                Arc::new(StringArray::new(offsets, bytes.into(), n))
            }
            Column::I32(v) => match kind {
                Kind::Date32 => Arc::new(Date32Array::new(v.into(), n)),
                _ => Arc::new(Int32Array::new(v.into(), n)),
            },
            Column::I64(v) => match kind {
                Kind::Timestamp(unit, _) => timestamps(*unit, v, n, field.data_type()),
                _ => Arc::new(Int64Array::new(v.into(), n)),
            },
            Column::F32(v) => Arc::new(Float32Array::new(v.into(), n)),
            Column::F64(v) => Arc::new(Float64Array::new(v.into(), n)),
            Column::Bool(mut v) => Arc::new(BooleanArray::new(v.finish(), n)),
        };
        array
    }
}

/// Shrinks `v` when it holds more than an eighth (and 4 KiB) beyond its contents.
fn fit<T>(v: &mut Vec<T>) {
    if v.capacity() > v.len() + v.len() / 8 + 4096 / std::mem::size_of::<T>().max(1) {
        v.shrink_to_fit();
    }
}

fn timestamps(unit: TimeUnit, v: Vec<i64>, n: Option<NullBuffer>, ty: &DataType) -> ArrayRef {
    let tz = match ty {
        DataType::Timestamp(_, tz) => tz.clone(),
        _ => None,
    };
    match unit {
        TimeUnit::Second => {
            Arc::new(PrimitiveArray::<TimestampSecondType>::new(v.into(), n).with_timezone_opt(tz))
        }
        TimeUnit::Millisecond => Arc::new(
            PrimitiveArray::<TimestampMillisecondType>::new(v.into(), n).with_timezone_opt(tz),
        ),
        TimeUnit::Microsecond => Arc::new(
            PrimitiveArray::<TimestampMicrosecondType>::new(v.into(), n).with_timezone_opt(tz),
        ),
        TimeUnit::Nanosecond => Arc::new(
            PrimitiveArray::<TimestampNanosecondType>::new(v.into(), n).with_timezone_opt(tz),
        ),
    }
}
