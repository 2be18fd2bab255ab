//! Dates, datetimes and times: encoded as instants, so that equal values
//! (`==` and `hash()` ignore `fold`, and compare aware values in UTC) get
//! the same bytes.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::{K_DATE, K_DATETIME, K_DATETIME_UTC, K_TIME, K_TIME_UTC};
use crate::codec::format::write_zvarint;
use crate::codec::types::StdTypes;
use crate::errors::EncodeError;

const US_PER_SEC: i64 = 1_000_000;
const SEC_PER_DAY: i64 = 86_400;

pub(super) fn encode_date(obj: &Bound<'_, PyAny>, out: &mut Vec<u8>) -> PyResult<()> {
    let py = obj.py();
    let ordinal: i64 = obj.call_method0(intern!(py, "toordinal"))?.extract()?;
    out.push(K_DATE);
    write_zvarint(out, ordinal);
    Ok(())
}

pub(super) fn encode_time(
    obj: &Bound<'_, PyAny>,
    std: &StdTypes,
    out: &mut Vec<u8>,
) -> PyResult<()> {
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

pub(super) fn encode_datetime(
    obj: &Bound<'_, PyAny>,
    std: &StdTypes,
    out: &mut Vec<u8>,
) -> PyResult<()> {
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
