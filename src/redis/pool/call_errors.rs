//! Why a call got no usable reply: `CallError` as callers see it, and
//! `Failed` as the pool tells its cases apart before deciding (retry,
//! breaker, connection kept or dropped).

use redis::RedisError;

use crate::redis::link::Failure;

/// Why a Redis call did not produce a reply.
#[derive(Debug)]
pub enum CallError {
    /// The breaker is open: Redis was not contacted.
    CircuitOpen,
    /// Connecting, writing or reading failed or missed the deadline.
    Unavailable(String),
    /// Redis answered with an error reply (bad command, wrong type...).
    Server(String),
    /// Redis announced a reply larger than the call may receive: refused
    /// unread, the connection dropped (see `reply_guard`).
    TooLarge(String),
    /// A budget of this thread (its lookup's, its unit of work's) is spent:
    /// Redis was not contacted, or the call was cut at what was left.
    BudgetSpent,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::CircuitOpen => write!(f, "Redis circuit breaker is open"),
            CallError::Unavailable(msg) => write!(f, "Redis unavailable: {msg}"),
            CallError::Server(msg) => write!(f, "Redis error reply: {msg}"),
            CallError::TooLarge(msg) => write!(f, "Redis reply refused: {msg}"),
            CallError::BudgetSpent => write!(
                f,
                "Redis skipped: this lookup or request already spent its time budget on Redis"
            ),
        }
    }
}

/// How a call ended when it got no usable reply.
pub(super) enum Failed {
    /// The server answered (an error reply, or a reply of the wrong shape):
    /// the connection is fine and went back to the pool.
    Answered(String),
    /// The server announced a reply too large to read: the connection,
    /// out of step now, is dropped; Redis itself is fine.
    TooLarge(String),
    /// No answer: the connection is gone.
    Unreachable {
        failure: Failure,
        /// The server went away before any reply byte (see `attempt`).
        unanswered: bool,
        message: String,
    },
}

impl Failed {
    pub(super) fn connecting(err: RedisError) -> Failed {
        Failed::Unreachable {
            failure: if err.is_timeout() {
                Failure::Deadline
            } else {
                Failure::Other
            },
            unanswered: false,
            message: err.to_string(),
        }
    }
}
