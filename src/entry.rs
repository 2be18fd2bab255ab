//! How one shared-tier entry is named and framed in Redis.
//!
//! Name: `prefix + kind + hex(digest[..16])`, where the digest is SHA-256
//! over the caller's namespace (database, registry, cache, generation) and
//! the canonical key (`keys::key_digest`), so key material never appears in
//! Redis in clear text. Data entries use kind `c:`, the per-method
//! generation hash of a namespace `g:`.
//!
//! Value:
//!
//! ```text
//! b"OCE1" | digest (32 bytes) | method generation (u64 LE) | codec bytes
//! ```
//!
//! A read accepts a value only when the whole digest and the method's
//! current generation match: a truncated-digest collision, a stale
//! generation or a foreign value is a miss, never a wrong answer.

use crate::redis::writer::Command;

const MAGIC: &[u8; 4] = b"OCE1";
const DIGEST_LEN: usize = 32;
/// Bytes before the codec bytes.
pub const HEADER_LEN: usize = MAGIC.len() + DIGEST_LEN + 8;

pub const DATA: &[u8] = b"c:";
pub const GENERATIONS: &[u8] = b"g:";

/// The Redis key of an entry (or of a namespace's generations) of `kind`.
pub fn redis_key(prefix: &str, kind: &[u8], digest: &[u8; 32]) -> Vec<u8> {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut key = Vec::with_capacity(prefix.len() + kind.len() + 32);
    key.extend_from_slice(prefix.as_bytes());
    key.extend_from_slice(kind);
    for byte in &digest[..16] {
        key.push(DIGITS[(byte >> 4) as usize]);
        key.push(DIGITS[(byte & 15) as usize]);
    }
    key
}

/// A buffer holding the header; the codec appends the value after it.
pub fn start_value(digest: &[u8; 32], generation: u64) -> Vec<u8> {
    let mut value = Vec::with_capacity(128);
    value.extend_from_slice(MAGIC);
    value.extend_from_slice(digest);
    value.extend_from_slice(&generation.to_le_bytes());
    value
}

/// The codec bytes of `value` when it is exactly the entry expected.
pub fn codec_bytes<'a>(value: &'a [u8], digest: &[u8; 32], generation: u64) -> Option<&'a [u8]> {
    let header = value.get(..HEADER_LEN)?;
    let (magic, rest) = header.split_at(MAGIC.len());
    let (stored_digest, stored_generation) = rest.split_at(DIGEST_LEN);
    let stored_generation = u64::from_le_bytes(stored_generation.try_into().ok()?);
    (magic == MAGIC && stored_digest == digest && stored_generation == generation)
        .then(|| &value[HEADER_LEN..])
}

/// `SET key value EX ttl`: value and expiry in one atomic command.
pub fn set_command(key: Vec<u8>, value: Vec<u8>, ttl_seconds: u64) -> Command {
    vec![
        b"SET".to_vec(),
        key,
        value,
        b"EX".to_vec(),
        ttl_seconds.to_string().into_bytes(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: [u8; 32] = [7; 32];

    fn entry(generation: u64) -> Vec<u8> {
        let mut value = start_value(&DIGEST, generation);
        value.extend_from_slice(b"codec");
        value
    }

    #[test]
    fn round_trip() {
        assert_eq!(codec_bytes(&entry(3), &DIGEST, 3), Some(&b"codec"[..]));
    }

    #[test]
    fn anything_else_is_a_miss() {
        let mut other_digest = DIGEST;
        other_digest[31] ^= 1;
        assert_eq!(codec_bytes(&entry(3), &other_digest, 3), None);
        assert_eq!(codec_bytes(&entry(3), &DIGEST, 4), None);
        for cut in 0..HEADER_LEN {
            assert_eq!(
                codec_bytes(&entry(3)[..cut], &DIGEST, 3),
                None,
                "cut at {cut}"
            );
        }
        let mut foreign = entry(3);
        foreign[0] = b'X';
        assert_eq!(codec_bytes(&foreign, &DIGEST, 3), None);
    }

    #[test]
    fn key_names_hold_only_the_prefix_and_hex() {
        let key = redis_key("ormcache:", DATA, &DIGEST);
        assert_eq!(key, b"ormcache:c:07070707070707070707070707070707".to_vec());
    }
}
