//! The frame around a payload (`format.rs`): header, format version and
//! flags, LZ4 compression, and the checks made before anything is
//! decoded (declared sizes, the budgets of `budget.rs` priced by
//! `scan.rs`). `encode_into` and `decode` are the codec's two entry points
//! for Rust callers; every error comes out as EncodeError or DecodeError.

use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::exceptions::PyException;
use pyo3::prelude::*;

use super::budget::Exceeded;
use super::format::*;
use super::object_cache::SmallInts;
use super::scan::{self, Refusal};
use super::{decode, encode, Codec, FormatVersionError};
use crate::errors::{DecodeError, EncodeError};

/// Converts any ordinary exception raised while encoding into EncodeError
/// (keeping it as `__cause__`); BaseExceptions such as KeyboardInterrupt
/// pass through.
fn as_encode_error(py: Python<'_>, e: PyErr) -> PyErr {
    if e.is_instance_of::<EncodeError>(py) || !e.is_instance_of::<PyException>(py) {
        return e;
    }
    let new = EncodeError::new_err(format!("cannot encode value: {e}"));
    new.set_cause(py, Some(e));
    new
}

fn as_decode_error(py: Python<'_>, e: PyErr) -> PyErr {
    if e.is_instance_of::<DecodeError>(py) || !e.is_instance_of::<PyException>(py) {
        return e;
    }
    let new = DecodeError::new_err(format!("invalid encoded value: {e}"));
    new.set_cause(py, Some(e));
    new
}

/// Keeps CPython's cyclic GC off while a value is built, and restores it
/// (also on error). Decoded objects form a tree, so a collection has
/// nothing to find, but every container allocated counts toward one that
/// re-scans the young containers: with the GC on, decoding 100 000 empty
/// lists cost 570 ns per list instead of 44 (CPython 3.11), most of a
/// container bomb's time and much of a big legitimate value's. An
/// extension's `from_state` runs with the GC off; if it switches the GC
/// on or off itself, the state found on entry is restored anyway.
struct GcPaused {
    was_enabled: bool,
}

impl GcPaused {
    fn new(_py: Python<'_>) -> Self {
        // SAFETY: the GIL is held (the token proves it).
        GcPaused {
            was_enabled: unsafe { pyo3::ffi::PyGC_Disable() } != 0,
        }
    }
}

impl Drop for GcPaused {
    fn drop(&mut self) {
        if self.was_enabled {
            // SAFETY: still under the GIL that `new` was given.
            unsafe { pyo3::ffi::PyGC_Enable() };
        }
    }
}

/// A zero-filled buffer of `len` bytes, or `None` when it cannot be
/// allocated. Zeroed memory comes from the OS untouched, so a frame that
/// declares more than it inflates to costs only the pages actually written.
fn zeroed_buffer(len: usize) -> Option<Vec<u8>> {
    if len == 0 {
        return Some(Vec::new());
    }
    let layout = std::alloc::Layout::array::<u8>(len).ok()?;
    // SAFETY: non-zero size; a non-null result is `len` zeroed (so
    // initialized) bytes from the global allocator with this very layout,
    // which is what `Vec::from_raw_parts` requires.
    unsafe {
        let ptr = std::alloc::alloc_zeroed(layout);
        (!ptr.is_null()).then(|| Vec::from_raw_parts(ptr, len, len))
    }
}

impl Codec {
    /// Appends the framed encoding (header, optional compression) of `obj`
    /// to `out`. On error `out` is left as it was.
    pub fn encode_into(&self, obj: &Bound<'_, PyAny>, out: &mut Vec<u8>) -> PyResult<()> {
        let py = obj.py();
        let start = out.len();
        let result = catch_unwind(AssertUnwindSafe(|| self.encode_frame(obj, out)));
        let result = match result {
            Ok(r) => r.map_err(|e| as_encode_error(py, e)),
            Err(_) => Err(EncodeError::new_err("internal error while encoding")),
        };
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    fn encode_frame(&self, obj: &Bound<'_, PyAny>, out: &mut Vec<u8>) -> PyResult<()> {
        let start = out.len();
        out.reserve(64);
        out.extend_from_slice(&MAGIC);
        out.push(FORMAT_VERSION);
        out.push(0);
        let body = start + HEADER_LEN;
        let small_ints = SmallInts::get(obj.py())?;
        let (encoded, result) =
            encode::Encoder::new(obj.py(), self, small_ints, std::mem::take(out)).encode_value(obj);
        *out = encoded;
        result?;
        let body_len = out.len() - body;
        let limits = &self.limits;
        // What a decoder will charge for it: priced, unless small enough to
        // fit whatever it holds.
        let memory = if scan::fits_unscanned(body_len, 0, limits) {
            body_len * scan::MAX_MEMORY_PER_BYTE
        } else {
            scan::price(&out[body..], 0, self.max_depth, limits).map_err(|refusal| {
                EncodeError::new_err(match refusal {
                    Refusal::Exceeded(e) => format!(
                        "value not encodable: decoding it would need {}",
                        e.describe(limits)
                    ),
                    Refusal::Malformed(what) => {
                        format!("internal error while encoding: {what}")
                    }
                })
            })?
        };
        // A compressed value is decoded next to its uncompressed payload:
        // only compress when both fit in the decoder's memory budget.
        if body_len > self.compress_threshold && memory + body_len <= limits.max_decoded_memory {
            let compressed = lz4_flex::block::compress(&out[body..]);
            if compressed.len() + 10 < body_len {
                out.truncate(body);
                out[start + 3] |= FLAG_LZ4;
                write_varint(out, body_len as u64);
                out.extend_from_slice(&compressed);
            }
        }
        Ok(())
    }

    /// Decodes framed bytes produced by `encode_into`. Any invalid input is
    /// a `DecodeError`, never a panic.
    pub fn decode(&self, py: Python<'_>, data: &[u8]) -> PyResult<Py<PyAny>> {
        let result = catch_unwind(AssertUnwindSafe(|| self.decode_frame(py, data)));
        match result {
            Ok(r) => r.map_err(|e| as_decode_error(py, e)),
            Err(_) => Err(DecodeError::new_err("internal error while decoding")),
        }
    }

    fn decode_frame(&self, py: Python<'_>, data: &[u8]) -> PyResult<Py<PyAny>> {
        if data.len() < 2 || data[..2] != MAGIC {
            return Err(DecodeError::new_err(
                "not an ormcache_redis encoding (bad magic)",
            ));
        }
        let version = *data
            .get(2)
            .ok_or_else(|| DecodeError::new_err("truncated header"))?;
        if version != FORMAT_VERSION {
            return Err(FormatVersionError::new_err(format!(
                "unsupported format version {version} (this build reads format version {FORMAT_VERSION})"
            )));
        }
        let flags = *data
            .get(3)
            .ok_or_else(|| DecodeError::new_err("truncated header"))?;
        if flags & !KNOWN_FLAGS != 0 {
            return Err(DecodeError::new_err(format!("unknown flags 0x{flags:02x}")));
        }
        let limits = &self.limits;
        if flags & FLAG_LZ4 == 0 {
            let payload = &data[HEADER_LEN..];
            if payload.len() > limits.max_decoded_bytes {
                return Err(DecodeError::new_err(format!(
                    "payload of {} bytes exceeds max_decoded_bytes={}",
                    payload.len(),
                    limits.max_decoded_bytes
                )));
            }
            return self.decode_payload(py, payload, 0);
        }
        let mut pos = HEADER_LEN;
        let declared = read_varint(data, &mut pos)
            .ok_or_else(|| DecodeError::new_err("truncated compressed length"))?;
        let compressed = &data[pos..];
        if declared > limits.max_decoded_bytes as u64 {
            return Err(DecodeError::new_err(format!(
                "declared uncompressed size {declared} exceeds max_decoded_bytes={}",
                limits.max_decoded_bytes
            )));
        }
        if declared > compressed.len().saturating_mul(LZ4_MAX_RATIO) as u64 {
            return Err(DecodeError::new_err(
                "declared uncompressed size is impossible for the compressed input",
            ));
        }
        // The buffer, plus at least declared - 1 bytes for the objects the
        // payload builds (budget.rs): refused before inflating anything.
        let declared = declared as usize;
        if declared.saturating_mul(2).saturating_sub(1) > limits.max_decoded_memory {
            return Err(DecodeError::new_err(format!(
                "value refused: a compressed payload of {declared} bytes and the objects it \
                 builds need {}",
                Exceeded::Memory.describe(limits)
            )));
        }
        // A failed allocation is a DecodeError (a miss), not an abort.
        let mut buf = zeroed_buffer(declared).ok_or_else(|| {
            DecodeError::new_err(format!(
                "cannot allocate {declared} bytes for the uncompressed payload"
            ))
        })?;
        match lz4_flex::block::decompress_into(compressed, &mut buf) {
            Ok(n) if n == buf.len() => {}
            Ok(_) => {
                return Err(DecodeError::new_err(
                    "compressed payload size differs from the declared size",
                ))
            }
            Err(e) => {
                return Err(DecodeError::new_err(format!(
                    "invalid compressed payload: {e}"
                )))
            }
        }
        self.decode_payload(py, &buf, declared)
    }

    /// Decodes a payload, next to `held` bytes of inflated payload: priced
    /// first (`scan.rs`) unless it fits the budgets whatever it holds.
    fn decode_payload(&self, py: Python<'_>, payload: &[u8], held: usize) -> PyResult<Py<PyAny>> {
        let limits = &self.limits;
        if !scan::fits_unscanned(payload.len(), held, limits) {
            if let Err(refusal) = scan::price(payload, held, self.max_depth, limits) {
                return Err(DecodeError::new_err(match refusal {
                    Refusal::Exceeded(e) => {
                        format!("value refused: decoding it needs {}", e.describe(limits))
                    }
                    Refusal::Malformed(what) => what.to_owned(),
                }));
            }
        }
        // A payload builds fewer objects than it has bytes: a small one
        // triggers at most one young collection (every 700 allocations).
        let _gc = (payload.len() > 512).then(|| GcPaused::new(py));
        let small_ints = SmallInts::get(py)?;
        // The tables of recent objects, unless a decode further up this
        // thread's stack (an extension's from_state decoding) or another
        // thread that let the GIL go in the middle of one holds them.
        let decoded = self.recent.with(py, |recent| {
            let recent = recent.get_or_insert_with(Box::default);
            decode::Decoder::new(py, self, small_ints, Some(recent), payload)
                .decode_all()
                .map(Bound::unbind)
        });
        match decoded {
            Some(result) => result,
            None => decode::Decoder::new(py, self, small_ints, None, payload)
                .decode_all()
                .map(Bound::unbind),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Limits, DEFAULT_COMPRESS_THRESHOLD, DEFAULT_MAX_DEPTH};
    use pyo3::types::{PyList, PyTuple};

    fn codec() -> Codec {
        Codec::new(
            DEFAULT_COMPRESS_THRESHOLD,
            DEFAULT_MAX_DEPTH,
            Limits::default(),
        )
        .unwrap()
    }

    #[test]
    fn encode_into_appends_and_restores_on_error() {
        Python::attach(|py| {
            let c = codec();
            let mut out = b"prefix".to_vec();
            let value = PyTuple::new(py, [1, 2, 3]).unwrap();
            c.encode_into(value.as_any(), &mut out).unwrap();
            assert_eq!(&out[..6], b"prefix");
            assert_eq!(&out[6..10], &[0xC0, 0xDE, FORMAT_VERSION, 0]);
            let decoded = c.decode(py, &out[6..]).unwrap();
            assert!(decoded.bind(py).eq(value).unwrap());

            let before = out.clone();
            let bad = PyList::new(
                py,
                [
                    py.None(),
                    py.eval(c"object()", None, None).unwrap().unbind(),
                ],
            )
            .unwrap();
            let err = c.encode_into(bad.as_any(), &mut out).unwrap_err();
            assert!(err.is_instance_of::<EncodeError>(py));
            assert_eq!(out, before);
        });
    }

    #[test]
    fn pseudo_random_garbage_is_decode_error_or_value() {
        Python::attach(|py| {
            let c = codec();
            let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
            let mut next = || {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state
            };
            for _ in 0..20_000 {
                let len = (next() % 40) as usize;
                let mut data = vec![0xC0, 0xDE, FORMAT_VERSION, (next() % 2) as u8];
                data.extend((0..len).map(|_| next() as u8));
                if let Err(e) = c.decode(py, &data) {
                    assert!(e.is_instance_of::<DecodeError>(py), "{e}");
                }
            }
        });
    }
}
