//! The encoder's less common types: datetime, date, time and their
//! tzinfo, Decimal, ints beyond 64 bits, registered extension types, and
//! the error for everything else (naming the builtin a subclass would have
//! decoded as).

use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString, PyTuple};

use super::encode::{str_utf8, write_bytes, Encoder};
use super::format::*;
use super::registry::ExtEntry;
use super::types::StdTypes;
use crate::errors::EncodeError;

/// Total microseconds of a `datetime.timedelta`.
pub(crate) fn timedelta_us(td: &Bound<'_, PyAny>) -> PyResult<i64> {
    let py = td.py();
    let days: i64 = td.getattr(intern!(py, "days"))?.extract()?;
    let seconds: i64 = td.getattr(intern!(py, "seconds"))?.extract()?;
    let us: i64 = td.getattr(intern!(py, "microseconds"))?.extract()?;
    Ok((days * 86_400 + seconds) * 1_000_000 + us)
}

impl<'py> Encoder<'_, 'py> {
    /// An int outside the i64 range: its magnitude's bytes.
    ///
    /// # Safety
    /// `ptr` is an exact int; GIL held.
    #[inline(never)]
    pub(super) unsafe fn big_int(
        &mut self,
        ptr: *mut ffi::PyObject,
        negative: bool,
    ) -> PyResult<()> {
        let py = self.py;
        let obj = Bound::from_borrowed_ptr(py, ptr);
        let (tag, magnitude) = if negative {
            (T_BIGINT_NEG, obj.neg()?)
        } else {
            (T_BIGINT_POS, obj)
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

    /// Every type that is neither a scalar nor a builtin container.
    #[inline(never)]
    pub(super) fn other(&mut self, obj: &Bound<'py, PyAny>, depth: u32) -> PyResult<()> {
        let py = self.py;
        let tp = obj.get_type_ptr() as usize;
        let std = self.codec.std_types(py)?;
        if tp == std.datetime_ptr {
            return self.datetime(obj, std);
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
            return self.time(obj, std);
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
            return self.extension(obj, &entry, depth);
        }
        Err(unsupported(obj, std))
    }

    fn extension(&mut self, obj: &Bound<'py, PyAny>, entry: &ExtEntry, depth: u32) -> PyResult<()> {
        self.check_depth(depth)?;
        write_bytes(&mut self.out, T_EXT, entry.tag.as_bytes());
        let state = entry.to_state.bind(self.py).call1((obj,))?;
        // SAFETY: `state` is owned here for the call; GIL held.
        unsafe { self.value::<false>(state.as_ptr(), depth + 1) }
    }

    fn datetime(&mut self, obj: &Bound<'py, PyAny>, std: &StdTypes) -> PyResult<()> {
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
        self.time_tail(obj, std)
    }

    fn time(&mut self, obj: &Bound<'py, PyAny>, std: &StdTypes) -> PyResult<()> {
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
        self.time_tail(obj, std)
    }

    /// microsecond, fold, tzinfo: shared by datetime and time.
    fn time_tail(&mut self, obj: &Bound<'py, PyAny>, std: &StdTypes) -> PyResult<()> {
        let py = self.py;
        let us: u32 = obj.getattr(intern!(py, "microsecond"))?.extract()?;
        let fold: u8 = obj.getattr(intern!(py, "fold"))?.extract()?;
        write_varint(&mut self.out, u64::from(us));
        self.out.push(fold);
        let tz = obj.getattr(intern!(py, "tzinfo"))?;
        self.tz(&tz, std)
    }

    fn tz(&mut self, tz: &Bound<'py, PyAny>, std: &StdTypes) -> PyResult<()> {
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
