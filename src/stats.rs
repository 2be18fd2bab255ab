//! Counters and latency figures.
