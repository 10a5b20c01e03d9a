//! Values sluice reads from their text rather than through arrow: decimals and integers, at
//! any depth (a list of structs' `price`, a map's values) and from CSV and text cells. Their
//! rules are in [`super::number`]: decimals round half away from zero, integers must be whole.
//!
//! For JSON, arrow-json reads such a value as text ([`read_type`], primitives coerced to their
//! text) and [`convert`] turns the column into the field's type; the same walk checks dates
//! and timestamps inside lists, structs and maps against years 1 to 9999 (top-level ones are
//! checked where they are read), and keeps only the last entry of a key a map gives twice.
//! A value that does not convert or is out of range makes its row's error, naming the field's
//! path (`items[].price`, `attrs{}`).

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Decimal128Array, GenericListArray, Int32Array, Int64Array, MapArray,
    StringArray, StructArray,
};
use arrow::datatypes::{DataType, Field, Fields};

use super::columns::{check_date_range, check_timestamp_range, shown, RowErrors};
use super::number::{self, NumberError};
use crate::schema::{FieldSpec, FieldType};

/// Whether `ty` is, or holds inside a list, struct or map, a value read from its text.
pub fn any(ty: &FieldType) -> bool {
    holds(ty, &|t| {
        matches!(
            t,
            FieldType::Decimal { .. } | FieldType::Int32 | FieldType::Int64
        )
    })
}

/// Whether a JSON field's column goes through [`convert`]: it is or holds a value read from
/// its text, it holds a date or timestamp inside a list, struct or map, or it holds a map.
pub fn converted(ty: &FieldType) -> bool {
    let nested = matches!(
        ty,
        FieldType::List(_) | FieldType::Struct(_) | FieldType::Map(_)
    );
    any(ty)
        || nested
            && holds(ty, &|t| {
                matches!(t, FieldType::Date | FieldType::Timestamp { .. })
            })
        || has_map(ty)
}

/// Whether `ty` is or holds a map (whose keys given twice are dropped but the last).
fn has_map(ty: &FieldType) -> bool {
    match ty {
        FieldType::Map(_) => true,
        FieldType::List(item) => has_map(&item.ty),
        FieldType::Struct(fields) => fields.iter().any(|f| has_map(&f.ty)),
        _ => false,
    }
}

/// Whether `ty` is, or holds at any depth, a type `leaf` picks.
fn holds(ty: &FieldType, leaf: &dyn Fn(&FieldType) -> bool) -> bool {
    match ty {
        FieldType::List(item) | FieldType::Map(item) => holds(&item.ty, leaf),
        FieldType::Struct(fields) => fields.iter().any(|f| holds(&f.ty, leaf)),
        t => leaf(t),
    }
}

/// Converts a text column (CSV and text input: a blank cell is null) to `spec`'s type, which
/// is a decimal or an integer; rows that do not convert are null and listed in `errors` with
/// the field's name.
pub fn from_text(col: &StringArray, spec: &FieldSpec, errors: &mut RowErrors) -> ArrayRef {
    let leaf = Leaf::of(&spec.ty, &spec.name, false).expect("a decimal or integer field");
    leaf.convert(col, &|i| i, errors)
}

/// The kind of value a leaf holds.
#[derive(Clone, Copy)]
enum Kind {
    Decimal { precision: u8, scale: i8 },
    Int32,
    Int64,
}

impl Kind {
    /// The value of `text`: a decimal's unscaled value, or an integer.
    fn parse(self, text: &str) -> Result<i128, NumberError> {
        match self {
            Kind::Decimal { precision, scale } => number::decimal(text, precision, scale),
            Kind::Int32 => number::integer(text, i32::MIN.into(), i32::MAX.into()).map(i128::from),
            Kind::Int64 => number::integer(text, i64::MIN, i64::MAX).map(i128::from),
        }
    }

    fn name(self) -> String {
        match self {
            Kind::Decimal { precision, scale } => format!("decimal({precision},{scale})"),
            Kind::Int32 => "int32".into(),
            Kind::Int64 => "int64".into(),
        }
    }
}

/// One field (at any depth) being converted.
struct Leaf<'a> {
    name: &'a str,
    kind: Kind,
    /// JSON input: a blank string is not a number (it was a dead letter with arrow-json's own
    /// parser); a value that fails is 0, not null, so a non-nullable child holds no null
    /// where its parent is valid (the row is a dead letter anyway).
    json: bool,
}

impl<'a> Leaf<'a> {
    fn of(ty: &FieldType, name: &'a str, json: bool) -> Option<Leaf<'a>> {
        let kind = match ty {
            FieldType::Decimal { precision, scale } => Kind::Decimal {
                precision: *precision,
                scale: *scale,
            },
            FieldType::Int32 => Kind::Int32,
            FieldType::Int64 => Kind::Int64,
            _ => return None,
        };
        Some(Leaf { name, kind, json })
    }

    /// Converts `col`; `top` maps a value's index to its top-level row. A row gets one error
    /// per field, however many of its values fail (a record of a million bad list items made
    /// a million messages).
    fn convert(
        &self,
        col: &StringArray,
        top: &dyn Fn(usize) -> usize,
        errors: &mut RowErrors,
    ) -> ArrayRef {
        let type_name = self.kind.name();
        let mut last = None;
        let values = col.iter().enumerate().map(|(i, v)| {
            let v = v?;
            if !self.json && v.trim_ascii().is_empty() {
                return None;
            }
            let why = match self.kind.parse(v) {
                Ok(x) => return Some(x),
                Err(NumberError::Malformed) => "is not a number",
                Err(NumberError::Overflow) => "does not fit its type",
                Err(NumberError::Fraction) => "is not a whole number",
            };
            let row = top(i);
            if last != Some(row) {
                last = Some(row);
                let name = self.name;
                errors.push((
                    row,
                    format!("field `{name}`: {} {why} ({type_name})", shown(v)),
                ));
            }
            self.json.then_some(0)
        });
        match self.kind {
            Kind::Decimal { precision, scale } => {
                let array: Decimal128Array = values.collect();
                Arc::new(
                    array
                        .with_precision_and_scale(precision, scale)
                        .expect("precision and scale checked with the schema"),
                )
            }
            // The parser kept each value in its type's range.
            Kind::Int32 => Arc::new(values.map(|v| v.map(|x| x as i32)).collect::<Int32Array>()),
            Kind::Int64 => Arc::new(values.map(|v| v.map(|x| x as i64)).collect::<Int64Array>()),
        }
    }
}

/// The type arrow-json reads `spec` as: its Arrow type with every decimal and integer, at any
/// depth, read as text.
pub fn read_type(spec: &FieldSpec) -> DataType {
    let field = |s: &FieldSpec| Arc::new(Field::new(s.name.clone(), read_type(s), s.nullable));
    match (&spec.ty, spec.arrow_type()) {
        (FieldType::Decimal { .. } | FieldType::Int32 | FieldType::Int64, _) => DataType::Utf8,
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

/// Converts a column of JSON input read as [`read_type`] to `spec`'s type: its decimals and
/// integers, at any depth, parsed from their text, and its nested dates and timestamps
/// checked. A row with a value that does not convert or is out of range is listed in `errors`
/// (once per field).
pub fn convert(col: &ArrayRef, spec: &FieldSpec, errors: &mut RowErrors) -> ArrayRef {
    convert_at(col, spec, &spec.name, &|i| i, errors)
}

/// [`convert`] at one level: `path` names `col` in errors (`items[].price`,
/// `attrs{}`), `top` maps an index of `col` to its top-level row. (Recursion follows the
/// schema's nesting, which the schema file fixes, not the input.)
fn convert_at(
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
        FieldType::Decimal { .. } | FieldType::Int32 | FieldType::Int64 => {
            let leaf = Leaf::of(&spec.ty, path, true).expect("a decimal or integer field");
            leaf.convert(col.as_string::<i32>(), top, errors)
        }
        // Only nested ones come here (see `converted`).
        FieldType::Date | FieldType::Timestamp { .. } => {
            let named = FieldSpec {
                name: path.to_string(),
                ..spec.clone()
            };
            let mut found = Vec::new();
            if let FieldType::Date = spec.ty {
                check_date_range(col.as_ref(), &named, &mut found);
            } else {
                check_timestamp_range(col.as_ref(), &named, &mut found);
            }
            let mut last = None;
            for (i, why) in found {
                let row = top(i);
                if last != Some(row) {
                    last = Some(row);
                    errors.push((row, why));
                }
            }
            col.clone()
        }
        FieldType::List(item) => {
            let list = col.as_list::<i32>();
            let offsets = list.offsets();
            let values = convert_at(
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
                .map(|(f, c)| convert_at(c, f, &format!("{path}.{}", f.name), top, errors))
                .collect();
            let fields: Fields = fields.iter().map(|f| Arc::new(f.arrow_field())).collect();
            Arc::new(StructArray::new(fields, columns, st.nulls().cloned()))
        }
        FieldType::Map(value) => {
            let map = col.as_map();
            let (offsets, entries) = last_key_wins(map.offsets(), map.entries());
            let offsets = &offsets;
            let values = convert_at(
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

/// A map's entries with only the last of each key given twice in one map (as JSON parsers and
/// arrow-json's structs keep the last value of a key). Readers refuse a map with a key twice:
/// DuckDB fails the whole file ("Map keys must be unique"), Spark the query.
fn last_key_wins(
    offsets: &arrow::buffer::OffsetBuffer<i32>,
    entries: &StructArray,
) -> (arrow::buffer::OffsetBuffer<i32>, StructArray) {
    let keys = entries.column(0).as_string::<i32>();
    let mut keep: Option<Vec<bool>> = None;
    let mut seen = std::collections::HashSet::new();
    for w in offsets.windows(2) {
        let (a, b) = (w[0] as usize, w[1] as usize);
        if b - a < 2 {
            continue;
        }
        // Later entries win: walk back, dropping a key seen after it.
        seen.clear();
        for i in (a..b).rev() {
            let dup = if b - a <= 16 {
                (i + 1..b).any(|j| keys.value(j) == keys.value(i))
            } else {
                !seen.insert(keys.value(i))
            };
            if dup {
                keep.get_or_insert_with(|| vec![true; keys.len()])[i] = false;
            }
        }
    }
    let Some(keep) = keep else {
        return (offsets.clone(), entries.clone());
    };
    // An offset moves down by the entries dropped before it.
    let mut kept_before = Vec::with_capacity(keep.len() + 1);
    kept_before.push(0i32);
    for k in &keep {
        kept_before.push(kept_before[kept_before.len() - 1] + i32::from(*k));
    }
    let offsets = arrow::buffer::OffsetBuffer::new(
        offsets
            .iter()
            .map(|&o| kept_before[o as usize])
            .collect::<Vec<i32>>()
            .into(),
    );
    let entries = arrow::compute::filter(entries, &arrow::array::BooleanArray::from(keep))
        .expect("filter by a mask of equal length");
    (offsets, entries.as_struct().clone())
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// A JSON number with a fraction in an integer field is a dead letter naming the field, at
    /// the top level (the fast path and arrow-json's side alike) and inside a list or struct;
    /// whole numbers however written are taken exactly. arrow-json cut `1.9` to 1 without a
    /// word. CSV cells follow the same rule.
    #[test]
    fn integers_with_a_fraction_are_dead_letters_at_any_depth() {
        use crate::decode::{Chunk, DecodeOptions, InputKind, RecordDecoder};
        let schema = |toml: &str| {
            Arc::new(
                crate::schema::RepoSchema::parse(toml, std::path::Path::new("i.toml")).unwrap(),
            )
        };
        let flat = schema(
            "name = \"i\"\n[[fields]]\nname = \"n\"\ntype = \"int64\"\n\
             [[fields]]\nname = \"s\"\ntype = \"int32\"\n",
        );
        let input = "{\"n\":1.9,\"s\":1}\n\
                     {\"n\":7.0,\"s\":7e2}\n\
                     {\"n\":9007199254740993.0,\"s\":\"12.0\"}\n\
                     {\"n\":1,\"s\":2147483647.5}\n\
                     {\"n\":-0.5}\n\
                     {\"n\":1,\"s\":2147483648}\n";
        let want_dead = [
            (1, "field `n`: `1.9` is not a whole number (int64)"),
            (4, "field `s`: `2147483647.5` is not a whole number (int32)"),
            (5, "field `n`: `-0.5` is not a whole number (int64)"),
            (6, "field `s`: `2147483648` does not fit its type (int32)"),
        ];
        for reference in [false, true] {
            let mut d = RecordDecoder::new(flat.clone(), DecodeOptions::default(), None).unwrap();
            if reference {
                d = d.reference_json();
            }
            let out = d.decode(&Chunk::of(input));
            let dead: Vec<(u64, &str)> = out
                .dead
                .iter()
                .map(|d| (d.position.line, d.reason.as_str()))
                .collect();
            assert_eq!(dead, want_dead, "reference only: {reference}");
            assert!(out.dead.iter().all(|d| d.class() == "type"));
            let batch = arrow::compute::concat_batches(&d.output_schema(), &out.batches).unwrap();
            let n = batch
                .column(0)
                .as_primitive::<arrow::datatypes::Int64Type>();
            let s = batch
                .column(1)
                .as_primitive::<arrow::datatypes::Int32Type>();
            assert_eq!(n.values().to_vec(), [7, 9_007_199_254_740_993]);
            assert_eq!(s.values().to_vec(), [700, 12]);
        }

        let nested = schema(
            "name = \"i\"\n[[fields]]\nname = \"counts\"\ntype = \"list<int32>\"\n\
             [[fields]]\nname = \"line\"\ntype = \"struct\"\n\
             fields = [{ name = \"qty\", type = \"int64\", nullable = false }]\n",
        );
        let mut d = RecordDecoder::new(nested, DecodeOptions::default(), None).unwrap();
        let out = d.decode(&Chunk::of(
            "{\"counts\":[1,2.0,3e1],\"line\":{\"qty\":4.0}}\n\
             {\"counts\":[1,2.5,3.5]}\n\
             {\"line\":{\"qty\":0.25}}\n",
        ));
        let dead: Vec<(u64, &str)> = out
            .dead
            .iter()
            .map(|d| (d.position.line, d.reason.as_str()))
            .collect();
        assert_eq!(
            dead,
            [
                (2, "field `counts[]`: `2.5` is not a whole number (int32)"),
                (3, "field `line.qty`: `0.25` is not a whole number (int64)"),
            ]
        );
        let batch = &out.batches[0];
        let counts = batch.column(0).as_list::<i32>().value(0);
        assert_eq!(
            counts
                .as_primitive::<arrow::datatypes::Int32Type>()
                .values()
                .to_vec(),
            [1, 2, 30]
        );
        let qty = batch.column(1).as_struct().column(0).clone();
        assert_eq!(
            qty.as_primitive::<arrow::datatypes::Int64Type>().value(0),
            4
        );

        let csv = DecodeOptions {
            kind: InputKind::Csv {
                delimiter: b',',
                header: false,
            },
            ..Default::default()
        };
        let mut d = RecordDecoder::new(flat, csv, None).unwrap();
        let out = d.decode(&Chunk::of("7.0,1\n1.9,1\n,\n"));
        assert_eq!(out.dead.len(), 1, "{:?}", out.dead);
        assert_eq!(
            out.dead[0].reason,
            "field `n`: `1.9` is not a whole number (int64)"
        );
        let n = out.batches[0]
            .column(0)
            .as_primitive::<arrow::datatypes::Int64Type>();
        assert_eq!((n.value(0), n.is_null(1)), (7, true));
    }

    /// Dates and timestamps inside a list, struct or map are checked against years 1 to 9999
    /// like top-level ones (arrow reads `+275760-09-13`, which readers then fail on); a row's
    /// bad values in two fields give both reasons.
    #[test]
    fn nested_dates_and_timestamps_out_of_range_are_dead_letters() {
        use crate::decode::{Chunk, DecodeOptions, RecordDecoder};
        let schema = crate::schema::RepoSchema::parse(
            "name = \"n\"\n[[fields]]\nname = \"days\"\ntype = \"list<date>\"\n\
             [[fields]]\nname = \"ev\"\ntype = \"struct\"\n\
             fields = [{ name = \"at\", type = \"timestamp\" }, { name = \"n\", type = \"int32\" }]\n\
             [[fields]]\nname = \"m\"\ntype = \"map<string,date>\"\n",
            std::path::Path::new("n.toml"),
        )
        .unwrap();
        let mut d = RecordDecoder::new(Arc::new(schema), DecodeOptions::default(), None).unwrap();
        let out = d.decode(&Chunk::of(
            "{\"days\":[\"2024-01-01\",\"9999-12-31\"],\"ev\":{\"at\":\"2024-01-01T00:00:00Z\"},\"m\":{\"a\":\"0001-01-01\"}}\n\
             {\"days\":[\"2024-01-01\",\"+275760-09-13\"]}\n\
             {\"ev\":{\"at\":253402300800000}}\n\
             {\"m\":{\"a\":\"2024-01-01\",\"b\":\"0000-12-31\"}}\n\
             {\"ev\":{\"at\":\"0000-01-01T00:00:00Z\",\"n\":1.5}}\n",
        ));
        let dead: Vec<(u64, &str)> = out
            .dead
            .iter()
            .map(|d| (d.position.line, d.reason.as_str()))
            .collect();
        assert_eq!(
            dead,
            [
                (
                    2,
                    "field `days[]`: date 100000000 days from 1970-01-01 is out of range (years 1 to 9999)"
                ),
                (
                    3,
                    "field `ev.at`: timestamp value 253402300800000 is out of range (years 1 to 9999)"
                ),
                (
                    4,
                    "field `m{}`: date 0000-12-31 is out of range (years 1 to 9999)"
                ),
                (
                    5,
                    "field `ev.at`: timestamp value -62167219200000 is out of range (years 1 to 9999); \
                     field `ev.n`: `1.5` is not a whole number (int32)"
                ),
            ]
        );
        assert!(out.dead.iter().all(|d| d.class() == "type"));
        assert_eq!(out.rows(), 1);
    }

    /// A key given twice in one map keeps its last value, as a key given twice in an object
    /// does at the top level and in structs: a map with a key twice made DuckDB refuse the
    /// whole file ("Map keys must be unique"). An earlier value that a later one replaces is
    /// not checked.
    #[test]
    fn a_map_key_given_twice_keeps_its_last_value() {
        use crate::decode::{Chunk, DecodeOptions, RecordDecoder};
        let schema = crate::schema::RepoSchema::parse(
            "name = \"m\"\n[[fields]]\nname = \"m\"\ntype = \"map<string,int32>\"\n\
             [[fields]]\nname = \"s\"\ntype = \"struct\"\n\
             fields = [{ name = \"tags\", type = \"map<string,string>\" }]\n",
            std::path::Path::new("m.toml"),
        )
        .unwrap();
        let many: Vec<String> = (0..40).map(|i| format!("\"k{}\":{i}", i % 20)).collect();
        let input = format!(
            "{{\"m\":{{\"a\":1,\"b\":2,\"a\":3}},\"s\":{{\"tags\":{{\"x\":\"1\",\"x\":\"2\"}}}}}}\n\
             {{\"m\":{{\"a\":\"x\",\"a\":4}}}}\n\
             {{\"m\":{{}},\"s\":{{\"tags\":{{\"y\":\"1\"}}}}}}\n\
             {{\"m\":{{{}}}}}\n",
            many.join(",")
        );
        let mut d = RecordDecoder::new(Arc::new(schema), DecodeOptions::default(), None).unwrap();
        let out = d.decode(&Chunk::of(&input));
        assert!(out.dead.is_empty(), "{:?}", out.dead);
        let batch = &out.batches[0];
        let entries = |col: &ArrayRef, row: usize| -> Vec<(String, String)> {
            let m = col.as_map();
            if m.is_null(row) {
                return Vec::new();
            }
            let v = m.value(row);
            let keys = v.column(0).as_string::<i32>();
            let values = arrow::compute::cast(v.column(1), &DataType::Utf8).unwrap();
            let values = values.as_string::<i32>();
            (0..v.len())
                .map(|i| (keys.value(i).to_string(), values.value(i).to_string()))
                .collect()
        };
        let pairs = |p: &[(&str, &str)]| -> Vec<(String, String)> {
            p.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let m = batch.column(0);
        assert_eq!(entries(m, 0), pairs(&[("b", "2"), ("a", "3")]));
        assert_eq!(entries(m, 1), pairs(&[("a", "4")]));
        assert_eq!(entries(m, 2), pairs(&[]));
        let last: Vec<(String, String)> = (20..40)
            .map(|i| (format!("k{}", i % 20), i.to_string()))
            .collect();
        assert_eq!(entries(m, 3), last);
        let tags = batch.column(1).as_struct().column(0).clone();
        assert_eq!(entries(&tags, 0), pairs(&[("x", "2")]));
        assert_eq!(entries(&tags, 2), pairs(&[("y", "1")]));
        // The arrays stay valid for writers.
        batch.column(0).to_data().validate_full().unwrap();
        batch.column(1).to_data().validate_full().unwrap();
    }
}
