//! Encoder: exact-type dispatch (commonest types first, like pydantic-core's
//! `ob_type.rs`), raw limited-API FFI on the hot paths. It stops as soon as
//! the output passes `max_decoded_bytes`; the frame prices what it wrote
//! against the decode budgets (`scan.rs`).

use std::sync::Arc;

use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString, PyTuple};
use pyo3::Borrowed;

use super::format::*;
use super::registry::{ExtEntry, Registry};
use super::types::StdTypes;
use super::Codec;
use crate::errors::EncodeError;

pub(super) struct Encoder<'a, 'py> {
    py: Python<'py>,
    codec: &'a Codec,
    /// Owned while encoding (one indirection less on every write).
    out: Vec<u8>,
    registry: Option<Arc<Registry>>,
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
const SHORT_WRITE: usize = 1024;

pub(super) fn depth_error(max_depth: u32) -> PyErr {
    EncodeError::new_err(format!(
        "maximum nesting depth {max_depth} exceeded (cyclic or too deeply nested structure)"
    ))
}

fn changed_size(py: Python<'_>, what: &str) -> PyErr {
    // Discard whatever error the C API left behind (IndexError, RuntimeError).
    drop(PyErr::take(py));
    EncodeError::new_err(format!("{what} changed size during encoding"))
}

#[inline]
fn write_bytes(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
    out.push(tag);
    write_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// UTF-8 view of an exact `str`; EncodeError for lone surrogates.
///
/// # Safety
/// `ptr` must be a live `str` object; the slice lives as long as it does.
#[inline]
unsafe fn str_utf8<'s>(py: Python<'_>, ptr: *mut ffi::PyObject) -> PyResult<&'s [u8]> {
    let mut size: ffi::Py_ssize_t = 0;
    let p = ffi::PyUnicode_AsUTF8AndSize(ptr, &mut size);
    if p.is_null() {
        let cause = PyErr::fetch(py);
        let err = EncodeError::new_err(format!(
            "str is not encodable as UTF-8 (lone surrogate?): {cause}"
        ));
        err.set_cause(py, Some(cause));
        return Err(err);
    }
    Ok(std::slice::from_raw_parts(p as *const u8, size as usize))
}

/// Total microseconds of a `datetime.timedelta`.
pub(crate) fn timedelta_us(td: &Bound<'_, PyAny>) -> PyResult<i64> {
    let py = td.py();
    let days: i64 = td.getattr(intern!(py, "days"))?.extract()?;
    let seconds: i64 = td.getattr(intern!(py, "seconds"))?.extract()?;
    let us: i64 = td.getattr(intern!(py, "microseconds"))?.extract()?;
    Ok((days * 86_400 + seconds) * 1_000_000 + us)
}

impl<'a, 'py> Encoder<'a, 'py> {
    /// Encodes the payload at the end of `out`.
    pub fn new(py: Python<'py>, codec: &'a Codec, out: Vec<u8>) -> Self {
        let start = out.len();
        Encoder {
            py,
            codec,
            out,
            registry: None,
            start,
            end: start.saturating_add(codec.limits.max_decoded_bytes),
        }
    }

    /// Encodes `obj` as the whole payload; gives the buffer back, also on
    /// error.
    pub fn encode_value(mut self, obj: &Bound<'py, PyAny>) -> (Vec<u8>, PyResult<()>) {
        let result = self.encode(obj, 0).and_then(|()| self.room(0));
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
    fn room_for(&self, n: usize) -> PyResult<()> {
        if n > SHORT_WRITE {
            self.room(n)
        } else {
            Ok(())
        }
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

    /// Fails when `n` more bytes would make the payload larger than
    /// `max_decoded_bytes`, so that a huge value is refused early (see
    /// `SIZE_CHECK_EVERY` for when it is called).
    #[inline]
    fn room(&self, n: usize) -> PyResult<()> {
        if self.out.len().saturating_add(n) > self.end {
            Err(self.too_large())
        } else {
            Ok(())
        }
    }

    #[inline]
    fn check_depth(&self, depth: u32) -> PyResult<()> {
        if depth >= self.codec.max_depth {
            Err(depth_error(self.codec.max_depth))
        } else {
            Ok(())
        }
    }

    fn encode(&mut self, obj: &Bound<'py, PyAny>, depth: u32) -> PyResult<()> {
        let ptr = obj.as_ptr();
        // SAFETY: `obj` is a live object and we hold the GIL; every FFI call
        // below is on an object whose exact type was just checked.
        unsafe {
            let tp = ffi::Py_TYPE(ptr);
            if tp == &raw mut ffi::PyUnicode_Type {
                let s = str_utf8(self.py, ptr)?;
                self.room_for(s.len())?;
                write_bytes(&mut self.out, T_STR, s);
                return Ok(());
            }
            if tp == &raw mut ffi::PyLong_Type {
                return self.encode_int(obj);
            }
            if tp == &raw mut ffi::PyTuple_Type {
                self.check_depth(depth)?;
                let n = ffi::PyTuple_Size(ptr);
                self.out.push(T_TUPLE);
                write_varint(&mut self.out, n as u64);
                return self.items(n, |this, i| {
                    // Borrowed is enough: the tuple is immutable and alive.
                    let item = Borrowed::from_ptr(this.py, ffi::PyTuple_GetItem(ptr, i));
                    this.encode(&item, depth + 1)
                });
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
            if tp == &raw mut ffi::PyFloat_Type {
                let f = ffi::PyFloat_AsDouble(ptr);
                self.out.push(T_FLOAT);
                self.out.extend_from_slice(&f.to_bits().to_le_bytes());
                return Ok(());
            }
            if tp == &raw mut ffi::PyFrozenSet_Type {
                return self.encode_set(obj, T_FROZENSET, depth);
            }
            if tp == &raw mut ffi::PyList_Type {
                return self.encode_list(ptr, depth);
            }
            if tp == &raw mut ffi::PyDict_Type {
                return self.encode_dict(ptr, depth);
            }
            if tp == &raw mut ffi::PySet_Type {
                return self.encode_set(obj, T_SET, depth);
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
        }
        self.encode_other(obj, depth)
    }

    /// # Safety
    /// `ptr` must be an exact list object; GIL held.
    #[inline(never)]
    unsafe fn encode_list(&mut self, ptr: *mut ffi::PyObject, depth: u32) -> PyResult<()> {
        self.check_depth(depth)?;
        let n = ffi::PyList_Size(ptr);
        self.out.push(T_LIST);
        write_varint(&mut self.out, n as u64);
        self.items(n, |this, i| {
            let item = ffi::PyList_GetItem(ptr, i);
            if item.is_null() {
                return Err(changed_size(this.py, "list"));
            }
            // Strong reference: an extension's to_state may mutate the list.
            let item = Bound::from_borrowed_ptr(this.py, item);
            this.encode(&item, depth + 1)
        })?;
        if ffi::PyList_Size(ptr) != n {
            return Err(changed_size(self.py, "list"));
        }
        Ok(())
    }

    /// # Safety
    /// `ptr` must be an exact dict object; GIL held.
    #[inline(never)]
    unsafe fn encode_dict(&mut self, ptr: *mut ffi::PyObject, depth: u32) -> PyResult<()> {
        self.check_depth(depth)?;
        let n = ffi::PyDict_Size(ptr);
        self.out.push(T_DICT);
        write_varint(&mut self.out, n as u64);
        let mut pos: ffi::Py_ssize_t = 0;
        let mut k: *mut ffi::PyObject = std::ptr::null_mut();
        let mut v: *mut ffi::PyObject = std::ptr::null_mut();
        let mut count: ffi::Py_ssize_t = 0;
        while ffi::PyDict_Next(ptr, &mut pos, &mut k, &mut v) != 0 {
            count += 1;
            if count > n {
                return Err(changed_size(self.py, "dict"));
            }
            let key = Bound::from_borrowed_ptr(self.py, k);
            let value = Bound::from_borrowed_ptr(self.py, v);
            self.encode(&key, depth + 1)?;
            self.encode(&value, depth + 1)?;
            if (count as usize).is_multiple_of(SIZE_CHECK_EVERY) {
                self.room(0)?;
            }
        }
        if count != n || ffi::PyDict_Size(ptr) != n {
            return Err(changed_size(self.py, "dict"));
        }
        self.room(0)
    }

    fn encode_int(&mut self, obj: &Bound<'py, PyAny>) -> PyResult<()> {
        let mut overflow: std::os::raw::c_int = 0;
        // SAFETY: exact int, GIL held.
        let v = unsafe { ffi::PyLong_AsLongLongAndOverflow(obj.as_ptr(), &mut overflow) };
        if overflow == 0 {
            if v == -1 {
                if let Some(err) = PyErr::take(self.py) {
                    return Err(err);
                }
            }
            if (0..=SMALLINT_MAX).contains(&v) {
                self.out.push(T_SMALLINT | v as u8);
            } else {
                self.out.push(T_INT);
                write_zvarint(&mut self.out, v);
            }
            return Ok(());
        }
        self.encode_bigint(obj, overflow < 0)
    }

    #[inline(never)]
    fn encode_bigint(&mut self, obj: &Bound<'py, PyAny>, negative: bool) -> PyResult<()> {
        let py = self.py;
        let (tag, magnitude) = if negative {
            (T_BIGINT_NEG, obj.neg()?)
        } else {
            (T_BIGINT_POS, obj.clone())
        };
        let nbits: usize = magnitude
            .call_method0(intern!(py, "bit_length"))?
            .extract()?;
        let nbytes = nbits.div_ceil(8);
        self.room(nbytes)?;
        let raw =
            magnitude.call_method1(intern!(py, "to_bytes"), (nbytes, intern!(py, "little")))?;
        write_bytes(&mut self.out, tag, raw.cast::<PyBytes>()?.as_bytes());
        Ok(())
    }

    #[inline(never)]
    fn encode_set(&mut self, obj: &Bound<'py, PyAny>, tag: u8, depth: u32) -> PyResult<()> {
        self.check_depth(depth)?;
        let py = self.py;
        let ptr = obj.as_ptr();
        // SAFETY: exact set/frozenset, GIL held; PyIter_Next returns new refs.
        unsafe {
            let n = ffi::PySet_Size(ptr);
            self.out.push(tag);
            write_varint(&mut self.out, n as u64);
            let it = Bound::from_owned_ptr_or_err(py, ffi::PyObject_GetIter(ptr))?;
            let mut count: ffi::Py_ssize_t = 0;
            loop {
                let item = ffi::PyIter_Next(it.as_ptr());
                if item.is_null() {
                    if !ffi::PyErr_Occurred().is_null() {
                        return Err(changed_size(py, "set"));
                    }
                    break;
                }
                let item = Bound::from_owned_ptr(py, item);
                count += 1;
                if count > n {
                    return Err(changed_size(py, "set"));
                }
                self.encode(&item, depth + 1)?;
                if (count as usize).is_multiple_of(SIZE_CHECK_EVERY) {
                    self.room(0)?;
                }
            }
            if count != n {
                return Err(changed_size(py, "set"));
            }
        }
        self.room(0)
    }

    #[inline(never)]
    fn encode_other(&mut self, obj: &Bound<'py, PyAny>, depth: u32) -> PyResult<()> {
        let py = self.py;
        let tp = obj.get_type_ptr() as usize;
        let std = self.codec.std_types(py)?;
        if tp == std.datetime_ptr {
            return self.encode_datetime(obj, std);
        }
        if tp == std.date_ptr {
            let year: u16 = obj.getattr(intern!(py, "year"))?.extract()?;
            let month: u8 = obj.getattr(intern!(py, "month"))?.extract()?;
            let day: u8 = obj.getattr(intern!(py, "day"))?.extract()?;
            self.out.push(T_DATE);
            self.out.extend_from_slice(&year.to_le_bytes());
            self.out.extend_from_slice(&[month, day]);
            return Ok(());
        }
        if tp == std.time_ptr {
            return self.encode_time(obj, std);
        }
        if tp == std.decimal_ptr {
            let s = obj.str()?;
            let s = s.to_str()?.as_bytes();
            self.room(s.len())?;
            write_bytes(&mut self.out, T_DECIMAL, s);
            return Ok(());
        }
        let registry = self
            .registry
            .get_or_insert_with(|| self.codec.registry_snapshot());
        if let Some(entry) = registry.by_type.get(&tp).cloned() {
            return self.encode_ext(obj, &entry, depth);
        }
        Err(unsupported(obj, std))
    }

    #[inline(never)]
    fn encode_ext(
        &mut self,
        obj: &Bound<'py, PyAny>,
        entry: &ExtEntry,
        depth: u32,
    ) -> PyResult<()> {
        self.check_depth(depth)?;
        write_bytes(&mut self.out, T_EXT, entry.tag.as_bytes());
        let state = entry.to_state.bind(self.py).call1((obj,))?;
        self.encode(&state, depth + 1)
    }

    fn encode_datetime(&mut self, obj: &Bound<'py, PyAny>, std: &StdTypes) -> PyResult<()> {
        let py = self.py;
        let year: u16 = obj.getattr(intern!(py, "year"))?.extract()?;
        let fields = [
            intern!(py, "month"),
            intern!(py, "day"),
            intern!(py, "hour"),
            intern!(py, "minute"),
            intern!(py, "second"),
        ];
        self.out.push(T_DATETIME);
        self.out.extend_from_slice(&year.to_le_bytes());
        for name in fields {
            let v: u8 = obj.getattr(name)?.extract()?;
            self.out.push(v);
        }
        self.encode_time_tail(obj, std)
    }

    fn encode_time(&mut self, obj: &Bound<'py, PyAny>, std: &StdTypes) -> PyResult<()> {
        let py = self.py;
        self.out.push(T_TIME);
        for name in [
            intern!(py, "hour"),
            intern!(py, "minute"),
            intern!(py, "second"),
        ] {
            let v: u8 = obj.getattr(name)?.extract()?;
            self.out.push(v);
        }
        self.encode_time_tail(obj, std)
    }

    /// microsecond, fold, tzinfo: shared by datetime and time.
    fn encode_time_tail(&mut self, obj: &Bound<'py, PyAny>, std: &StdTypes) -> PyResult<()> {
        let py = self.py;
        let us: u32 = obj.getattr(intern!(py, "microsecond"))?.extract()?;
        let fold: u8 = obj.getattr(intern!(py, "fold"))?.extract()?;
        write_varint(&mut self.out, u64::from(us));
        self.out.push(fold);
        let tz = obj.getattr(intern!(py, "tzinfo"))?;
        self.encode_tz(&tz, std)
    }

    fn encode_tz(&mut self, tz: &Bound<'py, PyAny>, std: &StdTypes) -> PyResult<()> {
        let py = self.py;
        if tz.is_none() {
            self.out.push(TZ_NONE);
            return Ok(());
        }
        let tp = tz.get_type_ptr() as usize;
        if tp == std.timezone_ptr {
            let args = tz
                .call_method0(intern!(py, "__getinitargs__"))?
                .cast_into::<PyTuple>()?;
            let offset = timedelta_us(&args.get_item(0)?)?;
            if args.len() == 1 {
                self.out.push(TZ_OFFSET);
                write_zvarint(&mut self.out, offset);
            } else {
                let name = args.get_item(1)?;
                let name = name.cast::<PyString>()?;
                // SAFETY: exact str checked by cast (str subclasses are
                // rejected by timezone() itself), GIL held.
                let bytes = unsafe { str_utf8(py, name.as_ptr())? };
                self.room_for(bytes.len())?;
                self.out.push(TZ_OFFSET_NAMED);
                write_zvarint(&mut self.out, offset);
                write_varint(&mut self.out, bytes.len() as u64);
                self.out.extend_from_slice(bytes);
            }
            return Ok(());
        }
        if tp == std.zoneinfo_ptr {
            let key = tz.getattr(intern!(py, "key"))?;
            if key.is_none() {
                return Err(EncodeError::new_err(
                    "a ZoneInfo without key (built from a file) cannot be encoded",
                ));
            }
            let key = key.cast_into::<PyString>()?;
            // SAFETY: str object, GIL held.
            let bytes = unsafe { str_utf8(py, key.as_ptr())? };
            self.room_for(bytes.len())?;
            write_bytes(&mut self.out, TZ_ZONEINFO, bytes);
            return Ok(());
        }
        Err(EncodeError::new_err(format!(
            "unsupported tzinfo type {} (only None, datetime.timezone and zoneinfo.ZoneInfo)",
            type_name(tz)
        )))
    }
}

pub(crate) fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .fully_qualified_name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "<unknown>".to_owned())
}

fn unsupported(obj: &Bound<'_, PyAny>, std: &StdTypes) -> PyErr {
    let py = obj.py();
    let name = type_name(obj);
    let builtins: [(*mut ffi::PyTypeObject, &str); 10] = [
        (&raw mut ffi::PyUnicode_Type, "str"),
        (&raw mut ffi::PyLong_Type, "int"),
        (&raw mut ffi::PyTuple_Type, "tuple"),
        (&raw mut ffi::PyFloat_Type, "float"),
        (&raw mut ffi::PyFrozenSet_Type, "frozenset"),
        (&raw mut ffi::PyList_Type, "list"),
        (&raw mut ffi::PyDict_Type, "dict"),
        (&raw mut ffi::PySet_Type, "set"),
        (&raw mut ffi::PyBytes_Type, "bytes"),
        (&raw mut ffi::PyBool_Type, "bool"),
    ];
    let mut base: Option<String> = None;
    for (tp, tname) in builtins {
        // SAFETY: static type objects, GIL held.
        if unsafe { ffi::PyObject_TypeCheck(obj.as_ptr(), tp) } != 0 {
            base = Some(tname.to_owned());
            break;
        }
    }
    if base.is_none() {
        for t in [&std.datetime, &std.date, &std.time, &std.decimal] {
            if obj.is_instance(t.bind(py)).unwrap_or(false) {
                base = Some(
                    t.bind(py)
                        .qualname()
                        .map(|n| n.to_string())
                        .unwrap_or_default(),
                );
                break;
            }
        }
    }
    match base {
        Some(b) => EncodeError::new_err(format!(
            "{name} is a subclass of {b} and is not registered with Codec.register_type \
             (it would decode as {b})"
        )),
        None => EncodeError::new_err(format!("type {name} is not supported by the codec")),
    }
}
