//! Timestamps written in microseconds, for a Delta table: the table declares each one
//! `timestamp` (microseconds), whatever unit its column has, while Parquet holds a
//! `Timestamp(Second)` as a plain integer (no timestamp type at all) and a
//! `Timestamp(Nanosecond)` in a unit Spark refuses. A stage gives either (`now()`,
//! `to_timestamp_seconds`, an `arrow_cast`). Converted at any depth: seconds exactly (years 1
//! to 9999 are held to), nanoseconds cut to the microsecond (what the table declares).

use std::sync::Arc;

use std::borrow::Cow;

use arrow::array::{ArrayRef, AsArray, RecordBatch, TimestampMicrosecondArray};
use arrow::datatypes::{
    DataType, Field, FieldRef, Schema, SchemaRef, TimeUnit, TimestampNanosecondType,
};
use arrow::error::ArrowError;

/// `schema` with every timestamp in seconds or nanoseconds, at any depth, in microseconds;
/// None when it holds none. (The walk follows the schema's nesting, which the job's schema
/// or stage sets, not the records.)
pub fn micros_schema(schema: &Schema) -> Option<SchemaRef> {
    let fields: Vec<FieldRef> = schema.fields().iter().map(micros_field).collect();
    if fields.iter().zip(schema.fields()).all(|(a, b)| a == b) {
        return None;
    }
    Some(Arc::new(Schema::new_with_metadata(
        fields,
        schema.metadata().clone(),
    )))
}

fn micros_field(f: &FieldRef) -> FieldRef {
    match micros_type(f.data_type()) {
        Some(t) => Arc::new(Field::clone(f).with_data_type(t)),
        None => f.clone(),
    }
}

/// `t` converted, or None when nothing in it changes.
fn micros_type(t: &DataType) -> Option<DataType> {
    match t {
        DataType::Timestamp(TimeUnit::Second | TimeUnit::Nanosecond, tz) => {
            Some(DataType::Timestamp(TimeUnit::Microsecond, tz.clone()))
        }
        DataType::Struct(fields) => {
            let mapped: Vec<FieldRef> = fields.iter().map(micros_field).collect();
            (mapped.iter().zip(fields.iter()).any(|(a, b)| a != b))
                .then(|| DataType::Struct(mapped.into()))
        }
        DataType::List(f) => micros_type(f.data_type()).map(|_| DataType::List(micros_field(f))),
        DataType::LargeList(f) => {
            micros_type(f.data_type()).map(|_| DataType::LargeList(micros_field(f)))
        }
        DataType::FixedSizeList(f, n) => {
            micros_type(f.data_type()).map(|_| DataType::FixedSizeList(micros_field(f), *n))
        }
        DataType::Map(f, sorted) => {
            micros_type(f.data_type()).map(|_| DataType::Map(micros_field(f), *sorted))
        }
        DataType::Dictionary(k, v) => {
            micros_type(v).map(|v| DataType::Dictionary(k.clone(), Box::new(v)))
        }
        _ => None,
    }
}

/// `batch` in `to`'s types (its [`micros_schema`]): the columns that differ cast. A
/// top-level column of nanoseconds is cut down to the microsecond before it (as rotation and
/// partition paths read an instant, so a row stays in the folder its value names); nested
/// ones toward zero (arrow's cast: they name no folder).
pub fn to_micros(batch: &RecordBatch, to: &SchemaRef) -> Result<RecordBatch, ArrowError> {
    let columns = batch
        .columns()
        .iter()
        .zip(to.fields())
        .map(|(c, f)| {
            if c.data_type() == f.data_type() {
                return Ok(c.clone());
            }
            if let DataType::Timestamp(TimeUnit::Nanosecond, tz) = c.data_type() {
                let ns = c.as_primitive::<TimestampNanosecondType>();
                let us: TimestampMicrosecondArray = ns.unary(|v| v.div_euclid(1_000));
                return Ok(Arc::new(us.with_timezone_opt(tz.clone())) as ArrayRef);
            }
            arrow::compute::cast(c, f.data_type())
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(to.clone(), columns)
}

/// `batch` as a Delta table's files hold it ([`micros_schema`]), or as it is.
pub fn as_micros(batch: &RecordBatch) -> Result<Cow<'_, RecordBatch>, ArrowError> {
    Ok(match micros_schema(&batch.schema()) {
        Some(to) => Cow::Owned(to_micros(batch, &to)?),
        None => Cow::Borrowed(batch),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{
        Array, Int64Array, StructArray, TimestampNanosecondArray, TimestampSecondArray,
    };
    use arrow::datatypes::TimestampMicrosecondType;

    #[test]
    fn seconds_and_nanoseconds_become_microseconds_at_any_depth() {
        let utc: Option<Arc<str>> = Some("UTC".into());
        let secs = TimestampSecondArray::from(vec![Some(1_700_000_000), None])
            .with_timezone_opt(utc.clone());
        let nanos = TimestampNanosecondArray::from(vec![Some(1_700_000_000_123_456_789), Some(-1)])
            .with_timezone_opt(utc.clone());
        let inner = StructArray::from(vec![(
            Arc::new(Field::new("at", nanos.data_type().clone(), true)),
            Arc::new(nanos.clone()) as _,
        )]);
        let schema = Arc::new(Schema::new(vec![
            Field::new("s", secs.data_type().clone(), true),
            Field::new("n", inner.data_type().clone(), true),
            Field::new("i", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(secs),
                Arc::new(inner),
                Arc::new(Int64Array::from(vec![1, 2])),
            ],
        )
        .unwrap();
        let to = micros_schema(&schema).expect("converted");
        let out = to_micros(&batch, &to).unwrap();
        let s = out.column(0).as_primitive::<TimestampMicrosecondType>();
        assert_eq!(s.value(0), 1_700_000_000_000_000);
        assert!(s.is_null(1));
        assert_eq!(
            s.data_type(),
            &DataType::Timestamp(TimeUnit::Microsecond, utc.clone())
        );
        let n = out.column(1).as_struct().column(0);
        let n = n.as_primitive::<TimestampMicrosecondType>();
        assert_eq!(n.value(0), 1_700_000_000_123_456);
        assert_eq!(
            out.column(2)
                .as_primitive::<arrow::datatypes::Int64Type>()
                .value(1),
            2
        );

        // At the top level, nanoseconds before 1970 go down to their microsecond (the
        // folder their instant names); nested ones toward zero.
        let top = Arc::new(Schema::new(vec![Field::new(
            "n",
            nanos.data_type().clone(),
            true,
        )]));
        let b = RecordBatch::try_new(top.clone(), vec![Arc::new(nanos)]).unwrap();
        let out = to_micros(&b, &micros_schema(&top).unwrap()).unwrap();
        let n = out.column(0).as_primitive::<TimestampMicrosecondType>();
        assert_eq!((n.value(0), n.value(1)), (1_700_000_000_123_456, -1));
        // Nothing to convert: none.
        let plain = Schema::new(vec![Field::new(
            "t",
            DataType::Timestamp(TimeUnit::Millisecond, utc),
            true,
        )]);
        assert!(micros_schema(&plain).is_none());
    }
}
