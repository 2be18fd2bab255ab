//! Decoder for the payload described in `format.rs`. Every length is
//! checked against the remaining input before anything is allocated, and
//! nesting is bounded; a payload that could pass the memory or object
//! budget has been priced by `scan.rs` before it gets here.
//!
//! Scalars (small ints from a table, ints and short strings from the
//! tables of recent ones, floats, None, bools) are built inline in the loop of the
//! container that holds them; containers and the other types go through
//! `nested`, the one recursive step (the other types: `decode_other.rs`).
//! Items of a tuple or list are decoded onto a private stack first, so that
//! no half-filled tuple or list (empty slots) is ever visible to Python
//! code (an extension's `from_state` runs in the middle of decoding); set
//! elements and dict keys are inserted as they come until one whose hash
//! can be chosen appears, then wait on the stack until they are checked
//! for hash flooding.

use std::sync::Arc;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict};

use super::budget::Exceeded;
use super::format::*;
use super::object_cache::{decode_utf8, new_int, Recent, SmallInts, STR_MAX_LEN};
use super::registry::Registry;
use super::Codec;
use crate::errors::DecodeError;

pub(super) struct Decoder<'a, 'py> {
    pub(super) py: Python<'py>,
    pub(super) codec: &'a Codec,
    data: &'a [u8],
    pos: usize,
    stack: Vec<Bound<'py, PyAny>>,
    pub(super) registry: Option<Arc<Registry>>,
    small_ints: &'static SmallInts,
    /// The codec's tables of recent strings and ints, when no other
    /// decode holds them.
    recent: Option<&'a mut Recent>,
    /// Hash collisions still allowed (`max_hash_collisions`).
    collisions_left: usize,
    /// Values decoded so far whose hash can be chosen by whoever wrote the
    /// bytes (see `budget.rs`). A set or dict compares it before and after
    /// its keys: no cost per item elsewhere. Items nested in a key count
    /// too, which at worst makes the check run for nothing.
    pub(super) computable_hashes: usize,
    /// Scratch space for the hash-flooding check.
    hashes: Vec<ffi::Py_hash_t>,
    /// The last tzinfo built, and its encoding.
    pub(super) last_tz: Option<(&'a [u8], Bound<'py, PyAny>)>,
}

/// Whether the int whose zigzag encoding is `zigzag` may share its hash
/// with many others: only if `|v| >= 2**61`. Below, an int is its own hash
/// (mod 2**61 - 1), so at most 0, ±(2**61 - 1) and -1, -2 pair up.
#[inline]
fn int_hash_computable(zigzag: u64) -> bool {
    zigzag >> 62 != 0
}

#[cold]
pub(super) fn err(msg: &str) -> PyErr {
    DecodeError::new_err(msg.to_owned())
}

#[cold]
pub(super) fn truncated() -> PyErr {
    DecodeError::new_err("truncated input")
}

impl<'a, 'py> Decoder<'a, 'py> {
    pub fn new(
        py: Python<'py>,
        codec: &'a Codec,
        small_ints: &'static SmallInts,
        mut recent: Option<&'a mut Recent>,
        data: &'a [u8],
    ) -> Self {
        let stack = recent
            .as_deref_mut()
            .map(Recent::take_stack)
            .unwrap_or_default();
        Decoder {
            py,
            codec,
            data,
            pos: 0,
            stack,
            registry: None,
            small_ints,
            recent,
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
    pub(super) fn byte(&mut self) -> PyResult<u8> {
        let b = *self.data.get(self.pos).ok_or_else(truncated)?;
        self.pos += 1;
        Ok(b)
    }

    #[inline]
    pub(super) fn varint(&mut self) -> PyResult<u64> {
        read_varint(self.data, &mut self.pos).ok_or_else(|| err("truncated or overlong varint"))
    }

    #[inline]
    fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    #[inline]
    pub(super) fn take(&mut self, n: usize) -> PyResult<&'a [u8]> {
        if n > self.remaining() {
            return Err(truncated());
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// Where the next value starts: `data[start..pos]` is what was read since.
    #[inline]
    pub(super) fn read_since(&self, start: usize) -> &'a [u8] {
        &self.data[start..self.pos]
    }

    #[inline]
    pub(super) fn position(&self) -> usize {
        self.pos
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
    pub(super) fn bytes_field(&mut self) -> PyResult<&'a [u8]> {
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
    pub(super) fn check_depth(&self, depth: u32) -> PyResult<()> {
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

    /// Any value: a scalar is built here, inlined into the loop that reads
    /// it; the rest goes to `nested`.
    #[inline(always)]
    pub(super) fn value(&mut self, depth: u32) -> PyResult<Bound<'py, PyAny>> {
        let py = self.py;
        let tag = self.byte()?;
        if tag >= T_SMALLINT {
            return Ok(self.small_ints.new_ref(py, tag & 0x7F));
        }
        // SAFETY (the FFI calls): GIL held; constructors return new
        // references or NULL with an exception, handled by `owned`.
        match tag {
            T_STR => {
                let s = self.bytes_field()?;
                match &mut self.recent {
                    Some(recent) if !s.is_empty() && s.len() <= STR_MAX_LEN => recent.str(py, s),
                    _ => decode_utf8(py, s),
                }
            }
            T_INT => {
                let zigzag = self.varint()?;
                self.computable_hashes += usize::from(int_hash_computable(zigzag));
                match &mut self.recent {
                    Some(recent) => recent.int(py, unzigzag(zigzag)),
                    None => new_int(py, unzigzag(zigzag)),
                }
            }
            T_FLOAT => {
                let raw = self.take(8)?;
                self.computable_hashes += 1;
                let bits = u64::from_le_bytes(raw.try_into().map_err(|_| truncated())?);
                self.owned(unsafe { ffi::PyFloat_FromDouble(f64::from_bits(bits)) })
            }
            T_NONE => Ok(py.None().into_bound(py)),
            T_FALSE => Ok(PyBool::new(py, false).to_owned().into_any()),
            T_TRUE => Ok(PyBool::new(py, true).to_owned().into_any()),
            _ => self.nested(tag, depth),
        }
    }

    /// Containers and the less common types: the recursive step.
    #[inline(never)]
    fn nested(&mut self, tag: u8, depth: u32) -> PyResult<Bound<'py, PyAny>> {
        match tag {
            T_TUPLE | T_LIST => self.sequence(tag, depth),
            T_SET | T_FROZENSET => self.set(tag, depth),
            T_DICT => self.dict(depth),
            T_EXT => self.extension(depth),
            _ => self.other(tag),
        }
    }

    /// tuple, list: items go to the private stack first.
    #[inline(never)]
    fn sequence(&mut self, tag: u8, depth: u32) -> PyResult<Bound<'py, PyAny>> {
        self.check_depth(depth)?;
        let n = self.count(1)?;
        let base = self.stack.len();
        self.stack.reserve(n);
        for _ in 0..n {
            let v = self.value(depth + 1)?;
            self.stack.push(v);
        }
        self.build_sequence(tag, base)
    }

    /// Second half of `sequence`, out of line: its frame is not part of
    /// the recursion.
    #[inline(never)]
    fn build_sequence(&mut self, tag: u8, base: usize) -> PyResult<Bound<'py, PyAny>> {
        let n = (self.stack.len() - base) as ffi::Py_ssize_t;
        // SAFETY: GIL held; a fresh container of exactly n slots, each set
        // once; SetItem steals the item references.
        unsafe {
            if tag == T_TUPLE {
                let t = self.owned(ffi::PyTuple_New(n))?;
                for (i, item) in self.stack.drain(base..).enumerate() {
                    ffi::PyTuple_SetItem(t.as_ptr(), i as ffi::Py_ssize_t, item.into_ptr());
                }
                // A tuple's hash mixes its items' hashes.
                self.computable_hashes += 1;
                Ok(t)
            } else {
                let l = self.owned(ffi::PyList_New(n))?;
                for (i, item) in self.stack.drain(base..).enumerate() {
                    ffi::PyList_SetItem(l.as_ptr(), i as ffi::Py_ssize_t, item.into_ptr());
                }
                Ok(l)
            }
        }
    }

    /// set, frozenset: elements are added as they come while every one so
    /// far hashes safely (ints below 2**61, str, bytes, ...); from the first
    /// whose hash can be chosen on, they wait on the stack until the whole
    /// set is checked for hash flooding, as a dict's keys do. A set being
    /// filled is a whole set at every step (a tuple or list would have
    /// empty slots): Python code run meanwhile may find it incomplete,
    /// never broken.
    #[inline(never)]
    fn set(&mut self, tag: u8, depth: u32) -> PyResult<Bound<'py, PyAny>> {
        self.check_depth(depth)?;
        let n = self.count(1)?;
        // SAFETY: GIL held; a new reference or NULL with an exception.
        let set = self.owned(unsafe {
            if tag == T_SET {
                ffi::PySet_New(std::ptr::null_mut())
            } else {
                ffi::PyFrozenSet_New(std::ptr::null_mut())
            }
        })?;
        let base = self.stack.len();
        let computable_before = self.computable_hashes;
        for _ in 0..n {
            let v = self.value(depth + 1)?;
            if self.computable_hashes == computable_before {
                add(&set, &v)?;
            } else {
                self.stack.push(v);
            }
        }
        if self.stack.len() > base {
            self.add_staged(&set, base)?;
        }
        // A frozenset's hash mixes its elements' hashes.
        self.computable_hashes += usize::from(tag == T_FROZENSET);
        Ok(set)
    }

    /// Second half of `set`, out of line: every element is checked for
    /// hash flooding (those added already too), then the waiting ones are
    /// added.
    #[inline(never)]
    fn add_staged(&mut self, set: &Bound<'py, PyAny>, base: usize) -> PyResult<()> {
        self.hashes.clear();
        for added in set.try_iter()? {
            self.hashes.push(hash(&added?)?);
        }
        self.count_collisions(base, 1)?;
        for item in self.stack.drain(base..) {
            add(set, &item)?;
        }
        Ok(())
    }

    /// Counts the items of the stack from `base` (every `step`-th: dict
    /// keys) whose hash equals another's, or one already in `hashes`,
    /// before they are inserted.
    #[inline(never)]
    fn count_collisions(&mut self, base: usize, step: usize) -> PyResult<()> {
        for item in self.stack[base..].iter().step_by(step) {
            self.hashes.push(hash(item)?);
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
        self.hashes.clear();
        self.count_collisions(base, 2)?;
        let mut pairs = self.stack.drain(base..);
        while let (Some(k), Some(v)) = (pairs.next(), pairs.next()) {
            set_item(d, &k, &v)?;
        }
        Ok(())
    }

    /// A registered extension type: its tag, then its state.
    #[inline(never)]
    fn extension(&mut self, depth: u32) -> PyResult<Bound<'py, PyAny>> {
        self.check_depth(depth)?;
        let entry = self.extension_entry()?;
        let state = self.value(depth + 1)?;
        self.build_extension(&entry, state)
    }
}

impl Drop for Decoder<'_, '_> {
    fn drop(&mut self) {
        if let Some(recent) = self.recent.as_deref_mut() {
            recent.keep_stack(std::mem::take(&mut self.stack));
        }
    }
}

#[inline]
fn hash(item: &Bound<'_, PyAny>) -> PyResult<ffi::Py_hash_t> {
    // SAFETY: GIL held, live object.
    let h = unsafe { ffi::PyObject_Hash(item.as_ptr()) };
    if h == -1 {
        if let Some(e) = PyErr::take(item.py()) {
            return Err(e);
        }
    }
    Ok(h)
}

#[inline]
fn add(set: &Bound<'_, PyAny>, item: &Bound<'_, PyAny>) -> PyResult<()> {
    // SAFETY: GIL held, live objects; a fresh set or frozenset no other
    // code holds (PySet_Add refuses a frozenset that is shared).
    if unsafe { ffi::PySet_Add(set.as_ptr(), item.as_ptr()) } < 0 {
        return Err(PyErr::fetch(set.py()));
    }
    Ok(())
}

#[inline]
fn set_item(d: &Bound<'_, PyDict>, k: &Bound<'_, PyAny>, v: &Bound<'_, PyAny>) -> PyResult<()> {
    // SAFETY: GIL held, live objects; SetItem does not steal.
    if unsafe { ffi::PyDict_SetItem(d.as_ptr(), k.as_ptr(), v.as_ptr()) } < 0 {
        return Err(PyErr::fetch(d.py()));
    }
    Ok(())
}
