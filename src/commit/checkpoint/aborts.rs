//! The abort records a process has read, kept in memory: an abort is never pruned nor
//! rewritten (a writer paused since before its sequence number was aborted could otherwise
//! still seal it), so once read it is known for good. While a partition's commit keeps
//! failing (a destination refusing uploads for hours), every retry adds one, and every
//! reconcile walks down from the newest outcome to the last commit: read from the store
//! each time, that walk was one request per abort and grew with every retry.
//!
//! Bounded: per partition the newest [`PER_KEY`] (17 hours of retries at the 30 s backoff),
//! [`TOTAL`] in all (about 6 MiB); past them the oldest are read from the store again.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use super::{Abort, VERSION};

/// The most abort records kept per partition key (the newest).
const PER_KEY: usize = 2048;
/// The most abort records kept in all.
const TOTAL: usize = 100_000;

/// An abort as kept: what [`Abort`] holds besides its key and number, its writer's name
/// shared between the records that name it.
#[derive(Debug)]
struct Kept {
    aborted_by: Arc<str>,
    term: u64,
    at_ms: i64,
}

#[derive(Debug, Default)]
struct Known {
    by_key: HashMap<String, BTreeMap<u64, Kept>>,
    total: usize,
    /// Writers' names, one copy each.
    names: HashSet<Arc<str>>,
}

/// Abort records read, by partition key and sequence number; shared by a `Checkpoints`' clones.
#[derive(Clone, Debug, Default)]
pub(in crate::commit) struct KnownAborts(Arc<Mutex<Known>>);

impl KnownAborts {
    pub(in crate::commit) fn get(&self, key: &str, seq: u64) -> Option<Abort> {
        let known = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let k = known.by_key.get(key)?.get(&seq)?;
        Some(Abort {
            version: VERSION,
            key: key.to_string(),
            seq,
            aborted_by: k.aborted_by.to_string(),
            term: k.term,
            at_ms: k.at_ms,
        })
    }

    pub(in crate::commit) fn keep(&self, abort: &Abort) {
        let mut guard = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let known = &mut *guard;
        let full = known.total >= TOTAL;
        // At the total, a key with none kept makes no entry (an empty one per partition ever
        // seen would grow for the life of the process).
        if full && !known.by_key.contains_key(&abort.key) {
            return;
        }
        let entries = known.by_key.entry(abort.key.clone()).or_default();
        if entries.contains_key(&abort.seq) {
            return;
        }
        if entries.len() >= PER_KEY || full {
            // Room made by this key's oldest, which a walk down to the last commit reaches
            // last; none to give (at the total with none of this key's): not kept.
            match entries.first_key_value().map(|(s, _)| *s) {
                Some(oldest) if oldest < abort.seq => {
                    entries.remove(&oldest);
                    known.total -= 1;
                }
                _ => return,
            }
        }
        let name: Arc<str> = Arc::from(abort.aborted_by.as_str());
        let aborted_by = match known.names.get(&name) {
            Some(n) => n.clone(),
            None if known.names.len() < 1024 => {
                known.names.insert(name.clone());
                name
            }
            None => name,
        };
        entries.insert(
            abort.seq,
            Kept {
                aborted_by,
                term: abort.term,
                at_ms: abort.at_ms,
            },
        );
        known.total += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn abort(key: &str, seq: u64) -> Abort {
        Abort {
            version: VERSION,
            key: key.into(),
            seq,
            aborted_by: "w".into(),
            term: 3,
            at_ms: 9,
        }
    }

    /// Kept as read; per key the newest [`PER_KEY`], the oldest giving way.
    #[test]
    fn the_newest_aborts_of_each_key_are_kept() {
        let k = KnownAborts::default();
        for seq in 1..=(PER_KEY as u64 + 10) {
            k.keep(&abort("a", seq));
        }
        k.keep(&abort("b", 1));
        assert_eq!(k.get("a", 5), None, "the oldest gave way");
        assert_eq!(
            k.get("a", PER_KEY as u64 + 10),
            Some(abort("a", PER_KEY as u64 + 10))
        );
        assert_eq!(k.get("a", 11), Some(abort("a", 11)));
        assert_eq!(k.get("b", 1), Some(abort("b", 1)));
        assert_eq!(k.0.lock().unwrap().total, PER_KEY + 1);
    }

    /// At the total, aborts of keys with none kept leave nothing behind.
    #[test]
    fn at_the_total_new_keys_make_no_entries() {
        let k = KnownAborts::default();
        let keys = TOTAL / PER_KEY + 1;
        for key in 0..keys {
            for seq in 1..=PER_KEY as u64 {
                k.keep(&abort(&format!("k{key}"), seq));
            }
        }
        let known = |k: &KnownAborts| {
            let g = k.0.lock().unwrap();
            (g.total, g.by_key.len())
        };
        let (total, before) = known(&k);
        assert_eq!(total, TOTAL);
        for key in 0..1000 {
            k.keep(&abort(&format!("new{key}"), 1));
        }
        assert_eq!(known(&k), (TOTAL, before));
        assert_eq!(k.get("new1", 1), None);
    }
}
