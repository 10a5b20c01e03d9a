//! A worker's share of `sink.max_buffered_bytes`: over it, the partition holding the most
//! encoded data in memory first writes its row groups in progress into its files, which stay
//! open (no commit, no new file); a partition that cannot free memory that way commits.

use super::open::OpenPartition;
use super::worker::Worker;

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
