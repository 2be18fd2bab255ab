//! Circuit breaker: after repeated failures stop talking to Redis for a
//! while, then let a single probe through; back off exponentially while the
//! probes keep failing. Pure state machine: the caller supplies the clock and
//! logs the transitions it returns, so there is one log line per change.

use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Closed,
    Open,
    HalfOpen,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half-open",
        }
    }
}

/// A state change worth one log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// The circuit opened: Redis is considered down until `retry_in`.
    Opened { retry_in: Duration },
    /// A probe succeeded after an outage.
    Recovered,
}

#[derive(Debug)]
pub struct CircuitBreaker {
    state: State,
    consecutive_failures: u32,
    failure_threshold: u32,
    backoff: Duration,
    retry_initial: Duration,
    retry_max: Duration,
    retry_at: Option<Instant>,
    probe_in_flight: bool,
    pub opened_count: u64,
}

impl CircuitBreaker {
    pub fn new(failure_threshold: u32, retry_initial: Duration, retry_max: Duration) -> Self {
        CircuitBreaker {
            state: State::Closed,
            consecutive_failures: 0,
            failure_threshold: failure_threshold.max(1),
            backoff: retry_initial,
            retry_initial,
            retry_max,
            retry_at: None,
            probe_in_flight: false,
            opened_count: 0,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// Whether `allow` would let a call through now, without claiming the
    /// probe: lets callers skip preparing a request that would be refused.
    pub fn would_allow(&self, now: Instant) -> bool {
        match self.state {
            State::Closed => true,
            State::HalfOpen => false,
            State::Open => self.retry_at.is_some_and(|at| now >= at) && !self.probe_in_flight,
        }
    }

    /// Whether a call may go to Redis now. In the open state, once the retry
    /// time has come, exactly one caller is let through as the probe.
    pub fn allow(&mut self, now: Instant) -> bool {
        match self.state {
            State::Closed => true,
            State::HalfOpen => false,
            State::Open => {
                if self.retry_at.is_some_and(|at| now >= at) && !self.probe_in_flight {
                    self.state = State::HalfOpen;
                    self.probe_in_flight = true;
                    true
                } else {
                    false
                }
            }
        }
    }

    pub fn on_success(&mut self) -> Option<Transition> {
        self.consecutive_failures = 0;
        self.probe_in_flight = false;
        self.backoff = self.retry_initial;
        self.retry_at = None;
        if self.state == State::Closed {
            return None;
        }
        self.state = State::Closed;
        Some(Transition::Recovered)
    }

    pub fn on_failure(&mut self, now: Instant) -> Option<Transition> {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        match self.state {
            State::Closed if self.consecutive_failures < self.failure_threshold => None,
            State::Closed => {
                self.state = State::Open;
                self.backoff = self.retry_initial;
                self.retry_at = Some(now + self.backoff);
                self.opened_count += 1;
                Some(Transition::Opened {
                    retry_in: self.backoff,
                })
            }
            State::HalfOpen | State::Open => {
                // A failed probe: stay open, wait longer. Logged once, at opening.
                self.state = State::Open;
                self.probe_in_flight = false;
                self.backoff = (self.backoff * 2).min(self.retry_max);
                self.retry_at = Some(now + self.backoff);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> CircuitBreaker {
        CircuitBreaker::new(2, Duration::from_millis(100), Duration::from_millis(400))
    }

    #[test]
    fn opens_after_threshold_and_logs_once() {
        let t0 = Instant::now();
        let mut b = breaker();
        assert!(b.allow(t0));
        assert_eq!(b.on_failure(t0), None);
        assert!(matches!(b.on_failure(t0), Some(Transition::Opened { .. })));
        assert_eq!(b.state(), State::Open);
        assert!(!b.allow(t0));
        assert!(!b.allow(t0 + Duration::from_millis(50)));
    }

    #[test]
    fn single_probe_then_recovery() {
        let t0 = Instant::now();
        let mut b = breaker();
        b.on_failure(t0);
        b.on_failure(t0);
        let later = t0 + Duration::from_millis(150);
        assert!(b.allow(later), "probe allowed after backoff");
        assert!(!b.allow(later), "only one probe at a time");
        assert_eq!(b.on_success(), Some(Transition::Recovered));
        assert_eq!(b.state(), State::Closed);
        assert!(b.allow(later));
        assert_eq!(b.on_success(), None);
    }

    #[test]
    fn failed_probes_back_off_up_to_the_maximum() {
        let t0 = Instant::now();
        let mut b = breaker();
        b.on_failure(t0);
        b.on_failure(t0);
        let mut now = t0;
        for expected_ms in [200, 400, 400] {
            now += Duration::from_secs(1);
            assert!(b.allow(now));
            assert_eq!(
                b.on_failure(now),
                None,
                "failed probes are not logged again"
            );
            assert!(!b.allow(now + Duration::from_millis(expected_ms - 1)));
        }
        assert_eq!(b.opened_count, 1);
    }
}
