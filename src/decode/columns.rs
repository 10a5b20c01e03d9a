//! Column conversions after the first decoding pass: text → typed values (CSV, delimited text,
//! strftime timestamps, base64 binary), epoch numbers → timestamps, defaults for nulls.
//!
//! Each conversion works on a whole column and reports the rows it could not convert, so the
//! caller can send those rows to the dead letters and keep the rest.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryBuilder, Float64Array, Int64Array, PrimitiveArray, StringArray,
    TimestampMicrosecondArray, TimestampMillisecondArray,
};
use arrow::compute::kernels::cast::{cast_with_options, CastOptions};
use arrow::datatypes::{DataType, Float64Type, Int64Type, TimeUnit};
use arrow::util::display::FormatOptions;
use base64::Engine;
use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone};

use super::range::{check_date_range, check_timestamp_range};
use crate::schema::{BinaryEncoding, FieldSpec, FieldType, TimeFormat};

/// Rows a conversion rejected: (row index within the batch, reason).
pub type RowErrors = Vec<(usize, String)>;

/// Shortens a value for an error message.
pub(super) fn shown(v: &str) -> String {
    const MAX: usize = 60;
    if v.len() <= MAX {
        format!("`{v}`")
    } else {
        format!("`{}…`", super::dead::cut(v, MAX))
    }
}

/// Converts a column of input text to the type of `spec`. Empty strings are null for every
/// type but string and json. Rows that do not convert are null in the result and listed in
/// `errors`.
pub fn from_text(col: &StringArray, spec: &FieldSpec, errors: &mut RowErrors) -> ArrayRef {
    let name = &spec.name;
    match &spec.ty {
        FieldType::String => Arc::new(col.clone()),
        FieldType::Json => {
            for (i, v) in col.iter().enumerate() {
                if let Some(v) = v {
                    if serde_json::from_str::<serde::de::IgnoredAny>(v).is_err() {
                        errors.push((i, format!("field `{name}`: {} is not valid JSON", shown(v))));
                    }
                }
            }
            Arc::new(col.clone())
        }
        FieldType::Binary(enc) => {
            let mut b = BinaryBuilder::with_capacity(col.len(), col.values().len());
            for (i, v) in col.iter().enumerate() {
                match v {
                    None => b.append_null(),
                    Some(v) => match decode_binary(v, *enc) {
                        Some(bytes) => b.append_value(bytes),
                        None => {
                            let enc = match enc {
                                BinaryEncoding::Base64 => "base64",
                                BinaryEncoding::Hex => "hex",
                            };
                            errors.push((
                                i,
                                format!("field `{name}`: {} is not valid {enc}", shown(v)),
                            ));
                            b.append_null();
                        }
                    },
                }
            }
            Arc::new(b.finish())
        }
        FieldType::Timestamp {
            unit,
            timezone,
            format,
        } => match format {
            // Text timestamps read as any year arrow or chrono takes (year 0 among them):
            // checked like every other timestamp.
            TimeFormat::Rfc3339 => {
                let ts = cast_checked(col, spec, errors);
                check_timestamp_range(ts.as_ref(), name, errors);
                ts
            }
            TimeFormat::Pattern(p) => {
                let ts = parse_pattern(col, name, p, *unit, timezone, errors);
                check_timestamp_range(ts.as_ref(), name, errors);
                ts
            }
            TimeFormat::EpochSeconds | TimeFormat::EpochMillis | TimeFormat::EpochMicros => {
                let mut numbers = Vec::with_capacity(col.len());
                for (i, v) in col.iter().enumerate() {
                    numbers.push(match v.map(str::trim).filter(|v| !v.is_empty()) {
                        None => None,
                        Some(v) => match v.parse::<f64>() {
                            Ok(x) if x.is_finite() => Some(x),
                            _ => {
                                errors.push((
                                    i,
                                    format!("field `{name}`: {} is not an epoch number", shown(v)),
                                ));
                                None
                            }
                        },
                    });
                }
                let arr = Float64Array::from(numbers);
                epoch_to_timestamp(&arr, spec, errors)
            }
        },
        FieldType::Decimal { .. } | FieldType::Int32 | FieldType::Int64 => {
            super::leaves::from_text(col, spec, errors)
        }
        FieldType::Date => {
            let dates = cast_checked(col, spec, errors);
            check_date_range(dates.as_ref(), name, errors);
            dates
        }
        _ => cast_checked(col, spec, errors),
    }
}

/// Casts text with arrow's cast kernel and reports every non-empty value that became null.
fn cast_checked(col: &StringArray, spec: &FieldSpec, errors: &mut RowErrors) -> ArrayRef {
    let target = spec.arrow_type();
    let options = CastOptions {
        safe: true,
        format_options: FormatOptions::default(),
    };
    let cast = match cast_with_options(col, &target, &options) {
        Ok(a) => a,
        Err(e) => {
            // Not castable at all (should not happen for validated schemas): reject every row.
            for i in 0..col.len() {
                if col.is_valid(i) {
                    errors.push((i, format!("field `{}`: {e}", spec.name)));
                }
            }
            return arrow::array::new_null_array(&target, col.len());
        }
    };
    for i in 0..col.len() {
        if col.is_valid(i) && cast.is_null(i) {
            let v = col.value(i);
            if !v.trim().is_empty() {
                errors.push((
                    i,
                    format!(
                        "field `{}`: cannot read {} as {}",
                        spec.name,
                        shown(v),
                        spec.type_name()
                    ),
                ));
            }
        }
    }
    cast
}

fn decode_binary(v: &str, enc: BinaryEncoding) -> Option<Vec<u8>> {
    match enc {
        BinaryEncoding::Base64 => base64::engine::general_purpose::STANDARD
            .decode(v)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(v))
            .ok(),
        BinaryEncoding::Hex => {
            let b = v.as_bytes();
            if !b.len().is_multiple_of(2) {
                return None;
            }
            b.chunks_exact(2)
                .map(|p| {
                    let hi = (p[0] as char).to_digit(16)?;
                    let lo = (p[1] as char).to_digit(16)?;
                    Some((hi * 16 + lo) as u8)
                })
                .collect()
        }
    }
}

fn pattern_has_offset(p: &str) -> bool {
    p.contains("%z") || p.contains("%:z") || p.contains("%#z") || p.contains("%Z")
}

fn pattern_has_time(p: &str) -> bool {
    [
        "%H", "%I", "%M", "%S", "%T", "%R", "%r", "%X", "%c", "%s", "%+", "%k", "%l",
    ]
    .iter()
    .any(|t| p.contains(t))
}

fn parse_pattern(
    col: &StringArray,
    name: &str,
    pattern: &str,
    unit: TimeUnit,
    tz: &str,
    errors: &mut RowErrors,
) -> ArrayRef {
    let zone: arrow::array::timezone::Tz = tz.parse().expect("validated time zone");
    let with_offset = pattern_has_offset(pattern);
    let with_time = pattern_has_time(pattern);
    let mut out: Vec<Option<i64>> = Vec::with_capacity(col.len());
    for (i, v) in col.iter().enumerate() {
        let Some(v) = v.filter(|v| !v.trim().is_empty()) else {
            out.push(None);
            continue;
        };
        let parsed: Option<DateTime<chrono::Utc>> = if with_offset {
            DateTime::parse_from_str(v, pattern)
                .ok()
                .map(|d| d.with_timezone(&chrono::Utc))
        } else {
            let naive = if with_time {
                NaiveDateTime::parse_from_str(v, pattern).ok()
            } else {
                NaiveDate::parse_from_str(v, pattern)
                    .ok()
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
            };
            naive.and_then(|n| {
                zone.from_local_datetime(&n)
                    .earliest()
                    .map(|d| d.with_timezone(&chrono::Utc))
            })
        };
        let value = parsed.and_then(|d| match unit {
            TimeUnit::Millisecond => Some(d.timestamp_millis()),
            _ => d.timestamp_micros().into(),
        });
        if value.is_none() {
            errors.push((
                i,
                format!(
                    "field `{name}`: {} does not match the time format `{pattern}`",
                    shown(v)
                ),
            ));
        }
        out.push(value);
    }
    timestamp_array(out, unit, tz)
}

fn timestamp_array(values: Vec<Option<i64>>, unit: TimeUnit, tz: &str) -> ArrayRef {
    match unit {
        TimeUnit::Millisecond => {
            Arc::new(TimestampMillisecondArray::from(values).with_timezone(tz.to_string()))
        }
        _ => Arc::new(TimestampMicrosecondArray::from(values).with_timezone(tz.to_string())),
    }
}

/// Converts an Int64 or Float64 column of epoch numbers (per the spec's format) to the spec's
/// timestamp type. Values out of range are rejected.
pub fn epoch_to_timestamp(col: &dyn Array, spec: &FieldSpec, errors: &mut RowErrors) -> ArrayRef {
    let FieldType::Timestamp {
        unit,
        timezone,
        format,
    } = &spec.ty
    else {
        unreachable!("epoch conversion of a non-timestamp field")
    };
    // Multiplier from the input unit to microseconds.
    let in_us: f64 = match format {
        TimeFormat::EpochSeconds => 1e6,
        TimeFormat::EpochMillis => 1e3,
        _ => 1.0,
    };
    let out_us: f64 = match unit {
        TimeUnit::Millisecond => 1e3,
        _ => 1.0,
    };
    let mut check = |i: usize, x: f64, shown_v: String| -> Option<i64> {
        let us = x * in_us;
        // Both bounds are exact in f64; the end is exclusive (the last microsecond of 9999,
        // as f64, rounds up to it: 253402300800000 ms passed as year 9999).
        if us.is_finite() && (MIN_US..END_US).contains(&us) {
            Some((us / out_us).floor() as i64)
        } else {
            errors.push((
                i,
                format!(
                    "field `{}`: epoch value {shown_v} is out of range",
                    spec.name
                ),
            ));
            None
        }
    };
    let values: Vec<Option<i64>> = match col.data_type() {
        DataType::Int64 => {
            let a: &Int64Array = col.as_primitive::<Int64Type>();
            a.iter()
                .enumerate()
                .map(|(i, v)| {
                    v.and_then(|v| {
                        // Out of range: refused as it is, not rounded through f64.
                        exact_epoch(v, in_us, out_us)
                            .or_else(|| check(i, f64::INFINITY, v.to_string()))
                    })
                })
                .collect()
        }
        DataType::Float64 => {
            let a: &PrimitiveArray<Float64Type> = col.as_primitive::<Float64Type>();
            a.iter()
                .enumerate()
                .map(|(i, v)| v.and_then(|v| check(i, v, v.to_string())))
                .collect()
        }
        other => unreachable!("epoch column of type {other}"),
    };
    let ts = timestamp_array(values, *unit, timezone);
    // In range as instants, the values may still not be as their zone's wall-clock time.
    check_timestamp_range(ts.as_ref(), &spec.name, errors);
    ts
}

/// Year 1 .. 9999 in microseconds (the end exclusive: 10000-01-01), both exact in f64: wider
/// than any reader (or a path template) accepts is rejected.
const MIN_US: f64 = -62_135_596_800_000_000.0;
const END_US: f64 = 253_402_300_800_000_000.0;

fn exact_epoch(v: i64, in_us: f64, out_us: f64) -> Option<i64> {
    const MIN_US: i64 = -62_135_596_800_000_000;
    const MAX_US: i64 = 253_402_300_799_999_999;
    let us = v.checked_mul(in_us as i64)?;
    if !(MIN_US..=MAX_US).contains(&us) {
        return None;
    }
    Some(us.div_euclid(out_us as i64))
}

/// Builds the one-element array holding a field's default, parsed like input text.
pub fn default_value(spec: &FieldSpec) -> Result<Option<ArrayRef>, String> {
    let Some(text) = &spec.default else {
        return Ok(None);
    };
    let col = StringArray::from(vec![text.as_str()]);
    let mut errors = Vec::new();
    let arr = from_text(&col, spec, &mut errors);
    if let Some((_, reason)) = errors.into_iter().next() {
        return Err(format!("invalid default: {reason}"));
    }
    if arr.is_null(0) {
        return Err(format!(
            "invalid default: `{text}` is not a {}",
            spec.type_name()
        ));
    }
    Ok(Some(arr))
}

/// Replaces nulls in `col` with the one-element `default`.
pub fn fill_default(col: &ArrayRef, default: &ArrayRef) -> ArrayRef {
    if col.null_count() == 0 {
        return col.clone();
    }
    let mask = arrow::compute::is_null(col).expect("is_null works on every type");
    let scalar = arrow::array::Scalar::new(default.clone());
    arrow::compute::kernels::zip::zip(&mask, &scalar, col).expect("default has the column's type")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::RepoSchema;
    use std::path::Path;

    fn spec(toml_field: &str) -> FieldSpec {
        let text = format!("name = \"t\"\n[[fields]]\nname = \"f\"\n{toml_field}\n");
        RepoSchema::parse(&text, Path::new("t.toml"))
            .unwrap()
            .fields
            .remove(0)
    }

    #[test]
    fn text_casts_report_bad_rows() {
        let s = spec("type = \"int32\"");
        let col = StringArray::from(vec![
            Some("12"),
            Some("x"),
            Some(""),
            None,
            Some("99999999999"),
        ]);
        let mut errs = Vec::new();
        let a = from_text(&col, &s, &mut errs);
        assert_eq!(a.as_primitive::<arrow::datatypes::Int32Type>().value(0), 12);
        assert_eq!(errs.iter().map(|e| e.0).collect::<Vec<_>>(), vec![1, 4]);
        assert!(errs[0].1.contains("`x`") && errs[0].1.contains("int32"));
    }

    #[test]
    fn pattern_timestamps_use_the_zone() {
        let s = spec("type = \"timestamp\"\nformat = \"%Y-%m-%d %H:%M:%S\"\ntimezone = \"+02:00\"");
        let col = StringArray::from(vec!["2024-01-01 02:00:00", "nope"]);
        let mut errs = Vec::new();
        let a = from_text(&col, &s, &mut errs);
        let ts = a.as_primitive::<arrow::datatypes::TimestampMillisecondType>();
        assert_eq!(ts.value(0), 1_704_067_200_000);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].0, 1);
    }

    #[test]
    fn epochs_scale_and_reject_out_of_range() {
        let s = spec("type = \"timestamp\"\nunit = \"us\"\nformat = \"epoch_ms\"");
        let col = Int64Array::from(vec![Some(1_000), None, Some(i64::MAX)]);
        let mut errs = Vec::new();
        let a = epoch_to_timestamp(&col, &s, &mut errs);
        let ts = a.as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
        assert_eq!(ts.value(0), 1_000_000);
        assert!(a.is_null(1));
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].0, 2);
    }

    #[test]
    fn defaults_fill_nulls_and_bad_defaults_are_errors() {
        let s = spec("type = \"int64\"\ndefault = 7");
        let d = default_value(&s).unwrap().unwrap();
        let col: ArrayRef = Arc::new(Int64Array::from(vec![Some(1), None]));
        let out = fill_default(&col, &d);
        assert_eq!(out.as_primitive::<Int64Type>().values(), &[1, 7]);
        let bad = spec("type = \"int64\"\ndefault = \"seven\"");
        assert!(default_value(&bad).unwrap_err().contains("seven"));
    }

    #[test]
    fn binary_base64_and_hex() {
        let s = spec("type = \"binary\"");
        let col = StringArray::from(vec!["aGk=", "!!"]);
        let mut errs = Vec::new();
        let a = from_text(&col, &s, &mut errs);
        assert_eq!(a.as_binary::<i32>().value(0), b"hi");
        assert_eq!(errs.len(), 1);
        assert_eq!(decode_binary("6869", BinaryEncoding::Hex).unwrap(), b"hi");
    }
}
