//! Dates and timestamps a stage computes, checked at any depth of its output (a struct's
//! field, a list's items, a map's values) before anything is written: a value outside years 1
//! to 9999 fails its row, as the decoder fails such input. Path templates cannot name a folder
//! for it, readers fail on the file (pyarrow cannot convert it), and JSON output would hold
//! arrow-json's error message in its place. A float past the range of nanoseconds is saturated
//! by DataFusion (`to_timestamp(1e300)` is `i64::MAX` ns, year 2262, without a word): such a
//! value fails its row too, as does a time of day outside one day (`arrow_cast` makes one of
//! any integer). Only values a reader sees count: one under a null struct or outside every
//! list's span is not looked at. A timestamp type in a zone arrow does not know is refused
//! when the stage is planned ([`check_zones`]).
//!
//! A stage's types are kept as DataFusion gives them: a job's written types are recorded, and
//! changing them (seconds to milliseconds, nanoseconds to microseconds) would make every job
//! that ran before refuse to start (`evolution.rs`). OPERATIONS says how to write seconds and
//! nanoseconds as a reader-friendly timestamp (`arrow_cast`).

use arrow::array::{Array, ArrayRef, AsArray, OffsetSizeTrait};
use arrow::buffer::{NullBuffer, OffsetBuffer};
use arrow::datatypes::{
    DataType, DurationMillisecondType, DurationSecondType, Time32MillisecondType, Time32SecondType,
    Time64MicrosecondType, Time64NanosecondType, TimeUnit, TimestampNanosecondType,
};

/// Which values of an array a reader sees (`None`: all of them; its own nulls aside).
type Seen = Option<Vec<bool>>;

/// The first date or timestamp of column `name`, at any depth, that fails its row (out of
/// years 1 to 9999, or saturated), described with its path (`s.at`, `l[]`, `m{}`). A work
/// list, not recursion: the depth is the stage's output type's.
pub fn check(name: &str, col: &ArrayRef) -> Option<String> {
    let mut work: Vec<(ArrayRef, String, Seen)> = vec![(col.clone(), name.to_string(), None)];
    while let Some((arr, path, seen)) = work.pop() {
        if !holds_time(arr.data_type()) {
            continue;
        }
        let len = arr.len();
        match arr.data_type() {
            DataType::Struct(_) => {
                let st = arr.as_struct();
                let inner = within(&seen, st.nulls(), len);
                for (f, c) in st.fields().iter().zip(st.columns()) {
                    work.push((c.clone(), format!("{path}.{}", f.name()), inner.clone()));
                }
            }
            DataType::List(_) => {
                let l = arr.as_list::<i32>();
                let spans = spans(l.offsets(), l.nulls(), &seen, l.values().len());
                work.push((l.values().clone(), format!("{path}[]"), Some(spans)));
            }
            DataType::LargeList(_) => {
                let l = arr.as_list::<i64>();
                let spans = spans(l.offsets(), l.nulls(), &seen, l.values().len());
                work.push((l.values().clone(), format!("{path}[]"), Some(spans)));
            }
            DataType::FixedSizeList(_, n) => {
                let l = arr.as_fixed_size_list();
                let n = (*n).max(1) as usize;
                let inner = within(&seen, l.nulls(), len);
                let spans = (0..l.values().len())
                    .map(|j| {
                        inner
                            .as_ref()
                            .is_none_or(|v| v.get(j / n).copied().unwrap_or(false))
                    })
                    .collect();
                work.push((l.values().clone(), format!("{path}[]"), Some(spans)));
            }
            DataType::Map(..) => {
                let m = arr.as_map();
                let entries = m.entries();
                let spans = spans(m.offsets(), m.nulls(), &seen, entries.len());
                let spans = within(&Some(spans), entries.nulls(), entries.len());
                work.push((
                    entries.column(0).clone(),
                    format!("{path}{{}} key"),
                    spans.clone(),
                ));
                work.push((entries.column(1).clone(), format!("{path}{{}}"), spans));
            }
            DataType::Dictionary(..) => {
                let d = arr.as_any_dictionary();
                let values = d.values();
                if values.is_empty() {
                    continue; // no value to look at (and arrow's key normalising needs one)
                }
                let mut used = vec![false; values.len()];
                for (i, k) in d.normalized_keys().into_iter().enumerate() {
                    if arr.is_valid(i) && seen.as_ref().is_none_or(|s| s[i]) && k < used.len() {
                        used[k] = true;
                    }
                }
                work.push((values.clone(), path, Some(used)));
            }
            _ => {
                let visible = |i: usize| seen.as_ref().is_none_or(|s| s[i]);
                if let Some(why) = saturated(arr.as_ref(), &path, &visible) {
                    return Some(why);
                }
                if let Some(why) = outside_a_day(arr.as_ref(), &path, &visible) {
                    return Some(why);
                }
                if let Some(why) = too_long(arr.as_ref(), &path, &visible) {
                    return Some(why);
                }
                if let Some(what) = crate::decode::first_out_of_range(arr.as_ref(), &visible) {
                    return Some(format!(
                        "field `{path}`: {what} is out of range (years 1 to 9999)"
                    ));
                }
            }
        }
    }
    None
}

/// Refuses a stage's output (at start-up) holding a timestamp in a time zone arrow does not
/// know (`arrow_cast(x, 'Timestamp(Millisecond, Some("Nowhere"))')`): every write of it would
/// fail, and the partition with it, for ever.
pub fn check_zones(schema: &arrow::datatypes::Schema) -> Result<(), String> {
    let mut work: Vec<(&DataType, String)> = schema
        .fields()
        .iter()
        .map(|f| (f.data_type(), f.name().clone()))
        .collect();
    while let Some((ty, path)) = work.pop() {
        match ty {
            DataType::Timestamp(_, Some(tz))
                if tz.parse::<arrow::array::timezone::Tz>().is_err() =>
            {
                return Err(format!(
                    "column `{path}`: `{tz}` is not a time zone (an IANA name such as \
                     `Europe/Berlin`, or an offset such as `+02:00`)"
                ));
            }
            DataType::Struct(fields) => work.extend(
                fields
                    .iter()
                    .map(|f| (f.data_type(), format!("{path}.{}", f.name()))),
            ),
            DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
                work.push((f.data_type(), format!("{path}[]")))
            }
            DataType::Map(f, _) => work.push((f.data_type(), format!("{path}{{}}"))),
            DataType::Dictionary(_, v) => work.push((v, path)),
            _ => {}
        }
    }
    Ok(())
}

/// Whether `ty` is, or holds at any depth, a date or timestamp. (Union, run-end and list-view
/// types hold none a stage can make: DataFusion's scalar functions do not build them.)
fn holds_time(ty: &DataType) -> bool {
    let mut work = vec![ty];
    while let Some(ty) = work.pop() {
        match ty {
            DataType::Date32
            | DataType::Date64
            | DataType::Timestamp(..)
            | DataType::Time32(_)
            | DataType::Time64(_)
            | DataType::Duration(_) => return true,
            DataType::Struct(fields) => work.extend(fields.iter().map(|f| f.data_type())),
            DataType::List(f)
            | DataType::LargeList(f)
            | DataType::FixedSizeList(f, _)
            | DataType::Map(f, _) => work.push(f.data_type()),
            DataType::Dictionary(_, v) => work.push(v),
            _ => {}
        }
    }
    false
}

/// The values of a struct's children a reader sees: where the struct is seen and not null.
fn within(seen: &Seen, nulls: Option<&NullBuffer>, len: usize) -> Seen {
    if seen.is_none() && nulls.is_none_or(|n| n.null_count() == 0) {
        return None;
    }
    Some(
        (0..len)
            .map(|i| seen.as_ref().is_none_or(|s| s[i]) && nulls.is_none_or(|n| n.is_valid(i)))
            .collect(),
    )
}

/// The values of a list's (or map's) child a reader sees: inside the span of an entry that is
/// seen and not null.
fn spans<O: OffsetSizeTrait>(
    offsets: &OffsetBuffer<O>,
    nulls: Option<&NullBuffer>,
    seen: &Seen,
    values: usize,
) -> Vec<bool> {
    let mut out = vec![false; values];
    for (i, w) in offsets.windows(2).enumerate() {
        if seen.as_ref().is_some_and(|s| !s[i]) || nulls.is_some_and(|n| n.is_null(i)) {
            continue;
        }
        let (a, b) = (w[0].as_usize().min(values), w[1].as_usize().min(values));
        out[a..b.max(a)].fill(true);
    }
    out
}

/// The first time of day of `col` (named `name`) outside one day, among those `seen` keeps,
/// described: `arrow_cast(x, 'Time32(Second)')` takes any integer, and a time past midnight
/// has no reading (JSON output held arrow-json's error text in its place).
fn outside_a_day(col: &dyn Array, name: &str, seen: &dyn Fn(usize) -> bool) -> Option<String> {
    let (values, unit): (Vec<Option<i64>>, _) = match col.data_type() {
        DataType::Time32(TimeUnit::Second) => (
            col.as_primitive::<Time32SecondType>()
                .iter()
                .map(|v| v.map(i64::from))
                .collect(),
            TimeUnit::Second,
        ),
        DataType::Time32(TimeUnit::Millisecond) => (
            col.as_primitive::<Time32MillisecondType>()
                .iter()
                .map(|v| v.map(i64::from))
                .collect(),
            TimeUnit::Millisecond,
        ),
        DataType::Time64(TimeUnit::Microsecond) => (
            col.as_primitive::<Time64MicrosecondType>().iter().collect(),
            TimeUnit::Microsecond,
        ),
        DataType::Time64(TimeUnit::Nanosecond) => (
            col.as_primitive::<Time64NanosecondType>().iter().collect(),
            TimeUnit::Nanosecond,
        ),
        _ => return None,
    };
    let per_second = match unit {
        TimeUnit::Second => 1,
        TimeUnit::Millisecond => 1_000,
        TimeUnit::Microsecond => 1_000_000,
        TimeUnit::Nanosecond => 1_000_000_000,
    };
    let day = 86_400 * per_second;
    values
        .iter()
        .enumerate()
        .find(|(i, v)| v.is_some_and(|v| !(0..day).contains(&v)) && seen(*i))
        .map(|(_, v)| {
            format!(
                "field `{name}`: time value {} ({}) is outside one day",
                v.expect("found above"),
                match unit {
                    TimeUnit::Second => "s",
                    TimeUnit::Millisecond => "ms",
                    TimeUnit::Microsecond => "us",
                    TimeUnit::Nanosecond => "ns",
                }
            )
        })
}

/// The first duration of `col` (named `name`) past what a reader's clock type holds (chrono's,
/// which arrow formats with: about 292 million years, in milliseconds), among those `seen`
/// keeps, described. JSON and CSV output held `<invalid>` in its place.
fn too_long(col: &dyn Array, name: &str, seen: &dyn Fn(usize) -> bool) -> Option<String> {
    let (values, unit): (Vec<Option<i64>>, _) = match col.data_type() {
        DataType::Duration(TimeUnit::Second) => (
            col.as_primitive::<DurationSecondType>().iter().collect(),
            "s",
        ),
        DataType::Duration(TimeUnit::Millisecond) => (
            col.as_primitive::<DurationMillisecondType>()
                .iter()
                .collect(),
            "ms",
        ),
        _ => return None,
    };
    // chrono's span: `i64::MAX` milliseconds either way.
    let fits = |v: i64| match unit {
        "s" => v.unsigned_abs() <= (i64::MAX / 1000) as u64,
        _ => v != i64::MIN,
    };
    values
        .iter()
        .enumerate()
        .find(|(i, v)| v.is_some_and(|v| !fits(v)) && seen(*i))
        .map(|(_, v)| {
            format!(
                "field `{name}`: duration value {} ({unit}) is too long",
                v.expect("found above")
            )
        })
}

/// The first value of `col` (named `name`) that DataFusion saturated, among those `seen`
/// keeps, described.
fn saturated(col: &dyn Array, name: &str, seen: &dyn Fn(usize) -> bool) -> Option<String> {
    if !matches!(
        col.data_type(),
        DataType::Timestamp(TimeUnit::Nanosecond, _)
    ) {
        return None;
    }
    col.as_primitive::<TimestampNanosecondType>()
        .iter()
        .enumerate()
        .find(|(i, v)| v.is_some_and(|v| v == i64::MAX || v == i64::MIN) && seen(*i))
        .map(|(_, v)| {
            format!(
                "field `{name}`: timestamp value {} (ns) is at the end of its range (a value \
                 past it, saturated)",
                v.expect("found above")
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow::array::{
        DictionaryArray, FixedSizeListArray, Int32Array, ListArray, MapArray, StringArray,
        StructArray, TimestampMillisecondArray, TimestampNanosecondArray,
    };
    use arrow::buffer::OffsetBuffer;
    use arrow::datatypes::{Field, Fields, Int32Type};

    /// 10000-01-01T00:00:00Z in milliseconds: the first instant past year 9999.
    const PAST: i64 = 253_402_300_800_000;

    fn ms(values: Vec<Option<i64>>) -> ArrayRef {
        Arc::new(TimestampMillisecondArray::from(values))
    }

    fn at_field() -> Arc<Field> {
        Arc::new(Field::new(
            "at",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            true,
        ))
    }

    #[test]
    fn a_saturated_nanosecond_value_is_named() {
        let ok: ArrayRef = Arc::new(TimestampNanosecondArray::from(vec![
            Some(-500),
            None,
            Some(i64::MAX - 1),
        ]));
        assert_eq!(check("t", &ok), None);
        let sat: ArrayRef = Arc::new(TimestampNanosecondArray::from(vec![
            Some(1),
            Some(i64::MIN),
        ]));
        assert!(check("t", &sat).unwrap().contains("saturated"), "{sat:?}");
    }

    #[test]
    fn an_out_of_range_value_at_any_depth_is_named_by_its_path() {
        let top = ms(vec![Some(0), Some(PAST)]);
        assert_eq!(
            check("at", &top).unwrap(),
            format!("field `at`: timestamp value {PAST} (ms) is out of range (years 1 to 9999)")
        );
        assert_eq!(check("at", &ms(vec![Some(PAST - 1), None])), None);

        let st: ArrayRef = Arc::new(StructArray::new(
            Fields::from(vec![at_field()]),
            vec![ms(vec![Some(0), Some(PAST)])],
            None,
        ));
        assert!(check("s", &st).unwrap().starts_with("field `s.at`: "));

        let list: ArrayRef = Arc::new(ListArray::new(
            at_field(),
            OffsetBuffer::from_lengths([1, 2]),
            ms(vec![Some(0), Some(1), Some(-PAST)]),
            None,
        ));
        assert!(check("l", &list).unwrap().starts_with("field `l[]`: "));
        // Sliced to its first entry, the bad item is outside every span.
        assert_eq!(check("l", &list.slice(0, 1)), None);

        let fixed: ArrayRef = Arc::new(FixedSizeListArray::new(
            at_field(),
            2,
            ms(vec![Some(0), Some(1), Some(2), Some(PAST)]),
            None,
        ));
        assert!(check("f", &fixed).unwrap().starts_with("field `f[]`: "));
        assert_eq!(check("f", &fixed.slice(0, 1)), None);

        let entries = StructArray::new(
            Fields::from(vec![
                Field::new("key", DataType::Utf8, false),
                Field::new("value", DataType::Date32, true),
            ]),
            vec![
                Arc::new(StringArray::from(vec!["a", "b"])),
                Arc::new(arrow::array::Date32Array::from(vec![
                    Some(0),
                    Some(3_000_000),
                ])),
            ],
            None,
        );
        let map: ArrayRef = Arc::new(MapArray::new(
            Arc::new(Field::new(
                "entries",
                DataType::Struct(entries.fields().clone()),
                false,
            )),
            OffsetBuffer::from_lengths([2]),
            entries,
            None,
            false,
        ));
        assert_eq!(
            check("m", &map).unwrap(),
            "field `m{}`: date 3000000 days from 1970-01-01 is out of range (years 1 to 9999)"
        );

        let dict: ArrayRef = Arc::new(DictionaryArray::<Int32Type>::new(
            Int32Array::from(vec![0, 0, 1]),
            ms(vec![Some(0), Some(PAST)]),
        ));
        assert!(check("d", &dict).unwrap().starts_with("field `d`: "));
        // The bad value is in the dictionary, but no key names it.
        let unused: ArrayRef = Arc::new(DictionaryArray::<Int32Type>::new(
            Int32Array::from(vec![0, 0]),
            ms(vec![Some(0), Some(PAST)]),
        ));
        assert_eq!(check("d", &unused), None);
    }

    /// A value a reader cannot see (under a null struct, in a null list's span) fails no row:
    /// DataFusion may compute a value for every row and null the ones a `CASE` leaves out.
    #[test]
    fn values_under_a_null_parent_are_not_looked_at() {
        let hidden = StructArray::new(
            Fields::from(vec![at_field()]),
            vec![ms(vec![Some(0), Some(PAST)])],
            Some(NullBuffer::from(vec![true, false])),
        );
        let arr: ArrayRef = Arc::new(hidden.clone());
        assert_eq!(check("s", &arr), None);
        // Two levels down: a struct inside a null struct.
        let outer: ArrayRef = Arc::new(StructArray::new(
            Fields::from(vec![Field::new("s", hidden.data_type().clone(), true)]),
            vec![Arc::new(StructArray::new(
                Fields::from(vec![at_field()]),
                vec![ms(vec![Some(0), Some(PAST)])],
                None,
            ))],
            Some(NullBuffer::from(vec![true, false])),
        ));
        assert_eq!(check("o", &outer), None);
        let list: ArrayRef = Arc::new(ListArray::new(
            at_field(),
            OffsetBuffer::from_lengths([1, 1]),
            ms(vec![Some(0), Some(PAST)]),
            Some(NullBuffer::from(vec![true, false])),
        ));
        assert_eq!(check("l", &list), None);
        let shown = StructArray::new(
            Fields::from(vec![at_field()]),
            vec![ms(vec![Some(0), Some(PAST)])],
            Some(NullBuffer::from(vec![false, true])),
        );
        let shown: ArrayRef = Arc::new(shown);
        assert!(check("s", &shown).is_some());
    }

    #[test]
    fn a_time_of_day_outside_one_day_is_named() {
        use arrow::array::{Time32SecondArray, Time64NanosecondArray};
        let ok: ArrayRef = Arc::new(Time32SecondArray::from(vec![Some(0), None, Some(86_399)]));
        assert_eq!(check("t", &ok), None);
        let late: ArrayRef = Arc::new(Time32SecondArray::from(vec![Some(0), Some(86_400)]));
        assert_eq!(
            check("t", &late).unwrap(),
            "field `t`: time value 86400 (s) is outside one day"
        );
        let early: ArrayRef = Arc::new(Time64NanosecondArray::from(vec![Some(-1)]));
        assert!(check("t", &early).unwrap().contains("time value -1 (ns)"));
    }

    #[test]
    fn a_time_zone_arrow_does_not_know_is_refused_by_its_column() {
        use arrow::datatypes::Schema;
        let ts = |tz: &str| DataType::Timestamp(TimeUnit::Millisecond, Some(tz.into()));
        let good = Schema::new(vec![
            Field::new("a", ts("Europe/Berlin"), true),
            Field::new("b", ts("+02:00"), true),
        ]);
        assert_eq!(check_zones(&good), Ok(()));
        let nested = Schema::new(vec![Field::new(
            "s",
            DataType::Struct(Fields::from(vec![Field::new(
                "at",
                ts("Nowhere/Zone"),
                true,
            )])),
            true,
        )]);
        let err = check_zones(&nested).unwrap_err();
        assert!(
            err.starts_with("column `s.at`: `Nowhere/Zone` is not a time zone"),
            "{err}"
        );
    }

    #[test]
    fn a_duration_past_what_readers_hold_is_named_and_an_empty_dictionary_is_no_panic() {
        use arrow::array::{DurationMillisecondArray, DurationSecondArray};
        let ok: ArrayRef = Arc::new(DurationSecondArray::from(vec![Some(i64::MAX / 1000), None]));
        assert_eq!(check("d", &ok), None);
        let long: ArrayRef = Arc::new(DurationSecondArray::from(vec![Some(i64::MAX)]));
        assert_eq!(
            check("d", &long).unwrap(),
            format!("field `d`: duration value {} (s) is too long", i64::MAX)
        );
        let min: ArrayRef = Arc::new(DurationMillisecondArray::from(vec![Some(i64::MIN)]));
        assert!(check("d", &min).is_some());
        // A stage is tried on an empty batch when it is planned: a dictionary of dates with no
        // values at all.
        let empty: ArrayRef = Arc::new(DictionaryArray::<Int32Type>::new(
            Int32Array::from(Vec::<i32>::new()),
            ms(vec![]),
        ));
        assert_eq!(check("e", &empty), None);
    }
}
