//! A table's data file holds the rows of one partition's values: its log entry names them once
//! for the file (its first row's). Rows routed to one folder whose values differ (two long
//! values whose cut names' 64-bit hashes meet, which values crafted for it can make happen)
//! go to files of their own in that folder, so no row reads back with another's value.

use std::collections::BTreeMap;

use arrow::array::UInt32Array;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

/// A file's partition values, as its table's log names them.
pub(super) type Values = BTreeMap<String, Option<String>>;

/// Where `rows`, routed to folder `path`, are written, keyed as a partition's open files are:
/// `path` for rows with the values of the file open there (or any, when none is), else
/// `path`, a line break and a number (see [`folder`]) for a file of its own in that folder,
/// one per values. `open`: the values of the file open under a key, if any. `columns`: the
/// table's partition columns (none: no table, or not partitioned). Only a path holding a cut
/// name (`~` and its hash) is looked at row by row: other names spell their values whole.
pub(super) fn by_values<'a>(
    path: String,
    rows: RecordBatch,
    columns: &[(String, usize)],
    open: impl Fn(&str) -> Option<&'a Values>,
) -> Result<Vec<(String, RecordBatch)>, ArrowError> {
    if columns.is_empty() || !path.contains('~') || rows.num_rows() == 0 {
        return Ok(vec![(path, rows)]);
    }
    // The distinct values in their rows' order, with their rows: one, but for crafted values.
    let mut seen: Vec<(Values, Vec<u32>)> = Vec::new();
    for (i, v) in crate::table::partition_values_of_each(columns, &rows)
        .into_iter()
        .enumerate()
    {
        match seen.iter_mut().find(|(s, _)| *s == v) {
            Some((_, at)) => at.push(i as u32),
            None => seen.push((v, vec![i as u32])),
        }
    }
    let fits = |key: &str, v: &Values| open(key).is_none_or(|o| o == v);
    if seen.len() == 1 && fits(&path, &seen[0].0) {
        return Ok(vec![(path, rows)]);
    }
    let mut out: Vec<(String, RecordBatch)> = Vec::with_capacity(seen.len());
    for (v, at) in seen {
        let key = (0..)
            .map(|n| match n {
                0 => path.clone(),
                n => format!("{path}\n{n}"),
            })
            .find(|k| fits(k, &v) && out.iter().all(|(taken, _)| taken != k))
            .expect("a free key");
        let part = arrow::compute::take_record_batch(&rows, &UInt32Array::from(at))?;
        out.push((key, part));
    }
    Ok(out)
}

/// The folder of a key [`by_values`] gave, and the number of the file of its own there.
pub(super) fn folder(key: &str) -> (&str, Option<&str>) {
    match key.split_once('\n') {
        Some((path, n)) => (path, Some(n)),
        None => (key, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow::array::{Array, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    fn rows(hosts: &[&str]) -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new("host", DataType::Utf8, true),
            Field::new("n", DataType::Int64, false),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(StringArray::from(hosts.to_vec())),
                Arc::new(Int64Array::from_iter_values(0..hosts.len() as i64)),
            ],
        )
        .unwrap()
    }

    fn values(host: &str) -> Values {
        [("host".to_string(), Some(host.to_string()))].into()
    }

    fn hosts(b: &RecordBatch) -> Vec<String> {
        let a = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
        (0..a.len()).map(|i| a.value(i).to_string()).collect()
    }

    /// Rows of two values in one cut folder (as a hash collision routes them): files of
    /// their own, the file open there keeping its values' rows; a later item's rows find the
    /// same files. A folder without a cut name, or without a table, is not looked at.
    #[test]
    fn rows_of_other_values_in_one_folder_get_files_of_their_own() {
        let columns = vec![("host".to_string(), 0)];
        let path = "host=aaaa~0123456789abcdef/".to_string();
        let mut open: BTreeMap<String, Values> = BTreeMap::new();
        let got = by_values(path.clone(), rows(&["a", "b", "a"]), &columns, |k| {
            open.get(k)
        })
        .unwrap();
        let keys: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, [path.as_str(), &format!("{path}\n1")]);
        assert_eq!(hosts(&got[0].1), ["a", "a"]);
        assert_eq!(hosts(&got[1].1), ["b"]);
        assert_eq!(folder(&got[1].0), (path.as_str(), Some("1")));
        open.insert(got[0].0.clone(), values("a"));
        open.insert(got[1].0.clone(), values("b"));
        // The next item: "b" first, then "c".
        let got = by_values(path.clone(), rows(&["b", "c"]), &columns, |k| open.get(k)).unwrap();
        let keys: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, [format!("{path}\n1"), format!("{path}\n2")]);
        // One value, the file open there another's: a file of its own too.
        let got = by_values(path.clone(), rows(&["c"]), &columns, |k| open.get(k)).unwrap();
        assert_eq!(got[0].0, format!("{path}\n2"));
        let got = by_values(path.clone(), rows(&["a", "a"]), &columns, |k| open.get(k)).unwrap();
        assert_eq!((got.len(), got[0].0.as_str()), (1, path.as_str()));
        // Not looked at: a whole name, no partition columns.
        let whole = "host=a/".to_string();
        let got = by_values(whole.clone(), rows(&["a", "b"]), &columns, |k| open.get(k)).unwrap();
        assert_eq!(got.len(), 1);
        let got = by_values(path.clone(), rows(&["a", "b"]), &[], |k| open.get(k)).unwrap();
        assert_eq!(got.len(), 1);
    }
}
