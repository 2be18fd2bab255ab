//! Safe closed-type codec: Python value <-> bytes. Never pickle.
//!
//! The wire format is documented in [`format`]. Values of a closed set of
//! types (None, bool, int, float, str, bytes, tuple, list, dict, set,
//! frozenset, datetime/date/time with None/timezone/ZoneInfo tzinfo, Decimal)
//! come back as exactly their own type; other types must be registered with
//! `Codec.register_type` (tag + to_state/from_state), everything else is an
//! `EncodeError`. Any invalid input to `decode` is a `DecodeError` (bytes of
//! another format version: `FormatVersionError`, a `DecodeError` subclass),
//! and so is a value that would cost more than the codec's limits to
//! decode, in memory, objects or hash collisions (see [`budget`]).
//!
//! | file | holds |
//! |---|---|
//! | `class.rs` | the `Codec` Python class: options, `dumps`, `register_type` |
//! | `fastcall.rs` | `dumps` and `loads` as the interpreter calls its own methods |
//! | `frame.rs` | header, compression, the checks before decoding; `encode_into`, `decode` |
//! | `format.rs` | the wire format: tags, varints |
//! | `encode.rs`, `encode_other.rs` | value -> bytes: scalars and containers; the other types |
//! | `decode.rs`, `decode_other.rs` | bytes -> value: scalars and containers; the other types |
//! | `budget.rs`, `scan.rs` | what a value may cost to decode, and the walk that prices it |
//! | `object_cache.rs` | small ints and recently decoded short strings, handed out again |
//! | `registry.rs`, `types.rs` | registered extension types; datetime, Decimal and tzinfo types |

mod budget;
mod class;
mod decode;
mod decode_other;
mod encode;
mod encode_other;
mod fastcall;
pub mod format;
mod frame;
mod object_cache;
mod registry;
mod scan;
pub(crate) mod types;

use pyo3::create_exception;
use pyo3::prelude::*;

pub use budget::Limits;
pub use class::Codec;
pub(crate) use encode_other::{timedelta_us, type_name as encode_type_name};
use format::FORMAT_VERSION;

use crate::errors::DecodeError;

create_exception!(
    _native,
    FormatVersionError,
    DecodeError,
    "Bytes were written by another format version of the codec."
);

/// Upper bound for `max_depth`: both directions recurse on the native stack,
/// up to about 400 bytes per level in a release build (one container's
/// frame, scalars written in it; the recursive step in between tail-calls),
/// so the limit needs ~400 KiB of thread stack and the default of 128 about
/// 50 KiB.
pub const MAX_DEPTH_LIMIT: u32 = 1000;
pub const DEFAULT_COMPRESS_THRESHOLD: usize = 4096;
pub const DEFAULT_MAX_DEPTH: u32 = 128;

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Codec>()?;
    fastcall::install(&py.get_type::<Codec>())?;
    m.add("FormatVersionError", py.get_type::<FormatVersionError>())?;
    m.add("CODEC_FORMAT_VERSION", FORMAT_VERSION)?;
    Ok(())
}
