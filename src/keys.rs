//! Canonical cache keys: a deterministic byte encoding of a key, identical
//! across processes and runs (no address, no hash-seed-dependent order), and
//! its digest for Redis key names.
//!
//! Two keys that Python considers equal (and hash equally) get the same
//! bytes: `True`, `1`, `1.0` and `Decimal("1.00")` all encode as the int 1;
//! `0.5 == Decimal("0.5")` both encode as the float; aware datetimes encode
//! their UTC instant. Keys Python considers different get different bytes
//! (the encoding is prefix-free, so concatenations are unambiguous).
//!
//! # Format (version 1)
//!
//! `canonical_key(key)` = `0x01` (key format version) followed by the
//! encoding of `key`. Varints as in the codec (`codec::format`): LEB128
//! `varint`, zigzag `zvarint`.
//!
//! ```text
//! tag   used for                                  body
//! 0x00  None                                      -
//! 0x01  int in i64 range, bool, integral float,   zvarint
//!       integral finite Decimal
//! 0x02  int outside i64 range (same sources)      u8 sign (0 = +, 1 = -), varint n, n bytes magnitude LE
//! 0x03  float, not integral or not finite         8 bytes IEEE-754 bits big-endian
//!       (also a Decimal exactly equal to it)
//! 0x04  str                                       varint n, UTF-8 (lone surrogates: "surrogatepass")
//! 0x05  bytes                                     varint n, n bytes
//! 0x06  tuple                                     varint n, n encodings
//! 0x07  frozenset / set                           varint n, the n encodings sorted bytewise
//! 0x08  function / builtin function               varint n, "module.qualname"
//! 0x09  class                                     varint n, "module.qualname"
//! 0x0A  bound method                              name of __func__, name of the class of
//!                                                 __self__ (or of __self__ if it is a class)
//! 0x0B  datetime.date                             zvarint proleptic ordinal
//! 0x0C  naive datetime                            zvarint microseconds since ordinal 0
//! 0x0D  aware datetime                            zvarint UTC microseconds since ordinal 0
//!                                                 (offset taken with fold=0, like hash())
//! 0x0E  naive time (or utcoffset() None)          zvarint microseconds since midnight
//! 0x0F  aware time                                zvarint microseconds since midnight - offset
//! 0x10  Decimal, finite, not integral, not        u8 sign, zvarint exponent, varint n, n ASCII
//!       exactly a binary float                    digits (trailing zeros stripped)
//! 0x11  Decimal NaN                               varint n, str(value)
//! 0x12  a type registered with register_key_type  varint n, its name, then the encoding of
//!       (subclasses too; e.g. Odoo recordsets)    to_state(obj)
//! ```
//!
//! Types are matched exactly: subclasses (IntEnum, Markup, ...), lists,
//! dicts and arbitrary objects raise `EncodeError`, unless registered. Functions and
//! classes whose `__qualname__` contains `<` (lambdas, `<locals>`) are
//! refused too: their names are not unique. tzinfo must be None,
//! `datetime.timezone` or `zoneinfo.ZoneInfo`.

use pyo3::exceptions::PyException;
use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyTuple, PyType};
use pyo3::Borrowed;
use sha2::{Digest, Sha256};

use crate::codec::format::{write_varint, write_zvarint};
use crate::codec::types::StdTypes;
use crate::errors::EncodeError;
use crate::naming;

pub const KEY_FORMAT_VERSION: u8 = 1;
/// Nesting bound (tuples and frozensets) for keys.
pub const MAX_KEY_DEPTH: u32 = 64;

const K_NONE: u8 = 0x00;
const K_INT: u8 = 0x01;
const K_BIGINT: u8 = 0x02;
const K_FLOAT: u8 = 0x03;
const K_STR: u8 = 0x04;
const K_BYTES: u8 = 0x05;
const K_TUPLE: u8 = 0x06;
const K_FROZENSET: u8 = 0x07;
const K_FUNCTION: u8 = 0x08;
const K_CLASS: u8 = 0x09;
const K_METHOD: u8 = 0x0A;
const K_DATE: u8 = 0x0B;
const K_DATETIME: u8 = 0x0C;
const K_DATETIME_UTC: u8 = 0x0D;
const K_TIME: u8 = 0x0E;
const K_TIME_UTC: u8 = 0x0F;
const K_DECIMAL: u8 = 0x10;
const K_DECIMAL_NAN: u8 = 0x11;
const K_REGISTERED: u8 = 0x12;

const US_PER_SEC: i64 = 1_000_000;
const SEC_PER_DAY: i64 = 86_400;
/// Integral Decimals with more digits than this are refused (int() of
/// `Decimal("1E+999999999")` would allocate without bound).
const MAX_DECIMAL_INT_DIGITS: i64 = 4300;

struct KeyTypes {
    std: StdTypes,
    function: usize,
    builtin: usize,
    method: usize,
}

static KEY_TYPES: PyOnceLock<KeyTypes> = PyOnceLock::new();

fn key_types(py: Python<'_>) -> PyResult<&'static KeyTypes> {
    KEY_TYPES.get_or_try_init(py, || {
        let types = py.import("types")?;
        let ptr = |name: &str| -> PyResult<usize> { Ok(types.getattr(name)?.as_ptr() as usize) };
        Ok(KeyTypes {
            std: StdTypes::import(py)?,
            function: ptr("FunctionType")?,
            builtin: ptr("BuiltinFunctionType")?,
            method: ptr("MethodType")?,
        })
    })
}

fn unsupported(obj: &Bound<'_, PyAny>) -> PyErr {
    EncodeError::new_err(format!(
        "type {} cannot be part of a cache key",
        crate::codec::encode_type_name(obj)
    ))
}

#[inline]
fn write_bytes(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
    out.push(tag);
    write_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Appends the canonical encoding of `key` to `out`; EncodeError for
/// unsupported elements (then `out` is left as it was).
pub fn canonical_key(key: &Bound<'_, PyAny>, out: &mut Vec<u8>) -> PyResult<()> {
    canonical_method_key(key, None, out)
}

/// `canonical_key` of an Odoo key `(model, method, *args)` whose method's
/// qualified name the caller already holds: the same bytes, without
/// asking Python for the name again (this runs on every L2 access).
pub fn canonical_method_key(
    key: &Bound<'_, PyAny>,
    method_name: Option<&str>,
    out: &mut Vec<u8>,
) -> PyResult<()> {
    let py = key.py();
    let start = out.len();
    out.push(KEY_FORMAT_VERSION);
    let result = match method_name {
        Some(name) if naming::is_unique(name) => encode_named_method_key(key, name, out),
        _ => encode(key, out, 0),
    };
    if let Err(e) = result {
        out.truncate(start);
        // Any ordinary exception met on the way (a set mutated while being
        // read, an odd __qualname__) means "not a cacheable key".
        if e.is_instance_of::<EncodeError>(py) || !e.is_instance_of::<PyException>(py) {
            return Err(e);
        }
        let new = EncodeError::new_err(format!("cannot encode cache key: {e}"));
        new.set_cause(py, Some(e));
        return Err(new);
    }
    Ok(())
}

/// SHA-256 over (u32-LE length of namespace, namespace, canonical).
pub fn key_digest(namespace: &[u8], canonical: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update((namespace.len() as u32).to_le_bytes());
    h.update(namespace);
    h.update(canonical);
    h.finalize().into()
}

/// A key tuple whose second item is a plain function named `name`; any
/// other shape is encoded the ordinary way.
fn encode_named_method_key(key: &Bound<'_, PyAny>, name: &str, out: &mut Vec<u8>) -> PyResult<()> {
    let py = key.py();
    let items = match key.cast::<PyTuple>() {
        Ok(items) if items.len() >= 2 && key.get_type_ptr() == &raw mut ffi::PyTuple_Type => items,
        _ => return encode(key, out, 0),
    };
    let method = items.get_item(1)?;
    if method.get_type_ptr() as usize != key_types(py)?.function {
        return encode(key, out, 0);
    }
    out.push(K_TUPLE);
    write_varint(out, items.len() as u64);
    for (index, item) in items.iter().enumerate() {
        if index == 1 {
            write_bytes(out, K_FUNCTION, name.as_bytes());
        } else {
            encode(&item, out, 1)?;
        }
    }
    Ok(())
}

fn encode(obj: &Bound<'_, PyAny>, out: &mut Vec<u8>, depth: u32) -> PyResult<()> {
    let py = obj.py();
    let ptr = obj.as_ptr();
    // SAFETY: live object, GIL held, FFI calls match the exact type checked.
    unsafe {
        let tp = ffi::Py_TYPE(ptr);
        if tp == &raw mut ffi::PyUnicode_Type {
            return encode_str(obj, out);
        }
        if tp == &raw mut ffi::PyLong_Type {
            return encode_int(obj, out);
        }
        if tp == &raw mut ffi::PyTuple_Type {
            check_depth(depth)?;
            let n = ffi::PyTuple_Size(ptr);
            out.push(K_TUPLE);
            write_varint(out, n as u64);
            for i in 0..n {
                let item = Borrowed::from_ptr(py, ffi::PyTuple_GetItem(ptr, i));
                encode(&item, out, depth + 1)?;
            }
            return Ok(());
        }
        if ptr == ffi::Py_None() {
            out.push(K_NONE);
            return Ok(());
        }
        if tp == &raw mut ffi::PyBool_Type {
            out.push(K_INT);
            write_zvarint(out, i64::from(ptr == ffi::Py_True()));
            return Ok(());
        }
        if tp == &raw mut ffi::PyFrozenSet_Type || tp == &raw mut ffi::PySet_Type {
            return encode_set(obj, out, depth);
        }
        if tp == &raw mut ffi::PyFloat_Type {
            return encode_float(py, ffi::PyFloat_AsDouble(ptr), out);
        }
        if tp == &raw mut ffi::PyBytes_Type {
            let p = ffi::PyBytes_AsString(ptr);
            let n = ffi::PyBytes_Size(ptr);
            write_bytes(
                out,
                K_BYTES,
                std::slice::from_raw_parts(p as *const u8, n as usize),
            );
            return Ok(());
        }
    }
    encode_other(obj, out, depth)
}

fn check_depth(depth: u32) -> PyResult<()> {
    if depth >= MAX_KEY_DEPTH {
        Err(EncodeError::new_err(format!(
            "cache key nested deeper than {MAX_KEY_DEPTH} levels"
        )))
    } else {
        Ok(())
    }
}

fn encode_str(obj: &Bound<'_, PyAny>, out: &mut Vec<u8>) -> PyResult<()> {
    let py = obj.py();
    let mut size: ffi::Py_ssize_t = 0;
    // SAFETY: exact str, GIL held.
    let p = unsafe { ffi::PyUnicode_AsUTF8AndSize(obj.as_ptr(), &mut size) };
    if !p.is_null() {
        // SAFETY: the buffer lives as long as the str.
        let s = unsafe { std::slice::from_raw_parts(p as *const u8, size as usize) };
        write_bytes(out, K_STR, s);
        return Ok(());
    }
    // Lone surrogates: "surrogatepass" is still injective (those 3-byte
    // sequences never occur in valid UTF-8).
    drop(PyErr::take(py));
    let b = obj.call_method1(
        intern!(py, "encode"),
        (intern!(py, "utf-8"), intern!(py, "surrogatepass")),
    )?;
    write_bytes(out, K_STR, b.cast::<PyBytes>()?.as_bytes());
    Ok(())
}

fn encode_int(obj: &Bound<'_, PyAny>, out: &mut Vec<u8>) -> PyResult<()> {
    let py = obj.py();
    let mut overflow: std::os::raw::c_int = 0;
    // SAFETY: exact int (or int returned by int()), GIL held.
    let v = unsafe { ffi::PyLong_AsLongLongAndOverflow(obj.as_ptr(), &mut overflow) };
    if overflow == 0 {
        if v == -1 {
            if let Some(e) = PyErr::take(py) {
                return Err(e);
            }
        }
        out.push(K_INT);
        write_zvarint(out, v);
        return Ok(());
    }
    let negative = overflow < 0;
    let magnitude = if negative { obj.neg()? } else { obj.clone() };
    let nbits: usize = magnitude
        .call_method0(intern!(py, "bit_length"))?
        .extract()?;
    let raw = magnitude.call_method1(
        intern!(py, "to_bytes"),
        (nbits.div_ceil(8), intern!(py, "little")),
    )?;
    let raw = raw.cast::<PyBytes>()?.as_bytes();
    out.push(K_BIGINT);
    out.push(u8::from(negative));
    write_varint(out, raw.len() as u64);
    out.extend_from_slice(raw);
    Ok(())
}

fn encode_float(py: Python<'_>, f: f64, out: &mut Vec<u8>) -> PyResult<()> {
    if f.is_finite() && f.trunc() == f {
        // -2**63 is exact; 2**63 is the first value out of range.
        if (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&f) {
            out.push(K_INT);
            write_zvarint(out, f as i64); // -0.0 -> 0
            return Ok(());
        }
        // SAFETY: returns a new reference or NULL with an exception.
        let i = unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyLong_FromDouble(f))? };
        return encode_int(&i, out);
    }
    out.push(K_FLOAT);
    out.extend_from_slice(&f.to_bits().to_be_bytes());
    Ok(())
}

fn encode_set(obj: &Bound<'_, PyAny>, out: &mut Vec<u8>, depth: u32) -> PyResult<()> {
    check_depth(depth)?;
    let mut items: Vec<Vec<u8>> = Vec::new();
    for item in obj.try_iter()? {
        let mut buf = Vec::new();
        encode(&item?, &mut buf, depth + 1)?;
        items.push(buf);
    }
    items.sort_unstable();
    out.push(K_FROZENSET);
    write_varint(out, items.len() as u64);
    for item in &items {
        out.extend_from_slice(item);
    }
    Ok(())
}

/// "module.qualname" of a function or class; refuses names that do not
/// identify a single object.
fn qualified_name(obj: &Bound<'_, PyAny>) -> PyResult<String> {
    let Some(name) = naming::qualified_name(obj)? else {
        return Err(EncodeError::new_err(format!(
            "{} has no module-level name and cannot be part of a cache key",
            obj.repr()?
        )));
    };
    if !naming::is_unique(&name) {
        return Err(EncodeError::new_err(format!(
            "{name:?} (a lambda or local definition) has no unique name \
             and cannot be part of a cache key"
        )));
    }
    Ok(name)
}

fn function_name(obj: &Bound<'_, PyAny>, kt: &KeyTypes) -> PyResult<String> {
    let py = obj.py();
    let tp = obj.get_type_ptr() as usize;
    if tp == kt.builtin {
        // Builtins bound to an instance ([].append) are not identified by name.
        let owner = obj.getattr(intern!(py, "__self__"))?;
        if !owner.is_none() && !owner.is_instance_of::<pyo3::types::PyModule>() {
            return Err(unsupported(obj));
        }
    } else if tp != kt.function {
        return Err(unsupported(obj));
    }
    qualified_name(obj)
}

fn encode_other(obj: &Bound<'_, PyAny>, out: &mut Vec<u8>, depth: u32) -> PyResult<()> {
    let py = obj.py();
    let kt = key_types(py)?;
    let std = &kt.std;
    let tp = obj.get_type_ptr() as usize;
    if tp == kt.function || tp == kt.builtin {
        write_bytes(out, K_FUNCTION, function_name(obj, kt)?.as_bytes());
        return Ok(());
    }
    if tp == kt.method {
        let func = obj.getattr(intern!(py, "__func__"))?;
        let owner = obj.getattr(intern!(py, "__self__"))?;
        let owner = if owner.is_instance_of::<pyo3::types::PyType>() {
            owner
        } else {
            owner.get_type().into_any()
        };
        write_bytes(out, K_METHOD, function_name(&func, kt)?.as_bytes());
        let owner_name = qualified_name(&owner)?;
        write_varint(out, owner_name.len() as u64);
        out.extend_from_slice(owner_name.as_bytes());
        return Ok(());
    }
    if obj.is_instance_of::<pyo3::types::PyType>() {
        write_bytes(out, K_CLASS, qualified_name(obj)?.as_bytes());
        return Ok(());
    }
    if tp == std.datetime_ptr {
        return encode_datetime(obj, std, out);
    }
    if tp == std.date_ptr {
        let ordinal: i64 = obj.call_method0(intern!(py, "toordinal"))?.extract()?;
        out.push(K_DATE);
        write_zvarint(out, ordinal);
        return Ok(());
    }
    if tp == std.time_ptr {
        check_tzinfo(obj, std)?;
        let us = time_of_day_us(obj)?;
        match utcoffset_us(obj)? {
            None => {
                out.push(K_TIME);
                write_zvarint(out, us);
            }
            Some(off) => {
                out.push(K_TIME_UTC);
                write_zvarint(out, us - off);
            }
        }
        return Ok(());
    }
    if tp == std.decimal_ptr {
        return encode_decimal(obj, std, out);
    }
    encode_registered(obj, out, depth)
}

/// A type the application taught the key encoder (an Odoo recordset, keyed
/// by its model and ids as Odoo compares it): its name, then its state.
struct KeyType {
    cls: Py<PyAny>,
    name: String,
    to_state: Py<PyAny>,
}

/// Registered once at start-up by the application; every process of a
/// deployment must register the same types to compute the same keys.
static KEY_TYPES_REGISTERED: parking_lot::RwLock<Vec<KeyType>> =
    parking_lot::RwLock::new(Vec::new());

fn encode_registered(obj: &Bound<'_, PyAny>, out: &mut Vec<u8>, depth: u32) -> PyResult<()> {
    let py = obj.py();
    // Copied out: `to_state` and isinstance run Python code, never under
    // the lock.
    let registered: Vec<(Py<PyAny>, String, Py<PyAny>)> = KEY_TYPES_REGISTERED
        .read()
        .iter()
        .map(|t| {
            (
                t.cls.clone_ref(py),
                t.name.clone(),
                t.to_state.clone_ref(py),
            )
        })
        .collect();
    for (cls, name, to_state) in registered {
        if obj.is_instance(cls.bind(py))? {
            check_depth(depth)?;
            let state = to_state.bind(py).call1((obj,))?;
            write_bytes(out, K_REGISTERED, name.as_bytes());
            return encode(&state, out, depth + 1);
        }
    }
    Err(unsupported(obj))
}

/// Teaches the key encoder a type: instances of `cls` (subclasses too)
/// are encoded as `name` followed by the encoding of `to_state(obj)`, which
/// must hold only what a key may (a raised exception makes the key local).
#[pyfunction]
fn register_key_type(cls: &Bound<'_, PyType>, name: &str, to_state: Py<PyAny>) -> PyResult<()> {
    let mut registered = KEY_TYPES_REGISTERED.write();
    if let Some(existing) = registered.iter_mut().find(|t| t.name == name) {
        existing.cls = cls.clone().into_any().unbind();
        existing.to_state = to_state;
        return Ok(());
    }
    registered.push(KeyType {
        cls: cls.clone().into_any().unbind(),
        name: name.to_string(),
        to_state,
    });
    Ok(())
}

fn check_tzinfo(obj: &Bound<'_, PyAny>, std: &StdTypes) -> PyResult<()> {
    let tz = obj.getattr(intern!(obj.py(), "tzinfo"))?;
    let tp = tz.get_type_ptr() as usize;
    if tz.is_none() || tp == std.timezone_ptr || tp == std.zoneinfo_ptr {
        Ok(())
    } else {
        Err(EncodeError::new_err(format!(
            "tzinfo {} cannot be part of a cache key",
            crate::codec::encode_type_name(&tz)
        )))
    }
}

fn time_of_day_us(obj: &Bound<'_, PyAny>) -> PyResult<i64> {
    let py = obj.py();
    let h: i64 = obj.getattr(intern!(py, "hour"))?.extract()?;
    let m: i64 = obj.getattr(intern!(py, "minute"))?.extract()?;
    let s: i64 = obj.getattr(intern!(py, "second"))?.extract()?;
    let us: i64 = obj.getattr(intern!(py, "microsecond"))?.extract()?;
    Ok((h * 3600 + m * 60 + s) * US_PER_SEC + us)
}

fn utcoffset_us(obj: &Bound<'_, PyAny>) -> PyResult<Option<i64>> {
    let off = obj.call_method0(intern!(obj.py(), "utcoffset"))?;
    if off.is_none() {
        Ok(None)
    } else {
        crate::codec::timedelta_us(&off).map(Some)
    }
}

fn encode_datetime(obj: &Bound<'_, PyAny>, std: &StdTypes, out: &mut Vec<u8>) -> PyResult<()> {
    let py = obj.py();
    check_tzinfo(obj, std)?;
    // hash() and == ignore fold; take the offset of the fold=0 reading.
    let fold: u8 = obj.getattr(intern!(py, "fold"))?.extract()?;
    let base = if fold != 0 {
        let kwargs = PyDict::new(py);
        kwargs.set_item(intern!(py, "fold"), 0)?;
        obj.call_method(intern!(py, "replace"), (), Some(&kwargs))?
    } else {
        obj.clone()
    };
    let ordinal: i64 = base.call_method0(intern!(py, "toordinal"))?.extract()?;
    let us = ordinal * SEC_PER_DAY * US_PER_SEC + time_of_day_us(&base)?;
    match utcoffset_us(&base)? {
        None => {
            out.push(K_DATETIME);
            write_zvarint(out, us);
        }
        Some(off) => {
            out.push(K_DATETIME_UTC);
            write_zvarint(out, us - off);
        }
    }
    Ok(())
}

fn encode_decimal(obj: &Bound<'_, PyAny>, std: &StdTypes, out: &mut Vec<u8>) -> PyResult<()> {
    let py = obj.py();
    if obj.call_method0(intern!(py, "is_nan"))?.is_truthy()? {
        write_bytes(out, K_DECIMAL_NAN, obj.str()?.to_str()?.as_bytes());
        return Ok(());
    }
    if obj.call_method0(intern!(py, "is_infinite"))?.is_truthy()? {
        // Decimal("Infinity") == float("inf").
        let f: f64 = obj.extract()?;
        return encode_float(py, f, out);
    }
    let parts = obj
        .call_method0(intern!(py, "as_tuple"))?
        .cast_into::<PyTuple>()?;
    let sign: u8 = parts.get_item(0)?.extract()?;
    let digits: Vec<u8> = parts.get_item(1)?.extract()?;
    let mut exponent: i64 = parts.get_item(2)?.extract()?;
    // Strip trailing zeros: 1.500 -> 15E-1, 1.000 -> 1E0.
    let mut len = digits.len();
    while len > 1 && digits[len - 1] == 0 {
        len -= 1;
        exponent += 1;
    }
    let digits = &digits[..len];
    if digits == [0] {
        out.push(K_INT);
        write_zvarint(out, 0);
        return Ok(());
    }
    if exponent >= 0 {
        if len as i64 + exponent > MAX_DECIMAL_INT_DIGITS {
            return Err(EncodeError::new_err(
                "Decimal too large to be part of a cache key",
            ));
        }
        let i = py.get_type::<pyo3::types::PyInt>().call1((obj,))?;
        return encode_int(&i, out);
    }
    // Not integral: equal to a float only if it is exactly that float.
    let f: f64 = obj.extract()?;
    if f.is_finite() && std.decimal.bind(py).call1((f,))?.eq(obj)? {
        return encode_float(py, f, out);
    }
    out.push(K_DECIMAL);
    out.push(sign);
    write_zvarint(out, exponent);
    write_varint(out, len as u64);
    out.extend(digits.iter().map(|d| b'0' + d));
    Ok(())
}

#[pyfunction(name = "canonical_key")]
fn py_canonical_key<'py>(key: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    let mut out = Vec::with_capacity(64);
    canonical_key(key, &mut out)?;
    Ok(PyBytes::new(key.py(), &out))
}

#[pyfunction(name = "key_digest")]
fn py_key_digest<'py>(py: Python<'py>, namespace: &[u8], canonical: &[u8]) -> Bound<'py, PyBytes> {
    PyBytes::new(py, &key_digest(namespace, canonical))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(py_canonical_key, m)?)?;
    m.add_function(wrap_pyfunction!(py_key_digest, m)?)?;
    m.add_function(wrap_pyfunction!(register_key_type, m)?)?;
    m.add("KEY_FORMAT_VERSION", KEY_FORMAT_VERSION)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_length_prefixed() {
        // ("ab", "c") and ("a", "bc") must not collide.
        assert_ne!(key_digest(b"ab", b"c"), key_digest(b"a", b"bc"));
        let mut h = Sha256::new();
        h.update(2u32.to_le_bytes());
        h.update(b"ns");
        h.update(b"key");
        let expected: [u8; 32] = h.finalize().into();
        assert_eq!(key_digest(b"ns", b"key"), expected);
    }

    #[test]
    fn a_known_method_name_gives_the_same_bytes() {
        Python::attach(|py| {
            let code = c"import os\nkeys = [('res.users', os.path.join, 7, frozenset({1, 2})), \
                ('m', os.path.join), ('m', len, 1), ('m', 'not a function'), (os.path.join,)]";
            let scope = PyDict::new(py);
            py.run(code, Some(&scope), None).unwrap();
            let keys = scope.get_item("keys").unwrap().unwrap();
            for key in keys.try_iter().unwrap() {
                let key = key.unwrap();
                let mut plain = Vec::new();
                canonical_key(&key, &mut plain).unwrap();
                let mut named = Vec::new();
                canonical_method_key(&key, Some("posixpath.join"), &mut named).unwrap();
                assert_eq!(plain, named, "{key}");
            }
        });
    }
}
