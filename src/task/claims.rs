//! Claiming partitions in the destination: a new ownership term (older writers fenced),
//! roll-backs asked by `--from-checkpoint`, claims that did not finish fenced, a table brought
//! up to the sealed commits; side by side for many partitions (`claim_all`), and at a static
//! source's start after its checks (`claim_static`). Touches no task state: the task
//! registers a claimed partition with `membership::resume`.

use super::roll_backs::{
    already_rolled_back, check_replay, log_not_repeated, refuse_compacted, roll_backs,
    FromCheckpoint,
};
use super::TaskError;
use crate::commit::checkpoint::Checkpoints;
use crate::commit::fence::Reconciled;
use crate::source::PartitionInfo;

/// What registering a partition learned from the destination: its new ownership term, how
/// its commits ended, and how far a table holds it.
pub struct Claimed {
    pub(super) term: u64,
    pub(super) reconciled: Reconciled,
    pub(super) held: Option<u64>,
    /// The claim rolled the partition back (`--from-checkpoint`).
    pub rolled_back: bool,
}

/// The destination's part of registering partition `key`: takes a new ownership term (older
/// writers are fenced), rolls back to checkpoint `from_checkpoint` if asked and not already
/// done ([`already_rolled_back`], checked under the new term), fences claims that did not
/// finish, and brings a table up to the sealed commits. Touches no task state, so partitions
/// are claimed side by side ([`claim_all`]).
pub fn claim(
    checkpoints: &Checkpoints,
    table: Option<&dyn crate::table::Publisher>,
    key: &str,
    from_checkpoint: Option<FromCheckpoint>,
) -> Result<Claimed, TaskError> {
    let owner = crate::commit::owner_id();
    if from_checkpoint.is_some() {
        refuse_a_table_made_since(checkpoints, key)?;
    }
    // A new term first: from here on, every older writer of the partition is fenced.
    let term = checkpoints.take_term(key, owner)?;
    #[cfg(test)]
    crate::hooks::at("claim: after the term");
    let roll = match from_checkpoint {
        Some(f) if super::roll_backs::rolled_back_here(checkpoints, key, f.seq) => None,
        Some(f) => match already_rolled_back(checkpoints, key, f)? {
            Some(before) => {
                log_not_repeated(key, f, &before);
                None
            }
            None => Some(f),
        },
        None => None,
    };
    let rolled = roll.is_some();
    let r = match roll {
        Some(f) => {
            refuse_a_table_made_since(checkpoints, key)?;
            let r = checkpoints.roll_back_to(key, f.seq, term, owner)?;
            super::roll_backs::done_here(checkpoints, key, f.seq);
            tracing::warn!(partition = %key, seq = f.seq, next_offset = ?r.latest.as_ref().map(|c| c.next_offset), "replaying from an older checkpoint");
            r
        }
        None => checkpoints.reconcile(key, term, owner)?,
    };
    if !r.removed.is_empty() {
        let what = if rolled {
            "removed the files of the commits rolled back (and of any unfinished one)"
        } else {
            "removed files of an unfinished commit"
        };
        tracing::warn!(partition = %key, files = ?r.removed, "{what}");
    }
    // The table holds every sealed commit before the partition commits again.
    let held = match table {
        Some(t) => crate::table::catch_up(t, checkpoints, key)?,
        None => None,
    };
    Ok(Claimed {
        term,
        reconciled: r,
        held,
        rolled_back: roll.is_some(),
    })
}

/// A roll-back is refused where the destination holds a table ([`crate::table::for_task`],
/// at start); checked again before the new term (so a refusal fences no owner) and under it,
/// since another process may have made the table since. Every version naming the
/// partition's commits (a publish, a catch-up) is written under a term its writer took after
/// opening the table: a term older than this one means the table existed before this term
/// was taken, and is seen here; a newer one settles this roll-back's claim first, so its
/// catch-up never publishes the commits undone.
fn refuse_a_table_made_since(checkpoints: &Checkpoints, key: &str) -> Result<(), TaskError> {
    let dest = checkpoints.destination();
    if crate::table::present(dest)? {
        return Err(crate::table::TableError::RollBack {
            url: dest.url().to_string(),
            reason: format!("--from-checkpoint cannot roll back partition {key}: another process made a table in the destination since this one started (its readers may have seen the commits); this partition was not rolled back"),
        }
        .into());
    }
    Ok(())
}

/// See [`crate::table::refuse_plain_into_table`]: a table's writers publish every commit
/// under a term taken after the table was made, so one made before this term is seen here,
/// and one made after fences this process's term before its catch-up.
fn refuse_plain_into_a_table_made_since(checkpoints: &Checkpoints) -> Result<(), TaskError> {
    let none = crate::table::TableKind::None;
    Ok(crate::table::refuse_plain_into_table(
        &none,
        checkpoints.destination(),
    )?)
}

impl Claimed {
    /// The partition's newest commit, as the claim found it.
    pub fn latest(&self) -> Option<&crate::commit::checkpoint::Checkpoint> {
        self.reconciled.latest.as_ref()
    }
}

/// A claim that failed: the partition's place in the list asked, and why.
pub struct ClaimFailed {
    pub index: usize,
    pub error: TaskError,
}

/// Partitions claimed at once: [`claim`] for each `(key, from_checkpoint)`, on this thread and
/// up to [`crate::fanout::REBALANCE_CALLS`] - 1 more, in the order given. Each claim is a few store round trips
/// (files and fsyncs locally, requests to an object store), and a start or an assignment of
/// many partitions waited for them one after another. After a failure no further partition is
/// claimed (a term taken for a run that stops fences its owner for nothing); the first failure
/// in the order given is returned, later ones are logged. A panic in a claim is passed on.
pub fn claim_all(
    checkpoints: &Checkpoints,
    table: Option<&dyn crate::table::Publisher>,
    parts: &[(String, Option<FromCheckpoint>)],
) -> Result<Vec<Claimed>, ClaimFailed> {
    // A job without a table where another process made one since this one started: refused
    // before any term (that refusal fences no owner), and again once every term is taken (a
    // table's writers publish under terms taken after it was made: one made before these
    // terms is seen then, and one made after fences them before its catch-up; that refusal
    // has fenced the table's writers of these partitions, which claim them again). Once a
    // claim, not once a partition: each check lists the destination.
    let plain = table.is_none();
    let refuse = |index| {
        refuse_plain_into_a_table_made_since(checkpoints)
            .map_err(|error| ClaimFailed { index, error })
    };
    if plain && !parts.is_empty() {
        refuse(0)?;
    }
    // The claims log as the caller does (its repo).
    let span = tracing::Span::current();
    let done = crate::fanout::each(
        parts,
        crate::fanout::REBALANCE_CALLS,
        "claim",
        |(key, roll)| {
            let _entered = span.enter();
            claim(checkpoints, table, key, *roll)
        },
    );
    let mut claimed = Vec::with_capacity(parts.len());
    let mut first: Option<ClaimFailed> = None;
    for (index, c) in done {
        match c {
            Ok(c) => claimed.push(c),
            Err(error) if first.is_none() => first = Some(ClaimFailed { index, error }),
            Err(error) => {
                tracing::warn!(partition = %parts[index].0, %error, "claiming the partition failed too");
            }
        }
    }
    match first {
        Some(f) => Err(f),
        None if plain && !parts.is_empty() => refuse(0).map(|()| claimed),
        None => Ok(claimed),
    }
}

/// The claims of a static source's partitions at its start: those to roll back (not
/// [`already_rolled_back`]) must all be able to replay, and another log's checkpoints are
/// checked ([`super::foreign_log::before_claim`]), before any term is taken (which would
/// fence the current owner for nothing); then [`claim_all`].
pub(super) fn claim_static(
    source: &mut dyn crate::source::Source,
    checkpoints: &Checkpoints,
    table: Option<&dyn crate::table::Publisher>,
    parts: &[PartitionInfo],
    (from_checkpoint, compacted): (Option<FromCheckpoint>, &[(String, String)]),
) -> Result<Vec<Claimed>, TaskError> {
    let asked = parts.iter().map(|p| (p.key(), from_checkpoint)).collect();
    let asked = roll_backs(checkpoints, asked)?;
    for (p, (key, roll)) in parts.iter().zip(&asked) {
        if let Some(f) = roll {
            refuse_compacted(compacted, key, f.seq).map_err(|reason| TaskError::Refused {
                job: checkpoints.job().to_string(),
                reason,
            })?;
            check_replay(checkpoints, key, f.seq, source.replayable(p.id)?)?;
        }
    }
    let rolls: Vec<Option<u64>> = asked.iter().map(|(_, f)| f.map(|f| f.seq)).collect();
    super::foreign_log::before_claim(source, checkpoints, parts, &rolls)?;
    claim_all(checkpoints, table, &asked).map_err(|f| f.error)
}
