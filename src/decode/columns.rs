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

use crate::schema::{BinaryEncoding, FieldSpec, FieldType, TimeFormat};

/// Rows a conversion rejected: (row index within the batch, reason).
pub type RowErrors = Vec<(usize, String)>;

/// Shortens a value for an error message.
pub(super) fn shown(v: &str) -> String {
    const MAX: usize = 60;
    if v.len() <= MAX {
        format!("`{v}`")
    } else {
        let mut end = MAX;
        while !v.is_char_boundary(end) {
            end -= 1;
        }
        format!("`{}…`", &v[..end])
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
    timestamp_array(values, *unit, timezone)
}

/// Year 1 .. 9999 in microseconds (the end exclusive: 10000-01-01), both exact in f64: wider
/// than any reader (or a path template) accepts is rejected.
const MIN_US: f64 = -62_135_596_800_000_000.0;
const END_US: f64 = 253_402_300_800_000_000.0;

/// Year 1 .. 9999 in seconds, the end exclusive.
const MIN_S: i64 = -62_135_596_800;
const END_S: i64 = 253_402_300_800;

/// Year 1 .. 9999 in days since the epoch (0001-01-01 and 9999-12-31).
const MIN_DAY: i32 = -719_162;
const MAX_DAY: i32 = 2_932_896;

/// The days of a date column outside years 1 to 9999, by row.
fn days_out_of_range(col: &dyn Array) -> impl Iterator<Item = (usize, i32)> + '_ {
    col.as_primitive_opt::<arrow::datatypes::Date32Type>()
        .into_iter()
        .flat_map(|days| days.iter().enumerate())
        .filter_map(|(i, d)| {
            d.filter(|d| !(MIN_DAY..=MAX_DAY).contains(d))
                .map(|d| (i, d))
        })
}

/// The raw values of a timestamp column (seconds, milliseconds or microseconds) or a Date64
/// column outside years 1 to 9999, by row, and the column's unit; nothing for other columns
/// (nanoseconds since 1970 in an i64 span 1677 to 2262). Exact, in the column's unit
/// (compared as f64, the last millisecond of 9999 and the first of 10000 were one number).
fn raw_out_of_range(col: &dyn Array) -> (Vec<(usize, i64)>, &'static str) {
    let (per_second, unit) = match col.data_type() {
        DataType::Timestamp(TimeUnit::Second, _) => (1, "s"),
        DataType::Timestamp(TimeUnit::Millisecond, _) | DataType::Date64 => (1_000, "ms"),
        DataType::Timestamp(TimeUnit::Microsecond, _) => (1_000_000, "us"),
        _ => return (Vec::new(), ""),
    };
    let (lo, end) = (MIN_S * per_second, END_S * per_second);
    let Ok(ints) = arrow::compute::cast(col, &DataType::Int64) else {
        return (Vec::new(), unit);
    };
    let out = ints
        .as_primitive::<Int64Type>()
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.filter(|v| !(lo..end).contains(v)).map(|v| (i, v)))
        .collect();
    (out, unit)
}

/// Checks a date column against years 1 to 9999 (arrow reads `+275760-09-13` and year 0,
/// which readers then fail on, and JSON output wrote an error message in its place); each
/// value outside is its row's error, naming the field `name`.
pub fn check_date_range(col: &dyn Array, name: &str, errors: &mut RowErrors) {
    for (i, d) in days_out_of_range(col) {
        // Day 1 of the common era (0001-01-01) is day -719,162 here.
        let shown = NaiveDate::from_num_days_from_ce_opt(d.saturating_add(719_163))
            .map(|day| day.to_string())
            .unwrap_or_else(|| format!("{d} days from 1970-01-01"));
        errors.push((
            i,
            format!("field `{name}`: date {shown} is out of range (years 1 to 9999)"),
        ));
    }
}

/// Checks a timestamp column read natively (RFC 3339 text, or a JSON number taken as a raw
/// value in the column's unit) against years 1 to 9999; each value outside is its row's error,
/// naming the field `name`.
pub fn check_timestamp_range(col: &dyn Array, name: &str, errors: &mut RowErrors) {
    if !matches!(col.data_type(), DataType::Timestamp(..)) {
        return;
    }
    for (i, v) in raw_out_of_range(col).0 {
        errors.push((
            i,
            format!("field `{name}`: timestamp value {v} is out of range (years 1 to 9999)"),
        ));
    }
}

/// The first value of a date or timestamp column (of any unit) outside years 1 to 9999 among
/// those `seen` keeps (a reader sees them: the rest sit under a null parent or outside a
/// list's spans), described (`timestamp value 253402300800000 (ms)`), for columns no field
/// spec names (a stage's output). `None` for other types and for columns wholly in range.
pub fn first_out_of_range(col: &dyn Array, seen: &dyn Fn(usize) -> bool) -> Option<String> {
    if let Some((_, d)) = days_out_of_range(col).find(|(i, _)| seen(*i)) {
        return Some(format!("date {d} days from 1970-01-01"));
    }
    let (raw, unit) = raw_out_of_range(col);
    let kind = if matches!(col.data_type(), DataType::Date64) {
        "date"
    } else {
        "timestamp"
    };
    raw.into_iter()
        .find(|(i, _)| seen(*i))
        .map(|(_, v)| format!("{kind} value {v} ({unit})"))
}

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

    /// Dates and timestamps end with year 9999, exactly: the first millisecond of year 10000
    /// was the last of 9999 once compared as f64, and dates were not checked at all (arrow
    /// reads `+275760-09-13` and year 0, which readers then fail on). JSON and CSV alike.
    #[test]
    fn dates_and_epochs_end_with_year_9999_exactly() {
        use crate::decode::{Chunk, DecodeOptions, InputKind, RecordDecoder};
        let schema = crate::schema::RepoSchema::parse(
            "name = \"dt\"\n[[fields]]\nname = \"d\"\ntype = \"date\"\n\
             [[fields]]\nname = \"t\"\ntype = \"timestamp\"\nformat = \"epoch_ms\"\n\
             [[fields]]\nname = \"r\"\ntype = \"timestamp\"\nunit = \"ms\"\n",
            std::path::Path::new("dt.toml"),
        )
        .unwrap();
        let schema = std::sync::Arc::new(schema);
        let mut d = RecordDecoder::new(schema.clone(), DecodeOptions::default(), None).unwrap();
        let out = d.decode(&Chunk::of(
            "{\"d\":\"0001-01-01\",\"t\":253402300799999,\"r\":253402300799999}\n\
             {\"t\":253402300800000}\n\
             {\"t\":-62135596800001}\n\
             {\"r\":253402300800000}\n\
             {\"d\":\"+275760-09-13\"}\n\
             {\"d\":\"0000-12-31\"}\n\
             {\"d\":\"9999-12-31\"}\n",
        ));
        let lines: Vec<u64> = out.dead.iter().map(|d| d.position.line).collect();
        assert_eq!((out.rows(), lines), (2, vec![2, 3, 4, 5, 6]));
        assert!(
            out.dead.iter().all(|d| d.class() == "type"),
            "{:?}",
            out.dead
        );
        assert!(out.dead[3]
            .reason
            .contains("days from 1970-01-01 is out of range"));
        assert!(out.dead[4]
            .reason
            .contains("date 0000-12-31 is out of range"));
        let opts = DecodeOptions {
            kind: InputKind::Csv {
                delimiter: b',',
                header: false,
            },
            ..Default::default()
        };
        let mut d = RecordDecoder::new(schema, opts.clone(), None).unwrap();
        let out = d.decode(&Chunk::of("0000-12-31,,\n9999-12-31,,\n"));
        assert_eq!((out.rows(), out.dead.len()), (1, 1));
        // Text timestamps too (CSV; JSON strings in a pattern field): year 0 was taken.
        let text = crate::schema::RepoSchema::parse(
            "name = \"ts\"\n[[fields]]\nname = \"t\"\ntype = \"timestamp\"\n\
             [[fields]]\nname = \"p\"\ntype = \"timestamp\"\nformat = \"%Y-%m-%d %H:%M\"\n",
            std::path::Path::new("ts.toml"),
        )
        .unwrap();
        let mut d = RecordDecoder::new(std::sync::Arc::new(text), opts, None).unwrap();
        let out = d.decode(&Chunk::of(
            "0000-06-01T00:00:00Z,\n,0000-06-01 10:00\n9999-12-31T23:59:59Z,9999-12-31 23:59\n",
        ));
        let lines: Vec<u64> = out.dead.iter().map(|d| d.position.line).collect();
        assert_eq!((out.rows(), lines), (1, vec![1, 2]));
        assert!(out
            .dead
            .iter()
            .all(|d| d.reason.contains("years 1 to 9999")));
    }
}
