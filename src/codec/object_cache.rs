//! Objects the codec hands out again instead of building them: CPython's
//! small ints, and the short strings and ints it decoded last.
//!
//! A small int (0..=127, one byte on the wire) is a singleton in every
//! CPython: the encoder tells it by its address alone when the
//! interpreter keeps them in one array (checked here at start-up, else it
//! asks `PyLong_AsLongLongAndOverflow` like for any int), and the decoder
//! takes a new reference from a table instead of calling
//! `PyLong_FromLong`.
//!
//! Decoded short strings go into a direct-mapped table keyed by their
//! UTF-8 bytes (as jiter's and orjson's key caches do): a value's dict keys
//! and the field names and operators of a domain come back as the very
//! same objects, with their hash already computed, instead of being
//! decoded, allocated and hashed again. Ints beyond the small ones (record
//! ids: a user's groups, companies, partners, recurring from one cached
//! value to the next) go into another, keyed by value: no allocation, and
//! nothing to free when the value goes. Strings and ints are immutable, so
//! sharing one between values changes nothing but `is`. Both tables are
//! bounded (`STR_SLOTS` strings of at most `STR_MAX_LEN` bytes, `INT_SLOTS`
//! ints: about 260 KB per codec at most, the objects held included);
//! bytes chosen to collide only evict each other, at no more cost than a
//! miss.

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyString;

/// Small ints as the wire format has them: 0..=SMALLINT_MAX.
const SMALL_INTS: usize = super::format::SMALLINT_MAX as usize + 1;

pub struct SmallInts {
    /// `PyLong_FromLong(i)` for each i; these references are never given
    /// back, so the objects (permanent in CPython anyway) stay where the
    /// encoder's address check expects them.
    table: [*mut ffi::PyObject; SMALL_INTS],
    /// The address of 0, and log2 of the distance between consecutive
    /// small ints, when the whole table is one array with a power-of-two
    /// stride; `span` 0 otherwise (the encoder's check never matches).
    base: usize,
    shift: u32,
    span: usize,
}

// SAFETY: the pointers are to objects that live as long as the process
// (a strong reference each is held, never released) and are only read or
// incref'd under the GIL.
unsafe impl Send for SmallInts {}
unsafe impl Sync for SmallInts {}

static SMALL_INT_TABLE: PyOnceLock<SmallInts> = PyOnceLock::new();

impl SmallInts {
    pub fn get(py: Python<'_>) -> PyResult<&'static SmallInts> {
        SMALL_INT_TABLE.get_or_try_init(py, || SmallInts::build(py))
    }

    fn build(py: Python<'_>) -> PyResult<SmallInts> {
        let mut table = [std::ptr::null_mut(); SMALL_INTS];
        for (value, slot) in table.iter_mut().enumerate() {
            // SAFETY: GIL held (the token proves it).
            let ptr = unsafe { ffi::PyLong_FromLong(value as std::os::raw::c_long) };
            if ptr.is_null() {
                return Err(PyErr::fetch(py));
            }
            *slot = ptr;
        }
        let base = table[0] as usize;
        let stride = (table[1] as usize).wrapping_sub(base);
        let contiguous = stride.is_power_of_two()
            && stride >= std::mem::size_of::<ffi::PyObject>()
            && table
                .iter()
                .enumerate()
                .all(|(i, &p)| p as usize == base.wrapping_add(i.wrapping_mul(stride)));
        Ok(SmallInts {
            table,
            base,
            shift: stride.trailing_zeros(),
            span: if contiguous { SMALL_INTS * stride } else { 0 },
        })
    }

    /// The value of `ptr` if it is one of the small ints (an exact int the
    /// caller has checked, or any object: no other object can live at
    /// these addresses while the table holds them).
    #[inline(always)]
    pub fn value_of(&self, ptr: *mut ffi::PyObject) -> Option<u8> {
        let offset = (ptr as usize).wrapping_sub(self.base);
        if offset < self.span && offset & ((1 << self.shift) - 1) == 0 {
            Some((offset >> self.shift) as u8)
        } else {
            None
        }
    }

    /// A new reference to the small int `value` (0..=127).
    #[inline(always)]
    pub fn new_ref<'py>(&self, py: Python<'py>, value: u8) -> Bound<'py, PyAny> {
        let ptr = self.table[usize::from(value) & (SMALL_INTS - 1)];
        // SAFETY: a live object (see `table`), GIL held; the new reference
        // is handed to the Bound.
        unsafe {
            ffi::Py_INCREF(ptr);
            Bound::from_owned_ptr(py, ptr)
        }
    }
}

/// Strings of up to this many UTF-8 bytes are looked up and kept.
pub const STR_MAX_LEN: usize = 64;
/// Slots of the string table (a power of two).
pub const STR_SLOTS: usize = 1024;

/// Slots of the int table (a power of two).
pub const INT_SLOTS: usize = 1024;

struct StrSlot {
    len: u8,
    bytes: [u8; STR_MAX_LEN],
    string: Option<Py<PyString>>,
}

struct IntSlot {
    value: i64,
    int: Option<Py<PyAny>>,
}

/// The strings and ints decoded last, and the decoder's stack, for one
/// decode at a time.
pub struct Recent {
    strings: Box<[StrSlot; STR_SLOTS]>,
    ints: Box<[IntSlot; INT_SLOTS]>,
    /// The allocation of the decoder's stack, empty between decodes.
    spare_stack: Vec<*mut ffi::PyObject>,
}

/// The decoder's stack keeps an allocation of up to this many items.
const KEPT_STACK: usize = 8192;

// SAFETY: `spare_stack` is always empty: an allocation, no objects.
unsafe impl Send for Recent {}

// A `Bound` is one pointer: an empty vector of either can take the
// other's allocation (same size and alignment of its items).
const _: () = assert!(
    std::mem::size_of::<Bound<'static, PyAny>>() == std::mem::size_of::<*mut ffi::PyObject>()
        && std::mem::align_of::<Bound<'static, PyAny>>()
            == std::mem::align_of::<*mut ffi::PyObject>()
);

impl Default for Recent {
    fn default() -> Self {
        Recent {
            strings: boxed_array(|| StrSlot {
                len: 0,
                bytes: [0; STR_MAX_LEN],
                string: None,
            }),
            ints: boxed_array(|| IntSlot {
                value: 0,
                int: None,
            }),
            spare_stack: Vec::new(),
        }
    }
}

/// `N` slots built on the heap (not on the stack first: 80 KB of strings).
fn boxed_array<T, const N: usize>(slot: impl Fn() -> T) -> Box<[T; N]> {
    let slots: Box<[T]> = (0..N).map(|_| slot()).collect();
    match slots.try_into() {
        Ok(array) => array,
        Err(_) => unreachable!("N slots collected"),
    }
}

const FX: u64 = 0xf135_7aea_2e62_a9c5;

/// Where `bytes` (1..=STR_MAX_LEN of them) lives in the table: a
/// multiplicative hash over 8-byte words, as rustc's FxHash.
#[inline(always)]
fn str_slot_of(bytes: &[u8]) -> usize {
    let mut hash = (bytes.len() as u64).wrapping_mul(FX);
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
        hash = (hash ^ word).wrapping_mul(FX);
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        let mut word = [0u8; 8];
        word[..tail.len()].copy_from_slice(tail);
        hash = (hash ^ u64::from_le_bytes(word)).wrapping_mul(FX);
    }
    (hash >> (64 - STR_SLOTS.trailing_zeros())) as usize
}

impl Recent {
    /// An empty stack for a decode, with the allocation of the last one.
    pub fn take_stack<'py>(&mut self) -> Vec<Bound<'py, PyAny>> {
        let mut spare = std::mem::ManuallyDrop::new(std::mem::take(&mut self.spare_stack));
        debug_assert!(spare.is_empty());
        // SAFETY: an empty vector's allocation, items of the same size and
        // alignment (checked above).
        unsafe { Vec::from_raw_parts(spare.as_mut_ptr().cast(), 0, spare.capacity()) }
    }

    /// Keeps the allocation of a decode's stack, emptied, for the next one.
    pub fn keep_stack(&mut self, mut stack: Vec<Bound<'_, PyAny>>) {
        // What an error left on it is released (under the GIL: the decode's).
        stack.clear();
        if stack.capacity() > KEPT_STACK {
            return;
        }
        let mut stack = std::mem::ManuallyDrop::new(stack);
        // SAFETY: as in `take_stack`, the other way round.
        self.spare_stack =
            unsafe { Vec::from_raw_parts(stack.as_mut_ptr().cast(), 0, stack.capacity()) };
    }

    /// The str of the UTF-8 `bytes` (1..=STR_MAX_LEN of them): the kept
    /// one, or a new one (then kept in place of its slot's last).
    #[inline]
    pub fn str<'py>(&mut self, py: Python<'py>, bytes: &[u8]) -> PyResult<Bound<'py, PyAny>> {
        debug_assert!(!bytes.is_empty() && bytes.len() <= STR_MAX_LEN);
        let slot = &mut self.strings[str_slot_of(bytes)];
        match &slot.string {
            Some(string)
                if usize::from(slot.len) == bytes.len() && slot.bytes[..bytes.len()] == *bytes =>
            {
                Ok(string.bind(py).clone().into_any())
            }
            _ => keep_new_str(py, slot, bytes),
        }
    }

    /// The int `value`: the kept one, or a new one (then kept in place of
    /// its slot's last).
    #[inline(always)]
    pub fn int<'py>(&mut self, py: Python<'py>, value: i64) -> PyResult<Bound<'py, PyAny>> {
        let index = ((value as u64).wrapping_mul(FX) >> (64 - INT_SLOTS.trailing_zeros())) as usize;
        let slot = &mut self.ints[index];
        match &slot.int {
            Some(int) if slot.value == value => Ok(int.bind(py).clone()),
            _ => keep_new_int(py, slot, value),
        }
    }
}

#[inline(never)]
fn keep_new_str<'py>(
    py: Python<'py>,
    slot: &mut StrSlot,
    bytes: &[u8],
) -> PyResult<Bound<'py, PyAny>> {
    let string = decode_utf8(py, bytes)?;
    slot.len = bytes.len() as u8;
    slot.bytes[..bytes.len()].copy_from_slice(bytes);
    // SAFETY: PyUnicode_DecodeUTF8 made it: an exact str.
    let kept = unsafe { string.clone().cast_into_unchecked::<PyString>() };
    replace(py, &mut slot.string, kept);
    Ok(string)
}

#[inline(never)]
fn keep_new_int<'py>(
    py: Python<'py>,
    slot: &mut IntSlot,
    value: i64,
) -> PyResult<Bound<'py, PyAny>> {
    let int = new_int(py, value)?;
    slot.value = value;
    replace(py, &mut slot.int, int.clone());
    Ok(int)
}

/// Keeps `new` in `slot`, releasing the object it held there through the
/// token of the GIL held (no check of who holds it, as dropping a `Py`
/// would make): the str or int released runs no Python code.
#[inline]
fn replace<'py, T>(py: Python<'py>, slot: &mut Option<Py<T>>, new: Bound<'py, T>) {
    if let Some(old) = slot.replace(new.unbind()) {
        drop(old.into_bound(py));
    }
}

#[inline]
pub fn new_int(py: Python<'_>, value: i64) -> PyResult<Bound<'_, PyAny>> {
    // SAFETY: GIL held; a new reference or NULL with an exception set.
    unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyLong_FromLongLong(value)) }
}

/// A new str from strict UTF-8; DecodeError's cause for anything else.
#[inline]
pub fn decode_utf8<'py>(py: Python<'py>, bytes: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    // SAFETY: GIL held; a new reference or NULL with an exception set.
    unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            ffi::PyUnicode_DecodeUTF8(
                bytes.as_ptr().cast(),
                bytes.len() as ffi::Py_ssize_t,
                std::ptr::null(),
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_ints_are_told_by_address_and_handed_out() {
        Python::attach(|py| {
            let small = SmallInts::get(py).unwrap();
            for value in 0..=127u8 {
                let object = small.new_ref(py, value);
                assert_eq!(object.extract::<u8>().unwrap(), value);
                if small.span != 0 {
                    assert_eq!(small.value_of(object.as_ptr()), Some(value));
                }
            }
            let big = 128i64.into_pyobject(py).unwrap();
            assert_eq!(small.value_of(big.as_ptr()), None);
            let other = PyString::new(py, "x");
            assert_eq!(small.value_of(other.as_ptr()), None);
        });
    }

    #[test]
    fn strings_are_kept_and_colliding_ones_replace_each_other() {
        Python::attach(|py| {
            let mut cache = Recent::default();
            let first = cache.str(py, b"field_1").unwrap();
            let again = cache.str(py, b"field_1").unwrap();
            assert!(first.is(&again));
            assert_eq!(again.extract::<String>().unwrap(), "field_1");
            // Every slot filled over and over: each lookup still answers
            // its own bytes.
            for round in 0..3 {
                for i in 0..(3 * STR_SLOTS) {
                    let text = format!("k{i}-{round}");
                    let s = cache.str(py, text.as_bytes()).unwrap();
                    assert_eq!(s.extract::<String>().unwrap(), text);
                }
            }
            let long = "é".repeat(STR_MAX_LEN / 2);
            let s = cache.str(py, long.as_bytes()).unwrap();
            assert_eq!(s.extract::<String>().unwrap(), long);
            assert!(cache.str(py, b"\xff").is_err());
        });
    }

    #[test]
    fn ints_are_kept_and_colliding_ones_replace_each_other() {
        Python::attach(|py| {
            let mut cache = Recent::default();
            let first = cache.int(py, 1000).unwrap();
            assert!(first.is(cache.int(py, 1000).unwrap()));
            for round in 0..3i64 {
                for i in 0..(3 * INT_SLOTS as i64) {
                    let value = (i - 1000) * 7919 + round;
                    assert_eq!(
                        cache.int(py, value).unwrap().extract::<i64>().unwrap(),
                        value
                    );
                }
            }
            for value in [i64::MIN, -1, i64::MAX] {
                assert_eq!(
                    cache.int(py, value).unwrap().extract::<i64>().unwrap(),
                    value
                );
            }
        });
    }
}
