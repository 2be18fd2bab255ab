//! The generations hash in Redis: this namespace's per-method tokens read
//! (with a field cap), a clear published (a fresh token, replicated), the
//! token a write is stamped with, forgotten after an outage, and the hash's
//! expiry kept ahead of the entries stamped from it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use redis::Value;

use super::counters::bump;
use super::follow;
use super::TwoTierCache;
use crate::entry;
use crate::errors::RedisReplyError;
use crate::redis::pool::CallError;
use crate::redis::reply_guard::ReplyLimits;
use crate::redis::{call_error_to_py, RedisClient};

/// Methods a namespace's generations hash may name: far more cached
/// methods than Odoo and its addons have (a few hundred).
const MAX_GENERATION_FIELDS: u64 = 4096;
/// Bytes of its `HGETALL` reply: names of up to 256 bytes, 20-digit tokens.
const GENERATIONS_REPLY_BYTES: u64 = MAX_GENERATION_FIELDS * 320;

/// The generations hash, unless it has more than ARGV[1] fields: then
/// their number.
const READ_GENERATIONS_SCRIPT: &str = "local n = redis.call('HLEN', KEYS[1]) \
     if n > tonumber(ARGV[1]) then return n end \
     return redis.call('HGETALL', KEYS[1])";

/// The generation token of a method after its bookkeeping was missing
/// (first use, evicted, flushed, lost in a failover) or rolled back: a
/// fresh random one, never an old one. HSETNX keeps the token a concurrent
/// process may have just created; a rolled-back token is overwritten.
pub(super) fn fresh_token(
    con: &mut impl redis::ConnectionLike,
    generations_key: &[u8],
    method_name: &str,
    overwrite: bool,
    bookkeeping_ttl: u64,
) -> redis::RedisResult<u64> {
    let mut pipe = redis::pipe();
    pipe.cmd(if overwrite { "HSET" } else { "HSETNX" })
        .arg(generations_key)
        .arg(method_name)
        .arg(entry::new_token())
        .ignore()
        .cmd("HGET")
        .arg(generations_key)
        .arg(method_name)
        .cmd("EXPIRE")
        .arg(generations_key)
        .arg(bookkeeping_ttl)
        .ignore();
    let (token,) = pipe.query::<(u64,)>(con)?;
    Ok(token)
}

impl TwoTierCache {
    /// The generation tokens of this namespace's methods in Redis. A hash
    /// with more fields than a namespace can have (`MAX_GENERATION_FIELDS`)
    /// was planted: refused on its announced size, unread, and counted.
    pub(super) fn read_generations(&self, py: Python<'_>) -> PyResult<HashMap<String, u64>> {
        let Some(client) = &self.client else {
            return Ok(HashMap::new());
        };
        let client = client.get();
        let key = self.generations_key();
        let limits = ReplyLimits {
            bytes: GENERATIONS_REPLY_BYTES,
            bulk: GENERATIONS_REPLY_BYTES,
            elements: 2 * MAX_GENERATION_FIELDS,
            option: "the generations hash's field cap",
        };
        // Counted in Redis first: a planted hash costs Redis nothing to
        // refuse (HGETALL of 300,000 fields takes it ~100 ms to build).
        let reply = client
            .call_limited(py, limits, move |con| {
                redis::cmd("EVAL")
                    .arg(READ_GENERATIONS_SCRIPT)
                    .arg(1)
                    .arg(key.as_slice())
                    .arg(MAX_GENERATION_FIELDS)
                    .query::<Value>(con)
            })
            .map_err(|err| {
                if matches!(err, CallError::TooLarge(_)) {
                    bump(&self.counters.oversized_generations, 1);
                }
                call_error_to_py(err)
            })?;
        let pairs: Vec<(String, Vec<u8>)> = match reply {
            Value::Int(fields) => {
                bump(&self.counters.oversized_generations, 1);
                return Err(RedisReplyError::new_err(format!(
                    "the generations hash has {fields} fields, more than a namespace can \
                     ({MAX_GENERATION_FIELDS}): planted, not read"
                )));
            }
            other => redis::from_redis_value(other).map_err(|err| {
                RedisReplyError::new_err(format!("the generations hash is not one: {err}"))
            })?,
        };
        Ok(pairs
            .into_iter()
            .filter_map(|(name, token)| {
                let token = std::str::from_utf8(&token).ok()?.parse::<u64>().ok()?;
                Some((name, token))
            })
            .collect())
    }

    /// Gives the method a fresh random generation token in Redis, with
    /// `with_commands` in the same MULTI/EXEC, so no process reads its old
    /// shared entries again. When the master had replicas, a replica must
    /// confirm the clear before the deadline, or this fails (the clear ran
    /// on the master, but a failover could still lose it).
    pub(super) fn publish_clear(
        &self,
        py: Python<'_>,
        name: String,
        with_commands: Vec<Vec<Vec<u8>>>,
    ) -> PyResult<()> {
        let Some(client) = &self.client else {
            return Ok(());
        };
        let key = self.generations_key();
        let clears_key = follow::clears_key(&key);
        let field = name.clone();
        let token = entry::new_token();
        let bookkeeping_ttl = self.bookkeeping_ttl();
        client
            .get()
            .call(py, move |con| {
                let mut pipe = redis::pipe();
                pipe.atomic();
                // Processes following clears poll this key (see `follow`).
                pipe.cmd("SET")
                    .arg(clears_key.as_slice())
                    .arg(entry::new_token())
                    .arg("EX")
                    .arg(bookkeeping_ttl)
                    .ignore();
                for command in &with_commands {
                    let Some((name, args)) = command.split_first() else {
                        continue;
                    };
                    pipe.cmd(&String::from_utf8_lossy(name)).arg(args).ignore();
                }
                pipe.cmd("HSET")
                    .arg(key.as_slice())
                    .arg(field.as_str())
                    .arg(token)
                    .ignore()
                    .cmd("EXPIRE")
                    .arg(key.as_slice())
                    .arg(bookkeeping_ttl)
                    .ignore()
                    .query::<()>(con)?;
                // A clear lost in a failover would make the old entries
                // valid again on the promoted replica: the caller must know.
                if con.confirm_replicated()? {
                    Ok(())
                } else {
                    Err(redis::RedisError::from((
                        redis::ErrorKind::Client,
                        "no replica confirmed the clear before the deadline",
                        "a failover now could lose it".to_string(),
                    )))
                }
            })
            .map_err(call_error_to_py)?;
        self.generations
            .lock()
            .entry(name)
            .or_default()
            .adopt(token);
        Ok(())
    }

    /// The Redis hash holding per-method generations of this namespace.
    pub(super) fn generations_key(&self) -> Vec<u8> {
        self.settings.read().generations_key.clone()
    }

    /// Seconds the generations hash outlives the entries stamped from it.
    pub(super) fn bookkeeping_ttl(&self) -> u64 {
        self.settings.read().ttl.saturating_mul(2)
    }

    /// The token to stamp a write with: the one last read, or (a store
    /// without a lookup before it, e.g. priming) read from Redis now.
    pub(super) fn token_for_write(
        &self,
        py: Python<'_>,
        client: &RedisClient,
        name: &str,
    ) -> Option<u64> {
        self.forget_tokens_after_outage(client);
        if let Some(token) = self.generations.lock().get(name).and_then(|g| g.current) {
            return Some(token);
        }
        let generations_key = self.generations_key();
        let bookkeeping_ttl = self.bookkeeping_ttl();
        let owned_name = name.to_string();
        let token = client
            .call(py, move |con| {
                fresh_token(con, &generations_key, &owned_name, false, bookkeeping_ttl)
            })
            .ok()?;
        self.generations
            .lock()
            .entry(name.to_string())
            .or_default()
            .adopt(token);
        Some(token)
    }

    /// Tokens read before an outage may be gone with the Redis that held
    /// them (a restart without persistence, a failover): stamping writes
    /// with them would only store entries nobody accepts. Forgotten, not
    /// retired: after a mere network cut they are still valid.
    pub(super) fn forget_tokens_after_outage(&self, client: &RedisClient) {
        let outages = client.pool().breaker_opened_count();
        if self
            .tokens_outages
            .swap(outages, std::sync::atomic::Ordering::Relaxed)
            != outages
        {
            for known in self.generations.lock().values_mut() {
                known.current = None;
            }
        }
    }

    /// Pushes the generations hash's expiry back, at most every quarter of
    /// the cache's TTL, off the request path: its tokens must outlive the
    /// entries stamped with them while the method is in use.
    pub(super) fn keep_generations_alive(&self, client: &RedisClient, just_refreshed: bool) {
        let now = Instant::now();
        let interval = Duration::from_secs(self.settings.read().ttl / 4);
        {
            let mut refreshed = self.generations_refreshed.lock();
            if !just_refreshed && refreshed.is_some_and(|at| now.duration_since(at) < interval) {
                return;
            }
            *refreshed = Some(now);
        }
        if !just_refreshed {
            client.enqueue_command(entry::expire_command(
                self.generations_key(),
                self.bookkeeping_ttl(),
            ));
        }
    }
}
