//! Tables over a job's files: a publisher makes sealed commits visible to a table format's
//! readers (`[sink] table = "delta"`).
//!
//! The commit protocol (`commit/`) stays the one decision: claim → files → seal. A table adds
//! one step after the seal, **publish**: the sealed commit's files enter the table's log in one
//! conditional log write that carries the partition's position (Delta: a `txn` action whose app
//! id names the job and the partition, whose version is the next offset). Only sealed commits
//! are published, so a table never names a file a fence removes; publishing is idempotent (a
//! commit the table already holds is skipped, and a file added twice is one file to a reader),
//! so a publish that failed, or that looked failed and landed, is simply done again. Before a
//! partition commits again (registration, the resync after a failed commit), every sealed
//! commit the table lacks is published ([`catch_up`]): the table is never more than the
//! commits in flight behind the checkpoints.
//!
//! An Iceberg publisher would implement [`Publisher`] the same way.

pub mod compact;
pub mod delta;
#[cfg(test)]
mod tests;
pub mod vacuum;
pub mod watch;

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;

use crate::commit::checkpoint::{Checkpoint, CheckpointError, Checkpoints};
use crate::store::Destination;

/// Errors of a table.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("Delta table {url}: {reason}")]
    Delta { url: String, reason: String },
    /// `--from-checkpoint` cannot roll a table back (its readers may have seen the commits).
    #[error("Delta table {url}: {reason}")]
    RollBack { url: String, reason: String },
    #[error("Delta table {url}: the job's schema does not fit the table's:\n{}", problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Schema { url: String, problems: Vec<String> },
    /// Another writer changed the table so that this job cannot go on writing it.
    #[error("Delta table {url}: {reason}")]
    Conflict { url: String, reason: String },
    #[error("partition {key}: {reason}")]
    History { key: String, reason: String },
    /// The table's log could not be read (the store, or a log another writer damaged).
    #[error("Delta table {url}: cannot read the log: {reason}")]
    Unread { url: String, reason: String },
    /// A job without a table writing where one is: its commits would be plain files no
    /// version names, which the table's writers' catch-up refuses (partitioned by the
    /// template) or publishes late, and a vacuum deletes.
    #[error(
        "{url} holds a Delta table, and this job writes plain files (no `table = \"delta\"` in \
         [sink]); written there, its commits would stop the table's writers. Set \
         `table = \"delta\"` to append to the table, or export into another URL"
    )]
    NotATableJob { url: String },
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl TableError {
    /// Retrying cannot mend it (a schema or protocol the job cannot follow, a history the
    /// table cannot take): the task stops, naming it.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            TableError::Schema { .. }
                | TableError::Conflict { .. }
                | TableError::History { .. }
                | TableError::NotATableJob { .. }
        )
    }
}

/// Which table, if any, a job's files make up (`[sink] table`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableKind {
    /// Plain files in folders.
    None,
    /// A Delta Lake table, with a log checkpoint every `checkpoint_every` versions.
    Delta { checkpoint_every: u64 },
}

/// A job without a table (`kind`) is refused where the destination holds one: at start
/// (`run`, `validate`), as each partition is claimed (another process may have made the
/// table since; see `task::membership`), and before commits ([`watch`]).
pub fn refuse_plain_into_table(kind: &TableKind, dest: &Destination) -> Result<(), TableError> {
    if *kind == TableKind::None && present(dest)? {
        return Err(TableError::NotATableJob {
            url: dest.url().to_string(),
        });
    }
    Ok(())
}

/// A table's publish step.
pub trait Publisher: Send + Sync {
    /// The table's partition columns, whose values each file's entry carries.
    fn partition_columns(&self) -> Vec<String>;
    /// The next offset the table holds for partition `key`, `None` if none of its records.
    fn published(&self, key: &str) -> Result<Option<u64>, TableError>;
    /// Makes sealed commits visible, each exactly once; commits the table already holds are
    /// skipped. Several callers' commits may share one log entry.
    fn publish(&self, commits: &[Checkpoint]) -> Result<(), TableError>;
}

/// Whether the destination holds a table (a Delta log).
pub fn present(dest: &Destination) -> Result<bool, TableError> {
    // Read until the first such file: a log of a million entries is not listed whole.
    Ok(dest.any_named("_delta_log/", |f| {
        f.ends_with(".json") || f.ends_with(".parquet") || f.ends_with("_last_checkpoint")
    })?)
}

/// The table of a job's destination, created from `schema` if the destination holds none;
/// `None` for plain files. Before any data moves: the schema must fit the table's (new
/// nullable fields are added to it).
pub fn open(
    kind: &TableKind,
    dest: &Destination,
    job: &str,
    schema: &SchemaRef,
    partitions: &[String],
    runtime: &tokio::runtime::Handle,
) -> Result<Option<Arc<dyn Publisher>>, TableError> {
    match kind {
        TableKind::None => Ok(None),
        TableKind::Delta { checkpoint_every } => Ok(Some(Arc::new(delta::DeltaTable::open(
            dest,
            job,
            schema,
            partitions,
            *checkpoint_every,
            runtime.clone(),
        )?))),
    }
}

/// The job's schema against its table's, before anything is written: what [`open`] would
/// refuse (a type that differs, a required field made optional or left out). Read only.
pub fn check_fits(
    kind: &TableKind,
    dest: &Destination,
    schema: &SchemaRef,
    runtime: &tokio::runtime::Handle,
) -> Result<(), TableError> {
    match kind {
        TableKind::None => Ok(()),
        TableKind::Delta { .. } => delta::check_fits(dest, schema, runtime),
    }
}

/// The longest name a table's partition column may have (see `commit::bounds`).
pub const MAX_COLUMN_NAME: usize = 100;

/// A task's table, if any, and its partition columns (names, column indices).
pub type TaskTable = (Option<Arc<dyn Publisher>>, Vec<(String, usize)>);

/// A table's partition columns as `template` gives them (its plain `{field}`s: names, column
/// indices; none without a table), refused past what a commit's records hold: at most
/// [`crate::decode::writable::MAX_PARTITION_COLUMNS`], each named in at most
/// [`MAX_COLUMN_NAME`] bytes. `run` and `validate` both check them.
pub fn partition_columns(
    kind: &TableKind,
    dest: &Destination,
    template: &crate::sink::paths::PathTemplate,
) -> Result<Vec<(String, usize)>, TableError> {
    let fields = match kind {
        TableKind::None => Vec::new(),
        _ => template.partition_fields(),
    };
    let most = crate::decode::writable::MAX_PARTITION_COLUMNS;
    if let Some((long, _)) = fields.iter().find(|(n, _)| n.len() > MAX_COLUMN_NAME) {
        return Err(TableError::Delta {
            url: dest.url().to_string(),
            reason: format!(
                "partition column `{long}` has a name of {} bytes; a table's partition columns \
                 take names of at most {MAX_COLUMN_NAME} (each file's log entry and checkpoint \
                 record them)",
                long.len()
            ),
        });
    }
    if fields.len() > most {
        return Err(TableError::Delta {
            url: dest.url().to_string(),
            reason: format!(
                "the template gives {} partition columns ({}); a table takes at most {most} \
                 (each file's log entry and checkpoint record their values)",
                fields.len(),
                fields
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    Ok(fields)
}

/// What a task checks before anything is recorded (its schema) or a table made: a
/// roll-back is refused whenever the destination holds a table (it deletes committed files
/// that the log may name), whatever this run's `table` says; a job without a table where one
/// is; partition columns past what a commit's records hold. Returns the partition columns
/// (the template's plain `{field}`s; none without a table), for [`for_task`].
pub fn check_for_task(
    kind: &TableKind,
    dest: &Destination,
    template: &crate::sink::paths::PathTemplate,
    rolling_back: bool,
) -> Result<Vec<(String, usize)>, TableError> {
    if rolling_back && (*kind != TableKind::None || present(dest)?) {
        return Err(TableError::RollBack {
            url: dest.url().to_string(),
            reason: "--from-checkpoint cannot roll back a table (its readers may have seen the commits); use the table's own time travel or restore".into(),
        });
    }
    refuse_plain_into_table(kind, dest)?;
    partition_columns(kind, dest, template)
}

/// A task's table and its partition columns (names, column indices), `fields` as
/// [`check_for_task`] gave them: an existing table without partition columns keeps none.
pub fn for_task(
    kind: &TableKind,
    dest: &Destination,
    job: &str,
    schema: &SchemaRef,
    fields: Vec<(String, usize)>,
    runtime: &tokio::runtime::Handle,
) -> Result<TaskTable, TableError> {
    let names: Vec<String> = fields.iter().map(|(n, _)| n.clone()).collect();
    let table = open(kind, dest, job, schema, &names, runtime)?;
    let columns = table
        .as_ref()
        .map(|t| t.partition_columns())
        .unwrap_or_default();
    let fields = fields
        .into_iter()
        .filter(|(n, _)| columns.contains(n))
        .collect();
    Ok((table, fields))
}

/// A file's partition values: the columns' values in the first of `rows` (all rows of a file
/// share them, see `sink::values`), as Delta writes them; null and the empty string are
/// null, as Delta reads them.
pub fn partition_values(
    columns: &[(String, usize)],
    rows: &arrow::record_batch::RecordBatch,
) -> BTreeMap<String, Option<String>> {
    if rows.num_rows() == 0 {
        return columns
            .iter()
            .map(|(name, _)| (name.clone(), None))
            .collect();
    }
    partition_values_of_each(columns, &rows.slice(0, 1))
        .pop()
        .expect("one row")
}

/// Each row's partition values (see [`partition_values`]), each column's formatter made once.
pub fn partition_values_of_each(
    columns: &[(String, usize)],
    rows: &arrow::record_batch::RecordBatch,
) -> Vec<BTreeMap<String, Option<String>>> {
    use arrow::util::display::{ArrayFormatter, FormatOptions};
    let options = FormatOptions::default();
    let each: Vec<_> = columns
        .iter()
        .map(|(name, i)| {
            let a = rows.column(*i);
            (name, a, ArrayFormatter::try_new(a.as_ref(), &options).ok())
        })
        .collect();
    (0..rows.num_rows())
        .map(|r| {
            each.iter()
                .map(|(name, a, f)| {
                    let v = f
                        .as_ref()
                        .filter(|_| !a.is_null(r))
                        .map(|f| f.value(r).to_string())
                        .filter(|s| !s.is_empty());
                    ((*name).clone(), v)
                })
                .collect()
        })
        .collect()
}

/// Where a partition resumes (next offset and line) after [`catch_up`] found the table holding
/// it up to `held`, its newest standing commit being `latest`; `None` with neither. Where the
/// table holds more than the checkpoints say (their records were lost or deleted), at the
/// table's end: resuming from the checkpoint would add the table's records again. The second
/// value says so.
pub fn resume_point(latest: Option<&Checkpoint>, held: Option<u64>) -> Option<((u64, u64), bool)> {
    match (latest, held) {
        (latest, Some(h)) if latest.is_none_or(|c| h > c.next_offset) => Some(((h, 0), true)),
        (Some(c), _) => Some(((c.next_offset, c.next_line), false)),
        (None, _) => None,
    }
}

/// Publishes every sealed commit of `key` the table lacks, oldest first; then how far the
/// table holds the partition (its next offset). A table that holds nothing of the partition
/// takes all its commits, which must then all still be recorded (a job that wrote files before
/// its table existed, and pruned the oldest records, cannot be made into a table that holds
/// all of them).
pub fn catch_up(
    table: &dyn Publisher,
    checkpoints: &Checkpoints,
    key: &str,
) -> Result<Option<u64>, TableError> {
    let held = table.published(key)?;
    let (standing, reached) = checkpoints.standing_after(key, held.unwrap_or(0))?;
    let newest = standing.last().map(|c| c.next_offset);
    // A carried-over commit holds no files: it stands for an earlier key's, which the table
    // cannot take.
    let carried = held.is_none()
        && standing
            .first()
            .is_some_and(|c| c.owner.contains("(carried over from"));
    let missing: Vec<Checkpoint> = standing
        .into_iter()
        .filter(|c| !c.files.is_empty())
        .collect();
    if carried {
        return Err(TableError::History {
            key: key.to_string(),
            reason: "its checkpoints were carried over from an earlier version's key, whose files the table cannot take: export into a new URL, or under a new job name".into(),
        });
    }
    if missing.is_empty() {
        return Ok(held);
    }
    // The records ran out before reaching what the table holds: unless none was ever
    // pruned, commits between the table and the oldest record may be missing from both.
    if !reached && !checkpoints.history_complete(key)? {
        return Err(TableError::History {
            key: key.to_string(),
            reason: match held {
                Some(h) => format!(
                    "the table holds the partition up to offset {h}, and the commits after it are no longer all recorded (pruned): the table cannot be made whole; export into a new URL, or under a new job name"
                ),
                None => "the table holds none of this partition's files, and the job's oldest commits of it were pruned (it wrote plain files before it had a table): export into a new URL, or under a new job name".into(),
            },
        });
    }
    if let Some(f) = missing
        .iter()
        .flat_map(|c| &c.files)
        .find(|f| !f.path.ends_with(".parquet"))
    {
        return Err(TableError::History {
            key: key.to_string(),
            reason: format!(
                "committed file {} is not Parquet (written before the job had a table?); a Delta table holds Parquet files only",
                f.path
            ),
        });
    }
    // A file written before the job had a partitioned table holds no partition values: the
    // table would name it with none, and its readers would read the columns as null.
    let columns = table.partition_columns();
    if let Some(f) = missing
        .iter()
        .flat_map(|c| &c.files)
        .find(|f| columns.iter().any(|col| !f.partition.contains_key(col)))
    {
        return Err(TableError::History {
            key: key.to_string(),
            reason: format!(
                "committed file {} holds no values for the table's partition columns {columns:?} (written before the job had a table?): the table would name it with none, and its readers read them as null; export into a new URL, or under a new job name",
                f.path
            ),
        });
    }
    // A file deleted since its commit (a bucket's lifecycle rule, by hand) named in the table
    // would fail every reader of it.
    let paths: Vec<&str> = missing
        .iter()
        .flat_map(|c| &c.files)
        .map(|f| f.path.as_str())
        .collect();
    let dest = checkpoints.destination();
    let found = crate::fanout::each(&paths, 8, "table-files", |p| dest.exists(p));
    for (i, there) in found {
        if !there? {
            return Err(TableError::History {
                key: key.to_string(),
                reason: format!(
                    "committed file {} is no longer in the destination (deleted since its commit): the table would name a file its readers cannot read. Restore it, or export into a new URL",
                    paths[i]
                ),
            });
        }
    }
    tracing::info!(partition = %key, commits = missing.len(), "publishing sealed commits the table lacks");
    table.publish(&missing)?;
    Ok(newest.max(held))
}
