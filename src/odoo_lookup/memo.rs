//! What one `OdooLookup` call leaves for the next (`Memo`): the model
//! class's facts, the environment's transaction cache and the epoch of the
//! transaction's set of lookups, each recalled by identity.

use std::sync::atomic::{AtomicU64, Ordering};

use pyo3::prelude::*;
use pyo3::types::{PyDict, PySet, PyWeakrefMethods, PyWeakrefReference};

use super::member_slot::MemberSlot;

/// Epochs are unique in the process: two memos never give one number to
/// two sets, so an entry marked under one epoch is in exactly that set.
static NEXT_EPOCH: AtomicU64 = AtomicU64::new(1);

/// What one call leaves for the next: each is checked by identity against
/// what the call itself has in hand, so a stale entry is only a miss here.
#[derive(Default)]
pub(super) struct Memo {
    /// The model class last seen, with what Odoo reads from it on every
    /// call: found once per class (a registry's classes live as long as
    /// the registry, and Odoo only ever adds entries to the counters). The
    /// class is held, so its address cannot be reused meanwhile.
    pub(super) class: Option<ModelClass>,
    /// Odoo 19: the environment last seen, held weakly, and its cursor's
    /// cache (an environment's cursor, and a cursor's cache dictionary,
    /// are never replaced).
    pub(super) transaction: Option<(Py<PyWeakrefReference>, Py<PyDict>)>,
    /// Odoo 19: the transaction's `_ormcache_lookups` set last seen, held
    /// weakly (it is dropped with the transaction, and can be big), the
    /// epoch it was given and its size then: while it lives and does not
    /// shrink, an L1 entry marked with that epoch has its key in the set
    /// (Odoo only ever adds to it; whoever empties it makes it smaller).
    pub(super) lookups: Option<WatchedSet>,
}

pub(super) struct WatchedSet {
    set: Py<PyWeakrefReference>,
    epoch: u64,
    size: usize,
}

pub(super) struct ModelClass {
    pub(super) class: Py<PyAny>,
    pub(super) name: Py<PyAny>,
    pub(super) caches: Py<PyAny>,
    pub(super) counter: Py<PyAny>,
    /// Odoo 19: the model's `env` slot (`BaseModel.__slots__`), read
    /// without an attribute lookup.
    pub(super) env: Option<MemberSlot>,
}

/// What `call` needs from the model class: `_name`, the registry's
/// mappings (`pool._Registry__caches`, bound once by `Registry.init`; a
/// registry rebuilt is a new `pool`, with new classes), the counter.
pub(super) struct ModelFacts<'py> {
    pub(super) name: Bound<'py, PyAny>,
    pub(super) caches: Bound<'py, PyAny>,
    pub(super) counter: Bound<'py, PyAny>,
}

/// What the memo held for one call.
#[derive(Default)]
pub(super) struct Recalled<'py> {
    pub(super) facts: Option<ModelFacts<'py>>,
    /// The record's `env`, when its class's slot is known.
    pub(super) env: Option<Bound<'py, PyAny>>,
    pub(super) transaction: Option<Bound<'py, PyDict>>,
}

impl Memo {
    /// Everything that still holds for a call on `model`, read in one pass
    /// (no Python code runs: identity checks, a slot, a weak reference).
    /// `with_env`: the record's environment is wanted (Odoo 19).
    pub(super) fn recall<'py>(&self, model: &Bound<'py, PyAny>, with_env: bool) -> Recalled<'py> {
        let py = model.py();
        let class = model.get_type();
        let Some(known) = self.class.as_ref().filter(|known| known.class.is(&class)) else {
            return Recalled::default();
        };
        let facts = ModelFacts {
            name: known.name.bind(py).clone(),
            caches: known.caches.bind(py).clone(),
            counter: known.counter.bind(py).clone(),
        };
        let env = match (with_env, &known.env) {
            (true, Some(slot)) => slot.get(model).ok(),
            _ => None,
        };
        let transaction = env.as_ref().and_then(|env| {
            self.transaction
                .as_ref()
                .filter(|(known, _)| known.bind(py).upgrade().is_some_and(|known| known.is(env)))
                .map(|(_, cache)| cache.bind(py).clone())
        });
        Recalled {
            facts: Some(facts),
            env,
            transaction,
        }
    }

    /// The epoch of `lookups`: the memo's while it is the same live set and
    /// no smaller, a new one otherwise (0 when the set cannot be watched:
    /// no marks).
    pub(super) fn epoch_of(&mut self, lookups: &Bound<'_, PyAny>) -> u64 {
        let py = lookups.py();
        let Ok(size) = lookups.cast::<PySet>().map(|set| set.len()) else {
            self.lookups = None;
            return 0;
        };
        if let Some(known) = &mut self.lookups {
            let same = known
                .set
                .bind(py)
                .upgrade()
                .is_some_and(|set| set.is(lookups));
            if same && size >= known.size {
                known.size = size;
                return known.epoch;
            }
        }
        let Ok(watched) = PyWeakrefReference::new(lookups) else {
            self.lookups = None;
            return 0;
        };
        let epoch = NEXT_EPOCH.fetch_add(1, Ordering::Relaxed);
        self.lookups = Some(WatchedSet {
            set: watched.unbind(),
            epoch,
            size,
        });
        epoch
    }
}
