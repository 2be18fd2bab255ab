//! Entries in the shared tier: read (with the method's token, or alone
//! when the owner keeps tokens synced), timed and counted, verified and
//! decoded; framed and sealed for a write; committed writes queued.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use pyo3::prelude::*;

use super::counters::bump;
use super::policy::Address;
use super::shared_generations::fresh_token;
use super::unit::Outcome;
use super::TwoTierCache;
use crate::entry::{self, Rejection};
use crate::redis::conn::Conn;
use crate::redis::pool::CallError;
use crate::redis::writer::Command;
use crate::redis::RedisClient;

/// Whether a read counts what it finds wrong (forged, rejected, oversized,
/// failed): a lookup's own read does; the flight's second look at an entry
/// the lookup already counted does not.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Tally {
    Counted,
    Quiet,
}

/// The outcome of one read of the shared tier.
pub(super) enum SharedRead {
    /// Not asked (local access, unshareable key, no client).
    Skipped,
    /// Redis failed or the circuit is open.
    Failed,
    /// This lookup or unit of work already spent its time on Redis.
    OutOfBudget,
    Absent(Duration),
    /// Something was stored but it is not a valid entry for this key now
    /// (or it was announced too large to read).
    Rejected(Duration),
    /// A stored value failed authentication: written without the key.
    Forged(Duration),
    Found(Py<PyAny>, usize, Duration),
}

/// Reads an entry: at most `max_value_bytes - 1` bytes of it, so that Redis
/// never copies more than that into its reply however large a planted value
/// is, while a reply of `max_value_bytes` (only an oversized value gives one:
/// entries are written smaller) is refused on its length prefix, unread
/// (`timed_read`'s limits, see `reply_guard`).
fn entry_read(data_key: &[u8], max_value_bytes: u64) -> redis::Cmd {
    let mut read = redis::cmd("GETRANGE");
    read.arg(data_key).arg(0).arg(max_value_bytes - 1);
    read
}

/// What `entry_read` found: GETRANGE answers an empty string for a
/// missing key, and no entry is empty.
fn stored(value: Vec<u8>) -> Option<Vec<u8>> {
    (!value.is_empty()).then_some(value)
}

impl TwoTierCache {
    /// Queues the writes of a committed unit of work.
    pub fn send_committed(&self, writes: Vec<Command>) -> Outcome {
        let mut outcome = Outcome::default();
        let Some(client) = &self.client else {
            outcome.dropped = writes.len() as u64;
            return outcome;
        };
        for command in writes {
            if client.get().enqueue_command(command) {
                outcome.queued += 1;
            } else {
                outcome.dropped += 1;
            }
        }
        bump(&self.counters.writes_queued, outcome.queued);
        bump(&self.counters.writes_dropped, outcome.dropped);
        outcome
    }

    pub(super) fn read_shared(
        &self,
        py: Python<'_>,
        client: &RedisClient,
        address: &Address,
        tally: Tally,
    ) -> SharedRead {
        if let Some(name) = &address.method_name {
            if let Some(read) = self.read_with_synced_token(py, client, address, name, tally) {
                return read;
            }
        }
        let data_key = address.redis_key.as_slice();
        let generations = address
            .method_name
            .as_ref()
            .map(|name| (self.generations_key(), name.clone()));
        let bookkeeping_ttl = self.bookkeeping_ttl();
        let max_value_bytes = client.max_value_bytes();
        // A token this process saw replaced is never valid again: one
        // coming back means the bookkeeping was rolled back in Redis.
        let retired: Vec<u64> = address
            .method_name
            .as_ref()
            .and_then(|name| {
                self.generations
                    .lock()
                    .get(&**name)
                    .map(|g| g.retired.clone())
            })
            .unwrap_or_default();
        let reply = self.timed_read(py, client, tally, |con| {
            let Some((generations_key, name)) = &generations else {
                let value = entry_read(data_key, max_value_bytes).query::<Vec<u8>>(con)?;
                return Ok((entry::NO_METHOD, stored(value), false));
            };
            let (token, value) = redis::pipe()
                .cmd("HGET")
                .arg(generations_key.as_slice())
                .arg(&**name)
                .add_command(entry_read(data_key, max_value_bytes))
                .query::<(Option<u64>, Vec<u8>)>(con)?;
            let value = stored(value);
            match token {
                Some(token) if !retired.contains(&token) => Ok((token, value, false)),
                rolled_back => {
                    let token = fresh_token(
                        con,
                        generations_key,
                        name,
                        rolled_back.is_some(),
                        bookkeeping_ttl,
                    )?;
                    Ok((token, value, true))
                }
            }
        });
        let ((token, payload, refreshed), elapsed) = match reply {
            Ok(reply) => reply,
            Err(read) => return read,
        };
        if let Some(name) = &address.method_name {
            self.generations
                .lock()
                .entry(name.to_string())
                .or_default()
                .adopt(token);
            self.keep_generations_alive(client, refreshed);
        }
        self.open_read(py, payload, address, token, elapsed, tally)
    }

    /// One GET when the owner keeps this process's tokens synced (see
    /// `generations_synced`): an entry stamped with the method's known
    /// token is exactly as fresh as an L1 copy would be. None when the
    /// token is unknown or the entry carries another one (the method was
    /// cleared elsewhere since the sync): the caller then asks Redis.
    fn read_with_synced_token(
        &self,
        py: Python<'_>,
        client: &RedisClient,
        address: &Address,
        name: &str,
        tally: Tally,
    ) -> Option<SharedRead> {
        if !self.generations_synced.load(Ordering::Relaxed) {
            return None;
        }
        self.forget_tokens_after_outage(client);
        let token = self.generations.lock().get(name)?.current?;
        let data_key = address.redis_key.as_slice();
        let max_value_bytes = client.max_value_bytes();
        let reply = self.timed_read(py, client, tally, |con| {
            entry_read(data_key, max_value_bytes)
                .query::<Vec<u8>>(con)
                .map(stored)
        });
        let (payload, elapsed) = match reply {
            Ok(reply) => reply,
            Err(read) => return Some(read),
        };
        if payload
            .as_deref()
            .is_some_and(|p| matches!(entry::stored_token(p), Some(t) if t != token))
        {
            return None;
        }
        self.keep_generations_alive(client, false);
        Some(self.open_read(py, payload, address, token, elapsed, tally))
    }

    /// One read of the shared tier, timed into the cache's latency; a
    /// failure is counted and comes back as what the read amounts to.
    fn timed_read<T: Send>(
        &self,
        py: Python<'_>,
        client: &RedisClient,
        tally: Tally,
        read: impl FnMut(&mut Conn) -> redis::RedisResult<T> + Send,
    ) -> Result<(T, Duration), SharedRead> {
        let counted = tally == Tally::Counted;
        let started = Instant::now();
        let limits = client
            .reply_limits()
            .with_bulk(client.max_value_bytes() - 1);
        let reply = client.call_limited(py, limits, read);
        let elapsed = started.elapsed();
        match reply {
            Ok(reply) => {
                self.latency.record(elapsed);
                Ok((reply, elapsed))
            }
            Err(CallError::TooLarge(_)) => {
                self.latency.record(elapsed);
                if counted {
                    bump(&self.counters.oversized_entries, 1);
                    bump(&self.counters.rejected_entries, 1);
                }
                Err(SharedRead::Rejected(elapsed))
            }
            Err(CallError::BudgetSpent) => {
                if counted {
                    bump(&self.counters.l2_skipped, 1);
                }
                Err(SharedRead::OutOfBudget)
            }
            Err(_) => {
                self.latency.record(elapsed);
                if counted {
                    bump(&self.counters.l2_errors, 1);
                }
                Err(SharedRead::Failed)
            }
        }
    }

    /// What a read found, once verified and decoded.
    fn open_read(
        &self,
        py: Python<'_>,
        payload: Option<Vec<u8>>,
        address: &Address,
        token: u64,
        elapsed: Duration,
        tally: Tally,
    ) -> SharedRead {
        let Some(payload) = payload else {
            return SharedRead::Absent(elapsed);
        };
        let counted = tally == Tally::Counted;
        match self.open_entry(py, &payload, &address.digest, token) {
            Ok(value) => SharedRead::Found(value, payload.len(), elapsed),
            Err(Rejection::Forged) => {
                if counted {
                    bump(&self.counters.forged_entries, 1);
                    self.report_forged(py);
                }
                SharedRead::Forged(elapsed)
            }
            Err(_) => {
                if counted {
                    bump(&self.counters.rejected_entries, 1);
                }
                SharedRead::Rejected(elapsed)
            }
        }
    }

    /// Verifies and decodes a framed entry; undecodable bytes are foreign.
    fn open_entry(
        &self,
        py: Python<'_>,
        payload: &[u8],
        digest: &[u8; 32],
        token: u64,
    ) -> Result<Py<PyAny>, Rejection> {
        // Verified under the read lock (no Python code runs there): no copy
        // of the keyed MAC state per read.
        let codec_bytes = entry::open(payload, &self.settings.read().mac, digest, token)?;
        self.codec
            .get()
            .decode(py, codec_bytes)
            .map_err(|_| Rejection::Foreign)
    }

    /// Encodes and seals a value for `address`; None (counted, and said
    /// once per method) when it cannot be shared.
    pub(super) fn frame_entry(
        &self,
        value: &Bound<'_, PyAny>,
        client: &RedisClient,
        address: &Address,
    ) -> Option<Vec<u8>> {
        let mut payload = entry::start_value();
        if let Err(err) = self.codec.get().encode_into(value, &mut payload) {
            bump(&self.counters.unencodable_values, 1);
            self.warn_once(
                value.py(),
                &self.warned_values,
                "values",
                address.method_name.as_deref(),
                &err,
            );
            return None;
        }
        // Copied out: logging runs Python code, never under the lock.
        let (mac, authenticated) = {
            let settings = self.settings.read();
            (settings.mac.clone(), settings.authenticated)
        };
        if !authenticated {
            self.warn_no_secret(value.py());
        }
        let token = match &address.method_name {
            None => entry::NO_METHOD,
            // Without a token (Redis failed) nothing a reader would accept
            // can be written.
            Some(name) => self.token_for_write(value.py(), client, name)?,
        };
        entry::seal(&mut payload, token, &mac, &address.digest);
        // No reader would take it (see `entry_read`): not worth the write.
        if payload.len() as u64 >= client.max_value_bytes() {
            bump(&self.counters.oversized_values, 1);
            return None;
        }
        Some(payload)
    }
}
