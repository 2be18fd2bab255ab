//! Every option the project reads, once: its name, its default, its bounds.
//!
//! Data only, depending on nothing in the crate: the engine's own defaults
//! (`RedisClient`, `TwoTierCache`) are read from here, the rules that check
//! a raw value are in `rules.rs`, the groups a reader parses together in
//! `mod.rs`. Python sees this table as `ormcache_redis.config.OPTIONS`.

/// A Redis URL (`src/redis/url/mod.rs` says which); unset unless written.
pub struct Url {
    pub name: &'static str,
}

/// Free text, unset unless written.
pub struct Text {
    pub name: &'static str,
}

/// A key prefix: no whitespace, at most `max_chars` characters.
pub struct Prefix {
    pub name: &'static str,
    pub default: &'static str,
    pub max_chars: Option<usize>,
}

/// A comma-separated list of names.
pub struct Names {
    pub name: &'static str,
    pub default: &'static [&'static str],
}

/// Seconds in (`above`, `at_most`].
pub struct Seconds {
    pub name: &'static str,
    pub default: f64,
    pub above: f64,
    pub at_most: f64,
}

/// A whole number in [`minimum`, `maximum`].
pub struct Whole {
    pub name: &'static str,
    pub default: u64,
    pub minimum: u64,
    pub maximum: u64,
}

/// True or False, written as Odoo writes its own booleans.
pub struct Switch {
    pub name: &'static str,
    pub default: bool,
}

/// One of a few words, each with its other spellings (the first is the
/// one the setting holds).
pub struct Choice {
    pub name: &'static str,
    pub default: &'static str,
    pub choices: &'static [&'static [&'static str]],
}

/// A secret of at least `min_chars` characters, never repeated in an error.
pub struct Secret {
    pub name: &'static str,
    pub min_chars: usize,
}

/// A bearer token: at least `min_chars` characters, no whitespace.
pub struct Token {
    pub name: &'static str,
    pub min_chars: usize,
}

/// Comma-separated IP addresses or networks.
pub struct Networks {
    pub name: &'static str,
}

// ------------------------------------------------------------------ the cache

pub const URL: Url = Url {
    name: "ormcache_redis_url",
};
pub const EXPIRE: Whole = Whole {
    name: "ormcache_redis_expire",
    default: 3600,
    minimum: 1,
    maximum: 365 * 86400,
};
pub const PREFIX: Prefix = Prefix {
    name: "ormcache_redis_prefix",
    default: "ormcache:",
    max_chars: Some(64),
};
/// Caches whose values are plain data that every process computes alike.
/// `templates` holds views ready for the web client (`get_views`) and
/// template ids, shared, next to compiled QWeb code, which cannot be
/// encoded and stays in the process (and is listed in `LOCAL_METHODS` so
/// that it is not even tried). `groups` (18.0+) holds the group
/// definitions, which the codec rebuilds exactly. routing* (werkzeug maps,
/// endpoints) and templates.cached_values (rendered pages, keyed on
/// requests) hold process-bound objects: they stay local. The default
/// names only the caches of the running Odoo (17.0 has no 'stable' nor
/// 'groups').
pub const SHARED_CACHES: Names = Names {
    name: "ormcache_redis_shared_caches",
    default: &["default", "stable", "assets", "templates", "groups"],
};
/// Added to `BUILT_IN_LOCAL_METHODS`, never replacing them.
pub const LOCAL_METHODS: Names = Names {
    name: "ormcache_redis_local_methods",
    default: &[],
};
/// Bounds background work only (a probe's new connection, write batches):
/// a request never waits for it.
pub const CONNECT_TIMEOUT: Seconds = Seconds {
    name: "ormcache_redis_connect_timeout",
    default: 0.5,
    above: 0.0,
    at_most: 60.0,
};
pub const SOCKET_TIMEOUT: Seconds = Seconds {
    name: "ormcache_redis_socket_timeout",
    default: 0.25,
    above: 0.0,
    at_most: 60.0,
};
pub const WRITE_QUEUE: Whole = Whole {
    name: "ormcache_redis_write_queue",
    default: 10_000,
    minimum: 1,
    maximum: 10_000_000,
};
pub const WRITE_QUEUE_MB: Whole = Whole {
    name: "ormcache_redis_write_queue_mb",
    default: 64,
    minimum: 1,
    maximum: 64 * 1024,
};
/// The largest entry read from or written to Redis: far above any Odoo
/// cache value, far below what would strain a worker.
pub const MAX_VALUE_MB: Whole = Whole {
    name: "ormcache_redis_max_value_mb",
    default: 16,
    minimum: 1,
    maximum: 512,
};
/// Every L1 of one process together (each cache of each registry), in
/// MiB: past it the process's least recently used entries go, from
/// whichever cache holds them. Unset under Odoo: `L1_SHARE_OF_MEMORY_SOFT`.
pub const L1_MAX_MB: Whole = Whole {
    name: "ormcache_redis_l1_max_mb",
    default: 512,
    minimum: 1,
    maximum: 1 << 20,
};
/// Under Odoo, with `L1_MAX_MB` unset, L1 may hold this share (1/4) of
/// `limit_memory_soft`, the virtual memory past which Odoo recycles a
/// worker (2048 MiB by default, so 512 MiB: `L1_MAX_MB`'s default). The
/// other three quarters are for what a worker needs besides (130-140 MB
/// of a bare Odoo 19 worker, the ORM's record cache, a request building a
/// report or an import) and for what virtual memory counts above RSS
/// (thread stacks, malloc arenas, mapped libraries): the cache must never
/// be why a worker is recycled, which would empty it. A threaded server
/// restarts itself past the same limit, so it applies there too.
pub const L1_SHARE_OF_MEMORY_SOFT: u64 = 4;
/// Cached methods' hit path in Rust (`native_lookup.py`).
pub const NATIVE_LOOKUP: Switch = Switch {
    name: "ormcache_redis_native_lookup",
    default: true,
};

/// The write-behind queue's bound in bytes, as `RedisClient` takes it.
pub const WRITE_QUEUE_BYTES: u64 = WRITE_QUEUE_MB.default << 20;
/// The entry bound in bytes, as `RedisClient` takes it.
pub const MAX_VALUE_BYTES: u64 = MAX_VALUE_MB.default << 20;
/// The process's L1 bound in bytes, before anything sets it.
pub const L1_MAX_BYTES: u64 = L1_MAX_MB.default << 20;

/// Methods that never leave the process, in Odoo's own words
/// (model.method): those keyed on secrets (a cache key never leaves the
/// process when it holds a password or a session id, hashed or not: a fast
/// hash of a password is guessable offline), and those whose values are
/// bound to the process. Always in force: `LOCAL_METHODS` only adds.
pub const BUILT_IN_LOCAL_METHODS: [&str; 6] = [
    "res.users.check",                  // 17.0, 18.0: keyed on (uid, passwd)
    "res.users._check_uid_passwd",      // 19.0: keyed on (uid, passwd)
    "res.users._compute_session_token", // keyed on the session id
    "res.users._crypt_context",         // a passlib CryptContext: process-bound
    // 19.0: compiled QWeb functions, process-bound.
    "ir.qweb._generate_code_cached",
    // 19.0: cached for its side effect (it clears the cursor's preloaded
    // views once per clear of `templates` in this process): a value from
    // another process would skip it.
    "ir.ui.view._clear_preload_views_cache_if_needed",
];

// ------------------------------------------------------------------ the secret

/// One secret for every database's cache entries and session records,
/// instead of each database's `database.secret`.
pub const SECRET: Secret = Secret {
    name: "ormcache_redis_secret",
    min_chars: 16,
};

// ------------------------------------------------------------------ the metrics

pub const METRICS_ALLOW: Networks = Networks {
    name: "ormcache_redis_metrics_allow",
};
pub const METRICS_TOKEN: Token = Token {
    name: "ormcache_redis_metrics_token",
    min_chars: 32,
};
/// A dead process's figures outlive it by three intervals.
pub const METRICS_INTERVAL: Seconds = Seconds {
    name: "ormcache_redis_metrics_interval",
    default: 15.0,
    above: 0.0,
    at_most: 3600.0,
};

// ------------------------------------------------------------------ the sessions

pub const SESSION_STORE: Choice = Choice {
    name: "session_store",
    default: "filesystem",
    choices: &[&["redis"], &["filesystem", "file", "files", "fs"]],
};
pub const SESSION_URL: Url = Url {
    name: "session_store_url",
};
pub const SESSION_PREFIX: Prefix = Prefix {
    name: "session_store_prefix",
    default: "odoo:session:",
    max_chars: None,
};
/// Seconds an anonymous session lives (never above Odoo's lifetime).
pub const SESSION_ANONYMOUS_TTL: Seconds = Seconds {
    name: "session_store_anonymous_ttl",
    default: 4.0 * 3600.0,
    above: 0.0,
    at_most: 1e9,
};
/// The deadline of one Redis call for a session.
pub const SESSION_TIMEOUT: Seconds = Seconds {
    name: "session_store_timeout",
    default: 1.0,
    above: 0.0,
    at_most: 60.0,
};
/// Seals session ids so that `to-files` can name the files again.
pub const SESSION_SECRET: Text = Text {
    name: "session_store_secret",
};
