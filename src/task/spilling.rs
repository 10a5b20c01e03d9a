//! The task's spill: the channel's items written to disk by a graceful stop, and restored
//! into the channel (before the source reads on) by the next start.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::restored::Restored;
use super::spill_move::{plan, Move};
use super::{transition, RunOptions, TaskError, TaskState};
use crate::channel::spill::{self, SpillOwner};
use crate::channel::Channel;
use crate::commit::checkpoint::Checkpoints;
use crate::config::Job;
use crate::metrics::Metrics;
use crate::sink::control::Control;
use crate::source::Source;

/// Restores the spill into the channel, each partition's items from its checkpoint on.
///
/// A push source's spill counts positions in the log that spilled it. When the partition's
/// newest checkpoint was written by a log outside the spill's line (another process of the job
/// committed in its own log's positions while this one was stopped), no commit can have held
/// the spilled records (acknowledged here, never in the other's log): they continue that
/// checkpoint, moved to start at its position. The positions restored with, and this log, are
/// recorded in the spill before any item is restored, so a start that finds the spill again
/// reads them as this one's commits counted them.
///
/// Returns the restored items of partitions whose source does not hold them to read again (a
/// memory log holds nothing from before its process; nor does an empty WAL whose items moved):
/// a rewind into them replays them from there.
#[allow(clippy::too_many_arguments)]
pub(super) fn restore_spill(
    state_dir: &std::path::Path,
    schema: &arrow::datatypes::SchemaRef,
    opts: &RunOptions,
    channel: &Channel,
    control: &Control,
    source: &mut dyn Source,
    checkpoints: &Checkpoints,
    state: &mut TaskState,
    name: &str,
    metrics: &Metrics,
    mine: &SpillOwner,
    stop: &AtomicBool,
    (orc, partition_columns): (bool, &[usize]),
) -> Result<Restored, TaskError> {
    if !spill::exists(state_dir) {
        return Ok(Restored::default());
    }
    let discard = opts.discard_spill || opts.from_checkpoint.is_some() || source.dynamic();
    // A manifest that does not read may be another job's: only `--discard-spill` drops it,
    // and a group member (which never spills) leaves it alone.
    let head = match spill::header(state_dir) {
        Ok(head) => Some(head),
        Err(_) if opts.discard_spill => None,
        Err(e) if source.dynamic() => {
            tracing::warn!(error = %e, "a spill whose manifest does not read is in the state folder; left in place");
            return Ok(Restored::default());
        }
        Err(e) => return Err(e.into()),
    };
    // By the job's name: its destination may be spelled differently from one start to the
    // next (a relative path, another working folder) and a changed destination still wants
    // the records a push job acknowledged.
    if let Some((theirs, head)) = head.as_ref().and_then(|h| {
        h.owner
            .as_ref()
            .filter(|o| o.job != mine.job)
            .map(|o| (o, h))
    }) {
        // Another run's spill in a shared state folder (a job and its backfills, jobs left at
        // the default folder): never restored here.
        let whose = format!(
            "the spill in {} is job `{}`'s (destination {}), not this run's",
            state_dir.display(),
            theirs.job,
            theirs.url
        );
        // A push log's spill: with `durability = "memory"` its records' only copy.
        let pushed = !head.logs.is_empty();
        if source.dynamic() {
            // A group member never spills: it leaves the folder's spill to its run.
            tracing::warn!("{whose}; left in place");
            return Ok(Restored::default());
        }
        if pushed && !opts.discard_spill {
            return Err(TaskError::Job {
                job: name.to_string(),
                reason: format!(
                    "{whose}, and it holds pushed records (a memory log's only copy): give this \
                     job its own `job.state_dir` (and start `{}` again to restore them)",
                    theirs.job
                ),
            });
        }
        if !pushed {
            tracing::warn!("{whose}; discarded (that run reads its records again from its source)");
            spill::remove(state_dir)?;
            return Ok(Restored::default());
        }
    }
    // A push log's spill (with `durability = "memory"`, its records' only copy) that this
    // job's source cannot take back (the job reads another source now under the same name):
    // refused, not dropped without a word, unless `--discard-spill`.
    if head
        .as_ref()
        .is_some_and(|h| !h.logs.is_empty() && !opts.discard_spill)
    {
        let keys: std::collections::HashSet<String> =
            source.partitions().iter().map(|p| p.key()).collect();
        let ranges = spill::ranges(state_dir)?;
        let foreign = source.dynamic()
            || ranges
                .iter()
                .any(|(k, _, _)| k.as_ref().is_some_and(|k| !keys.contains(k)));
        if foreign {
            return Err(TaskError::Job {
                job: name.to_string(),
                reason: format!(
                    "the spill in {} holds pushed records (with durability = \"memory\", their \
                     only copy) of partitions this job's source does not have (it reads another \
                     source now): start the push source again to restore them, or start with \
                     --discard-spill to drop them",
                    state_dir.display()
                ),
            });
        }
    }
    // Batches made by other stages or decoded with another schema: read again from the
    // source where it holds them all, else restored by name (see `respill`).
    let respill = match &head {
        Some(h) if !discard => super::respill::decide(state_dir, h, mine, schema, source)?,
        _ => super::respill::Respill::Same,
    };
    let discard = match respill {
        super::respill::Respill::ReadAgain(why) => {
            tracing::info!(path = %state_dir.display(), "{why}: the spill's records are read again from the source");
            spill::remove(state_dir)?;
            return Ok(Restored::default());
        }
        super::respill::Respill::Restore(why) => {
            tracing::warn!(path = %state_dir.display(), "{why}, and the source may not hold the spill's records again (a push log's, or past what it keeps): they are restored as they were made, by column name (fields added since are null)");
            discard
        }
        super::respill::Respill::Same => discard,
    };
    if discard {
        // A group member does not know its partitions yet; Kafka replays them anyway.
        if source.log_id().is_some() {
            tracing::error!(path = %state_dir.display(), "discarding the spill; the records it holds that the push log does not hold too (all of them with `durability = \"memory\"`) are lost");
        } else {
            tracing::warn!(path = %state_dir.display(), "discarding the spill; its records are replayed from the source");
        }
        spill::remove(state_dir)?;
        return Ok(Restored::default());
    }
    transition(state, TaskState::Restoring, name, metrics);
    let spill = spill::read(state_dir, schema)?;
    let mut expected = control.partitions.positions();
    // The mark of each partition's last restored item.
    let mut marks = HashMap::new();
    let partitions = source.partitions();
    let handles: HashMap<String, u32> = partitions.iter().map(|p| (p.key(), p.id)).collect();
    // A bounded run's end of each partition: a spill of the same name over a wider range (a
    // run that committed nothing may be started again over another one) holds records past
    // it, which this run must not write.
    let ends: HashMap<u32, u64> = source
        .bounds()
        .into_iter()
        .map(|(p, _, end)| (p, end))
        .collect();
    let mut broken: Vec<u32> = Vec::new();
    // Partitions one of whose items was looked at (a gap after the first is within the
    // spill: a commit that failed at the stop).
    let mut seen: std::collections::HashSet<u32> = std::collections::HashSet::new();
    // Partitions whose items move to continue another log's checkpoint (`None`: they stay).
    let mut plans: HashMap<u32, Option<Move>> = HashMap::new();
    let mut provs = Vec::with_capacity(spill.items.len());
    let mut restore = Vec::new();
    for (key, mut item) in spill.items {
        provs.push(item.prov);
        // By key: handles are per process, and the source's partitions may have changed
        // (files added to or reordered in `paths`).
        let p = match &key {
            Some(k) => match handles.get(k) {
                Some(&p) => p,
                None => continue, // a partition the source no longer has
            },
            // A spill of an older version: its handle is only certain with one partition.
            None if partitions.len() == 1 && item.prov.partition == partitions[0].id => {
                partitions[0].id
            }
            None => {
                tracing::warn!(
                    "a spill item without a partition key; replaying it from the source"
                );
                continue;
            }
        };
        item.prov.partition = p;
        let Some(&(want, _)) = expected.get(&p) else {
            continue; // a partition the source no longer has
        };
        let planned = match plans.entry(p) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(plan(
                &spill.head.logs,
                spill.head.restored,
                key.as_deref(),
                p,
                source,
                checkpoints,
            )?),
        };
        if let Some(Move { committed, by }) = planned {
            // (`plan` refuses a spill whose committed part is unknown.)
            if item.prov.next_offset <= committed.unwrap_or(u64::MAX) {
                continue; // committed by a log of the spill's line (a restore that stopped)
            }
            let by = *by.get_or_insert(want as i128 - item.prov.from_offset as i128);
            let at = |o: u64| (o as i128 + by).max(0) as u64;
            item.prov.from_offset = at(item.prov.from_offset);
            item.prov.first_offset = at(item.prov.first_offset);
            item.prov.last_offset = at(item.prov.last_offset);
            item.prov.next_offset = at(item.prov.next_offset);
            for d in &mut item.dead {
                d.position.offset = at(d.position.offset);
            }
            *provs.last_mut().expect("pushed above") = item.prov;
        }
        if broken.contains(&p) || item.prov.next_offset <= want {
            seen.insert(p);
            continue; // already committed
        }
        if let Some(&end) = ends.get(&p).filter(|&&end| item.prov.next_offset > end) {
            tracing::warn!(
                partition = p,
                end,
                reaches = item.prov.next_offset,
                "the spill reaches past this run's range (a run over another range spilled it); reading the partition from the source instead"
            );
            broken.push(p);
            continue;
        }
        if item.prov.from_offset != want {
            // Not contiguous (with the checkpoint, or with what was restored before it: records
            // a worker held at the stop whose commit failed): the source reads on from `want`.
            let moved_from = spill
                .head
                .owner
                .as_ref()
                .map(|o| o.url.as_str())
                .filter(|url| *url != mine.url && !seen.contains(&p));
            let only_copy = source.replayable(p)?.is_some_and(|(s, e)| s == e);
            match (only_copy, moved_from) {
                // Their only copy (a memory log's acknowledged pushes), spilled for another
                // destination whose checkpoint they continue: dropping them lost them without
                // a trace when a job's `url` changed (by a reload, or between runs).
                (true, Some(url)) => {
                    return Err(TaskError::Job {
                        job: name.to_string(),
                        reason: format!(
                            "partition {}: the spill holds records from position {} on, spilled for destination {url}, whose checkpoint they continue; this destination's stands at {want}. The push log does not hold them (durability = \"memory\"): their only copy is the spill, which is kept. Start with that destination, or with --discard-spill to drop them",
                            key.as_deref().unwrap_or("?"),
                            item.prov.from_offset
                        ),
                    });
                }
                (true, None) => tracing::error!(
                    partition = p,
                    want,
                    got = item.prov.from_offset,
                    "the spill does not continue where the partition stands, and the log does not hold those records: the spill's records from here on are lost"
                ),
                (false, _) => tracing::warn!(
                    partition = p,
                    want,
                    got = item.prov.from_offset,
                    "spill does not continue the checkpoint; replaying instead"
                ),
            }
            broken.push(p);
            continue;
        }
        seen.insert(p);
        item.prov.epoch = 0;
        if orc || !partition_columns.is_empty() {
            // Made for another format or without the table (or by an earlier version), it
            // skipped the decoder's checks of what a file cannot hold (`made_by` sends such a
            // spill to be read again wherever the source holds it).
            let first = crate::decode::framing::Position {
                line: 0,
                offset: item.prov.first_offset,
            };
            let refusing = (orc, partition_columns);
            if let Some((batch, dead)) =
                crate::decode::writable::restored(&item.batch, refusing, first)
            {
                item.batch = batch;
                item.dead.extend(dead);
            }
        }
        expected.insert(p, (item.prov.next_offset, item.prov.next_line));
        marks.insert(p, item.prov.mark);
        restore.push(item);
    }
    let mut logs_now = spill.head.logs;
    if let Some(mine) = source.log_id() {
        if !logs_now.contains(&mine) {
            logs_now.push(mine);
        }
        spill::record(state_dir, &provs, logs_now.clone())?;
    }
    let restored = restore.len();
    let mut kept = Restored {
        restored_logs: logs_now,
        ..Restored::default()
    };
    for item in restore {
        kept.parts
            .entry(item.prov.partition)
            .or_default()
            .push(item.clone());
        // Read, as far as the age of what is not committed goes (a destination that stays
        // down while the restored items wait shows in it).
        if let Some(key) = control.partitions.key(item.prov.partition) {
            metrics.read_up_to(&key, item.prov.next_offset);
        }
        // Already in memory: a stop (nobody takes then) lets it in past the bound.
        let stopping = || stop.load(Ordering::Acquire);
        channel
            .put_unless(item, stopping)
            .map_err(|e| TaskError::Job {
                job: name.to_string(),
                reason: format!("restoring the spill: {e}"),
            })?;
    }
    // Each partition reads on after what was restored of it (up to where a partition that
    // broke off stopped continuing its checkpoint: the source reads the rest again).
    for (p, (offset, line)) in expected {
        source.seek(p, offset, line)?;
        // What the last restored item read before it, compared as a checkpoint's is (a file
        // rewritten in place since the spill).
        if let Some(&Some(mark)) = marks.get(&p) {
            source.expect_record(p, offset, mark);
        }
    }
    // Kept only where the source cannot read the restored records again ("cannot tell":
    // Kafka, which can).
    let mut held = HashMap::new();
    for (&p, items) in &kept.parts {
        let from = items[0].prov.from_offset;
        held.insert(p, source.replayable(p)?.is_none_or(|(s, _)| s <= from));
    }
    kept.parts.retain(|p, _| !held[p]);
    if kept.parts.is_empty() {
        spill::remove(state_dir)?;
    } else {
        // Until they are committed, the spill is their only copy on disk: a crash or a failed
        // task restores them again (the ones committed by then are skipped).
        kept.spill = Some(state_dir.to_path_buf());
    }
    tracing::info!(items = restored, "restored the spill into the channel");
    Ok(kept)
}

/// Whose a spill of `job`'s run is: its (backfill's own) name and its destination.
pub(super) fn spill_owner(job: &Job, schema: &crate::schema::RepoSchema) -> SpillOwner {
    SpillOwner {
        job: job.file.job.name.clone(),
        url: job.resolve_url(&job.file.sink.url),
        stages: Some(made_by(job, schema)),
    }
}

/// What makes a spill's batches what they are besides their Arrow schema: the stages,
/// `on_error`, ORC's refusals, and the repo schema as loaded (a field's source key, default, timestamp
/// format or kind change the values without changing the columns).
fn made_by(job: &Job, schema: &crate::schema::RepoSchema) -> String {
    let mut made = format!(
        "{:?} {} {:?} {:?}",
        job.file.repo.stages, job.file.repo.on_error, schema.fields, schema.unknown_fields
    );
    // ORC's values made dead letters as they are decoded (`decode::writable`): a spill made
    // for another format lacks them. (Only then, so other formats' spills keep their mark.)
    if job.format.kind == crate::format::FormatKind::Orc {
        made.push_str(" orc");
    }
    format!("{:08x}", crc32fast::hash(made.as_bytes()))
}

/// Stops the workers (they commit what is open) within the stop deadline, then writes what
/// the channel still holds to the spill in `spill_dir`, or drops it when the source replays
/// it (`None`).
pub(super) fn graceful_stop(
    job: &Job,
    (spill_dir, mine): (Option<&std::path::Path>, &SpillOwner),
    log: Option<String>,
    schema: &arrow::datatypes::SchemaRef,
    channel: &Channel,
    control: &Control,
    restored: Restored,
) -> Result<(), TaskError> {
    let deadline = Instant::now() + job.stop_deadline;
    control.phase.stop();
    loop {
        let done = control
            .finished
            .lock()
            .expect("finished lock")
            .iter()
            .all(|f| *f);
        if done {
            break;
        }
        if Instant::now() >= deadline {
            tracing::warn!("stop deadline reached before every open file was committed; their records will be replayed");
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // A replay a worker asked for after the source stopped reading is not carried out: what
    // its partition held from there is read again at the next start, but a memory log keeps
    // no copy of what the spill lacks (the rewind took it from the channel).
    for r in control.partitions.take_rewinds() {
        if control.partitions.is_current(&r) {
            tracing::error!(
                partition = r.partition,
                offset = r.offset,
                "a replay asked for while stopping was not carried out: the next start reads \
                 the partition again from this offset (with durability = \"memory\", its records \
                 from here that the spill lacks are lost)"
            );
        }
    }
    let items = channel.drain_all(|p| control.partitions.epoch(p));
    let n = items.len();
    match spill_dir {
        Some(dir) => {
            // The spill this run restored, if still kept, is written again with what is new
            // (replacing it whole), or goes when the stop's commits covered all of it.
            let committed = control
                .partitions
                .positions()
                .into_iter()
                .map(|(p, (offset, _))| (p, offset))
                .collect();
            let (items, meta) = restored.with_channel(items, &committed, mine.clone(), log);
            if items.is_empty() {
                spill::remove(dir)?;
            }
            let keys = control.partitions.keys();
            // Three tries (a disk's passing error); then the error says what is lost.
            let mut tries = 0;
            while let Err(e) = spill::write(dir, schema, &items, |p| keys.get(&p).cloned(), &meta) {
                tries += 1;
                if tries < 3 {
                    tracing::warn!(error = %e, path = %dir.display(), "writing the spill failed; trying again");
                    std::thread::sleep(Duration::from_millis(500 * tries));
                    continue;
                }
                let records: u64 = items.iter().map(|i| i.records).sum();
                let memory = matches!(
                    &job.file.source,
                    crate::config::SourceSection::Push { durability, .. } if durability.as_str() == "memory"
                );
                let fate = if memory {
                    "acknowledged to push clients (durability = \"memory\"), are lost"
                } else {
                    "are read again from the source at the next start"
                };
                return Err(TaskError::Job {
                    job: job.file.job.name.clone(),
                    reason: format!(
                        "the channel could not be spilled to {}: {e}; the {records} records it held, not committed, {fate}",
                        dir.display()
                    ),
                });
            }
            if n > 0 {
                tracing::info!(items = n, path = %dir.display(), "spilled the channel to disk");
            }
        }
        None if n > 0 => {
            tracing::info!(
                items = n,
                "dropped the channel's items; they are replayed from the source"
            )
        }
        None => {}
    }
    Ok(())
}
