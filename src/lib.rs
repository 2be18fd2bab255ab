//! `ormcache_redis._native`: the Rust engine behind ormcache_redis.
//!
//! This file only registers; each concern lives in its own module.

use pyo3::prelude::*;

pub mod c_entry;
pub mod cached_method;
pub mod clock;
pub mod codec;
pub mod crypto;
pub mod entry;
pub mod errors;
pub mod fork;
pub mod gil_cell;
pub mod key_hash;
pub mod key_parts;
pub mod keys;
pub mod lru;
pub mod member_slot;
pub mod memory;
pub mod method_type;
pub mod naming;
pub mod odoo_lookup;
pub mod record_id;
pub mod redis;
pub mod settings;
pub mod stats;
pub mod two_tier;
pub mod weak_ref;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    gil_cell::require_gil(m.py())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    fork::install_atfork_handler();
    errors::register(m)?;
    codec::register(m)?;
    crypto::register(m)?;
    keys::register(m)?;
    lru::register(m)?;
    naming::register(m)?;
    redis::register(m)?;
    settings::register(m)?;
    two_tier::register(m)?;
    cached_method::register(m)?;
    odoo_lookup::register(m)?;
    errors::set_public_module(m)?;
    Ok(())
}
