//! Freed memory given back to the system.
//!
//! glibc keeps what is freed between live blocks of its heaps, and once a
//! large block was freed it raises its mmap threshold and serves later
//! blocks of that size from its heaps too. Evicted 20 MB values, and the
//! encoder's and the writer's buffers for them, then stay in the process's
//! RSS: measured at twice L1's bound with 20 MB values. Whoever frees in
//! bulk (L1's evictions and clears, the writer's sent batches) reports it,
//! and every `TRIM_STEP` bytes reported the allocator is asked to return
//! its free pages (`malloc_trim`: a walk of its free lists, milliseconds
//! at most, run without the GIL), or every `IDLE_TRIM_STEP` when the
//! writer finds its queue empty (the moment after a burst of large values,
//! on a thread no request waits for).

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

const TRIM_STEP: usize = 32 << 20;
const IDLE_TRIM_STEP: usize = 8 << 20;

static FREED: AtomicUsize = AtomicUsize::new(0);

/// `bytes` were freed (or are about to be).
pub fn note_freed(bytes: usize) {
    FREED.fetch_add(bytes, Relaxed);
}

/// Whether a trim is due; the caller that sees true runs `trim`.
pub fn trim_due() -> bool {
    claimed(TRIM_STEP)
}

/// `trim_due` for the writer when its queue is empty.
pub fn idle_trim_due() -> bool {
    claimed(IDLE_TRIM_STEP)
}

fn claimed(step: usize) -> bool {
    FREED.load(Relaxed) >= step && FREED.swap(0, Relaxed) >= step
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn trim() {
    // SAFETY: no argument but the padding to keep; callable from any thread.
    unsafe { libc::malloc_trim(0) };
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn trim() {}
