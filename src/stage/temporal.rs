//! Dates and timestamps a stage computes, checked at any depth of its output (a struct's
//! field, a list's items, a map's keys and values) before anything is written: a value
//! outside years 1 to 9999 fails its row, as the decoder fails such input. Path templates
//! cannot name a folder for it, readers fail on the file (pyarrow cannot convert it), and JSON
//! output would hold arrow-json's error message in its place. A float past the range of
//! nanoseconds is saturated by DataFusion (`to_timestamp(1e300)` is `i64::MAX` ns, year 2262,
//! without a word): such a value fails its row too, as does a time of day outside one day
//! (`arrow_cast` makes one of any integer) and a duration longer than readers hold. Only
//! values a reader sees count: one under a null struct, a null list or map entry, a null
//! dictionary key, or outside the window a sliced list spans is not looked at. A timestamp
//! type in a zone arrow does not know is refused when the stage is planned ([`check_zones`]).
//!
//! A decimal with more digits than its type's precision fails its row too (arrow's arithmetic
//! does not check its results against the precision it gives them).
//!
//! A stage's types are kept as DataFusion gives them: a job's written types are recorded, and
//! changing them (seconds to milliseconds, nanoseconds to microseconds) would make every job
//! that ran before refuse to start (`evolution.rs`). OPERATIONS says how to write seconds and
//! nanoseconds as a reader-friendly timestamp (`arrow_cast`).

use arrow::array::{Array, ArrayRef, AsArray, OffsetSizeTrait};
use arrow::buffer::{NullBuffer, OffsetBuffer};
use arrow::datatypes::{
    DataType, Decimal128Type, Decimal256Type, Decimal32Type, Decimal64Type, DecimalType,
    DurationMillisecondType, DurationSecondType, Time32MillisecondType, Time32SecondType,
    Time64MicrosecondType, Time64NanosecondType, TimeUnit, TimestampNanosecondType,
};

/// Which values of an array a reader sees (`None`: all of them; its own nulls aside).
type Seen = Option<Vec<bool>>;

/// The first value of column `name`, at any depth, that fails its row (a date or timestamp
/// out of years 1 to 9999 or saturated, a time of day outside one day, a duration too long),
/// described with its path (`s.at`, `l[]`, `m{}`, `m{} key`). A work list, not recursion: the
/// depth is the stage's output type's. A list's (or map's) items are looked at in the window
/// its entries span: a sliced list keeps every item of the whole, and a batch is sliced again
/// and again while its failing rows are isolated.
pub fn check(name: &str, col: &ArrayRef) -> Option<String> {
    let mut work: Vec<(ArrayRef, String, Seen)> = vec![(col.clone(), name.to_string(), None)];
    while let Some((arr, path, seen)) = work.pop() {
        if !holds_checked(arr.data_type()) {
            continue;
        }
        let len = arr.len();
        match arr.data_type() {
            DataType::Struct(_) => {
                let st = arr.as_struct();
                let inner = within(&seen, st.nulls(), len);
                for (f, c) in st.fields().iter().zip(st.columns()) {
                    if holds_checked(f.data_type()) {
                        work.push((c.clone(), format!("{path}.{}", f.name()), inner.clone()));
                    }
                }
            }
            DataType::List(_) => {
                let l = arr.as_list::<i32>();
                let (lo, spans) = spans(l.offsets(), l.nulls(), &seen, l.values().len());
                let items = l.values().slice(lo, spans.len());
                work.push((items, format!("{path}[]"), Some(spans)));
            }
            DataType::LargeList(_) => {
                let l = arr.as_list::<i64>();
                let (lo, spans) = spans(l.offsets(), l.nulls(), &seen, l.values().len());
                let items = l.values().slice(lo, spans.len());
                work.push((items, format!("{path}[]"), Some(spans)));
            }
            DataType::FixedSizeList(_, n) => {
                let l = arr.as_fixed_size_list();
                let n = (*n).max(1) as usize;
                // Item j belongs to entry j / n (a slice's items are sliced with it).
                let spans = within(&seen, l.nulls(), len).map(|v| {
                    (0..l.values().len())
                        .map(|j| v.get(j / n) == Some(&true))
                        .collect()
                });
                work.push((l.values().clone(), format!("{path}[]"), spans));
            }
            DataType::Map(..) => {
                let m = arr.as_map();
                let (lo, spans) = spans(m.offsets(), m.nulls(), &seen, m.entries().len());
                let entries = m.entries().slice(lo, spans.len());
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
                if let Some(why) = beyond_precision(arr.as_ref(), &path, &visible) {
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
/// fail, and the partition with it, for ever. An offset spelled other than `±HH:MM` is
/// refused too, naming that spelling: readers such as pyarrow take no other.
pub fn check_zones(schema: &arrow::datatypes::Schema) -> Result<(), String> {
    let bad = crate::format::find_type(schema, |ty, path| match ty {
        DataType::Timestamp(_, Some(tz)) => match crate::schema::zone::canonical(tz) {
            Err(why) => Some(format!("column `{path}`: {why}")),
            Ok(c) if c != tz.as_ref() => Some(format!(
                "column `{path}`: write the offset `{tz}` as `{c}` (readers such as pyarrow \
                 take no other spelling)"
            )),
            Ok(_) => None,
        },
        _ => None,
    });
    bad.map_or(Ok(()), Err)
}

/// Whether `ty` is, or holds at any depth, a date, timestamp, time of day, duration or
/// decimal. (Union, run-end and list-view types are refused at start: `format::types`.)
fn holds_checked(ty: &DataType) -> bool {
    let mut work = vec![ty];
    while let Some(ty) = work.pop() {
        match ty {
            DataType::Date32
            | DataType::Date64
            | DataType::Timestamp(..)
            | DataType::Time32(_)
            | DataType::Time64(_)
            | DataType::Duration(_)
            | DataType::Decimal32(..)
            | DataType::Decimal64(..)
            | DataType::Decimal128(..)
            | DataType::Decimal256(..) => return true,
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

/// The window of a list's (or map's) child that its entries span, as (start, which of the
/// window's values a reader sees: inside the span of an entry that is seen and not null).
fn spans<O: OffsetSizeTrait>(
    offsets: &OffsetBuffer<O>,
    nulls: Option<&NullBuffer>,
    seen: &Seen,
    values: usize,
) -> (usize, Vec<bool>) {
    let lo = offsets.first().map_or(0, |o| o.as_usize()).min(values);
    let hi = offsets.last().map_or(0, |o| o.as_usize()).clamp(lo, values);
    let mut out = vec![false; hi - lo];
    for (i, w) in offsets.windows(2).enumerate() {
        if seen.as_ref().is_some_and(|s| !s[i]) || nulls.is_some_and(|n| n.is_null(i)) {
            continue;
        }
        let (a, b) = (w[0].as_usize().clamp(lo, hi), w[1].as_usize().clamp(lo, hi));
        out[a - lo..b.max(a) - lo].fill(true);
    }
    (lo, out)
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
#[path = "temporal_tests.rs"]
mod tests;

/// The first decimal of `col` (named `name`) with more digits than its type's precision,
/// among those `seen` keeps, described: arrow's arithmetic gives a result a precision of at
/// most 38 (76) digits without checking the values against it (`a * b` of two
/// `decimal(20, 0)`), and readers fail on the file (Spark on all of it).
fn beyond_precision(col: &dyn Array, name: &str, seen: &dyn Fn(usize) -> bool) -> Option<String> {
    fn first<T: DecimalType>(
        col: &dyn Array,
        (p, s): (u8, i8),
        name: &str,
        seen: &dyn Fn(usize) -> bool,
    ) -> Option<String> {
        let a = col.as_primitive::<T>();
        (0..a.len())
            .find(|&i| a.is_valid(i) && seen(i) && !T::is_valid_decimal_precision(a.value(i), p))
            .map(|i| {
                format!(
                    "field `{name}`: {} has more digits than its type, decimal({p}, {s}), holds",
                    T::format_decimal(a.value(i), p, s)
                )
            })
    }
    match *col.data_type() {
        DataType::Decimal32(p, s) => first::<Decimal32Type>(col, (p, s), name, seen),
        DataType::Decimal64(p, s) => first::<Decimal64Type>(col, (p, s), name, seen),
        DataType::Decimal128(p, s) => first::<Decimal128Type>(col, (p, s), name, seen),
        DataType::Decimal256(p, s) => first::<Decimal256Type>(col, (p, s), name, seen),
        _ => None,
    }
}
