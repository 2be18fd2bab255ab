//! Prices a payload against the memory and object budgets before anything
//! is built: a walk over the wire format (`format.rs`) that allocates
//! nothing but its own small stack, charging each value the [`cost`] of
//! what the decoder would build for it, and stopping at the first limit
//! passed. The decoder runs it before building a payload too large to fit
//! for sure; the encoder runs it over its own output, so both sides charge
//! by the same code.
//!
//! Only what the budgets need is checked (lengths against the input,
//! nesting, known tags); the rest (UTF-8, field ranges, extension tags) is
//! the decoder's job, which parses the same way and so never gets further
//! into a payload than this walk did.

use super::budget::{cost, Exceeded, Limits, PY_CALL};
use super::format::*;

/// A payload of `n` bytes costs at most `MAX_MEMORY_PER_BYTE * n` bytes of
/// memory and builds at most `MAX_OBJECTS_PER_BYTE * n` objects, so one
/// small enough for both to fit needs no scan. The worst cases, checked by
/// the tests below: a set of empty frozensets just past a table growth,
/// ~166 bytes per byte (216 per frozenset plus ~107 of table and 8 of
/// stack per element, for 2 bytes); an int beyond 64 bits with an empty
/// magnitude, 17 objects for 2 bytes.
pub const MAX_MEMORY_PER_BYTE: usize = 256;
pub const MAX_OBJECTS_PER_BYTE: usize = 9;

/// Why a payload was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    Exceeded(Exceeded),
    /// Not a valid payload: truncated, unknown tag, too deep, trailing bytes.
    Malformed(&'static str),
}

/// Whether a payload of `len` bytes fits the budgets whatever it holds,
/// next to `held` bytes already in memory (an inflated payload).
pub fn fits_unscanned(len: usize, held: usize, limits: &Limits) -> bool {
    len.saturating_mul(MAX_MEMORY_PER_BYTE).saturating_add(held) <= limits.max_decoded_memory
        && len.saturating_mul(MAX_OBJECTS_PER_BYTE) <= limits.max_objects
}

/// The memory decoding `payload` takes, next to `held` bytes already in
/// memory; refused as soon as it or the objects built pass the limits.
pub fn price(
    payload: &[u8],
    held: usize,
    max_depth: u32,
    limits: &Limits,
) -> Result<usize, Refusal> {
    let mut walk = Walk {
        data: payload,
        pos: 0,
        memory: held,
        objects: 1, // the value itself
    };
    walk.all(max_depth, limits)?;
    Ok(walk.memory)
}

/// Charges are plain sums, compared with the limits once per value: a sum
/// cannot overflow (each charge is below the payload length times 256).
struct Walk<'a> {
    data: &'a [u8],
    pos: usize,
    memory: usize,
    objects: usize,
}

impl Walk<'_> {
    /// The whole payload, without recursion: `left` is the number of values
    /// still to read in the innermost container (or extension) being read,
    /// `open` the same for the ones around it.
    fn all(&mut self, max_depth: u32, limits: &Limits) -> Result<(), Refusal> {
        let mut open: Vec<u64> = Vec::new();
        let mut left: u64 = 1;
        loop {
            while left == 0 {
                match open.pop() {
                    Some(outer) => left = outer,
                    None => {
                        if self.pos != self.data.len() {
                            return Err(Refusal::Malformed("trailing bytes after the value"));
                        }
                        return Ok(());
                    }
                }
            }
            left -= 1;
            let nested = self.value()?;
            if (self.memory > limits.max_decoded_memory) | (self.objects > limits.max_objects) {
                return Err(Refusal::Exceeded(
                    if self.memory > limits.max_decoded_memory {
                        Exceeded::Memory
                    } else {
                        Exceeded::Objects
                    },
                ));
            }
            if let Some(items) = nested {
                if open.len() >= max_depth as usize {
                    return Err(Refusal::Malformed("maximum nesting depth exceeded"));
                }
                open.push(left);
                left = items;
            }
        }
    }

    #[inline]
    fn byte(&mut self) -> Result<u8, Refusal> {
        let b = *self
            .data
            .get(self.pos)
            .ok_or(Refusal::Malformed("truncated input"))?;
        self.pos += 1;
        Ok(b)
    }

    #[inline]
    fn skip(&mut self, n: usize) -> Result<(), Refusal> {
        if n > self.data.len() - self.pos {
            return Err(Refusal::Malformed("truncated input"));
        }
        self.pos += n;
        Ok(())
    }

    #[inline]
    fn varint(&mut self) -> Result<u64, Refusal> {
        read_varint(self.data, &mut self.pos)
            .ok_or(Refusal::Malformed("truncated or overlong varint"))
    }

    /// Steps over a varint whose value does not matter here (the decoder
    /// checks it): up to 10 bytes, the last one with its high bit clear.
    #[inline]
    fn skip_varint(&mut self) -> Result<(), Refusal> {
        let end = self.data.len().min(self.pos + 10);
        for i in self.pos..end {
            if self.data[i] < 0x80 {
                self.pos = i + 1;
                return Ok(());
            }
        }
        Err(Refusal::Malformed("truncated or overlong varint"))
    }

    /// A count of items each needing at least `min_item` bytes.
    #[inline]
    fn count(&mut self, min_item: usize) -> Result<usize, Refusal> {
        let n = self.varint()?;
        if n > ((self.data.len() - self.pos) / min_item) as u64 {
            return Err(Refusal::Malformed("declared length exceeds the input"));
        }
        Ok(n as usize)
    }

    /// A length-prefixed field, skipped; returns its length.
    #[inline]
    fn field(&mut self) -> Result<usize, Refusal> {
        let n = self.count(1)?;
        self.skip(n)?;
        Ok(n)
    }

    /// A scalar built by `calls` Python calls (its own object was counted
    /// by its container).
    #[inline]
    fn python_built(&mut self, bytes: usize, calls: usize) {
        self.memory += bytes;
        self.objects += calls * PY_CALL;
    }

    /// Charges one value; for a container or extension, returns the number
    /// of values nested in it, to be read next. A container's items are
    /// counted as objects here, when its count is read.
    #[inline]
    fn value(&mut self) -> Result<Option<u64>, Refusal> {
        match self.byte()? {
            tag if tag >= T_SMALLINT => {}
            T_NONE | T_FALSE | T_TRUE => {}
            T_INT => {
                self.skip_varint()?;
                self.memory += cost::INT;
            }
            T_STR => {
                let n = self.field()?;
                self.memory += cost::str(n);
            }
            T_FLOAT => {
                self.skip(8)?;
                self.memory += cost::FLOAT;
            }
            T_BYTES => {
                let n = self.field()?;
                self.memory += cost::bytes(n);
            }
            tag @ (T_TUPLE | T_LIST | T_SET | T_FROZENSET) => {
                let n = self.count(1)?;
                self.memory += match tag {
                    T_TUPLE => cost::tuple(n),
                    T_LIST => cost::list(n),
                    _ => cost::set(n),
                };
                self.objects += n;
                return Ok(Some(n as u64));
            }
            T_DICT => {
                let n = self.count(2)?;
                self.memory += cost::dict(n);
                self.objects += 2 * n;
                return Ok(Some(2 * n as u64));
            }
            T_BIGINT_POS | T_BIGINT_NEG => {
                let n = self.field()?;
                self.python_built(cost::big_int(n), 2);
            }
            T_DECIMAL => {
                let n = self.field()?;
                self.python_built(cost::decimal(n), 1);
            }
            T_DATE => {
                self.skip(4)?;
                self.python_built(cost::TEMPORAL, 1);
            }
            tag @ (T_DATETIME | T_TIME) => {
                self.skip(if tag == T_DATETIME { 7 } else { 3 })?;
                self.skip_varint()?;
                self.byte()?;
                self.python_built(cost::TEMPORAL, 1);
                self.tz()?;
            }
            T_EXT => {
                let n = self.field()?;
                // The object from_state builds, and its state.
                self.python_built(cost::extension(n), 1);
                self.objects += 1;
                return Ok(Some(1));
            }
            _ => return Err(Refusal::Malformed("unknown tag")),
        }
        Ok(None)
    }

    /// A fixed-offset timezone is built from a timedelta: two calls.
    fn tz(&mut self) -> Result<(), Refusal> {
        match self.byte()? {
            TZ_NONE => {}
            TZ_OFFSET => {
                self.skip_varint()?;
                self.python_built(cost::TZ_OFFSET, 2);
            }
            TZ_OFFSET_NAMED => {
                self.skip_varint()?;
                let n = self.field()?;
                self.python_built(cost::TZ_OFFSET + cost::str(n), 2);
            }
            TZ_ZONEINFO => {
                let n = self.field()?;
                self.python_built(cost::str(n), 1);
            }
            _ => return Err(Refusal::Malformed("unknown tzinfo kind")),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(memory: usize, objects: usize) -> Limits {
        Limits {
            max_decoded_bytes: 1 << 30,
            max_decoded_memory: memory,
            max_objects: objects,
            max_hash_collisions: 0,
        }
    }

    fn price_of(payload: &[u8]) -> Result<usize, Refusal> {
        price(payload, 0, 128, &limits(1 << 40, 1 << 40))
    }

    #[test]
    fn prices_what_the_decoder_builds() {
        // [set(), "ab", 1]: list of 3, empty set, str of 2, small int.
        let payload = [T_LIST, 3, T_SET, 0, T_STR, 2, b'a', b'b', T_SMALLINT | 1];
        assert_eq!(
            price_of(&payload),
            Ok(cost::list(3) + cost::set(0) + cost::str(2))
        );
        let exact = limits(cost::list(3) + cost::set(0) + cost::str(2), 4);
        assert!(price(&payload, 0, 128, &exact).is_ok());
        let tight = limits(cost::list(3) + cost::set(0) + cost::str(2) - 1, 100);
        assert_eq!(
            price(&payload, 0, 128, &tight),
            Err(Refusal::Exceeded(Exceeded::Memory))
        );
        assert_eq!(
            price(&payload, 1, 128, &exact),
            Err(Refusal::Exceeded(Exceeded::Memory))
        );
        let few = limits(1 << 20, 3);
        assert_eq!(
            price(&payload, 0, 128, &few),
            Err(Refusal::Exceeded(Exceeded::Objects))
        );
    }

    #[test]
    fn refuses_malformed_payloads() {
        assert_eq!(price_of(&[]), Err(Refusal::Malformed("truncated input")));
        assert_eq!(
            price_of(&[T_NONE, 0]),
            Err(Refusal::Malformed("trailing bytes after the value"))
        );
        assert_eq!(price_of(&[0x7F]), Err(Refusal::Malformed("unknown tag")));
        assert_eq!(
            price_of(&[T_LIST, 5, T_NONE]),
            Err(Refusal::Malformed("declared length exceeds the input"))
        );
        let mut deep = [T_LIST, 1].repeat(200);
        deep.push(T_NONE);
        assert_eq!(
            price_of(&deep),
            Err(Refusal::Malformed("maximum nesting depth exceeded"))
        );
    }

    /// A set (or frozenset, `tag`) of `n` copies of `item`.
    fn set_of(tag: u8, n: usize, item: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        write_varint(&mut out, n as u64);
        out.extend(item.repeat(n));
        out
    }

    fn assert_under_the_unscanned_bounds(payload: &[u8]) {
        let memory = price_of(payload).unwrap();
        assert!(
            memory <= MAX_MEMORY_PER_BYTE * payload.len(),
            "{memory} bytes for {}",
            payload.len()
        );
        let l = limits(1 << 40, MAX_OBJECTS_PER_BYTE * payload.len());
        assert!(price(payload, 0, 128, &l).is_ok());
    }

    #[test]
    fn worst_cases_per_byte_stay_under_the_unscanned_bounds() {
        let empty_frozenset = [T_FROZENSET, 0];
        let mut worst = 0.0f64;
        // Small sizes, and the sizes around set and dict table growths.
        let sizes = (0..=100).chain([306, 307, 308, 1228, 1229, 1230, 4914, 4915, 4916]);
        for n in sizes {
            for item in [
                &empty_frozenset[..],
                &[T_SMALLINT],
                &[T_BIGINT_POS, 0],
                &[T_DECIMAL, 0],
                &[T_STR, 0],
                &set_of(T_FROZENSET, 5, &empty_frozenset),
            ] {
                for tag in [T_SET, T_LIST, T_TUPLE] {
                    let payload = set_of(tag, n, item);
                    assert_under_the_unscanned_bounds(&payload);
                    worst = worst.max(price_of(&payload).unwrap() as f64 / payload.len() as f64);
                }
            }
            // Keys that are empty frozensets, values None.
            let mut dict = vec![T_DICT];
            write_varint(&mut dict, n as u64);
            dict.extend([T_FROZENSET, 0, T_NONE].repeat(n));
            assert_under_the_unscanned_bounds(&dict);
        }
        // Towers: frozensets of 19 frozensets of ... of empty frozensets.
        let mut tower = empty_frozenset.to_vec();
        for _ in 0..3 {
            tower = set_of(T_FROZENSET, 19, &tower);
            assert_under_the_unscanned_bounds(&tower);
        }
        assert!(worst > 150.0 && worst < 170.0, "{worst}");
    }
}
