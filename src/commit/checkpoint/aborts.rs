//! The abort records a process has read, kept in memory: an abort is never pruned nor
//! rewritten (a writer paused since before its sequence number was aborted could otherwise
//! still seal it), so once read it is known for good. While a partition's commit keeps
//! failing (a destination refusing uploads for hours), every retry adds one, and every
//! reconcile walks down from the newest outcome to the last commit: read from the store
//! each time, that walk was one request per abort and grew with every retry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::Abort;

/// The most abort records kept; past it the set starts again (reads fall back to the store).
const KEPT: usize = 16_384;

/// Abort records read, by partition key and sequence number; shared by a `Checkpoints`' clones.
#[derive(Clone, Debug, Default)]
pub(in crate::commit) struct KnownAborts(Arc<Mutex<HashMap<(String, u64), Abort>>>);

impl KnownAborts {
    pub(in crate::commit) fn get(&self, key: &str, seq: u64) -> Option<Abort> {
        let known = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        known.get(&(key.to_string(), seq)).cloned()
    }

    pub(in crate::commit) fn keep(&self, abort: &Abort) {
        let mut known = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if known.len() >= KEPT {
            known.clear();
        }
        known.insert((abort.key.clone(), abort.seq), abort.clone());
    }
}
