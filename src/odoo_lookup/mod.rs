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
//! - the lookup in `self.pool._Registry__caches[cache_name]`.
//!
//! A miss or an unhashable key goes to `miss` (Odoo's own code for them, in
//! Python); a call this path does not cover (keywords, too many arguments,
//! an omitted parameter without a default) goes to Odoo's wrapper itself.

use std::ffi::c_int;

use parking_lot::Mutex;
use pyo3::exceptions::{PyKeyError, PyTypeError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PySet, PyString, PyTuple, PyType, PyWeakrefMethods, PyWeakrefReference};
use pyo3::{ffi, intern};

use crate::decorator::{bind_like_a_function, find_in};

const LOOKUPS: &str = "_ormcache_lookups";

/// One `@ormcache` method, as the class attribute that replaces Odoo's
/// wrapper. It keeps a `__dict__`, so the wrapper's attributes
/// (`__cache__`, `__wrapped__`, `clear_cache`, Odoo's API markers) are
/// copied onto it and read as before.
#[pyclass(
    module = "ormcache_redis._native",
    name = "OdooLookup",
    frozen,
    dict,
    weakref
)]
pub struct OdooLookup {
    /// Odoo's `ormcache` instance.
    ormcache: Py<PyAny>,
    /// Odoo's wrapper: calls this path does not cover go through it.
    wrapper: Py<PyAny>,
    method: Py<PyAny>,
    cache_name: Py<PyString>,
    /// Each key expression: an argument index (0 = self) and the
    /// attributes read from it (`self.env.uid`: 0, [env, uid]).
    key_parts: Vec<KeyPart>,
    /// Default values of the parameters, by argument index (None: required).
    defaults: Vec<Option<Py<PyAny>>>,
    /// 19 `_COUNTERS` (keyed `(db_name, method)`) or 17.0/18.0 `STAT`
    /// (keyed `(db_name, model_name, method)`).
    counters: Py<PyAny>,
    /// Odoo 19: the counters' `tx_*` statistics and the transaction's
    /// `_ormcache_lookups` set (an unhashable key then raises, as in 19).
    transaction_statistics: bool,
    /// `miss(ormcache, cache, key, counter, first_in_transaction, args, error)`:
    /// Odoo's miss and error paths, in Python.
    miss: Py<PyAny>,
    /// The model class last seen, with what Odoo reads from it on every
    /// call: found once per class (a registry's classes live as long as
    /// the registry, and Odoo only ever adds entries to the counters). The
    /// class is held, so its address cannot be reused meanwhile.
    last_class: Mutex<Option<ModelClass>>,
    /// Odoo 19: the environment last seen and its cursor's cache.
    last_env: Mutex<Option<(Py<PyWeakrefReference>, Py<PyDict>)>>,
}

struct KeyPart {
    position: usize,
    attributes: Vec<Py<PyString>>,
}

struct ModelClass {
    class: Py<PyAny>,
    name: Py<PyAny>,
    pool: Py<PyAny>,
    counter: Py<PyAny>,
}

/// What `call` needs from the model class: `_name`, `pool`, the counter.
struct ModelFacts<'py> {
    name: Bound<'py, PyAny>,
    pool: Bound<'py, PyAny>,
    counter: Bound<'py, PyAny>,
}

impl OdooLookup {
    fn model_facts<'py>(&self, model: &Bound<'py, PyAny>) -> PyResult<ModelFacts<'py>> {
        let py = model.py();
        let class = model.get_type();
        if let Some(known) = &*self.last_class.lock() {
            if known.class.is(&class) {
                return Ok(ModelFacts {
                    name: known.name.bind(py).clone(),
                    pool: known.pool.bind(py).clone(),
                    counter: known.counter.bind(py).clone(),
                });
            }
        }
        let name = model.getattr(intern!(py, "_name"))?;
        let pool = model.getattr(intern!(py, "pool"))?;
        let db_name = pool.getattr(intern!(py, "db_name"))?;
        let method = self.method.bind(py);
        let counters = self.counters.bind(py);
        let counter = match self.transaction_statistics {
            true => counters.get_item((db_name, method))?,
            false => counters.get_item((db_name, &name, method))?,
        };
        *self.last_class.lock() = Some(ModelClass {
            class: class.into_any().unbind(),
            name: name.clone().unbind(),
            pool: pool.clone().unbind(),
            counter: counter.clone().unbind(),
        });
        Ok(ModelFacts {
            name,
            pool,
            counter,
        })
    }

    /// The parameter at argument `index`, from the call or its default.
    fn argument<'py>(&self, args: &Bound<'py, PyTuple>, index: usize) -> Option<Bound<'py, PyAny>> {
        let py = args.py();
        match args.get_item(index) {
            Ok(value) => Some(value),
            Err(_) => self
                .defaults
                .get(index)
                .and_then(|default| default.as_ref().map(|value| value.bind(py).clone())),
        }
    }

    fn key<'py>(
        &self,
        model_name: Bound<'py, PyAny>,
        args: &Bound<'py, PyTuple>,
    ) -> PyResult<Option<Bound<'py, PyTuple>>> {
        let py = args.py();
        let mut items = Vec::with_capacity(2 + self.key_parts.len());
        items.push(model_name);
        items.push(self.method.bind(py).clone());
        for part in &self.key_parts {
            let Some(mut value) = self.argument(args, part.position) else {
                return Ok(None);
            };
            for attribute in &part.attributes {
                value = value.getattr(attribute.bind(py))?;
            }
            items.push(value);
        }
        Ok(Some(PyTuple::new(py, items)?))
    }

    /// `env.cr.cache`: found once per environment (an environment's cursor,
    /// and a cursor's cache dictionary, are never replaced), the
    /// environment watched through a weak reference.
    fn transaction_cache<'py>(&self, env: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyDict>> {
        let py = env.py();
        if let Some((known, cache)) = &*self.last_env.lock() {
            if known.bind(py).upgrade().is_some_and(|known| known.is(env)) {
                return Ok(cache.bind(py).clone());
            }
        }
        let cache = env
            .getattr(intern!(py, "cr"))?
            .getattr(intern!(py, "cache"))?
            .cast_into::<PyDict>()?;
        if let Ok(watched) = PyWeakrefReference::new(env) {
            *self.last_env.lock() = Some((watched.unbind(), cache.clone().unbind()));
        }
        Ok(cache)
    }

    /// Odoo 19: whether this is the key's first lookup in the transaction
    /// (it is recorded as looked up then).
    fn first_in_transaction(
        &self,
        model: &Bound<'_, PyAny>,
        key: &Bound<'_, PyTuple>,
        counter: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        let py = model.py();
        let transaction = self.transaction_cache(&model.getattr(intern!(py, "env"))?)?;
        let lookups = match transaction.get_item(intern!(py, LOOKUPS))? {
            Some(lookups) => lookups,
            None => {
                transaction.call_method1(intern!(py, "setdefault"), (LOOKUPS, PySet::empty(py)?))?
            }
        };
        let first = !lookups.contains(key)?;
        if first {
            counter.setattr(intern!(py, "cache_name"), self.cache_name.bind(py))?;
            lookups.call_method1(intern!(py, "add"), (key,))?;
        }
        Ok(first)
    }

    fn call(&self, args: &Bound<'_, PyTuple>) -> PyResult<Py<PyAny>> {
        let py = args.py();
        if args.is_empty() || args.len() > self.defaults.len() {
            return self.through_wrapper(args, None);
        }
        let model = args.get_item(0)?;
        let facts = self.model_facts(&model)?;
        let Some(key) = self.key(facts.name, args)? else {
            return self.through_wrapper(args, None);
        };
        let cache = facts
            .pool
            .getattr(intern!(py, "_Registry__caches"))?
            .get_item(self.cache_name.bind(py))?;
        let counter = facts.counter;
        let (first, found) = match key.hash() {
            Ok(hash) => {
                let first = self.transaction_statistics
                    && self.first_in_transaction(&model, &key, &counter)?;
                (first, find_in(&cache, key.as_any(), Some(hash)))
            }
            // 19 asks its set first, which raises; 17.0/18.0 ask the mapping.
            Err(err) if self.transaction_statistics => return Err(err),
            Err(err) => (false, Err(err)),
        };
        let error = match found {
            Ok(Some(value)) => {
                increment(&counter, intern!(py, "hit"))?;
                if first {
                    increment(&counter, intern!(py, "tx_hit"))?;
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
                args,
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

fn increment(counter: &Bound<'_, PyAny>, name: &Bound<'_, PyString>) -> PyResult<()> {
    let py = counter.py();
    if let Some(slot) = counter_slot(counter, name)? {
        // SAFETY: `slot` is a member descriptor of exactly `counter`'s type
        // (checked by `counter_slot`), and `get`/`set` are its type's own
        // tp_descr_get/tp_descr_set slots.
        unsafe {
            let value = Bound::from_owned_ptr_or_err(
                py,
                (slot.get)(slot.descriptor.as_ptr(), counter.as_ptr(), ffi::Py_None()),
            )?;
            let value = value.add(1)?;
            if (slot.set)(slot.descriptor.as_ptr(), counter.as_ptr(), value.as_ptr()) != 0 {
                return Err(PyErr::fetch(py));
            }
        }
        return Ok(());
    }
    let value = counter.getattr(name)?.add(1)?;
    counter.setattr(name, value)
}

type DescrGet = unsafe extern "C" fn(
    *mut ffi::PyObject,
    *mut ffi::PyObject,
    *mut ffi::PyObject,
) -> *mut ffi::PyObject;
type DescrSet =
    unsafe extern "C" fn(*mut ffi::PyObject, *mut ffi::PyObject, *mut ffi::PyObject) -> c_int;

/// A `__slots__` attribute of Odoo's `ormcache_counter`, read and written
/// through its member descriptor: what the interpreter's specialised
/// bytecode does for `counter.hit += 1`, which a generic getattr/setattr
/// pair from C costs several times over.
struct CounterSlot {
    class: Py<PyAny>,
    descriptor: Py<PyAny>,
    get: DescrGet,
    set: DescrSet,
}

/// The slot `name` of `counter`'s type when it is a plain member
/// descriptor (as in Odoo's `ormcache_counter`), found once per name.
fn counter_slot(
    counter: &Bound<'_, PyAny>,
    name: &Bound<'_, PyString>,
) -> PyResult<Option<&'static CounterSlot>> {
    static HIT: PyOnceLock<Option<CounterSlot>> = PyOnceLock::new();
    static TX_HIT: PyOnceLock<Option<CounterSlot>> = PyOnceLock::new();
    let py = counter.py();
    let cell = match name.to_str()? {
        "hit" => &HIT,
        "tx_hit" => &TX_HIT,
        _ => return Ok(None),
    };
    let class = counter.get_type();
    let slot = cell.get_or_try_init(py, || find_counter_slot(&class, name))?;
    Ok(slot.as_ref().filter(|slot| slot.class.is(&class)))
}

fn find_counter_slot(
    class: &Bound<'_, PyType>,
    name: &Bound<'_, PyString>,
) -> PyResult<Option<CounterSlot>> {
    let py = class.py();
    let Some(descriptor) = class.getattr(intern!(py, "__dict__"))?.get_item(name).ok() else {
        return Ok(None);
    };
    let member_descriptor = py.import("types")?.getattr("MemberDescriptorType")?;
    if !descriptor.get_type().is(&member_descriptor) {
        return Ok(None);
    }
    let descriptor_type = descriptor.get_type();
    // SAFETY: a type object; the slots are null or functions of exactly
    // these signatures.
    let (get, set) = unsafe {
        (
            ffi::PyType_GetSlot(descriptor_type.as_type_ptr(), ffi::Py_tp_descr_get),
            ffi::PyType_GetSlot(descriptor_type.as_type_ptr(), ffi::Py_tp_descr_set),
        )
    };
    if get.is_null() || set.is_null() {
        return Ok(None);
    }
    Ok(Some(CounterSlot {
        class: class.clone().into_any().unbind(),
        descriptor: descriptor.unbind(),
        // SAFETY: non-null tp_descr_get / tp_descr_set slots.
        get: unsafe { std::mem::transmute::<*mut std::ffi::c_void, DescrGet>(get) },
        set: unsafe { std::mem::transmute::<*mut std::ffi::c_void, DescrSet>(set) },
    }))
}

#[pymethods]
impl OdooLookup {
    #[new]
    #[pyo3(signature = (wrapper, key_parts, defaults, counters, miss, *, transaction_statistics))]
    fn py_new(
        wrapper: &Bound<'_, PyAny>,
        key_parts: Vec<(usize, Vec<String>)>,
        defaults: Vec<Option<Py<PyAny>>>,
        counters: Py<PyAny>,
        miss: Py<PyAny>,
        transaction_statistics: bool,
    ) -> PyResult<Self> {
        let py = wrapper.py();
        if key_parts
            .iter()
            .any(|(position, _)| *position >= defaults.len())
        {
            return Err(PyTypeError::new_err(
                "a key position names no parameter of the method",
            ));
        }
        let ormcache = wrapper.getattr(intern!(py, "__cache__"))?;
        let cache_name: String = ormcache.getattr(intern!(py, "cache_name"))?.extract()?;
        Ok(OdooLookup {
            method: ormcache.getattr(intern!(py, "method"))?.unbind(),
            ormcache: ormcache.unbind(),
            wrapper: wrapper.clone().unbind(),
            cache_name: PyString::intern(py, &cache_name).unbind(),
            key_parts: key_parts
                .into_iter()
                .map(|(position, attributes)| KeyPart {
                    position,
                    attributes: attributes
                        .iter()
                        .map(|name| PyString::intern(py, name).unbind())
                        .collect(),
                })
                .collect(),
            defaults,
            counters,
            transaction_statistics,
            miss,
            last_class: Mutex::new(None),
            last_env: Mutex::new(None),
        })
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
        match kwargs {
            Some(kwargs) if !kwargs.is_empty() => self.through_wrapper(args, Some(kwargs)),
            _ => self.call(args),
        }
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
    m.add_class::<OdooLookup>()?;
    Ok(())
}
