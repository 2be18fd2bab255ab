//! Joining a flight after a shared miss: taking the lock (then reading the
//! entry once more), or polling the lock and the entry until the leader's
//! value lands, the lock is released, or the wait runs out; locks that do
//! not verify (planted) are not waited on.

use std::time::{Duration, Instant};

use pyo3::prelude::*;

use super::{opened, release_command, tagged};
use crate::crypto::Mac;
use crate::entry;
use crate::redis::pool::CallError;
use crate::redis::RedisClient;
use crate::two_tier::counters::bump;
use crate::two_tier::lease::{self, LEASE};
use crate::two_tier::policy::Address;
use crate::two_tier::shared_entries::{SharedRead, Tally};
use crate::two_tier::TwoTierCache;

/// Polling backoff of a waiter, and the most polls of one wait (each one
/// round trip for the lock, one for the entry).
const FIRST_POLL: Duration = Duration::from_millis(2);
const LONGEST_POLL: Duration = Duration::from_millis(100);
const MOST_POLLS: u32 = 64;

impl TwoTierCache {
    /// Takes the lead (Err with the lock held, or None when Redis failed,
    /// the lock was planted or the wait ran out), or returns the leader's
    /// value.
    #[allow(clippy::type_complexity)]
    pub(super) fn join_flight(
        &self,
        py: Python<'_>,
        client: &RedisClient,
        address: &Address,
    ) -> Result<SharedRead, Option<(Vec<u8>, Vec<u8>)>> {
        let (prefix, wait, mac) = {
            let settings = self.settings.read();
            (
                settings.prefix.clone(),
                settings.flight.wait,
                settings.mac.clone(),
            )
        };
        let lock_key = entry::redis_key(&prefix, entry::LOCK, &address.digest);
        let value = lock_value(&mac, &lock_key, entry::new_token());
        let lease = LEASE.min(wait);
        let lease_millis = lease.as_millis().max(1) as u64;
        let deadline = Instant::now() + wait;
        let mut poll = FIRST_POLL;
        let mut waited = false;
        // Asked for the lock only while it looks free: a waiter's polls read
        // its state, and the entry.
        let mut lock_looks_free = true;
        for _ in 0..MOST_POLLS {
            let key = lock_key.as_slice();
            let state = if lock_looks_free {
                client.call(py, |con| {
                    redis::pipe()
                        .cmd("SET")
                        .arg(key)
                        .arg(value.as_slice())
                        .arg("NX")
                        .arg("PX")
                        .arg(lease_millis)
                        .cmd("GET")
                        .arg(key)
                        .cmd("PTTL")
                        .arg(key)
                        .query::<(Option<String>, Option<Vec<u8>>, i64)>(con)
                })
            } else {
                client
                    .call(py, |con| {
                        redis::pipe()
                            .cmd("GET")
                            .arg(key)
                            .cmd("PTTL")
                            .arg(key)
                            .query::<(Option<Vec<u8>>, i64)>(con)
                    })
                    .map(|(held, ttl)| (None, held, ttl))
            };
            match state {
                Ok((Some(_), _, _)) => {
                    // The leader may have stored its value and released the
                    // lock between this process's read and its SET: read
                    // again before computing it a second time.
                    if let found @ SharedRead::Found(..) =
                        self.read_shared(py, client, address, Tally::Quiet)
                    {
                        client.enqueue_command(release_command(lock_key, value));
                        return Ok(found);
                    }
                    bump(&self.counters.flights_led, 1);
                    lease::hold(&lock_key, &value, &client.process().pool, wait);
                    return Err(Some((lock_key, value)));
                }
                Ok((None, Some(held), ttl)) => {
                    // A leader's lock verifies and lives at most a lease;
                    // anything else would make every miss wait for nothing.
                    let planted = !lock_verifies(&mac, &lock_key, &held)
                        || !(0..=LEASE.as_millis() as i64).contains(&ttl);
                    if planted {
                        bump(&self.counters.flights_planted_locks, 1);
                        return Err(None);
                    }
                    lock_looks_free = false;
                }
                // Released meanwhile (or between the SET and the GET): ask
                // for it at once.
                Ok((None, None, _)) => {
                    lock_looks_free = true;
                    continue;
                }
                Err(CallError::TooLarge(_)) => {
                    bump(&self.counters.flights_planted_locks, 1);
                    return Err(None);
                }
                Err(_) => return Err(None),
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let nap = poll.min(deadline - now);
            py.detach(|| std::thread::sleep(nap));
            poll = (poll * 2).min(LONGEST_POLL);
            if !waited {
                waited = true;
                bump(&self.counters.flights_waited, 1);
            }
            match self.read_shared(py, client, address, Tally::Counted) {
                found @ SharedRead::Found(..) => return Ok(found),
                SharedRead::Failed | SharedRead::OutOfBudget => return Err(None),
                _ => {}
            }
        }
        bump(&self.counters.flights_timed_out, 1);
        Err(None)
    }
}

/// A leader's lock value: a random token, tagged with the lock's key.
fn lock_value(mac: &Mac, lock_key: &[u8], token: u64) -> Vec<u8> {
    tagged(mac, b"flight-lock", &[lock_key], token)
}

/// Whether a lock's value was set by a leader of a cache with this key.
fn lock_verifies(mac: &Mac, lock_key: &[u8], value: &[u8]) -> bool {
    opened(mac, b"flight-lock", &[lock_key], value).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::derive_key;

    #[test]
    fn a_lock_verifies_only_under_its_key_and_name() {
        let mac = Mac::new(&derive_key(b"secret", "cache-entry"));
        let value = lock_value(&mac, b"p:l:aa", 42);
        assert!(lock_verifies(&mac, b"p:l:aa", &value));
        assert!(!lock_verifies(&mac, b"p:l:bb", &value));
        let other = Mac::new(&derive_key(b"other", "cache-entry"));
        assert!(!lock_verifies(&other, b"p:l:aa", &value));
        assert!(!lock_verifies(&mac, b"p:l:aa", b"42"));
        assert!(!lock_verifies(&mac, b"p:l:aa", &value[1..]));
        let mut flipped = value.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(!lock_verifies(&mac, b"p:l:aa", &flipped));
    }
}
