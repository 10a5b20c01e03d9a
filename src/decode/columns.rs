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

use super::range::{check_date_range, check_timestamp_range};
use crate::schema::pattern::{Miss, Pattern};
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

fn parse_pattern(
    col: &StringArray,
    name: &str,
    pattern: &str,
    unit: TimeUnit,
    tz: &str,
    errors: &mut RowErrors,
) -> ArrayRef {
    let zone: arrow::array::timezone::Tz = tz.parse().expect("validated time zone");
    let reader = Pattern::new(pattern);
    let mut out: Vec<Option<i64>> = Vec::with_capacity(col.len());
    for (i, v) in col.iter().enumerate() {
        let Some(v) = v.filter(|v| !v.trim().is_empty()) else {
            out.push(None);
            continue;
        };
        let value = reader.read(v, &zone).map(|d| match unit {
            TimeUnit::Millisecond => d.timestamp_millis(),
            _ => d.timestamp_micros(),
        });
        match value {
            Ok(v) => out.push(Some(v)),
            Err(miss) => {
                errors.push((
                    i,
                    match miss {
                        Miss::NoMatch => format!(
                            "field `{name}`: {} does not match the time format `{pattern}`",
                            shown(v)
                        ),
                        Miss::Skipped => format!(
                            "field `{name}`: {} is a local time that zone {tz} skips (a \
                             daylight-saving gap), so it names no instant",
                            shown(v)
                        ),
                    },
                ));
                out.push(None);
            }
        }
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
            Some(floor_at_unit(x, in_us as i128, out_us as i128))
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

/// `x` (an epoch number read from decimal text as the nearest f64) times `in_us / out_us`
/// (whole numbers), floored at the column's unit as the text's value would be: the decimal
/// it was read from (its shortest form, which is the text for up to 15 digits) is scaled
/// exactly. Through f64 the product is off by its rounding: `1095513148.12` s is
/// 1095513148119.9998 ms as f64, which floored to …119 ms (about one value in eighty with
/// three decimals came out a unit low). Quicker where f64 tells: a whole number scaled by a
/// whole number stays exact below 2^53, and a scaled value whose fraction stands further than
/// the errors can reach (a few units in its last place) from a whole number floors as the
/// decimal does.
fn floor_at_unit(x: f64, in_us: i128, out_us: i128) -> i64 {
    // One rounding (the units' ratio is a whole number or its inverse).
    let v = if in_us >= out_us {
        x * (in_us / out_us) as f64
    } else {
        x / (out_us / in_us) as f64
    };
    if v.abs() < (1u64 << 53) as f64 {
        if x.fract() == 0.0 && in_us % out_us == 0 {
            return v as i64;
        }
        let ulp = f64::from_bits(v.abs().to_bits() + 1) - v.abs();
        let fraction = v - v.floor();
        if fraction > 4.0 * ulp && 1.0 - fraction > 4.0 * ulp {
            return v.floor() as i64;
        }
    }
    exact_floor(x, in_us, out_us).unwrap_or(v.floor() as i64)
}

/// `x`'s shortest decimal form times `num / den`, floored (`None` past i128).
fn exact_floor(x: f64, num: i128, den: i128) -> Option<i64> {
    let text = x.to_string();
    let (negative, digits) = match text.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, text.as_str()),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let mut scaled: i128 = 0;
    for d in int.bytes().chain(frac.bytes()) {
        if !d.is_ascii_digit() {
            return None;
        }
        scaled = scaled.checked_mul(10)?.checked_add(i128::from(d - b'0'))?;
    }
    let pow = 10i128.checked_pow(u32::try_from(frac.len()).ok()?)?;
    let value = scaled.checked_mul(num)?;
    let value = if negative { -value } else { value };
    i64::try_from(value.div_euclid(pow.checked_mul(den)?)).ok()
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
    fn fractional_epoch_seconds_keep_the_texts_value() {
        // Every three-decimal second over a span, as text read to f64: each one's value in
        // ms and µs is the text's, not a unit below it where f64 cannot hold the decimal.
        for (unit, per_ms) in [("ms", 1), ("us", 1000)] {
            let s = spec(&format!(
                "type = \"timestamp\"\nunit = \"{unit}\"\nformat = \"epoch_s\""
            ));
            let ms: Vec<i64> = (0..20_000)
                .map(|i| 1_095_513_148_000 + i * 7)
                .chain([-1_500, -1, 0, 1, 253_402_300_799_999, -62_135_596_799_500])
                .collect();
            let texts: Vec<String> = ms
                .iter()
                .map(|m| {
                    let sign = if *m < 0 { "-" } else { "" };
                    format!("{sign}{}.{:03}", m.abs() / 1000, m.abs() % 1000)
                })
                .collect();
            let col = StringArray::from(texts.iter().map(String::as_str).collect::<Vec<_>>());
            let mut errs = Vec::new();
            let a = from_text(&col, &s, &mut errs);
            assert!(errs.is_empty(), "{errs:?}");
            for (i, m) in ms.iter().enumerate() {
                let got = if unit == "ms" {
                    a.as_primitive::<arrow::datatypes::TimestampMillisecondType>()
                        .value(i)
                } else {
                    a.as_primitive::<arrow::datatypes::TimestampMicrosecondType>()
                        .value(i)
                };
                assert_eq!(got, m * per_ms, "{} s in {unit}", texts[i]);
            }
        }
        // A fraction below the unit is still floored: 1.0005 s is 1000 ms, -1.0005 s -1001.
        let s = spec("type = \"timestamp\"\nformat = \"epoch_s\"");
        let col = StringArray::from(vec!["1.0005", "-1.0005", "1714521600.9999"]);
        let mut errs = Vec::new();
        let a = from_text(&col, &s, &mut errs);
        let ts = a.as_primitive::<arrow::datatypes::TimestampMillisecondType>();
        assert_eq!(ts.values(), &[1000, -1001, 1_714_521_600_999]);
        // Fractions just below a whole unit, where a value's float is within a few units in
        // its last place of the next one: floored all the same.
        for (format, unit, text, want) in [
            ("epoch_s", "us", "1714521600.0000005", 1_714_521_600_000_000),
            (
                "epoch_ms",
                "us",
                "1714521600000.9996",
                1_714_521_600_000_999,
            ),
            ("epoch_s", "ms", "2401671392.33799", 2_401_671_392_337),
            ("epoch_s", "us", "-0.0000005", -1),
        ] {
            let s = spec(&format!(
                "type = \"timestamp\"\nunit = \"{unit}\"\nformat = \"{format}\""
            ));
            let mut errs = Vec::new();
            let a = from_text(&StringArray::from(vec![text]), &s, &mut errs);
            let got = if unit == "ms" {
                a.as_primitive::<arrow::datatypes::TimestampMillisecondType>()
                    .value(0)
            } else {
                a.as_primitive::<arrow::datatypes::TimestampMicrosecondType>()
                    .value(0)
            };
            assert_eq!(got, want, "{text} {format} in {unit}");
        }
    }

    /// Against the text's own decimal, floored in integers: random epochs with 1 to 6
    /// decimals (seconds, milliseconds) into ms and µs columns, fast paths and all.
    #[test]
    fn epochs_floor_as_their_decimal_text_does() {
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..200_000 {
            let (in_us, int_max) = if next() % 2 == 0 {
                (1_000_000i128, 4_000_000_000u64)
            } else {
                (1_000, 250_000_000_000_000)
            };
            let out_us: i128 = if next() % 2 == 0 { 1_000 } else { 1 };
            let decimals = 1 + (next() % 6) as u32;
            let int = next() % int_max;
            let frac = next() % 10u64.pow(decimals);
            let negative = next() % 4 == 0;
            let text = format!(
                "{}{int}.{frac:0width$}",
                if negative { "-" } else { "" },
                width = decimals as usize
            );
            if text
                .trim_start_matches('-')
                .replace('.', "")
                .trim_start_matches('0')
                .len()
                > 15
            {
                continue;
            }
            let scaled = (i128::from(int) * 10i128.pow(decimals) + i128::from(frac)) * in_us;
            let scaled = if negative { -scaled } else { scaled };
            let want = scaled.div_euclid(10i128.pow(decimals) * out_us) as i64;
            let x: f64 = text.parse().unwrap();
            assert_eq!(
                floor_at_unit(x, in_us, out_us),
                want,
                "{text} × {in_us}/{out_us}"
            );
        }
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
