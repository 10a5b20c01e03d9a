//! A worker's share of `sink.max_buffered_bytes` and its `max_open_files`: over the share,
//! the partition holding the most encoded data in memory first writes its row groups in
//! progress into its files, which stay open (no commit, no new file); a partition that cannot
//! free memory that way commits. Before a file opens past either bound, another partition
//! commits early, or the item's own partition parks a finished file (an object store's parked
//! file sending its bytes to the store while the worker is over its share).

use super::commit::finish_file;
use super::open::OpenPartition;
use super::worker::{open_count, WorkError, Worker};

impl Worker {
    /// Commits the partitions holding the most encoded data in memory until the worker is
    /// under its share of `sink.max_buffered_bytes`.
    pub(super) fn bound_buffers(&mut self) {
        loop {
            let per_part: Vec<(u32, u64)> =
                self.open.iter().map(|(p, op)| (*p, memory(op))).collect();
            let total: u64 = per_part.iter().map(|(_, b)| b).sum();
            if total <= self.ctx.max_buffered {
                return;
            }
            let Some(&(biggest, held)) = per_part.iter().max_by_key(|(_, b)| *b) else {
                return;
            };
            if !self.release(biggest, held) {
                self.commit_or_fail(biggest);
            }
        }
    }

    /// Writes what partition `p`'s open files hold in memory (`held` bytes) into the files,
    /// which stay open: no commit, no new file. True when that held less after, or when it
    /// failed (the partition's files are aborted and it replays, as after a failed commit).
    fn release(&mut self, p: u32, held: u64) -> bool {
        let Some(op) = self.open.get_mut(&p) else {
            return false;
        };
        let mut wrote = false;
        let mut failure = None;
        for f in op.files.values_mut() {
            match f.writer.release() {
                Ok(w) => wrote |= w,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = failure {
            // As after a failed commit: `failed` aborts the open files itself, knowing how far
            // they had read (which a loss report with `durability = "memory"` names).
            self.failed(p, e.into());
            return true;
        }
        wrote && memory(op) < held
    }

    /// Before a new file of `op` opens: while the worker is at `max_open_files` or at its
    /// memory share, the partition holding the most gives way: another one commits early,
    /// or `op` parks one of its files.
    pub(super) fn make_room(&mut self, op: &mut OpenPartition) -> Result<(), WorkError> {
        loop {
            let files = open_count(op) + self.open.values().map(open_count).sum::<usize>();
            let mine = memory(op);
            let (mut others, mut biggest) = (0, None::<(u32, u64)>);
            for (q, o) in &self.open {
                let m = memory(o);
                others += m;
                if biggest.is_none_or(|(_, b)| m > b) {
                    biggest = Some((*q, m));
                }
            }
            if files < self.ctx.max_open && others + mine < self.ctx.max_buffered {
                return Ok(());
            }
            match biggest {
                // Each pass commits (and removes) one other partition: the loop ends.
                Some((q, m)) if m > mine => self.commit_or_fail(q),
                _ => {
                    park_one(op)?;
                    // Still over the share: parked files send what they hold to the store
                    // (an object store's parked file kept its bytes until the commit: one
                    // item routed to thousands of paths held them all).
                    while others + memory(op) >= self.ctx.max_buffered {
                        let biggest = op
                            .parked
                            .iter()
                            .map(|(_, f, _)| (f.held_bytes(), f))
                            .max_by_key(|(held, _)| *held);
                        let Some((held, f)) = biggest.filter(|(held, _)| *held > 0) else {
                            break;
                        };
                        f.offload()?;
                        if f.held_bytes() >= held {
                            break; // freed nothing: a loop would spin
                        }
                    }
                    return Ok(());
                }
            }
        }
    }
}

/// What a partition's files hold in memory, parked ones and its dead letters' included (an
/// upload keeps its buffer until it commits; only a commit frees a dead-letter file's).
pub(super) fn memory(op: &OpenPartition) -> u64 {
    let open: u64 = op
        .files
        .values()
        .map(|f| f.writer.memory_bytes() as u64)
        .sum();
    open + op
        .parked
        .iter()
        .map(|(_, f, _)| f.held_bytes())
        .sum::<u64>()
        + op.dead.as_ref().map_or(0, |d| d.held_bytes())
}

/// Finishes one open file of `op` and parks it (whole, descriptor closed) to commit with the
/// rest; false when `op` has no open file.
fn park_one(op: &mut OpenPartition) -> Result<bool, WorkError> {
    let Some((_, f)) = op.files.pop_first() else {
        return Ok(false);
    };
    let file = f.file.clone();
    let finished = finish_file(f).and_then(|done| {
        done.1.park()?;
        Ok(done)
    });
    match finished {
        Ok(done) => op.parked.push(done),
        Err(e) => {
            let _ = file.abort();
            return Err(e);
        }
    }
    Ok(true)
}
