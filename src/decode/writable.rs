//! Values an output format cannot hold as they are, found while their records are known, so
//! each is its record's dead letter rather than a file (and with it the whole batch, at every
//! retry) that fails to encode.
//!
//! ORC: a timestamp in the second before 1970 with a fraction of a millisecond or more
//! (`1969-12-31T23:59:59.5Z`) has no encoding that readers decode back to it
//! (ORC-763: seconds and nanoseconds are stored apart, and readers move a negative second with
//! nanoseconds past 999,999 by one); the ORC writer refuses the batch.
//!
//! Tables: a value of a partition column longer than [`MAX_PARTITION_VALUE`] (the table's
//! log and the commit's checkpoint record it for every file).

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{
    DataType, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
};

/// Rows of `batch` (top-level timestamp columns) an ORC file cannot hold, each with its
/// reason, in row order; a row appears once.
pub fn orc_refusals(batch: &RecordBatch) -> Vec<(usize, String)> {
    let mut refused: Vec<(usize, String)> = Vec::new();
    for (field, col) in batch.schema().fields().iter().zip(batch.columns()) {
        let (values, per_second, nanos_per_unit): (&[i64], i64, i64) = match field.data_type() {
            DataType::Timestamp(TimeUnit::Millisecond, _) => (
                col.as_primitive::<TimestampMillisecondType>().values(),
                1_000,
                1_000_000,
            ),
            DataType::Timestamp(TimeUnit::Microsecond, _) => (
                col.as_primitive::<TimestampMicrosecondType>().values(),
                1_000_000,
                1_000,
            ),
            DataType::Timestamp(TimeUnit::Nanosecond, _) => (
                col.as_primitive::<TimestampNanosecondType>().values(),
                1_000_000_000,
                1,
            ),
            // Whole seconds have no fraction.
            _ => continue,
        };
        for (row, &v) in values.iter().enumerate() {
            if col.is_null(row) {
                continue;
            }
            let seconds = v.div_euclid(per_second);
            let nanos = v.rem_euclid(per_second) * nanos_per_unit;
            if seconds == -1 && nanos > 999_999 {
                refused.push((
                    row,
                    format!(
                        "field `{}`: timestamp value {v} is in the second before 1970 with a \
                         fraction, which ORC cannot hold (ORC-763)",
                        field.name()
                    ),
                ));
            }
        }
    }
    refused.sort_by_key(|(row, _)| *row);
    refused.dedup_by_key(|(row, _)| *row);
    refused
}

/// The longest value of a table's partition column, in bytes as JSON writes it (escaped):
/// the table's log records it for every file, and so does a commit's checkpoint, so a commit
/// of many files with a value of tens of MiB made records past what is read back, and the
/// partition stopped for good. Such a column holds few distinct, short values; a longer one
/// is a dead letter.
pub const MAX_PARTITION_VALUE: usize = 1024;

/// The most a record's partition values take together, in bytes as JSON writes them: with at
/// most [`MAX_PARTITION_COLUMNS`] columns, every commit's records stay within what is read
/// back (`store::RECORD_CAP`; see `commit::bounds`).
pub const MAX_PARTITION_VALUES: usize = 4096;

/// The most partition columns a table of a job takes (refused at start past it).
pub const MAX_PARTITION_COLUMNS: usize = 16;

/// The length of `s` written as a JSON string's contents (serde_json's escapes: `"` and `\`
/// and the short control escapes take 2 bytes, other control characters 6).
pub fn json_len(s: &str) -> usize {
    s.bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0..0x20 => 6,
            _ => 1,
        })
        .sum()
}

/// The rows of `batch` a file cannot hold, each once with its reason, in row order: with
/// `orc`, [`orc_refusals`]; and those whose string value in one of `partition_columns` is
/// longer than [`MAX_PARTITION_VALUE`], or whose values there pass [`MAX_PARTITION_VALUES`]
/// together (both escaped, as JSON writes them).
pub fn refusals(
    batch: &RecordBatch,
    orc: bool,
    partition_columns: &[usize],
) -> Vec<(usize, String)> {
    let mut refused = if orc { orc_refusals(batch) } else { Vec::new() };
    let mut totals = vec![
        0usize;
        if partition_columns.is_empty() {
            0
        } else {
            batch.num_rows()
        }
    ];
    for &i in partition_columns {
        let col = batch.column(i);
        let lengths: Box<dyn Fn(usize) -> usize> = match col.data_type() {
            DataType::Utf8 => {
                let a = col.as_string::<i32>();
                Box::new(move |r| json_len(a.value(r)))
            }
            DataType::LargeUtf8 => {
                let a = col.as_string::<i64>();
                Box::new(move |r| json_len(a.value(r)))
            }
            DataType::Utf8View => {
                let a = col.as_string_view();
                Box::new(move |r| json_len(a.value(r)))
            }
            // Numbers, dates and times print short (a date or an integer: 20 bytes at most).
            _ => {
                for t in totals.iter_mut() {
                    *t += 20;
                }
                continue;
            }
        };
        for row in (0..batch.num_rows()).filter(|&r| col.is_valid(r)) {
            let len = lengths(row);
            totals[row] += len;
            if len > MAX_PARTITION_VALUE {
                refused.push((
                    row,
                    format!(
                        "field `{}`: a value of {len} bytes (escaped as JSON) in a partition \
                         column of the table (at most {MAX_PARTITION_VALUE}: the table's log \
                         records it for every file)",
                        batch.schema().field(i).name()
                    ),
                ));
            }
        }
    }
    for (row, total) in totals.into_iter().enumerate() {
        if total > MAX_PARTITION_VALUES {
            refused.push((
                row,
                format!(
                    "partition values of {total} bytes in all (escaped as JSON; at most \
                     {MAX_PARTITION_VALUES}: the table's log records them for every file)"
                ),
            ));
        }
    }
    refused.sort_by_key(|(row, _)| *row);
    refused.dedup_by_key(|(row, _)| *row);
    refused
}

/// `batch` without the rows [`refusals`] finds, each added to `refused` as (its record:
/// `records[row]`, reason); `None` when no row is left.
pub fn without_refused(
    batch: RecordBatch,
    orc: bool,
    partition_columns: &[usize],
    records: &[usize],
    refused: &mut Vec<(usize, String)>,
) -> Option<RecordBatch> {
    if !orc && partition_columns.is_empty() {
        return Some(batch);
    }
    let unwritable = refusals(&batch, orc, partition_columns);
    if unwritable.is_empty() {
        return Some(batch);
    }
    let mut keep = vec![true; batch.num_rows()];
    for (row, reason) in unwritable {
        keep[row] = false;
        refused.push((records[row], reason));
    }
    let mask = arrow::array::BooleanArray::from(keep);
    let b = arrow::compute::filter_record_batch(&batch, &mask)
        .expect("filter by a mask of equal length");
    (b.num_rows() > 0).then_some(b)
}

/// A restored batch (spilled by a run that wrote another format, or without the table) without
/// the rows a file cannot hold ([`refusals`]), and their dead letters: the row as a JSON
/// object (its record is not kept) at `position`, the batch's first. `None` when it holds
/// none.
pub fn restored(
    batch: &RecordBatch,
    (orc, partition_columns): (bool, &[usize]),
    position: crate::decode::framing::Position,
) -> Option<(RecordBatch, Vec<crate::decode::DeadLetter>)> {
    let refused = refusals(batch, orc, partition_columns);
    if refused.is_empty() {
        return None;
    }
    let mut keep = vec![true; batch.num_rows()];
    let mut dead = Vec::with_capacity(refused.len());
    for (row, reason) in refused {
        keep[row] = false;
        let mut w = arrow::json::LineDelimitedWriter::new(Vec::new());
        let record = match w.write(&batch.slice(row, 1)).and_then(|()| w.finish()) {
            Ok(()) => {
                let mut json = w.into_inner();
                json.pop_if(|b| *b == b'\n');
                json
            }
            Err(e) => format!("(the row could not be shown: {e})").into_bytes(),
        };
        dead.push(crate::decode::DeadLetter {
            position,
            reason: format!(
                "{reason} (a row restored from a spill: the record is shown as its row)"
            ),
            record,
        });
    }
    let kept = arrow::compute::filter_record_batch(batch, &arrow::array::BooleanArray::from(keep))
        .expect("filter by a mask of equal length");
    Some((kept, dead))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::TimestampMicrosecondArray;
    use std::sync::Arc;

    #[test]
    fn the_second_before_1970_with_a_fraction_is_refused_for_orc() {
        let col = TimestampMicrosecondArray::from(vec![
            Some(-500_000),
            Some(-1_000_000),
            Some(-999_001),
            Some(-999_000),
            None,
            Some(0),
            Some(-1_500_000),
        ])
        .with_timezone("UTC");
        let batch = RecordBatch::try_from_iter([("t", Arc::new(col) as _)]).unwrap();
        let rows: Vec<usize> = orc_refusals(&batch).into_iter().map(|(r, _)| r).collect();
        // -0.999001 s is -1 s + 999,000 ns: held; -0.999 s is -1 s + 1,000,000 ns: not.
        assert_eq!(rows, [0, 3]);
    }

    /// Restored rows ORC cannot hold are dead letters showing the row; the others are kept.
    #[test]
    fn restored_rows_orc_cannot_hold_are_dead_letters_showing_the_row() {
        let col =
            TimestampMicrosecondArray::from(vec![Some(-500_000), Some(0)]).with_timezone("UTC");
        let batch = RecordBatch::try_from_iter([("t", Arc::new(col) as _)]).unwrap();
        let at = crate::decode::framing::Position { line: 0, offset: 7 };
        let (kept, dead) = restored(&batch, (true, &[]), at).unwrap();
        assert_eq!(kept.num_rows(), 1);
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].position, at);
        let row: serde_json::Value = serde_json::from_slice(&dead[0].record).unwrap();
        assert_eq!(row["t"], "1969-12-31T23:59:59.500Z");
        assert!(dead[0].reason.contains("ORC-763"), "{}", dead[0].reason);
        assert!(restored(&kept, (true, &[]), at).is_none());
    }

    /// A partition column's value longer than the limit is refused, once per row; a null,
    /// a value at the limit, and other columns are not.
    #[test]
    fn partition_values_past_the_limit_are_refused() {
        let long = "x".repeat(MAX_PARTITION_VALUE + 1);
        let at = "y".repeat(MAX_PARTITION_VALUE);
        let host = arrow::array::StringArray::from(vec![
            Some("a"),
            Some(long.as_str()),
            None,
            Some(at.as_str()),
        ]);
        let other = arrow::array::StringArray::from(vec![long.as_str(); 4]);
        let batch = RecordBatch::try_from_iter([
            ("host", Arc::new(host) as _),
            ("other", Arc::new(other) as _),
        ])
        .unwrap();
        let refused = refusals(&batch, false, &[0]);
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert_eq!(refused[0].0, 1);
        assert!(
            refused[0].1.contains("field `host`: a value of 1025 bytes"),
            "{}",
            refused[0].1
        );
        assert!(refusals(&batch, false, &[]).is_empty());
    }

    /// The limits count bytes as JSON writes them: 200 control characters take 1,200, past
    /// the value limit; five values of 1,000 bytes take 5,000 together, past the limit of a
    /// record's values, while four do not. Before, 1,024 control characters passed (6,144
    /// bytes in every record naming the file) and so did any number of columns.
    #[test]
    fn partition_values_are_measured_as_json_writes_them() {
        assert_eq!(json_len("a\"\\\n\u{1}é"), 1 + 2 + 2 + 2 + 6 + 2);
        let control = "\u{1}".repeat(200);
        let col = |v: &str| Arc::new(arrow::array::StringArray::from(vec![v, "a"])) as _;
        let batch = RecordBatch::try_from_iter([("c", col(&control))]).unwrap();
        let refused = refusals(&batch, false, &[0]);
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert!(
            refused[0].1.contains("a value of 1200 bytes"),
            "{}",
            refused[0].1
        );
        let long = "x".repeat(1000);
        let wide = |n: usize| {
            RecordBatch::try_from_iter((0..n).map(|i| (format!("c{i}"), col(&long)))).unwrap()
        };
        assert!(refusals(&wide(4), false, &[0, 1, 2, 3]).is_empty());
        let refused = refusals(&wide(5), false, &[0, 1, 2, 3, 4]);
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert_eq!(refused[0].0, 0);
        assert!(
            refused[0]
                .1
                .contains("partition values of 5000 bytes in all"),
            "{}",
            refused[0].1
        );
    }
}
