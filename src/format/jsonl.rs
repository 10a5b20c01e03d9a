//! JSON lines from a batch, byte for byte what arrow-json's `LineDelimited` writer makes (nulls
//! omitted), faster on the columns a flat schema has: strings, integers, floats, booleans and
//! UTC or zone-less timestamps are written by a loop over typed slices. arrow-json's encoder
//! pays a dynamic call per value, serde's escaper per string, and chrono's formatter per
//! timestamp; here a string without a character to escape is copied as it is, and a timestamp
//! of years 1 to 9999 is written from its civil date.
//!
//! Every other column (nested types, dates, decimals, other time zones) is encoded by
//! arrow-json's own encoder (`make_encoder`), as is a timestamp outside years 1 to 9999 and a
//! string holding a quote, a backslash or a control character (serde_json, which arrow-json
//! calls). `jsonl_tests.rs` checks the identity against arrow-json's writer over generated
//! batches.
//!
//! One difference: a binary column is written as base64 text, as a binary field reads it by
//! default (arrow-json writes hex, which a base64 field reads back as other bytes without an
//! error: `7369676e6564` is valid base64). Binary inside nested types stays hex, as input
//! nested binary is read.

use std::io::Write;

use arrow::array::{
    Array, ArrayRef, ArrowPrimitiveType, AsArray, BinaryViewArray, BooleanArray,
    FixedSizeBinaryArray, GenericBinaryArray, GenericStringArray, StringViewArray,
};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{
    DataType, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, TimeUnit,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use arrow::error::ArrowError;
use arrow::json::writer::{make_encoder, EncoderOptions, NullableEncoder};
use arrow::record_batch::RecordBatch;

/// How much text [`write`] encodes before handing it to the writer: small enough to stay in
/// the core's cache, large enough that a write call is rare.
const FLUSH_BYTES: usize = 64 * 1024;

/// One column's values, typed for the loop.
enum Values<'a> {
    Utf8(&'a GenericStringArray<i32>),
    LargeUtf8(&'a GenericStringArray<i64>),
    Utf8View(&'a StringViewArray),
    I8(&'a [i8]),
    I16(&'a [i16]),
    I32(&'a [i32]),
    I64(&'a [i64]),
    U8(&'a [u8]),
    U16(&'a [u16]),
    U32(&'a [u32]),
    U64(&'a [u64]),
    F32(&'a [f32]),
    F64(&'a [f64]),
    Bool(&'a BooleanArray),
    /// Written as base64 text.
    Binary(&'a GenericBinaryArray<i32>),
    LargeBinary(&'a GenericBinaryArray<i64>),
    BinaryView(&'a BinaryViewArray),
    FixedSizeBinary(&'a FixedSizeBinaryArray),
    /// Values in `unit`, written with a `Z` (UTC) or without a zone; arrow-json's encoder
    /// writes the values outside years 1 to 9999.
    Timestamp {
        values: &'a [i64],
        unit: TimeUnit,
        z: bool,
        other: NullableEncoder<'a>,
    },
    /// arrow-json's encoder.
    Other(NullableEncoder<'a>),
}

struct Column<'a> {
    /// `"name":`, escaped as arrow-json escapes it.
    name: Vec<u8>,
    nulls: Option<&'a NullBuffer>,
    values: Values<'a>,
}

/// A batch's columns ready to be written row by row.
struct Rows<'a> {
    columns: Vec<Column<'a>>,
}

fn prim<T: ArrowPrimitiveType>(a: &ArrayRef) -> &[T::Native] {
    a.as_primitive::<T>().values()
}

fn timestamps(a: &ArrayRef, unit: TimeUnit) -> &[i64] {
    match unit {
        TimeUnit::Second => prim::<TimestampSecondType>(a),
        TimeUnit::Millisecond => prim::<TimestampMillisecondType>(a),
        TimeUnit::Microsecond => prim::<TimestampMicrosecondType>(a),
        TimeUnit::Nanosecond => prim::<TimestampNanosecondType>(a),
    }
}

impl<'a> Rows<'a> {
    /// `options` are the defaults: the typed loops write what arrow-json writes with those.
    fn new(batch: &'a RecordBatch, options: &'a EncoderOptions) -> Result<Rows<'a>, ArrowError> {
        let mut columns = Vec::with_capacity(batch.num_columns());
        let fields = batch.schema_ref().fields();
        for (field, array) in fields.iter().zip(batch.columns()) {
            let arrow = || make_encoder(field, array.as_ref(), options);
            let values = match array.data_type() {
                DataType::Utf8 => Values::Utf8(array.as_string::<i32>()),
                DataType::LargeUtf8 => Values::LargeUtf8(array.as_string::<i64>()),
                DataType::Utf8View => Values::Utf8View(array.as_string_view()),
                DataType::Int8 => Values::I8(prim::<Int8Type>(array)),
                DataType::Int16 => Values::I16(prim::<Int16Type>(array)),
                DataType::Int32 => Values::I32(prim::<Int32Type>(array)),
                DataType::Int64 => Values::I64(prim::<Int64Type>(array)),
                DataType::UInt8 => Values::U8(prim::<UInt8Type>(array)),
                DataType::UInt16 => Values::U16(prim::<UInt16Type>(array)),
                DataType::UInt32 => Values::U32(prim::<UInt32Type>(array)),
                DataType::UInt64 => Values::U64(prim::<UInt64Type>(array)),
                DataType::Float32 => Values::F32(prim::<Float32Type>(array)),
                DataType::Float64 => Values::F64(prim::<Float64Type>(array)),
                DataType::Boolean => Values::Bool(array.as_boolean()),
                DataType::Binary => Values::Binary(array.as_binary::<i32>()),
                DataType::LargeBinary => Values::LargeBinary(array.as_binary::<i64>()),
                DataType::BinaryView => Values::BinaryView(array.as_binary_view()),
                DataType::FixedSizeBinary(_) => {
                    Values::FixedSizeBinary(array.as_fixed_size_binary())
                }
                DataType::Timestamp(unit, tz)
                    if tz.as_deref().is_none_or(|t| t == "UTC" || t == "+00:00") =>
                {
                    Values::Timestamp {
                        values: timestamps(array, *unit),
                        unit: *unit,
                        z: tz.is_some(),
                        other: arrow()?,
                    }
                }
                _ => Values::Other(arrow()?),
            };
            let mut name = Vec::with_capacity(field.name().len() + 3);
            encode_str_slow(field.name(), &mut name);
            name.push(b':');
            columns.push(Column {
                name,
                nulls: array.nulls(),
                values,
            });
        }
        Ok(Rows { columns })
    }

    /// Appends row `i` and its line break.
    fn row(&mut self, i: usize, out: &mut Vec<u8>) {
        out.push(b'{');
        let mut first = true;
        for c in self.columns.iter_mut() {
            let null = match &c.values {
                // arrow-json's own idea of null: logical for a null or run-end encoded
                // column, the keys' for a dictionary.
                Values::Other(e) => e.is_null(i),
                _ => c.nulls.is_some_and(|n| n.is_null(i)),
            };
            if null {
                continue;
            }
            if !first {
                out.push(b',');
            }
            first = false;
            out.extend_from_slice(&c.name);
            match &mut c.values {
                Values::Utf8(a) => encode_str(a.value(i), out),
                Values::LargeUtf8(a) => encode_str(a.value(i), out),
                Values::Utf8View(a) => encode_str(a.value(i), out),
                Values::I8(v) => int(v[i], out),
                Values::I16(v) => int(v[i], out),
                Values::I32(v) => int(v[i], out),
                Values::I64(v) => int(v[i], out),
                Values::U8(v) => int(v[i], out),
                Values::U16(v) => int(v[i], out),
                Values::U32(v) => int(v[i], out),
                Values::U64(v) => int(v[i], out),
                Values::F32(v) => float(v[i], out),
                Values::F64(v) => float(v[i], out),
                Values::Bool(a) => {
                    out.extend_from_slice(if a.value(i) { b"true" } else { b"false" })
                }
                Values::Binary(a) => base64(a.value(i), out),
                Values::LargeBinary(a) => base64(a.value(i), out),
                Values::BinaryView(a) => base64(a.value(i), out),
                Values::FixedSizeBinary(a) => base64(a.value(i), out),
                Values::Timestamp {
                    values,
                    unit,
                    z,
                    other,
                } => {
                    if !timestamp(values[i], *unit, *z, out) {
                        other.encode(i, out);
                    }
                }
                Values::Other(e) => e.encode(i, out),
            }
        }
        out.extend_from_slice(b"}\n");
    }
}

/// Appends every row of `batch` to `out`.
pub(crate) fn encode(batch: &RecordBatch, out: &mut Vec<u8>) -> Result<(), ArrowError> {
    // Web-log rows run about as long as their decoded form.
    out.reserve(batch.get_array_memory_size().min(64 << 20));
    lines(batch, out, usize::MAX, |_| Ok(()))
}

/// Writes every row of `batch` to `w`, [`FLUSH_BYTES`] at a time.
pub(crate) fn write(batch: &RecordBatch, w: &mut impl Write) -> Result<(), ArrowError> {
    let mut buf = Vec::with_capacity(FLUSH_BYTES + 4096);
    lines(batch, &mut buf, FLUSH_BYTES, |buf| {
        w.write_all(buf)?;
        buf.clear();
        Ok(())
    })
}

/// Appends the rows of `batch` to `out`, calling `flush` whenever it holds `flush_at` bytes or
/// more, and once at the end.
fn lines(
    batch: &RecordBatch,
    out: &mut Vec<u8>,
    flush_at: usize,
    mut flush: impl FnMut(&mut Vec<u8>) -> Result<(), ArrowError>,
) -> Result<(), ArrowError> {
    // As arrow-json: an empty batch writes nothing, whatever its columns' types.
    if batch.num_rows() == 0 {
        return Ok(());
    }
    let options = EncoderOptions::default();
    let mut rows = Rows::new(batch, &options)?;
    for i in 0..batch.num_rows() {
        rows.row(i, out);
        if out.len() >= flush_at {
            flush(out)?;
        }
    }
    flush(out)
}

/// `v` as a JSON string of its base64 text (standard alphabet, padded).
fn base64(v: &[u8], out: &mut Vec<u8>) {
    use base64::Engine;
    let start = out.len() + 1;
    let n = v.len().div_ceil(3) * 4;
    out.resize(start + n + 1, b'"');
    let written = base64::engine::general_purpose::STANDARD
        .encode_slice(v, &mut out[start..start + n])
        .expect("room for the base64 text");
    debug_assert_eq!(written, n);
}

/// A JSON string as serde_json writes it (arrow-json calls it): copied between quotes when
/// nothing in it needs an escape.
fn encode_str(s: &str, out: &mut Vec<u8>) {
    if needs_escape(s.as_bytes()) {
        return encode_str_slow(s, out);
    }
    out.reserve(s.len() + 2);
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

fn encode_str_slow(s: &str, out: &mut Vec<u8>) {
    serde_json::to_writer(out, s).expect("a string serializes into memory");
}

/// Whether `b` holds a byte JSON escapes: `"`, `\` or a control character below 0x20. Checked
/// 16 bytes at a time without an early exit, which the compiler turns into vector code.
fn needs_escape(b: &[u8]) -> bool {
    let bad = |x: u8| (x < 0x20) | (x == b'"') | (x == b'\\');
    let mut chunks = b.chunks_exact(16);
    for c in &mut chunks {
        if c.iter().fold(false, |acc, &x| acc | bad(x)) {
            return true;
        }
    }
    chunks.remainder().iter().any(|&x| bad(x))
}

fn int<N: lexical_core::ToLexical>(v: N, out: &mut Vec<u8>) {
    let mut buf = [0u8; lexical_core::BUFFER_SIZE];
    out.extend_from_slice(lexical_core::write(v, &mut buf));
}

/// As arrow-json: not-a-number and infinities are `null`, the rest lexical's shortest form.
fn float<N: lexical_core::ToLexical + num_traits::Float>(v: N, out: &mut Vec<u8>) {
    if v.is_finite() {
        int(v, out)
    } else {
        out.extend_from_slice(b"null");
    }
}

/// Seconds from 0001-01-01T00:00:00 and 9999-12-31T23:59:59 to the epoch.
const MIN_SECS: i64 = -62_135_596_800;
const MAX_SECS: i64 = 253_402_300_799;

/// Appends `"YYYY-MM-DDTHH:MM:SS[.fff|.ffffff|.fffffffff][Z]"` (chrono's RFC 3339 with
/// `SecondsFormat::AutoSi`, which arrow prints) and returns true, or returns false and appends
/// nothing for a value outside years 1 to 9999.
fn timestamp(v: i64, unit: TimeUnit, z: bool, out: &mut Vec<u8>) -> bool {
    let per_sec: i64 = match unit {
        TimeUnit::Second => 1,
        TimeUnit::Millisecond => 1_000,
        TimeUnit::Microsecond => 1_000_000,
        TimeUnit::Nanosecond => 1_000_000_000,
    };
    let secs = v.div_euclid(per_sec);
    if !(MIN_SECS..=MAX_SECS).contains(&secs) {
        return false;
    }
    let nanos = (v.rem_euclid(per_sec) * (1_000_000_000 / per_sec)) as u32;
    let days = secs.div_euclid(86_400);
    let day_secs = secs.rem_euclid(86_400) as u32;
    let (y, m, d) = civil_from_days(days);
    let mut b = [0u8; 40];
    b[0] = b'"';
    digits(&mut b[1..5], y as u32);
    b[5] = b'-';
    digits(&mut b[6..8], m);
    b[8] = b'-';
    digits(&mut b[9..11], d);
    b[11] = b'T';
    digits(&mut b[12..14], day_secs / 3600);
    b[14] = b':';
    digits(&mut b[15..17], day_secs / 60 % 60);
    b[17] = b':';
    digits(&mut b[18..20], day_secs % 60);
    let mut n = 20;
    if nanos != 0 {
        b[n] = b'.';
        let (value, width) = if nanos.is_multiple_of(1_000_000) {
            (nanos / 1_000_000, 3)
        } else if nanos.is_multiple_of(1_000) {
            (nanos / 1_000, 6)
        } else {
            (nanos, 9)
        };
        digits(&mut b[n + 1..n + 1 + width], value);
        n += 1 + width;
    }
    if z {
        b[n] = b'Z';
        n += 1;
    }
    b[n] = b'"';
    out.extend_from_slice(&b[..n + 1]);
    true
}

/// Writes `v` as exactly `out.len()` decimal digits, zero-padded.
fn digits(out: &mut [u8], mut v: u32) {
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// The proleptic Gregorian date of `days` since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}
