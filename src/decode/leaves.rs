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

use super::columns::{shown, RowErrors};
use super::number::{self, NumberError};
use super::range::{check_date_range, check_timestamp_range};
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
            let mut found = Vec::new();
            if let FieldType::Date = spec.ty {
                check_date_range(col.as_ref(), path, &mut found);
            } else {
                check_timestamp_range(col.as_ref(), path, &mut found);
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
        // Later entries win: walk back, dropping a key seen after it. (Clearing costs the
        // set's capacity: one huge map must not make every later row pay for it.)
        if seen.capacity() > 4 * (b - a) {
            seen = std::collections::HashSet::with_capacity(b - a);
        } else {
            seen.clear();
        }
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
#[path = "leaves_tests.rs"]
mod tests;
