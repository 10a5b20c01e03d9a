//! Where a partition's reading goes on after librdkafka was told otherwise: the seeks of a
//! group member's rewinds (retried while librdkafka refuses them, each position checked once
//! against the broker's log), and what follows librdkafka's "offset out of range" (the
//! partition checked, then refused, skipped past the gap, or fetched again).

use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::Offset;

use super::group::lock;
use super::{err_at, gap, KafkaSource, SourceError};

/// The longest one check of a rewind's position against the broker's log may hold the poll
/// thread.
const SEEK_CHECK_TIMEOUT: Duration = Duration::from_secs(1);
/// Checks of rewinds' positions per poll (see `retry_seeks`).
const SEEK_CHECKS_PER_POLL: usize = 4;

impl KafkaSource {
    /// Group mode: the seeks of rewinds, made before the next poll (and retried while
    /// librdkafka refuses them, as it does right after an assignment). Each rewind's position
    /// is checked against the broker's log once, as an assignment's is: a rewind to a
    /// checkpoint that retention has deleted since (a store down for longer than the topic's
    /// retention) is refused (a backfill stops) or skipped as `on_gap` says. A check is one watermark request of at most
    /// `SEEK_CHECK_TIMEOUT`, and one call makes at most `SEEK_CHECKS_PER_POLL` of them, so
    /// the poll thread is never held long (the rest wait for the next poll). A check the
    /// broker does not answer is left to librdkafka (`auto.offset.reset = error`).
    pub(super) fn retry_seeks(&mut self) -> Result<(), SourceError> {
        let mut shared = lock(&self.shared);
        let skip = shared.skip_gaps;
        let mut checks = 0;
        let mut refused = Vec::new();
        // A finished partition (a bounded run's) has no fetcher to seek.
        for (i, p) in self.parts.iter_mut().enumerate().filter(|(_, p)| {
            p.seek_pending && p.owned && !p.done() && p.probe.is_none() && !p.refetch_pending
        }) {
            if crate::fault::refuse_seek() {
                continue;
            }
            if !p.checked {
                if checks == SEEK_CHECKS_PER_POLL {
                    continue;
                }
                checks += 1;
                if let Err(e) = gap::check_position(
                    &self.consumer,
                    &mut shared.skips,
                    p,
                    skip,
                    SEEK_CHECK_TIMEOUT,
                ) {
                    refused.push((i, e));
                    continue;
                }
                p.checked = true;
            }
            if self
                .consumer
                .seek(
                    &p.info.topic,
                    p.partition,
                    Offset::Offset(p.next),
                    Duration::from_secs(1),
                )
                .is_ok()
            {
                p.seek_pending = false;
            }
        }
        drop(shared);
        self.refuse_all(refused)?;
        self.seeks_pending = self
            .parts
            .iter()
            .any(|p| p.seek_pending && p.owned && !p.done());
        Ok(())
    }

    /// Partitions (index, why) found past a gap while read: a group member refuses each
    /// (see `refused`); a backfill stops at the first.
    fn refuse_all(&mut self, refused: Vec<(usize, String)>) -> Result<(), SourceError> {
        if !self.group {
            return match refused.into_iter().next() {
                Some((_, why)) => Err(err_at(&self.name, why)),
                None => Ok(()),
            };
        }
        if !refused.is_empty() {
            self.refuse_read(refused);
        }
        Ok(())
    }

    /// librdkafka met an offset the broker no longer holds (retention overtook the reader, or
    /// ran between a check and its fetch) and, with `auto.offset.reset = error`, stopped
    /// fetching the partition (`at`, when the error came with it; a batch read's do). The
    /// partition is checked: below the log it is refused naming the range (a backfill
    /// stops), or (`on_gap = "skip"`) goes on from the log's start. Either way librdkafka refuses to seek it now:
    /// it is assigned again (see `group::refetch`). An error that names no partition has the
    /// owned ones checked, and every one found below the log goes on; when none is found,
    /// the run stops.
    pub(super) fn offset_reset(&mut self, at: Option<usize>) -> Result<(), SourceError> {
        let mut shared = lock(&self.shared);
        let skip = shared.skip_gaps;
        let mut restarted = false;
        let named = at.is_some();
        let mut refused = Vec::new();
        for i in at.map_or(0..self.parts.len(), |i| i..i + 1) {
            let Some(p) = self
                .parts
                .get_mut(i)
                .filter(|p| p.owned && !p.done() && p.refusing.is_none())
            else {
                // Given up, finished or refused since: nothing to fetch there.
                continue;
            };
            let checked = match gap::check_position(
                &self.consumer,
                &mut shared.skips,
                p,
                skip,
                SEEK_CHECK_TIMEOUT,
            ) {
                Ok(checked) => checked,
                Err(e) => {
                    refused.push((i, e));
                    continue;
                }
            };
            // The partition named is stopped whatever the check says (inside the log: the
            // answer raced the check; unanswered: it is fetched again, and asked again).
            if checked == gap::Checked::Skipped || named {
                if checked != gap::Checked::Skipped {
                    tracing::warn!(
                        topic = %p.info.topic,
                        partition = p.partition,
                        offset = p.next,
                        checked = ?checked,
                        "the broker answered \"out of range\" where its log holds the \
                         partition's position (or did not say where it stands); fetching again"
                    );
                }
                // Buffered messages stay (they precede the gap); reading goes on at `next`.
                p.checked = checked != gap::Checked::Unanswered;
                p.probe = None;
                p.seek_pending = false;
                p.refetch_pending = self.group;
                restarted = true;
            }
        }
        drop(shared);
        let found = !refused.is_empty();
        self.refuse_all(refused)?;
        if restarted {
            if self.group {
                self.refetches_pending = true;
            } else {
                self.reassign = true;
            }
            return Ok(());
        }
        if named || found {
            return Ok(());
        }
        Err(err_at(
            &self.name,
            "the broker answered that a partition's next offset is out of range (retention \
             deleted it, or the topic was re-created), and no partition's position check found \
             which; start again to have each checked (source.on_gap)"
                .to_string(),
        ))
    }
}
