//! Standard-library types outside the builtins (datetime, Decimal, tzinfo),
//! imported lazily once and compared by exact type pointer.

use pyo3::prelude::*;
use pyo3::types::PyType;

pub struct StdTypes {
    pub datetime: Py<PyType>,
    pub date: Py<PyType>,
    pub time: Py<PyType>,
    pub timedelta: Py<PyType>,
    pub timezone: Py<PyType>,
    pub zoneinfo: Py<PyType>,
    pub decimal: Py<PyType>,
    pub datetime_ptr: usize,
    pub date_ptr: usize,
    pub time_ptr: usize,
    pub timezone_ptr: usize,
    pub zoneinfo_ptr: usize,
    pub decimal_ptr: usize,
}

impl StdTypes {
    pub fn import(py: Python<'_>) -> PyResult<Self> {
        let dt = py.import("datetime")?;
        let get = |m: &Bound<'_, PyModule>, name: &str| -> PyResult<Py<PyType>> {
            Ok(m.getattr(name)?.cast_into::<PyType>()?.unbind())
        };
        let datetime = get(&dt, "datetime")?;
        let date = get(&dt, "date")?;
        let time = get(&dt, "time")?;
        let timedelta = get(&dt, "timedelta")?;
        let timezone = get(&dt, "timezone")?;
        let zoneinfo = get(&py.import("zoneinfo")?, "ZoneInfo")?;
        let decimal = get(&py.import("decimal")?, "Decimal")?;
        let ptr = |t: &Py<PyType>| t.as_ptr() as usize;
        Ok(StdTypes {
            datetime_ptr: ptr(&datetime),
            date_ptr: ptr(&date),
            time_ptr: ptr(&time),
            timezone_ptr: ptr(&timezone),
            zoneinfo_ptr: ptr(&zoneinfo),
            decimal_ptr: ptr(&decimal),
            datetime,
            date,
            time,
            timedelta,
            timezone,
            zoneinfo,
            decimal,
        })
    }
}
