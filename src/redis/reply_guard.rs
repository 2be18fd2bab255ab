//! Size bounds on what one call may receive, checked on the RESP headers as
//! the bytes arrive, before the parser buffers anything they announce.
//!
//! The parser (redis-rs) buffers a bulk string whole and sizes an array from
//! its header: a value planted in Redis could otherwise make a process read
//! (and hold) hundreds of megabytes, or reserve room for billions of
//! elements, before anything looks at it. The guard sits between the socket
//! and the parser and follows the framing of the byte stream: a type byte,
//! a header line, and for length-prefixed types (`$` bulk, `=` verbatim,
//! `!` bulk error) a body of the announced length. A header announcing more
//! than the call may receive fails the read at once: the rest is never read,
//! and the connection (out of step from then on) is dropped.

use std::fmt;

/// What one call (every reply it reads) may receive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplyLimits {
    /// Bytes of every reply of the call together, headers included.
    pub bytes: u64,
    /// Bytes of any one bulk string.
    pub bulk: u64,
    /// Elements of every aggregate (array, map pairs counted twice, set,
    /// push, attribute) of the call together.
    pub elements: u64,
    /// The option an operator raises to allow more, named in the error.
    pub option: &'static str,
}

impl ReplyLimits {
    /// Room for one value of `max_value_bytes` and the small replies around
    /// it (tokens, status lines, a pipeline of writes' acknowledgements).
    pub fn for_values(max_value_bytes: u64, option: &'static str) -> ReplyLimits {
        ReplyLimits {
            bytes: max_value_bytes.saturating_add(REPLY_OVERHEAD),
            bulk: max_value_bytes,
            elements: DEFAULT_ELEMENTS,
            option,
        }
    }

    /// The same bounds with bulk strings of at most `bulk` bytes.
    pub fn with_bulk(self, bulk: u64) -> ReplyLimits {
        ReplyLimits { bulk, ..self }
    }

    /// The same byte bound with at most `elements` elements.
    pub fn with_elements(self, elements: u64) -> ReplyLimits {
        ReplyLimits { elements, ..self }
    }
}

/// Bytes a call may receive beyond its largest value.
const REPLY_OVERHEAD: u64 = 1 << 20;
/// Aggregate elements a call may receive unless it says otherwise: far
/// more than any reply of this project (write batches, sessions, metrics),
/// and little to reserve room for.
const DEFAULT_ELEMENTS: u64 = 1 << 16;

/// Marks the error of a refused reply, so that a caller which only sees a
/// `RedisError` (the cluster client) can tell it from a broken connection.
pub const TOO_LARGE: &str = "reply larger than allowed";

/// A reply the call may not receive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooLarge {
    pub what: &'static str,
    pub announced: u64,
    pub allowed: u64,
    pub option: &'static str,
}

impl fmt::Display for TooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{TOO_LARGE}: Redis announced {} {} where this call takes at most {} \
             (raise {} to allow more); refused unread",
            self.announced, self.what, self.allowed, self.option
        )
    }
}

impl std::error::Error for TooLarge {}

#[derive(Clone, Copy, Debug)]
enum Position {
    /// At the type byte of the next value.
    Type,
    /// In the header line after a type byte, until its `\n`.
    Header { kind: u8 },
    /// In a body of this many bytes still to come (its `\r\n` included).
    Body(u64),
}

/// Follows the RESP framing of one connection's byte stream.
#[derive(Debug)]
pub struct ReplyGuard {
    position: Position,
    /// The header line read as a number so far: None once it is not one
    /// (simple strings and errors; they are bounded by bytes).
    number: Option<i64>,
    negative: bool,
    limits: ReplyLimits,
    bytes: u64,
    elements: u64,
}

impl ReplyGuard {
    pub fn new(limits: ReplyLimits) -> ReplyGuard {
        ReplyGuard {
            position: Position::Type,
            number: Some(0),
            negative: false,
            limits,
            bytes: 0,
            elements: 0,
        }
    }

    /// A new call: its own limits, nothing received yet. The stream's
    /// position carries over (a call starts where the last one ended).
    pub fn arm(&mut self, limits: ReplyLimits) {
        self.limits = limits;
        self.bytes = 0;
        self.elements = 0;
    }

    /// Checks bytes just read, in stream order.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), TooLarge> {
        self.bytes = self.bytes.saturating_add(bytes.len() as u64);
        if self.bytes > self.limits.bytes {
            return Err(self.refuse("bytes", self.bytes, self.limits.bytes));
        }
        while let Some((&byte, rest)) = bytes.split_first() {
            match self.position {
                Position::Type => {
                    self.position = Position::Header { kind: byte };
                    self.number = Some(0);
                    self.negative = false;
                    bytes = rest;
                }
                Position::Header { kind } => match memchr(b'\n', bytes) {
                    Some(end) => {
                        self.collect_digits(&bytes[..end]);
                        bytes = &bytes[end + 1..];
                        self.position = Position::Type;
                        self.header_done(kind)?;
                    }
                    None => {
                        self.collect_digits(bytes);
                        bytes = &[];
                    }
                },
                Position::Body(left) => {
                    let taken = left.min(bytes.len() as u64);
                    bytes = &bytes[taken as usize..];
                    self.position = match left - taken {
                        0 => Position::Type,
                        left => Position::Body(left),
                    };
                }
            }
        }
        Ok(())
    }

    fn collect_digits(&mut self, part: &[u8]) {
        for &byte in part {
            self.number = match (self.number, byte) {
                (number, b'\r') => number,
                (Some(0), b'-') if !self.negative => {
                    self.negative = true;
                    Some(0)
                }
                (Some(number), b'0'..=b'9') => number
                    .checked_mul(10)
                    .and_then(|n| n.checked_add(i64::from(byte - b'0'))),
                _ => None,
            };
        }
    }

    fn number(&self) -> Option<i64> {
        self.number.map(|n| if self.negative { -n } else { n })
    }

    fn header_done(&mut self, kind: u8) -> Result<(), TooLarge> {
        match kind {
            b'$' | b'=' | b'!' => {
                if let Some(length) = self.number().filter(|n| *n >= 0) {
                    let length = length as u64;
                    if length > self.limits.bulk {
                        return Err(self.refuse("bytes", length, self.limits.bulk));
                    }
                    // Announced beyond what the call may still receive.
                    let allowed = self.limits.bytes;
                    if self.bytes.saturating_add(length) > allowed {
                        return Err(self.refuse("bytes", length, allowed));
                    }
                    self.position = Position::Body(length + 2);
                }
            }
            b'*' | b'~' | b'>' | b'%' | b'|' => {
                if let Some(count) = self.number().filter(|n| *n > 0) {
                    let per_entry = if matches!(kind, b'%' | b'|') { 2 } else { 1 };
                    let count = (count as u64).saturating_mul(per_entry);
                    self.elements = self.elements.saturating_add(count);
                    if self.elements > self.limits.elements {
                        return Err(self.refuse("elements", count, self.limits.elements));
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn refuse(&self, what: &'static str, announced: u64, allowed: u64) -> TooLarge {
        TooLarge {
            what,
            announced,
            allowed,
            option: self.limits.option,
        }
    }
}

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(bytes: u64, elements: u64) -> ReplyLimits {
        ReplyLimits {
            bytes,
            bulk: bytes,
            elements,
            option: "max_value_bytes",
        }
    }

    fn feed_in_pieces(guard: &mut ReplyGuard, stream: &[u8], piece: usize) -> Result<(), TooLarge> {
        stream.chunks(piece).try_for_each(|part| guard.feed(part))
    }

    #[test]
    fn replies_within_the_limits_pass_in_any_split() {
        let stream = b"*2\r\n$5\r\nhello\r\n:42\r\n+OK\r\n%1\r\n$1\r\na\r\n$-1\r\n_\r\n";
        for piece in 1..stream.len() {
            let mut guard = ReplyGuard::new(limits(1000, 10));
            feed_in_pieces(&mut guard, stream, piece).unwrap();
            assert!(matches!(guard.position, Position::Type), "piece {piece}");
        }
    }

    #[test]
    fn a_bulk_body_is_not_read_as_headers() {
        // The body holds what looks like a huge array header.
        let stream = b"$12\r\n*999999999\r\n\r\n";
        let mut guard = ReplyGuard::new(limits(1000, 10));
        feed_in_pieces(&mut guard, stream, 3).unwrap();
    }

    #[test]
    fn an_announced_bulk_beyond_the_limit_is_refused_at_its_header() {
        let mut guard = ReplyGuard::new(limits(1 << 20, 10));
        let err = guard.feed(b"$104857600\r\n").unwrap_err();
        assert_eq!(err.announced, 104_857_600);
        assert!(err.to_string().contains("max_value_bytes"), "{err}");
        assert!(err.to_string().starts_with(TOO_LARGE), "{err}");
    }

    #[test]
    fn one_bulk_may_be_held_below_the_call_s_bytes() {
        let mut guard = ReplyGuard::new(limits(1000, 10).with_bulk(9));
        guard.feed(b"$9\r\n012345678\r\n").unwrap();
        assert_eq!(guard.feed(b"$10\r\n").unwrap_err().allowed, 9);
    }

    #[test]
    fn the_limit_covers_every_reply_of_the_call_together() {
        let mut guard = ReplyGuard::new(limits(40, 10));
        guard.feed(b"$10\r\n0123456789\r\n").unwrap();
        assert!(guard.feed(b"$30\r\n").is_err());
        guard.arm(limits(40, 10));
        guard.feed(b"$30\r\n").unwrap();
    }

    #[test]
    fn aggregates_count_their_elements_nested_and_pairs_twice() {
        let mut guard = ReplyGuard::new(limits(1 << 20, 10));
        guard.feed(b"*2\r\n*4\r\n").unwrap();
        assert!(guard.feed(b"%3\r\n").is_err());
        let mut guard = ReplyGuard::new(limits(1 << 20, 600_000));
        assert!(guard.feed(b"*2000000000\r\n").is_err());
    }

    #[test]
    fn an_endless_simple_string_is_bounded_by_bytes() {
        let mut guard = ReplyGuard::new(limits(100, 10));
        guard.feed(b"+").unwrap();
        let endless = [b'x'; 64];
        guard.feed(&endless).unwrap();
        assert!(guard.feed(&endless).is_err());
    }
}
