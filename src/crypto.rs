//! Keys, message authentication and sealing, all from kept RustCrypto crates.
//!
//! - `derive_key`: HKDF-SHA-256 from a deployment secret, one key per purpose,
//!   so the key that authenticates cache entries never equals the one that
//!   seals session ids.
//! - `Mac`: HMAC-SHA-256 with the keyed state prepared once; checked in
//!   constant time (`hmac`'s `verify_slice`).
//! - `seal`/`open`: ChaCha20-Poly1305 with a random 96-bit nonce per message.
//!
//! Exposed to Python for the session records and the migration tool.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac as _};
use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};
use sha2::Sha256;

pub const KEY_LEN: usize = 32;
pub const TAG_LEN: usize = 32;
/// Bytes kept of a tag on small records: 128 bits, beyond guessing.
pub const SHORT_TAG_LEN: usize = 16;
const NONCE_LEN: usize = 12;
const AEAD_TAG_LEN: usize = 16;
/// Binds every derived key to this product and to the derivation's version.
const HKDF_SALT: &[u8] = b"ormcache_redis/hkdf/v1";

pub type Key = [u8; KEY_LEN];
pub type Tag = [u8; TAG_LEN];

/// A key for one `purpose` (e.g. `"cache-entry"`), derived from `secret`.
pub fn derive_key(secret: &[u8], purpose: &str) -> Key {
    let mut key = [0u8; KEY_LEN];
    Hkdf::<Sha256>::new(Some(HKDF_SALT), secret)
        .expand(purpose.as_bytes(), &mut key)
        .expect("32 bytes is a valid HKDF-SHA-256 output length");
    key
}

/// HMAC-SHA-256 under one key; cheap to clone into each computation.
#[derive(Clone)]
pub struct Mac {
    keyed: Hmac<Sha256>,
}

impl Mac {
    pub fn new(key: &Key) -> Mac {
        Mac {
            keyed: <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(key)
                .expect("HMAC takes keys of any length"),
        }
    }

    fn over(&self, parts: &[&[u8]]) -> Hmac<Sha256> {
        let mut mac = self.keyed.clone();
        for part in parts {
            mac.update(part);
        }
        mac
    }

    /// The tag of the concatenation of `parts`.
    pub fn tag(&self, parts: &[&[u8]]) -> Tag {
        self.over(parts).finalize().into_bytes().into()
    }

    /// Whether `tag` is the tag of `parts`, compared in constant time.
    pub fn verify(&self, parts: &[&[u8]], tag: &[u8]) -> bool {
        tag.len() == TAG_LEN && self.over(parts).verify_slice(tag).is_ok()
    }

    /// Whether `tag` is the first `tag.len()` bytes (at least
    /// `SHORT_TAG_LEN`) of the tag of `parts`, compared in constant time:
    /// for small records (single-flight locks, compute times).
    pub fn verify_short(&self, parts: &[&[u8]], tag: &[u8]) -> bool {
        tag.len() >= SHORT_TAG_LEN && self.over(parts).verify_truncated_left(tag).is_ok()
    }
}

/// Random bytes from the operating system.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    bytes
}

/// `nonce | ciphertext | tag`: encrypts and authenticates `plaintext`, and
/// authenticates `associated` (not stored).
pub fn seal(key: &Key, plaintext: &[u8], associated: &[u8]) -> Vec<u8> {
    let cipher = ChaCha20Poly1305::new(key.into());
    let nonce = random_bytes::<NONCE_LEN>();
    let sealed = cipher
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: plaintext,
                aad: associated,
            },
        )
        .expect("ChaCha20-Poly1305 encrypts messages of any size below 256 GiB");
    let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    out
}

/// The plaintext of a `seal` output; None when anything was altered, the
/// key or the associated data differ.
pub fn open(key: &Key, sealed: &[u8], associated: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < NONCE_LEN + AEAD_TAG_LEN {
        return None;
    }
    let (nonce, body) = sealed.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().ok()?;
    ChaCha20Poly1305::new(key.into())
        .decrypt(
            &Nonce::from(nonce),
            Payload {
                msg: body,
                aad: associated,
            },
        )
        .ok()
}

fn key_arg(key: &[u8]) -> PyResult<Key> {
    key.try_into()
        .map_err(|_| PyValueError::new_err(format!("a key must be {KEY_LEN} bytes")))
}

/// Secrets are text in configuration files and bytes in code: both work.
pub fn secret_bytes(secret: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if let Ok(text) = secret.extract::<String>() {
        return Ok(text.into_bytes());
    }
    secret
        .extract::<Vec<u8>>()
        .map_err(|_| PyValueError::new_err("a secret must be str or bytes"))
}

#[pyfunction(name = "_derive_key")]
fn py_derive_key<'py>(
    py: Python<'py>,
    secret: &Bound<'py, PyAny>,
    purpose: &str,
) -> PyResult<Bound<'py, PyBytes>> {
    let secret = secret_bytes(secret)?;
    if secret.is_empty() {
        return Err(PyValueError::new_err("a secret must not be empty"));
    }
    Ok(PyBytes::new(py, &derive_key(&secret, purpose)))
}

#[pyfunction(name = "_mac_tag")]
fn py_mac_tag<'py>(py: Python<'py>, key: &[u8], data: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    Ok(PyBytes::new(py, &Mac::new(&key_arg(key)?).tag(&[data])))
}

#[pyfunction(name = "_mac_verify")]
fn py_mac_verify(key: &[u8], data: &[u8], tag: &[u8]) -> PyResult<bool> {
    Ok(Mac::new(&key_arg(key)?).verify(&[data], tag))
}

#[pyfunction(name = "_aead_seal")]
#[pyo3(signature = (key, plaintext, associated = b"".as_slice()))]
fn py_aead_seal<'py>(
    py: Python<'py>,
    key: &[u8],
    plaintext: &[u8],
    associated: &[u8],
) -> PyResult<Bound<'py, PyBytes>> {
    Ok(PyBytes::new(
        py,
        &seal(&key_arg(key)?, plaintext, associated),
    ))
}

#[pyfunction(name = "_aead_open")]
#[pyo3(signature = (key, sealed, associated = b"".as_slice()))]
fn py_aead_open<'py>(
    py: Python<'py>,
    key: &[u8],
    sealed: &[u8],
    associated: &[u8],
) -> PyResult<Option<Bound<'py, PyBytes>>> {
    Ok(open(&key_arg(key)?, sealed, associated).map(|plain| PyBytes::new(py, &plain)))
}

/// Registered as private names, kept out of `__all__` (which `add_function`
/// extends): the package's own modules use them, nobody else should.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let functions = [
        wrap_pyfunction!(py_derive_key, m)?,
        wrap_pyfunction!(py_mac_tag, m)?,
        wrap_pyfunction!(py_mac_verify, m)?,
        wrap_pyfunction!(py_aead_seal, m)?,
        wrap_pyfunction!(py_aead_open, m)?,
    ];
    for function in functions {
        let name = function
            .getattr(intern!(m.py(), "__name__"))?
            .cast_into::<PyString>()?;
        m.setattr(&name, function)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differ_per_purpose_and_secret() {
        let a = derive_key(b"secret", "cache-entry");
        assert_ne!(a, derive_key(b"secret", "session-record"));
        assert_ne!(a, derive_key(b"secret2", "cache-entry"));
        assert_eq!(a, derive_key(b"secret", "cache-entry"));
    }

    #[test]
    fn hkdf_matches_rfc5869_case_1() {
        // RFC 5869 A.1 with our salt replaced is not a published vector, so
        // check the primitive itself with the RFC's inputs.
        let ikm = [0x0bu8; 22];
        let salt: Vec<u8> = (0u8..=0x0c).collect();
        let info: Vec<u8> = (0xf0u8..=0xf9).collect();
        let mut okm = [0u8; 42];
        Hkdf::<Sha256>::new(Some(&salt), &ikm)
            .expand(&info, &mut okm)
            .unwrap();
        assert_eq!(okm[..4], [0x3c, 0xb2, 0x5f, 0x25]);
    }

    #[test]
    fn mac_verifies_only_its_own_message() {
        let mac = Mac::new(&derive_key(b"k", "t"));
        let tag = mac.tag(&[b"ab", b"c"]);
        assert!(mac.verify(&[b"a", b"bc"], &tag), "parts are concatenated");
        assert!(!mac.verify(&[b"abd"], &tag));
        assert!(!mac.verify(&[b"abc"], &tag[..31]));
        let other = Mac::new(&derive_key(b"k2", "t"));
        assert!(!other.verify(&[b"abc"], &tag));
    }

    #[test]
    fn sealed_messages_open_only_unaltered() {
        let key = derive_key(b"k", "seal");
        let sealed = seal(&key, b"session id", b"ad");
        assert_eq!(
            open(&key, &sealed, b"ad").as_deref(),
            Some(&b"session id"[..])
        );
        assert_eq!(open(&key, &sealed, b"other"), None);
        for i in 0..sealed.len() {
            let mut flipped = sealed.clone();
            flipped[i] ^= 1;
            assert_eq!(open(&key, &flipped, b"ad"), None, "byte {i}");
        }
        assert_ne!(
            seal(&key, b"x", b""),
            seal(&key, b"x", b""),
            "random nonces"
        );
        assert_eq!(open(&derive_key(b"k2", "seal"), &sealed, b"ad"), None);
    }
}
