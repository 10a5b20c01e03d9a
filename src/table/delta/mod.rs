//! A Delta Lake table over a job's destination (`[sink] table = "delta"`).
//!
//! The log (`_delta_log/<20-digit version>.json`) is written here, each version create-only
//! through the destination (a local hard link, an object store's conditional put): exactly one
//! writer wins a version. A publish is one version holding every waiting commit's `add`
//! actions and, per partition, a `txn` action (app id `sluice/<job>/<key>`, version = the next
//! offset). Callers that publish at once share one version (the first waiting caller writes it
//! for all, the others wait). When another writer took the version, its entry is read: a
//! partition it published as far as ours is dropped from ours (done), a schema it set must
//! still fit, a protocol that asks writers for more than appends is refused; then the next
//! version is tried. A write that reported failure but landed is recognised the same way.
//!
//! The job's partitions' `txn` versions are kept from the log's entries (`txns.rs`: the new
//! entries read on each refresh, a checkpoint's columns when entries were cleaned up); the
//! table is otherwise read without its file list (a kernel snapshot: protocol, metadata), so
//! memory does not grow with the table. A log checkpoint is written every `checkpoint_every`
//! versions, on a thread of its own (`checkpoint.rs`).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use delta_kernel::schema::StructType;
use delta_kernel::snapshot::{Snapshot, SnapshotRef};
use delta_kernel::Engine;
use deltalake_core::kernel::{Action, Add};
use deltalake_core::logstore::LogStoreRef;
use serde_json::json;

use super::{Publisher, TableError};
pub use schema::check_fits;
use schema::create;

mod checkpoint;
#[cfg(test)]
pub(crate) use checkpoint::kernel_checkpoint;
use checkpoint::log_of;
mod facts;
mod files;
mod schema;
mod txns;

use crate::commit::checkpoint::Checkpoint;
use crate::commit::{now_ms, random_tag, PRUNE_EVERY};
use crate::store::{Destination, StoreError};
pub use files::{LiveFile, Replaced};

/// The highest writer protocol version whose requirements blind appends meet (2: column
/// invariants are not used by sluice's tables; 3+ asks for checks, generated columns,
/// column mapping or named features).
pub(super) const MAX_WRITER_VERSION: u64 = 2;

/// Versions another writer may take in a row before a publish gives up (and is retried).
pub(super) const MAX_LOST: usize = 10_000;

/// A newest version known for longer than this is read again before a publish writes after
/// it: another writer's log clean-up may have removed the entries after it, and a version
/// written there would sit below the table's checkpoint, unseen.
/// (At most half the table's log retention, when that is shorter.)
const STALE_AFTER: Duration = Duration::from_secs(600);

/// A Delta table that sealed commits are published into.
pub struct DeltaTable {
    dest: Destination,
    url: String,
    job: String,
    log: LogStoreRef,
    engine: Arc<dyn Engine>,
    checkpoint_every: u64,
    /// The job's schema as Delta fields: what a concurrent metadata change must keep.
    schema: StructType,
    /// The job's partition columns (`None`: maintenance, whatever the table has).
    partitions: Option<Vec<String>>,
    queue: Mutex<Queue>,
    wake: Condvar,
    snapshot: Mutex<SnapshotRef>,
    /// How far the table holds each of the job's partitions, at the newest log version read
    /// (every version up to it read).
    known: Mutex<txns::Known>,
    checkpointing: Arc<AtomicBool>,
    /// The thread writing a log checkpoint, if one was started (`close` waits for it).
    checkpointer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// How long a newest version known may go unchecked before a publish writes after it.
    /// How long a listing of the log is trusted (half its retention, at most
    /// [`STALE_AFTER`]), in milliseconds: the retention may change while the job runs.
    stale_after_ms: AtomicU64,
    runtime: tokio::runtime::Handle,
}

#[derive(Default)]
struct Queue {
    waiting: Vec<(u64, Checkpoint)>,
    /// Each ticket's outcome: the error's text, and whether retrying cannot mend it.
    done: HashMap<u64, Result<(), (String, bool)>>,
    next_ticket: u64,
    leading: bool,
}

pub(super) fn log_name(version: u64) -> String {
    format!("_delta_log/{version:020}.json")
}

impl DeltaTable {
    /// Opens the table at `dest`, creating it from `schema` if the destination holds none;
    /// fields the table lacks are added to its schema (they must be nullable), a field whose
    /// type differs is refused.
    /// `partitions`: the table's partition columns (a new table is created with them, an
    /// existing one must have them).
    pub fn open(
        dest: &Destination,
        job: &str,
        schema: &SchemaRef,
        partitions: &[String],
        checkpoint_every: u64,
        runtime: tokio::runtime::Handle,
    ) -> Result<Self, TableError> {
        let ours = schema::delta_schema(schema).map_err(|reason| TableError::Delta {
            url: dest.url().to_string(),
            reason,
        })?;
        Self::load(
            dest,
            job,
            Some((ours, partitions.to_vec())),
            checkpoint_every,
            runtime,
        )
    }

    /// Opens the table at `dest`, which must exist, for maintenance (compaction, vacuum).
    pub fn open_existing(
        dest: &Destination,
        job: &str,
        runtime: tokio::runtime::Handle,
    ) -> Result<Self, TableError> {
        if !super::present(dest)? {
            return Err(TableError::Delta {
                url: dest.url().to_string(),
                reason: "no Delta table here (no `_delta_log/`): set `table = \"delta\"` in the job's [sink] and run it first".into(),
            });
        }
        Self::load(dest, job, None, 100, runtime)
    }

    /// `ours`: the job's schema and partition columns (the table is created from them if
    /// absent, and evolved to hold the schema); `None`: the table's own.
    fn load(
        dest: &Destination,
        job: &str,
        ours: Option<(StructType, Vec<String>)>,
        checkpoint_every: u64,
        runtime: tokio::runtime::Handle,
    ) -> Result<Self, TableError> {
        let url = dest.url().to_string();
        let fail = |reason: String| TableError::Delta {
            url: url.clone(),
            reason,
        };
        let (log, engine, location) = log_of(dest, &runtime).map_err(|e| match e {
            TableError::Delta { reason, .. } => fail(reason),
            e => e,
        })?;
        let exists = dest.any_named("_delta_log/", |f| {
            f.ends_with(".json") || f.contains(".checkpoint")
        })?;
        if let (false, Some((ours, partitions))) = (exists, &ours) {
            create(dest, job, ours, partitions, checkpoint_every).map_err(|e| match e {
                TableError::Store(s) => fail(format!("cannot create the table: {s}")),
                e => e,
            })?;
        }
        let snapshot = Snapshot::builder_for(location.as_str())
            .build(engine.as_ref())
            .map_err(|e| fail(format!("cannot read the log: {e}")))?;
        let table = DeltaTable {
            dest: dest.clone(),
            url: url.clone(),
            job: job.to_string(),
            log,
            engine,
            // Maintenance follows the table's own interval.
            checkpoint_every: match ours {
                Some(_) => checkpoint_every.max(1),
                None => snapshot
                    .table_properties()
                    .checkpoint_interval
                    .map_or(100, |n| n.get()),
            },
            schema: ours
                .as_ref()
                .map(|(s, _)| s.clone())
                .unwrap_or_else(|| snapshot.schema().as_ref().clone()),
            partitions: ours.as_ref().map(|(_, p)| {
                let theirs = snapshot.table_configuration().metadata().partition_columns();
                if exists && theirs.is_empty() && !p.is_empty() {
                    // A table made before its template's fields became partition columns
                    // (or by another writer) stays as it is: no partition values.
                    tracing::warn!(table = %url, fields = ?p, "the table has no partition columns; its files are added without partition values");
                    Vec::new()
                } else {
                    p.clone()
                }
            }),
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            snapshot: Mutex::new(snapshot.clone()),
            known: Mutex::new(txns::Known::default()),
            checkpointing: Arc::new(AtomicBool::new(false)),
            checkpointer: Mutex::new(None),
            stale_after_ms: AtomicU64::new(0),
            runtime,
        };
        table.set_stale_after(snapshot.table_properties().log_retention_duration);
        table.check_table(&snapshot)?;
        if ours.is_some() {
            table.evolve(&snapshot)?;
        }
        table.read_log(&mut table.known.lock().unwrap_or_else(PoisonError::into_inner))?;
        Ok(table)
    }

    fn fail(&self, reason: impl Into<String>) -> TableError {
        TableError::Delta {
            url: self.url.clone(),
            reason: reason.into(),
        }
    }

    /// The `txn` app id of one of the job's partitions.
    pub fn app_id(&self, key: &str) -> String {
        app_id(&self.job, key)
    }

    /// The newest snapshot (protocol, metadata; no file list).
    /// Whether the table, read afresh, has a field of this name (tests).
    #[cfg(test)]
    pub(crate) fn holds_field(&self, name: &str) -> Result<bool, TableError> {
        Ok(self.refresh()?.schema().field(name).is_some())
    }

    /// How long a listing of the log is trusted.
    pub(crate) fn stale_after(&self) -> Duration {
        Duration::from_millis(self.stale_after_ms.load(Ordering::Acquire))
    }

    /// Trusts listings for half of the log's retention `retention` (`None`: the default), at
    /// most [`STALE_AFTER`].
    pub(super) fn set_stale_after(&self, retention: Option<Duration>) {
        let after = retention.map_or(STALE_AFTER, |r| STALE_AFTER.min(r / 2));
        self.stale_after_ms
            .store(after.as_millis() as u64, Ordering::Release);
    }

    fn refresh(&self) -> Result<SnapshotRef, TableError> {
        let old = self
            .snapshot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let next = Snapshot::builder_from(old)
            .build(self.engine.as_ref())
            .map_err(|e| self.fail(format!("cannot read the log: {e}")))?;
        let mut s = self.snapshot.lock().unwrap_or_else(PoisonError::into_inner);
        if next.version() >= s.version() {
            *s = next.clone();
        }
        Ok(next)
    }

    fn app_version_in(&self, s: &SnapshotRef, app: &str) -> Result<Option<u64>, TableError> {
        let v = s
            .get_app_id_version(app, self.engine.as_ref())
            .map_err(|e| self.fail(format!("cannot read the txn of {app}: {e}")))?;
        Ok(v.map(|v| v.max(0) as u64))
    }

    /// The newest `txn` version of app id `app`.
    pub fn app_version(&self, app: &str) -> Result<Option<u64>, TableError> {
        let s = self.refresh()?;
        self.app_version_in(&s, app)
    }

    /// How long the table keeps the records of removed files
    /// (`delta.deletedFileRetentionDuration`, a week unless set).
    pub fn tombstone_retention(&self) -> Result<Duration, TableError> {
        let s = self.refresh()?;
        Ok(s.table_properties()
            .deleted_file_retention_duration
            .unwrap_or(Duration::from_secs(7 * 24 * 3600)))
    }

    /// The job whose partitions this handle publishes.
    pub fn job(&self) -> &str {
        &self.job
    }

    /// The `deltalake` log store over the table (maintenance operations).
    pub fn log_store(&self) -> LogStoreRef {
        self.log.clone()
    }

    /// The runtime the table's asynchronous calls run on.
    pub fn runtime(&self) -> &tokio::runtime::Handle {
        &self.runtime
    }

    /// Writes `batch` as one version after the newest one known; the version written (or
    /// the newest known when nothing was left to publish).
    fn commit(&self, batch: &[(u64, Checkpoint)]) -> Result<u64, TableError> {
        // What the table holds of each partition: a commit at or below it is there already
        // (published by another process's catch-up, or by a write of ours that looked
        // failed), and writing it again would move the partition's `txn` back.
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        // A commit without files adds nothing, except at a prune: there its version carries
        // the partition's `txn` alone, so that what the table holds never falls more than
        // `PRUNE_EVERY` commits behind and a catch-up always reaches it among the records a
        // prune keeps (a partition whose records were all filtered out or dead letters for
        // hundreds of commits would else stop for good at its next catch-up).
        let all: Vec<&Checkpoint> = batch
            .iter()
            .map(|(_, c)| c)
            .filter(|c| !c.files.is_empty() || c.seq.is_multiple_of(PRUNE_EVERY))
            .collect();
        let stale = known.listed.is_none_or(|at| at.past(self.stale_after()));
        let mut caught_up = false;
        if stale && !all.is_empty() {
            self.read_log(&mut known)?;
            caught_up = true;
        }
        for _ in 0..MAX_LOST {
            // From the whole batch each time: what the table holds is read afresh after a
            // version found below a checkpoint, and may hold less than was learned before.
            let left: Vec<&Checkpoint> = all
                .iter()
                .copied()
                .filter(|c| {
                    known
                        .txn
                        .get(&c.key)
                        .is_none_or(|held| c.next_offset > *held)
                })
                .collect();
            let version = known.newest();
            if left.is_empty() {
                return Ok(version);
            }
            let bytes = self.entry(&left);
            let name = log_name(version + 1);
            #[cfg(test)]
            crate::hooks::at("delta: before a version's put");
            #[cfg(test)]
            if crate::hooks::taken("delta: a put that lands first") {
                self.dest.put_atomic(&name, &bytes, true)?;
            }
            let won = match self.dest.put_atomic(&name, &bytes, true) {
                Ok(()) => bytes.clone(),
                // Ours (a write that reported failure and landed: the store's retry is
                // refused) or another writer's.
                Err(StoreError::Exists { .. }) => self.dest.read(&name)?,
                Err(e) => return Err(e.into()),
            };
            // Ours, but this process may have been paused since it listed the log for as long
            // as the log's retention (judged at half of it, `stale_after`, for a margin, or by
            // a checkpoint past this version that predates it: another writer may have
            // lowered the retention meanwhile): another writer's clean-up may have removed
            // the versions after the one it knew, so that this one sits below the newest
            // checkpoint, where readers never look. The log is read again from its newest
            // checkpoint; a version it does not hold is deleted (the clean-up, which keeps
            // entries in order, would stop at it) and its commits written again after the
            // newest. Whether the write reported success or found itself there: before, one
            // found there was taken as published unchecked, and its commits were lost.
            if won == bytes
                && (known.listed.is_none_or(|at| at.past(self.stale_after()))
                    || self.checked_below_a_checkpoint(version + 1)?)
            {
                tracing::warn!(
                    table = %self.url, version = version + 1,
                    "a version written long after the log was listed: reading the log again to check it is seen"
                );
                *known = txns::Known::default();
                self.read_log(&mut known)?;
                caught_up = true;
                let seen = left.iter().all(|c| {
                    known
                        .txn
                        .get(&c.key)
                        .is_some_and(|held| *held >= c.next_offset)
                });
                if seen {
                    self.after(version + 1);
                    return Ok(version + 1);
                }
                if let Err(e) = self.dest.delete(&name) {
                    tracing::warn!(table = %self.url, version = version + 1, error = %e, "could not remove a log entry below the newest checkpoint");
                }
                continue;
            }
            // Others wrote after what this process knows: read what they wrote at once, then
            // each version taken while this one tries.
            if won != bytes && !caught_up {
                caught_up = true;
                self.read_log(&mut known)?;
                continue;
            }
            // Another writer's, met after this process was paused past the retention (or by a
            // checkpoint past it): it may be one written into a name the clean-up had freed
            // (a writer paused as long), below the newest checkpoint, where readers never look.
            // Its commits would be learned as published, and lost for good: the log is read
            // again instead, and the batch written after the newest version.
            if won != bytes
                && (known.listed.is_none_or(|at| at.past(self.stale_after()))
                    || self.checked_below_a_checkpoint(version + 1)?)
            {
                tracing::warn!(
                    table = %self.url, version = version + 1,
                    "another writer's version met long after the log was listed: reading the log again"
                );
                *known = txns::Known::default();
                self.read_log(&mut known)?;
                // One that sits below a checkpoint made before it is removed, as one of ours
                // would be (the log's clean-up, which keeps entries in order, stops at it);
                // its writer, if it goes on, writes its commits again where they are seen.
                if self.below_a_checkpoint(version + 1)? {
                    if let Err(e) = self.dest.delete(&name) {
                        tracing::warn!(table = %self.url, version = version + 1, error = %e, "could not remove a log entry below the newest checkpoint");
                    }
                }
                continue;
            }
            // Ours (perhaps a write that reported failure and landed) or another writer's:
            // what it published is known either way, once what it set is checked (a version
            // this job cannot follow stays unread, and refuses the next try too).
            let mut txn = known.txn.clone();
            let facts = self.learn(&won, &mut txn);
            self.check_facts(facts)
                .map_err(|reason| TableError::Conflict {
                    url: self.url.clone(),
                    reason: format!("version {}: {reason}", version + 1),
                })?;
            known.txn = txn;
            known.version = Some(version + 1);
            if won == bytes {
                self.after(version + 1);
                return Ok(version + 1);
            }
        }
        Err(self.fail(format!(
            "{MAX_LOST} versions in a row went to other writers"
        )))
    }

    /// One version's lines: commit info, a `txn` per partition, an `add` per file.
    fn entry(&self, commits: &[&Checkpoint]) -> Vec<u8> {
        let now = now_ms();
        let mut txns: BTreeMap<&str, u64> = BTreeMap::new();
        for c in commits {
            let t = txns.entry(c.key.as_str()).or_default();
            *t = (*t).max(c.next_offset);
        }
        let mut lines = vec![json!({"commitInfo": {
            "timestamp": now,
            "operation": "STREAMING UPDATE",
            "operationParameters": {"outputMode": "Append", "queryId": self.job, "epochId": random_tag()},
            "isBlindAppend": true,
            "engineInfo": engine_info(),
            "sluice": {"job": self.job, "commits": commits.iter().map(|c| json!({"partition": c.key, "seq": c.seq, "nextOffset": c.next_offset})).collect::<Vec<_>>()},
        }})
        .to_string()];
        for (key, version) in &txns {
            lines.push(
                json!({"txn": {"appId": self.app_id(key), "version": version, "lastUpdated": now}})
                    .to_string(),
            );
        }
        // One `add` per path in a version (the protocol's rule); a commit given twice (a
        // catch-up beside the commit it catches up) adds its files once.
        let mut paths = std::collections::HashSet::new();
        for c in commits {
            for f in c.files.iter().filter(|f| paths.insert(f.path.as_str())) {
                let add = Add {
                    // Readers decode the path and look the key up in the store.
                    path: self.dest.key(&f.path),
                    partition_values: f
                        .partition
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                    size: f.bytes as i64,
                    modification_time: c.committed_at_ms,
                    data_change: true,
                    stats: Some(json!({"numRecords": f.rows}).to_string()),
                    ..Default::default()
                };
                lines.push(serde_json::to_string(&Action::Add(add)).expect("an add serializes"));
            }
        }
        let mut bytes = lines.join("\n").into_bytes();
        bytes.push(b'\n');
        bytes
    }
}

impl Publisher for DeltaTable {
    fn partition_columns(&self) -> Vec<String> {
        self.partitions.clone().unwrap_or_default()
    }

    fn published(&self, key: &str) -> Result<Option<u64>, TableError> {
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        self.read_log(&mut known)?;
        Ok(known.txn.get(key).copied())
    }

    fn publish(&self, commits: &[Checkpoint]) -> Result<(), TableError> {
        if commits.is_empty() {
            return Ok(());
        }
        let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        let mine: Vec<u64> = commits
            .iter()
            .map(|c| {
                let t = q.next_ticket;
                q.next_ticket += 1;
                q.waiting.push((t, c.clone()));
                t
            })
            .collect();
        loop {
            if mine.iter().all(|t| q.done.contains_key(t)) {
                let mut outcome = Ok(());
                for t in &mine {
                    if let Some(Err((reason, permanent))) = q.done.remove(t) {
                        outcome = Err(match permanent {
                            true => TableError::Conflict {
                                url: self.url.clone(),
                                reason,
                            },
                            false => self.fail(reason),
                        });
                    }
                }
                return outcome;
            }
            if !q.leading {
                // Write what waits, for everyone waiting.
                q.leading = true;
                let batch = std::mem::take(&mut q.waiting);
                drop(q);
                let r =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.commit(&batch)));
                q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
                q.leading = false;
                let outcome = match r {
                    Ok(Ok(_)) => Ok(()),
                    // The reason without the table's name, which the waiters add again.
                    Ok(Err(e)) => Err((
                        match &e {
                            TableError::Conflict { reason, .. }
                            | TableError::Delta { reason, .. } => reason.clone(),
                            e => e.to_string(),
                        },
                        e.is_permanent(),
                    )),
                    Err(p) => Err((
                        format!("publishing panicked: {}", crate::panics::message(&p)),
                        false,
                    )),
                };
                for (t, _) in &batch {
                    q.done.insert(*t, outcome.clone());
                }
                self.wake.notify_all();
                continue;
            }
            q = self.wake.wait(q).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// The `txn` app id of partition `key` of job `job`.
pub fn app_id(job: &str, key: &str) -> String {
    format!("sluice/{job}/{key}")
}

pub(super) fn engine_info() -> String {
    format!("sluice/{}", env!("CARGO_PKG_VERSION"))
}
