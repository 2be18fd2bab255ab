//! Counters and latency figures shared by the Redis client and the caches.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Buckets per power of two: quantiles come out within about 19%.
const SUB_BUCKETS: u32 = 4;
/// Covers 1 us to about 2^40 us.
const BUCKETS: usize = (40 * SUB_BUCKETS) as usize;

/// A lock-free log-scale histogram of latencies in microseconds.
pub struct LatencyHistogram {
    buckets: [AtomicU64; BUCKETS],
    /// Every sample's microseconds added up (Prometheus wants a histogram's sum).
    sum_micros: AtomicU64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_micros: AtomicU64::new(0),
        }
    }
}

fn bucket_of(micros: u64) -> usize {
    let micros = micros.max(1);
    let power = 63 - micros.leading_zeros();
    // The SUB_BUCKETS bits right below the leading one pick the sub-bucket.
    let fraction = if power >= SUB_BUCKETS.ilog2() {
        ((micros >> (power - SUB_BUCKETS.ilog2())) as u32) & (SUB_BUCKETS - 1)
    } else {
        ((micros << (SUB_BUCKETS.ilog2() - power)) as u32) & (SUB_BUCKETS - 1)
    };
    ((power * SUB_BUCKETS + fraction) as usize).min(BUCKETS - 1)
}

/// The upper bound (in microseconds) of a bucket.
fn bucket_upper_micros(bucket: usize) -> f64 {
    let power = bucket as u32 / SUB_BUCKETS;
    let fraction = bucket as u32 % SUB_BUCKETS;
    2f64.powi(power as i32) * (1.0 + (fraction + 1) as f64 / SUB_BUCKETS as f64)
}

impl LatencyHistogram {
    pub fn record(&self, latency: Duration) {
        let micros = latency.as_micros().min(u64::MAX as u128) as u64;
        self.buckets[bucket_of(micros)].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    pub fn sum_micros(&self) -> u64 {
        self.sum_micros.load(Ordering::Relaxed)
    }

    /// `(upper bound in microseconds, samples)` of every bucket holding
    /// samples, smallest first: what an exporter re-buckets.
    pub fn nonempty_buckets(&self) -> Vec<(f64, u64)> {
        self.buckets
            .iter()
            .enumerate()
            .map(|(bucket, count)| (bucket_upper_micros(bucket), count.load(Ordering::Relaxed)))
            .filter(|(_, count)| *count > 0)
            .collect()
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// The latency (microseconds) under which a fraction `q` of samples fall.
    pub fn quantile_micros(&self, q: f64) -> Option<f64> {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (bucket, count) in counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(bucket_upper_micros(bucket));
            }
        }
        Some(bucket_upper_micros(BUCKETS - 1))
    }

    pub fn reset(&self) {
        for bucket in &self.buckets {
            bucket.store(0, Ordering::Relaxed);
        }
        self.sum_micros.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_bucket_precision() {
        let h = LatencyHistogram::default();
        for micros in 1..=1000u64 {
            h.record(Duration::from_micros(micros));
        }
        let p50 = h.quantile_micros(0.5).unwrap();
        let p99 = h.quantile_micros(0.99).unwrap();
        assert!((500.0..=500.0 * 1.25).contains(&p50), "p50 {p50}");
        assert!((990.0..=990.0 * 1.25).contains(&p99), "p99 {p99}");
        assert_eq!(h.count(), 1000);
        assert_eq!(h.sum_micros(), 500_500);
        let buckets = h.nonempty_buckets();
        assert_eq!(buckets.iter().map(|(_, n)| n).sum::<u64>(), 1000);
        assert!(buckets.windows(2).all(|pair| pair[0].0 < pair[1].0));
    }

    #[test]
    fn empty_histogram_has_no_quantile() {
        assert_eq!(LatencyHistogram::default().quantile_micros(0.5), None);
    }

    #[test]
    fn buckets_are_monotonic() {
        let mut last = 0;
        for micros in 1..100_000u64 {
            let b = bucket_of(micros);
            assert!(b >= last);
            assert!(bucket_upper_micros(b) >= micros as f64, "{micros}");
            last = b;
        }
    }
}
