//! The checks of a stage's dates, times and durations, case by case: paths, hidden values,
//! slices, zones.

use super::*;
use std::sync::Arc;

use arrow::array::{
    DictionaryArray, FixedSizeListArray, Int32Array, ListArray, MapArray, StringArray, StructArray,
    TimestampMillisecondArray, TimestampNanosecondArray,
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
/// an array may hold values under its nulls (`CASE ... THEN column`, casts of lists).
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
    let spelled = Schema::new(vec![Field::new("c", ts("+0930"), true)]);
    let err = check_zones(&spelled).unwrap_err();
    assert!(err.contains("`+0930` as `+09:30`"), "{err}");
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

/// A sliced list keeps every item of the whole: only the window its entries span is looked
/// at (a batch is sliced while its failing rows are isolated), and so with maps, fixed-size
/// lists and dictionaries, each with nulls hiding a bad value.
#[test]
fn only_the_items_a_slice_spans_and_its_non_null_entries_are_looked_at() {
    let list: ArrayRef = Arc::new(ListArray::new(
        at_field(),
        OffsetBuffer::from_lengths([1, 1, 1]),
        ms(vec![Some(PAST), Some(0), Some(-PAST)]),
        None,
    ));
    assert!(check("l", &list.slice(0, 1)).is_some());
    assert_eq!(
        check("l", &list.slice(1, 1)),
        None,
        "the bad items lie outside it"
    );
    assert!(check("l", &list.slice(1, 2)).is_some());

    let fixed: ArrayRef = Arc::new(FixedSizeListArray::new(
        at_field(),
        2,
        ms(vec![Some(0), Some(1), Some(2), Some(PAST)]),
        Some(NullBuffer::from(vec![true, false])),
    ));
    assert_eq!(check("f", &fixed), None);

    let entries = |values: Vec<Option<i64>>, keys: Vec<i64>| {
        StructArray::new(
            Fields::from(vec![
                Field::new(
                    "key",
                    DataType::Timestamp(TimeUnit::Millisecond, None),
                    false,
                ),
                Field::new("value", DataType::Int32, true),
            ]),
            vec![
                Arc::new(TimestampMillisecondArray::from(keys)),
                Arc::new(Int32Array::from(vec![Some(1); values.len()])),
            ],
            None,
        )
    };
    let map = |keys: Vec<i64>, nulls: Option<NullBuffer>| -> ArrayRef {
        let e = entries(vec![Some(0); keys.len()], keys);
        Arc::new(MapArray::new(
            Arc::new(Field::new(
                "entries",
                DataType::Struct(e.fields().clone()),
                false,
            )),
            OffsetBuffer::from_lengths([1, 1]),
            e,
            nulls,
            false,
        ))
    };
    assert_eq!(
        check("m", &map(vec![0, PAST], None)).unwrap(),
        format!("field `m{{}} key`: timestamp value {PAST} (ms) is out of range (years 1 to 9999)")
    );
    let hidden = map(vec![0, PAST], Some(NullBuffer::from(vec![true, false])));
    assert_eq!(check("m", &hidden), None);
    assert_eq!(check("m", &map(vec![PAST, 0], None).slice(1, 1)), None);

    // A null key whose slot names the bad value.
    let dict: ArrayRef = Arc::new(DictionaryArray::<Int32Type>::new(
        Int32Array::from(vec![Some(0), None]),
        ms(vec![Some(0), Some(PAST)]),
    ));
    let null_slot = DictionaryArray::<Int32Type>::new(
        Int32Array::new(vec![0, 1].into(), Some(NullBuffer::from(vec![true, false]))),
        ms(vec![Some(0), Some(PAST)]),
    );
    assert_eq!(check("d", &dict), None);
    assert_eq!(check("d", &(Arc::new(null_slot) as ArrayRef)), None);
}

/// A zoned timestamp is written as its wall-clock time in its zone: an instant in range whose
/// time there is past year 9999 (or before year 1) fails its row, inside a struct too.
#[test]
fn a_zoned_value_out_of_range_in_its_zone_is_named() {
    let zoned = |tz: &str, v: i64| -> ArrayRef {
        Arc::new(TimestampMillisecondArray::from(vec![Some(0), Some(v)]).with_timezone(tz))
    };
    // 9999-12-31T12:00Z is 10000-01-01T02:00 at +14:00; 9999-12-31T09:00Z is 23:00 there.
    let noon = PAST - 12 * 3_600_000;
    assert_eq!(check("z", &zoned("+14:00", PAST - 15 * 3_600_000)), None);
    assert_eq!(
        check("z", &zoned("+14:00", noon)).unwrap(),
        format!(
            "field `z`: timestamp value {noon} (ms) in zone `+14:00` is out of range (years 1 to 9999)"
        )
    );
    assert!(check("z", &zoned("Pacific/Kiritimati", noon)).is_some());
    assert_eq!(check("z", &zoned("-10:00", noon)), None);
    // The first hour of year 1 is year 0 west of UTC.
    let first = -62_135_596_800_000;
    assert!(check("z", &zoned("-01:00", first)).is_some());
    assert_eq!(check("z", &zoned("+01:00", first)), None);
    let st: ArrayRef = Arc::new(StructArray::new(
        Fields::from(vec![Field::new(
            "at",
            DataType::Timestamp(TimeUnit::Millisecond, Some("+14:00".into())),
            true,
        )]),
        vec![zoned("+14:00", noon)],
        None,
    ));
    assert!(check("s", &st).unwrap().starts_with("field `s.at`: "));
}
