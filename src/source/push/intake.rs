//! The side of a push partition that HTTP requests append to ([`Intake`]): room checks, the
//! all-or-nothing append with its group-commit fsync, the decoded forms its source hands on,
//! and whether requests are taken (once the source is positioned, never after the task ends).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

use super::log::Log;
use super::{Durability, PushSettings, Refusal};
use crate::decode::framing::MAX_CHUNK_LINES;
use crate::decode::Decoded;
use crate::wal::WalError;

pub(super) struct Inner {
    pub(super) log: Log,
    /// Everything before this is durable (memory: equal to the end).
    pub(super) synced: u64,
    pub(super) syncing: bool,
    /// Where the source reads next.
    pub(super) read_pos: u64,
    /// Everything before this is in committed files (room is counted from here: the WAL
    /// releases whole segments only).
    pub(super) committed: u64,
    pub(super) failed: Option<String>,
    /// The log's end at `synced`: a failed sync takes back what follows it.
    pub(super) good: Option<crate::wal::Mark>,
    /// Requests appended and not yet read, as decoded when they were taken: (start, end,
    /// records). The source hands them on so they are not decoded twice; a replay decodes
    /// from the log.
    pub(super) fresh: VecDeque<(u64, u64, Decoded)>,
    /// The memory the decoded forms in `fresh` hold: counted against `max_pending` with the
    /// log bytes not yet read.
    pub(super) fresh_bytes: u64,
}

/// An intake before its source is positioned.
pub(super) const NOT_YET: u8 = 0;
/// An intake taking requests.
const TAKING: u8 = 1;
/// An intake closed for good (the task stops or failed).
const CLOSED: u8 = 2;

/// The side of a push partition that HTTP requests append to; shared with its source.
pub struct Intake {
    pub(super) inner: Mutex<Inner>,
    pub(super) synced: Condvar,
    pub(super) data: Condvar,
    pub(super) settings: PushSettings,
    /// [`NOT_YET`], [`TAKING`] or [`CLOSED`]: requests are taken only between the source's
    /// positioning and the task's end, and never again once closed.
    pub(super) taking: AtomicU8,
    pub(super) flush_wanted: AtomicBool,
}

impl Intake {
    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().expect("intake lock")
    }

    pub fn durability(&self) -> Durability {
        self.settings.durability
    }

    /// Appends one request's records (whole lines), with what decoding them gave (positions
    /// relative to the request), and returns their (start, end) log positions once they are
    /// durable per the repo's durability; or refuses them whole.
    pub fn append(&self, payload: Vec<u8>, decoded: Decoded) -> Result<(u64, u64), Refusal> {
        let len = payload.len() as u64;
        self.append_pieces(payload, vec![(len, decoded)])
    }

    /// [`Self::append`] with the request decoded in pieces (each with where it ends in the
    /// request, positions relative to the request): each piece goes on as a chunk of its own.
    pub fn append_pieces(
        &self,
        payload: Vec<u8>,
        mut pieces: Vec<(u64, Decoded)>,
    ) -> Result<(u64, u64), Refusal> {
        let len = payload.len() as u64;
        let decoded_bytes: u64 = pieces.iter().map(|(_, d)| d.memory_bytes()).sum();
        let mut g = self.lock();
        self.check_room(&g, len, decoded_bytes)?;
        let (start, end) = match g.log.append(payload) {
            Ok(r) => r,
            Err(e @ WalError::Full { .. }) => {
                // Nothing of it stayed: refuse it, and take requests again once there is room.
                crate::wal::warn_full(&e);
                return Err(Refusal::DiskFull(e.to_string()));
            }
            // Refused before anything was written.
            Err(e @ WalError::TooLarge { .. }) => return Err(Refusal::TooLarge(e.to_string())),
            Err(e) => return Err(self.fail(&mut g, e)),
        };
        // A piece of more lines than a chunk holds (the push route cuts its pieces there; a
        // caller that did not) is read again from the log, cut there as every source cuts:
        // one item of it would make one commit of a file per path for each of its lines, past
        // what a commit's records hold.
        debug_assert!(
            pieces.windows(2).all(|w| w[0].0 < w[1].0) && pieces.last().map(|p| p.0) == Some(len),
            "pieces end in order, the last at the request's end"
        );
        let mut from = start;
        for (piece_end, mut decoded) in pieces.drain(..) {
            for d in &mut decoded.dead {
                d.position.offset += start;
            }
            let to = start + piece_end;
            if decoded.records as usize <= MAX_CHUNK_LINES {
                g.fresh_bytes += decoded.memory_bytes();
                g.fresh.push_back((from, to, decoded));
            }
            from = to;
        }
        // Group commit: one request syncs everything appended so far while the others wait
        // for it (or for the next round).
        loop {
            if g.synced >= end {
                return Ok((start, end));
            }
            if let Some(f) = &g.failed {
                return Err(Refusal::Failed(f.clone()));
            }
            if g.syncing {
                g = self.synced.wait(g).expect("intake lock");
                continue;
            }
            let (target, mark) = (g.log.end(), g.log.mark());
            let Some(file) = g.log.sync_handle() else {
                g.synced = target;
                self.data.notify_all();
                continue;
            };
            g.syncing = true;
            drop(g);
            let r = match crate::fault::fail_wal_sync() {
                Some(e) => Err(e),
                None => file.sync_data(),
            };
            g = self.lock();
            g.syncing = false;
            match r {
                // Not once the intake failed: its cut may have taken back what this synced.
                Ok(()) if g.failed.is_some() => {}
                Ok(()) => {
                    g.synced = g.synced.max(target);
                    g.good = mark;
                }
                Err(e) => {
                    let good = g.good;
                    let note = g.log.take_back(good);
                    tracing::error!(error = %e, "push intake stopped: fsync of the WAL failed");
                    g.failed = Some(format!("fsync of the WAL failed: {e}{note}"));
                }
            }
            self.synced.notify_all();
            self.data.notify_all();
        }
    }

    fn fail(&self, g: &mut Inner, e: WalError) -> Refusal {
        let note = g.log.take_back(g.good);
        let msg = format!("appending to the WAL failed: {e}{note}");
        tracing::error!(error = %msg, "push intake stopped");
        g.failed = Some(msg.clone());
        self.synced.notify_all();
        self.data.notify_all();
        Refusal::Failed(msg)
    }

    /// Refuse every request from now on (the task stops). Returns once every record appended
    /// has its outcome (synced, or cut back with its refusal) and no sync runs, so the log is
    /// left alone from here on: a sync still running could fail later and cut back a log the
    /// next task has opened again.
    pub fn close(&self) {
        self.taking.store(CLOSED, Ordering::Release);
        let mut g = self.lock();
        while g.syncing || (g.failed.is_none() && g.synced < g.log.end()) {
            g = self.synced.wait(g).expect("intake lock");
        }
    }

    /// The log's positions acknowledged and not yet in committed files: (from, to).
    pub fn uncommitted(&self) -> (u64, u64) {
        let g = self.lock();
        (g.committed, g.synced.max(g.committed))
    }

    /// Take requests: the source is positioned (requests before that are refused, so none
    /// lands where a checkpoint's position would be moved past). An intake closed already
    /// (the task failed meanwhile) stays closed.
    pub fn open(&self) {
        let _ = self
            .taking
            .compare_exchange(NOT_YET, TAKING, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Whether a request of `len` bytes would be taken now (checked again when appending):
    /// lets a request that would be refused skip its decoding.
    pub fn check(&self, len: u64) -> Result<(), Refusal> {
        // Decoded forms are about the size of their text, up to twice it.
        self.check_room(&self.lock(), len, 2 * len)
    }

    /// Room for a request of `len` log bytes that decoded to `decoded` bytes of memory.
    fn check_room(&self, g: &Inner, len: u64, decoded: u64) -> Result<(), Refusal> {
        if self.taking.load(Ordering::Acquire) != TAKING {
            return Err(Refusal::NotRunning);
        }
        if let Some(f) = &g.failed {
            return Err(Refusal::Failed(f.clone()));
        }
        let pending = g.log.end() - g.read_pos + g.fresh_bytes;
        let len_pending = len + decoded;
        let retained = g.log.end() - g.committed.max(g.log.start()) + g.log.fixed_cost();
        // With this request's own, where the log holds requests in memory.
        let len = len + g.log.record_cost();
        if retained + len > self.settings.max_retained / 2 {
            self.flush_wanted.store(true, Ordering::Release);
        }
        if (pending > 0 && pending + len_pending > self.settings.max_pending)
            || (retained > 0 && retained + len > self.settings.max_retained)
        {
            return Err(Refusal::Full { pending, retained });
        }
        Ok(())
    }
}
