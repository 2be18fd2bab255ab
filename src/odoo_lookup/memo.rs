//! What one `OdooLookup` call leaves for the next (`Memo`): the model
//! class's facts, the environment's transaction cache and the epoch of the
//! transaction's set of lookups, each recalled by identity.

use std::sync::atomic::{AtomicU64, Ordering};

use pyo3::prelude::*;
use pyo3::types::{PyDict, PySet, PyWeakrefMethods, PyWeakrefReference};
use pyo3::{PyTraverseError, PyVisit};

use crate::lru::Place;
use crate::member_slot::MemberSlot;
use crate::weak_ref::refers_to;

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
    /// class is held weakly: this lookup is installed on the classes that
    /// define the method, which outlive a registry, and must not keep the
    /// registry's classes (and through them the registry) alive.
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
    /// The last hit found from a key's items, and where: a call with the
    /// same model name, mapping and key values (the same objects) asks for
    /// the same key, and finds it at that place while it is stored there.
    pub(super) last_hit: Option<LastHit>,
}

/// Key values a `LastHit` can remember: a key with more is not remembered.
const REMEMBERED_VALUES: usize = 4;

pub(super) struct LastHit {
    /// The model name, the mapping and the key's values, in that order
    /// (a fixed array: this is written on every hit found by items).
    objects: [Option<Py<PyAny>>; 2 + REMEMBERED_VALUES],
    place: Place,
}

impl LastHit {
    /// None when the key has more values than are remembered.
    pub(super) fn new(
        name: &Bound<'_, PyAny>,
        cache: &Bound<'_, PyAny>,
        values: &[Bound<'_, PyAny>],
        place: Place,
    ) -> Option<Self> {
        if values.len() > REMEMBERED_VALUES {
            return None;
        }
        let mut objects: [Option<Py<PyAny>>; 2 + REMEMBERED_VALUES] = Default::default();
        for (object, held) in [name, cache].into_iter().chain(values).zip(&mut objects) {
            *held = Some(object.clone().unbind());
        }
        Some(LastHit { objects, place })
    }

    /// Whether a call with these objects asks for the remembered key.
    fn is_for(
        &self,
        name: &Bound<'_, PyAny>,
        cache: &Bound<'_, PyAny>,
        values: &[Bound<'_, PyAny>],
    ) -> bool {
        if values.len() > REMEMBERED_VALUES
            || self.objects[2 + values.len()..].iter().any(Option::is_some)
        {
            return false;
        }
        [name, cache]
            .into_iter()
            .chain(values)
            .zip(&self.objects)
            .all(|(object, held)| held.as_ref().is_some_and(|held| held.is(object)))
    }

    /// Drops the references with the GIL in hand (a `Py` dropped alone
    /// first asks whether the GIL is held).
    pub(super) fn release(self, py: Python<'_>) {
        for object in self.objects.into_iter().flatten() {
            drop(object.into_bound(py));
        }
    }
}

pub(super) struct WatchedSet {
    set: Py<PyWeakrefReference>,
    epoch: u64,
    size: usize,
}

pub(super) struct ModelClass {
    pub(super) class: Py<PyWeakrefReference>,
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
    /// Reports the objects held to the garbage collector: the model class
    /// (and its mapping, counter and last key) hold, through the class's
    /// method, this memo.
    pub(super) fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(class) = &self.class {
            visit.call(&class.class)?;
            visit.call(&class.name)?;
            visit.call(&class.caches)?;
            visit.call(&class.counter)?;
            if let Some(env) = &class.env {
                env.traverse(visit)?;
            }
        }
        if let Some((environment, cache)) = &self.transaction {
            visit.call(environment)?;
            visit.call(cache)?;
        }
        if let Some(lookups) = &self.lookups {
            visit.call(&lookups.set)?;
        }
        if let Some(last) = &self.last_hit {
            for object in &last.objects {
                visit.call(object)?;
            }
        }
        Ok(())
    }

    /// Everything that still holds for a call on `model`, read in one pass
    /// (no Python code runs: identity checks, a slot, a weak reference).
    /// `with_env`: the record's environment is wanted (Odoo 19).
    pub(super) fn recall<'py>(&self, model: &Bound<'py, PyAny>, with_env: bool) -> Recalled<'py> {
        let py = model.py();
        let class = model.get_type();
        let Some(known) = self
            .class
            .as_ref()
            .filter(|known| refers_to(&known.class, &class))
        else {
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
                .filter(|(known, _)| refers_to(known, env))
                .map(|(_, cache)| cache.bind(py).clone())
        });
        Recalled {
            facts: Some(facts),
            env,
            transaction,
        }
    }

    /// Lets go of the model class's facts and the last hit when the class
    /// is gone; hands them back, to be dropped once the memo is free.
    pub(super) fn forget_gone_class(
        &mut self,
        py: Python<'_>,
    ) -> (Option<ModelClass>, Option<LastHit>) {
        let Some(known) = &self.class else {
            return (None, None);
        };
        match known.class.bind(py).upgrade().is_none() {
            true => (self.class.take(), self.last_hit.take()),
            false => (None, None),
        }
    }

    /// Where the last hit was, if this call asks for the same key.
    pub(super) fn last_place(
        &self,
        name: &Bound<'_, PyAny>,
        cache: &Bound<'_, PyAny>,
        values: &[Bound<'_, PyAny>],
    ) -> Option<Place> {
        let last = self.last_hit.as_ref()?;
        last.is_for(name, cache, values).then_some(last.place)
    }

    /// The epoch of `lookups`: the memo's while it is the same live set and
    /// no smaller, a new one otherwise (0 when the set cannot be watched:
    /// no marks).
    pub(super) fn epoch_of(&mut self, lookups: &Bound<'_, PyAny>) -> u64 {
        let Ok(size) = lookups.cast::<PySet>().map(|set| set.len()) else {
            self.lookups = None;
            return 0;
        };
        if let Some(known) = &mut self.lookups {
            if refers_to(&known.set, lookups) && size >= known.size {
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
