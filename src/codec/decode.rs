//! Decoder for the payload described in `format.rs`. Every length is
//! checked against the remaining input before anything is allocated, and
//! nesting is bounded; a payload that could pass the memory or object
//! budget has been priced by `scan.rs` before it gets here. Items of a tuple, list or set are decoded onto a private stack
//! first, so that no half-filled container is ever visible to Python code
//! (an extension's `from_state` runs in the middle of decoding), and set
//! elements and dict keys whose hash can be chosen are checked for hash
//! flooding before they are inserted.

use std::sync::Arc;

use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyInt, PyTuple};

use super::budget::Exceeded;
use super::format::*;
use super::registry::{ExtEntry, Registry};
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
    /// Hash collisions still allowed (`max_hash_collisions`).
    collisions_left: usize,
    /// Values decoded so far whose hash can be chosen by whoever wrote the
    /// bytes (see `budget.rs`). A set or dict compares it before and after
    /// its keys: no cost per item elsewhere. Items nested in a key count
    /// too, which at worst makes the check run for nothing.
    computable_hashes: usize,
    /// Scratch space for the hash-flooding check.
    hashes: Vec<ffi::Py_hash_t>,
    /// The last tzinfo built, and its encoding.
    last_tz: Option<(&'a [u8], Bound<'py, PyAny>)>,
}

/// Whether the int whose zigzag encoding is `zigzag` may share its hash
/// with many others: only if `|v| >= 2**61`. Below, an int is its own hash
/// (mod 2**61 - 1), so at most 0, ±(2**61 - 1) and -1, -2 pair up.
#[inline]
fn int_hash_computable(zigzag: u64) -> bool {
    zigzag >> 62 != 0
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
            collisions_left: codec.limits.max_hash_collisions,
            computable_hashes: 0,
            hashes: Vec::new(),
            last_tz: None,
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

    #[cold]
    #[inline(never)]
    fn flooded(&self) -> PyErr {
        DecodeError::new_err(format!(
            "value refused: it holds {}",
            Exceeded::Collisions.describe(&self.codec.limits)
        ))
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
                    let zigzag = self.varint()?;
                    self.computable_hashes += usize::from(int_hash_computable(zigzag));
                    self.owned(ffi::PyLong_FromLongLong(unzigzag(zigzag)))
                }
                T_TUPLE | T_LIST | T_SET | T_FROZENSET => self.sequence(tag, depth),
                T_NONE => Ok(py.None().into_bound(py)),
                T_FALSE => Ok(PyBool::new(py, false).to_owned().into_any()),
                T_TRUE => Ok(PyBool::new(py, true).to_owned().into_any()),
                T_FLOAT => {
                    let raw = self.take(8)?;
                    self.computable_hashes += 1;
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
        self.check_depth(depth)?;
        let n = self.count(1)?;
        let base = self.stack.len();
        self.stack.reserve(n);
        let computable_before = self.computable_hashes;
        for _ in 0..n {
            let v = self.value(depth + 1)?;
            self.stack.push(v);
        }
        let computable = self.computable_hashes != computable_before;
        self.build_sequence(tag, base, computable)
    }

    /// Second half of `sequence` (inlined: a call per container costs more
    /// than the few bytes of stack frame it would save).
    #[inline(always)]
    fn build_sequence(
        &mut self,
        tag: u8,
        base: usize,
        computable: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = self.py;
        let n = self.stack.len() - base;
        if (tag == T_SET || tag == T_FROZENSET) && computable {
            self.check_collisions(base, 1)?;
        }
        // SAFETY: GIL held; fresh containers of exactly n slots; SetItem
        // steals the item references.
        let value = unsafe {
            match tag {
                T_TUPLE => {
                    let t = self.owned(ffi::PyTuple_New(n as ffi::Py_ssize_t))?;
                    for (i, item) in self.stack.drain(base..).enumerate() {
                        ffi::PyTuple_SetItem(t.as_ptr(), i as ffi::Py_ssize_t, item.into_ptr());
                    }
                    t
                }
                T_LIST => {
                    let l = self.owned(ffi::PyList_New(n as ffi::Py_ssize_t))?;
                    for (i, item) in self.stack.drain(base..).enumerate() {
                        ffi::PyList_SetItem(l.as_ptr(), i as ffi::Py_ssize_t, item.into_ptr());
                    }
                    l
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
                    s
                }
            }
        };
        // A tuple's or frozenset's hash mixes its items' hashes.
        self.computable_hashes += usize::from(tag == T_TUPLE || tag == T_FROZENSET);
        Ok(value)
    }

    /// Counts the items of the stack from `base` (every `step`-th: dict
    /// keys) whose hash equals another's, before they are inserted.
    #[inline(never)]
    fn check_collisions(&mut self, base: usize, step: usize) -> PyResult<()> {
        self.hashes.clear();
        for item in self.stack[base..].iter().step_by(step) {
            // SAFETY: GIL held, live object.
            let h = unsafe { ffi::PyObject_Hash(item.as_ptr()) };
            if h == -1 {
                if let Some(e) = PyErr::take(self.py) {
                    return Err(e);
                }
            }
            self.hashes.push(h);
        }
        self.hashes.sort_unstable();
        let repeats = self.hashes.windows(2).filter(|w| w[0] == w[1]).count();
        self.collisions_left = self
            .collisions_left
            .checked_sub(repeats)
            .ok_or_else(|| self.flooded())?;
        Ok(())
    }

    /// Pairs are inserted as they come while every key so far hashes safely
    /// (the common str-keyed dict costs nothing more); from the first key
    /// whose hash can be chosen on, they wait on the stack, in order, until
    /// their keys are checked for hash flooding.
    #[inline(never)]
    fn dict(&mut self, depth: u32) -> PyResult<Bound<'py, PyAny>> {
        let py = self.py;
        self.check_depth(depth)?;
        let n = self.count(2)?;
        let d = PyDict::new(py);
        let base = self.stack.len();
        let mut staging = false;
        for _ in 0..n {
            let before = self.computable_hashes;
            let k = self.value(depth + 1)?;
            staging |= self.computable_hashes != before;
            let v = self.value(depth + 1)?;
            if staging {
                self.stack.push(k);
                self.stack.push(v);
            } else {
                set_item(&d, &k, &v)?;
            }
        }
        if staging {
            self.insert_staged(&d, base)?;
        }
        Ok(d.into_any())
    }

    /// Second half of `dict`, out of line so that its recursive half's
    /// stack frame stays small.
    #[inline(never)]
    fn insert_staged(&mut self, d: &Bound<'py, PyDict>, base: usize) -> PyResult<()> {
        self.check_collisions(base, 2)?;
        let mut pairs = self.stack.drain(base..);
        while let (Some(k), Some(v)) = (pairs.next(), pairs.next()) {
            set_item(d, &k, &v)?;
        }
        Ok(())
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
                self.computable_hashes += 1;
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
                self.computable_hashes += 1;
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

    /// The tzinfo of a datetime or time. A value's datetimes usually share
    /// one tzinfo: the last one built is reused when its encoding repeats
    /// (`scan.rs` charges it all the same).
    fn tz(&mut self, std: &StdTypes) -> PyResult<Bound<'py, PyAny>> {
        let py = self.py;
        let start = self.pos;
        let kind = self.byte()?;
        let (offset_us, text) = match kind {
            TZ_NONE => return Ok(py.None().into_bound(py)),
            TZ_OFFSET => (unzigzag(self.varint()?), ""),
            TZ_OFFSET_NAMED => (unzigzag(self.varint()?), self.utf8()?),
            TZ_ZONEINFO => (0, self.utf8()?),
            _ => return Err(err("unknown tzinfo kind")),
        };
        let raw = &self.data[start..self.pos];
        if let Some((last_raw, last)) = &self.last_tz {
            if *last_raw == raw {
                return Ok(last.clone());
            }
        }
        let tz = if kind == TZ_ZONEINFO {
            std.zoneinfo.bind(py).call1((text,))?
        } else {
            let delta = std.timedelta.bind(py).call1((0, 0, offset_us))?;
            if kind == TZ_OFFSET {
                std.timezone.bind(py).call1((delta,))?
            } else {
                std.timezone.bind(py).call1((delta, text))?
            }
        };
        self.last_tz = Some((raw, tz.clone()));
        Ok(tz)
    }

    #[inline(never)]
    fn ext(&mut self, depth: u32) -> PyResult<Bound<'py, PyAny>> {
        self.check_depth(depth)?;
        let entry = self.ext_entry()?;
        let state = self.value(depth + 1)?;
        self.build_extension(&entry, state)
    }

    /// The registered type named by the tag. Out of line, like
    /// `build_extension`, so that `ext`'s recursive frame stays small.
    #[inline(never)]
    fn ext_entry(&mut self) -> PyResult<Arc<ExtEntry>> {
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
        Ok(entry)
    }

    #[inline(never)]
    fn build_extension(
        &mut self,
        entry: &ExtEntry,
        state: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let value = entry.from_state.bind(self.py).call1((state,))?;
        // Whatever it is, its hash is its own __hash__.
        self.computable_hashes += 1;
        Ok(value)
    }
}

#[inline]
fn set_item(d: &Bound<'_, PyDict>, k: &Bound<'_, PyAny>, v: &Bound<'_, PyAny>) -> PyResult<()> {
    // SAFETY: GIL held, live objects; SetItem does not steal.
    if unsafe { ffi::PyDict_SetItem(d.as_ptr(), k.as_ptr(), v.as_ptr()) } < 0 {
        return Err(PyErr::fetch(d.py()));
    }
    Ok(())
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
