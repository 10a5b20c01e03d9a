//! Column types no format writes as they are, refused before any data moves, naming the
//! column at any depth (`x.a`, `l[]`): a stage can make any Arrow type (`arrow_cast`), and a
//! writer given one of these panicked (a dictionary of string views in Parquet, a dictionary
//! with 8-bit keys that overflowed when batches were joined), refused every write (the
//! partition rewound for ever), or wrote what readers misread (a dictionary of fixed-size
//! binary in Parquet, `0000` for a decimal of negative scale in JSON, a struct with a field
//! name twice). Run-end encoded, list-view and union columns are refused too: the checks of a
//! stage's values (`stage::temporal`) and of these types do not look inside them. What each
//! format refuses besides (ORC's primitive columns, CSV's flat ones) is in its own module.
//! [`find`] is the walk over a schema's nested types that every such check shares.

use arrow::datatypes::{DataType, IntervalUnit, Schema};

use super::{FormatError, FormatKind};

/// Refuses the first column of `schema`, at any depth, that `kind` cannot write.
pub(crate) fn check(schema: &Schema, kind: FormatKind) -> Result<(), FormatError> {
    let refusal = find(schema, |ty, path| {
        refused(ty, kind).map(|reason| FormatError::Unsupported {
            format: kind.name(),
            field: path.to_string(),
            ty: ty.to_string(),
            reason,
        })
    });
    refusal.map_or(Ok(()), Err)
}

/// The first answer `f` gives for a column type of `schema`, at any depth, in field order,
/// with each type's path (`s.a`, `l[]`, `m{} key`, `m{}`; a dictionary's values keep their
/// column's). A work list, not recursion: the depth is the schema's. Shared by the checks of
/// types at start (here, a stage's zones, a Delta table's types).
pub(crate) fn find<T>(
    schema: &Schema,
    mut f: impl FnMut(&DataType, &str) -> Option<T>,
) -> Option<T> {
    let mut work: Vec<(&DataType, String)> = schema
        .fields()
        .iter()
        .rev()
        .map(|f| (f.data_type(), f.name().clone()))
        .collect();
    while let Some((ty, path)) = work.pop() {
        if let Some(found) = f(ty, &path) {
            return Some(found);
        }
        match ty {
            DataType::Struct(fields) => work.extend(
                fields
                    .iter()
                    .rev()
                    .map(|f| (f.data_type(), format!("{path}.{}", f.name()))),
            ),
            DataType::List(f)
            | DataType::LargeList(f)
            | DataType::FixedSizeList(f, _)
            | DataType::ListView(f)
            | DataType::LargeListView(f) => work.push((f.data_type(), format!("{path}[]"))),
            DataType::Map(f, _) => match f.data_type() {
                DataType::Struct(kv) if kv.len() == 2 => {
                    work.push((kv[1].data_type(), format!("{path}{{}}")));
                    work.push((kv[0].data_type(), format!("{path}{{}} key")));
                }
                other => work.push((other, format!("{path}{{}}"))),
            },
            DataType::Dictionary(_, v) => work.push((v, path)),
            _ => {}
        }
    }
    None
}

/// Why `kind` cannot write a column of type `ty` (its children are looked at on their own).
fn refused(ty: &DataType, kind: FormatKind) -> Option<String> {
    match ty {
        DataType::Dictionary(key, _)
            if !matches!(
                key.as_ref(),
                DataType::Int32 | DataType::Int64 | DataType::UInt32 | DataType::UInt64
            ) =>
        {
            Some(format!(
                "a dictionary with {key} keys overflows when batches are joined (past a few \
                 hundred or thousand distinct values): use Int32 keys, or no dictionary \
                 (Parquet chooses its own)"
            ))
        }
        DataType::Dictionary(_, value) if !dictionary_value(value) => Some(format!(
            "a dictionary of {value} values is not written as such: cast the column to \
             {value}, or to a dictionary of strings, binary or numbers"
        )),
        DataType::Decimal32(_, s)
        | DataType::Decimal64(_, s)
        | DataType::Decimal128(_, s)
        | DataType::Decimal256(_, s)
            if *s < 0 =>
        {
            Some(
                "a decimal of negative scale is written wrongly (JSON `0000`) or not at all \
                 (Parquet): use a scale of 0 or more"
                    .into(),
            )
        }
        // A stage can make one (`arrow_cast(NULL, 'Struct()')`): parquet-rs refuses it at
        // each file's open, so every partition replayed for ever.
        DataType::Struct(fields) if fields.is_empty() && kind == FormatKind::Parquet => Some(
            "Parquet cannot hold a struct with no fields: drop the column, or give the struct \
             a field"
                .into(),
        ),
        DataType::Struct(fields) => {
            let mut names: Vec<&str> = fields.iter().map(|f| f.name().as_str()).collect();
            names.sort_unstable();
            names.windows(2).find(|w| w[0] == w[1]).map(|w| {
                format!(
                    "the struct names field `{}` twice: readers keep one of them, or refuse \
                     the file",
                    w[0]
                )
            })
        }
        DataType::RunEndEncoded(..)
        | DataType::ListView(_)
        | DataType::LargeListView(_)
        | DataType::Union(..) => Some(
            "columns of this encoding are not written as such, nor are the values inside them \
             checked: cast the column to its plain form (its values' type, or a List)"
                .into(),
        ),
        DataType::Map(entries, _) if kind == FormatKind::Json => match entries.data_type() {
            DataType::Struct(kv)
                if kv.first().is_some_and(|k| {
                    !matches!(
                        k.data_type(),
                        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                    )
                }) =>
            {
                Some(format!(
                    "a JSON object's keys are strings; arrow-json's writer refuses a map with \
                     {} keys (every batch, for ever): cast the keys to strings",
                    kv[0].data_type()
                ))
            }
            _ => None,
        },
        DataType::Interval(IntervalUnit::MonthDayNano) if kind == FormatKind::Parquet => Some(
            "the Parquet writer does not write month-day-nanosecond intervals: cast the column \
             to a string or a duration"
                .into(),
        ),
        _ => None,
    }
}

/// Dictionary values every writer takes: strings, binary and numbers.
fn dictionary_value(ty: &DataType) -> bool {
    ty.is_numeric()
        || matches!(
            ty,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Binary | DataType::LargeBinary
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{Field, Fields};

    fn one(name: &str, ty: DataType) -> Schema {
        Schema::new(vec![Field::new(name, ty, true)])
    }

    fn reason(schema: &Schema, kind: FormatKind) -> String {
        check(schema, kind).unwrap_err().to_string()
    }

    #[test]
    fn types_a_writer_would_refuse_panic_on_or_misread_are_refused_by_their_path() {
        let dict = |k: DataType, v: DataType| DataType::Dictionary(Box::new(k), Box::new(v));
        for ok in [
            dict(DataType::Int32, DataType::Utf8),
            dict(DataType::UInt64, DataType::Float64),
            DataType::Decimal128(10, 2),
            DataType::Interval(IntervalUnit::YearMonth),
        ] {
            assert!(
                check(&one("x", ok.clone()), FormatKind::Parquet).is_ok(),
                "{ok}"
            );
        }
        let narrow = reason(
            &one("x", dict(DataType::Int8, DataType::Utf8)),
            FormatKind::Json,
        );
        assert!(
            narrow.contains("field `x`") && narrow.contains("Int8 keys"),
            "{narrow}"
        );
        let view = reason(
            &one("x", dict(DataType::Int32, DataType::Utf8View)),
            FormatKind::Parquet,
        );
        assert!(view.contains("Utf8View values"), "{view}");
        let fsb = dict(DataType::Int32, DataType::FixedSizeBinary(2));
        assert!(check(&one("x", fsb), FormatKind::Parquet).is_err());
        let negative = one("x", DataType::Decimal128(5, -3));
        assert!(reason(&negative, FormatKind::Json).contains("negative scale"));
        let twice = DataType::Struct(Fields::from(vec![
            Field::new("a", DataType::Int32, true),
            Field::new("a", DataType::Int64, true),
        ]));
        let nested = one(
            "s",
            DataType::List(std::sync::Arc::new(Field::new("item", twice, true))),
        );
        let err = reason(&nested, FormatKind::Parquet);
        assert!(
            err.contains("field `s[]`") && err.contains("`a` twice"),
            "{err}"
        );
        let ree = DataType::RunEndEncoded(
            std::sync::Arc::new(Field::new("run_ends", DataType::Int32, false)),
            std::sync::Arc::new(Field::new(
                "values",
                dict(DataType::Int8, DataType::Utf8),
                true,
            )),
        );
        let err = reason(&one("r", ree), FormatKind::Json);
        assert!(
            err.contains("field `r`") && err.contains("plain form"),
            "{err}"
        );
        let empty = DataType::Struct(Fields::empty());
        let err = reason(&one("e", empty.clone()), FormatKind::Parquet);
        assert!(err.contains("no fields"), "{err}");
        let inner = DataType::List(std::sync::Arc::new(Field::new("item", empty.clone(), true)));
        assert!(reason(&one("l", inner), FormatKind::Parquet).contains("field `l[]`"));
        assert!(check(&one("e", empty.clone()), FormatKind::Json).is_ok());
        // What the refusal spares: parquet-rs refuses such a file at its open, every time.
        let refused = parquet::arrow::ArrowWriter::try_new(
            Vec::new(),
            std::sync::Arc::new(one("e", empty)),
            None,
        );
        assert!(refused.is_err());
        let interval = one("i", DataType::Interval(IntervalUnit::MonthDayNano));
        assert!(reason(&interval, FormatKind::Parquet).contains("month-day-nanosecond"));
        assert!(check(&interval, FormatKind::Json).is_ok());
        // A map with keys that are not strings: JSON only (Parquet holds it).
        let map = |key: DataType| {
            let kv = Fields::from(vec![
                Field::new("key", key, false),
                Field::new("value", DataType::Int64, true),
            ]);
            one(
                "m",
                DataType::Map(
                    std::sync::Arc::new(Field::new("entries", DataType::Struct(kv), false)),
                    false,
                ),
            )
        };
        let err = reason(&map(DataType::Int64), FormatKind::Json);
        assert!(
            err.contains("field `m`") && err.contains("Int64 keys"),
            "{err}"
        );
        assert!(check(&map(DataType::Int64), FormatKind::Parquet).is_ok());
        assert!(check(&map(DataType::Utf8), FormatKind::Json).is_ok());
    }
}
