//! The push source: records POSTed over HTTP (`POST /v1/repos/{repo}/data`, see [`http`]).
//!
//! A request's records are appended, all or nothing, to the repo's log ([`log`]): the WAL with
//! `wal` durability (fsync'd, with one fsync shared by the requests that arrive meanwhile,
//! before the answer), or memory with `memory` durability. The source reads the log like a
//! file, so pushed data takes the same path as every other source: decode, channel, workers,
//! commit. Log positions are the source offsets, so a checkpoint names a log position, a
//! rewind replays from the log and committed data is released from it.
//!
//! Room: the log holds at most `max_pending` bytes not yet read into the channel (the reader
//! stops while the channel is full) and `max_retained` bytes not yet committed; a request that
//! does not fit is refused whole (503) and nothing of it enters. Past half of `max_retained`
//! the workers are asked to commit what they hold, which releases the log.

pub mod http;
mod intake;
pub mod limits;
pub mod log;
mod owner;
mod pieces;

pub use intake::Intake;
use intake::{Inner, NOT_YET};

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use self::log::{Log, MemLog};
use self::owner::own_wal;
pub use self::owner::wal_owner;
use super::{Next, PartitionInfo, Source, SourceError};
use crate::decode::cost::Tally;
use crate::decode::framing::MAX_CHUNK_LINES;
use crate::decode::{Chunk, Decoded};
use crate::wal::Wal;

/// What a 200 promises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Survives a graceful restart (open files are committed, the channel spilled); a crash
    /// loses what was not yet committed.
    Memory,
    /// Survives a crash: written and fsync'd to the WAL before the answer.
    Wal,
}

/// Settings of a push source.
#[derive(Debug, Clone)]
pub struct PushSettings {
    pub durability: Durability,
    pub wal_dir: PathBuf,
    pub segment_bytes: u64,
    pub max_pending: u64,
    pub max_retained: u64,
    pub chunk_bytes: usize,
    /// How long a graceful stop waits for a memory log to be read into the channel.
    pub drain_timeout: Duration,
    /// Open a WAL damaged before its end by moving the damage aside (else refuse).
    pub move_wal_damage: bool,
    /// The job whose log the WAL is ([`own_wal`]).
    pub job: String,
    /// CSV's delimiter (records may span lines): where a replay may cut a request.
    pub quote: Option<u8>,
    /// Lines measured for what they decode to: a replay is cut by it too (JSON with lists or
    /// maps; see `decode::cost`).
    pub cost: Option<crate::decode::cost::LineCost>,
    /// The repo has stages: a replay reads one request a chunk, so each request is decoded
    /// with a stage account of its own (growth and work, `stage::guard`), as when it was
    /// taken. Several clients' requests decoded as one shared one: one client's records
    /// could make another's acknowledged records dead letters, or, with `on_error =
    /// "fail"`, stop the task at every replay of them.
    pub replay_alone: bool,
}

/// Why a push was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the repo's buffer is full ({pending} bytes waiting for the channel, {retained} not yet committed); retry later")]
    Full { pending: u64, retained: u64 },
    #[error("the task is not running (starting or stopping); retry later")]
    NotRunning,
    #[error("{0}; retry later")]
    DiskFull(String),
    /// One request is larger than the log takes as one record (a body of `max_body` and the
    /// line end added to it): refused, and the log goes on.
    #[error("{0}")]
    TooLarge(String),
    #[error("the log failed: {0}")]
    Failed(String),
}

/// The source side of a push repo: one partition, read from its log.
pub struct PushSource {
    intake: Arc<Intake>,
    info: PartitionInfo,
    stop_since: Option<Instant>,
    /// The identity of the log whose positions this source reads (a WAL's own; a memory
    /// log's, new with each process).
    log_id: Option<String>,
    /// The other log's checkpoint this log last continued from (a WAL records it).
    log_base: Option<(String, u64)>,
    /// The WAL folder's runs, this process's last (none for a memory log, whose identity is
    /// new with each process).
    runs: Option<crate::wal::Runs>,
}

impl PushSource {
    /// Opens the repo's log (replaying a WAL that a crash left: a torn tail is cut and
    /// reported). `topic` names the partition (`<topic>-0` in checkpoints and file names).
    pub fn open(topic: &str, settings: PushSettings) -> Result<PushSource, SourceError> {
        let log = match settings.durability {
            Durability::Memory => Log::Memory(MemLog::default()),
            Durability::Wal => {
                let refuse = |reason: String| SourceError::Other {
                    name: format!("push {topic}"),
                    reason,
                };
                own_wal(&settings.wal_dir, &settings.job, false).map_err(refuse)?;
                let damage = if settings.move_wal_damage {
                    crate::wal::Damage::MoveAside
                } else {
                    crate::wal::Damage::Refuse
                };
                let (wal, report) =
                    Wal::open_with(&settings.wal_dir, settings.segment_bytes, damage).map_err(
                        |e| SourceError::Other {
                            name: format!("push {topic}"),
                            reason: e.to_string(),
                        },
                    )?;
                if let Some((path, offset, to, moved, why)) = &report.moved {
                    tracing::error!(
                        segment = %path.display(),
                        offset,
                        moved_to = %to.display(),
                        moved_bytes = moved,
                        reason = %why,
                        "the WAL was damaged before its end: the damaged part and everything after it were moved aside (not replayed; kept for inspection)"
                    );
                }
                if let Some((path, offset, dropped, why)) = &report.truncated {
                    tracing::warn!(
                        segment = %path.display(),
                        offset,
                        dropped_bytes = dropped,
                        reason = %why,
                        "the WAL had a torn tail (a crash during an append, never acknowledged); it was cut off"
                    );
                }
                tracing::info!(
                    dir = %settings.wal_dir.display(),
                    segments = report.segments,
                    records = report.records,
                    start = report.start,
                    end = report.end,
                    "opened the WAL"
                );
                own_wal(&settings.wal_dir, &settings.job, true).map_err(refuse)?;
                Log::Wal(Box::new(wal))
            }
        };
        let end = log.end();
        let start = log.start();
        let good = log.mark();
        let (log_id, log_base, runs) = match &log {
            Log::Wal(w) => (
                w.id().map(str::to_string),
                w.base().map_err(|e| SourceError::Other {
                    name: format!("push {topic}"),
                    reason: e.to_string(),
                })?,
                Some(w.runs().clone()),
            ),
            Log::Memory(_) => (
                Some(format!("memory-{}", crate::commit::random_tag())),
                None,
                None,
            ),
        };
        Ok(PushSource {
            intake: Arc::new(Intake {
                inner: Mutex::new(Inner {
                    log,
                    synced: end,
                    good,
                    syncing: false,
                    read_pos: start,
                    committed: start,
                    failed: None,
                    fresh: VecDeque::new(),
                    fresh_bytes: 0,
                }),
                synced: Condvar::new(),
                data: Condvar::new(),
                settings,
                taking: AtomicU8::new(NOT_YET),
                flush_wanted: AtomicBool::new(false),
            }),
            info: PartitionInfo {
                id: 0,
                topic: topic.to_string(),
                number: 0,
            },
            stop_since: None,
            log_id,
            log_base,
            runs,
        })
    }

    fn error(&self, reason: impl std::fmt::Display) -> SourceError {
        SourceError::Other {
            name: format!("push {}", self.info.topic),
            reason: reason.to_string(),
        }
    }
}

impl Source for PushSource {
    fn partitions(&self) -> Vec<PartitionInfo> {
        vec![self.info.clone()]
    }

    fn seek(&mut self, _partition: u32, offset: u64, _line: u64) -> Result<(), SourceError> {
        let mut g = self.intake.lock();
        let past_end = offset > g.log.end();
        g.log.seek_check(offset).map_err(|e| match e {
            // No start mends it: an operator's decision (a supervised repo is not started
            // again and again).
            crate::wal::WalError::Released { want, start, .. } => SourceError::Refused {
                name: format!("push {}", self.info.topic),
                reason: format!(
                    "{e}: this destination's checkpoint needs records {want}..{start}, which the log released once they were committed elsewhere (the repo was moved to another sink.url and back, or this destination's checkpoints are an older copy). Records {want}..{start} are in the destination that committed them, not in this one. To go on here: save what the log holds with `sluice wal export`, move the WAL folder aside (the log then goes on from this checkpoint) and push what the export holds that this destination should have"
                ),
            },
            e => self.error(e),
        })?;
        g.read_pos = offset;
        if past_end {
            // The log continues from a checkpoint (or spill) ahead of it.
            g.synced = offset;
            g.good = g.log.mark();
            g.committed = g.committed.max(g.log.start());
        }
        Ok(())
    }

    fn log_id(&self) -> Option<String> {
        self.log_id.clone()
    }

    fn log_runs(&self) -> Vec<(String, u64)> {
        self.runs.as_ref().map(|r| r.tail()).unwrap_or_default()
    }

    fn log_shares(&self, _partition: u32, runs: &[(String, u64)]) -> Option<u64> {
        match &self.runs {
            Some(r) => r.shares(runs),
            // A memory log shares nothing with a WAL's runs.
            None if !runs.is_empty() => None,
            None => Some(u64::MAX),
        }
    }

    fn log_base(&self, _partition: u32) -> Option<(String, u64)> {
        self.log_base.clone()
    }

    fn continue_log(&mut self, _partition: u32, theirs: &str, pos: u64) -> Result<(), SourceError> {
        if let Log::Wal(w) = &self.intake.lock().log {
            match w.set_base(theirs, pos) {
                Ok(()) => {}
                // A full disk must not stop the start (it commits and frees segments); left
                // unrecorded, a later start may refuse where it need not, never the reverse.
                Err(crate::wal::WalError::Io { path, source })
                    if crate::wal::is_disk_full(&source) =>
                {
                    tracing::warn!(path = %path.display(), "no room to record where the WAL continues from");
                }
                Err(e) => return Err(self.error(e)),
            }
        }
        self.log_base = Some((theirs.to_string(), pos));
        Ok(())
    }

    fn replayable(&mut self, _partition: u32) -> Result<Option<(u64, u64)>, SourceError> {
        let g = self.intake.lock();
        Ok(Some((g.log.start(), g.log.end())))
    }

    fn resume_default(&mut self, _partition: u32) -> Result<(u64, u64), SourceError> {
        let mut g = self.intake.lock();
        g.read_pos = g.log.start();
        Ok((g.read_pos, 0))
    }

    fn next(&mut self, chunk: &mut Chunk) -> Result<Next, SourceError> {
        let mut g = self.intake.lock();
        if let Some(f) = &g.failed {
            return Err(self.error(f));
        }
        if g.read_pos >= g.synced {
            g = self
                .intake
                .data
                .wait_timeout(g, Duration::from_millis(20))
                .expect("intake lock")
                .0;
            if g.read_pos >= g.synced {
                return Ok(Next::Idle);
            }
        }
        chunk.data.clear();
        chunk.ends.clear();
        chunk.measured = false;
        chunk.offsets.clear();
        chunk.from_offset = None;
        chunk.first_offset = g.read_pos;
        chunk.first_line = 1;
        chunk.decoded = None;
        let (pos, synced) = (g.read_pos, g.synced);
        let max = self.intake.settings.chunk_bytes;
        // Requests before the reading position were replayed from the log.
        while g.fresh.front().is_some_and(|(start, _, _)| *start < pos) {
            if let Some((_, _, d)) = g.fresh.pop_front() {
                g.fresh_bytes = g.fresh_bytes.saturating_sub(d.memory_bytes());
            }
        }
        // Requests decoded when they were taken go on as they are, several to a chunk.
        let mut at = pos;
        let mut decoded: Option<Decoded> = None;
        while let Some((start, end, next)) = g.fresh.front() {
            let (start, end) = (*start, *end);
            let lines = decoded.as_ref().map_or(0, |d| d.records) + next.records;
            if start != at
                || end > synced
                || (at - pos) as usize >= max
                || (decoded.is_some() && lines as usize > MAX_CHUNK_LINES)
            {
                break;
            }
            let (_, _, d) = g.fresh.pop_front().expect("a fresh request");
            g.fresh_bytes = g.fresh_bytes.saturating_sub(d.memory_bytes());
            match &mut decoded {
                None => decoded = Some(d),
                Some(all) => {
                    all.batches.extend(d.batches);
                    all.dead.extend(d.dead);
                    all.records += d.records;
                    all.filtered += d.filtered;
                }
            }
            at = end;
        }
        let (limit, max) = match (&decoded, g.fresh.front()) {
            (Some(_), _) => (at, usize::MAX),
            // Replaying: read up to the first request still waiting in decoded form.
            (None, Some(&(start, _, _))) => (synced.min(start), max),
            (None, None) => (synced, max),
        };
        if limit <= pos {
            return Ok(Next::Idle);
        }
        let mut tally = Tally::default();
        let cost = self.intake.settings.cost.as_ref();
        let next = if decoded.is_some() {
            // The rows come from memory: the text's checksums are not checked (see
            // `Wal::read_records`). A piece of a request decoded in pieces ends inside it: the
            // read stops there.
            g.log.read(pos, limit, max, &mut chunk.data, false)
        } else {
            let measured = cost.map(|c| (c, &mut tally));
            let framing = log::Framing {
                quote: self.intake.settings.quote,
                alone: self.intake.settings.replay_alone,
            };
            g.log
                .replay(pos, limit, max, framing, measured, &mut chunk.data)
        }
        .map_err(|e| self.error(e))?;
        // A replay measured every line it read (see `decode::cost`).
        chunk.measured = decoded.is_none() && cost.is_some() && !tally.flagged;
        if let Some(d) = decoded {
            if next != limit {
                return Err(self.error(format!(
                    "the log holds {} bytes at {pos} where requests of {} bytes were appended",
                    next - pos,
                    limit - pos
                )));
            }
            chunk.decoded = Some(d);
        }
        g.read_pos = next;
        Ok(Next::Chunk(0))
    }

    fn committed(&mut self, _partition: u32, next_offset: u64) {
        let mut g = self.intake.lock();
        g.committed = g.committed.max(next_offset);
        if let Err(e) = g.log.release(next_offset) {
            tracing::warn!(error = %e, "could not release committed WAL segments");
        }
    }

    fn finish(&mut self) -> bool {
        self.intake.close();
        match self.intake.settings.durability {
            // Acknowledged pushes reach the channel (and are committed) before the source
            // ends, within the drain timeout; past it the WAL replays the rest at the next
            // start.
            Durability::Wal => {
                let since = *self.stop_since.get_or_insert_with(Instant::now);
                let g = self.intake.lock();
                g.read_pos >= g.log.end() || since.elapsed() >= self.intake.settings.drain_timeout
            }
            // Memory: what was acknowledged must reach the channel (and be committed or
            // spilled) before the source ends.
            Durability::Memory => {
                let since = *self.stop_since.get_or_insert_with(Instant::now);
                let g = self.intake.lock();
                let drained = g.read_pos >= g.log.end();
                if !drained && since.elapsed() >= self.intake.settings.drain_timeout {
                    tracing::error!(
                        bytes = g.log.end() - g.read_pos,
                        "the stop deadline passed before acknowledged pushes reached the channel; they are lost"
                    );
                    return true;
                }
                drained
            }
        }
    }

    fn only_copy(&self) -> bool {
        self.intake.settings.durability == Durability::Memory
    }

    fn intake(&self) -> Option<Arc<Intake>> {
        Some(self.intake.clone())
    }

    fn flush_wanted(&mut self) -> Vec<u32> {
        if self.intake.flush_wanted.swap(false, Ordering::AcqRel) {
            vec![0]
        } else {
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests;
