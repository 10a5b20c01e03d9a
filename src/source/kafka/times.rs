//! A broker's offset for a time, checked against the record it names. A bounded run's
//! `--from` or `--to` given as a time is, in each partition, the first offset whose record is
//! stamped at or after it, which the broker looks up in its time index. That answer is not
//! taken on trust: tansu answers offset 0 for a time no record reaches, so a range starting
//! past a partition's last record read all of it, and one ending past it read none of it,
//! both without a word.
//!
//! So the record at each answer short of the log's end is read (one client for every
//! partition, identity's [`Recheck`]). One stamped at or after the time, or without a stamp,
//! confirms it. One stamped before it means the answer is wrong: when the partition's last
//! record is stamped before the time too, no record reaches it and the answer is the log's
//! end (logged); otherwise (a later record at or after it, or no last record to read) the
//! run is refused, naming the partition, whose bounds can be given as offsets instead. A record that does not come
//! within [`WAIT`], or comes from past the answer (the answer a transaction's marker or an
//! aborted record, which a `read_committed` reader skips), leaves the answer as the broker
//! gave it, logged where it cannot be told.

use super::err_at;
use super::identity::{Recheck, WAIT};
use crate::source::SourceError;

/// A broker's answer for a time in one partition.
#[derive(Debug, Clone)]
pub(super) struct Answer {
    pub topic: String,
    pub partition: i32,
    /// The time asked for (ms since the epoch).
    pub ms: i64,
    /// The offset the broker answered, within the log.
    pub offset: i64,
    /// The log's end (high watermark).
    pub high: i64,
    /// Which bound it is (`--from`, `--to`), for messages.
    pub flag: &'static str,
}

/// The offsets of `answers`, in their order, each checked against its record (see the
/// module's doc): the broker's, or the log's end where no record reaches the time.
pub(super) fn checked(
    recheck: &Recheck,
    name: &str,
    answers: &[Answer],
) -> Result<Vec<i64>, SourceError> {
    let mut offsets: Vec<i64> = answers.iter().map(|a| a.offset).collect();
    // At most one offset per partition per read (the reader assigns each partition once).
    for flag in ["--from", "--to"] {
        let asked: Vec<usize> = (0..answers.len())
            .filter(|&i| answers[i].flag == flag && answers[i].offset < answers[i].high)
            .collect();
        let at = |i: usize, o: i64| (answers[i].topic.clone(), answers[i].partition, o);
        let wanted: Vec<_> = asked.iter().map(|&i| at(i, answers[i].offset)).collect();
        let found = recheck.first_at(&wanted, WAIT);
        let mut wrong = Vec::new();
        for (&i, f) in asked.iter().zip(found) {
            let a = &answers[i];
            match f {
                // The record there (not one after it: the answer may be a transaction's
                // marker or an aborted record, which this reader skips).
                Some((o, Some(ts))) if o == a.offset && ts < a.ms => wrong.push((i, ts)),
                Some(_) => {}
                None => tracing::warn!(
                    partition = %format!("{}-{}", a.topic, a.partition),
                    offset = a.offset,
                    "{flag} @{}: the broker's offset for the time is taken unchecked: its record did not come within {WAIT:?}",
                    a.ms
                ),
            }
        }
        if wrong.is_empty() {
            continue;
        }
        let wanted: Vec<_> = wrong
            .iter()
            .map(|&(i, _)| at(i, answers[i].high - 1))
            .collect();
        let last = recheck.first_at(&wanted, WAIT);
        for (&(i, ts), last) in wrong.iter().zip(last) {
            let a = &answers[i];
            let said = format!(
                "{}/{}: for {flag} @{} the broker answered offset {}, whose record is stamped {ts}, before that time",
                a.topic, a.partition, a.ms, a.offset
            );
            match last {
                Some((_, Some(end_ts))) if end_ts < a.ms => {
                    tracing::warn!(
                        partition = %format!("{}-{}", a.topic, a.partition),
                        "{said}; its last record (stamped {end_ts}) is before it too, so no record reaches the time: the bound is the log's end ({})",
                        a.high
                    );
                    offsets[i] = a.high;
                }
                // The answer is wrong (its own record says so, which a broker keeping to the
                // protocol never answers): what is right is not known.
                last => {
                    let why = match last {
                        Some((o, Some(end_ts))) => {
                            format!("its record at offset {o} is stamped {end_ts}, at or after it")
                        }
                        Some((o, None)) => format!("its record at offset {o} has no time"),
                        None => format!(
                            "its last record did not come within {WAIT:?} (a transaction's marker ends the log, or the broker is slow) to tell whether any reaches it"
                        ),
                    };
                    return Err(err_at(
                        name,
                        format!("{said}, and {why}: the broker's time index cannot be trusted here. Give this partition's bound as offsets (`{}:{}=<offset>`)", a.topic, a.partition),
                    ));
                }
            }
        }
    }
    Ok(offsets)
}
