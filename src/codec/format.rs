//! Wire format of the safe value codec (format version 1).
//!
//! # Frame
//!
//! ```text
//! offset  size  field
//! 0       2     magic            0xC0 0xDE
//! 2       1     format version   0x01 (any other value -> FormatVersionError)
//! 3       1     flags            bit 0 = LZ4; any other bit set -> DecodeError
//! 4       ...   if LZ4:  varint uncompressed length, then one LZ4 *block*
//!                        (lz4_flex::block, no size prefix) that must inflate
//!                        to exactly that length;
//!               else:    the payload itself.
//! ```
//!
//! The payload is exactly one value; bytes after it are an error. The
//! declared uncompressed length is checked against `max_decoded_bytes`,
//! against the LZ4 maximum ratio (255:1) of the compressed bytes that are
//! actually present, and against the memory budget (`budget.rs`: the buffer
//! plus at least as much again for the objects) *before* the output buffer
//! is allocated.
//!
//! # Varints
//!
//! `varint` = unsigned LEB128 (7 bits per byte, low group first, high bit =
//! "more"), at most 10 bytes for a u64; overflowing encodings are rejected.
//! `zvarint` = zigzag-mapped signed value (`(n << 1) ^ (n >> 63)`) as a
//! varint. Every length and count is a varint and is checked against the
//! remaining input before anything is allocated (an element needs at least
//! one byte, a dict entry two), and its cost charged to the decode budgets
//! (`budget.rs`).
//!
//! # Values (one tag byte, then the body)
//!
//! ```text
//! tag        type               body
//! 0x00       None               -
//! 0x01       False              -
//! 0x02       True               -
//! 0x03       int (i64 range)    zvarint
//! 0x04       int >= 2**63       varint n, n bytes magnitude little-endian
//! 0x05       int < -2**63       varint n, n bytes magnitude little-endian (value = -magnitude)
//! 0x06       float              8 bytes, IEEE-754 bits little-endian (nan payload, -0.0 exact)
//! 0x07       str                varint n, n bytes UTF-8 (strict; lone surrogates cannot be encoded)
//! 0x08       bytes              varint n, n bytes
//! 0x09       tuple              varint n, n values
//! 0x0A       list               varint n, n values
//! 0x0B       dict               varint n, n x (key value, value value), insertion order
//! 0x0C       set                varint n, n values
//! 0x0D       frozenset          varint n, n values
//! 0x0E       datetime.datetime  u16-LE year, u8 month, day, hour, minute, second,
//!                               varint microsecond, u8 fold, tz
//! 0x0F       datetime.date      u16-LE year, u8 month, u8 day
//! 0x10       datetime.time      u8 hour, minute, second, varint microsecond, u8 fold, tz
//! 0x11       decimal.Decimal    varint n, n bytes ASCII: str(value) (exact, incl. NaN, sNaN, -0, Infinity)
//! 0x12       extension          varint n, n bytes ASCII tag, then one value: the state
//! 0x80-0xFF  small int          value = tag - 0x80 (0..=127)
//! ```
//!
//! `tz` (the tzinfo of a datetime or time):
//!
//! ```text
//! 0x00  None
//! 0x01  datetime.timezone(offset)        zvarint offset in microseconds
//! 0x02  datetime.timezone(offset, name)  zvarint offset in microseconds, varint n, n bytes UTF-8 name
//! 0x03  zoneinfo.ZoneInfo(key)           varint n, n bytes UTF-8 key
//! ```
//!
//! Any other tzinfo (pytz, dateutil, a `timezone` or `ZoneInfo` subclass, a
//! `ZoneInfo` built from a file without key) cannot be encoded.
//!
//! Types are matched by *exact* type: a subclass of a supported type is only
//! encodable when it is registered as an extension type, so every value comes
//! back as exactly its own type. Containers and extension values count as
//! one nesting level each; more than `max_depth` levels is an error on both
//! sides (this is also what stops cyclic structures).

pub const MAGIC: [u8; 2] = [0xC0, 0xDE];
pub const FORMAT_VERSION: u8 = 1;
pub const HEADER_LEN: usize = 4;
pub const FLAG_LZ4: u8 = 0x01;
pub const KNOWN_FLAGS: u8 = FLAG_LZ4;
/// LZ4 cannot inflate by more than ~255:1; a declared length above this
/// ratio is a lie and is refused before allocating.
pub const LZ4_MAX_RATIO: usize = 255;

pub const T_NONE: u8 = 0x00;
pub const T_FALSE: u8 = 0x01;
pub const T_TRUE: u8 = 0x02;
pub const T_INT: u8 = 0x03;
pub const T_BIGINT_POS: u8 = 0x04;
pub const T_BIGINT_NEG: u8 = 0x05;
pub const T_FLOAT: u8 = 0x06;
pub const T_STR: u8 = 0x07;
pub const T_BYTES: u8 = 0x08;
pub const T_TUPLE: u8 = 0x09;
pub const T_LIST: u8 = 0x0A;
pub const T_DICT: u8 = 0x0B;
pub const T_SET: u8 = 0x0C;
pub const T_FROZENSET: u8 = 0x0D;
pub const T_DATETIME: u8 = 0x0E;
pub const T_DATE: u8 = 0x0F;
pub const T_TIME: u8 = 0x10;
pub const T_DECIMAL: u8 = 0x11;
pub const T_EXT: u8 = 0x12;
pub const T_SMALLINT: u8 = 0x80;
pub const SMALLINT_MAX: i64 = 0x7F;

pub const TZ_NONE: u8 = 0x00;
pub const TZ_OFFSET: u8 = 0x01;
pub const TZ_OFFSET_NAMED: u8 = 0x02;
pub const TZ_ZONEINFO: u8 = 0x03;

#[inline]
pub fn write_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Writes `v` as a varint at `dst`; returns the number of bytes written
/// (1 to `MAX_VARINT_LEN`).
///
/// # Safety
/// `dst` is valid for `MAX_VARINT_LEN` bytes of writes.
#[inline(always)]
pub unsafe fn put_varint(dst: *mut u8, mut v: u64) -> usize {
    if v < 0x80 {
        *dst = v as u8;
        return 1;
    }
    if v < 0x4000 {
        *dst = (v as u8) | 0x80;
        *dst.add(1) = (v >> 7) as u8;
        return 2;
    }
    let mut i = 0;
    while v >= 0x80 {
        *dst.add(i) = (v as u8) | 0x80;
        v >>= 7;
        i += 1;
    }
    *dst.add(i) = v as u8;
    i + 1
}

pub const MAX_VARINT_LEN: usize = 10;

#[inline]
pub fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

#[inline]
pub fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

#[inline]
pub fn write_zvarint(out: &mut Vec<u8>, v: i64) {
    write_varint(out, zigzag(v));
}

/// Reads a varint at `*pos`; `None` on truncation or u64 overflow.
#[inline(always)]
pub fn read_varint(data: &[u8], pos: &mut usize) -> Option<u64> {
    // One byte: lengths of short strings, small counts; two: ints up to
    // ±8191, lengths up to 16 KiB.
    let first = *data.get(*pos)?;
    if first < 0x80 {
        *pos += 1;
        return Some(u64::from(first));
    }
    if let Some(&second) = data.get(*pos + 1) {
        if second < 0x80 {
            *pos += 2;
            return Some(u64::from(first & 0x7F) | u64::from(second) << 7);
        }
    }
    read_varint_bytewise(data, pos)
}

/// A varint of three bytes or more (or none).
#[inline(never)]
fn read_varint_bytewise(data: &[u8], pos: &mut usize) -> Option<u64> {
    let mut result: u64 = 0;
    let mut shift = 0u32;
    loop {
        let b = *data.get(*pos)?;
        *pos += 1;
        if shift == 63 && b > 1 {
            return None;
        }
        result |= u64::from(b & 0x7F) << shift;
        if b & 0x80 == 0 {
            return Some(result);
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_round_trip() {
        for v in [
            0u64,
            1,
            127,
            128,
            300,
            u32::MAX as u64,
            u64::MAX - 1,
            u64::MAX,
        ] {
            let mut buf = Vec::new();
            write_varint(&mut buf, v);
            let mut pos = 0;
            assert_eq!(read_varint(&buf, &mut pos), Some(v));
            assert_eq!(pos, buf.len());
            let mut raw = [0u8; MAX_VARINT_LEN];
            // SAFETY: room for the longest varint.
            let n = unsafe { put_varint(raw.as_mut_ptr(), v) };
            assert_eq!(&raw[..n], &buf[..]);
        }
    }

    #[test]
    fn varint_rejects_overflow_and_truncation() {
        let mut pos = 0;
        assert_eq!(read_varint(&[0xFF; 11], &mut pos), None);
        let mut pos = 0;
        // 10th byte may only carry one bit.
        let mut over = vec![0xFF; 9];
        over.push(0x02);
        assert_eq!(read_varint(&over, &mut pos), None);
        let mut pos = 0;
        assert_eq!(read_varint(&[0x80, 0x80], &mut pos), None);
        let mut pos = 0;
        assert_eq!(read_varint(&[], &mut pos), None);
    }

    #[test]
    fn zigzag_round_trip() {
        for v in [0i64, 1, -1, 63, -64, i64::MAX, i64::MIN] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
        assert_eq!(zigzag(-1), 1);
        assert_eq!(zigzag(1), 2);
    }
}
