//! Decoder for the payload described in `format.rs`. Every length is
//! checked against the remaining input before anything is allocated, nesting
//! is bounded, and items of a tuple/list/set are decoded onto a private stack
//! first so that no half-filled container is ever visible to Python code
//! (an extension's `from_state` runs in the middle of decoding).

use std::sync::Arc;

use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyInt, PyTuple};

use super::format::*;
use super::registry::Registry;
use super::types::StdTypes;
use super::Codec;
use crate::errors::DecodeError;

pub(super) struct Decoder<'a, 'py> {
    py: Python<'py>,
    codec: &'a Codec,
    data: &'a [u8],
    pos: usize,
    stack: Vec<Bound<'py, PyAny>>,
    registry: Option<Arc<Registry>>,
}

#[cold]
fn err(msg: &str) -> PyErr {
    DecodeError::new_err(msg.to_owned())
}

#[cold]
fn truncated() -> PyErr {
    DecodeError::new_err("truncated input")
}

impl<'a, 'py> Decoder<'a, 'py> {
    pub fn new(py: Python<'py>, codec: &'a Codec, data: &'a [u8]) -> Self {
        Decoder {
            py,
            codec,
            data,
            pos: 0,
            stack: Vec::new(),
            registry: None,
        }
    }

    /// Decodes exactly one value spanning the whole input.
    pub fn decode_all(mut self) -> PyResult<Bound<'py, PyAny>> {
        let value = self.value(0)?;
        if self.pos != self.data.len() {
            return Err(err("trailing bytes after the value"));
        }
        Ok(value)
    }

    #[inline]
    fn byte(&mut self) -> PyResult<u8> {
        let b = *self.data.get(self.pos).ok_or_else(truncated)?;
        self.pos += 1;
        Ok(b)
    }

    #[inline]
    fn varint(&mut self) -> PyResult<u64> {
        read_varint(self.data, &mut self.pos).ok_or_else(|| err("truncated or overlong varint"))
    }

    #[inline]
    fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    #[inline]
    fn take(&mut self, n: usize) -> PyResult<&'a [u8]> {
        if n > self.remaining() {
            return Err(truncated());
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// A count of items each needing at least `min_item` bytes of input.
    #[inline]
    fn count(&mut self, min_item: usize) -> PyResult<usize> {
        let n = self.varint()?;
        if n > (self.remaining() / min_item) as u64 {
            return Err(err("declared length exceeds the input"));
        }
        Ok(n as usize)
    }

    #[inline]
    fn bytes_field(&mut self) -> PyResult<&'a [u8]> {
        let n = self.count(1)?;
        self.take(n)
    }

    #[inline]
    fn check_depth(&self, depth: u32) -> PyResult<()> {
        if depth >= self.codec.max_depth {
            Err(DecodeError::new_err(format!(
                "maximum nesting depth {} exceeded",
                self.codec.max_depth
            )))
        } else {
            Ok(())
        }
    }

    #[inline]
    fn owned(&self, ptr: *mut ffi::PyObject) -> PyResult<Bound<'py, PyAny>> {
        // SAFETY: `ptr` is a new reference (or NULL with an exception set).
        unsafe { Bound::from_owned_ptr_or_err(self.py, ptr) }
    }

    /// Hot path: scalars inline; containers and rare types out of line so
    /// that each recursion level costs as little native stack as possible.
    fn value(&mut self, depth: u32) -> PyResult<Bound<'py, PyAny>> {
        let py = self.py;
        let tag = self.byte()?;
        // SAFETY (all FFI calls below): GIL held; constructors return new
        // references or NULL with an exception, handled by `owned`.
        unsafe {
            if tag >= T_SMALLINT {
                return self.owned(ffi::PyLong_FromLong((tag & 0x7F) as std::os::raw::c_long));
            }
            match tag {
                T_STR => {
                    let s = self.bytes_field()?;
                    self.owned(ffi::PyUnicode_DecodeUTF8(
                        s.as_ptr() as *const std::os::raw::c_char,
                        s.len() as ffi::Py_ssize_t,
                        std::ptr::null(),
                    ))
                }
                T_INT => {
                    let v = unzigzag(self.varint()?);
                    self.owned(ffi::PyLong_FromLongLong(v))
                }
                T_TUPLE | T_LIST | T_SET | T_FROZENSET => self.sequence(tag, depth),
                T_NONE => Ok(py.None().into_bound(py)),
                T_FALSE => Ok(PyBool::new(py, false).to_owned().into_any()),
                T_TRUE => Ok(PyBool::new(py, true).to_owned().into_any()),
                T_FLOAT => {
                    let raw = self.take(8)?;
                    let bits = u64::from_le_bytes(raw.try_into().map_err(|_| truncated())?);
                    self.owned(ffi::PyFloat_FromDouble(f64::from_bits(bits)))
                }
                T_DICT => self.dict(depth),
                T_EXT => self.ext(depth),
                _ => self.rare(tag),
            }
        }
    }

    /// tuple, list, set, frozenset: items go to the private stack first.
    #[inline(never)]
    fn sequence(&mut self, tag: u8, depth: u32) -> PyResult<Bound<'py, PyAny>> {
        let py = self.py;
        self.check_depth(depth)?;
        let n = self.count(1)?;
        let base = self.stack.len();
        self.stack.reserve(n);
        for _ in 0..n {
            let v = self.value(depth + 1)?;
            self.stack.push(v);
        }
        // SAFETY: GIL held; fresh containers of exactly n slots; SetItem
        // steals the item references.
        unsafe {
            match tag {
                T_TUPLE => {
                    let t = self.owned(ffi::PyTuple_New(n as ffi::Py_ssize_t))?;
                    for (i, item) in self.stack.drain(base..).enumerate() {
                        ffi::PyTuple_SetItem(t.as_ptr(), i as ffi::Py_ssize_t, item.into_ptr());
                    }
                    Ok(t)
                }
                T_LIST => {
                    let l = self.owned(ffi::PyList_New(n as ffi::Py_ssize_t))?;
                    for (i, item) in self.stack.drain(base..).enumerate() {
                        ffi::PyList_SetItem(l.as_ptr(), i as ffi::Py_ssize_t, item.into_ptr());
                    }
                    Ok(l)
                }
                _ => {
                    let s = if tag == T_SET {
                        self.owned(ffi::PySet_New(std::ptr::null_mut()))?
                    } else {
                        self.owned(ffi::PyFrozenSet_New(std::ptr::null_mut()))?
                    };
                    for item in self.stack.drain(base..) {
                        if ffi::PySet_Add(s.as_ptr(), item.as_ptr()) < 0 {
                            return Err(PyErr::fetch(py));
                        }
                    }
                    Ok(s)
                }
            }
        }
    }

    #[inline(never)]
    fn dict(&mut self, depth: u32) -> PyResult<Bound<'py, PyAny>> {
        let py = self.py;
        self.check_depth(depth)?;
        let n = self.count(2)?;
        let d = PyDict::new(py);
        for _ in 0..n {
            let k = self.value(depth + 1)?;
            let v = self.value(depth + 1)?;
            // SAFETY: GIL held, live objects; SetItem does not steal.
            if unsafe { ffi::PyDict_SetItem(d.as_ptr(), k.as_ptr(), v.as_ptr()) } < 0 {
                return Err(PyErr::fetch(py));
            }
        }
        Ok(d.into_any())
    }

    /// Non-recursive, less common types.
    #[inline(never)]
    fn rare(&mut self, tag: u8) -> PyResult<Bound<'py, PyAny>> {
        let py = self.py;
        match tag {
            T_BYTES => {
                let b = self.bytes_field()?;
                Ok(PyBytes::new(py, b).into_any())
            }
            T_BIGINT_POS | T_BIGINT_NEG => {
                let raw = self.bytes_field()?;
                let v = py.get_type::<PyInt>().call_method1(
                    intern!(py, "from_bytes"),
                    (PyBytes::new(py, raw), intern!(py, "little")),
                )?;
                if tag == T_BIGINT_NEG {
                    v.neg()
                } else {
                    Ok(v)
                }
            }
            T_DATETIME => self.datetime(),
            T_DATE => {
                let raw = self.take(4)?;
                let year = u16::from_le_bytes([raw[0], raw[1]]);
                let std = self.codec.std_types(py)?;
                std.date.bind(py).call1((year, raw[2], raw[3]))
            }
            T_TIME => self.time(),
            T_DECIMAL => {
                let raw = self.bytes_field()?;
                let s = std::str::from_utf8(raw)
                    .ok()
                    .filter(|s| s.is_ascii())
                    .ok_or_else(|| err("decimal is not ASCII"))?;
                let std = self.codec.std_types(py)?;
                std.decimal.bind(py).call1((s,))
            }
            _ => Err(DecodeError::new_err(format!("unknown tag 0x{tag:02x}"))),
        }
    }

    fn fold(&mut self) -> PyResult<u8> {
        match self.byte()? {
            f @ (0 | 1) => Ok(f),
            _ => Err(err("invalid fold")),
        }
    }

    fn datetime(&mut self) -> PyResult<Bound<'py, PyAny>> {
        let py = self.py;
        let raw = self.take(7)?;
        let year = u16::from_le_bytes([raw[0], raw[1]]);
        let us = self.varint()?;
        let fold = self.fold()?;
        let std = self.codec.std_types(py)?;
        let tz = self.tz(std)?;
        let args = (year, raw[2], raw[3], raw[4], raw[5], raw[6], us, tz).into_pyobject(py)?;
        construct_with_fold(std.datetime.bind(py), &args, fold)
    }

    fn time(&mut self) -> PyResult<Bound<'py, PyAny>> {
        let py = self.py;
        let raw = self.take(3)?;
        let us = self.varint()?;
        let fold = self.fold()?;
        let std = self.codec.std_types(py)?;
        let tz = self.tz(std)?;
        let args = (raw[0], raw[1], raw[2], us, tz).into_pyobject(py)?;
        construct_with_fold(std.time.bind(py), &args, fold)
    }

    fn utf8(&mut self) -> PyResult<&'a str> {
        let raw = self.bytes_field()?;
        std::str::from_utf8(raw).map_err(|_| err("invalid UTF-8"))
    }

    fn tz(&mut self, std: &StdTypes) -> PyResult<Bound<'py, PyAny>> {
        let py = self.py;
        match self.byte()? {
            TZ_NONE => Ok(py.None().into_bound(py)),
            TZ_OFFSET => {
                let off = self.offset(std)?;
                std.timezone.bind(py).call1((off,))
            }
            TZ_OFFSET_NAMED => {
                let off = self.offset(std)?;
                let name = self.utf8()?;
                std.timezone.bind(py).call1((off, name))
            }
            TZ_ZONEINFO => {
                let key = self.utf8()?;
                std.zoneinfo.bind(py).call1((key,))
            }
            _ => Err(err("unknown tzinfo kind")),
        }
    }

    fn offset(&mut self, std: &StdTypes) -> PyResult<Bound<'py, PyAny>> {
        let py = self.py;
        let us = unzigzag(self.varint()?);
        let kwargs = PyDict::new(py);
        kwargs.set_item(intern!(py, "microseconds"), us)?;
        std.timedelta.bind(py).call((), Some(&kwargs))
    }

    #[inline(never)]
    fn ext(&mut self, depth: u32) -> PyResult<Bound<'py, PyAny>> {
        let py = self.py;
        self.check_depth(depth)?;
        let tag = self.bytes_field()?;
        let registry = self
            .registry
            .get_or_insert_with(|| self.codec.registry_snapshot());
        let entry = std::str::from_utf8(tag)
            .ok()
            .and_then(|t| registry.by_tag.get(t))
            .cloned()
            .ok_or_else(|| {
                DecodeError::new_err(format!(
                    "unknown extension tag {:?}",
                    String::from_utf8_lossy(tag)
                ))
            })?;
        let state = self.value(depth + 1)?;
        entry.from_state.bind(py).call1((state,))
    }
}

/// `cls(*args)`, or `cls(*args, fold=1)`: `fold` is keyword-only.
fn construct_with_fold<'py>(
    cls: &Bound<'py, PyAny>,
    args: &Bound<'py, PyTuple>,
    fold: u8,
) -> PyResult<Bound<'py, PyAny>> {
    if fold == 0 {
        return cls.call1(args);
    }
    let py = cls.py();
    let kwargs = PyDict::new(py);
    kwargs.set_item(intern!(py, "fold"), 1)?;
    cls.call(args, Some(&kwargs))
}
