//! How far the table holds each of the job's partitions (the `txn` versions of app ids
//! `sluice/<job>/...`), kept at the log's newest version by reading the entries added since
//! (or, when they were cleaned up, the newest checkpoint's `txn`, `metaData` and `protocol`
//! columns and the entries after it). A schema or protocol met on the way is checked. One
//! listing and the new entries per refresh: no per-partition scans of the log.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant, SystemTime};

use arrow::array::{Array, AsArray};
use arrow::datatypes::DataType::{Int32, Int64, Utf8};
use arrow::datatypes::{Int32Type, Int64Type};
use futures::TryStreamExt;
use parquet::arrow::async_reader::{AsyncFileReader, ParquetRecordBatchStreamBuilder};
use parquet::arrow::ProjectionMask;

use super::facts::Facts;
use super::DeltaTable;
use crate::table::TableError;

/// The job's partitions as the log holds them, at one version of it.
#[derive(Debug, Default)]
pub(super) struct Known {
    /// The newest log version read (`None`: nothing read yet).
    pub version: Option<u64>,
    /// Next offset the table holds, per partition key of the job.
    pub txn: HashMap<String, u64>,
    /// When the log was last listed.
    pub listed: Option<Moment>,
}

/// A moment by two clocks: the monotonic one does not count the time a suspended machine
/// slept, the wall clock does (and may be stepped). A span has passed when either says so:
/// judged by the first alone, a machine suspended past the log's retention took its log as
/// just read.
#[derive(Debug, Clone, Copy)]
pub(super) struct Moment {
    at: Instant,
    wall: SystemTime,
}

impl Moment {
    pub fn now() -> Moment {
        Moment {
            at: Instant::now(),
            wall: SystemTime::now(),
        }
    }

    /// Whether `span` has passed since, by either clock.
    pub fn past(&self, span: Duration) -> bool {
        self.at.elapsed() >= span || self.wall.elapsed().is_ok_and(|e| e >= span)
    }
}

impl Known {
    /// The version a new entry goes after.
    pub fn newest(&self) -> u64 {
        self.version.unwrap_or(0)
    }
}

/// A checkpoint row's `txn` (app id, version), `metaData` (its schema and partition columns,
/// as JSON) or `protocol` writer version.
type CheckpointRow = (String, i64, Option<String>, Option<i32>);

/// The entries and complete checkpoints of a listing of `_delta_log/`.
#[derive(Default)]
pub(super) struct Listing {
    entries: BTreeSet<u64>,
    /// Checkpoints whose parts are all there: a classic one (`N.checkpoint.parquet`) or all
    /// `n` parts of a multi-part one (`N.checkpoint.i.n.parquet`).
    pub(super) checkpoints: BTreeMap<u64, Vec<String>>,
}

pub(super) fn listing(names: Vec<String>) -> Listing {
    let mut l = Listing::default();
    let mut parts: BTreeMap<(u64, u64), Vec<String>> = BTreeMap::new();
    for n in names {
        let Some(file) = n.strip_prefix("_delta_log/") else {
            continue;
        };
        if file.len() < 21 || !file.as_bytes()[..20].iter().all(u8::is_ascii_digit) {
            continue;
        }
        // Twenty digits past what a version number holds, or a version no other can
        // follow: no entry of the log this code reads.
        let Ok(v) = file[..20].parse::<u64>() else {
            continue;
        };
        if v == u64::MAX {
            continue;
        }
        match &file[20..] {
            ".json" => {
                l.entries.insert(v);
            }
            ".checkpoint.parquet" => {
                l.checkpoints.insert(v, vec![n.clone()]);
            }
            rest => {
                // `.checkpoint.<i>.<n>.parquet`; anything else (a V2 checkpoint, a `.crc`)
                // is not read.
                let Some(mid) = rest
                    .strip_prefix(".checkpoint.")
                    .and_then(|r| r.strip_suffix(".parquet"))
                else {
                    continue;
                };
                let mut it = mid.split('.');
                if let (Some(i), Some(total), None) = (it.next(), it.next(), it.next()) {
                    if let (Ok(_), Ok(total)) = (i.parse::<u64>(), total.parse::<u64>()) {
                        parts.entry((v, total)).or_default().push(n.clone());
                    }
                }
            }
        }
    }
    for ((v, total), files) in parts {
        if files.len() as u64 == total && !l.checkpoints.contains_key(&v) {
            l.checkpoints.insert(v, files);
        }
    }
    l
}

impl DeltaTable {
    /// The version the log's checkpoint hint (`_delta_log/_last_checkpoint`) names: `None`
    /// without a hint, `Some(None)` for one that names no version this code reads.
    pub(super) fn checkpoint_hint(&self) -> Result<Option<Option<u64>>, crate::store::StoreError> {
        match self.dest.read_record("_delta_log/_last_checkpoint") {
            Ok(b) => Ok(Some(
                serde_json::from_slice::<serde_json::Value>(&b)
                    .ok()
                    .and_then(|h| h.get("version").and_then(serde_json::Value::as_u64)),
            )),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Brings `known` to the log's newest version; `known` changes only when all went well
    /// (a failure halfway leaves it as it was, so the next try reads again).
    pub(super) fn read_log(&self, known: &mut Known) -> Result<(), TableError> {
        // The log is as listed from now on: a pause while its entries are read (longer than
        // its retention, below a checkpoint written meanwhile) ages the listing, not hides.
        let listed = Moment::now();
        // Only names after what is known are listed (the log grows for ever unless cleaned
        // up); the first time, after the last checkpoint's hint.
        let after = match known.version {
            Some(v) => format!("{v:020}.json"),
            None => self
                .checkpoint_hint()?
                .flatten()
                .map(|c| format!("{c:020}"))
                .unwrap_or_default(),
        };
        let mut l = listing(self.dest.list_after("_delta_log/", &after)?);
        if known.version.is_none() && !after.is_empty() && l.checkpoints.is_empty() {
            // The hint names a checkpoint that is not there (any more): list the whole log.
            l = listing(self.dest.list_after("_delta_log/", "")?);
        }
        let from = known.version.map_or(0, |v| v + 1);
        let Some(newest) = l
            .entries
            .last()
            .copied()
            .into_iter()
            .chain(l.checkpoints.keys().copied())
            .max()
        else {
            known.listed = Some(listed);
            return Ok(());
        };
        if known.version.is_some_and(|v| v >= newest) {
            known.listed = Some(listed);
            return Ok(());
        }
        let mut next = Known {
            version: known.version,
            txn: known.txn.clone(),
            listed: None,
        };
        // The newest complete checkpoint since what is known and the entries after it, as
        // readers read the table; else the entries since what is known. An entry below that
        // checkpoint is not what readers see: one written into a name the log's clean-up had
        // freed (a put paused past the retention, landed while it reported failure) holds
        // commits no reader sees. Read as entries when they were all there, such a version
        // was taken for published and its commits lost.
        let all_there = (from..=newest).all(|v| l.entries.contains(&v));
        let checkpoint = l.checkpoints.range(from..=newest).next_back();
        let mut last = Facts::default();
        let start = match checkpoint {
            None if all_there => from,
            None => {
                return Err(self.fail(format!(
                    "its log misses entries between {from} and {newest} and holds no checkpoint to read instead"
                )))
            }
            Some((&c, parts)) => {
                next.txn.clear();
                for part in parts {
                    let f = self.read_checkpoint(part, &mut next.txn)?;
                    last.merge(f);
                }
                next.version = Some(c);
                c + 1
            }
        };
        // Only the newest schema and protocol count.
        for v in start..=newest {
            if !l.entries.contains(&v) {
                return Err(self.fail(format!("its log misses entry {v}")));
            }
            let entry = self.dest.read(&super::log_name(v))?;
            last.merge(self.learn(&entry, &mut next.txn));
            next.version = Some(v);
        }
        if let Some(retention) = last.retention {
            // Set anew by another writer while this one runs: a pause is judged by it.
            self.set_stale_after(retention);
        }
        self.check_facts(last)
            .map_err(|reason| TableError::Conflict {
                url: self.url.clone(),
                reason,
            })?;
        #[cfg(test)]
        crate::hooks::at("delta: after the log's read");
        next.listed = Some(listed);
        *known = next;
        Ok(())
    }

    /// The `txn`, `metaData` and `protocol` columns of one checkpoint file (only those
    /// columns are read, as the types the Delta protocol gives them whatever types a writer
    /// stored them as).
    fn read_checkpoint(
        &self,
        rel: &str,
        txn: &mut HashMap<String, u64>,
    ) -> Result<Facts, TableError> {
        let (store, url) = self.dest.object_store()?;
        let path = object_store::path::Path::from_url_path(format!(
            "{}{rel}",
            url.path().trim_start_matches('/')
        ))
        .map_err(|e| self.fail(e.to_string()))?;
        let ours = super::app_id(&self.job, "");
        let bad = |e: String| self.fail(format!("checkpoint {rel}: {e}"));
        let r: Result<Vec<CheckpointRow>, String> = self.runtime.block_on(async {
            let reader = Ranged { store, path };
            let b = ParquetRecordBatchStreamBuilder::new(reader)
                .await
                .map_err(|e| e.to_string())?;
            let roots: Vec<usize> = b
                .schema()
                .fields()
                .iter()
                .enumerate()
                .filter(|(_, f)| matches!(f.name().as_str(), "txn" | "metaData" | "protocol"))
                .map(|(i, _)| i)
                .collect();
            let mask = ProjectionMask::roots(b.parquet_schema(), roots);
            let mut stream = b.with_projection(mask).build().map_err(|e| e.to_string())?;
            let mut rows = Vec::new();
            while let Some(batch) = stream.try_next().await.map_err(|e| e.to_string())? {
                let col = |name: &str| match batch.column_by_name(name) {
                    None => Ok(None),
                    Some(c) => c.as_struct_opt().cloned().map(Some).ok_or_else(|| {
                        format!("its column {name} is a {}, not a struct", c.data_type())
                    }),
                };
                if let Some(t) = col("txn")? {
                    let (Some(app), Some(ver)) =
                        (t.column_by_name("appId"), t.column_by_name("version"))
                    else {
                        continue;
                    };
                    let (app, ver) = (as_type(app, &Utf8)?, as_type(ver, &Int64)?);
                    let (app, ver) = (app.as_string::<i32>(), ver.as_primitive::<Int64Type>());
                    for i in (0..t.len()).filter(|i| t.is_valid(*i) && app.is_valid(*i)) {
                        rows.push((app.value(i).to_string(), ver.value(i), None, None));
                    }
                }
                if let Some(m) = col("metaData")? {
                    if let Some(s) = m.column_by_name("schemaString") {
                        let s = as_type(s, &Utf8)?;
                        let s = s.as_string::<i32>();
                        let pc = m
                            .column_by_name("partitionColumns")
                            .and_then(|c| c.as_list_opt::<i32>().cloned());
                        let conf = m
                            .column_by_name("configuration")
                            .and_then(|c| c.as_map_opt().cloned());
                        for i in (0..m.len()).filter(|i| m.is_valid(*i) && s.is_valid(*i)) {
                            let mut cols: Vec<String> = Vec::new();
                            if let Some(pc) = pc.as_ref().filter(|pc| pc.is_valid(i)) {
                                let v = as_type(&pc.value(i), &Utf8)?;
                                let v = v.as_string::<i32>();
                                cols = (0..v.len()).map(|k| v.value(k).to_string()).collect();
                            }
                            // Its settings: the checks of `Facts::metadata` read them (a
                            // table that expires `txn` actions is refused here too).
                            let mut settings = serde_json::Map::new();
                            if let Some(conf) = conf.as_ref().filter(|c| c.is_valid(i)) {
                                let entries = conf.value(i);
                                let keys = as_type(entries.column(0), &Utf8)?;
                                let values = as_type(entries.column(1), &Utf8)?;
                                let (keys, values) =
                                    (keys.as_string::<i32>(), values.as_string::<i32>());
                                for k in (0..keys.len()).filter(|k| keys.is_valid(*k)) {
                                    let value = values.is_valid(k).then(|| values.value(k));
                                    settings.insert(keys.value(k).to_string(), value.into());
                                }
                            }
                            let fact = serde_json::json!({
                                "schemaString": s.value(i),
                                "partitionColumns": cols,
                                "configuration": settings,
                            });
                            rows.push((String::new(), 0, Some(fact.to_string()), None));
                        }
                    }
                }
                if let Some(p) = col("protocol")? {
                    if let Some(w) = p.column_by_name("minWriterVersion") {
                        let w = as_type(w, &Int32)?;
                        let w = w.as_primitive::<Int32Type>();
                        for i in (0..p.len()).filter(|i| p.is_valid(*i) && w.is_valid(*i)) {
                            rows.push((String::new(), 0, None, Some(w.value(i))));
                        }
                    }
                }
            }
            Ok(rows)
        });
        let mut facts = Facts::default();
        for (app, version, metadata, writer) in r.map_err(bad)? {
            if let Some(key) = app.strip_prefix(&ours) {
                txn.insert(key.to_string(), version.max(0) as u64);
            }
            if let Some(m) = metadata {
                let m: serde_json::Value = serde_json::from_str(&m).expect("made above");
                facts.metadata(&m);
            }
            facts.writer = writer.map(|w| w.max(0) as u64).or(facts.writer);
        }
        Ok(facts)
    }
}

/// A Parquet file in an object store read by ranges (the footer, then only the columns
/// asked for).
struct Ranged {
    store: std::sync::Arc<dyn object_store::ObjectStore>,
    path: object_store::path::Path,
}

impl AsyncFileReader for Ranged {
    fn get_bytes(
        &mut self,
        range: std::ops::Range<u64>,
    ) -> futures::future::BoxFuture<'_, parquet::errors::Result<bytes::Bytes>> {
        use futures::FutureExt;
        use object_store::ObjectStoreExt;
        async move {
            self.store
                .get_range(&self.path, range)
                .await
                .map_err(|e| parquet::errors::ParquetError::External(Box::new(e)))
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a parquet::arrow::arrow_reader::ArrowReaderOptions>,
    ) -> futures::future::BoxFuture<
        'a,
        parquet::errors::Result<std::sync::Arc<parquet::file::metadata::ParquetMetaData>>,
    > {
        use futures::FutureExt;
        use object_store::ObjectStoreExt;
        async move {
            let size = self
                .store
                .head(&self.path)
                .await
                .map_err(|e| parquet::errors::ParquetError::External(Box::new(e)))?
                .size;
            let m = parquet::file::metadata::ParquetMetaDataReader::new()
                .with_arrow_reader_options(options)
                .load_and_finish(self, size)
                .await?;
            Ok(std::sync::Arc::new(m))
        }
        .boxed()
    }
}

/// `c` as `to` (a checkpoint another writer made may store strings as views or large ones).
fn as_type(
    c: &arrow::array::ArrayRef,
    to: &arrow::datatypes::DataType,
) -> Result<arrow::array::ArrayRef, String> {
    if c.data_type() == to {
        return Ok(c.clone());
    }
    arrow::compute::cast(c, to)
        .map_err(|e| format!("a column of type {} read as {to}: {e}", c.data_type()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_finds_entries_and_checkpoint_parts() {
        let l = listing(
            [
                "_delta_log/00000000000000000000.json",
                "_delta_log/00000000000000000001.json",
                "_delta_log/00000000000000000001.checkpoint.parquet",
                "_delta_log/00000000000000000002.checkpoint.0000000001.0000000002.parquet",
                "_delta_log/00000000000000000002.checkpoint.0000000002.0000000002.parquet",
                // One part of two: still being written, not read.
                "_delta_log/00000000000000000003.checkpoint.0000000001.0000000002.parquet",
                "_delta_log/00000000000000000004.checkpoint.8e1f6a6e-uuid.parquet",
                "_delta_log/_last_checkpoint",
                "_delta_log/_commit_x.json.tmp",
                "_delta_log/00000000000000000003.crc",
            ]
            .map(String::from)
            .to_vec(),
        );
        assert_eq!(l.entries.iter().copied().collect::<Vec<_>>(), [0, 1]);
        assert_eq!(l.checkpoints[&1].len(), 1);
        assert_eq!(l.checkpoints[&2].len(), 2);
        assert_eq!(l.checkpoints.keys().copied().collect::<Vec<_>>(), [1, 2]);
        // Twenty digits past what a version number holds, or the last one: not the log's
        // (they panicked).
        let l = listing(
            [
                "_delta_log/99999999999999999999.json",
                "_delta_log/99999999999999999999.checkpoint.parquet",
                "_delta_log/18446744073709551615.checkpoint.parquet",
                "_delta_log/00000000000000000003.json",
            ]
            .map(String::from)
            .to_vec(),
        );
        assert_eq!(l.entries.iter().copied().collect::<Vec<_>>(), [3]);
        assert!(l.checkpoints.is_empty());
    }

    /// A moment whose wall clock says an hour has passed, while the monotonic clock (which
    /// stands still while the machine is suspended) says none: past a minute. A fresh one is
    /// not, and neither is one the wall clock was set back from.
    #[test]
    fn a_span_has_passed_when_either_clock_says_so() {
        let hour = Duration::from_secs(3600);
        let slept = Moment {
            at: Instant::now(),
            wall: SystemTime::now() - hour,
        };
        assert!(slept.past(Duration::from_secs(60)));
        assert!(!Moment::now().past(Duration::from_secs(60)));
        let stepped_back = Moment {
            at: Instant::now(),
            wall: SystemTime::now() + hour,
        };
        assert!(!stepped_back.past(Duration::from_secs(60)));
    }
}
