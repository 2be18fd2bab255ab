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
//!
//! Here: the format, the entry points and the digest. `encode` walks a
//! key; `datetime`, `decimal` and `registered` encode those types.

mod datetime;
mod decimal;
mod encode;
mod registered;

use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use sha2::{Digest, Sha256};

use crate::errors::EncodeError;
use crate::naming;
use encode::{encode, encode_named_method_key};

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
    m.add_function(wrap_pyfunction!(registered::register_key_type, m)?)?;
    m.add("KEY_FORMAT_VERSION", KEY_FORMAT_VERSION)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pyo3::types::PyDict;

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
