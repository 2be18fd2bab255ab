//! How one shared-tier entry is named, framed and authenticated in Redis.
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
//! b"OCE2" | method generation token (u64 LE) | tag (32 bytes) | codec bytes
//! tag = HMAC-SHA-256(entry key, b"OCE2" | digest (32 bytes) | token | codec bytes)
//! ```
//!
//! Redis is untrusted: a read accepts a value only when its token is the
//! method's current one and the tag verifies (constant time) for the
//! digest of the key being looked up, before a single codec byte is
//! decoded. So a planted or altered body, a header copied from another
//! entry, an entry of another key, namespace or database (other key
//! material), or a stale generation is a miss, never a wrong answer.
//!
//! Generation tokens are random and never reused: a clear writes a fresh
//! one, and a missing one (evicted, flushed, lost in a failover) is replaced
//! by a fresh one before use, so no loss of bookkeeping can make entries
//! stamped with an older token valid again.

use crate::crypto::{Mac, TAG_LEN};
use crate::redis::writer::Command;

const MAGIC: &[u8; 4] = b"OCE2";
const TOKEN_LEN: usize = 8;
/// Bytes before the codec bytes.
pub const HEADER_LEN: usize = MAGIC.len() + TOKEN_LEN + TAG_LEN;
const TAG_START: usize = MAGIC.len() + TOKEN_LEN;

pub const DATA: &[u8] = b"c:";
pub const GENERATIONS: &[u8] = b"g:";
/// A single-flight lock (see `two_tier::flight`).
pub const LOCK: &[u8] = b"l:";

/// The token of entries whose key names no method (only the namespace
/// invalidates them).
pub const NO_METHOD: u64 = 0;

/// Why a stored value was not accepted.
#[derive(Debug, PartialEq, Eq)]
pub enum Rejection {
    /// Not an entry of this format (garbage, truncated, another version).
    Foreign,
    /// A well-formed entry of an older (or other) method generation.
    Stale,
    /// The tag does not verify: written without the key, or altered.
    Forged,
}

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

/// A fresh generation token: random, never `NO_METHOD`.
pub fn new_token() -> u64 {
    u64::from_le_bytes(crate::crypto::random_bytes::<8>()).max(1)
}

/// A buffer holding a blank header; the codec appends the value after it,
/// then `seal` writes the token and the tag.
pub fn start_value() -> Vec<u8> {
    let mut value = Vec::with_capacity(128);
    value.extend_from_slice(MAGIC);
    value.extend_from_slice(&[0; TOKEN_LEN + TAG_LEN]);
    value
}

fn tag_parts<'a>(digest: &'a [u8; 32], token: &'a [u8], body: &'a [u8]) -> [&'a [u8]; 4] {
    [MAGIC, digest, token, body]
}

/// Stamps a value built with `start_value` + codec bytes with `token`, and
/// writes its tag.
pub fn seal(value: &mut [u8], token: u64, mac: &Mac, digest: &[u8; 32]) {
    let (header, body) = value.split_at_mut(HEADER_LEN);
    header[MAGIC.len()..TAG_START].copy_from_slice(&token.to_le_bytes());
    let tag = mac.tag(&tag_parts(digest, &header[MAGIC.len()..TAG_START], body));
    header[TAG_START..].copy_from_slice(&tag);
}

/// The codec bytes of `value` when it is exactly the entry expected.
pub fn open<'a>(
    value: &'a [u8],
    mac: &Mac,
    digest: &[u8; 32],
    token: u64,
) -> Result<&'a [u8], Rejection> {
    match stored_token(value) {
        None => return Err(Rejection::Foreign),
        Some(stored) if stored != token => return Err(Rejection::Stale),
        Some(_) => {}
    }
    let body = &value[HEADER_LEN..];
    if !mac.verify(
        &tag_parts(digest, &value[MAGIC.len()..TAG_START], body),
        &value[TAG_START..HEADER_LEN],
    ) {
        return Err(Rejection::Forged);
    }
    Ok(body)
}

/// The generation token an entry claims (not yet verified), if framed.
pub fn stored_token(value: &[u8]) -> Option<u64> {
    if value.len() < HEADER_LEN || &value[..MAGIC.len()] != MAGIC {
        return None;
    }
    let bytes: [u8; 8] = value[MAGIC.len()..TAG_START].try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
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

/// `EXPIRE key seconds`: keeps bookkeeping alive while it is used.
pub fn expire_command(key: Vec<u8>, ttl_seconds: u64) -> Command {
    vec![
        b"EXPIRE".to_vec(),
        key,
        ttl_seconds.to_string().into_bytes(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::derive_key;

    const DIGEST: [u8; 32] = [7; 32];

    fn mac() -> Mac {
        Mac::new(&derive_key(b"secret", "cache-entry"))
    }

    fn entry(token: u64, body: &[u8]) -> Vec<u8> {
        let mut value = start_value();
        value.extend_from_slice(body);
        seal(&mut value, token, &mac(), &DIGEST);
        value
    }

    #[test]
    fn round_trip() {
        assert_eq!(
            open(&entry(3, b"codec"), &mac(), &DIGEST, 3),
            Ok(&b"codec"[..])
        );
    }

    #[test]
    fn anything_else_is_a_miss() {
        let mut other_digest = DIGEST;
        other_digest[31] ^= 1;
        let good = entry(3, b"codec");
        assert_eq!(
            open(&good, &mac(), &other_digest, 3),
            Err(Rejection::Forged)
        );
        assert_eq!(open(&good, &mac(), &DIGEST, 4), Err(Rejection::Stale));
        let other_key = Mac::new(&derive_key(b"other", "cache-entry"));
        assert_eq!(open(&good, &other_key, &DIGEST, 3), Err(Rejection::Forged));
        for cut in 0..HEADER_LEN {
            assert_eq!(
                open(&good[..cut], &mac(), &DIGEST, 3),
                Err(Rejection::Foreign),
                "cut at {cut}"
            );
        }
        let mut foreign = good.clone();
        foreign[0] = b'X';
        assert_eq!(open(&foreign, &mac(), &DIGEST, 3), Err(Rejection::Foreign));
    }

    #[test]
    fn every_flipped_bit_outside_the_token_is_forged() {
        let good = entry(3, b"some codec bytes");
        for index in TAG_START..good.len() {
            for bit in 0..8 {
                let mut bad = good.clone();
                bad[index] ^= 1 << bit;
                assert_eq!(
                    open(&bad, &mac(), &DIGEST, 3),
                    Err(Rejection::Forged),
                    "byte {index} bit {bit}"
                );
            }
        }
    }

    #[test]
    fn a_copied_header_does_not_authenticate_another_body() {
        let good = entry(3, b"codec");
        let mut planted = good[..HEADER_LEN].to_vec();
        planted.extend_from_slice(b"evil!");
        assert_eq!(open(&planted, &mac(), &DIGEST, 3), Err(Rejection::Forged));
    }

    #[test]
    fn tokens_are_never_the_no_method_token() {
        assert!((0..1000).all(|_| new_token() != NO_METHOD));
    }

    #[test]
    fn key_names_hold_only_the_prefix_and_hex() {
        let key = redis_key("ormcache:", DATA, &DIGEST);
        assert_eq!(key, b"ormcache:c:07070707070707070707070707070707".to_vec());
    }
}
