//! The encoder's walk over a key: the exact built-in types (str, int,
//! tuple, None, bool, frozenset and set, float, bytes), functions, methods
//! and classes by their qualified names; dates, Decimals and registered
//! types are handed to their own modules.

use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyTuple};
use pyo3::Borrowed;

use super::datetime::{encode_date, encode_datetime, encode_time};
use super::decimal::encode_decimal;
use super::registered::encode_registered;
use super::{
    K_BIGINT, K_BYTES, K_CLASS, K_FLOAT, K_FROZENSET, K_FUNCTION, K_INT, K_METHOD, K_NONE, K_STR,
    K_TUPLE, MAX_KEY_DEPTH,
};
use crate::codec::format::{write_varint, write_zvarint};
use crate::codec::types::StdTypes;
use crate::errors::EncodeError;
use crate::naming;

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

pub(super) fn unsupported(obj: &Bound<'_, PyAny>) -> PyErr {
    EncodeError::new_err(format!(
        "type {} cannot be part of a cache key",
        crate::codec::encode_type_name(obj)
    ))
}

#[inline]
pub(super) fn write_bytes(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
    out.push(tag);
    write_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A key tuple whose second item is a plain function named `name`; any
/// other shape is encoded the ordinary way.
pub(super) fn encode_named_method_key(
    key: &Bound<'_, PyAny>,
    name: &str,
    out: &mut Vec<u8>,
) -> PyResult<()> {
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

pub(super) fn encode(obj: &Bound<'_, PyAny>, out: &mut Vec<u8>, depth: u32) -> PyResult<()> {
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

pub(super) fn check_depth(depth: u32) -> PyResult<()> {
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

pub(super) fn encode_int(obj: &Bound<'_, PyAny>, out: &mut Vec<u8>) -> PyResult<()> {
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

pub(super) fn encode_float(py: Python<'_>, f: f64, out: &mut Vec<u8>) -> PyResult<()> {
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
        return encode_date(obj, out);
    }
    if tp == std.time_ptr {
        return encode_time(obj, std, out);
    }
    if tp == std.decimal_ptr {
        return encode_decimal(obj, std, out);
    }
    encode_registered(obj, out, depth)
}
