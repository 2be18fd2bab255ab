//! What the process holds for a cached key or value, in bytes: what the
//! byte bounds count (with `ENTRY_OVERHEAD` for the entry itself).
//!
//! Each object counts what CPython reports for it (`sys.getsizeof`: the
//! object with its GC header, a container's own array, a string's
//! characters) rounded up to the allocator's 16-byte granule (pymalloc's
//! size classes, glibc's chunks: a 28-byte int takes 32), summed over what
//! the value holds: the items of tuples,
//! lists, sets and frozensets, the keys and values of dicts (subclasses
//! included), and a function's code, defaults and closure; any other
//! object counts itself only, since what it references is mostly the
//! program's (Odoo's routing map reaches every model through its
//! endpoints). What is shared with the whole program counts
//! nothing: classes, modules, a function's globals and builtins, None,
//! True and False. A key follows plain data only: the method and the
//! model class it names belong to the program, not to the entry.
//!
//! Not the codec's encoded size, though a shared value has one: a
//! compressed payload can be a thousandth of the objects it decodes to
//! (20 MB of repeated text), and an encoded small int is one byte where
//! CPython holds 28 plus the container's 8-byte slot. The walk measures
//! what L1 really keeps alive, encodable or not.
//!
//! Bounded: at most `MAX_OBJECTS` objects are measured, `MAX_DEPTH` levels
//! deep; a container measured in part counts its other items at the mean
//! of those measured. The figure is exact for ordinary values and an
//! estimate in constant time for huge ones. An object reached twice
//! counts twice (remembering identities would cost every store a set):
//! the error is on the side of the bound.

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{
    PyBytes, PyDict, PyFloat, PyFrozenSet, PyInt, PyList, PyModule, PySet, PyString, PyTuple,
    PyType,
};

const MAX_OBJECTS: usize = 4096;
const MAX_DEPTH: usize = 32;
/// Counted for an object whose `__sizeof__` fails: an object header.
const HEADER_BYTES: usize = 16;
const GRANULE: usize = 16;

/// What the allocator gives for a request of `size` bytes.
fn allocated(size: usize) -> usize {
    size.saturating_add(GRANULE - 1) & !(GRANULE - 1)
}

/// How far a walk follows references.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Values: every reference but those shared with the whole program.
    References,
    /// Keys: str, bytes, numbers and the builtin containers; any other
    /// object (a method, a model class) counts nothing.
    PlainData,
}

struct Sizer {
    getsizeof: Py<PyAny>,
    get_referents: Py<PyAny>,
    function_type: Py<PyAny>,
    float: usize,
    /// Ints of one, two and three 30-bit digits (CPython's): every i64.
    ints: [usize; 3],
    /// An exact tuple: `tuple + len * tuple_item`, before rounding.
    tuple: usize,
    tuple_item: usize,
}

static SIZER: PyOnceLock<Sizer> = PyOnceLock::new();

/// Bytes held for `obj` (0 before the module registered the sizer).
pub fn held_bytes(obj: &Bound<'_, PyAny>, reach: Reach) -> usize {
    let Some(sizer) = SIZER.get(obj.py()) else {
        return 0;
    };
    let mut walk = Walk {
        sizer,
        reach,
        left: MAX_OBJECTS,
    };
    walk.measure(obj, 0)
}

struct Walk<'s> {
    sizer: &'s Sizer,
    reach: Reach,
    /// Objects that may still be measured.
    left: usize,
}

impl Walk<'_> {
    /// Kept small: most items are ints, floats or None, sized here.
    #[inline(always)]
    fn measure(&mut self, obj: &Bound<'_, PyAny>, depth: usize) -> usize {
        self.left = self.left.saturating_sub(1);
        match self.without_call(obj) {
            Some(size) => size,
            None => self.measure_object(obj, depth),
        }
    }

    #[inline(never)]
    fn measure_object(&mut self, obj: &Bound<'_, PyAny>, depth: usize) -> usize {
        let own = match obj.cast_exact::<PyTuple>() {
            Ok(tuple) => allocated(self.sizer.tuple + tuple.len() * self.sizer.tuple_item),
            Err(_) => self.getsizeof(obj),
        };
        if depth >= MAX_DEPTH || self.left == 0 {
            return own;
        }
        // Tuples and lists are walked in place: no copy of their items, and
        // a tuple's items borrowed (immutable, it keeps them alive).
        let items = if let Ok(tuple) = obj.cast::<PyTuple>() {
            self.items(tuple.len(), depth, |walk, index, depth| {
                let item = tuple.get_borrowed_item(index).ok()?;
                Some(walk.measure(&item, depth))
            })
        } else if let Ok(list) = obj.cast::<PyList>() {
            self.items(list.len(), depth, |walk, index, depth| {
                Some(walk.measure(&list.get_item(index).ok()?, depth))
            })
        } else if let Some((children, total)) = self.children(obj) {
            self.items(total, depth, |walk, index, depth| {
                Some(walk.measure(children.get(index)?, depth))
            })
        } else {
            0
        };
        own.saturating_add(items)
    }

    /// The sum of `total` items measured by `measure_item` while objects
    /// are left, the unmeasured ones counted at the mean of the others.
    fn items(
        &mut self,
        total: usize,
        depth: usize,
        mut measure_item: impl FnMut(&mut Self, usize, usize) -> Option<usize>,
    ) -> usize {
        let mut sum = 0usize;
        let mut measured = 0usize;
        while measured < total && self.left > 0 {
            let Some(size) = measure_item(self, measured, depth + 1) else {
                break; // a list shrank meanwhile
            };
            sum = sum.saturating_add(size);
            measured += 1;
        }
        if measured > 0 && measured < total {
            let rest = sum as u128 * (total - measured) as u128 / measured as u128;
            sum = sum.saturating_add(usize::try_from(rest).unwrap_or(usize::MAX));
        }
        sum
    }

    /// The size of what needs no call to `sys.getsizeof`: the shared
    /// singletons, classes and modules (0), exact floats and ints, and
    /// under `PlainData` anything that is not plain data (0).
    #[inline(always)]
    fn without_call(&self, obj: &Bound<'_, PyAny>) -> Option<usize> {
        // The commonest items first, by type identity: ints and floats.
        let ptr = obj.as_ptr();
        // SAFETY: a live object; the type objects are the interpreter's.
        unsafe {
            let kind = ffi::Py_TYPE(ptr);
            if kind == &raw mut ffi::PyLong_Type {
                let mut overflow = 0;
                let value = ffi::PyLong_AsLongLongAndOverflow(ptr, &mut overflow);
                if overflow != 0 {
                    return None; // more than 64 bits: asked
                }
                let bits = 64 - value.unsigned_abs().leading_zeros();
                return Some(self.sizer.ints[(bits.saturating_sub(1) / 30) as usize]);
            }
            if kind == &raw mut ffi::PyFloat_Type {
                return Some(self.sizer.float);
            }
            if ptr == ffi::Py_None() || kind == &raw mut ffi::PyBool_Type {
                return Some(0);
            }
        }
        self.shared_or_out_of_reach(obj)
    }

    /// 0 for classes and modules (the program's), and under `PlainData`
    /// for anything but plain data; None for what is measured.
    fn shared_or_out_of_reach(&self, obj: &Bound<'_, PyAny>) -> Option<usize> {
        if obj.is_instance_of::<PyType>() || obj.is_instance_of::<PyModule>() {
            return Some(0);
        }
        let plain = obj.is_instance_of::<PyString>()
            || obj.is_instance_of::<PyBytes>()
            || obj.is_instance_of::<PyInt>()
            || obj.is_instance_of::<PyFloat>()
            || is_builtin_container(obj);
        (self.reach == Reach::PlainData && !plain).then_some(0)
    }

    fn getsizeof(&self, obj: &Bound<'_, PyAny>) -> usize {
        self.sizer
            .getsizeof
            .bind(obj.py())
            .call1((obj,))
            .and_then(|size| size.extract::<usize>())
            .map_or(HEADER_BYTES, allocated)
    }

    /// At most `left` of what a dict, a set or another object holds, and
    /// how many it holds in all; None for what holds nothing the walk
    /// follows. Collected before any of them is measured: no Python code
    /// runs meanwhile, so no container changes under the iteration.
    fn children<'py>(&self, obj: &Bound<'py, PyAny>) -> Option<(Vec<Bound<'py, PyAny>>, usize)> {
        let room = self.left;
        if let Ok(dict) = obj.cast::<PyDict>() {
            let items = dict
                .iter()
                .take(room.div_ceil(2))
                .flat_map(|(key, value)| [key, value])
                .collect();
            return Some((items, 2 * dict.len()));
        }
        if let Ok(set) = obj.cast::<PySet>() {
            return Some((set.iter().take(room).collect(), set.len()));
        }
        if let Ok(set) = obj.cast::<PyFrozenSet>() {
            return Some((set.iter().take(room).collect(), set.len()));
        }
        if self.reach == Reach::PlainData
            || obj.is_instance_of::<PyString>()
            || obj.is_instance_of::<PyBytes>()
        {
            return None;
        }
        // Any other object counts itself only, but a function its code,
        // defaults and closure: what an object references is mostly the
        // program's (Odoo's routing map reaches every model through its
        // endpoints), and counting it made such values "too large" for L1,
        // recomputed at every request.
        if !obj.get_type().is(self.sizer.function_type.bind(obj.py())) {
            return None;
        }
        self.referents(obj)
    }

    /// What `gc.get_referents` reports of `obj`, but a function's globals
    /// and builtins (the module's, shared by all its functions).
    fn referents<'py>(&self, obj: &Bound<'py, PyAny>) -> Option<(Vec<Bound<'py, PyAny>>, usize)> {
        let py = obj.py();
        let referents = self.sizer.get_referents.bind(py).call1((obj,)).ok()?;
        let referents = referents.cast_into::<PyList>().ok()?;
        let shared: Vec<Bound<'py, PyAny>> = if obj.get_type().is(self.sizer.function_type.bind(py))
        {
            ["__globals__", "__builtins__"]
                .iter()
                .filter_map(|name| obj.getattr(*name).ok())
                .collect()
        } else {
            Vec::new()
        };
        let kept: Vec<Bound<'py, PyAny>> = referents
            .iter()
            .filter(|referent| !shared.iter().any(|other| other.is(referent)))
            .collect();
        let total = kept.len();
        Some((kept.into_iter().take(self.left).collect(), total))
    }
}

fn is_builtin_container(obj: &Bound<'_, PyAny>) -> bool {
    obj.is_instance_of::<PyTuple>()
        || obj.is_instance_of::<PyList>()
        || obj.is_instance_of::<PyDict>()
        || obj.is_instance_of::<PySet>()
        || obj.is_instance_of::<PyFrozenSet>()
}

/// Finds `sys.getsizeof` and `gc.get_referents`, and measures the fixed
/// sizes, when the module loads (never on a store: an import runs Python).
pub(super) fn register(py: Python<'_>) -> PyResult<()> {
    let getsizeof = py.import("sys")?.getattr("getsizeof")?;
    let size_of =
        |value: Bound<'_, PyAny>| -> PyResult<usize> { getsizeof.call1((value,))?.extract() };
    let one_digit = size_of((1i64 << 29).into_pyobject(py)?.into_any())?;
    let two_digits = size_of((1i64 << 59).into_pyobject(py)?.into_any())?;
    let three_digits = 2 * two_digits - one_digit;
    let empty_tuple = size_of(PyTuple::empty(py).into_any())?;
    let pair = size_of(PyTuple::new(py, [0, 1])?.into_any())?;
    let sizer = Sizer {
        tuple: empty_tuple,
        tuple_item: (pair - empty_tuple) / 2,
        float: allocated(size_of(PyFloat::new(py, 1.5).into_any())?),
        ints: [one_digit, two_digits, three_digits].map(allocated),
        get_referents: py.import("gc")?.getattr("get_referents")?.unbind(),
        function_type: py.import("types")?.getattr("FunctionType")?.unbind(),
        getsizeof: getsizeof.unbind(),
    };
    let _ = SIZER.set(py, sizer);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pyo3::ffi::c_str;
    use std::ffi::CStr;

    /// `held_bytes` of `value`, and `reference` (a function of it, given
    /// `size`: `sys.getsizeof` rounded up to 16 bytes).
    fn measured(value: &CStr, reference: &CStr, reach: Reach) -> (usize, usize) {
        Python::attach(|py| {
            register(py).unwrap();
            let value = py.eval(value, None, None).unwrap();
            let globals = pyo3::types::PyDict::new(py);
            py.run(
                c_str!("def size(v): return -(-__import__('sys').getsizeof(v) // 16) * 16"),
                Some(&globals),
                None,
            )
            .unwrap();
            let reference = py.eval(reference, Some(&globals), None).unwrap();
            let reference = reference.call1((&value,)).unwrap().extract().unwrap();
            (held_bytes(&value, reach), reference)
        })
    }

    #[test]
    fn a_flat_value_counts_its_items() {
        let (held, reference) = measured(
            c_str!("tuple(range(10**6, 10**6 + 1000))"),
            c_str!("lambda v: size(v) + sum(map(size, v))"),
            Reach::References,
        );
        assert_eq!(held, reference);
    }

    #[test]
    fn a_huge_value_is_estimated_from_a_sample() {
        // 100,000 strings: the walk measures 4,096 objects and extrapolates.
        let (held, reference) = measured(
            c_str!("[str(i).rjust(100, 'x') for i in range(100_000)]"),
            c_str!("lambda v: size(v) + sum(map(size, v))"),
            Reach::References,
        );
        assert!(
            held.abs_diff(reference) < reference / 100,
            "{held} vs {reference}"
        );
    }

    #[test]
    fn a_key_counts_no_function_or_class() {
        let (held, reference) = measured(
            c_str!("(int, len, 10**6, None)"),
            c_str!("lambda v: size(v) + size(v[2])"),
            Reach::PlainData,
        );
        assert_eq!(held, reference);
    }

    #[test]
    fn a_function_counts_its_code_not_its_globals() {
        let (held, function) = measured(c_str!("lambda: 42"), c_str!("size"), Reach::References);
        assert!(held > function, "{held} {function}");
        assert!(held < 10_000, "the module's globals were counted: {held}");
    }
}
