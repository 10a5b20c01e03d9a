//! Dates and timestamps held to years 1 to 9999, the span every reader and RFC 3339 text hold:
//! a date column's days, a timestamp column's instants, and a zoned timestamp's wall-clock time
//! in its zone too (JSON writes that time: `9999-12-31T12:00Z` in `+14:00` is year 10000
//! there, which readers refuse; pyarrow converts a Parquet file's instants to their zone alike).

use arrow::array::timezone::Tz;
use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Int64Type, TimeUnit};
use chrono::{DateTime, Datelike, NaiveDate};

use super::columns::RowErrors;

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

/// The widest offset a zone can have from UTC (chrono's and arrow's stay under a day).
const DAY_S: i64 = 86_400;

/// Whether the wall-clock time of the instant `v` (in units `per_second`) in zone `tz` is
/// outside years 1 to 9999. Only instants within a day of either end are looked at.
fn local_out_of_range(v: i64, per_second: i64, tz: &Tz) -> bool {
    let s = v.div_euclid(per_second);
    if (MIN_S + DAY_S..END_S - DAY_S).contains(&s) {
        return false;
    }
    DateTime::from_timestamp(s, 0)
        .is_none_or(|utc| !(1..=9999).contains(&utc.with_timezone(tz).year()))
}

/// The raw values of a timestamp column (seconds, milliseconds or microseconds) or a Date64
/// column outside years 1 to 9999, by row, and the column's unit; nothing for other columns
/// (nanoseconds since 1970 in an i64 span 1677 to 2262). Exact, in the column's unit
/// (compared as f64, the last millisecond of 9999 and the first of 10000 were one number).
/// In a zoned column a value is also outside when its wall-clock time in the zone is: the
/// third item says the instant itself is in range (only the zone's time is not).
pub(super) fn raw_out_of_range(col: &dyn Array) -> (Vec<(usize, i64, bool)>, &'static str) {
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
    let zone = match col.data_type() {
        DataType::Timestamp(_, Some(z)) => z.parse::<Tz>().ok(),
        _ => None,
    };
    let out = ints
        .as_primitive::<Int64Type>()
        .iter()
        .enumerate()
        .filter_map(|(i, v)| {
            let v = v?;
            if !(lo..end).contains(&v) {
                Some((i, v, false))
            } else if zone
                .as_ref()
                .is_some_and(|z| local_out_of_range(v, per_second, z))
            {
                Some((i, v, true))
            } else {
                None
            }
        })
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
    for (i, v, local) in raw_out_of_range(col).0 {
        errors.push((
            i,
            format!(
                "field `{name}`: timestamp value {v} is out of range (years 1 to 9999{})",
                in_zone(col, local)
            ),
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
        .find(|(i, _, _)| seen(*i))
        .map(|(_, v, local)| format!("{kind} value {v} ({unit}){}", in_zone(col, local)))
}

/// `, in zone `+14:00`` when a value is outside only as its zone's wall-clock time.
fn in_zone(col: &dyn Array, local: bool) -> String {
    match col.data_type() {
        DataType::Timestamp(_, Some(z)) if local => format!(" in zone `{z}`"),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
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
