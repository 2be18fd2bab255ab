//! Fork detection.
//!
//! Odoo builds registries in the master process and then forks workers. A
//! child must never reuse its parent's sockets or writer thread, so every
//! owner of such a resource remembers the fork epoch it was created in and
//! rebuilds the resource when the epoch moved. Counting forks through
//! `pthread_atfork` costs one relaxed atomic load per check, where `getpid()`
//! would be a system call on every cache access.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;

static FORK_EPOCH: AtomicU64 = AtomicU64::new(0);
static INSTALL: Once = Once::new();

extern "C" fn after_fork_in_child() {
    FORK_EPOCH.fetch_add(1, Ordering::Relaxed);
}

/// Registers the child-side fork handler once per process image.
pub fn install_atfork_handler() {
    INSTALL.call_once(|| unsafe {
        libc::pthread_atfork(None, None, Some(after_fork_in_child));
    });
}

/// The number of forks between the first process image and this one.
#[inline]
pub fn epoch() -> u64 {
    FORK_EPOCH.load(Ordering::Relaxed)
}
