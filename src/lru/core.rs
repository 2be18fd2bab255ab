//! The LRU structure: a slab of nodes chained in recency order and a hash
//! index by Python hash. Every operation is O(1). It never calls into
//! Python (increfs only): the locking rules live in `locked`. Its byte
//! count is mirrored, change for change, in the budget it draws on.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::{PyTraverseError, PyVisit};
use smallvec::SmallVec;

use super::budget::{clock_now, clock_tick, MemoryBudget};
use super::equality::{equal_without_python, tuple_equals_items};
use crate::clock::now_ns;

const NIL: u32 = u32::MAX;

/// Python hashes of small ints are the ints themselves: spread them over the
/// table's control bits.
#[derive(Default)]
struct PyHashMixer(u64);

impl Hasher for PyHashMixer {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_isize(&mut self, i: isize) {
        let h = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = h ^ (h >> 29);
    }
}

type Index = HashMap<isize, Bucket, BuildHasherDefault<PyHashMixer>>;

/// Slots whose keys share one Python hash; almost always exactly one.
enum Bucket {
    One(u32),
    Many(Vec<u32>),
}

impl Bucket {
    fn slots(&self) -> &[u32] {
        match self {
            Bucket::One(slot) => std::slice::from_ref(slot),
            Bucket::Many(slots) => slots,
        }
    }
}

pub struct Entry {
    pub key: Py<PyAny>,
    pub value: Py<PyAny>,
    /// A counter owned by the caller (e.g. per-method L1 hits), bumped on
    /// every hit of this entry without any lookup of its own.
    pub(super) hit_counter: Option<Arc<AtomicU64>>,
    hash: isize,
    size: usize,
    pub(super) expires_at: u64,
    pub(super) stamp: u64,
    /// The last lookup epoch this key was recorded in (see
    /// `Lru::hit_by_items`); 0: none.
    pub(super) seen_in: u64,
    /// The process clock when last stored or hit (see `budget`).
    used: u64,
    /// The key's frozensets hold plain scalars only (`sets_are_plain`).
    plain_sets: bool,
}

pub(super) struct Node {
    entry: Option<Entry>,
    prev: u32,
    next: u32,
}

/// What an entry costs besides its key and value: its slot in the slab and
/// its place in the hash index (key, bucket, control byte).
pub const ENTRY_OVERHEAD: usize =
    std::mem::size_of::<Node>() + std::mem::size_of::<(isize, Bucket)>() + 1;

/// Counters of one LRU, read by `stats()`.
#[derive(Default, Clone, Copy)]
pub struct LruCounters {
    pub hits: u64,
    pub misses: u64,
    pub sets: u64,
    /// Every eviction, for the entry bound or a byte bound.
    pub evictions: u64,
    /// Those for a byte bound: the LRU's own or the process's.
    pub byte_evictions: u64,
    /// Values larger than a byte bound, not kept.
    pub too_large: u64,
    pub expirations: u64,
}

/// The LRU structure itself. Only touched under `Lru::core`'s mutex, and it
/// never calls into Python (increfs only).
pub struct Core {
    nodes: Vec<Node>,
    free: Vec<u32>,
    index: Index,
    /// Most recently used.
    head: u32,
    /// Least recently used: evicted first.
    tail: u32,
    pub(super) len: usize,
    pub(super) bytes: usize,
    next_stamp: u64,
    pub counters: LruCounters,
    budget: Arc<MemoryBudget>,
}

impl Drop for Core {
    fn drop(&mut self) {
        self.budget.sub(self.bytes);
    }
}

impl Core {
    pub(super) fn new(budget: Arc<MemoryBudget>) -> Self {
        Core {
            nodes: Vec::new(),
            free: Vec::new(),
            index: Index::default(),
            head: NIL,
            tail: NIL,
            len: 0,
            bytes: 0,
            next_stamp: 1,
            counters: LruCounters::default(),
            budget,
        }
    }

    /// Slots ever allocated (live or free).
    #[cfg(test)]
    pub(super) fn slab_len(&self) -> usize {
        self.nodes.len()
    }

    pub(super) fn entry(&self, slot: u32) -> &Entry {
        self.nodes[slot as usize]
            .entry
            .as_ref()
            .expect("index points at a live slot")
    }

    pub(super) fn entry_mut(&mut self, slot: u32) -> &mut Entry {
        self.nodes[slot as usize]
            .entry
            .as_mut()
            .expect("index points at a live slot")
    }

    /// The slot holding `key` when that is known without running Python
    /// code: `Known(None)` is a miss, `Unknown` needs Python's `__eq__`.
    /// `sets_plain`: the asked key's frozensets hold plain scalars only.
    pub(super) fn find_without_python(
        &self,
        hash: isize,
        key: &Bound<'_, PyAny>,
        sets_plain: bool,
    ) -> Lookup {
        let Some(bucket) = self.index.get(&hash) else {
            return Lookup::Known(None);
        };
        let py = key.py();
        let mut unknown = false;
        for &slot in bucket.slots() {
            let entry = self.entry(slot);
            match equal_without_python(entry.key.bind(py), key, sets_plain && entry.plain_sets) {
                Some(true) => return Lookup::Known(Some(slot)),
                Some(false) => {}
                None => unknown = true,
            }
        }
        match unknown {
            true => Lookup::Unknown,
            false => Lookup::Known(None),
        }
    }

    /// The slot whose key is the tuple of `items` (see `find_without_python`).
    ///
    /// # Safety
    /// Every item is a live object and the GIL is held.
    pub(super) unsafe fn find_items_without_python(
        &self,
        hash: isize,
        items: &[*mut ffi::PyObject],
        sets_plain: bool,
    ) -> Lookup {
        let Some(bucket) = self.index.get(&hash) else {
            return Lookup::Known(None);
        };
        let mut unknown = false;
        for &slot in bucket.slots() {
            let entry = self.entry(slot);
            match tuple_equals_items(entry.key.as_ptr(), items, sets_plain && entry.plain_sets) {
                Some(true) => return Lookup::Known(Some(slot)),
                Some(false) => {}
                None => unknown = true,
            }
        }
        match unknown {
            true => Lookup::Unknown,
            false => Lookup::Known(None),
        }
    }

    pub(super) fn candidates(&self, py: Python<'_>, hash: isize) -> Candidates {
        match self.index.get(&hash) {
            None => Candidates::new(),
            Some(bucket) => bucket
                .slots()
                .iter()
                .map(|&slot| {
                    let entry = self.entry(slot);
                    (slot, entry.stamp, entry.key.clone_ref(py))
                })
                .collect(),
        }
    }

    pub(super) fn stamp_of(&self, slot: u32) -> Option<u64> {
        self.nodes
            .get(slot as usize)
            .and_then(|node| node.entry.as_ref())
            .map(|entry| entry.stamp)
    }

    fn unlink(&mut self, slot: u32) {
        let (prev, next) = {
            let node = &self.nodes[slot as usize];
            (node.prev, node.next)
        };
        if prev == NIL {
            self.head = next;
        } else {
            self.nodes[prev as usize].next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.nodes[next as usize].prev = prev;
        }
    }

    fn link_front(&mut self, slot: u32) {
        let old_head = self.head;
        {
            let node = &mut self.nodes[slot as usize];
            node.prev = NIL;
            node.next = old_head;
        }
        if old_head == NIL {
            self.tail = slot;
        } else {
            self.nodes[old_head as usize].prev = slot;
        }
        self.head = slot;
    }

    pub(super) fn touch(&mut self, slot: u32) {
        if let Some(entry) = &mut self.nodes[slot as usize].entry {
            entry.used = clock_now();
        }
        if self.head != slot {
            self.unlink(slot);
            self.link_front(slot);
        }
    }

    pub(super) fn is_expired(&self, slot: u32) -> bool {
        let expires_at = self.entry(slot).expires_at;
        expires_at != 0 && now_ns() >= expires_at
    }

    /// Removes a slot and hands back its entry, to be dropped after unlocking.
    pub(super) fn remove(&mut self, slot: u32) -> Entry {
        self.unlink(slot);
        let entry = self.nodes[slot as usize]
            .entry
            .take()
            .expect("removing a live slot");
        self.free.push(slot);
        self.len -= 1;
        self.bytes -= entry.size;
        self.budget.sub(entry.size);
        let emptied = match self.index.get_mut(&entry.hash) {
            Some(Bucket::One(_)) => true,
            Some(Bucket::Many(slots)) => {
                slots.retain(|&s| s != slot);
                if slots.len() == 1 {
                    let only = slots[0];
                    self.index.insert(entry.hash, Bucket::One(only));
                }
                false
            }
            None => false,
        };
        if emptied {
            self.index.remove(&entry.hash);
        }
        entry
    }

    /// `plain_sets`: see `Entry::plain_sets`.
    pub(super) fn insert(
        &mut self,
        key: Py<PyAny>,
        hash: isize,
        value: Py<PyAny>,
        stored: Stored,
        plain_sets: bool,
    ) {
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        let Stored {
            size,
            expires_at,
            hit_counter,
        } = stored;
        let entry = Entry {
            key,
            value,
            hit_counter,
            hash,
            size,
            expires_at,
            stamp,
            seen_in: 0,
            used: clock_tick(),
            plain_sets,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.nodes[slot as usize].entry = Some(entry);
                slot
            }
            None => {
                self.nodes.push(Node {
                    entry: Some(entry),
                    prev: NIL,
                    next: NIL,
                });
                (self.nodes.len() - 1) as u32
            }
        };
        self.link_front(slot);
        self.len += 1;
        self.bytes += size;
        self.budget.add(size);
        match self.index.get_mut(&hash) {
            None => {
                self.index.insert(hash, Bucket::One(slot));
            }
            Some(Bucket::Many(slots)) => slots.push(slot),
            Some(bucket @ Bucket::One(_)) => {
                let first = bucket.slots()[0];
                *bucket = Bucket::Many(vec![first, slot]);
            }
        }
    }

    pub(super) fn replace(&mut self, slot: u32, value: Py<PyAny>, stored: Stored) -> Py<PyAny> {
        let entry = self.nodes[slot as usize]
            .entry
            .as_mut()
            .expect("replacing a live slot");
        self.bytes = self.bytes - entry.size + stored.size;
        self.budget.sub(entry.size);
        self.budget.add(stored.size);
        entry.size = stored.size;
        entry.expires_at = stored.expires_at;
        entry.hit_counter = stored.hit_counter;
        let old = std::mem::replace(&mut entry.value, value);
        // A store advances the process clock; the touch stamps the entry.
        clock_tick();
        self.touch(slot);
        old
    }

    /// Evicts beyond the LRU's own bounds (the process's: `budget`).
    pub(super) fn evict_over(
        &mut self,
        max_entries: usize,
        max_bytes: usize,
        garbage: &mut Vec<Entry>,
    ) {
        while self.len > max_entries {
            let victim = self.tail;
            garbage.push(self.remove(victim));
            self.counters.evictions += 1;
        }
        while max_bytes > 0 && self.bytes > max_bytes {
            garbage.push(self.evict_tail_for_bytes());
        }
    }

    /// The least recently used entry's clock, None when empty.
    pub(super) fn tail_used(&self) -> Option<u64> {
        (self.tail != NIL).then(|| self.entry(self.tail).used)
    }

    /// Evicts the least recently used entry (there is one) for a byte bound.
    pub(super) fn evict_tail_for_bytes(&mut self) -> Entry {
        self.counters.evictions += 1;
        self.counters.byte_evictions += 1;
        self.remove(self.tail)
    }

    pub(super) fn take_all(&mut self) -> Vec<Node> {
        self.index.clear();
        self.free.clear();
        self.head = NIL;
        self.tail = NIL;
        self.len = 0;
        self.budget.sub(self.bytes);
        self.bytes = 0;
        std::mem::take(&mut self.nodes)
    }

    /// Reports every key and value to the garbage collector.
    pub(super) fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        for entry in self.nodes.iter().filter_map(|node| node.entry.as_ref()) {
            visit.call(&entry.key)?;
            visit.call(&entry.value)?;
        }
        Ok(())
    }

    /// Live slots from least to most recently used (Odoo 19's snapshot order).
    pub(super) fn slots_lru_first(&self) -> Vec<u32> {
        let mut out = Vec::with_capacity(self.len);
        let mut slot = self.tail;
        while slot != NIL {
            out.push(slot);
            slot = self.nodes[slot as usize].prev;
        }
        out
    }
}

/// Keys sharing a probe's hash, copied out of the lock; almost always one.
type Candidates = SmallVec<[(u32, u64, Py<PyAny>); 2]>;

/// What the lock alone can tell of a key.
pub(super) enum Lookup {
    Known(Option<u32>),
    Unknown,
}

/// How a value is stored: its size for the byte bound, its deadline (0:
/// the LRU's default TTL) and an optional external hit counter.
#[derive(Default)]
pub struct Stored {
    pub size: usize,
    pub expires_at: u64,
    pub hit_counter: Option<Arc<AtomicU64>>,
}
