//! Odoo's statistics counter with its hit counts held natively.
//!
//! Odoo counts every hit in its `ormcache_counter` (`counter.hit += 1`, and
//! on 19 `tx_hit` on a key's first lookup in a transaction). Those are
//! Python ints in `__slots__`: each hit reads one, allocates the next and
//! frees the old, about 350 instructions of a native hit's 1,900. The
//! addon fills Odoo's counters mapping, for the methods it serves, with a
//! Python subclass of `HitCounter` that takes everything else from Odoo's
//! class (its other slots, `__init__` and properties: `hit_counters.py`):
//! Odoo's code and statistics read and write `hit` and `tx_hit` as before,
//! and a hit adds to a native integer.

use std::sync::atomic::{AtomicU64, Ordering};

use pyo3::prelude::*;

use super::counters::CounterField;

#[pyclass(
    module = "ormcache_redis._native",
    name = "HitCounter",
    frozen,
    subclass
)]
#[derive(Default)]
pub struct HitCounter {
    hit: AtomicU64,
    tx_hit: AtomicU64,
}

impl HitCounter {
    fn field(&self, field: CounterField) -> &AtomicU64 {
        match field {
            CounterField::Hit => &self.hit,
            CounterField::TransactionHit => &self.tx_hit,
        }
    }

    /// Adds one. Every caller holds the GIL, which serialises them: a load
    /// and a store, not a locked add.
    pub(super) fn add_one(&self, field: CounterField) {
        let count = self.field(field);
        count.store(
            count.load(Ordering::Relaxed).saturating_add(1),
            Ordering::Relaxed,
        );
    }
}

#[pymethods]
impl HitCounter {
    /// Odoo creates its counters without arguments; the subclass's
    /// `__init__` (Odoo's) sets the starting values.
    #[new]
    fn py_new() -> Self {
        HitCounter::default()
    }

    #[getter]
    fn get_hit(&self) -> u64 {
        self.hit.load(Ordering::Relaxed)
    }

    #[setter]
    fn set_hit(&self, value: u64) {
        self.hit.store(value, Ordering::Relaxed);
    }

    #[getter]
    fn get_tx_hit(&self) -> u64 {
        self.tx_hit.load(Ordering::Relaxed)
    }

    #[setter]
    fn set_tx_hit(&self, value: u64) {
        self.tx_hit.store(value, Ordering::Relaxed);
    }
}
