//! The transactional channel between sources and sink workers, bounded in bytes and batches.
//!
//! A put reserves room before data enters: it waits for room (pull sources pause) or refuses at
//! once (push sources answer 503); the channel never grows past its bound, except that an item
//! larger than the whole bound is admitted into an empty channel so it cannot wedge the task,
//! and that a put goes in once a stop has come (`put_unless`: what the channel holds is then
//! spilled, and waiting for room would hold the stop up).
//! A take hands a worker items from its lane inside a transaction: `commit` (the items are
//! encoded into open files, or were judged stale or failed) frees their room; a take dropped
//! without a commit (a worker that panicked mid-take) puts them back at the head of the lane in
//! order, so the accounting stays right. Items in flight count against the bound until then.
//! Nothing else puts items back: a partition whose item failed is replayed from its source
//! (`sink::recovery`), or from the restored spill items its source does not hold
//! (`task::spilling`), not from the channel.
//!
//! Lanes: each sink worker owns the source partitions `partition % lanes`, so one partition's
//! batches stay in order and in one worker (the commit unit is a source partition).

pub mod spill;

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;

use crate::decode::DeadLetter;

/// Where a batch came from: its source partition and offset range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Provenance {
    pub partition: u32,
    /// The source position before this batch: where the previous one ended (checked, so no
    /// record is skipped between batches).
    pub from_offset: u64,
    /// Offset of the first record (a byte position for files).
    pub first_offset: u64,
    /// Offset of the last record.
    pub last_offset: u64,
    /// Where reading resumes after this batch.
    pub next_offset: u64,
    /// Line number after this batch (files; 0 when unknown).
    pub next_line: u64,
    /// Bumped when a partition is rewound; items of an older epoch are stale.
    pub epoch: u64,
    /// Message-framed sources: what identifies the last record (see
    /// [`crate::decode::meta::RecordMark`]); a commit ending here records it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mark: Option<crate::decode::meta::RecordMark>,
}

/// One unit in the channel: a decoded batch (possibly empty) and the dead letters of the same
/// records.
#[derive(Debug, Clone)]
pub struct Item {
    pub batch: RecordBatch,
    pub dead: Vec<DeadLetter>,
    pub prov: Provenance,
    /// Records of the source this item consumed: its rows, its dead letters, and the rows
    /// stages filtered out or dropped. Commits count these, so a partition whose records all
    /// become dead letters or are filtered out still commits and moves on.
    pub records: u64,
}

impl Item {
    /// Bytes this item holds against the channel bound.
    pub fn size(&self) -> usize {
        self.batch.get_array_memory_size()
            + self
                .dead
                .iter()
                .map(|d| d.record.len() + d.reason.len() + 32)
                .sum::<usize>()
            + 64
    }
}

/// Why a put did not go in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PutError {
    #[error("the channel is full")]
    Full,
    #[error("the channel is closed")]
    Closed,
}

struct State {
    lanes: Vec<VecDeque<(Item, usize)>>,
    used_bytes: usize,
    used_items: usize,
    /// Puts waiting for room.
    waiting: usize,
    closed: bool,
}

/// A bounded, transactional, multi-lane channel.
pub struct Channel {
    state: Mutex<State>,
    room: Condvar,
    ready: Vec<Condvar>,
    max_bytes: usize,
    max_items: usize,
}

/// Items taken by a worker, not yet committed.
pub struct Take<'a> {
    channel: &'a Channel,
    lane: usize,
    items: Vec<(Item, usize)>,
}

impl Channel {
    pub fn new(lanes: usize, max_bytes: usize, max_items: usize) -> Self {
        let lanes = lanes.max(1);
        Channel {
            state: Mutex::new(State {
                lanes: (0..lanes).map(|_| VecDeque::new()).collect(),
                used_bytes: 0,
                used_items: 0,
                waiting: 0,
                closed: false,
            }),
            room: Condvar::new(),
            ready: (0..lanes).map(|_| Condvar::new()).collect(),
            max_bytes: max_bytes.max(1),
            max_items: max_items.max(1),
        }
    }

    pub fn lanes(&self) -> usize {
        self.ready.len()
    }

    /// The lane of a source partition.
    pub fn lane_of(&self, partition: u32) -> usize {
        partition as usize % self.lanes()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("channel lock")
    }

    fn fits(&self, s: &State, bytes: usize, items: usize) -> bool {
        (s.used_items == 0)
            || (s.used_bytes + bytes <= self.max_bytes && s.used_items + items <= self.max_items)
    }

    fn admit(&self, s: &mut State, item: Item, size: usize) {
        let lane = self.lane_of(item.prov.partition);
        s.used_bytes += size;
        s.used_items += 1;
        s.lanes[lane].push_back((item, size));
        self.ready[lane].notify_one();
    }

    /// Puts an item, waiting for room (pull sources). Fails only when the channel is closed.
    pub fn put(&self, item: Item) -> Result<(), PutError> {
        self.put_unless(item, || false)
    }

    /// Puts an item, waiting for room until `over()` says a stop has come (what the channel
    /// holds is then spilled, not written, and nobody may take it): from then on the item goes
    /// in past the bound, which it exceeds by what the caller already held.
    pub fn put_unless(&self, item: Item, over: impl Fn() -> bool) -> Result<(), PutError> {
        let size = item.size();
        let mut s = self.lock();
        loop {
            if s.closed {
                return Err(PutError::Closed);
            }
            if self.fits(&s, size, 1) || over() {
                self.admit(&mut s, item, size);
                return Ok(());
            }
            s.waiting += 1;
            s = self
                .room
                .wait_timeout(s, std::time::Duration::from_millis(20))
                .expect("channel lock")
                .0;
            s.waiting -= 1;
        }
    }

    /// The channel is (nearly) full: a put is waiting for room, or 90 % of the bytes or all
    /// item slots are used. Pull sources pause reading while this holds.
    pub fn pressure(&self) -> bool {
        let s = self.lock();
        s.waiting > 0
            || s.used_bytes.saturating_mul(10) >= self.max_bytes.saturating_mul(9)
            || s.used_items >= self.max_items
    }

    /// Items of `partition` still queued (not taken by a worker).
    pub fn queued_for(&self, partition: u32) -> usize {
        let s = self.lock();
        s.lanes[self.lane_of(partition)]
            .iter()
            .filter(|(item, _)| item.prov.partition == partition)
            .count()
    }

    /// Puts all items or none, at once (push sources).
    pub fn try_put_all(&self, items: Vec<Item>) -> Result<(), PutError> {
        let sizes: Vec<usize> = items.iter().map(Item::size).collect();
        let total: usize = sizes.iter().sum();
        let mut s = self.lock();
        if s.closed {
            return Err(PutError::Closed);
        }
        if !self.fits(&s, total, items.len()) {
            return Err(PutError::Full);
        }
        for (item, size) in items.into_iter().zip(sizes) {
            self.admit(&mut s, item, size);
        }
        Ok(())
    }

    /// Takes up to `max` items from `lane`, waiting up to `wait` for the first. Returns an empty
    /// take on timeout or when the channel is closed and the lane is empty.
    pub fn take(&self, lane: usize, max: usize, wait: Duration) -> Take<'_> {
        self.take_unless(lane, max, wait, || false)
    }

    /// [`Channel::take`], but an empty lane returns at once when `over` holds: checked under the
    /// channel's lock before each wait, and again after every [`Channel::wake_all`], so a
    /// condition made true before a `wake_all` call is never missed.
    pub fn take_unless(
        &self,
        lane: usize,
        max: usize,
        wait: Duration,
        over: impl Fn() -> bool,
    ) -> Take<'_> {
        let deadline = Instant::now() + wait;
        let mut s = self.lock();
        loop {
            if !s.lanes[lane].is_empty() {
                let n = s.lanes[lane].len().min(max.max(1));
                let items: Vec<_> = s.lanes[lane].drain(..n).collect();
                return Take {
                    channel: self,
                    lane,
                    items,
                };
            }
            let now = Instant::now();
            if s.closed || now >= deadline || over() {
                return Take {
                    channel: self,
                    lane,
                    items: Vec::new(),
                };
            }
            s = self.ready[lane]
                .wait_timeout(s, deadline - now)
                .expect("channel lock")
                .0;
        }
    }

    /// Wakes every worker waiting in [`Channel::take_unless`] to check its condition again.
    pub fn wake_all(&self) {
        let _s = self.lock();
        for lane in &self.ready {
            lane.notify_all();
        }
    }

    /// Drops queued items of a partition with an epoch older than `epoch` (after a rewind).
    pub fn purge(&self, partition: u32, epoch: u64) -> usize {
        let lane = self.lane_of(partition);
        let mut s = self.lock();
        let before = s.lanes[lane].len();
        let mut freed = 0;
        s.lanes[lane].retain(|(item, size)| {
            let stale = item.prov.partition == partition && item.prov.epoch < epoch;
            if stale {
                freed += size;
            }
            !stale
        });
        let removed = before - s.lanes[lane].len();
        s.used_bytes -= freed;
        s.used_items -= removed;
        self.room.notify_all();
        removed
    }

    /// Closes the channel: puts fail, takes return what is left and then nothing.
    pub fn close(&self) {
        let mut s = self.lock();
        s.closed = true;
        self.room.notify_all();
        for c in &self.ready {
            c.notify_all();
        }
    }

    /// Removes every queued item (for the spill at shutdown), lane by lane in order, and
    /// returns those of each partition's current epoch (`epoch(partition)`): an item read
    /// before its partition's rewind and put after its purge is stale, and spilled it would
    /// stand where the partition's replay must resume.
    pub fn drain_all(&self, epoch: impl Fn(u32) -> u64) -> Vec<Item> {
        let mut s = self.lock();
        let mut out = Vec::new();
        let mut freed = 0;
        let mut n = 0;
        for lane in s.lanes.iter_mut() {
            for (item, size) in lane.drain(..) {
                freed += size;
                n += 1;
                if item.prov.epoch >= epoch(item.prov.partition) {
                    out.push(item);
                }
            }
        }
        s.used_bytes -= freed;
        s.used_items -= n;
        self.room.notify_all();
        out
    }

    /// Bytes and items held (queued and in flight).
    pub fn usage(&self) -> (usize, usize) {
        let s = self.lock();
        (s.used_bytes, s.used_items)
    }

    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }
}

impl Take<'_> {
    pub fn items(&self) -> impl Iterator<Item = &Item> {
        self.items.iter().map(|(i, _)| i)
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// The items are safely handed on: free their room.
    pub fn commit(mut self) {
        let items = std::mem::take(&mut self.items);
        if items.is_empty() {
            return;
        }
        let freed: usize = items.iter().map(|(_, s)| s).sum();
        let mut s = self.channel.lock();
        s.used_bytes -= freed;
        s.used_items -= items.len();
        self.channel.room.notify_all();
    }

    fn put_back(&mut self) {
        let items = std::mem::take(&mut self.items);
        if items.is_empty() {
            return;
        }
        let mut s = self.channel.lock();
        for it in items.into_iter().rev() {
            s.lanes[self.lane].push_front(it);
        }
        self.channel.ready[self.lane].notify_one();
    }
}

/// A take dropped without a decision is rolled back: nothing is lost.
impl Drop for Take<'_> {
    fn drop(&mut self) {
        self.put_back();
    }
}

#[cfg(test)]
mod tests;
