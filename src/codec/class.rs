//! The `Codec` Python class: its options and their checks, `dumps` and
//! `loads`, registration of extension types, and what it keeps between
//! calls (standard types, the registry, the string table).

use std::sync::Arc;

use parking_lot::RwLock;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyType};
use pyo3::{PyTraverseError, PyVisit};

use super::budget::{
    Limits, DEFAULT_MAX_DECODED_BYTES, DEFAULT_MAX_DECODED_MEMORY, DEFAULT_MAX_HASH_COLLISIONS,
    DEFAULT_MAX_OBJECTS,
};
use super::object_cache::Recent;
use super::registry::{check_tag, ExtEntry, Registry};
use super::types::StdTypes;
use super::{DEFAULT_COMPRESS_THRESHOLD, DEFAULT_MAX_DEPTH, MAX_DEPTH_LIMIT};
use crate::gil_cell::GilCell;

/// Encodes and decodes values of a closed set of types plus registered
/// extension types. Shared between threads; registration is rare.
#[pyclass(module = "ormcache_redis._native", frozen)]
pub struct Codec {
    pub(super) compress_threshold: usize,
    pub(super) max_depth: u32,
    pub(super) limits: Limits,
    std_types: PyOnceLock<StdTypes>,
    /// Immutable snapshot, replaced wholesale by `register_type`. The lock
    /// is only held to clone or swap the `Arc`, never across Python calls.
    registry: RwLock<Arc<Registry>>,
    /// Short strings and ints decoded lately (`object_cache.rs`),
    /// allocated by the first decode; taken by one decode at a time.
    pub(super) recent: GilCell<Option<Box<Recent>>>,
    /// The output buffer of `dumps`, kept for the next call.
    dumps_buffer: GilCell<Vec<u8>>,
}

/// `dumps` keeps a buffer that grew up to this size for the next call.
const KEPT_BUFFER: usize = 64 * 1024;

impl Codec {
    pub fn new(compress_threshold: usize, max_depth: u32, limits: Limits) -> PyResult<Self> {
        if max_depth == 0 || max_depth > MAX_DEPTH_LIMIT {
            return Err(PyValueError::new_err(format!(
                "max_depth must be between 1 and {MAX_DEPTH_LIMIT}"
            )));
        }
        for (name, value) in [
            ("max_decoded_bytes", limits.max_decoded_bytes),
            ("max_decoded_memory", limits.max_decoded_memory),
            ("max_objects", limits.max_objects),
        ] {
            if value == 0 {
                return Err(PyValueError::new_err(format!("{name} must be >= 1")));
            }
        }
        Ok(Codec {
            compress_threshold,
            max_depth,
            limits,
            std_types: PyOnceLock::new(),
            registry: RwLock::new(Arc::new(Registry::default())),
            recent: GilCell::new(None),
            dumps_buffer: GilCell::new(Vec::new()),
        })
    }

    pub(crate) fn std_types(&self, py: Python<'_>) -> PyResult<&StdTypes> {
        self.std_types.get_or_try_init(py, || StdTypes::import(py))
    }

    /// `Codec.dumps` (`fastcall.rs`): `obj` as framed bytes.
    pub(super) fn dumps<'py>(&self, obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
        let py = obj.py();
        // The buffer of the last call, unless a dumps further up this
        // thread's stack (an extension's to_state) holds it.
        let mut out = self
            .dumps_buffer
            .with(py, std::mem::take)
            .unwrap_or_default();
        out.clear();
        let result = self
            .encode_into(obj, &mut out)
            .map(|()| PyBytes::new(py, &out));
        if out.capacity() <= KEPT_BUFFER {
            self.dumps_buffer.with(py, |kept| *kept = out);
        }
        result
    }

    pub(crate) fn registry_snapshot(&self) -> Arc<Registry> {
        Arc::clone(&self.registry.read())
    }

    fn natively_handled(&self, py: Python<'_>, cls: &Bound<'_, PyType>) -> PyResult<bool> {
        use pyo3::ffi;
        let tp = cls.as_ptr() as *mut ffi::PyTypeObject;
        let builtins = [
            &raw mut ffi::PyUnicode_Type,
            &raw mut ffi::PyLong_Type,
            &raw mut ffi::PyTuple_Type,
            &raw mut ffi::PyBool_Type,
            &raw mut ffi::PyFloat_Type,
            &raw mut ffi::PyFrozenSet_Type,
            &raw mut ffi::PyList_Type,
            &raw mut ffi::PyDict_Type,
            &raw mut ffi::PySet_Type,
            &raw mut ffi::PyBytes_Type,
        ];
        // SAFETY: Py_None is a static object.
        let none_type = unsafe { ffi::Py_TYPE(ffi::Py_None()) };
        if builtins.contains(&tp) || tp == none_type {
            return Ok(true);
        }
        let std = self.std_types(py)?;
        let tp = tp as usize;
        Ok([
            std.datetime_ptr,
            std.date_ptr,
            std.time_ptr,
            std.decimal_ptr,
        ]
        .contains(&tp))
    }
}

#[pymethods]
impl Codec {
    #[new]
    #[pyo3(signature = (
        compress_threshold=DEFAULT_COMPRESS_THRESHOLD as i64,
        max_depth=DEFAULT_MAX_DEPTH as i64,
        max_decoded_bytes=DEFAULT_MAX_DECODED_BYTES as i64,
        max_decoded_memory=DEFAULT_MAX_DECODED_MEMORY as i64,
        max_objects=DEFAULT_MAX_OBJECTS as i64,
        max_hash_collisions=DEFAULT_MAX_HASH_COLLISIONS as i64,
    ))]
    fn py_new(
        compress_threshold: i64,
        max_depth: i64,
        max_decoded_bytes: i64,
        max_decoded_memory: i64,
        max_objects: i64,
        max_hash_collisions: i64,
    ) -> PyResult<Self> {
        // A negative limit reads as 0, which `Codec::new` refuses by name.
        let limit = |value: i64| usize::try_from(value).unwrap_or(0);
        let limits = Limits {
            max_decoded_bytes: limit(max_decoded_bytes),
            max_decoded_memory: limit(max_decoded_memory),
            max_objects: limit(max_objects),
            max_hash_collisions: usize::try_from(max_hash_collisions)
                .map_err(|_| PyValueError::new_err("max_hash_collisions must be >= 0"))?,
        };
        let compress_threshold = usize::try_from(compress_threshold)
            .map_err(|_| PyValueError::new_err("compress_threshold must be >= 0"))?;
        let max_depth = u32::try_from(max_depth).unwrap_or(0);
        Codec::new(compress_threshold, max_depth, limits)
    }

    #[getter]
    fn compress_threshold(&self) -> usize {
        self.compress_threshold
    }

    #[getter]
    fn max_depth(&self) -> u32 {
        self.max_depth
    }

    #[getter]
    fn max_decoded_bytes(&self) -> usize {
        self.limits.max_decoded_bytes
    }

    #[getter]
    fn max_decoded_memory(&self) -> usize {
        self.limits.max_decoded_memory
    }

    #[getter]
    fn max_objects(&self) -> usize {
        self.limits.max_objects
    }

    #[getter]
    fn max_hash_collisions(&self) -> usize {
        self.limits.max_hash_collisions
    }

    /// Registers an extension type, matched by exact type. `to_state(obj)`
    /// must return an encodable value; `from_state(state)` rebuilds the
    /// object from the decoded state.
    fn register_type(
        &self,
        py: Python<'_>,
        cls: &Bound<'_, PyType>,
        tag: &str,
        to_state: &Bound<'_, PyAny>,
        from_state: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        check_tag(tag).map_err(PyValueError::new_err)?;
        if !to_state.is_callable() || !from_state.is_callable() {
            return Err(PyTypeError::new_err(
                "to_state and from_state must be callable",
            ));
        }
        if self.natively_handled(py, cls)? {
            return Err(PyValueError::new_err(format!(
                "{} is handled natively by the codec and cannot be registered",
                cls.fully_qualified_name()?
            )));
        }
        let entry = ExtEntry {
            tag: tag.to_owned(),
            cls: cls.clone().unbind(),
            to_state: to_state.clone().unbind(),
            from_state: from_state.clone().unbind(),
        };
        let mut guard = self.registry.write();
        if guard.by_tag.contains_key(tag) {
            return Err(PyValueError::new_err(format!(
                "extension tag {tag:?} is already registered"
            )));
        }
        if guard.by_type.contains_key(&(cls.as_ptr() as usize)) {
            return Err(PyValueError::new_err(format!(
                "{} is already registered",
                cls.fully_qualified_name()?
            )));
        }
        let next = Arc::new(guard.with(entry));
        *guard = next;
        Ok(())
    }

    /// Tags of the registered extension types, in registration order.
    fn registered_tags(&self) -> Vec<String> {
        self.registry_snapshot()
            .order
            .iter()
            .map(|e| e.tag.clone())
            .collect()
    }

    fn __repr__(&self) -> String {
        format!(
            "Codec(compress_threshold={}, max_depth={}, max_decoded_bytes={}, \
             max_decoded_memory={}, max_objects={}, max_hash_collisions={})",
            self.compress_threshold,
            self.max_depth,
            self.limits.max_decoded_bytes,
            self.limits.max_decoded_memory,
            self.limits.max_objects,
            self.limits.max_hash_collisions
        )
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(reg) = self.registry.try_read() {
            reg.traverse(&visit)?;
        }
        Ok(())
    }

    fn __clear__(&self) {
        let empty = Arc::new(Registry::default());
        if let Some(mut reg) = self.registry.try_write() {
            *reg = empty;
        }
    }
}
