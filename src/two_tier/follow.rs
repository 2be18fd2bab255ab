//! Following clears made by other processes, for caches whose owner does
//! not sync generations itself (the addon does, per request; a standalone
//! program does not).
//!
//! Every `clear_method` also moves a small "clears" key of the namespace,
//! in the same MULTI/EXEC as the generation token. A thread of this process
//! reads that key every `interval` (one GET, off the request path, through
//! the client's pool and deadline) and raises a flag when it moved; the next
//! lookup then syncs the generations (one HGETALL) before answering, which
//! drops the L1 copies of the cleared methods. A clear thus reaches every
//! other process's L1 within one interval plus the sync, while Redis is up;
//! when it is not, nothing moves and L1 entries live until their TTL or
//! eviction, as before.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once, Weak};
use std::time::Duration;

use parking_lot::Mutex;

use crate::fork::ProcessLocal;
use crate::redis::pool::Pool;

/// What one process knows of a cache's clears key.
pub(super) struct FollowState {
    /// The clears key of the cache's current namespace.
    key: Mutex<Vec<u8>>,
    /// Its value at the last poll (None: not read yet, or absent).
    seen: Mutex<Option<Option<Vec<u8>>>>,
    /// Set by the poller when the key moved; taken by the next lookup.
    moved: AtomicBool,
    started: Once,
}

/// A cache's follower: its state in this process image (a forked child
/// gets its own, and its own thread).
pub(super) struct Follower {
    interval: Duration,
    state: ProcessLocal<Arc<FollowState>>,
}

/// The key a clear moves next to a generations hash (the same hash tag,
/// so that both fit one MULTI/EXEC on a cluster).
pub(super) fn clears_key(generations_key: &[u8]) -> Vec<u8> {
    let mut key = generations_key.to_vec();
    key.extend_from_slice(b":clears");
    key
}

impl Follower {
    pub(super) fn new(interval: Duration, generations_key: &[u8]) -> Follower {
        Follower {
            interval,
            state: ProcessLocal::new(FollowState::new(generations_key)),
        }
    }

    fn state(&self, generations_key: impl FnOnce() -> Vec<u8>) -> &Arc<FollowState> {
        self.state.get(|| FollowState::new(&generations_key()))
    }

    /// Whether another process cleared something since the last call;
    /// starts this process's poller on first use.
    pub(super) fn take_moved(
        &self,
        pool: impl FnOnce() -> Arc<Pool>,
        generations_key: impl FnOnce() -> Vec<u8>,
    ) -> bool {
        let state = self.state(generations_key);
        state
            .started
            .call_once(|| spawn_poller(Arc::downgrade(state), pool(), self.interval));
        state.moved.load(Ordering::Acquire) && state.moved.swap(false, Ordering::AcqRel)
    }

    /// The sync failed: try again at the next lookup.
    pub(super) fn retry(&self, generations_key: impl FnOnce() -> Vec<u8>) {
        self.state(generations_key)
            .moved
            .store(true, Ordering::Release);
    }

    /// The namespace changed: follow its key from now on.
    pub(super) fn set_generations_key(&self, generations_key: &[u8]) {
        let state = self.state(|| generations_key.to_vec());
        *state.key.lock() = clears_key(generations_key);
        *state.seen.lock() = None;
    }
}

impl FollowState {
    fn new(generations_key: &[u8]) -> Arc<FollowState> {
        Arc::new(FollowState {
            key: Mutex::new(clears_key(generations_key)),
            seen: Mutex::new(None),
            moved: AtomicBool::new(false),
            started: Once::new(),
        })
    }

    fn poll(&self, pool: &Pool) {
        let key = self.key.lock().clone();
        let Ok(value) = pool.call_in_background(0, |con| {
            redis::cmd("GET")
                .arg(key.as_slice())
                .query::<Option<Vec<u8>>>(con)
        }) else {
            return;
        };
        let mut seen = self.seen.lock();
        // The first read syncs too: a clear may have come between this
        // process's first lookups and it.
        if seen.as_ref() != Some(&value) {
            self.moved.store(true, Ordering::Release);
        }
        *seen = Some(value);
    }
}

fn spawn_poller(state: Weak<FollowState>, pool: Arc<Pool>, interval: Duration) {
    let spawned = std::thread::Builder::new()
        .name("ormcache_redis-follow".into())
        .spawn(move || loop {
            // The cache is gone: so is its poller.
            let Some(state) = state.upgrade() else {
                return;
            };
            if pool.would_attempt() {
                state.poll(&pool);
            }
            drop(state);
            std::thread::sleep(interval);
        });
    // Without a thread (resource limits), clears reach this process's L1
    // at the TTL, as when Redis is down.
    drop(spawned);
}
