//! Partitions a static source no longer reads (a file dropped from `paths`, a topic from
//! `topics`) that a process left a claim of: a commit it died in (or whose publish into a
//! table failed). The next claim of a partition settles such a claim (its files removed, or
//! its sealed commit published into the table), but a partition no longer in the job is never
//! claimed again: the unfinished commit's files stayed visible for good, or the sealed
//! commit stayed out of the table while `checkpoints list` showed it committed. Each start of
//! a static source claims those partitions too, once (one listing of the job's claims finds
//! them; a claim younger than 15 minutes is taken for a commit under way elsewhere, and left
//! to the next start), and writes nothing into them. A group member does not: it learns its
//! partitions later, and the others' claims are of commits under way.

use std::collections::HashSet;

/// A claim made this long before is one left (a commit's claim is sealed or aborted within
/// seconds): a younger one may be another process's commit under way (processes of one job
/// reading other files), which a claim here would fence.
const LEFT_AFTER_MS: i64 = 15 * 60 * 1000;

use super::claims::claim;
use super::TaskError;
use crate::commit::checkpoint::Checkpoints;

/// Claims the partitions with a claim left that are not in `claimed` (this start's), so that
/// their unfinished commits are settled and a table holds their sealed commits. One that
/// cannot be is logged (its next claim settles it); the listing failing fails the start.
pub(super) fn settle(
    checkpoints: &Checkpoints,
    table: Option<&dyn crate::table::Publisher>,
    claimed: &HashSet<String>,
) -> Result<(), TaskError> {
    let left_after =
        crate::fault::millis("claim_left_after").map_or(LEFT_AFTER_MS, |d| d.as_millis() as i64);
    let keys = checkpoints.keys_with_claims(|k| claimed.contains(k), left_after)?;
    if keys.is_empty() {
        return Ok(());
    }
    let span = tracing::Span::current();
    let done = crate::fanout::each(&keys, 4, "claims left of partitions not read", |key| {
        let _entered = span.enter();
        Ok::<_, TaskError>(claim(checkpoints, table, key, None))
    });
    for (i, r) in done {
        let key = &keys[i];
        match r.expect("never an error") {
            Ok(_) => {
                tracing::warn!(partition = %key, "settled the claim a process left of a partition this job no longer reads (its unfinished commit's files removed, or its sealed commit published into the table)");
            }
            Err(e) => {
                tracing::warn!(partition = %key, error = %e, "could not settle the claim a process left of a partition this job no longer reads; its next claim does");
            }
        }
    }
    Ok(())
}
