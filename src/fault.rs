//! Fault points for tests, driven by `SLUICE_FAULT` (unset in production: each point is one
//! check of a value read once).
//!
//! - `<point>:<n>` aborts the process at the n-th commit reaching `point` (`after_claim`,
//!   `after_files`, `after_checkpoint`; `roll_back_claimed` in a roll-back), like a kill -9
//!   there.
//! - `panic_on:<text>` panics while decoding a group of records that holds `text`, like a
//!   library bug that some value triggers.

use std::sync::OnceLock;

fn spec() -> Option<&'static str> {
    static SPEC: OnceLock<Option<String>> = OnceLock::new();
    SPEC.get_or_init(|| std::env::var("SLUICE_FAULT").ok())
        .as_deref()
}

/// Aborts the process if `SLUICE_FAULT` names `point` and this is its commit.
pub fn abort_at(point: &str, commits: u64) {
    if let Some((p, n)) = spec().and_then(|s| s.split_once(':')) {
        if p == point && n.parse::<u64>().ok() == Some(commits + 1) {
            eprintln!(
                "SLUICE_FAULT: aborting at {point} of commit {}",
                commits + 1
            );
            std::process::abort();
        }
    }
}

/// Panics if `SLUICE_FAULT` is `panic_on:<text>` and `data` holds the text.
pub fn panic_on(data: &[u8]) {
    if let Some(needle) = spec().and_then(|s| s.strip_prefix("panic_on:")) {
        if !needle.is_empty() && memchr::memmem::find(data, needle.as_bytes()).is_some() {
            panic!("SLUICE_FAULT: a panic on a record holding `{needle}`");
        }
    }
}
