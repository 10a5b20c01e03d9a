//! Decimal text → `Decimal128(precision, scale)`, rounded half away from zero as SQL engines
//! cast (PostgreSQL, DuckDB, Spark, BigQuery): `12.345` is `12.35` at scale 2, `-0.005` is
//! `-0.01`. arrow's own parser truncates (`2.675` was `2.67`, `-0.005` was `0.00`) and its
//! errors name no field.
//!
//! The text is a JSON number, or one with a leading `+`, with surrounding ASCII whitespace
//! allowed (CSV cells): `[+-]digits[.digits][(e|E)[+-]digits]`, `.5` and `5.` included. A
//! value whose digits before the point exceed `precision - scale` is an overflow; any exponent
//! is read without building the number (`1e-400` is 0, `1e400` an overflow).

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Decimal128Array, GenericListArray, MapArray, StringArray, StructArray,
};
use arrow::datatypes::{DataType, Field, Fields};

use super::columns::{shown, RowErrors};
use crate::schema::{FieldSpec, FieldType};

/// Why a text is not a decimal of the field's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecimalError {
    /// Not a number.
    Malformed,
    /// More digits before the point than `precision - scale`.
    Overflow,
}

/// Parses `text` as a decimal of `precision` and `scale`: the value × 10^scale, rounded half
/// away from zero.
pub fn parse(text: &str, precision: u8, scale: i8) -> Result<i128, DecimalError> {
    let b = text.trim_ascii().as_bytes();
    let (negative, b) = match b.first() {
        Some(b'-') => (true, &b[1..]),
        Some(b'+') => (false, &b[1..]),
        _ => (false, b),
    };
    let int_len = b.iter().take_while(|c| c.is_ascii_digit()).count();
    let (int, rest) = b.split_at(int_len);
    let (frac, rest) = match rest.split_first() {
        Some((b'.', r)) => {
            let n = r.iter().take_while(|c| c.is_ascii_digit()).count();
            r.split_at(n)
        }
        _ => (&rest[..0], rest),
    };
    if int.is_empty() && frac.is_empty() {
        return Err(DecimalError::Malformed);
    }
    let exponent: i64 = match rest.split_first() {
        None => 0,
        Some((b'e' | b'E', r)) => {
            let (sign, digits) = match r.split_first() {
                Some((b'-', d)) => (-1, d),
                Some((b'+', d)) => (1, d),
                _ => (1, r),
            };
            if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
                return Err(DecimalError::Malformed);
            }
            // Saturates: past a billion, every value is 0 or an overflow anyway.
            let e = digits.iter().fold(0i64, |e, d| {
                (e * 10 + i64::from(d - b'0')).min(1_000_000_000)
            });
            sign * e
        }
        Some(_) => return Err(DecimalError::Malformed),
    };
    // The significant digits (leading zeros dropped), and where the point falls among them
    // once scaled: `keep` digits stay in front of it.
    let lead = int.iter().chain(frac).take_while(|&&d| d == b'0').count();
    let count = int.len() + frac.len() - lead;
    if count == 0 {
        return Ok(0);
    }
    let digits = || int.iter().chain(frac).skip(lead).map(|d| d - b'0');
    let keep = count as i64 - frac.len() as i64 + exponent + i64::from(scale);
    if keep > i64::from(precision) {
        return Err(DecimalError::Overflow);
    }
    let kept = keep.max(0) as usize;
    let mut value = digits()
        .take(kept)
        .fold(0i128, |v, d| v * 10 + i128::from(d));
    for _ in count..kept {
        value *= 10;
    }
    // The first digit dropped decides: 5 or more rounds away from zero.
    if keep >= 0 && digits().nth(kept).is_some_and(|d| d >= 5) {
        value += 1;
        if value >= 10i128.pow(u32::from(precision)) {
            return Err(DecimalError::Overflow);
        }
    }
    Ok(if negative { -value } else { value })
}

/// Converts a text column to `Decimal128(precision, scale)` (CSV and text input: a blank cell
/// is null); rows that do not convert are null and listed in `errors` with the field's name.
pub fn from_text(
    col: &StringArray,
    name: &str,
    precision: u8,
    scale: i8,
    errors: &mut RowErrors,
) -> ArrayRef {
    let top = |i: usize| i;
    let leaf = Leaf {
        name,
        precision,
        scale,
        json: false,
    };
    leaf.convert(col, &top, errors)
}

/// One decimal field (at any depth) being converted.
struct Leaf<'a> {
    name: &'a str,
    precision: u8,
    scale: i8,
    /// JSON input: a blank string is not a number (it was a dead letter with arrow-json's own
    /// parser); a value that fails is 0, not null, so a non-nullable child holds no null
    /// where its parent is valid (the row is a dead letter anyway).
    json: bool,
}

impl Leaf<'_> {
    /// Converts `col`; `top` maps a value's index to its top-level row. A row gets one error
    /// per field, however many of its values fail (a record of a million bad list items made
    /// a million messages).
    fn convert(
        &self,
        col: &StringArray,
        top: &dyn Fn(usize) -> usize,
        errors: &mut RowErrors,
    ) -> ArrayRef {
        let (precision, scale) = (self.precision, self.scale);
        let values = col.iter().enumerate().map(|(i, v)| {
            let v = v?;
            let blank = v.trim_ascii().is_empty();
            if blank && !self.json {
                return None;
            }
            let why = match parse(v, precision, scale) {
                Ok(x) => return Some(x),
                Err(DecimalError::Malformed) => "is not a number",
                Err(DecimalError::Overflow) => "does not fit its type",
            };
            let row = top(i);
            if errors.last().is_none_or(|(r, _)| *r != row) {
                let name = self.name;
                errors.push((
                    row,
                    format!(
                        "field `{name}`: {} {why} (decimal({precision},{scale}))",
                        shown(v)
                    ),
                ));
            }
            self.json.then_some(0)
        });
        let array: Decimal128Array = values.collect();
        Arc::new(
            array
                .with_precision_and_scale(precision, scale)
                .expect("precision and scale checked with the schema"),
        )
    }
}

/// Whether `ty` holds a decimal inside a list, struct or map.
pub fn nested(ty: &FieldType) -> bool {
    match ty {
        FieldType::Decimal { .. } => true,
        FieldType::List(item) | FieldType::Map(item) => nested(&item.ty),
        FieldType::Struct(fields) => fields.iter().any(|f| nested(&f.ty)),
        _ => false,
    }
}

/// The type arrow-json decodes `spec` as: its Arrow type with every decimal read as text.
pub fn decode_type(spec: &FieldSpec) -> DataType {
    let field = |s: &FieldSpec| Arc::new(Field::new(s.name.clone(), decode_type(s), s.nullable));
    match (&spec.ty, spec.arrow_type()) {
        (FieldType::Decimal { .. }, _) => DataType::Utf8,
        (FieldType::List(item), _) => DataType::List(field(item)),
        (FieldType::Struct(fields), _) => {
            DataType::Struct(fields.iter().map(&field).collect::<Fields>())
        }
        (FieldType::Map(value), DataType::Map(entries, sorted)) => {
            let DataType::Struct(kv) = entries.data_type() else {
                unreachable!("a map's entries are a struct")
            };
            let kv = Fields::from(vec![kv[0].clone(), field(value)]);
            let entries = Field::new(entries.name(), DataType::Struct(kv), false);
            DataType::Map(Arc::new(entries), sorted)
        }
        (_, ty) => ty,
    }
}

/// Converts a column of JSON input decoded as [`decode_type`] to `spec`'s type: its
/// decimals, at any depth, parsed from their text. A row with a value that does not convert is
/// listed in `errors` (once per decimal field).
pub fn convert_nested(col: &ArrayRef, spec: &FieldSpec, errors: &mut RowErrors) -> ArrayRef {
    convert(col, spec, &spec.name, &|i| i, errors)
}

/// [`convert_nested`] at one level: `path` names `col` in errors (`items[].price`,
/// `attrs{}`), `top` maps an index of `col` to its top-level row. (Recursion follows the
/// schema's nesting, which the schema file fixes, not the input.)
fn convert(
    col: &ArrayRef,
    spec: &FieldSpec,
    path: &str,
    top: &dyn Fn(usize) -> usize,
    errors: &mut RowErrors,
) -> ArrayRef {
    // The row of a list's (or map's) child value, by the list's offsets.
    let parent = |offsets: &arrow::buffer::OffsetBuffer<i32>, child: usize| {
        offsets.partition_point(|&o| o as usize <= child) - 1
    };
    match &spec.ty {
        FieldType::Decimal { precision, scale } => {
            let leaf = Leaf {
                name: path,
                precision: *precision,
                scale: *scale,
                json: true,
            };
            leaf.convert(col.as_string::<i32>(), top, errors)
        }
        FieldType::List(item) => {
            let list = col.as_list::<i32>();
            let offsets = list.offsets();
            let values = convert(
                list.values(),
                item,
                &format!("{path}[]"),
                &|i| top(parent(offsets, i)),
                errors,
            );
            Arc::new(GenericListArray::new(
                Arc::new(item.arrow_field()),
                offsets.clone(),
                values,
                list.nulls().cloned(),
            ))
        }
        FieldType::Struct(fields) => {
            let st = col.as_struct();
            let columns = fields
                .iter()
                .zip(st.columns())
                .map(|(f, c)| convert(c, f, &format!("{path}.{}", f.name), top, errors))
                .collect();
            let fields: Fields = fields.iter().map(|f| Arc::new(f.arrow_field())).collect();
            Arc::new(StructArray::new(fields, columns, st.nulls().cloned()))
        }
        FieldType::Map(value) => {
            let map = col.as_map();
            let offsets = map.offsets();
            let entries = map.entries();
            let values = convert(
                entries.column(1),
                value,
                &format!("{path}{{}}"),
                &|i| top(parent(offsets, i)),
                errors,
            );
            let DataType::Map(field, sorted) = spec.arrow_type() else {
                unreachable!("a map field's type is a map")
            };
            let DataType::Struct(kv) = field.data_type() else {
                unreachable!("a map's entries are a struct")
            };
            let entries = StructArray::new(
                kv.clone(),
                vec![entries.column(0).clone(), values],
                entries.nulls().cloned(),
            );
            Arc::new(MapArray::new(
                field,
                offsets.clone(),
                entries,
                map.nulls().cloned(),
                sorted,
            ))
        }
        _ => col.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_rounded_half_away_from_zero_and_checked() {
        let ok = |t: &str, p: u8, s: i8| parse(t, p, s).unwrap();
        let cases: [(&str, i128); 22] = [
            ("12.34", 1234),
            ("12.345", 1235),
            ("12.3449999", 1234),
            ("-12.345", -1235),
            ("-0.005", -1),
            ("-0.004", 0),
            ("12345e-3", 1235),
            ("12.3456789e2", 123457),
            ("0.1e1", 100),
            ("1E+2", 10000),
            ("1e-400", 0),
            ("0e999999999999999999", 0),
            ("000000000000000000000000000000000000000000012.5", 1250),
            (".5", 50),
            ("5.", 500),
            ("+5", 500),
            (" 7 ", 700),
            ("-0", 0),
            ("9999999999.99", 999999999999),
            ("9999999999.994", 999999999999),
            ("0.00000000000000000000000000000000000000000000000005", 0),
            ("0.005", 1),
        ];
        for (t, want) in cases {
            assert_eq!(ok(t, 12, 2), want, "{t}");
        }
        assert_eq!(ok("123", 3, 0), 123);
        assert_eq!(ok("0.5", 1, 0), 1);
        assert_eq!(
            ok("99999999999999999999999999999999999999", 38, 0),
            10i128.pow(38) - 1
        );
        for t in [
            "9999999999.995",
            "1e20",
            "99999999999.99",
            "1e1000000000000",
        ] {
            assert_eq!(parse(t, 12, 2), Err(DecimalError::Overflow), "{t}");
        }
        assert_eq!(parse("9.5", 1, 0), Err(DecimalError::Overflow));
        for t in [
            "", " ", "-", "+", ".", "e5", "1e", "1e+", "1.2.3", "1-2", "--5", "1e40e-40", "abc",
            "0x10", "NaN", "Infinity", "1 2", "true", "١٢",
        ] {
            assert_eq!(parse(t, 12, 2), Err(DecimalError::Malformed), "{t:?}");
        }
    }

    /// JSON decimals at the top level, in a list of structs and in a map are rounded; a value
    /// that does not fit, at any depth, makes its record a dead letter naming the field; CSV
    /// rounds alike. (arrow's parser truncated: `2.675` was `2.67`.)
    #[test]
    fn decimals_at_any_depth_and_in_csv_are_rounded_and_checked() {
        use crate::decode::{Chunk, DecodeOptions, InputKind, RecordDecoder};
        use arrow::array::Decimal128Array;
        let schema = crate::schema::RepoSchema::parse(
            r#"
name = "d"
[[fields]]
name = "p"
type = "decimal(5,2)"
[[fields]]
name = "items"
type = "list<struct>"
fields = [{ name = "price", type = "decimal(5,2)", nullable = false }]
[[fields]]
name = "m"
type = "map<string,decimal(5,2)>"
"#,
            std::path::Path::new("d.toml"),
        )
        .unwrap();
        let schema = Arc::new(schema);
        let mut d = RecordDecoder::new(schema.clone(), DecodeOptions::default(), None).unwrap();
        let out = d.decode(&Chunk::of(
            "{\"p\":2.675,\"items\":[{\"price\":1.005},{\"price\":\"-0.125\"}],\"m\":{\"a\":9.999}}\n\
             {\"p\":1,\"items\":[{\"price\":1},{\"price\":1000}]}\n\
             {\"p\":1,\"m\":{\"a\":1,\"b\":\"x\"}}\n\
             {\"p\":1000}\n\
             {\"p\":null,\"items\":[]}\n\
             {\"p\":1,\"items\":[{\"price\":\"\"},{\"price\":\"x\"},{\"price\":\"y\"}]}\n",
        ));
        let reasons: Vec<(u64, &str)> = out
            .dead
            .iter()
            .map(|d| (d.position.line, d.reason.as_str()))
            .collect();
        assert_eq!(
            reasons,
            [
                (
                    2,
                    "field `items[].price`: `1000` does not fit its type (decimal(5,2))"
                ),
                (3, "field `m{}`: `x` is not a number (decimal(5,2))"),
                (4, "field `p`: `1000` does not fit its type (decimal(5,2))"),
                // A blank required value is not a null (a struct with a null required child
                // cannot be built: the record was a library panic's dead letter), and a
                // record's many bad values make one reason.
                (
                    6,
                    "field `items[].price`: `` is not a number (decimal(5,2))"
                ),
            ]
        );
        assert!(out.dead.iter().all(|d| d.class() == "type"));
        let batch = arrow::compute::concat_batches(&d.output_schema(), &out.batches).unwrap();
        assert_eq!(batch.num_rows(), 2);
        let p = batch
            .column(0)
            .as_any()
            .downcast_ref::<Decimal128Array>()
            .unwrap();
        assert_eq!((p.value(0), p.is_null(1)), (268, true));
        let items = batch.column(1).as_list::<i32>();
        let prices = items.value(0);
        let prices = prices
            .as_struct()
            .column(0)
            .as_primitive::<arrow::datatypes::Decimal128Type>();
        assert_eq!(prices.values().to_vec(), [101, -13]);
        let m = batch.column(2).as_map();
        let v = m.value(0);
        assert_eq!(
            v.column(1)
                .as_primitive::<arrow::datatypes::Decimal128Type>()
                .value(0),
            1000
        );

        let opts = DecodeOptions {
            kind: InputKind::Csv {
                delimiter: b',',
                header: false,
            },
            ..Default::default()
        };
        let flat = crate::schema::RepoSchema::parse(
            "name = \"c\"\n[[fields]]\nname = \"p\"\ntype = \"decimal(5,2)\"\n",
            std::path::Path::new("c.toml"),
        )
        .unwrap();
        let mut d = RecordDecoder::new(Arc::new(flat), opts, None).unwrap();
        let out = d.decode(&Chunk::of("2.675\n-0.005\n1e3\n"));
        assert_eq!(out.dead.len(), 1, "{:?}", out.dead);
        let p = out.batches[0]
            .column(0)
            .as_primitive::<arrow::datatypes::Decimal128Type>();
        assert_eq!(p.values().to_vec(), [268, -1]);
    }
}
