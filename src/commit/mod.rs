//! The commit protocol of a source partition and its records in the destination.
//!
//! A commit of sequence number `s` by the owner of term `t`:
//!
//! 1. **claim** `s` (create-only, with the owner id and term, listing the files' final and
//!    temporary names), refused when a newer term exists;
//! 2. **publish** the files (rename locally, complete the uploads elsewhere), under names
//!    unique to the attempt;
//! 3. **seal** `s` with the commit outcome, create-only: exactly one of this commit and a
//!    fence's abort wins; a lost seal deletes what step 2 published;
//! 4. **release** the claim and sweep files of aborted claims published late;
//! 5. tell the source (Kafka: the group's offsets).
//!
//! [`checkpoint`] holds the outcome records and reads them; [`fence`] the terms, the claims,
//! and the reconcile that start, assignment and failed commits go through; `probe` the check,
//! at start, that the destination refuses to repeat a create-only write; [`ranges`] what
//! backfills and the live job hold of a destination's partitions.

mod bounds;
pub mod checkpoint;
#[cfg(test)]
mod dotted_tests;
pub mod fence;
mod legacy;
#[cfg(test)]
mod listing_tests;
#[cfg(test)]
mod model;
mod probe;
pub mod ranges;
mod rollback;
pub use rollback::check_roll_back_listing;
pub mod skip;
#[cfg(test)]
mod sync_tests;
#[cfg(test)]
mod tests;

use std::sync::OnceLock;

/// A partition's outcome records are pruned at every commit whose sequence number is a
/// multiple of this, down to the newest [`PRUNE_KEEP`].
pub const PRUNE_EVERY: u64 = 64;
/// Outcome records a prune keeps (the newest).
pub const PRUNE_KEEP: usize = 256;

/// This process's owner id: the process id and 64 random bits.
pub fn owner_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| format!("{}-{}", std::process::id(), random_tag()))
}

/// Milliseconds since the epoch (0 if the clock is before it).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `ms` (since the epoch) as an RFC 3339 time in UTC, for people.
pub fn format_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}

/// When this process started (ms since the epoch; `main` calls this first).
pub fn process_started_ms() -> i64 {
    static AT: OnceLock<i64> = OnceLock::new();
    *AT.get_or_init(now_ms)
}

/// 16 hex digits from the OS's random source: file names unique to one commit attempt.
pub fn random_tag() -> String {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        // No OS randomness: time and a counter still differ between attempts of this process.
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        b = (t ^ n.rotate_left(48) ^ u64::from(std::process::id()) << 32).to_le_bytes();
    }
    format!("{:016x}", u64::from_le_bytes(b))
}
