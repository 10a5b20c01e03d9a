//! Sink workers: take items from their channel lane, encode them into one open file per
//! (source partition, path partition), roll files, and commit whole source partitions.
//!
//! The commit unit is a source partition: when any of its files must roll (rows, bytes, record
//! time span), when it has been idle, when the open-file cap is hit, at the end of a bounded
//! run and at shutdown, all of its open files close and commit together, and its checkpoint
//! moves to the offset after the last record taken (see `commit/` for the protocol).
//! A file that cannot be written or committed is aborted with its siblings and the partition is
//! rewound to its checkpoint (`recovery.rs`): the source replays it, so nothing is lost or
//! duplicated.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::datatypes::SchemaRef;

use super::commit::{abort_open, commit_partition};
use super::control::Control;
use super::open::{OpenFile, OpenPartition};
use super::partitions::PartState;
use super::paths::{PathTemplate, Rows};
use super::recovery::Recovery;
use super::rotation::time_range;
pub use super::rotation::Rotation;
use super::values::by_values;
use crate::channel::{Channel, Item};
use crate::commit::checkpoint::Checkpoints;
use crate::commit::now_ms;
use crate::deadletter::DeadLetterWriter;
use crate::format::{create_writer, FormatOptions};
use crate::store::Destination;

/// Everything a worker needs, shared by all workers of a task.
pub struct WorkerContext {
    /// Starts every data file's name: `<repo>.` in a job with several repos (they may share a
    /// folder and a topic; a repo's name has no `.`, so no two repos' names can meet), else
    /// empty.
    pub file_prefix: String,
    /// Ends every data and dead-letter file's name before its extension: `.backfill-<name>`
    /// for a backfill (a live job's names end in the attempt's hex tag, so a backfill's files
    /// never replace the live job's, even in one folder), else empty.
    pub file_suffix: String,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub channel: Arc<Channel>,
    pub dest: Destination,
    pub dead_dest: Destination,
    /// Folder (under `dead_dest`) for dead-letter files.
    pub dead_folder: String,
    /// Dead letters go to this Kafka topic instead of files.
    pub dead_topic: Option<Arc<crate::deadletter::topic::DeadTopic>>,
    pub checkpoints: Checkpoints,
    /// The table sealed commits are published into, if any.
    pub table: Option<Arc<dyn crate::table::Publisher>>,
    /// A job without a table: looks for one made since before a commit (`None` with one).
    pub table_watch: Option<crate::table::watch::Watch>,
    /// The table's partition columns (names, column indices): each file records their values.
    pub table_partitions: Vec<(String, usize)>,
    pub format: FormatOptions,
    pub schema: SchemaRef,
    pub template: PathTemplate,
    pub rotation: Rotation,
    pub max_open: usize,
    /// This worker's share of the encoded bytes open files may hold in memory.
    pub max_buffered: u64,
    pub control: Arc<Control>,
    /// The source cannot replay what was not committed once the process ends (push with
    /// `durability = "memory"`): records of a commit that fails while stopping are lost.
    pub volatile: bool,
    /// The source is a consumer-group member: a fenced partition is released here (the
    /// group's revocation follows) instead of failing the task.
    pub group: bool,
    /// Recorded in each checkpoint: the log whose positions the source's offsets are
    /// ([`crate::source::Source::log_id`]).
    pub log_id: Option<String>,
    /// And that log's last runs ([`crate::source::Source::log_runs`]).
    pub log_runs: Vec<(String, u64)>,
    /// Each file partition's file start as far as it was read (by key), for its checkpoints.
    pub file_starts: Option<crate::source::ReadStarts>,
    /// Commits whose seal was asked for and whose outcome is not known yet (by partition):
    /// one that reported failure but landed is counted when the resync finds it standing.
    pub sealing: super::commit::Sealing,
}

/// How many files a partition holds open: its data files and its dead-letter file.
pub(super) fn open_count(op: &OpenPartition) -> usize {
    op.files.len() + usize::from(op.dead.as_ref().is_some_and(|d| d.has_file()))
}

/// Errors inside a worker; the partition is rewound, the task goes on.
#[derive(Debug, thiserror::Error)]
pub(super) enum WorkError {
    #[error(transparent)]
    Format(#[from] crate::format::FormatError),
    #[error(transparent)]
    Sink(#[from] crate::store::StoreError),
    #[error(transparent)]
    Checkpoint(#[from] crate::commit::checkpoint::CheckpointError),
    #[error(transparent)]
    Template(#[from] super::paths::TemplateError),
    #[error(transparent)]
    Table(#[from] crate::table::TableError),
    #[error("gathering the rows of one table partition's values: {0}")]
    Gather(#[from] arrow::error::ArrowError),
    #[error("partition {key}: records {got} arrived where {want} was expected")]
    Gap { key: String, want: u64, got: u64 },
}

impl WorkError {
    pub(super) fn is_fenced(&self) -> bool {
        matches!(self, WorkError::Checkpoint(c) if c.is_fenced())
    }
}

/// How many partitions one worker commits at once in `commit_all`.
const COMMIT_THREADS: usize = 4;

/// Runs one worker until the task shuts down.
pub fn run(ctx: Arc<WorkerContext>, lane: usize) {
    let mut w = Worker {
        ctx,
        lane,
        open: HashMap::new(),
        recovery: Recovery::default(),
        finished: false,
    };
    w.run();
}

pub(super) struct Worker {
    pub(super) ctx: Arc<WorkerContext>,
    pub(super) lane: usize,
    pub(super) open: HashMap<u32, OpenPartition>,
    pub(super) recovery: Recovery,
    /// What this worker last said of its lane through `set_finished`.
    pub(super) finished: bool,
}

impl Worker {
    fn run(&mut self) {
        let ctl = self.ctx.control.clone();
        loop {
            if ctl.phase.over() {
                crate::fault::hold_while("hold_at_end");
                self.commit_all();
                return;
            }
            if ctl.phase.stopping() {
                self.commit_all();
                self.settle_late(true);
                self.set_finished(true);
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            crate::fault::hold_while("hold_worker");
            self.serve_revocations();
            if ctl.paused.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            let ctx = self.ctx.clone();
            // A bounded run whose last item is in: an empty lane means its files commit now,
            // not after a wait (once committed and finished, the lane waits as before).
            let settled = self.open.is_empty() && self.finished;
            let take = ctx
                .channel
                .take_unless(self.lane, 8, Duration::from_millis(20), || {
                    !settled && ctl.drained()
                });
            if take.is_empty() {
                drop(take);
                self.flush_idle();
                self.settle_late(false);
                if ctl.drained() {
                    let failures = ctl.failures.load(Ordering::Relaxed);
                    self.commit_all();
                    // Not finished while a publish that reported failure may still land (a
                    // release just now may have found one).
                    self.take_late_settles();
                    self.set_finished(self.open.is_empty() && self.recovery.late.is_empty());
                    if self.open.is_empty() && !self.recovery.late.is_empty() {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    if ctl.failures.load(Ordering::Relaxed) > failures {
                        crate::fault::hold("hold_after_rewind");
                    }
                }
                continue;
            }
            self.set_finished(false);
            crate::fault::panic_in_worker();
            // Partitions whose item failed, with the position their open files had reached.
            let mut failed: Vec<(u32, Option<u64>)> = Vec::new();
            for item in take.items() {
                let p = item.prov.partition;
                if failed.iter().any(|(q, _)| *q == p) || item.prov.epoch < ctl.partitions.epoch(p)
                {
                    continue; // stale: the partition was rewound
                }
                if let Err(e) = self.write_item(item) {
                    tracing::warn!(partition = %self.ctx.control.partitions.label(p), error = %e, "writing failed; rewinding the partition");
                    ctl.partitions.failed(p, &e.to_string());
                    // Its files may hold part of the failed item: abort them now, before a
                    // commit of the buffer bound or the file cap could take them along.
                    let held = self.open.remove(&p).map(|op| {
                        let at = op.next_offset;
                        abort_open(op);
                        at
                    });
                    failed.push((p, held));
                    continue;
                }
                // Roll as soon as an item fills a file, not once per take: file sizes then do
                // not depend on how many items a take happened to hold.
                if self
                    .open
                    .get(&p)
                    .is_some_and(|op| op.due(&self.ctx.rotation))
                {
                    self.commit_or_fail(p);
                }
                // Per item, not per take: a take may hold the whole channel.
                self.bound_buffers();
            }
            take.commit();
            crate::fault::worker_wrote(self.open.iter().map(|(p, op)| (*p, op.next_offset)));
            for (p, held) in failed {
                self.fail_at(p, held);
            }
            let rolling: Vec<u32> = self
                .open
                .iter()
                .filter(|(_, op)| op.due(&self.ctx.rotation))
                .map(|(p, _)| *p)
                .collect();
            for p in rolling {
                self.commit_or_fail(p);
            }
            self.flush_idle();
            self.settle_late(false);
        }
    }

    /// Commits the partitions the task asked to flush (they are being revoked) and aborts the
    /// open files of partitions this process no longer owns.
    fn serve_revocations(&mut self) {
        let ctl = self.ctx.control.clone();
        let lanes = self.ctx.channel.lanes();
        let asked = ctl
            .partitions
            .flush_asked(|p| p as usize % lanes == self.lane);
        for p in asked {
            self.commit_or_fail(p);
            ctl.partitions.flushed(p);
        }
        let lost = ctl.partitions.not_owned(self.open.keys().copied());
        for p in lost {
            if let Some(op) = self.open.remove(&p) {
                tracing::warn!(
                    partition = %self.ctx.control.partitions.label(p),
                    "the partition was revoked; its open files are aborted"
                );
                abort_open(op);
            }
        }
    }

    fn set_finished(&mut self, v: bool) {
        self.finished = v;
        self.ctx.control.set_finished(self.lane, v);
    }

    fn flush_idle(&mut self) {
        let (idle, max_age) = (self.ctx.rotation.idle, self.ctx.rotation.max_age);
        let due: Vec<u32> = self
            .open
            .iter()
            .filter(|(_, op)| op.last_write.elapsed() >= idle || op.opened.elapsed() >= max_age)
            .map(|(p, _)| *p)
            .collect();
        for p in due {
            self.commit_or_fail(p);
        }
    }

    /// Commits every open partition. Commits mostly wait on the store (fsync, uploads), so up
    /// to `COMMIT_THREADS` run at once.
    fn commit_all(&mut self) {
        let ops: Vec<(u32, OpenPartition)> = self.open.drain().collect();
        let n = ops.len().min(COMMIT_THREADS);
        let ctx = &self.ctx;
        let results: Vec<(u32, Result<(), WorkError>)> = if n <= 1 {
            ops.into_iter()
                .map(|(p, op)| (p, commit_partition(ctx, p, op)))
                .collect()
        } else {
            let mut groups: Vec<Vec<(u32, OpenPartition)>> = (0..n).map(|_| Vec::new()).collect();
            for (i, x) in ops.into_iter().enumerate() {
                groups[i % n].push(x);
            }
            std::thread::scope(|scope| {
                let handles: Vec<_> = groups
                    .into_iter()
                    .map(|g| {
                        scope.spawn(move || {
                            g.into_iter()
                                .map(|(p, op)| (p, commit_partition(ctx, p, op)))
                                .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .flat_map(|h| h.join().expect("a commit thread"))
                    .collect()
            })
        };
        for (p, r) in results {
            match r {
                Ok(()) => {
                    self.recovery.backoff.remove(&p);
                }
                Err(e) => self.failed(p, e),
            }
        }
    }

    pub(super) fn commit_or_fail(&mut self, p: u32) {
        match self.commit(p) {
            Ok(()) => {
                self.recovery.backoff.remove(&p);
            }
            Err(e) => self.failed(p, e),
        }
    }

    /// The partition's state while this process owns it.
    pub(super) fn part(&self, p: u32) -> Option<PartState> {
        self.ctx.control.partitions.owned(p)
    }

    fn write_item(&mut self, item: &Item) -> Result<(), WorkError> {
        let p = item.prov.partition;
        let Some(state) = self.part(p) else {
            return Ok(()); // revoked: the new owner replays it
        };
        // Files of an earlier registration of the partition (revoked and given back while this
        // worker was busy elsewhere) end where that registration's reading stood, which
        // another owner may have committed past since: they take nothing more.
        if self.open.get(&p).is_some_and(|op| op.epoch != state.epoch) {
            if let Some(op) = self.open.remove(&p) {
                tracing::warn!(
                    partition = %self.ctx.control.partitions.label(p),
                    "files opened before the partition was registered again are aborted"
                );
                abort_open(op);
            }
        }
        let expected = self
            .open
            .get(&p)
            .map_or(state.committed_offset, |op| op.next_offset);
        if item.prov.from_offset != expected {
            return Err(WorkError::Gap {
                key: state.key,
                want: expected,
                got: item.prov.from_offset,
            });
        }
        // A table's timestamps as its files hold them, before paths and partition values are
        // read from them (`format::units`).
        let batch = if self.ctx.format.micros && item.batch.num_rows() > 0 {
            crate::format::units::as_micros(&item.batch).map_err(|e| {
                crate::format::FormatError::Encode {
                    file: state.key.clone(),
                    message: e.to_string(),
                }
            })?
        } else {
            std::borrow::Cow::Borrowed(&item.batch)
        };
        let groups = self.ctx.template.group(&batch, now_ms())?;
        let mine = self.open.get(&p);
        let new_files = groups
            .iter()
            .filter(|(path, _)| !mine.is_some_and(|op| op.files.contains_key(path)))
            .count()
            // The partition's dead-letter file, if this item opens it: the cap counts it too.
            + usize::from(
                !item.dead.is_empty()
                    && self.ctx.dead_topic.is_none()
                    && mine.is_none_or(|op| op.dead.is_none()),
            );
        let open_files: usize = self.open.values().map(open_count).sum();
        // Over the cap (an item may open more files than the cap alone): commit what is open.
        if open_files > 0 && open_files + new_files > self.ctx.max_open {
            self.commit_all();
            if item.prov.epoch < self.ctx.control.partitions.epoch(p) {
                return Ok(()); // committing rewound this partition: the item is stale now
            }
        }
        let Some(state) = self.part(p) else {
            return Ok(());
        };
        // This partition's files, out of the map while the item is written: committing
        // another partition to make room cannot touch them.
        let mut op = self.open.remove(&p).unwrap_or_else(|| OpenPartition {
            files: BTreeMap::new(),
            parked: Vec::new(),
            dead: None,
            from_offset: item.prov.from_offset,
            next_offset: item.prov.from_offset,
            next_line: 0,
            last_offset: item.prov.first_offset,
            mark: None,
            rows: 0,
            records: 0,
            opened: Instant::now(),
            dead_count: 0,
            dead_classes: Default::default(),
            last_write: Instant::now(),
            epoch: state.epoch,
            tag: crate::commit::random_tag(),
        });
        let written = self.fill(&state, item, (&batch, groups), &mut op);
        self.open.insert(p, op);
        written
    }

    /// Writes an item's groups and dead letters into `op`, the files of its partition (not
    /// in `self.open` meanwhile). An item may route to more paths than `max_open_files` or
    /// the memory share allow: before a file opens past either, the partition holding more
    /// memory gives way, another by an early commit, this one by parking a file (see
    /// `share::park_one`).
    fn fill(
        &mut self,
        state: &PartState,
        item: &Item,
        (batch, groups): (&arrow::record_batch::RecordBatch, Vec<(String, Rows)>),
        op: &mut OpenPartition,
    ) -> Result<(), WorkError> {
        op.records += item.records;
        // Each group's rows gathered at its turn: an item split into thousands of paths
        // holds one small batch at a time.
        let columns = self.ctx.table_partitions.clone();
        for (path, rows) in groups {
            let rows = rows.take(batch)?;
            let parts = by_values(path, rows, &columns, |k| {
                op.files.get(k).map(|f| &f.partition)
            })?;
            for (path, rows) in parts {
                self.write_group(state, item, op, path, rows)?;
            }
        }
        if !item.dead.is_empty() {
            if op.dead.is_none() {
                op.dead = Some(match &self.ctx.dead_topic {
                    Some(topic) => DeadLetterWriter::to_topic(topic.clone(), state.key.clone()),
                    None => {
                        let name = super::paths::file_name(
                            &state.key,
                            &format!("-{}-{}", item.prov.first_offset, op.tag),
                            &self.ctx.file_suffix,
                            ".jsonl",
                        );
                        DeadLetterWriter::new(
                            self.ctx.dead_dest.clone(),
                            format!(
                                "{}{}",
                                self.ctx.dead_folder,
                                super::paths::visible_name(&name)
                            ),
                            state.key.clone(),
                        )
                    }
                });
            }
            let w = op.dead.as_mut().expect("created above");
            w.write(&item.dead)?;
            op.dead_count += item.dead.len() as u64;
            for d in &item.dead {
                *op.dead_classes.entry(d.class()).or_insert(0) += 1;
            }
        }
        op.next_offset = item.prov.next_offset;
        op.next_line = item.prov.next_line;
        op.last_offset = item.prov.last_offset;
        op.mark = item.prov.mark;
        op.last_write = Instant::now();
        Ok(())
    }

    /// Writes one group's rows into its file of `op`, opening the file (after making room)
    /// when the item is its first.
    fn write_group(
        &mut self,
        state: &PartState,
        item: &Item,
        op: &mut OpenPartition,
        path: String,
        rows: arrow::record_batch::RecordBatch,
    ) -> Result<(), WorkError> {
        if !op.files.contains_key(&path) {
            self.make_room(op)?;
            let (folder, own) = super::values::folder(&path);
            let mut unique = match own {
                None => format!("-{}-{}", item.prov.first_offset, op.tag),
                Some(n) => format!("-{}-{}-{n}", item.prov.first_offset, op.tag),
            };
            let named = |unique: &str| {
                let name = super::paths::file_name(
                    &format!("{}{}", self.ctx.file_prefix, state.key),
                    unique,
                    &self.ctx.file_suffix,
                    &format!(".{}", self.ctx.format.extension()),
                );
                format!("{folder}{}", super::paths::visible_name(&name))
            };
            let mut rel = named(&unique);
            // Folders of values that differ only in case (`c=US/`, `c=us/`) are one folder
            // where the file system ignores case (macOS, Windows, casefold folders): files of
            // one item there had one name, and the second rename replaced the first.
            let base = unique.clone();
            let mut n = 1;
            while op
                .files
                .values()
                .map(|f| &f.rel)
                .chain(op.parked.iter().map(|p| &p.0))
                .any(|r| r.eq_ignore_ascii_case(&rel))
            {
                unique = format!("{base}-c{n}");
                rel = named(&unique);
                n += 1;
            }
            let file = self.ctx.dest.create(&rel)?;
            let writer = create_writer(&self.ctx.format, self.ctx.schema.clone(), file.clone())?;
            let partition = crate::table::partition_values(&self.ctx.table_partitions, &rows);
            op.files.insert(
                path.clone(),
                OpenFile {
                    rel,
                    file,
                    writer,
                    rows: 0,
                    first_offset: item.prov.first_offset,
                    last_offset: item.prov.last_offset,
                    min_ts: i64::MAX,
                    max_ts: i64::MIN,
                    partition,
                },
            );
        }
        let f = op.files.get_mut(&path).expect("inserted above");
        f.writer.write(&rows)?;
        f.rows += rows.num_rows() as u64;
        f.last_offset = item.prov.last_offset;
        if let Some(c) = self.ctx.rotation.time_column {
            if let Some((lo, hi)) = time_range(rows.column(c).as_ref()) {
                f.min_ts = f.min_ts.min(lo);
                f.max_ts = f.max_ts.max(hi);
            }
        }
        op.rows += rows.num_rows() as u64;
        Ok(())
    }

    /// Commits all open files of partition `p` and moves its checkpoint.
    fn commit(&mut self, p: u32) -> Result<(), WorkError> {
        match self.open.remove(&p) {
            Some(op) => commit_partition(&self.ctx, p, op),
            None => Ok(()),
        }
    }
}
