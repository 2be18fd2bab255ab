//! Fork detection.
//!
//! Odoo builds registries in the master process and then forks workers. A
//! child must never reuse its parent's sockets or writer thread, so every
//! owner of such a resource remembers the fork epoch it was created in and
//! rebuilds the resource when the epoch moved. Counting forks through
//! `pthread_atfork` costs one relaxed atomic load per check, where `getpid()`
//! would be a system call on every cache access.

use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
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

/// A value that belongs to one process image: after a fork the child gets a
/// fresh one, built by `init`, and the parent's copy is leaked untouched.
///
/// Leaking is deliberate: the inherited copy may hold a mutex locked by a
/// parent thread that does not exist in the child, sockets (and TLS state)
/// shared with the parent, or a channel to a writer thread that is gone.
/// Dropping any of those could deadlock or corrupt the parent's stream.
pub struct ProcessLocal<T> {
    current: AtomicPtr<(u64, T)>,
}

// The pointee is only shared by reference and replaced atomically.
unsafe impl<T: Send + Sync> Sync for ProcessLocal<T> {}
unsafe impl<T: Send + Sync> Send for ProcessLocal<T> {}

impl<T> ProcessLocal<T> {
    pub fn new(value: T) -> Self {
        ProcessLocal {
            current: AtomicPtr::new(Box::into_raw(Box::new((epoch(), value)))),
        }
    }

    /// The value of this process image, building it if the process forked.
    pub fn get(&self, init: impl FnOnce() -> T) -> &T {
        let ptr = self.current.load(Ordering::Acquire);
        // SAFETY: `ptr` comes from Box::into_raw and is only freed in Drop
        // (which needs `&mut self`), so it outlives this borrow of `self`.
        let (owner_epoch, value) = unsafe { &*ptr };
        let now = epoch();
        if *owner_epoch == now {
            return value;
        }
        let fresh = Box::into_raw(Box::new((now, init())));
        match self
            .current
            .compare_exchange(ptr, fresh, Ordering::AcqRel, Ordering::Acquire)
        {
            // The parent's value (`ptr`) is leaked on purpose, see above.
            Ok(_) => unsafe { &(*fresh).1 },
            Err(winner) => {
                // Another thread of this child replaced it first.
                drop(unsafe { Box::from_raw(fresh) });
                unsafe { &(*winner).1 }
            }
        }
    }
}

impl<T> Drop for ProcessLocal<T> {
    fn drop(&mut self) {
        let ptr = *self.current.get_mut();
        // SAFETY: exclusive access; a value from a parent image is leaked.
        let boxed = unsafe { Box::from_raw(ptr) };
        if boxed.0 != epoch() {
            std::mem::forget(boxed);
        }
    }
}
