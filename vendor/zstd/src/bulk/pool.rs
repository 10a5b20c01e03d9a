//! sluice: idle contexts kept per thread, for the bulk compressor and decompressor.
//!
//! Creating a zstd context runs `cpuid` twice (zstd probes for BMI2 in every context it
//! creates), and under a hypervisor each `cpuid` exits to it: about 13 us a context on the
//! machines sluice is measured on. Parquet makes a compressor and a decompressor for every
//! column chunk it writes or reads, so many small files spent a quarter of a compaction's CPU
//! there. A context made by `Compressor::new` or `Decompressor::new` (or `with_dictionary`)
//! that was never given a borrowed dictionary, a parameter or its raw context goes back here
//! when dropped, reset, and the next one made on this thread takes it; a compression context
//! only if it never compressed (a reader's).

use std::cell::RefCell;

use zstd_safe::{CCtx, DCtx, ResetDirective};

/// Idle contexts kept per thread, of each kind.
const KEEP: usize = 16;
/// The most the idle contexts of one kind may hold per thread. A compression context keeps
/// its workspace: about 0.6 MB at level 1 and 1.3 MB at level 3, tens of MB at the highest
/// levels; a decompression context about 100 KB. Kept small: more kept compression contexts
/// cost a writer of many files more memory and system time than their creation saves.
const KEEP_BYTES: usize = 2 << 20;
/// A compression context no larger than this has never compressed (a new one is 5 KB).
const UNUSED_CCTX_BYTES: usize = 64 << 10;

thread_local! {
    static CCTXS: RefCell<Vec<CCtx<'static>>> = const { RefCell::new(Vec::new()) };
    static DCTXS: RefCell<Vec<DCtx<'static>>> = const { RefCell::new(Vec::new()) };
}

/// An idle compression context of this thread, else a new one.
pub(crate) fn cctx() -> CCtx<'static> {
    CCTXS
        .try_with(|p| p.try_borrow_mut().ok()?.pop())
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// An idle decompression context of this thread, else a new one.
pub(crate) fn dctx() -> DCtx<'static> {
    DCTXS
        .try_with(|p| p.try_borrow_mut().ok()?.pop())
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Keeps `c` for this thread's next compressor, reset, if fewer than `KEEP` are kept and
/// they would hold at most `KEEP_BYTES`; else frees it. Only for a context that refers to
/// nothing it borrowed (see the module).
pub(crate) fn put_cctx(mut c: CCtx<'_>) {
    // One that compressed holds its workspace (0.2 MB and up): kept, they made a writer of
    // many files larger and busier in the kernel than their creation costs. Parquet's readers
    // make one per column chunk and never compress with it (5 KB).
    if c.sizeof() > UNUSED_CCTX_BYTES {
        return;
    }
    if c.reset(ResetDirective::SessionAndParameters).is_err() {
        return;
    }
    // SAFETY: the caller's context never referred to borrowed data (no prepared dictionary,
    // prefix or raw access), and the reset cleared its parameters and dictionary: it holds
    // only what it owns, so no lifetime bounds it.
    let c: CCtx<'static> = unsafe { std::mem::transmute::<CCtx<'_>, CCtx<'static>>(c) };
    let _ = CCTXS.try_with(move |p| {
        if let Ok(mut p) = p.try_borrow_mut() {
            let held: usize = p.iter().map(|k| k.sizeof()).sum();
            if p.len() < KEEP && held + c.sizeof() <= KEEP_BYTES {
                p.push(c);
            }
        }
    });
}

/// As [`put_cctx`], for a decompression context.
pub(crate) fn put_dctx(mut c: DCtx<'_>) {
    if c.reset(ResetDirective::SessionAndParameters).is_err() {
        return;
    }
    // SAFETY: as in `put_cctx`.
    let c: DCtx<'static> = unsafe { std::mem::transmute::<DCtx<'_>, DCtx<'static>>(c) };
    let _ = DCTXS.try_with(move |p| {
        if let Ok(mut p) = p.try_borrow_mut() {
            let held: usize = p.iter().map(|k| k.sizeof()).sum();
            if p.len() < KEEP && held + c.sizeof() <= KEEP_BYTES {
                p.push(c);
            }
        }
    });
}
