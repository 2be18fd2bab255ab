//! Encoder: exact-type dispatch on the type pointer, commonest types first
//! (like pydantic-core's `ob_type.rs`), raw limited-API FFI on the hot
//! paths. Scalars (int, str, float, None, bool) are written inline in the
//! loop of the container that holds them; containers and everything else
//! go through `nested`, the one recursive step, whose frame stays small.
//! The other types (datetime, Decimal, big ints, extension types) are in
//! `encode_other.rs`. It stops as soon as the output passes
//! `max_decoded_bytes`; the frame prices what it wrote against the decode
//! budgets (`scan.rs`).

use std::sync::Arc;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::Borrowed;

use super::format::*;
use super::object_cache::SmallInts;
use super::registry::Registry;
use super::Codec;
use crate::errors::EncodeError;

pub(super) struct Encoder<'a, 'py> {
    pub(super) py: Python<'py>,
    pub(super) codec: &'a Codec,
    /// Owned while encoding (one indirection less on every write).
    pub(super) out: Vec<u8>,
    pub(super) registry: Option<Arc<Registry>>,
    small_ints: &'static SmallInts,
    /// Where the payload starts in `out`.
    start: usize,
    /// `out.len()` past which the payload is larger than max_decoded_bytes.
    end: usize,
}

/// The output size is checked before a write longer than `SHORT_WRITE`
/// bytes (str, bytes, big int, Decimal, tz name), when a container ends, and every
/// `SIZE_CHECK_EVERY` items of a container: in between come at most that
/// many short items, so encoding stops within ~64 KiB of passing the limit.
const SIZE_CHECK_EVERY: usize = 64;
pub(super) const SHORT_WRITE: usize = 1024;

pub(super) fn depth_error(max_depth: u32) -> PyErr {
    EncodeError::new_err(format!(
        "maximum nesting depth {max_depth} exceeded (cyclic or too deeply nested structure)"
    ))
}

#[cold]
fn changed_size(py: Python<'_>, what: &str) -> PyErr {
    // Discard whatever error the C API left behind (IndexError, RuntimeError).
    drop(PyErr::take(py));
    EncodeError::new_err(format!("{what} changed size during encoding"))
}

/// Appends what `write` puts at the pointer it is given (at most `max`
/// bytes; it returns how many): one capacity check for a whole scalar.
#[inline(always)]
fn put(out: &mut Vec<u8>, max: usize, write: impl FnOnce(*mut u8) -> usize) {
    out.reserve(max);
    // SAFETY: `reserve` made room for `max` bytes past the length, and
    // `write` initialises the `n <= max` bytes the length then covers.
    unsafe {
        let len = out.len();
        let n = write(out.as_mut_ptr().add(len));
        out.set_len(len + n);
    }
}

/// Tag, varint length, bytes.
#[inline]
pub(super) fn write_bytes(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
    put(out, 1 + MAX_VARINT_LEN + bytes.len(), |dst| unsafe {
        *dst = tag;
        let n = 1 + put_varint(dst.add(1), bytes.len() as u64);
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst.add(n), bytes.len());
        n + bytes.len()
    });
}

/// UTF-8 view of an exact `str`; EncodeError for lone surrogates.
///
/// # Safety
/// `ptr` must be a live `str` object; the slice lives as long as it does.
#[inline]
pub(super) unsafe fn str_utf8<'s>(py: Python<'_>, ptr: *mut ffi::PyObject) -> PyResult<&'s [u8]> {
    let mut size: ffi::Py_ssize_t = 0;
    let p = ffi::PyUnicode_AsUTF8AndSize(ptr, &mut size);
    if p.is_null() {
        return Err(not_utf8(py));
    }
    Ok(std::slice::from_raw_parts(p as *const u8, size as usize))
}

#[cold]
fn not_utf8(py: Python<'_>) -> PyErr {
    let cause = PyErr::fetch(py);
    let err = EncodeError::new_err(format!(
        "str is not encodable as UTF-8 (lone surrogate?): {cause}"
    ));
    err.set_cause(py, Some(cause));
    err
}

/// A strong reference for as long as an item is encoded: an extension's
/// `to_state` may mutate the list, dict or set it was read from.
struct Held(*mut ffi::PyObject);

impl Held {
    /// # Safety
    /// `ptr` is a live object; GIL held.
    #[inline]
    unsafe fn new(ptr: *mut ffi::PyObject) -> Held {
        ffi::Py_INCREF(ptr);
        Held(ptr)
    }
}

impl Drop for Held {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: the reference taken in `new`, under the same GIL.
        unsafe { ffi::Py_DECREF(self.0) }
    }
}

impl<'a, 'py> Encoder<'a, 'py> {
    /// Encodes the payload at the end of `out`.
    pub fn new(
        py: Python<'py>,
        codec: &'a Codec,
        small_ints: &'static SmallInts,
        out: Vec<u8>,
    ) -> Self {
        let start = out.len();
        Encoder {
            py,
            codec,
            out,
            registry: None,
            small_ints,
            start,
            end: start.saturating_add(codec.limits.max_decoded_bytes),
        }
    }

    /// Encodes `obj` as the whole payload; gives the buffer back, also on
    /// error.
    pub fn encode_value(mut self, obj: &Bound<'py, PyAny>) -> (Vec<u8>, PyResult<()>) {
        // SAFETY: `obj` is alive for the call; GIL held.
        let result = unsafe { self.value::<false>(obj.as_ptr(), 0) }.and_then(|()| self.room(0));
        (self.out, result)
    }

    #[cold]
    #[inline(never)]
    fn too_large(&self) -> PyErr {
        EncodeError::new_err(format!(
            "encoded value is larger than max_decoded_bytes={} (refused after {} bytes)",
            self.codec.limits.max_decoded_bytes,
            self.out.len() - self.start
        ))
    }

    /// `room(n)` before a write of `n` bytes that may be long; a short one
    /// is left to the container's next check.
    #[inline(always)]
    pub(super) fn room_for(&self, n: usize) -> PyResult<()> {
        if n > SHORT_WRITE {
            self.room(n)
        } else {
            Ok(())
        }
    }

    /// Fails when `n` more bytes would make the payload larger than
    /// `max_decoded_bytes`, so that a huge value is refused early (see
    /// `SIZE_CHECK_EVERY` for when it is called).
    #[inline]
    pub(super) fn room(&self, n: usize) -> PyResult<()> {
        if self.out.len().saturating_add(n) > self.end {
            Err(self.too_large())
        } else {
            Ok(())
        }
    }

    #[inline]
    pub(super) fn check_depth(&self, depth: u32) -> PyResult<()> {
        if depth >= self.codec.max_depth {
            Err(depth_error(self.codec.max_depth))
        } else {
            Ok(())
        }
    }

    /// Tag and count of a container, with room for its first items.
    #[inline(always)]
    fn header(&mut self, tag: u8, n: ffi::Py_ssize_t) {
        self.out
            .reserve(1 + MAX_VARINT_LEN + (n as usize).min(SIZE_CHECK_EVERY) * 2);
        put(&mut self.out, 1 + MAX_VARINT_LEN, |dst| unsafe {
            *dst = tag;
            1 + put_varint(dst.add(1), n as u64)
        });
    }

    /// Any value: a scalar is written here, inlined into the loop that
    /// reads it; the rest goes to `nested`. With `HOLD`, a value that is
    /// not a scalar is held by a strong reference while it is encoded
    /// (items of mutable containers: Python code may run meanwhile).
    ///
    /// # Safety
    /// `ptr` is a live object; GIL held.
    #[inline(always)]
    pub(super) unsafe fn value<const HOLD: bool>(
        &mut self,
        ptr: *mut ffi::PyObject,
        depth: u32,
    ) -> PyResult<()> {
        let tp = ffi::Py_TYPE(ptr);
        if tp == &raw mut ffi::PyLong_Type {
            if let Some(v) = self.small_ints.value_of(ptr) {
                self.out.push(T_SMALLINT | v);
                return Ok(());
            }
            return self.int(ptr);
        }
        if tp == &raw mut ffi::PyUnicode_Type {
            let s = str_utf8(self.py, ptr)?;
            self.room_for(s.len())?;
            write_bytes(&mut self.out, T_STR, s);
            return Ok(());
        }
        if tp == &raw mut ffi::PyFloat_Type {
            // An exact float: cannot fail.
            let bits = ffi::PyFloat_AsDouble(ptr).to_bits().to_le_bytes();
            put(&mut self.out, 9, |dst| {
                *dst = T_FLOAT;
                std::ptr::copy_nonoverlapping(bits.as_ptr(), dst.add(1), 8);
                9
            });
            return Ok(());
        }
        if ptr == ffi::Py_None() {
            self.out.push(T_NONE);
            return Ok(());
        }
        if tp == &raw mut ffi::PyBool_Type {
            self.out.push(if ptr == ffi::Py_True() {
                T_TRUE
            } else {
                T_FALSE
            });
            return Ok(());
        }
        if HOLD {
            let held = Held::new(ptr);
            let result = self.nested(held.0, depth);
            drop(held);
            result
        } else {
            self.nested(ptr, depth)
        }
    }

    /// An exact int outside the small-int table.
    ///
    /// # Safety
    /// `ptr` is an exact int; GIL held.
    #[inline(always)]
    unsafe fn int(&mut self, ptr: *mut ffi::PyObject) -> PyResult<()> {
        let mut overflow: std::os::raw::c_int = 0;
        let v = ffi::PyLong_AsLongLongAndOverflow(ptr, &mut overflow);
        // An exact int cannot fail (no __index__ to call): -1 is -1.
        if overflow != 0 {
            return self.big_int(ptr, overflow < 0);
        }
        if (0..=SMALLINT_MAX).contains(&v) {
            self.out.push(T_SMALLINT | v as u8);
        } else {
            put(&mut self.out, 1 + MAX_VARINT_LEN, |dst| {
                *dst = T_INT;
                1 + put_varint(dst.add(1), zigzag(v))
            });
        }
        Ok(())
    }

    /// Containers and every type that is not a scalar: the recursive step.
    ///
    /// # Safety
    /// `ptr` is a live object that stays alive during the call; GIL held.
    #[inline(never)]
    unsafe fn nested(&mut self, ptr: *mut ffi::PyObject, depth: u32) -> PyResult<()> {
        let tp = ffi::Py_TYPE(ptr);
        if tp == &raw mut ffi::PyTuple_Type {
            return self.tuple(ptr, depth);
        }
        if tp == &raw mut ffi::PyList_Type {
            return self.list(ptr, depth);
        }
        if tp == &raw mut ffi::PyDict_Type {
            return self.dict(ptr, depth);
        }
        if tp == &raw mut ffi::PyFrozenSet_Type {
            return self.set(ptr, T_FROZENSET, depth);
        }
        if tp == &raw mut ffi::PySet_Type {
            return self.set(ptr, T_SET, depth);
        }
        if tp == &raw mut ffi::PyBytes_Type {
            let p = ffi::PyBytes_AsString(ptr);
            let n = ffi::PyBytes_Size(ptr);
            self.room_for(n as usize)?;
            write_bytes(
                &mut self.out,
                T_BYTES,
                std::slice::from_raw_parts(p as *const u8, n as usize),
            );
            return Ok(());
        }
        self.other(&Borrowed::from_ptr(self.py, ptr), depth)
    }

    /// `item(self, i)` for each index of a tuple or list, with the output
    /// size checked every `SIZE_CHECK_EVERY` items and at the end.
    #[inline(always)]
    fn items(
        &mut self,
        n: ffi::Py_ssize_t,
        mut item: impl FnMut(&mut Self, ffi::Py_ssize_t) -> PyResult<()>,
    ) -> PyResult<()> {
        let mut start = 0;
        while start < n {
            let end = n.min(start + SIZE_CHECK_EVERY as ffi::Py_ssize_t);
            for i in start..end {
                item(self, i)?;
            }
            self.room(0)?;
            start = end;
        }
        Ok(())
    }

    /// # Safety
    /// `ptr` is an exact tuple; GIL held.
    #[inline(never)]
    unsafe fn tuple(&mut self, ptr: *mut ffi::PyObject, depth: u32) -> PyResult<()> {
        self.check_depth(depth)?;
        let n = ffi::PyTuple_Size(ptr);
        self.header(T_TUPLE, n);
        // Items are borrowed: the tuple is immutable and alive.
        self.items(n, |this, i| {
            this.value::<false>(ffi::PyTuple_GetItem(ptr, i), depth + 1)
        })
    }

    /// # Safety
    /// `ptr` is an exact list; GIL held.
    #[inline(never)]
    unsafe fn list(&mut self, ptr: *mut ffi::PyObject, depth: u32) -> PyResult<()> {
        self.check_depth(depth)?;
        let n = ffi::PyList_Size(ptr);
        self.header(T_LIST, n);
        self.items(n, |this, i| {
            let item = ffi::PyList_GetItem(ptr, i);
            if item.is_null() {
                return Err(changed_size(this.py, "list"));
            }
            this.value::<true>(item, depth + 1)
        })?;
        if ffi::PyList_Size(ptr) != n {
            return Err(changed_size(self.py, "list"));
        }
        Ok(())
    }

    /// # Safety
    /// `ptr` is an exact dict; GIL held.
    #[inline(never)]
    unsafe fn dict(&mut self, ptr: *mut ffi::PyObject, depth: u32) -> PyResult<()> {
        self.check_depth(depth)?;
        let n = ffi::PyDict_Size(ptr);
        self.header(T_DICT, n);
        let mut pos: ffi::Py_ssize_t = 0;
        let mut k: *mut ffi::PyObject = std::ptr::null_mut();
        let mut v: *mut ffi::PyObject = std::ptr::null_mut();
        let mut count: ffi::Py_ssize_t = 0;
        while ffi::PyDict_Next(ptr, &mut pos, &mut k, &mut v) != 0 {
            count += 1;
            if count > n {
                return Err(changed_size(self.py, "dict"));
            }
            let key_type = ffi::Py_TYPE(k);
            if key_type == &raw mut ffi::PyUnicode_Type || key_type == &raw mut ffi::PyLong_Type {
                // Encoding such a key runs no Python code: `v` is still
                // the dict's.
                self.value::<true>(k, depth + 1)?;
                self.value::<true>(v, depth + 1)?;
            } else {
                let value = Held::new(v);
                self.value::<true>(k, depth + 1)?;
                self.value::<true>(value.0, depth + 1)?;
            }
            if (count as usize).is_multiple_of(SIZE_CHECK_EVERY) {
                self.room(0)?;
            }
        }
        if count != n || ffi::PyDict_Size(ptr) != n {
            return Err(changed_size(self.py, "dict"));
        }
        self.room(0)
    }

    /// # Safety
    /// `ptr` is an exact set or frozenset; GIL held.
    #[inline(never)]
    unsafe fn set(&mut self, ptr: *mut ffi::PyObject, tag: u8, depth: u32) -> PyResult<()> {
        self.check_depth(depth)?;
        let py = self.py;
        let n = ffi::PySet_Size(ptr);
        self.header(tag, n);
        let iterator = Bound::from_owned_ptr_or_err(py, ffi::PyObject_GetIter(ptr))?;
        // The iterator's own `__next__`, called without `PyIter_Next`'s
        // checks around it (allowed on static types from Python 3.10).
        let next = ffi::PyType_GetSlot(ffi::Py_TYPE(iterator.as_ptr()), ffi::Py_tp_iternext);
        if next.is_null() {
            return Err(EncodeError::new_err("set iterator without __next__"));
        }
        let next = std::mem::transmute::<*mut std::ffi::c_void, ffi::iternextfunc>(next);
        let mut count: ffi::Py_ssize_t = 0;
        loop {
            let item = next(iterator.as_ptr());
            if item.is_null() {
                if !ffi::PyErr_Occurred().is_null() {
                    return Err(changed_size(py, "set"));
                }
                break;
            }
            // The iterator's new reference, held while the item is encoded.
            let item = Held(item);
            count += 1;
            if count > n {
                return Err(changed_size(py, "set"));
            }
            self.value::<false>(item.0, depth + 1)?;
            if (count as usize).is_multiple_of(SIZE_CHECK_EVERY) {
                self.room(0)?;
            }
        }
        if count != n {
            return Err(changed_size(py, "set"));
        }
        self.room(0)
    }
}
