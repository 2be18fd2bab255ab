//! What one `OdooLookup` call leaves for the next (`Memo`): the model
//! class's facts, the environment's transaction cache, the last key with its
//! hash, and the transaction set it was found in, each recalled by identity.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple, PyType, PyWeakrefMethods, PyWeakrefReference};

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
    /// The last key built, when its items are plain values (see
    /// `is_plain_value`): a call whose items are the identical objects
    /// reuses it, and skips building, hashing and comparing a fresh tuple,
    /// here and in the transaction's set.
    pub(super) key: Option<LastKey>,
    /// Odoo 19: the key last looked up in a transaction's
    /// `_ormcache_lookups`, that set and its size afterwards.
    pub(super) seen: Option<SeenKey>,
}

pub(super) struct SeenKey {
    /// Weakly: a transaction's set is dropped when it ends, and can be big.
    pub(super) lookups: Py<PyWeakrefReference>,
    pub(super) key: Py<PyTuple>,
    pub(super) size: usize,
}

pub(super) struct LastKey {
    pub(super) key: Py<PyTuple>,
    pub(super) hash: isize,
}

pub(super) struct ModelClass {
    pub(super) class: Py<PyAny>,
    pub(super) name: Py<PyAny>,
    pub(super) caches: Py<PyAny>,
    pub(super) counter: Py<PyAny>,
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
    pub(super) transaction: Option<Bound<'py, PyDict>>,
    pub(super) key: Option<(Bound<'py, PyTuple>, isize)>,
    /// The set `key` is known to be in, and its size then.
    pub(super) seen: Option<(Bound<'py, PyAny>, usize)>,
}

impl Memo {
    /// Everything that still holds for this call, read in one pass (no
    /// Python code runs: identity checks and a weak reference).
    pub(super) fn recall<'py>(
        &self,
        class: &Bound<'py, PyType>,
        env: Option<&Bound<'py, PyAny>>,
        method: &Bound<'py, PyAny>,
        values: &[Bound<'py, PyAny>],
    ) -> Recalled<'py> {
        let py = class.py();
        let facts = self
            .class
            .as_ref()
            .filter(|known| known.class.is(class))
            .map(|known| ModelFacts {
                name: known.name.bind(py).clone(),
                caches: known.caches.bind(py).clone(),
                counter: known.counter.bind(py).clone(),
            });
        let transaction = env.and_then(|env| {
            self.transaction
                .as_ref()
                .filter(|(known, _)| known.bind(py).upgrade().is_some_and(|known| known.is(env)))
                .map(|(_, cache)| cache.bind(py).clone())
        });
        let key = facts.as_ref().and_then(|facts| {
            let last = self.key.as_ref()?;
            let key = last.key.bind(py);
            let expected = [&facts.name, method].into_iter().chain(values);
            let same = key.len() == 2 + values.len()
                && expected.enumerate().all(|(index, item)| {
                    key.get_borrowed_item(index)
                        .is_ok_and(|known| known.is(item))
                });
            same.then(|| (key.clone(), last.hash))
        });
        let seen = key.as_ref().and_then(|(key, _)| {
            let seen = self.seen.as_ref()?;
            if !seen.key.is(key) {
                return None;
            }
            Some((seen.lookups.bind(py).upgrade()?, seen.size))
        });
        Recalled {
            facts,
            transaction,
            key,
            seen,
        }
    }
}
