//! The pool's circuit breaker as requests see it: successes and failures
//! recorded, and the background probe that closes the circuit once Redis
//! answers again.

use std::sync::atomic::Ordering;
use std::sync::Weak;
use std::time::{Duration, Instant};

use super::{Failed, Pool};
use crate::redis::conn::Conn;

impl Pool {
    pub(super) fn record_success(&self) {
        let transition = self.breaker.lock().on_success();
        if let Some(transition) = transition {
            (self.log_transition)(&self.config.display_address(), transition, "");
        }
    }

    pub(super) fn record_failure(&self, reason: &str) {
        let transition = self.breaker.lock().on_failure(Instant::now());
        if let Some(transition) = transition {
            self.start_probe();
            (self.log_transition)(&self.config.display_address(), transition, reason);
        }
    }

    /// Starts the background probe of this outage unless it runs already.
    pub(super) fn start_probe(&self) {
        let first = {
            let mut breaker = self.breaker.lock();
            if !breaker.claim_probe() {
                return;
            }
            breaker.first_probe_in()
        };
        let pool = self.me.clone();
        let spawned = std::thread::Builder::new()
            .name("ormcache-redis-probe".into())
            .spawn(move || probe_until_recovered(&pool, first));
        if spawned.is_err() {
            // Requests keep being answered locally; the next refused call
            // tries again.
            self.breaker.lock().release_probe();
        }
    }

    /// Opens a fresh connection (within `connect_timeout`) and PINGs it
    /// (within `socket_timeout`, as a request would be given).
    fn probe(&self) -> Result<(), Failed> {
        self.counters.probes.fetch_add(1, Ordering::Relaxed);
        let link = self.open(Instant::now() + self.config.connect_timeout, true)?;
        let deadline = Instant::now() + self.config.io_timeout;
        let limits = self.config.reply_limits();
        self.finish(link, deadline, limits, &mut |link: &mut Conn| {
            redis::cmd("PING").query::<()>(link)
        })
    }
}

/// The probe thread: sleeps, probes, and closes the circuit once Redis
/// answers. It holds no reference to the pool while sleeping, so a dropped
/// client ends it.
fn probe_until_recovered(pool: &Weak<Pool>, first_wait: Duration) {
    let mut wait = first_wait;
    loop {
        std::thread::sleep(wait);
        let Some(pool) = pool.upgrade() else {
            return;
        };
        {
            // Decided under the breaker's lock: an outage that starts right
            // after this sees no probe running and starts one.
            let mut breaker = pool.breaker.lock();
            if breaker.allows_requests() {
                breaker.release_probe();
                return;
            }
        }
        match pool.probe() {
            Ok(()) => {
                let transition = {
                    let mut breaker = pool.breaker.lock();
                    breaker.release_probe();
                    breaker.on_success()
                };
                if let Some(transition) = transition {
                    (pool.log_transition)(&pool.config.display_address(), transition, "");
                }
                return;
            }
            Err(_) => wait = pool.breaker.lock().on_probe_failure(Instant::now()),
        }
    }
}
