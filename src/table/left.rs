//! Sealed commits no claim of this start publishes: a process that died (or whose publish
//! failed) between a commit's seal and its publish left the commit out of the table, and the
//! next claim of the partition publishes it ([`super::catch_up`]). A partition no longer in
//! the job (its file rotated away and dropped from `paths`, its topic dropped) is never
//! claimed again: its commit stayed out of the table for good, while `checkpoints list`
//! showed it committed. Such a commit left its claim behind (the release comes after the
//! publish), so one listing of the job's claims finds the partitions to catch up.

use std::collections::HashSet;

use super::{catch_up, Publisher, TableError};
use crate::commit::checkpoint::Checkpoints;

/// Publishes the sealed commits the table lacks of the partitions with a claim left that are
/// not in `claimed` (this start's; a group member claims later, and catches up then): what
/// another process is committing now is published once either way (publishing is
/// idempotent). A partition that cannot be caught up is logged; the listing failing fails.
pub fn publish_unclaimed(
    table: &dyn Publisher,
    checkpoints: &Checkpoints,
    claimed: &HashSet<String>,
) -> Result<(), TableError> {
    let keys: Vec<String> = checkpoints
        .keys_with_claims()?
        .into_iter()
        .filter(|k| !claimed.contains(k))
        .collect();
    let done = crate::fanout::each(&keys, 4, "catch-up of unclaimed partitions", |key| {
        let before = table.published(key);
        Ok::<_, TableError>((before, catch_up(table, checkpoints, key)))
    });
    for (i, r) in done {
        let key = &keys[i];
        match r.expect("never an error") {
            (Ok(before), Ok(after)) if after != before => {
                tracing::warn!(partition = %key, from = ?before, to = ?after, "published sealed commits the table lacked of a partition this start does not claim (a process died, or its publish failed, after their seal)");
            }
            (_, Ok(_)) => {}
            (_, Err(e)) => {
                tracing::warn!(partition = %key, error = %e, "could not publish the sealed commits the table may lack of a partition this start does not claim");
            }
        }
    }
    Ok(())
}
