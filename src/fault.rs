//! Fault points for tests, driven by `SLUICE_FAULT` (unset in production: each point is one
//! check of a value read once). The value is a comma-separated list of:
//!
//! - `<point>:<n>` aborts the process at the n-th commit reaching `point` (`after_claim`,
//!   `after_files`, `after_checkpoint`, `after_publish` (a table's); `roll_back_claimed` in a
//!   roll-back), like a kill -9 there.
//! - `fail_commit:<n>` fails the first attempt of the n-th commit before its claim, as a
//!   store that answers an error would (the partition rewinds and replays).
//! - `lose_seal_answer:<n>` fails the n-th seal of a commit after it landed, once, as a
//!   store whose answer was lost would (the commit stands; the writer saw a failure).
//! - `fail_rename_sync:<n>` fails the folder sync after the n-th local rename (a data file's
//!   or a small record's), once, as a disk error would.
//! - `fail_wal_sync:<n>` fails the n-th group fsync of a push WAL, once, as a disk error
//!   would (the records were written; whether they are durable is unknown).
//! - `refuse_seek:<n>` refuses the first n seeks of a Kafka group member, as librdkafka does
//!   while a partition's fetch is still starting (the source retries them before each poll);
//!   `refuse_seek:@<path>` refuses them while the file at `path` exists.
//! - `hold_after_rewind:<ms>` holds a sink worker this long after its final commits of a
//!   bounded run failed and rewound (it has just said it is done; the replay is on its way).
//! - `hold_before_purge:<ms>` holds a sink worker this long between asking the source for a
//!   rewind and purging the channel of the partition's older items (the replay may be read to
//!   its end meanwhile).
//! - `hold_worker:@<path>` holds a sink worker at the top of its loop while the file at
//!   `path` exists; after each take it wrote, it says how far its open files reach; the
//!   first item put in the channel is said too.
//! - `hold_at_end:@<path>`: holds a sink worker before its last commits at a task's end
//!   while the file at `path` exists (what the task still takes meanwhile is seen).
//! - `hold_before_claims:@<path>` holds a start between its files' check and its claims
//!   while the file at `path` exists (another process may commit meanwhile).
//! - `hold_schema_record:@<path>` holds a start between reading the job's recorded schema and
//!   recording its own while the file at `path` exists (another process may record meanwhile).
//! - `hold_reload_check:@<path>` holds a SIGHUP's check of the job while the file at `path`
//!   exists (the task may end meanwhile); `slow_reload_check:<ms>` makes it this slow (a
//!   destination far away).
//! - `panic_at_start:<n>` panics at a task's n-th start in this process (after
//!   `hold_before_claims`), `panic_in_worker:<n>` in a sink worker at its n-th take of items:
//!   the task fails, as a bug would.
//! - `panic_on:<text>` panics while decoding a group of records that holds `text`, like a
//!   library bug that some value triggers (`text` holds no comma).
//! - `stall_after:<ms>` says a partition that reads nothing with records waiting after this
//!   long instead of 10 minutes (`task::stall`).
//! - `lag_unknown_after:<ms>` counts a Kafka partition's lag as unknown once its high
//!   watermark has not been fetched for this long instead of a minute.
//! - `claim_left_after:<ms>`: a claim of a partition a static source no longer reads counts
//!   as left (`task::unclaimed`) once this old instead of 15 minutes.
//! - `fence_grace:<ms>` lets a group member hold a partition another owner fenced this long
//!   (instead of 60 s) before it joins its group again (`task::fenced`).
//! - `no_room_for_log_id:1` fails the write of a new WAL's identity as a full disk would
//!   (the log opens without one).
//! - `end_early:1` lets a bounded run end without waiting for an empty channel, as an earlier
//!   version did: the loss the end-of-run check (`task::check_committed`) must catch.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

fn spec() -> Option<&'static str> {
    static SPEC: OnceLock<Option<String>> = OnceLock::new();
    SPEC.get_or_init(|| std::env::var("SLUICE_FAULT").ok())
        .as_deref()
}

/// The argument of fault point `name`, if `SLUICE_FAULT` names it.
fn arg(name: &str) -> Option<&'static str> {
    spec()?.split(',').find_map(|item| {
        let (p, a) = item.split_once(':')?;
        (p == name).then_some(a)
    })
}

/// Whether `SLUICE_FAULT` sets `point` to 1 (`end_early:1`).
pub fn enabled(point: &str) -> bool {
    arg(point) == Some("1")
}

/// Aborts the process if `SLUICE_FAULT` names `point` and this is its commit.
pub fn abort_at(point: &str, commits: u64) {
    if arg(point).and_then(|n| n.parse::<u64>().ok()) == Some(commits + 1) {
        eprintln!(
            "SLUICE_FAULT: aborting at {point} of commit {}",
            commits + 1
        );
        std::process::abort();
    }
}

/// Whether this commit attempt is to fail (`fail_commit:<n>`: the n-th attempt, counted
/// here, once). Counted per attempt rather than read from the commits completed: two commits
/// running at once could read the same count, and then no commit was the n-th. As only one
/// attempt fails, every attempt before it is a commit's first.
pub fn fail_commit() -> bool {
    static ATTEMPTS: AtomicU64 = AtomicU64::new(0);
    let Some(n) = arg("fail_commit").and_then(|n| n.parse::<u64>().ok()) else {
        return false;
    };
    let fail = ATTEMPTS.fetch_add(1, Ordering::Relaxed) + 1 == n;
    if fail {
        eprintln!("SLUICE_FAULT: failing commit {n}");
    }
    fail
}

/// An error in place of this folder sync after a local rename (`fail_rename_sync:<n>`: the
/// n-th, once), as a disk that fails the fsync would give: the rename happened, its
/// durability did not.
pub fn fail_rename_sync() -> Option<std::io::Error> {
    static SYNCS: AtomicU64 = AtomicU64::new(0);
    fail_nth("fail_rename_sync", &SYNCS, "the folder sync after rename")
}

/// An error in place of a push WAL's group fsync (`fail_wal_sync:<n>`: the n-th, once), as a
/// disk that fails it would give: the records were written, their durability is unknown.
pub fn fail_wal_sync() -> Option<std::io::Error> {
    static SYNCS: AtomicU64 = AtomicU64::new(0);
    fail_nth("fail_wal_sync", &SYNCS, "WAL sync")
}

/// An error in place of the answer to the n-th seal (`lose_seal_answer:<n>`, once), after it
/// landed: as a store whose answer was lost on the way (the commit stands, the writer saw a
/// failure).
pub fn lose_seal_answer() -> Option<std::io::Error> {
    static SEALS: AtomicU64 = AtomicU64::new(0);
    fail_nth("lose_seal_answer", &SEALS, "the answer to seal")
}

/// An error in place of the n-th call `count` counts, once, when `SLUICE_FAULT` names `point`
/// with that n.
fn fail_nth(point: &str, count: &AtomicU64, what: &str) -> Option<std::io::Error> {
    let n = arg(point).and_then(|n| n.parse::<u64>().ok())?;
    if count.fetch_add(1, Ordering::Relaxed) + 1 != n {
        return None;
    }
    eprintln!("SLUICE_FAULT: failing {what} {n}");
    Some(std::io::Error::other(format!("SLUICE_FAULT: {point}")))
}

/// Whether this seek is to be refused (`refuse_seek:<n>`: the first n; `refuse_seek:@<path>`:
/// while the file at `path` exists).
pub fn refuse_seek() -> bool {
    static REFUSED: AtomicU64 = AtomicU64::new(0);
    let Some(a) = arg("refuse_seek") else {
        return false;
    };
    let refused = match a.strip_prefix('@') {
        Some(path) => std::path::Path::new(path).exists(),
        None => {
            let n = a.parse::<u64>().unwrap_or(0);
            REFUSED
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| {
                    (r < n).then_some(r + 1)
                })
                .is_ok()
        }
    };
    if refused {
        eprintln!("SLUICE_FAULT: refusing a seek");
    }
    refused
}

/// The milliseconds `SLUICE_FAULT` gives fault point `point`, if it names it.
pub fn millis(point: &str) -> Option<std::time::Duration> {
    arg(point)
        .and_then(|n| n.parse::<u64>().ok())
        .map(std::time::Duration::from_millis)
}

/// Sleeps for the milliseconds `SLUICE_FAULT` gives fault point `point`, if it names it.
pub fn hold(point: &str) {
    if let Some(d) = millis(point) {
        eprintln!("SLUICE_FAULT: holding at {point} for {} ms", d.as_millis());
        std::thread::sleep(d);
    }
}

/// `hold_worker:@<path>`: a sink worker says how far each of its open partitions' files
/// reach (`reach`: partition, next offset) after each take it wrote.
pub fn worker_wrote(reach: impl Iterator<Item = (u32, u64)>) {
    if arg("hold_worker").is_none() {
        return;
    }
    for (p, next) in reach {
        eprintln!("SLUICE_FAULT: the open files of partition {p} reach offset {next}");
    }
}

/// `hold_worker:@<path>`: says once that an item was put in the channel (with the workers
/// held, it stays there: a stop now spills it).
pub fn item_put() {
    static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if arg("hold_worker").is_none() || SAID.swap(true, Ordering::Relaxed) {
        return;
    }
    eprintln!("SLUICE_FAULT: an item is in the channel");
}

/// `<point>:@<path>`: holds this thread while the file at `path` exists, as a thread the OS
/// does not run would (saying so once).
pub fn hold_while(point: &str) {
    let Some(path) = arg(point).and_then(|a| a.strip_prefix('@')) else {
        return;
    };
    let path = std::path::Path::new(path);
    if path.exists() {
        eprintln!("SLUICE_FAULT: holding at {point}");
    }
    while path.exists() {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Panics at a task's `n`-th start in this process (`panic_at_start:<n>`), as a bug in a task
/// would: its supervisor takes it for the task's failure.
pub fn panic_at_start() {
    static STARTS: AtomicU64 = AtomicU64::new(0);
    panic_nth("panic_at_start", &STARTS, "at the task's start");
}

/// Panics in a sink worker at the `n`-th take of items in this process
/// (`panic_in_worker:<n>`), as a bug in writing would: the task fails, and its supervisor
/// restarts it.
pub fn panic_in_worker() {
    static TAKES: AtomicU64 = AtomicU64::new(0);
    panic_nth("panic_in_worker", &TAKES, "in a sink worker at take");
}

/// Panics at the n-th call `count` counts when `SLUICE_FAULT` names `point` with that n.
fn panic_nth(point: &str, count: &AtomicU64, what: &str) {
    let Some(n) = arg(point).and_then(|n| n.parse::<u64>().ok()) else {
        return;
    };
    if count.fetch_add(1, Ordering::Relaxed) + 1 == n {
        panic!("SLUICE_FAULT: a panic {what} {n}");
    }
}

/// Panics if `SLUICE_FAULT` is `panic_on:<text>` and `data` holds the text.
pub fn panic_on(data: &[u8]) {
    if let Some(needle) = arg("panic_on") {
        if !needle.is_empty() && memchr::memmem::find(data, needle.as_bytes()).is_some() {
            panic!("SLUICE_FAULT: a panic on a record holding `{needle}`");
        }
    }
}
