//! Safe closed-type codec: Python value <-> bytes. Never pickle.
//!
//! The wire format is documented in [`format`]. Values of a closed set of
//! types (None, bool, int, float, str, bytes, tuple, list, dict, set,
//! frozenset, datetime/date/time with None/timezone/ZoneInfo tzinfo, Decimal)
//! come back as exactly their own type; other types must be registered with
//! `Codec.register_type` (tag + to_state/from_state), everything else is an
//! `EncodeError`. Any invalid input to `decode` is a `DecodeError` (bytes of
//! another format version: `FormatVersionError`, a `DecodeError` subclass),
//! and so is a value that would cost more than the codec's limits to
//! decode, in memory, objects or hash collisions (see [`budget`]).

mod budget;
mod decode;
mod encode;
pub mod format;
mod registry;
mod scan;
pub(crate) mod types;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use parking_lot::RwLock;
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyType};
use pyo3::{PyTraverseError, PyVisit};

use crate::errors::{DecodeError, EncodeError};
pub use budget::Limits;
use budget::{
    Exceeded, DEFAULT_MAX_DECODED_BYTES, DEFAULT_MAX_DECODED_MEMORY, DEFAULT_MAX_HASH_COLLISIONS,
    DEFAULT_MAX_OBJECTS,
};
pub(crate) use encode::{timedelta_us, type_name as encode_type_name};
use format::*;
use registry::{check_tag, ExtEntry, Registry};
use scan::Refusal;
use types::StdTypes;

create_exception!(
    _native,
    FormatVersionError,
    DecodeError,
    "Bytes were written by another format version of the codec."
);

/// Upper bound for `max_depth`: both directions recurse on the native stack,
/// about 260 bytes per level in a release build (recursive paths are kept
/// out of line), so the limit needs ~256 KiB of thread stack and the default
/// of 128 about 32 KiB.
pub const MAX_DEPTH_LIMIT: u32 = 1000;
pub const DEFAULT_COMPRESS_THRESHOLD: usize = 4096;
pub const DEFAULT_MAX_DEPTH: u32 = 128;

/// Encodes and decodes values of a closed set of types plus registered
/// extension types. Shared between threads; registration is rare.
#[pyclass(module = "ormcache_redis._native", frozen)]
pub struct Codec {
    compress_threshold: usize,
    max_depth: u32,
    limits: Limits,
    std_types: PyOnceLock<StdTypes>,
    /// Immutable snapshot, replaced wholesale by `register_type`. The lock
    /// is only held to clone or swap the `Arc`, never across Python calls.
    registry: RwLock<Arc<Registry>>,
}

/// Converts any ordinary exception raised while encoding into EncodeError
/// (keeping it as `__cause__`); BaseExceptions such as KeyboardInterrupt
/// pass through.
fn as_encode_error(py: Python<'_>, e: PyErr) -> PyErr {
    if e.is_instance_of::<EncodeError>(py) || !e.is_instance_of::<PyException>(py) {
        return e;
    }
    let new = EncodeError::new_err(format!("cannot encode value: {e}"));
    new.set_cause(py, Some(e));
    new
}

fn as_decode_error(py: Python<'_>, e: PyErr) -> PyErr {
    if e.is_instance_of::<DecodeError>(py) || !e.is_instance_of::<PyException>(py) {
        return e;
    }
    let new = DecodeError::new_err(format!("invalid encoded value: {e}"));
    new.set_cause(py, Some(e));
    new
}

/// Keeps CPython's cyclic GC off while a value is built, and restores it
/// (also on error). Decoded objects form a tree, so a collection has
/// nothing to find, but every container allocated counts toward one that
/// re-scans the young containers: with the GC on, decoding 100 000 empty
/// lists cost 570 ns per list instead of 44 (CPython 3.11), most of a
/// container bomb's time and much of a big legitimate value's. An
/// extension's `from_state` runs with the GC off; if it switches the GC
/// on or off itself, the state found on entry is restored anyway.
struct GcPaused {
    was_enabled: bool,
}

impl GcPaused {
    fn new(_py: Python<'_>) -> Self {
        // SAFETY: the GIL is held (the token proves it).
        GcPaused {
            was_enabled: unsafe { pyo3::ffi::PyGC_Disable() } != 0,
        }
    }
}

impl Drop for GcPaused {
    fn drop(&mut self) {
        if self.was_enabled {
            // SAFETY: still under the GIL that `new` was given.
            unsafe { pyo3::ffi::PyGC_Enable() };
        }
    }
}

/// A zero-filled buffer of `len` bytes, or `None` when it cannot be
/// allocated. Zeroed memory comes from the OS untouched, so a frame that
/// declares more than it inflates to costs only the pages actually written.
fn zeroed_buffer(len: usize) -> Option<Vec<u8>> {
    if len == 0 {
        return Some(Vec::new());
    }
    let layout = std::alloc::Layout::array::<u8>(len).ok()?;
    // SAFETY: non-zero size; a non-null result is `len` zeroed (so
    // initialized) bytes from the global allocator with this very layout,
    // which is what `Vec::from_raw_parts` requires.
    unsafe {
        let ptr = std::alloc::alloc_zeroed(layout);
        (!ptr.is_null()).then(|| Vec::from_raw_parts(ptr, len, len))
    }
}

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
        })
    }

    pub(crate) fn std_types(&self, py: Python<'_>) -> PyResult<&StdTypes> {
        self.std_types.get_or_try_init(py, || StdTypes::import(py))
    }

    pub(crate) fn registry_snapshot(&self) -> Arc<Registry> {
        Arc::clone(&self.registry.read())
    }

    /// Appends the framed encoding (header, optional compression) of `obj`
    /// to `out`. On error `out` is left as it was.
    pub fn encode_into(&self, obj: &Bound<'_, PyAny>, out: &mut Vec<u8>) -> PyResult<()> {
        let py = obj.py();
        let start = out.len();
        let result = catch_unwind(AssertUnwindSafe(|| self.encode_frame(obj, out)));
        let result = match result {
            Ok(r) => r.map_err(|e| as_encode_error(py, e)),
            Err(_) => Err(EncodeError::new_err("internal error while encoding")),
        };
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    fn encode_frame(&self, obj: &Bound<'_, PyAny>, out: &mut Vec<u8>) -> PyResult<()> {
        let start = out.len();
        out.reserve(64);
        out.extend_from_slice(&MAGIC);
        out.push(FORMAT_VERSION);
        out.push(0);
        let body = start + HEADER_LEN;
        let (encoded, result) =
            encode::Encoder::new(obj.py(), self, std::mem::take(out)).encode_value(obj);
        *out = encoded;
        result?;
        let body_len = out.len() - body;
        let limits = &self.limits;
        // What a decoder will charge for it: priced, unless small enough to
        // fit whatever it holds.
        let memory = if scan::fits_unscanned(body_len, 0, limits) {
            body_len * scan::MAX_MEMORY_PER_BYTE
        } else {
            scan::price(&out[body..], 0, self.max_depth, limits).map_err(|refusal| {
                EncodeError::new_err(match refusal {
                    Refusal::Exceeded(e) => format!(
                        "value not encodable: decoding it would need {}",
                        e.describe(limits)
                    ),
                    Refusal::Malformed(what) => {
                        format!("internal error while encoding: {what}")
                    }
                })
            })?
        };
        // A compressed value is decoded next to its uncompressed payload:
        // only compress when both fit in the decoder's memory budget.
        if body_len > self.compress_threshold && memory + body_len <= limits.max_decoded_memory {
            let compressed = lz4_flex::block::compress(&out[body..]);
            if compressed.len() + 10 < body_len {
                out.truncate(body);
                out[start + 3] |= FLAG_LZ4;
                write_varint(out, body_len as u64);
                out.extend_from_slice(&compressed);
            }
        }
        Ok(())
    }

    /// Decodes framed bytes produced by `encode_into`. Any invalid input is
    /// a `DecodeError`, never a panic.
    pub fn decode(&self, py: Python<'_>, data: &[u8]) -> PyResult<Py<PyAny>> {
        let result = catch_unwind(AssertUnwindSafe(|| self.decode_frame(py, data)));
        match result {
            Ok(r) => r.map_err(|e| as_decode_error(py, e)),
            Err(_) => Err(DecodeError::new_err("internal error while decoding")),
        }
    }

    fn decode_frame(&self, py: Python<'_>, data: &[u8]) -> PyResult<Py<PyAny>> {
        if data.len() < 2 || data[..2] != MAGIC {
            return Err(DecodeError::new_err(
                "not an ormcache_redis encoding (bad magic)",
            ));
        }
        let version = *data
            .get(2)
            .ok_or_else(|| DecodeError::new_err("truncated header"))?;
        if version != FORMAT_VERSION {
            return Err(FormatVersionError::new_err(format!(
                "unsupported format version {version} (this build reads format version {FORMAT_VERSION})"
            )));
        }
        let flags = *data
            .get(3)
            .ok_or_else(|| DecodeError::new_err("truncated header"))?;
        if flags & !KNOWN_FLAGS != 0 {
            return Err(DecodeError::new_err(format!("unknown flags 0x{flags:02x}")));
        }
        let limits = &self.limits;
        if flags & FLAG_LZ4 == 0 {
            let payload = &data[HEADER_LEN..];
            if payload.len() > limits.max_decoded_bytes {
                return Err(DecodeError::new_err(format!(
                    "payload of {} bytes exceeds max_decoded_bytes={}",
                    payload.len(),
                    limits.max_decoded_bytes
                )));
            }
            return self.decode_payload(py, payload, 0);
        }
        let mut pos = HEADER_LEN;
        let declared = read_varint(data, &mut pos)
            .ok_or_else(|| DecodeError::new_err("truncated compressed length"))?;
        let compressed = &data[pos..];
        if declared > limits.max_decoded_bytes as u64 {
            return Err(DecodeError::new_err(format!(
                "declared uncompressed size {declared} exceeds max_decoded_bytes={}",
                limits.max_decoded_bytes
            )));
        }
        if declared > compressed.len().saturating_mul(LZ4_MAX_RATIO) as u64 {
            return Err(DecodeError::new_err(
                "declared uncompressed size is impossible for the compressed input",
            ));
        }
        // The buffer, plus at least declared - 1 bytes for the objects the
        // payload builds (budget.rs): refused before inflating anything.
        let declared = declared as usize;
        if declared.saturating_mul(2).saturating_sub(1) > limits.max_decoded_memory {
            return Err(DecodeError::new_err(format!(
                "value refused: a compressed payload of {declared} bytes and the objects it \
                 builds need {}",
                Exceeded::Memory.describe(limits)
            )));
        }
        // A failed allocation is a DecodeError (a miss), not an abort.
        let mut buf = zeroed_buffer(declared).ok_or_else(|| {
            DecodeError::new_err(format!(
                "cannot allocate {declared} bytes for the uncompressed payload"
            ))
        })?;
        match lz4_flex::block::decompress_into(compressed, &mut buf) {
            Ok(n) if n == buf.len() => {}
            Ok(_) => {
                return Err(DecodeError::new_err(
                    "compressed payload size differs from the declared size",
                ))
            }
            Err(e) => {
                return Err(DecodeError::new_err(format!(
                    "invalid compressed payload: {e}"
                )))
            }
        }
        self.decode_payload(py, &buf, declared)
    }

    /// Decodes a payload, next to `held` bytes of inflated payload: priced
    /// first (`scan.rs`) unless it fits the budgets whatever it holds.
    fn decode_payload(&self, py: Python<'_>, payload: &[u8], held: usize) -> PyResult<Py<PyAny>> {
        let limits = &self.limits;
        if !scan::fits_unscanned(payload.len(), held, limits) {
            if let Err(refusal) = scan::price(payload, held, self.max_depth, limits) {
                return Err(DecodeError::new_err(match refusal {
                    Refusal::Exceeded(e) => {
                        format!("value refused: decoding it needs {}", e.describe(limits))
                    }
                    Refusal::Malformed(what) => what.to_owned(),
                }));
            }
        }
        // A payload builds fewer objects than it has bytes: a small one
        // triggers at most one young collection (every 700 allocations).
        let _gc = (payload.len() > 512).then(|| GcPaused::new(py));
        let v = decode::Decoder::new(py, self, payload).decode_all()?;
        Ok(v.unbind())
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

    /// Encodes `obj` to framed bytes; EncodeError for unsupported values.
    fn dumps<'py>(&self, obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
        let mut out = Vec::with_capacity(128);
        self.encode_into(obj, &mut out)?;
        Ok(PyBytes::new(obj.py(), &out))
    }

    /// Decodes bytes produced by `dumps`; DecodeError for anything invalid.
    fn loads(&self, py: Python<'_>, data: &[u8]) -> PyResult<Py<PyAny>> {
        self.decode(py, data)
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

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Codec>()?;
    m.add("FormatVersionError", py.get_type::<FormatVersionError>())?;
    m.add("CODEC_FORMAT_VERSION", FORMAT_VERSION)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pyo3::types::{PyList, PyTuple};

    fn codec() -> Codec {
        Codec::new(
            DEFAULT_COMPRESS_THRESHOLD,
            DEFAULT_MAX_DEPTH,
            Limits::default(),
        )
        .unwrap()
    }

    #[test]
    fn encode_into_appends_and_restores_on_error() {
        Python::attach(|py| {
            let c = codec();
            let mut out = b"prefix".to_vec();
            let value = PyTuple::new(py, [1, 2, 3]).unwrap();
            c.encode_into(value.as_any(), &mut out).unwrap();
            assert_eq!(&out[..6], b"prefix");
            assert_eq!(&out[6..10], &[0xC0, 0xDE, FORMAT_VERSION, 0]);
            let decoded = c.decode(py, &out[6..]).unwrap();
            assert!(decoded.bind(py).eq(value).unwrap());

            let before = out.clone();
            let bad = PyList::new(
                py,
                [
                    py.None(),
                    py.eval(c"object()", None, None).unwrap().unbind(),
                ],
            )
            .unwrap();
            let err = c.encode_into(bad.as_any(), &mut out).unwrap_err();
            assert!(err.is_instance_of::<EncodeError>(py));
            assert_eq!(out, before);
        });
    }

    #[test]
    fn pseudo_random_garbage_is_decode_error_or_value() {
        Python::attach(|py| {
            let c = codec();
            let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
            let mut next = || {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state
            };
            for _ in 0..20_000 {
                let len = (next() % 40) as usize;
                let mut data = vec![0xC0, 0xDE, FORMAT_VERSION, (next() % 2) as u8];
                data.extend((0..len).map(|_| next() as u8));
                if let Err(e) = c.decode(py, &data) {
                    assert!(e.is_instance_of::<DecodeError>(py), "{e}");
                }
            }
        });
    }
}
