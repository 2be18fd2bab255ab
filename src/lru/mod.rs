//! The local tier (L1): a thread-safe LRU keyed by Python objects.
//!
//! Keys follow Python's own hash/equality (`1 == 1.0 == True` are one key,
//! unhashable keys raise `TypeError`), bounded by entry count and by bytes:
//! every LRU of the process draws on one byte budget, and may have a byte
//! bound of its own; optional per-entry TTL. Every operation is O(1): a
//! hash index over a slab of nodes chained in recency order.
//!
//! `core`: the slab, recency list and hash index; `locked`: the locking
//! rule around them (never Python's `__eq__` under the lock); `equality`:
//! the comparisons that run no Python code, decided under the lock;
//! `budget`: the process's byte bound over every LRU; `held`: the bytes an
//! entry counts for; `python`: the `LRU` class and Odoo's protocol.

mod budget;
mod core;
mod equality;
mod held;
mod locked;
mod python;

pub use self::core::Stored;
pub use budget::{process_budget, BudgetFigures, MemoryBudget};
pub use locked::{Bounds, ItemsHit, Lru, Place, Probe};
pub use python::{lru_stats_dict, register, PyLru, L1_LOOKUP_LABELS};
