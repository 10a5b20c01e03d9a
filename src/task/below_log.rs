//! A start's seek to a checkpoint that lies below what the push log holds, where a spill
//! holds the records between. A spill a log does not hold (a memory log's, restored by the
//! job switched to `durability = "wal"`; one moved to continue another log's checkpoint)
//! makes the log go on past its records, so the log starts past the checkpoint until they are
//! committed. A crash or failed task before that commit left a start that seeked to the
//! checkpoint first, and failed ("already released") at every start after, the spill never
//! looked at. Such a seek now waits for the restore: the spill's records continue the
//! checkpoint and the restore seeks past them; where it does not, the seek is made then and
//! fails as before.

use std::path::Path;

use super::membership::Start;
use super::restored::Restored;
use super::TaskError;
use crate::source::Source;

/// A partition's seek left for after the restore.
pub(super) struct Deferred {
    partition: u32,
    start: Start,
}

/// Seeks partition `p` to checkpoint `start`, or, when it lies below the push log's first
/// position and a spill is there to restore (`spill`: its state folder, unless the spill is
/// discarded or a roll-back restores none), leaves it for [`after_restore`].
pub(super) fn seek(
    source: &mut dyn Source,
    p: u32,
    start: Start,
    spill: Option<&Path>,
) -> Result<Option<Deferred>, TaskError> {
    // Only a push log's start is asked (a file source's answer reads a gzip file through),
    // and only where a spill waits.
    let waits = spill.is_some_and(crate::channel::spill::exists) && source.log_id().is_some();
    if waits
        && source
            .replayable(p)?
            .is_some_and(|(first, _)| start.offset < first)
    {
        tracing::info!(
            partition = p,
            checkpoint = start.offset,
            "the checkpoint lies below the push log's start: the spill is to hold the records between"
        );
        return Ok(Some(Deferred {
            partition: p,
            start,
        }));
    }
    seek_now(source, p, &start)?;
    Ok(None)
}

/// The seeks left for the restore: a partition the restore put records of back has been
/// seeked past them; any other is seeked to its checkpoint now (below the log: the error
/// says what was released).
pub(super) fn after_restore(
    source: &mut dyn Source,
    deferred: Vec<Deferred>,
    restored: &Restored,
) -> Result<(), TaskError> {
    for d in deferred {
        if !restored.parts.contains_key(&d.partition) {
            seek_now(source, d.partition, &d.start)?;
        }
    }
    Ok(())
}

fn seek_now(source: &mut dyn Source, p: u32, start: &Start) -> Result<(), TaskError> {
    source.seek(p, start.offset, start.line)?;
    if let Some(mark) = start.mark {
        source.expect_record(p, start.offset, mark);
    }
    Ok(())
}
