//! The decoder's less common types: bytes, ints beyond 64 bits, datetime,
//! date, time and their tzinfo, Decimal, and the lookup and construction of
//! registered extension types. None of them recurses, except an
//! extension's state (through `Decoder::value`).

use std::sync::Arc;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyInt, PyTuple};

use super::decode::{err, Decoder};
use super::format::*;
use super::registry::ExtEntry;
use super::types::StdTypes;
use crate::errors::DecodeError;

impl<'a, 'py> Decoder<'a, 'py> {
    /// Non-recursive, less common types.
    #[inline(never)]
    pub(super) fn other(&mut self, tag: u8) -> PyResult<Bound<'py, PyAny>> {
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
        let start = self.position();
        let kind = self.byte()?;
        let (offset_us, text) = match kind {
            TZ_NONE => return Ok(py.None().into_bound(py)),
            TZ_OFFSET => (unzigzag(self.varint()?), ""),
            TZ_OFFSET_NAMED => (unzigzag(self.varint()?), self.utf8()?),
            TZ_ZONEINFO => (0, self.utf8()?),
            _ => return Err(err("unknown tzinfo kind")),
        };
        let raw = self.read_since(start);
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

    /// The registered type named by the tag. Out of line, like
    /// `build_extension`, so that `extension`'s recursive frame stays small.
    #[inline(never)]
    pub(super) fn extension_entry(&mut self) -> PyResult<Arc<ExtEntry>> {
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
    pub(super) fn build_extension(
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
