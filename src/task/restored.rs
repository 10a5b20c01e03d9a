//! Restored spill items a source cannot read again (a push memory log holds nothing from
//! before its process): kept until a commit covers them, put back by a rewind into them, and
//! spilled again, with what the channel holds after them, by a graceful stop.

use std::collections::HashMap;

use crate::channel::spill::{self, SpillMeta, SpillOwner};
use crate::channel::Item;

/// Restored spill items that only this process holds (see
/// [`super::spilling::restore_spill`]), per partition and in order, until a commit covers them.
/// They share their batches with the channel's.
#[derive(Default)]
pub(super) struct Restored {
    pub(super) parts: HashMap<u32, Vec<Item>>,
    /// The state folder whose spill stays until the kept items are committed.
    pub(super) spill: Option<std::path::PathBuf>,
    /// The logs the restored spill's positions count in (this process's too): a stop that
    /// spills kept items again names them all.
    pub(super) restored_logs: Vec<String>,
}

impl Restored {
    /// A rewind of `p` to `offset`: the kept items from there on, and the position after the
    /// last (where the source reads on). `None` when none is kept there (the source replays).
    pub(super) fn replay(&self, p: u32, offset: u64) -> Option<(Vec<Item>, (u64, u64))> {
        let items = self.parts.get(&p)?;
        let i = items.iter().position(|it| it.prov.next_offset > offset)?;
        if items[i].prov.from_offset != offset {
            return None; // not where an item starts: the source answers for it
        }
        let last = items.last().expect("kept partitions have items").prov;
        Some((items[i..].to_vec(), (last.next_offset, last.next_line)))
    }

    /// `p` committed up to `next`: what that covers is not kept any longer.
    pub(super) fn committed(&mut self, p: u32, next: u64) {
        if let Some(items) = self.parts.get_mut(&p) {
            items.retain(|it| it.prov.next_offset > next);
            if items.is_empty() {
                self.parts.remove(&p);
            }
        }
        if self.parts.is_empty() {
            if let Some(dir) = self.spill.take() {
                if let Err(e) = spill::remove(&dir) {
                    // Harmless: a start that restores it skips what is committed.
                    tracing::warn!(error = %e, "could not remove the restored spill");
                }
            }
        }
    }

    /// What a graceful stop spills, and the spill's own description: per partition, the kept
    /// items past its commits (`committed`, where the stop's own commits left it), then the
    /// channel's items past them; the channel's items of other partitions as they are. (After
    /// records a worker held whose final commit failed, the next restore finds a gap there.)
    pub(super) fn with_channel(
        self,
        items: Vec<Item>,
        committed: &HashMap<u32, u64>,
        owner: SpillOwner,
        log: Option<String>,
    ) -> (Vec<Item>, SpillMeta) {
        let mut ends: HashMap<u32, u64> = HashMap::new();
        let mut out = Vec::new();
        for (p, kept) in self.parts {
            let done = committed.get(&p).copied().unwrap_or(0);
            let mut end = done;
            for it in kept.into_iter().filter(|it| it.prov.next_offset > done) {
                end = it.prov.next_offset;
                out.push(it);
            }
            ends.insert(p, end);
        }
        let restored = !out.is_empty();
        out.extend(items.into_iter().filter(|it| {
            ends.get(&it.prov.partition)
                .is_none_or(|end| it.prov.next_offset > *end)
        }));
        let mut logs = if restored {
            self.restored_logs
        } else {
            Vec::new()
        };
        if let Some(l) = log.filter(|l| !logs.contains(l)) {
            logs.push(l);
        }
        let meta = SpillMeta {
            owner,
            logs,
            restored,
        };
        (out, meta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(from: u64, next: u64) -> Item {
        let schema = std::sync::Arc::new(arrow::datatypes::Schema::empty());
        Item {
            batch: arrow::record_batch::RecordBatch::new_empty(schema),
            dead: Vec::new(),
            prov: crate::channel::Provenance {
                partition: 0,
                from_offset: from,
                first_offset: from,
                last_offset: next - 1,
                next_offset: next,
                next_line: next / 10,
                epoch: 0,
                mark: None,
            },
            records: 1,
        }
    }

    /// Kept items replay from where one starts, to the position after the last; a commit
    /// drops what it covers, and a partition with nothing kept is the source's again.
    #[test]
    fn restored_items_replay_from_an_item_start_until_committed() {
        let mut r = Restored::default();
        r.parts
            .insert(0, vec![item(100, 150), item(150, 230), item(230, 300)]);
        let (items, end) = r.replay(0, 150).expect("kept from 150");
        assert_eq!(
            items.iter().map(|i| i.prov.from_offset).collect::<Vec<_>>(),
            vec![150, 230]
        );
        assert_eq!(end, (300, 30));
        assert!(r.replay(0, 160).is_none(), "not where an item starts");
        assert!(r.replay(0, 300).is_none(), "past what is kept");
        assert!(r.replay(1, 100).is_none(), "nothing kept for partition 1");
        r.committed(0, 230);
        assert!(r.replay(0, 150).is_none(), "committed: not kept");
        assert_eq!(r.replay(0, 230).expect("the rest").0.len(), 1);
        r.committed(0, 300);
        assert!(r.parts.is_empty());
    }

    /// A stop spills the kept items past its commits, then the channel's items past them (not
    /// the kept ones the channel still holds too); other partitions' items as they are. The
    /// spill names the restored spill's logs and this one's, and says it was restored.
    #[test]
    fn a_stop_spills_kept_items_then_the_channel_after_them() {
        let owner = || SpillOwner {
            job: "j".into(),
            url: "u".into(),
            stages: None,
        };
        let kept = |items: Vec<Item>| {
            let mut r = Restored {
                restored_logs: vec!["a".into(), "a2".into()],
                ..Restored::default()
            };
            r.parts.insert(0, items);
            r
        };
        let at = |v: &[Item]| -> Vec<(u32, u64)> {
            v.iter()
                .map(|i| (i.prov.partition, i.prov.from_offset))
                .collect()
        };
        let mut other = item(5, 9);
        other.prov.partition = 1;
        let channel = || vec![item(150, 230), other.clone(), item(230, 260)];
        let r = kept(vec![item(100, 150), item(150, 230)]);
        let (spilled, meta) =
            r.with_channel(channel(), &HashMap::new(), owner(), Some("a2".into()));
        assert_eq!(at(&spilled), vec![(0, 100), (0, 150), (1, 5), (0, 230)]);
        assert!(meta.restored);
        assert_eq!(meta.logs, ["a", "a2"]);
        // What the stop's commits covered is not spilled again.
        let r = kept(vec![item(100, 150), item(150, 230)]);
        let committed = HashMap::from([(0, 150)]);
        let (spilled, _) = r.with_channel(channel(), &committed, owner(), None);
        assert_eq!(at(&spilled), vec![(0, 150), (1, 5), (0, 230)]);
        // All of it covered: a spill of the channel alone, in this log's positions.
        let r = kept(vec![item(100, 150)]);
        let committed = HashMap::from([(0, 230)]);
        let (spilled, meta) = r.with_channel(channel(), &committed, owner(), Some("a3".into()));
        assert_eq!(at(&spilled), vec![(1, 5), (0, 230)]);
        assert!(!meta.restored);
        assert_eq!(meta.logs, ["a3"]);
        // After a gap (records a worker held whose final commit failed) the channel's items
        // are spilled all the same: the restore stops at the gap and says so.
        let r = kept(vec![item(100, 150)]);
        let (spilled, _) = r.with_channel(vec![item(230, 260)], &HashMap::new(), owner(), None);
        assert_eq!(at(&spilled), vec![(0, 100), (0, 230)]);
    }
}
