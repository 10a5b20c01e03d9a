//! The source side of a task: the loop that reads the source, decodes chunks in parallel and
//! puts the items into the channel; it pauses the source while the channel is full and carries
//! the workers' rewinds and commits back to the source.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;

use super::fenced::{FenceWatch, Step};
use super::restored::Restored;
use super::stall::{self, StallWatch, STALL_AFTER};
use super::TaskError;
use crate::channel::{Channel, Item, Provenance};
use crate::decode::{Chunk, Decoded, RecordDecoder};
use crate::metrics::Metrics;
use crate::pipeline::{self, Produced};
use crate::schema::UnknownFields;
use crate::sink::control::Control;
use crate::source::{Next, NotReadState, Source};

/// How often lag is computed (it asks the broker) and logged.
const LAG_EVERY: Duration = Duration::from_secs(5);
const LAG_LOG_EVERY: Duration = Duration::from_secs(30);

/// How long the channel stays full before the source is paused.
const PAUSE_AFTER: Duration = Duration::from_secs(2);

#[allow(clippy::too_many_arguments)]
pub(super) fn source_loop(
    decoder: &RecordDecoder,
    threads: usize,
    source: &mut dyn Source,
    channel: &Channel,
    control: &Control,
    metrics: &Metrics,
    stop: &AtomicBool,
    restored: &mut Restored,
) -> Result<(), TaskError> {
    let mut ended = false;
    // Chunks produced but not yet in the channel; kept below the pipeline's permits so the
    // producer never blocks waiting for one and the source is always served. When at the cap
    // the producer waits for the next put (signalled), not for a fixed time.
    let in_flight_cap = 2 * threads.max(1) as u64 + 1;
    let put_signal = (Mutex::new(()), Condvar::new());
    let in_flight = || {
        control
            .produced
            .load(Ordering::Acquire)
            .saturating_sub(control.put.load(Ordering::Acquire))
    };
    let mut full_since: Option<Instant> = None;
    // That episode paused the source for a full channel (said once).
    let mut full_paused = false;
    // Since when the chunks in flight have been at their cap (decoders behind, or a put
    // blocked on a full channel).
    let mut capped_since: Option<Instant> = None;
    // That episode paused the source (said once).
    let mut capped_paused = false;
    let mut last_lag = Instant::now();
    metrics.paused(control.paused.load(Ordering::Acquire));
    let mut last_lag_log = Instant::now();
    let mut stalls = StallWatch::new(crate::fault::millis("stall_after").unwrap_or(STALL_AFTER));
    // How long the source was held back (channel full, task paused) in all, before `full_since`.
    let mut held = Duration::ZERO;
    let mut fences = FenceWatch::new();
    pipeline::run(
        decoder,
        threads,
        |chunk: &mut Chunk| -> Result<Produced<(u32, u64)>, TaskError> {
            if let Some(why) = control
                .worker_fatal
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
            {
                return Err(TaskError::Job {
                    job: String::new(),
                    reason: format!("a sink worker stopped: {why}"),
                });
            }
            let overdue = control.partitions.overdue_fence(fences.grace());
            match fences.step(overdue, Instant::now()) {
                Step::Nothing => {}
                Step::Rejoin(p) => {
                    tracing::warn!(
                        partition = %control.partitions.label(p),
                        grace_s = fences.grace().as_secs(),
                        "a partition another owner fenced is still assigned to this member: \
                         joining the group again, so that it assigns afresh"
                    );
                    if !source.rejoin()? {
                        return Err(TaskError::Job {
                            job: String::new(),
                            reason: fences.no_group(p),
                        });
                    }
                    metrics.rejoined();
                }
                Step::Fail(reason) => {
                    return Err(TaskError::Job {
                        job: String::new(),
                        reason,
                    })
                }
            }
            control.partitions.ask_flush(source.flush_wanted());
            for (key, n) in source.take_skipped() {
                metrics.offsets_skipped(&key, n);
            }
            for (p, next) in control.partitions.take_committed() {
                source.committed(p, next);
                restored.committed(p, next);
                if let Some(key) = control.partitions.key(p) {
                    metrics.committed_up_to(&key, next);
                }
            }
            if last_lag.elapsed() > LAG_EVERY {
                last_lag = Instant::now();
                metrics.paused(control.paused.load(Ordering::Acquire));
                let not_read = source.not_read();
                let of = |state| not_read.iter().filter(|n| n.state == state).count();
                metrics.without_leader(of(NotReadState::WithoutLeader));
                metrics.refused(of(NotReadState::Refused));
                *control.not_read.lock().unwrap_or_else(|p| p.into_inner()) = not_read;
                metrics.lag_unknown(source.lag_unknown());
                let lags = source.lag();
                for (key, lag, next) in &lags {
                    metrics.lag(key, *lag, *next);
                }
                let held_now = held
                    + full_since.map_or(Duration::ZERO, |s| s.elapsed())
                    + capped_since
                        .map(|s| s.elapsed())
                        .filter(|d| *d >= PAUSE_AFTER)
                        .unwrap_or_default();
                let silent = source.contact().map(|c| c.silent_for());
                stall::log(stalls.look(Instant::now(), &lags, held_now), silent);
                if last_lag_log.elapsed() > LAG_LOG_EVERY && !lags.is_empty() {
                    last_lag_log = Instant::now();
                    let total: i64 = lags.iter().map(|(_, l, _)| l).sum();
                    let (worst, max, _) =
                        lags.iter().max_by_key(|(_, l, _)| *l).expect("not empty");
                    tracing::info!(partitions = lags.len(), total, max, worst = %worst, "consumer lag");
                }
            }
            for r in control.partitions.take_rewinds() {
                if !control.partitions.is_current(&r) {
                    continue; // the partition was revoked or rewound again since
                }
                ended = false;
                control.source_done.store(false, Ordering::Release);
                let Some((items, (offset, line))) = restored.replay(r.partition, r.offset) else {
                    source.seek(r.partition, r.offset, r.line)?;
                    control.partitions.seeked(&r);
                    continue;
                };
                // Restored records the source does not hold: replayed from the restore, the
                // source reads on after them.
                source.seek(r.partition, offset, line)?;
                control.partitions.seeked(&r);
                tracing::info!(
                    partition = r.partition,
                    from = r.offset,
                    items = items.len(),
                    "replaying restored spill items (the source does not hold them)"
                );
                for mut item in items {
                    item.prov.epoch = r.epoch;
                    let stopping = || stop.load(Ordering::Acquire);
                    channel
                        .put_unless(item, stopping)
                        .map_err(|e| TaskError::Job {
                            job: String::new(),
                            reason: format!("replaying restored spill items: {e}"),
                        })?;
                }
            }
            // After the rewinds: one a worker asked for before the stop is carried out (a
            // memory log reads the partition again into the channel, to be spilled).
            if stop.load(Ordering::Acquire) && source.finish() {
                return Ok(Produced::End);
            }
            // A worker that rewinds a partition marks the source not done (`sink::recovery`),
            // which can land after the replay it asked for was read to its end: read on, which
            // ends again at once when nothing is left.
            if ended && !control.source_done.load(Ordering::SeqCst) {
                ended = false;
            }
            if ended {
                // The source has ended and everything decoded is in the channel, then the
                // channel holds nothing, taken or not, then every worker says it is done. In
                // that order: once drained, nothing more is put (until a rewind, which this
                // thread applies); a worker says it is not done right after it takes items,
                // before they leave the channel, so "done" read after an empty channel covers
                // them. Read in another order, an item put after the channel was read, or a
                // "done" from before a take, could end the run without it. A worker's "done"
                // can also be stale (it said so right after its last commit failed and
                // rewound, before the replay reached its lane): the replay is then in the
                // channel, or not yet drained.
                let drained = control.drained();
                let empty =
                    drained && (channel.usage().1 == 0 || crate::fault::enabled("end_early"));
                let all_done = control
                    .finished
                    .lock()
                    .expect("finished lock")
                    .iter()
                    .all(|f| *f);
                if empty && all_done {
                    return Ok(Produced::End);
                }
                if all_done {
                    std::thread::sleep(Duration::from_millis(20));
                } else {
                    // The last lane to finish ends the run at once, not at the next poll.
                    control.wait_finished(Duration::from_millis(20));
                }
                return Ok(Produced::Idle);
            }
            // Back-pressure: while the channel is full the source is not read, so its client's
            // bounded prefetch queue fills and fetching stops. When that lasts, the source is
            // paused and keeps serving its protocol (a group member that stops polling for
            // long is evicted); pausing at once would make the client drop and refetch its
            // queue at every short stall.
            if in_flight() >= in_flight_cap {
                // The same holds here: a put blocked on a full channel (the destination
                // down) keeps the chunks in flight at their cap for as long as it lasts, and a
                // source not polled meanwhile was evicted from its group after
                // `max.poll.interval.ms`.
                let since = *capped_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= PAUSE_AFTER {
                    if !capped_paused {
                        capped_paused = true;
                        tracing::info!("the chunks in flight wait for room in the channel: fetching paused, the source kept polling");
                    }
                    source.pause(true)?;
                    source.tick()?;
                }
                let guard = put_signal.0.lock().expect("signal lock");
                if in_flight() >= in_flight_cap {
                    let _ = put_signal
                        .1
                        .wait_timeout(guard, Duration::from_millis(50))
                        .expect("signal lock");
                }
                return Ok(Produced::Idle);
            }
            // An episode long enough to pause the source held it back, as a full channel
            // does (the stall watch does not count it).
            if let Some(since) = capped_since.take() {
                let for_ = since.elapsed();
                if for_ >= PAUSE_AFTER {
                    held += for_;
                }
            }
            capped_paused = false;
            // A stop overrides a pause and, for records whose only copy the source holds (a
            // memory log's), the channel's bound: nobody takes from the channel any more, and
            // what it holds is spilled.
            let stopping = stop.load(Ordering::Acquire);
            let full = channel.pressure() && !(stopping && source.only_copy());
            if full || (control.paused.load(Ordering::Acquire) && !stopping) {
                let since = *full_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= PAUSE_AFTER {
                    if full && !full_paused {
                        full_paused = true;
                        tracing::info!(
                            "the channel is full: fetching paused, the source kept polling"
                        );
                    }
                    source.pause(true)?;
                    source.tick()?;
                } else {
                    std::thread::sleep(Duration::from_millis(2));
                }
                return Ok(Produced::Idle);
            }
            if let Some(since) = full_since.take() {
                held += since.elapsed();
            }
            full_paused = false;
            source.pause(false)?;
            match source.next(chunk)? {
                Next::Chunk(p) => {
                    control.produced.fetch_add(1, Ordering::AcqRel);
                    let epoch = control.partitions.source_epoch(p);
                    Ok(Produced::Chunk((p, epoch)))
                }
                Next::Idle => Ok(Produced::Idle),
                Next::End => {
                    if !ended {
                        tracing::info!(
                            "the source is read to its end: what it handed out commits now"
                        );
                    }
                    ended = true;
                    // SeqCst here and where items are put (another thread): of the two, the
                    // later sees the other's write and wakes the workers.
                    control.source_done.store(true, Ordering::SeqCst);
                    if control.drained() {
                        channel.wake_all();
                    }
                    Ok(Produced::Idle)
                }
            }
        },
        |(p, epoch), chunk, decoded| {
            let filtered = decoded.filtered;
            metrics.filtered(filtered);
            let mut item = to_item(decoder, p, epoch, chunk, decoded)?;
            let mut dropped = 0;
            if let Some(stages) = decoder.stages() {
                match crate::stage::enforce(stages.on_error, &mut item.dead) {
                    Ok(n) => {
                        dropped = n;
                        metrics.dropped(n);
                    }
                    Err(reason) => {
                        return Err(TaskError::Job {
                            job: String::new(),
                            reason: format!(
                                "source partition {}: {reason}",
                                control.partitions.label(p)
                            ),
                        })
                    }
                }
            }
            if decoder.schema().unknown_fields == UnknownFields::Error {
                if let Some(d) = item.dead.iter().find(|d| d.class() == "unknown") {
                    return Err(TaskError::Job {
                        job: String::new(),
                        reason: format!(
                            "schema {} has unknown_fields = \"error\": the record at offset {} of source partition {} has {}",
                            decoder.schema().path.display(),
                            d.position.offset,
                            control.partitions.label(p),
                            d.reason.split(" (").next().unwrap_or(&d.reason)
                        ),
                    });
                }
            }
            if let Some(key) = control.partitions.key(p) {
                let rows = (item.batch.num_rows() + item.dead.len()) as u64;
                metrics.records_in(&key, rows + filtered + dropped);
                // Not for a partition revoked meanwhile: its series went, and no commit of
                // this process would take the entry away again.
                if control.partitions.owned(p).is_some() {
                    metrics.read_up_to(&key, item.prov.next_offset);
                }
                metrics.dead_letters_found(&key, &item.dead);
            }
            let r = channel.put_unless(item, || stop.load(Ordering::Acquire));
            if r.is_ok() {
                crate::fault::item_put();
            }
            control.put.fetch_add(1, Ordering::SeqCst);
            if control.drained() {
                // The workers of other lanes learn at once that nothing more comes.
                channel.wake_all();
            }
            let _guard = put_signal.0.lock().expect("signal lock");
            put_signal.1.notify_one();
            r.map_err(|e| TaskError::Job {
                job: String::new(),
                reason: format!("the channel refused data: {e}"),
            })
        },
    )
}

/// The item of one decoded chunk; an error when its batches do not fit one (a string column
/// past 2 GiB: a `source.chunk_bytes` of gigabytes).
fn to_item(
    decoder: &RecordDecoder,
    p: u32,
    epoch: u64,
    chunk: &Chunk,
    decoded: Decoded,
) -> Result<Item, TaskError> {
    let schema = decoder.output_schema();
    let records = decoded.records;
    let mut dead = decoded.dead;
    let mut batches = decoded.batches;
    let batch = match batches.len() {
        0 => RecordBatch::new_empty(schema),
        1 => batches.remove(0),
        _ => arrow::compute::concat_batches(&schema, &batches).map_err(|e| TaskError::Job {
            job: String::new(),
            reason: format!(
                "source partition {p}: the {} rows of one chunk do not fit one batch ({e}); lower `source.chunk_bytes` (a push source: `max_body`)",
                batches.iter().map(|b| b.num_rows()).sum::<usize>()
            ),
        })?,
    };
    let prov = if let (Some(from), Some(&first), Some(&last)) = (
        chunk.from_offset,
        chunk.offsets.first(),
        chunk.offsets.last(),
    ) {
        // Message-framed: one record per line; positions are the messages' offsets.
        for d in &mut dead {
            if let Some(&o) = chunk
                .offsets
                .get((d.position.line as usize).saturating_sub(1))
            {
                d.position.offset = o;
            }
        }
        Provenance {
            partition: p,
            from_offset: from,
            first_offset: first,
            last_offset: last,
            next_offset: last + 1,
            next_line: 0,
            epoch,
            mark: chunk.mark.filter(|m| m.offset == last),
        }
    } else {
        let next_offset = chunk.end_offset();
        Provenance {
            partition: p,
            // Files: where the partition stood before the chunk (a CSV header lies between).
            from_offset: chunk.from_offset.unwrap_or(chunk.first_offset),
            first_offset: chunk.first_offset,
            last_offset: next_offset.saturating_sub(1),
            next_offset,
            next_line: chunk.next_line(),
            epoch,
            // The bytes before its end (see `source::file`).
            mark: chunk
                .mark
                .filter(|m| m.offset.checked_add(m.len) == Some(next_offset)),
        }
    };
    Ok(Item {
        batch,
        dead,
        prov,
        records,
    })
}
