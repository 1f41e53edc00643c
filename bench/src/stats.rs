//! Latency summaries.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest sample.
    pub max_ms: f64,
}

/// Records durations with microsecond resolution.
pub struct Recorder {
    histogram: Histogram<u64>,
}

impl Recorder {
    /// An empty recorder (1 µs to 60 s, 3 significant digits).
    pub fn new() -> Self {
        Self {
            histogram: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
        }
    }

    /// Adds one sample.
    pub fn record(&mut self, d: Duration) {
        let us = (d.as_micros() as u64).clamp(1, 60_000_000);
        self.histogram.record(us).expect("in bounds");
    }

    /// The percentiles.
    pub fn summary(&self) -> Latency {
        let ms = |q: f64| self.histogram.value_at_quantile(q) as f64 / 1000.0;
        Latency {
            count: self.histogram.len(),
            p50_ms: ms(0.50),
            p90_ms: ms(0.90),
            p99_ms: ms(0.99),
            max_ms: self.histogram.max() as f64 / 1000.0,
        }
    }
}
