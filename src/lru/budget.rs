//! The process's byte budget for L1: every LRU of the process (each plain
//! `LRU`, the local tier of each `TwoTierCache`, of every registry and
//! database) draws on one bound, so the caches together stay within it
//! however their use is spread among them.
//!
//! Recency across caches: every store advances one process clock, and an
//! entry records the clock's value when it is stored or hit (on a hit a
//! relaxed load and a store into the entry, which the hit writes anyway to
//! move it to the front). A cache's recency list is therefore in clock
//! order, and the least recently used entry of the process is the tail of
//! the cache whose tail is oldest. When a store takes the process over its
//! bound, tails go in that order, from whichever caches hold them, until
//! the process is back under it (`reclaim`). Entries used between the same
//! two stores tie, and ties go in any order.
//!
//! What its entries free is reported to `memory`, which gives it back to
//! the system.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, LazyLock, Weak};

use parking_lot::Mutex;
use pyo3::Python;

use super::core::{Core, Entry};
use crate::memory;
use crate::settings::options::L1_MAX_BYTES;

static CLOCK: AtomicU64 = AtomicU64::new(1);

/// The clock's value, for an entry being hit.
#[inline]
pub(super) fn clock_now() -> u64 {
    CLOCK.load(Relaxed)
}

/// The clock advanced by one store.
#[inline]
pub(super) fn clock_tick() -> u64 {
    CLOCK.fetch_add(1, Relaxed) + 1
}

/// One byte bound shared by a set of LRUs (in the extension, all of them:
/// `process_budget`).
pub struct MemoryBudget {
    max_bytes: AtomicUsize,
    /// The sum of the members' bytes: each member adds and subtracts under
    /// its own lock exactly what its own count gains and loses.
    held: AtomicUsize,
    /// Entries evicted because the process was over its bound.
    byte_evictions: AtomicU64,
    /// Values larger than a bound, not kept.
    too_large: AtomicU64,
    members: Mutex<Vec<Weak<Mutex<Core>>>>,
}

/// The budget's figures, as `l1_memory()` shows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BudgetFigures {
    pub bytes: usize,
    pub max_bytes: usize,
    pub byte_evictions: u64,
    pub too_large: u64,
    pub caches: usize,
}

static PROCESS: LazyLock<Arc<MemoryBudget>> =
    LazyLock::new(|| Arc::new(MemoryBudget::new(L1_MAX_BYTES as usize)));

/// The budget every LRU of the extension draws on.
pub fn process_budget() -> &'static Arc<MemoryBudget> {
    &PROCESS
}

impl MemoryBudget {
    pub fn new(max_bytes: usize) -> MemoryBudget {
        MemoryBudget {
            max_bytes: AtomicUsize::new(max_bytes),
            held: AtomicUsize::new(0),
            byte_evictions: AtomicU64::new(0),
            too_large: AtomicU64::new(0),
            members: Mutex::new(Vec::new()),
        }
    }

    pub fn max_bytes(&self) -> usize {
        self.max_bytes.load(Relaxed)
    }

    pub fn held(&self) -> usize {
        self.held.load(Relaxed)
    }

    /// A new bound; entries beyond it go at once, least recently used
    /// first (dropped by the caller, outside every lock, who then calls
    /// `return_freed_memory`).
    pub fn set_max_bytes(&self, max_bytes: usize) -> Vec<Entry> {
        self.max_bytes.store(max_bytes, Relaxed);
        let mut garbage = Vec::new();
        self.reclaim(&mut garbage);
        garbage
    }

    pub fn figures(&self) -> BudgetFigures {
        let mut members = self.members.lock();
        members.retain(|member| member.strong_count() > 0);
        BudgetFigures {
            bytes: self.held(),
            max_bytes: self.max_bytes(),
            byte_evictions: self.byte_evictions.load(Relaxed),
            too_large: self.too_large.load(Relaxed),
            caches: members.len(),
        }
    }

    pub(super) fn join(&self, core: &Arc<Mutex<Core>>) {
        let mut members = self.members.lock();
        members.retain(|member| member.strong_count() > 0);
        members.push(Arc::downgrade(core));
    }

    pub(super) fn add(&self, bytes: usize) {
        self.held.fetch_add(bytes, Relaxed);
    }

    pub(super) fn sub(&self, bytes: usize) {
        self.held.fetch_sub(bytes, Relaxed);
        memory::note_freed(bytes);
    }

    /// Gives freed memory back to the system when due (see `memory`);
    /// called once the entries that left were dropped.
    pub(super) fn return_freed_memory(&self, py: Python<'_>) {
        if memory::trim_due() {
            py.detach(memory::trim);
        }
    }

    pub(super) fn count_too_large(&self) {
        self.too_large.fetch_add(1, Relaxed);
    }

    pub(super) fn is_over(&self) -> bool {
        self.held() > self.max_bytes()
    }

    /// Evicts the process's least recently used entries until it is
    /// within its bound. Takes one member's lock at a time, never while
    /// holding another, and never runs Python code: the evicted entries
    /// land in `garbage`, for the caller to drop after.
    pub(super) fn reclaim(&self, garbage: &mut Vec<Entry>) {
        while self.is_over() {
            let Some((oldest, runner_up)) = self.oldest_tail() else {
                return;
            };
            let mut core = oldest.lock();
            // The oldest cache's tails go while they are older than every
            // other cache's: one scan for a run of evictions.
            while self.is_over() && core.tail_used().is_some_and(|used| used <= runner_up) {
                garbage.push(core.evict_tail_for_bytes());
                self.byte_evictions.fetch_add(1, Relaxed);
            }
        }
    }

    /// The member whose least recently used entry is the oldest, and the
    /// age of the next oldest member's (`u64::MAX` when it is alone).
    fn oldest_tail(&self) -> Option<(Arc<Mutex<Core>>, u64)> {
        let members: Vec<Arc<Mutex<Core>>> = {
            let mut members = self.members.lock();
            members.retain(|member| member.strong_count() > 0);
            members.iter().filter_map(Weak::upgrade).collect()
        };
        let mut oldest: Option<(Arc<Mutex<Core>>, u64)> = None;
        let mut runner_up = u64::MAX;
        for core in members {
            let Some(used) = core.lock().tail_used() else {
                continue;
            };
            match &oldest {
                Some((_, known)) if used >= *known => runner_up = runner_up.min(used),
                _ => {
                    if let Some((_, known)) = oldest.replace((core, used)) {
                        runner_up = runner_up.min(known);
                    }
                }
            }
        }
        oldest.map(|(core, _)| (core, runner_up))
    }
}
