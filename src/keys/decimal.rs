//! Decimals: encoded as the int or float they equal when they equal one,
//! else by sign, exponent and digits (trailing zeros stripped).

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use super::encode::{encode_float, encode_int, write_bytes};
use super::{K_DECIMAL, K_DECIMAL_NAN, K_INT};
use crate::codec::format::{write_varint, write_zvarint};
use crate::codec::types::StdTypes;
use crate::errors::EncodeError;

/// Integral Decimals with more digits than this are refused (int() of
/// `Decimal("1E+999999999")` would allocate without bound).
const MAX_DECIMAL_INT_DIGITS: i64 = 4300;
pub(super) fn encode_decimal(
    obj: &Bound<'_, PyAny>,
    std: &StdTypes,
    out: &mut Vec<u8>,
) -> PyResult<()> {
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
