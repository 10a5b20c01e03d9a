//! Dates and timestamps a stage computes, brought to the forms sluice writes: timestamps in
//! milliseconds or microseconds with a zone (UTC when the stage gave none, as every timestamp
//! sluice writes is flagged UTC), dates as days. DataFusion's functions give seconds
//! (`to_timestamp_seconds`, `from_unixtime`: written as plain int64, their meaning lost),
//! nanoseconds (`to_timestamp`, `CAST(... AS TIMESTAMP)`: refused by readers for values that
//! are not whole microseconds, and beyond what SCHEMA.md offers) and Date64.
//!
//! Conversions floor (`-0.5 µs` is `-1 µs`); a nanosecond value at either end of i64 is a
//! float DataFusion saturated (`to_timestamp(1e300)`) and fails its row, as does any value
//! outside years 1 to 9999 once converted.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Date32Array, PrimitiveArray};
use arrow::datatypes::{
    DataType, Date64Type, Field, Schema, SchemaRef, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType,
};

/// The type sluice writes for a column a stage gives as `ty` (`ty` itself when it is one).
pub fn written(ty: &DataType) -> DataType {
    let utc = |tz: &Option<Arc<str>>| Some(tz.clone().unwrap_or_else(|| "UTC".into()));
    match ty {
        DataType::Timestamp(TimeUnit::Second, tz) => {
            DataType::Timestamp(TimeUnit::Millisecond, utc(tz))
        }
        DataType::Timestamp(TimeUnit::Nanosecond, tz) => {
            DataType::Timestamp(TimeUnit::Microsecond, utc(tz))
        }
        DataType::Timestamp(unit, None) => DataType::Timestamp(*unit, utc(&None)),
        DataType::Date64 => DataType::Date32,
        other => other.clone(),
    }
}

/// `schema` with each top-level column's type as [`written`].
pub fn schema(schema: &SchemaRef) -> SchemaRef {
    if schema
        .fields()
        .iter()
        .all(|f| written(f.data_type()) == *f.data_type())
    {
        return schema.clone();
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_data_type(written(f.data_type())))
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// `col` (named `name`) converted to `to`, its [`written`] type; an error names the first value
/// that cannot be.
pub fn convert(col: &ArrayRef, name: &str, to: &DataType) -> Result<ArrayRef, String> {
    if col.data_type() == to {
        return Ok(col.clone());
    }
    let saturated = |v: i64| {
        format!("field `{name}`: timestamp value {v} (ns) is at the end of its range (a value past it, saturated)")
    };
    let out: ArrayRef = match (col.data_type(), to) {
        (DataType::Timestamp(TimeUnit::Second, _), DataType::Timestamp(_, tz)) => {
            let s = col.as_primitive::<TimestampSecondType>();
            if let Some(v) = s.iter().flatten().find(|v| v.checked_mul(1_000).is_none()) {
                return Err(format!(
                    "field `{name}`: timestamp value {v} (s) is out of range (years 1 to 9999)"
                ));
            }
            let ms: PrimitiveArray<TimestampMillisecondType> = s.unary(|v| v * 1_000);
            Arc::new(ms.with_timezone_opt(tz.clone()))
        }
        (DataType::Timestamp(TimeUnit::Nanosecond, _), DataType::Timestamp(_, tz)) => {
            let ns = col.as_primitive::<TimestampNanosecondType>();
            if let Some(v) = ns
                .iter()
                .flatten()
                .find(|v| *v == i64::MAX || *v == i64::MIN)
            {
                return Err(saturated(v));
            }
            let us: PrimitiveArray<TimestampMicrosecondType> = ns.unary(|v| v.div_euclid(1_000));
            Arc::new(us.with_timezone_opt(tz.clone()))
        }
        (DataType::Timestamp(TimeUnit::Millisecond, _), DataType::Timestamp(_, tz)) => Arc::new(
            col.as_primitive::<TimestampMillisecondType>()
                .clone()
                .with_timezone_opt(tz.clone()),
        ),
        (DataType::Timestamp(TimeUnit::Microsecond, _), DataType::Timestamp(_, tz)) => Arc::new(
            col.as_primitive::<TimestampMicrosecondType>()
                .clone()
                .with_timezone_opt(tz.clone()),
        ),
        (DataType::Date64, DataType::Date32) => {
            let ms = col.as_primitive::<Date64Type>();
            let days: Date32Array = ms.unary(|v| {
                i32::try_from(v.div_euclid(86_400_000)).unwrap_or(if v < 0 {
                    i32::MIN
                } else {
                    i32::MAX
                })
            });
            Arc::new(days)
        }
        (from, to) => unreachable!("no conversion of {from} to {to} is planned"),
    };
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Date64Array, TimestampNanosecondArray, TimestampSecondArray};

    #[test]
    fn stage_times_become_what_sluice_writes_flooring() {
        let ns: ArrayRef = Arc::new(TimestampNanosecondArray::from(vec![
            Some(-500),
            Some(1_999),
            None,
        ]));
        let to = written(ns.data_type());
        assert_eq!(
            to,
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        );
        let us = convert(&ns, "t", &to).unwrap();
        let us = us.as_primitive::<TimestampMicrosecondType>();
        assert_eq!((us.value(0), us.value(1), us.is_null(2)), (-1, 1, true));

        let s: ArrayRef =
            Arc::new(TimestampSecondArray::from(vec![1_714_521_600]).with_timezone("+02:00"));
        let to = written(s.data_type());
        assert_eq!(
            to,
            DataType::Timestamp(TimeUnit::Millisecond, Some("+02:00".into()))
        );
        let ms = convert(&s, "t", &to).unwrap();
        assert_eq!(
            ms.as_primitive::<TimestampMillisecondType>().value(0),
            1_714_521_600_000
        );

        let d: ArrayRef = Arc::new(Date64Array::from(vec![-1, 86_400_000]));
        let days = convert(&d, "d", &DataType::Date32).unwrap();
        assert_eq!(
            days.as_primitive::<arrow::datatypes::Date32Type>()
                .values()
                .to_vec(),
            [-1, 1]
        );

        let sat: ArrayRef = Arc::new(TimestampNanosecondArray::from(vec![i64::MAX]));
        assert!(convert(&sat, "t", &written(sat.data_type()))
            .unwrap_err()
            .contains("saturated"));
    }
}
