//! Circuit breaker: after repeated failures stop sending requests to Redis;
//! a background probe (see `pool/probe.rs`) decides when Redis is back. Pure
//! state machine: the caller supplies the clock and logs the transitions it
//! returns, so there is one log line per change.
//!
//! Probe schedule: every `retry_initial` during the first
//! [`FAST_PROBING`] of an outage, so that a short fault (a restart, a
//! failover, a network blip) costs at most one probe interval plus one
//! probe's deadline once it ends; after that, the interval doubles with
//! every failed probe up to `retry_max`.

use std::time::{Duration, Instant};

/// How long an outage is probed at the initial interval.
pub const FAST_PROBING: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Closed,
    Open,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
        }
    }
}

/// A state change worth one log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// The circuit opened: Redis is considered down; the first probe comes
    /// after `retry_in`.
    Opened { retry_in: Duration },
    /// A probe succeeded after an outage.
    Recovered,
}

#[derive(Debug)]
pub struct CircuitBreaker {
    state: State,
    consecutive_failures: u32,
    failure_threshold: u32,
    retry_initial: Duration,
    retry_max: Duration,
    opened_at: Option<Instant>,
    /// Interval after the last failed probe (doubles after `FAST_PROBING`).
    backoff: Duration,
    /// Whether a probe thread owns this outage. Kept here, under the same
    /// lock as the state, so that an outage never starts without one.
    probe_running: bool,
    pub opened_count: u64,
}

impl CircuitBreaker {
    pub fn new(failure_threshold: u32, retry_initial: Duration, retry_max: Duration) -> Self {
        CircuitBreaker {
            state: State::Closed,
            consecutive_failures: 0,
            failure_threshold: failure_threshold.max(1),
            retry_initial,
            retry_max,
            opened_at: None,
            backoff: retry_initial,
            probe_running: false,
            opened_count: 0,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// Whether requests may go to Redis: only while the circuit is closed.
    pub fn allows_requests(&self) -> bool {
        self.state == State::Closed
    }

    /// A request (or a probe) got an answer.
    pub fn on_success(&mut self) -> Option<Transition> {
        self.consecutive_failures = 0;
        if self.state == State::Closed {
            return None;
        }
        self.state = State::Closed;
        self.opened_at = None;
        self.backoff = self.retry_initial;
        Some(Transition::Recovered)
    }

    /// A call could not reach Redis.
    pub fn on_failure(&mut self, now: Instant) -> Option<Transition> {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        if self.state == State::Open || self.consecutive_failures < self.failure_threshold {
            return None;
        }
        self.state = State::Open;
        self.opened_at = Some(now);
        self.backoff = self.retry_initial;
        self.opened_count += 1;
        Some(Transition::Opened {
            retry_in: self.retry_initial,
        })
    }

    /// Whether the caller should start the probe of this outage: true once
    /// per outage (until `release_probe`), and only while open.
    pub fn claim_probe(&mut self) -> bool {
        if self.state == State::Open && !self.probe_running {
            self.probe_running = true;
            return true;
        }
        false
    }

    /// The probe thread ended (or could not start).
    pub fn release_probe(&mut self) {
        self.probe_running = false;
    }

    /// The wait before the first probe of an outage.
    pub fn first_probe_in(&self) -> Duration {
        self.retry_initial
    }

    /// A probe failed at `now`: the wait before the next one.
    pub fn on_probe_failure(&mut self, now: Instant) -> Duration {
        let age = self
            .opened_at
            .map_or(Duration::ZERO, |at| now.saturating_duration_since(at));
        if age >= FAST_PROBING {
            self.backoff = (self.backoff * 2).min(self.retry_max);
        }
        self.backoff
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> CircuitBreaker {
        CircuitBreaker::new(2, Duration::from_millis(250), Duration::from_secs(2))
    }

    #[test]
    fn opens_after_threshold_and_reports_it_once() {
        let t0 = Instant::now();
        let mut b = breaker();
        assert!(b.allows_requests());
        assert_eq!(b.on_failure(t0), None);
        assert!(matches!(b.on_failure(t0), Some(Transition::Opened { .. })));
        assert_eq!(b.state(), State::Open);
        assert!(!b.allows_requests());
        assert_eq!(b.on_failure(t0), None, "already open: no second line");
        assert_eq!(b.opened_count, 1);
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let t0 = Instant::now();
        let mut b = breaker();
        b.on_failure(t0);
        assert_eq!(b.on_success(), None);
        assert_eq!(b.on_failure(t0), None, "one failure after a success");
        assert!(b.allows_requests());
    }

    #[test]
    fn recovery_closes_and_is_reported() {
        let t0 = Instant::now();
        let mut b = breaker();
        b.on_failure(t0);
        b.on_failure(t0);
        assert_eq!(b.on_success(), Some(Transition::Recovered));
        assert!(b.allows_requests());
        assert_eq!(b.on_success(), None);
    }

    #[test]
    fn one_probe_per_outage() {
        let t0 = Instant::now();
        let mut b = breaker();
        assert!(!b.claim_probe(), "no probe while closed");
        b.on_failure(t0);
        b.on_failure(t0);
        assert!(b.claim_probe());
        assert!(!b.claim_probe(), "already running");
        b.release_probe();
        assert!(
            b.claim_probe(),
            "the next request restarts a probe that ended"
        );
    }

    #[test]
    fn probes_stay_fast_during_the_first_seconds_then_back_off() {
        let t0 = Instant::now();
        let mut b = breaker();
        b.on_failure(t0);
        b.on_failure(t0);
        let fast = Duration::from_millis(250);
        assert_eq!(b.first_probe_in(), fast);
        for second in [1, 5, 9] {
            assert_eq!(b.on_probe_failure(t0 + Duration::from_secs(second)), fast);
        }
        let late = t0 + FAST_PROBING;
        let waits: Vec<u64> = (0..5)
            .map(|_| b.on_probe_failure(late).as_millis() as u64)
            .collect();
        assert_eq!(waits, [500, 1000, 2000, 2000, 2000]);
        // A new outage starts fast again.
        b.on_success();
        b.on_failure(late);
        b.on_failure(late);
        assert_eq!(b.on_probe_failure(late + Duration::from_secs(1)), fast);
    }
}
