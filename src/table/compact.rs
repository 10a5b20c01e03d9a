//! `sluice compact`: small files of a table bin-packed into larger ones. Each bin is read,
//! written as one new file by sluice's own writer (the job's format settings), and swapped in
//! by one table version (`remove` the inputs, `add` the output, no data change): readers see
//! the small files or the big one, never both, never neither. Safe beside a live job (its
//! appends never touch existing files); a bin another compaction swapped first is dropped
//! (its output deleted), never both.

use std::sync::Arc;

use arrow::datatypes::Schema;
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::delta::{DeltaTable, LiveFile, Replaced};
use super::TableError;
use crate::format::units::{as_micros, micros_schema};
use crate::format::{create_writer, FormatOptions};
use crate::store::Destination;

/// What to compact.
#[derive(Debug, Clone)]
pub struct CompactOptions {
    /// Only files under this folder prefix (`dt=2024-05-01/`), relative to the table.
    pub prefix: Option<String>,
    /// Files at or above this size stay; bins are filled up to it.
    pub target_bytes: u64,
    /// A bin of fewer files is left alone.
    pub min_files: usize,
    /// Plan only: report the bins, write nothing.
    pub dry_run: bool,
}

/// What a compaction did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CompactReport {
    /// Bins swapped in (or planned, in a dry run).
    pub bins: usize,
    /// Bins another writer compacted first.
    pub lost: usize,
    /// Bins whose files could not be read or merged (left as they are).
    pub skipped: usize,
    pub files_in: usize,
    pub bytes_in: u64,
    pub files_out: usize,
    pub bytes_out: u64,
    pub rows: u64,
    /// The table's files under `prefix` when one was given (any size).
    pub under_prefix: usize,
}

/// Bins of files to merge: files of one folder (the layout `[sink.partition]` made stays),
/// in path order, each bin up to `target_bytes`, at least `min_files` (and 2) files. Files
/// outside the table's folder (absolute, `..`) or under `_`/`.` folders are never touched.
pub fn plan(mut files: Vec<LiveFile>, opts: &CompactOptions) -> Vec<Vec<LiveFile>> {
    files.retain(|f| {
        f.size < opts.target_bytes
            && f.path.ends_with(".parquet")
            && !f.path.starts_with('/')
            && !f.path.contains("://")
            && !f
                .path
                .split('/')
                .any(|seg| seg == ".." || seg.starts_with('_') || seg.starts_with('.'))
            && opts.prefix.as_deref().is_none_or(|p| f.path.starts_with(p))
    });
    files.sort_by(|a, b| {
        (folder(&a.path), &a.partition, &a.path).cmp(&(folder(&b.path), &b.partition, &b.path))
    });
    let mut bins = Vec::new();
    let mut bin: Vec<LiveFile> = Vec::new();
    let mut bytes = 0u64;
    let flush = |bin: &mut Vec<LiveFile>, bins: &mut Vec<Vec<LiveFile>>| {
        if bin.len() >= opts.min_files.max(2) {
            bins.push(std::mem::take(bin));
        } else {
            bin.clear();
        }
    };
    for f in files {
        let other_folder = bin
            .first()
            .is_some_and(|b| folder(&b.path) != folder(&f.path) || b.partition != f.partition);
        if other_folder || (bytes + f.size > opts.target_bytes && !bin.is_empty()) {
            flush(&mut bin, &mut bins);
            bytes = 0;
        }
        bytes += f.size;
        bin.push(f);
    }
    flush(&mut bin, &mut bins);
    bins
}

fn folder(path: &str) -> &str {
    path.rfind('/').map_or("", |i| &path[..=i])
}

/// Compacts the table at `dest`; `progress` is told the bytes of input read so far and in
/// all. A bin whose files cannot be read or merged (a damaged file, schemas that do not
/// merge) is skipped and counted; a store that fails stops the run.
pub fn compact(
    table: &DeltaTable,
    dest: &Destination,
    format: &FormatOptions,
    opts: &CompactOptions,
    progress: &dyn Fn(u64, u64),
) -> Result<CompactReport, TableError> {
    if format.kind != crate::format::FormatKind::Parquet {
        return Err(TableError::Delta {
            url: dest.url().to_string(),
            reason: "the job's format is not Parquet; a Delta table holds Parquet files".into(),
        });
    }
    let (mut version, files) = table.live_files(|_| true)?;
    let under_prefix = opts.prefix.as_deref().map_or(files.len(), |p| {
        files.iter().filter(|f| f.path.starts_with(p)).count()
    });
    let bins = plan(files, opts);
    let total: u64 = bins.iter().flatten().map(|f| f.size).sum();
    let mut report = CompactReport {
        under_prefix,
        ..CompactReport::default()
    };
    if opts.dry_run {
        report.bins = bins.len();
        report.files_in = bins.iter().map(Vec::len).sum();
        report.bytes_in = total;
        return Ok(report);
    }
    let mut done = 0u64;
    // Files other writers removed since the listing: a bin holding one is not swapped in.
    let mut gone = std::collections::HashSet::new();
    let mut bins = bins.into_iter();
    while let Some(bin) = bins.next() {
        let written = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            rewrite(dest, format, &bin, &mut |n| {
                done += n;
                progress(done, total)
            })
        }))
        .unwrap_or_else(|p| {
            Err(Skip::Bad(format!(
                "reading or writing panicked: {}",
                crate::panics::message(&p)
            )))
        });
        let (out, rows) = match written {
            Ok(w) => w,
            Err(Skip::Store(e)) => return Err(e),
            Err(Skip::Bad(reason)) => {
                report.skipped += 1;
                tracing::warn!(folder = %folder(&bin[0].path), files = bin.len(), %reason, "skipped a group of files that cannot be merged");
                continue;
            }
        };
        if !dest.exists(&out.path)? {
            // Named by no version yet, the output may have been judged stray by a vacuum
            // (it deletes such files an hour old, at the least): a version naming it would
            // name a deleted file. (A vacuum between this look and the version's put, an
            // hour after the output's writing began, is not guarded against.)
            report.lost += 1;
            tracing::warn!(file = %out.path, "a group's output is gone before its version was written (a vacuum?); the group is dropped");
            continue;
        }
        match table.replace(version, &bin, &out, &mut gone)? {
            Replaced::Done(v) => {
                version = v;
                report.bins += 1;
                report.files_in += bin.len();
                report.bytes_in += bin.iter().map(|f| f.size).sum::<u64>();
                report.files_out += 1;
                report.bytes_out += out.size;
                report.rows += rows;
                tracing::info!(file = %out.path, inputs = bin.len(), rows, version = v, "compacted");
            }
            Replaced::Lost => {
                // Named by no version: nobody reads it.
                dest.delete(&out.path)?;
                report.lost += 1;
                tracing::warn!(folder = %folder(&bin[0].path), "another writer compacted these files first; this group is dropped");
            }
            Replaced::Unseen => {
                dest.delete(&out.path)?;
                report.lost += 1;
                // The listing is far behind the table: the later groups go after its newest
                // version, and those holding files no longer live are dropped.
                let mut planned: std::collections::HashSet<&str> = bins
                    .as_slice()
                    .iter()
                    .flatten()
                    .map(|f| f.path.as_str())
                    .collect();
                let (newest, live) = table.live_files(|f| planned.contains(f.path.as_str()))?;
                for f in live {
                    planned.remove(f.path.as_str());
                }
                gone.extend(planned.into_iter().map(str::to_string));
                version = newest;
            }
        }
    }
    Ok(report)
}

/// Why a bin was not rewritten.
enum Skip {
    /// The store failed: the run stops.
    Store(TableError),
    /// Its files cannot be read or merged: the bin is skipped.
    Bad(String),
}

impl From<crate::store::StoreError> for Skip {
    fn from(e: crate::store::StoreError) -> Self {
        Skip::Store(e.into())
    }
}

/// Writes the rows of `bin` as one file in the bin's folder (visible, named by no version
/// yet); the file and its row count. Files written under older schemas are read by name
/// (fields they lack are null).
fn rewrite(
    dest: &Destination,
    format: &FormatOptions,
    bin: &[LiveFile],
    progress: &mut dyn FnMut(u64),
) -> Result<(LiveFile, u64), Skip> {
    let bad = |path: &str, e: String| Skip::Bad(format!("{}: {e}", dest.display(path)));
    // The schemas first, merged by name.
    let mut schemas = Vec::with_capacity(bin.len());
    for f in bin {
        let bytes = Bytes::from(dest.read(&f.path)?);
        let b = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .map_err(|e| bad(&f.path, e.to_string()))?;
        // In the units the table's files hold now (files of older versions may hold seconds
        // or nanoseconds: see `format::units`).
        let fields = Schema::new(b.schema().fields().clone());
        schemas.push(micros_schema(&fields).map_or(fields, |m| Schema::clone(&m)));
    }
    let schema = Arc::new(Schema::try_merge(schemas).map_err(|e| {
        bad(
            folder(&bin[0].path),
            format!("schemas that do not merge: {e}"),
        )
    })?);
    let rel = format!(
        "{}compact-{}.parquet",
        folder(&bin[0].path),
        crate::commit::random_tag()
    );
    let file = dest.create(&rel)?;
    let mut rows = 0u64;
    let written = (|| -> Result<(), Skip> {
        let mut writer = create_writer(format, schema.clone(), file.clone())
            .map_err(|e| bad(&rel, e.to_string()))?;
        for f in bin {
            let path = f.path.as_str();
            let bytes = Bytes::from(dest.read(path)?);
            let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
                .and_then(|b| b.build())
                .map_err(|e| bad(path, e.to_string()))?;
            for batch in reader {
                let batch = batch.map_err(|e| bad(path, e.to_string()))?;
                let batch = as_micros(&batch).map_err(|e| bad(path, e.to_string()))?;
                let batch = crate::evolution::adapt(&batch, &schema).map_err(|e| bad(path, e))?;
                rows += batch.num_rows() as u64;
                writer.write(&batch).map_err(|e| bad(&rel, e.to_string()))?;
            }
            progress(f.size);
        }
        writer.finish().map_err(|e| bad(&rel, e.to_string()))
    })();
    if let Err(e) = written {
        let _ = file.abort();
        return Err(e);
    }
    let size = file.commit()?;
    Ok((
        LiveFile {
            path: dest.key(&rel),
            size,
            rows: Some(rows),
            partition: bin[0].partition.clone(),
        },
        rows,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(path: &str, size: u64) -> LiveFile {
        LiveFile {
            path: path.into(),
            size,
            ..Default::default()
        }
    }

    #[test]
    fn bins_stay_in_one_folder_fill_up_to_the_target_and_skip_big_or_lonely_files() {
        let opts = CompactOptions {
            prefix: None,
            target_bytes: 100,
            min_files: 2,
            dry_run: false,
        };
        let files = vec![
            f("a/1.parquet", 40),
            f("a/2.parquet", 40),
            f("a/3.parquet", 40),
            f("a/big.parquet", 100),
            f("b/1.parquet", 10),
            f("c/1.parquet", 10),
            f("c/2.parquet", 10),
            f("c/x.json", 10),
        ];
        let bins: Vec<Vec<String>> = plan(files.clone(), &opts)
            .into_iter()
            .map(|b| b.into_iter().map(|f| f.path).collect())
            .collect();
        assert_eq!(
            bins,
            vec![
                vec!["a/1.parquet".to_string(), "a/2.parquet".into()],
                vec!["c/1.parquet".into(), "c/2.parquet".into()],
            ]
        );
        let only_c = CompactOptions {
            prefix: Some("c/".into()),
            ..opts.clone()
        };
        assert_eq!(plan(files.clone(), &only_c).len(), 1);
        let three = CompactOptions {
            min_files: 3,
            ..opts
        };
        assert!(plan(files, &three).is_empty());
    }
}
