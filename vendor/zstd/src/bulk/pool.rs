//! sluice: idle contexts kept per thread, for the bulk compressor and decompressor.
//!
//! Creating a zstd context runs `cpuid` twice (zstd probes for BMI2 in every context it
//! creates), and under a hypervisor each `cpuid` exits to it: about 13 us a context on the
//! machines sluice is measured on. Parquet makes a compressor and a decompressor for every
//! column chunk it writes or reads, so many small files spent a quarter of a compaction's CPU
//! there. A context made by `Compressor::new` or `Decompressor::new` (or `with_dictionary`)
//! that was never given a borrowed dictionary, a parameter or its raw context goes back here
//! when dropped, reset, and the next one made on this thread takes it. A compressor takes its
//! context when it first compresses: a writer's column chunks that compress only when their
//! file closes then share one context a thread, given back by each chunk as it closes.

use std::cell::RefCell;

use zstd_safe::{CCtx, DCtx, ResetDirective};

/// Idle contexts kept per thread, of each kind.
const KEEP: usize = 16;
/// The most the idle contexts of one kind may hold per thread. A compression context keeps
/// its workspace: about 0.6 MB at level 1 and 1.3 MB at level 3, tens of MB at the highest
/// levels; a decompression context about 100 KB. Kept small: a compressor takes its context
/// when it first compresses (see `Compressor`), so a thread closing many files' column chunks
/// one after another needs one or two.
const KEEP_BYTES: usize = 2 << 20;

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

/// Keeps `c` for this thread's next compressor, reset (its workspace stays), if fewer than
/// `KEEP` are kept and they would hold at most `KEEP_BYTES`; else frees it. Only for a context that refers to
/// nothing it borrowed (see the module).
pub(crate) fn put_cctx(mut c: CCtx<'_>) {
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
