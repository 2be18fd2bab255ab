//! What one value may cost to decode, whatever the bytes say.
//!
//! Bytes read from Redis are untrusted, and checking every length against
//! the input (`format.rs`) is not enough: a few bytes can ask for a lot. An
//! empty set is 2 bytes on the wire and ~216 bytes in memory; an LZ4 block
//! inflates up to 255:1; keys whose Python hashes are equal make every
//! insertion into a set or dict probe all earlier ones (quadratic time,
//! with the GIL held). So every decode runs against four limits, all
//! `Codec` options, and refuses the value with a `DecodeError` (a miss for
//! the cache) as soon as one is passed:
//!
//! - `max_decoded_bytes`: the payload, after decompression. Checked against
//!   the frame header before the decompression buffer is allocated, with
//!   the declared size also plausible for the compressed bytes present.
//! - `max_decoded_memory`: the memory the decode holds: the estimated
//!   CPython size of every object it builds ([`cost`]; 64-bit CPython 3.11
//!   sizes, header and GC header included, hash tables grown as CPython
//!   grows them), plus the uncompressed payload of a compressed frame.
//! - `max_objects`: objects built per value, which bounds the time. An
//!   object counts 1, plus [`PY_CALL`] for each Python call needed to build
//!   it (date/time/datetime, a fixed-offset tzinfo, Decimal, an int beyond
//!   64 bits, a registered extension's `from_state`): those cost ~10-50
//!   times a native object.
//!
//!   Both are priced by a walk over the payload (`scan.rs`) that builds
//!   nothing and stops at the first limit passed, before the decoder
//!   builds anything: a bomb is refused having cost one pass over its
//!   bytes. A container is charged its slots and hash table when its count
//!   is read, so one holds at most `max_decoded_memory / 8` items. A
//!   payload of n bytes costs at most 256n bytes and 9n objects
//!   (`scan::MAX_*_PER_BYTE`); one small enough to fit whatever it holds
//!   (about 110 KB with the defaults) is not walked, which keeps the
//!   common small values as fast as before. A payload of n bytes also
//!   costs at least n - 1 ([`cost`]), so a compressed frame declaring more
//!   than `max_decoded_memory / 2` bytes is refused before it is inflated.
//! - `max_hash_collisions`: set elements and dict keys whose hash equals
//!   the hash of an earlier one in the same container, summed over the
//!   value.
//!
//! # Hash flooding
//!
//! CPython probes a set or dict table along a sequence derived from the
//! whole 64-bit hash (the high bits are shifted in at every step), so keys
//! whose hashes differ share at most a few probes, whatever their low bits.
//! Keys with *equal* hashes share the whole sequence: n of them cost n²/2
//! probes and equality tests. Equal hashes can only be produced at will
//! for types whose hash is a public arithmetic function:
//!
//! - int: `x mod (2**61 - 1)` with the sign, and -1 hashes as -2. An int
//!   with `|x| < 2**61` is its own hash (mod 2**61 - 1), so distinct ones
//!   only collide as -1/-2 and 0/±(2**61 - 1): a pair or two per container;
//!   beyond that, `k * (2**61 - 1) + c` all collide. float, Decimal and
//!   bool hash by numeric value too.
//! - tuple and frozenset: invertible mixes of their items' hashes, so even
//!   tuples of small ints can be chosen to collide.
//! - registered extension types: their own `__hash__`.
//!
//! str, bytes and the datetime types hash their bytes with SipHash: equal
//! 64-bit outputs cannot be mass-produced, even with a known
//! `PYTHONHASHSEED`. So the decoder notes, while it decodes the elements
//! of a set or the keys of a dict, whether any is of a computable-hash
//! kind, inserting them as they come until one is. From that one on, they
//! wait; before inserting them it hashes them, sorts the hashes and counts
//! the repeats: all the elements of a set (those inserted already too),
//! and the keys of a dict from the first such key on (those before it hash
//! safely and are already inserted, in order). The quadratic work left is
//! at most `max_hash_collisions² / 2` comparisons per value.
//!
//! # Encoding
//!
//! The encoder prices its own output with the same walk, so what a codec
//! encodes the same codec decodes: a value that would pass
//! `max_decoded_memory` or `max_objects` when decoded is an `EncodeError`
//! (kept in L1 only), not an entry that every reader refuses. A value is
//! not compressed when its uncompressed payload would not fit in the
//! memory budget next to its objects. Hash collisions are not checked when
//! encoding (a real value essentially never has any). The encoder stops as
//! soon as the output passes `max_decoded_bytes`, instead of encoding it
//! all first.

pub const DEFAULT_MAX_DECODED_BYTES: usize = 32 * 1024 * 1024;
pub const DEFAULT_MAX_DECODED_MEMORY: usize = 32 * 1024 * 1024;
pub const DEFAULT_MAX_OBJECTS: usize = 1_000_000;
pub const DEFAULT_MAX_HASH_COLLISIONS: usize = 256;

/// Extra objects counted for each Python call made to build an object.
pub const PY_CALL: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_decoded_bytes: usize,
    pub max_decoded_memory: usize,
    pub max_objects: usize,
    pub max_hash_collisions: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_decoded_bytes: DEFAULT_MAX_DECODED_BYTES,
            max_decoded_memory: DEFAULT_MAX_DECODED_MEMORY,
            max_objects: DEFAULT_MAX_OBJECTS,
            max_hash_collisions: DEFAULT_MAX_HASH_COLLISIONS,
        }
    }
}

/// Which limit a value passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exceeded {
    Memory,
    Objects,
    Collisions,
}

impl Exceeded {
    /// "more than <option>=<limit> ...", completed by the caller.
    #[cold]
    pub fn describe(self, limits: &Limits) -> String {
        match self {
            Exceeded::Memory => format!(
                "more than max_decoded_memory={} bytes (estimated size of the objects, \
                 plus the uncompressed payload of a compressed value)",
                limits.max_decoded_memory
            ),
            Exceeded::Objects => format!(
                "more than max_objects={} objects (an object built by a Python call counts {})",
                limits.max_objects,
                1 + PY_CALL
            ),
            Exceeded::Collisions => format!(
                "more than max_hash_collisions={} set elements or dict keys whose hash \
                 equals another's (hash flooding)",
                limits.max_hash_collisions
            ),
        }
    }
}

/// Estimated memory of decoded objects, from what the wire says (type and
/// length), so that encoder and decoder compute the same figure. A small
/// int (0..=127), None and bools are shared singletons: nothing.
///
/// Every encoding costs at least as many bytes as it takes on the wire
/// (a container or item slot is 8 or more per item byte; a str, bytes,
/// Decimal, int, float, date/time, tz or extension costs more than its
/// longest encoding, overlong varints included), except a lone top-level
/// 1-byte scalar: so a payload of n bytes costs at least n - 1 bytes. The
/// decoder relies on it to refuse a compressed frame whose payload could
/// not fit next to its objects before inflating it.
///
/// A length `n` below is read from the input or is the length of a live
/// Python object, far below 2**58 on a 64-bit machine: the arithmetic
/// cannot overflow.
pub mod cost {
    /// A pointer on the decoder's private stack, where items wait until
    /// their container is built.
    pub const STACK_SLOT: usize = 8;
    /// An item of a tuple or list: its slot in the container and on the
    /// stack.
    pub const ITEM: usize = 8 + STACK_SLOT;
    /// An int of up to 64 bits (three 30-bit digits).
    pub const INT: usize = 36;
    pub const FLOAT: usize = 24;
    /// date, time or datetime.
    pub const TEMPORAL: usize = 64;
    /// A `datetime.timezone` and the `timedelta` it is built from.
    pub const TZ_OFFSET: usize = 96;
    /// The object an extension's `from_state` builds around its state.
    pub fn extension(tag_len: usize) -> usize {
        64 + tag_len
    }

    /// Any str of `n` UTF-8 bytes: an ASCII one takes 49 + n bytes, a
    /// latin-1, UCS-2 or UCS-4 one at most 80 + n.
    #[inline]
    pub fn str(n: usize) -> usize {
        80 + n
    }

    #[inline]
    pub fn bytes(n: usize) -> usize {
        33 + n
    }

    /// An int beyond 64 bits of `n` magnitude bytes (30-bit digits).
    pub fn big_int(n: usize) -> usize {
        32 + 2 * n
    }

    pub fn decimal(n: usize) -> usize {
        104 + n
    }

    #[inline]
    pub fn tuple(n: usize) -> usize {
        40 + n * ITEM
    }

    #[inline]
    pub fn list(n: usize) -> usize {
        56 + n * ITEM
    }

    /// A set or frozenset filled by `n` successive adds: 216 bytes with 8
    /// inline slots; past 4 elements a table of 16-byte slots, grown 4x
    /// (2x above 50 000 elements) each time it is 3/5 full.
    pub fn set(n: usize) -> usize {
        let mut slots = 8usize;
        let table = loop {
            // The add that makes fill * 5 >= mask * 3 grows the table.
            let fill_at_growth = (3 * (slots - 1)).div_ceil(5);
            if n < fill_at_growth {
                break if slots > 8 { slots * 16 } else { 0 };
            }
            let min_used = fill_at_growth * if fill_at_growth > 50_000 { 2 } else { 4 };
            slots = (min_used + 1).next_power_of_two();
        };
        216 + n * STACK_SLOT + table
    }

    /// A dict filled by `n` successive inserts: 64 bytes, then a keys
    /// table of 2**k slots with 2/3 of them usable, doubled when full:
    /// index bytes per slot plus 24-byte entries; key and value wait on
    /// the decoder's stack.
    pub fn dict(n: usize) -> usize {
        let keys = if n == 0 {
            0
        } else {
            let slots = (3 * n).div_ceil(2).next_power_of_two().max(8);
            let index = match slots {
                0..=128 => 1,
                129..=65_536 => 2,
                65_537..=0xFFFF_FFFF => 4,
                _ => 8,
            };
            32 + slots * index + slots * 2 / 3 * 24
        };
        64 + n * 2 * STACK_SLOT + keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_table_follows_cpython_growth() {
        // sys.getsizeof(set) after n adds, CPython 3.11, 64-bit.
        for (n, size) in [
            (0, 216),
            (4, 216),
            (5, 728),
            (18, 728),
            (19, 2264),
            (85, 8408),
            (100_000, 4_194_520),
        ] {
            assert_eq!(cost::set(n) - n * cost::STACK_SLOT, size, "n={n}");
        }
    }

    #[test]
    fn dict_table_follows_cpython_growth() {
        // sys.getsizeof(dict) after n inserts of int keys, CPython 3.11.
        for (n, size) in [(0, 64), (1, 224), (5, 224), (8, 352), (11, 632), (44, 2264)] {
            assert_eq!(cost::dict(n) - n * 2 * cost::STACK_SLOT, size, "n={n}");
        }
        // Large tables: 4-byte indices; within a few percent.
        let big = cost::dict(100_000) - 100_000 * 2 * cost::STACK_SLOT;
        assert!((5_242_960..5_300_000).contains(&big), "{big}");
    }
}
