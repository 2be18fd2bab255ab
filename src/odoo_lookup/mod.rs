//! Odoo's `@ormcache` hit path, without Odoo's Python frames.
//!
//! Odoo wraps each cached method in a function that calls
//! `ormcache.lookup`, which calls a key lambda. On 19 that is three Python
//! frames and a fresh `set()` per call before the mapping is asked; on 17.0
//! and 18.0 the wrapper comes from the `decorator` package, whose 5.x
//! (Odoo's pin for Python 3.11+) binds every call's arguments with
//! `inspect.Signature.bind` (several microseconds). `OdooLookup` replaces
//! that wrapper on the class (the addon installs it where every key
//! expression is a parameter or an attribute path from one) and does the
//! same work in one native call:
//!
//! - the key: `(self._name, method, *expressions)`, exactly the tuple Odoo
//!   builds, defaults of omitted parameters included;
//! - the counters Odoo reads: 19 `_COUNTERS[db_name, method]` (`hit`,
//!   `tx_hit`, `cache_name`) and `env.cr.cache['_ormcache_lookups']`;
//!   17.0/18.0 `STAT[db_name, model_name, method]` (`hit`);
//! - the lookup in `self.pool._Registry__caches[cache_name]` (the dict
//!   found once per model class, the mapping asked at each call).
//!
//! Which of these a version does is not decided here: the addon's record of
//! the running Odoo (`odoo_version.py`) gives the counters, how they are
//! keyed (`counters_by_model`), whether the transaction is counted
//! (`transaction_statistics`) and the code run on a miss (`miss`).
//!
//! A miss or an unhashable key goes to `miss` (Odoo's own code for them, in
//! Python); a call this path does not cover (keywords, too many arguments,
//! an omitted parameter without a default) goes to Odoo's wrapper itself.
//!
//! A hit builds no key tuple: the items' hashes are combined as the
//! interpreter combines a tuple's (`crate::key_hash`) and L1 compares the stored
//! keys' items with them; the tuple is built only on the way to a miss.
//! What one call finds is kept for the next (`Memo`, checked by identity):
//! the model class's facts (with its `env` slot, `crate::member_slot`), the
//! environment's transaction cache, an epoch for the transaction's set of
//! lookups, with which L1 marks the entries whose keys are in it, so that a
//! key found again in the same transaction does not ask the set, and where
//! the last hit was (`LastHit`), so that the same key asked again (the same
//! objects: `has_group` asks `_get_group_definitions()` and
//! `_get_group_ids()` at every call) is found there without hashing or
//! comparing it. `counters` adds to Odoo's counters, natively in the
//! counters this path creates (`hit_counter`); `key_parts` evaluates the
//! key expressions (`record.id` without the field's Python code,
//! `crate::record_id`), and `method_type` makes the class callable the way
//! a Python function is.
//! Odoo 19, `bench/odoo_hit_path.py`: a hit at a call site that changes
//! its argument, `env["ir.model.data"]._xmlid_lookup(x)` over 256 xmlids,
//! costs 0.41x vanilla's; `env.user.has_group(g)` over 4 groups 0.48x.

use std::ffi::CStr;
use std::sync::{Arc, OnceLock};

use pyo3::exceptions::{PyKeyError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyCFunction, PyDict, PySet, PyString, PyTuple, PyType, PyWeakrefReference};
use pyo3::{ffi, intern, PyTraverseError, PyVisit};
use smallvec::SmallVec;

use crate::cached_method::{find_in, l1_hit};
use crate::gil_cell::GilCell;
use crate::key_hash;
use crate::key_parts::{KeyPartSpec, KeyPlan};
use crate::lru::Probe;
use crate::member_slot::MemberSlot;
use crate::method_type::{
    bind_like_a_function, derive_method_type, Arguments, CalledInPlace, Layout,
};
use counters::{increment, CounterField};
use memo::{LastHit, Memo, ModelClass, ModelFacts};

mod counters;
mod hit_counter;
mod memo;

pub use hit_counter::HitCounter;

const LOOKUPS: &str = "_ormcache_lookups";

/// One `@ormcache` method, as the class attribute that replaces Odoo's
/// wrapper. It keeps a `__dict__`, so the wrapper's attributes
/// (`__cache__`, `__wrapped__`, `clear_cache`, Odoo's API markers) are
/// copied onto it and read as before.
/// Python sees the class `method_type` derives from this one.
#[pyclass(
    module = "ormcache_redis._native",
    name = "_OdooLookup",
    frozen,
    dict,
    weakref,
    subclass
)]
pub struct OdooLookup {
    /// Odoo's `ormcache` instance.
    ormcache: Py<PyAny>,
    /// Odoo's wrapper: calls this path does not cover go through it.
    wrapper: Py<PyAny>,
    method: Py<PyAny>,
    cache_name: Py<PyString>,
    /// The key expressions and the parameters' defaults.
    key_plan: KeyPlan,
    /// 19 `_COUNTERS` or 17.0/18.0 `STAT`.
    counters: Py<PyAny>,
    /// The class of the counters this path creates when the mapping has
    /// none yet for a method (a `HitCounter` subclass); None: the
    /// mapping's own default.
    counter_class: Option<Py<PyAny>>,
    /// The counters' key: `(db_name, model_name, method)` (17.0/18.0) or
    /// `(db_name, method)` (19).
    counters_by_model: bool,
    /// Odoo 19: the counters' `tx_*` statistics and the transaction's
    /// `_ormcache_lookups` set (an unhashable key then raises, as in 19).
    transaction_statistics: bool,
    /// `miss(ormcache, cache, key, counter, first_in_transaction, args, error)`:
    /// Odoo's miss and error paths, in Python.
    miss: Py<PyAny>,
    /// What earlier calls found.
    /// Shared with the weak references to the model classes it holds,
    /// whose callbacks clear it when a class goes (`forget_when_gone`).
    memo: Arc<GilCell<Memo>>,
}

impl OdooLookup {
    /// What Odoo reads from the model class, found in Python.
    fn find_model_facts<'py>(&self, model: &Bound<'py, PyAny>) -> PyResult<ModelFacts<'py>> {
        let py = model.py();
        let name = model.getattr(intern!(py, "_name"))?;
        let pool = model.getattr(intern!(py, "pool"))?;
        let db_name = pool.getattr(intern!(py, "db_name"))?;
        let caches = pool.getattr(intern!(py, "_Registry__caches"))?;
        let method = self.method.bind(py);
        let key = match self.counters_by_model {
            true => PyTuple::new(py, [&db_name, &name, method])?,
            false => PyTuple::new(py, [&db_name, method])?,
        };
        let counter = self.counter(&key)?;
        let env = match self.transaction_statistics {
            true => MemberSlot::find(&model.get_type(), intern!(py, "env"))?,
            false => None,
        };
        let class = ModelClass {
            class: PyWeakrefReference::new_with(&model.get_type(), self.forget_when_gone(py)?)?
                .unbind(),
            name: name.clone().unbind(),
            caches: caches.clone().unbind(),
            counter: counter.clone().unbind(),
            env,
        };
        // The last hit was another class's (maybe another registry's).
        let replaced = self
            .memo
            .with(py, |memo| (memo.class.replace(class), memo.last_hit.take()));
        drop(replaced);
        Ok(ModelFacts {
            name,
            caches,
            counter,
        })
    }

    /// The counter of `key`: the one the mapping holds, else a new one of
    /// `counter_class`, added as the mapping's default would be.
    fn counter<'py>(&self, key: &Bound<'py, PyTuple>) -> PyResult<Bound<'py, PyAny>> {
        let py = key.py();
        let counters = self.counters.bind(py);
        let (Some(class), Ok(mapping)) = (&self.counter_class, counters.cast::<PyDict>()) else {
            return counters.get_item(key);
        };
        // A dict's own lookup: a defaultdict's default is not made here.
        if let Some(counter) = mapping.get_item(key)? {
            return Ok(counter);
        }
        let fresh = class.bind(py).call0()?;
        mapping.call_method1(intern!(py, "setdefault"), (key, fresh))
    }

    /// The callback of the weak reference to a model class: once the class
    /// is gone (its registry with it), the memo lets go of what it found
    /// from it (the registry's mappings, the last hit's), so that they go
    /// too instead of waiting for this method's next call.
    fn forget_when_gone<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyCFunction>> {
        let memo = Arc::downgrade(&self.memo);
        PyCFunction::new_closure(
            py,
            Some(c"forget_model_class"),
            None,
            move |args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>| {
                let py = args.py();
                if let Some(memo) = memo.upgrade() {
                    let forgotten = memo.with(py, |memo| memo.forget_gone_class(py));
                    drop(forgotten);
                }
            },
        )
    }

    /// `env.cr.cache`, found in Python (the memo had another environment).
    fn find_transaction_cache<'py>(&self, env: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyDict>> {
        let py = env.py();
        let cache = env
            .getattr(intern!(py, "cr"))?
            .getattr(intern!(py, "cache"))?
            .cast_into::<PyDict>()?;
        if let Ok(watched) = PyWeakrefReference::new(env) {
            let known = (watched.unbind(), cache.clone().unbind());
            self.memo.with(py, |memo| memo.transaction.replace(known));
        }
        Ok(cache)
    }

    /// Odoo 19: the transaction's `_ormcache_lookups` set, as Odoo's
    /// `lookup` gets it (`setdefault`), and its epoch (see `Memo::epoch_of`).
    fn transaction_lookups<'py>(
        &self,
        transaction: &Bound<'py, PyDict>,
    ) -> PyResult<(Bound<'py, PyAny>, u64)> {
        let py = transaction.py();
        let lookups = match transaction.get_item(intern!(py, LOOKUPS))? {
            Some(lookups) => lookups,
            None => {
                transaction.call_method1(intern!(py, "setdefault"), (LOOKUPS, PySet::empty(py)?))?
            }
        };
        let epoch = self
            .memo
            .with(py, |memo| memo.epoch_of(&lookups))
            .unwrap_or(0);
        Ok((lookups, epoch))
    }

    /// Odoo 19: records `key` as looked up in the transaction; whether it
    /// is its first lookup there (Odoo's `tx_first_lookup`).
    fn first_in_transaction(
        &self,
        lookups: &Bound<'_, PyAny>,
        key: &Bound<'_, PyAny>,
        counter: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        let py = key.py();
        let first = !lookups.contains(key)?;
        if first {
            counter.setattr(intern!(py, "cache_name"), self.cache_name.bind(py))?;
            lookups.call_method1(intern!(py, "add"), (key,))?;
        }
        Ok(first)
    }

    /// A hit found from the key's items, without building the key tuple:
    /// where the same key was found last (`Memo::last_hit`), else the
    /// items' hashes combined as the interpreter combines a tuple's,
    /// compared in L1 with the stored keys' items. The transaction's set
    /// is asked about the stored key (equal to the tuple), and not at all
    /// when this entry was already found under the set's epoch. `None`: no
    /// hit known this way (absent, expired, an item unhashable or not
    /// plain); the caller builds the tuple and takes Odoo's order, which
    /// decides and counts.
    fn hit_without_key(
        &self,
        facts: &ModelFacts<'_>,
        cache: &Bound<'_, PyAny>,
        values: &[Bound<'_, PyAny>],
        lookups: Option<&(Bound<'_, PyAny>, u64)>,
    ) -> PyResult<Option<Py<PyAny>>> {
        let py = facts.name.py();
        let marks = lookups.map(|(_, epoch)| *epoch);
        let place = self
            .memo
            .with(py, |memo| memo.last_place(&facts.name, cache, values))
            .flatten();
        // SAFETY: a place holds no object; the GIL is held.
        let again = place.and_then(|place| unsafe { l1_hit(cache, Probe::At(place), marks) });
        let hit = match again {
            Some(hit) => hit,
            None => {
                let mut items: SmallVec<[*mut ffi::PyObject; 6]> = SmallVec::new();
                items.extend([facts.name.as_ptr(), self.method.as_ptr()]);
                items.extend(values.iter().map(|value| value.as_ptr()));
                // SAFETY: the items are held by `facts`, `self` and
                // `values`; the GIL is held.
                let found = unsafe {
                    match key_hash::hash_of_items(py, &items) {
                        Some(hash) => l1_hit(cache, Probe::Items(&items, hash), marks),
                        None => None,
                    }
                };
                let Some(hit) = found else {
                    return Ok(None);
                };
                let last = LastHit::new(&facts.name, cache, values, hit.place);
                let replaced = self
                    .memo
                    .with(py, |memo| std::mem::replace(&mut memo.last_hit, last));
                if let Some(replaced) = replaced.flatten() {
                    replaced.release(py);
                }
                hit
            }
        };
        let first = match (lookups, hit.key) {
            (Some((lookups, _)), Some(key)) => {
                self.first_in_transaction(lookups, &key.into_bound(py), &facts.counter)?
            }
            _ => false,
        };
        increment(&facts.counter, CounterField::Hit)?;
        if first {
            increment(&facts.counter, CounterField::TransactionHit)?;
        }
        Ok(Some(hit.value))
    }

    /// One call with positional arguments only (`args[0]` is the record).
    fn call(&self, args: &Arguments<'_, '_>) -> PyResult<Py<PyAny>> {
        let py = args.py;
        if args.values.is_empty() || args.values.len() > self.key_plan.parameters() {
            return self.through_wrapper(&args.to_tuple()?, None);
        }
        let model = args.values[0].to_owned();
        // What runs Python code comes first, then one lock for the memo.
        let Some(values) = self.key_plan.values(args)? else {
            return self.through_wrapper(&args.to_tuple()?, None);
        };
        let recalled = self
            .memo
            .with(py, |memo| memo.recall(&model, self.transaction_statistics))
            .unwrap_or_default();
        let facts = match recalled.facts {
            Some(facts) => facts,
            None => self.find_model_facts(&model)?,
        };
        let env = match (self.transaction_statistics, recalled.env) {
            (true, Some(env)) => Some(env),
            (true, None) => Some(model.getattr(intern!(py, "env"))?),
            (false, _) => None,
        };
        let cache = facts.caches.get_item(self.cache_name.bind(py))?;
        let lookups = match (&env, recalled.transaction) {
            (Some(_), Some(transaction)) => Some(self.transaction_lookups(&transaction)?),
            (Some(env), None) => {
                Some(self.transaction_lookups(&self.find_transaction_cache(env)?)?)
            }
            (None, _) => None,
        };
        if let Some(value) = self.hit_without_key(&facts, &cache, &values, lookups.as_ref())? {
            return Ok(value);
        }
        let mut items: SmallVec<[Bound<'_, PyAny>; 6]> = SmallVec::new();
        items.extend([facts.name.clone(), self.method.bind(py).clone()]);
        items.extend(values);
        let key = PyTuple::new(py, items)?;
        let counter = facts.counter;
        // Odoo's order: 19 records the key in the transaction's set, which
        // raises for an unhashable key, then asks the mapping; 17.0/18.0
        // ask the mapping.
        let (first, found) = match (key.hash(), &lookups) {
            (Ok(hash), Some((lookups, _))) => {
                let first = self.first_in_transaction(lookups, key.as_any(), &counter)?;
                (first, find_in(&cache, key.as_any(), Some(hash)))
            }
            (Ok(hash), None) => (false, find_in(&cache, key.as_any(), Some(hash))),
            (Err(err), Some(_)) => return Err(err),
            (Err(err), None) => (false, Err(err)),
        };
        let error = match found {
            Ok(Some(value)) => {
                increment(&counter, CounterField::Hit)?;
                if first {
                    increment(&counter, CounterField::TransactionHit)?;
                }
                return Ok(value);
            }
            Ok(None) => PyKeyError::new_err(key.clone().unbind()),
            Err(err) if err.is_instance_of::<PyTypeError>(py) => err,
            Err(err) => return Err(err),
        };
        Ok(self
            .miss
            .bind(py)
            .call1((
                self.ormcache.bind(py),
                cache,
                key,
                counter,
                first,
                args.to_tuple()?,
                error.value(py),
            ))?
            .unbind())
    }

    fn through_wrapper(
        &self,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        Ok(self.wrapper.bind(args.py()).call(args, kwargs)?.unbind())
    }
}

impl CalledInPlace for OdooLookup {
    const QUALIFIED_NAME: &'static CStr = c"ormcache_redis._native.OdooLookup";

    fn layout() -> &'static OnceLock<Layout> {
        static LAYOUT: OnceLock<Layout> = OnceLock::new();
        &LAYOUT
    }

    /// A call as Python made it: keywords go through Odoo's wrapper.
    fn dispatch(
        &self,
        args: &Arguments<'_, '_>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        match kwargs {
            Some(kwargs) if !kwargs.is_empty() => {
                self.through_wrapper(&args.to_tuple()?, Some(kwargs))
            }
            _ => self.call(args),
        }
    }
}

#[pymethods]
impl OdooLookup {
    #[new]
    #[pyo3(signature = (
        wrapper, key_parts, defaults, counters, miss, *, counters_by_model, transaction_statistics,
        id_field = None, counter_class = None
    ))]
    // Python's constructor: the keywords are the version's rules.
    #[allow(clippy::too_many_arguments)]
    fn py_new(
        wrapper: &Bound<'_, PyAny>,
        key_parts: Vec<KeyPartSpec>,
        defaults: Vec<Option<Py<PyAny>>>,
        counters: Py<PyAny>,
        miss: Py<PyAny>,
        counters_by_model: bool,
        transaction_statistics: bool,
        id_field: Option<Py<PyType>>,
        counter_class: Option<Py<PyAny>>,
    ) -> PyResult<Self> {
        let py = wrapper.py();
        let key_plan = KeyPlan::new(py, key_parts, defaults)?;
        let key_plan = match id_field {
            Some(id_field) => key_plan.reading_ids_as(id_field),
            None => key_plan,
        };
        let ormcache = wrapper.getattr(intern!(py, "__cache__"))?;
        let cache_name: String = ormcache.getattr(intern!(py, "cache_name"))?.extract()?;
        Ok(OdooLookup {
            method: ormcache.getattr(intern!(py, "method"))?.unbind(),
            ormcache: ormcache.unbind(),
            wrapper: wrapper.clone().unbind(),
            cache_name: PyString::intern(py, &cache_name).unbind(),
            key_plan,
            counters,
            counter_class,
            counters_by_model,
            transaction_statistics,
            miss,
            memo: Arc::new(GilCell::new(Memo::default())),
        })
    }

    /// The class it is installed on holds it, and it holds that class
    /// (its memo, the record id reader, the method's closure): the
    /// garbage collector must see these references to free the classes of
    /// a registry that is gone.
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        for object in [
            &self.ormcache,
            &self.wrapper,
            &self.method,
            &self.counters,
            &self.miss,
        ] {
            visit.call(object)?;
        }
        visit.call(&self.counter_class)?;
        self.key_plan.traverse(&visit)?;
        // SAFETY: this is `tp_traverse`.
        let memo = unsafe { self.memo.peek_during_gc(|memo| memo.traverse(&visit)) };
        memo.unwrap_or(Ok(()))
    }

    /// Breaks the cycles: what the memo and the key plan remember.
    fn __clear__(&self) {
        Python::attach(|py| {
            let forgotten = self.memo.with(py, std::mem::take);
            drop(forgotten);
            self.key_plan.forget(py);
        });
    }

    /// Binds like a plain function, as Odoo's wrapper did.
    fn __get__(
        slf: &Bound<'_, Self>,
        obj: Option<&Bound<'_, PyAny>>,
        _owner: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        bind_like_a_function(slf.as_any(), obj)
    }

    #[pyo3(signature = (*args, **kwargs))]
    fn __call__(
        &self,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        self.call_with_tuple(args, kwargs)
    }

    /// Odoo's wrapper this replaces.
    #[getter]
    fn wrapper(&self, py: Python<'_>) -> Py<PyAny> {
        self.wrapper.clone_ref(py)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let name = self.method.bind(py).getattr(intern!(py, "__qualname__"))?;
        Ok(format!("<OdooLookup of {name}>"))
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("OdooLookup", derive_method_type::<OdooLookup>(m.py())?)?;
    m.add_class::<HitCounter>()?;
    Ok(())
}
