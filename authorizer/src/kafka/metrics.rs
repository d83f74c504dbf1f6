//! Metrics hooks of the log side, for the admin server to export later (Prometheus).
//!
//! Counters are atomics; per-partition progress and the produce latency histogram sit behind
//! short mutexes. Everything is read through [`LogMetrics::snapshot`]. Recording never blocks on
//! I/O and never fails.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;

use super::TopicPartition;

/// Highest produce latency recorded, in microseconds (larger values are clamped): 10 minutes.
const LATENCY_US_MAX: u64 = 600_000_000;

/// Shared metrics of the consumer, the applier, the dead-letter writer and the producer.
pub struct LogMetrics {
    events_applied: AtomicU64,
    events_rejected: AtomicU64,
    duplicates_skipped: AtomicU64,
    dead_letters_written: AtomicU64,
    consumer_pauses: AtomicU64,
    spool_depth: AtomicU64,
    events_spooled: AtomicU64,
    halted: AtomicU64,
    partitions: Mutex<BTreeMap<TopicPartition, PartitionProgress>>,
    produce_latency_us: Mutex<Histogram<u64>>,
}

/// What is known of one partition: the broker's high watermark (last seen) and the next offset
/// the ledger will apply.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PartitionProgress {
    pub high_watermark: i64,
    pub next_offset: i64,
}

impl PartitionProgress {
    /// Records in the log not yet applied (0 when the watermark is not known yet).
    pub fn lag(&self) -> i64 {
        (self.high_watermark - self.next_offset).max(0)
    }
}

/// A copy of the metrics at one moment.
#[derive(Clone, Debug)]
pub struct MetricsSnapshot {
    pub events_applied: u64,
    /// Events the ledger rejected (each one goes to the dead-letter topic).
    pub events_rejected: u64,
    /// Records delivered again at an offset already applied (skipped before the ledger).
    pub duplicates_skipped: u64,
    /// Dead letters acknowledged by Kafka.
    pub dead_letters_written: u64,
    /// Times the consumer paused because the ledger's queue was full.
    pub consumer_pauses: u64,
    pub spool_depth: u64,
    pub events_spooled: u64,
    /// 1 once the ledger halted on an event it cannot apply (a capacity bound), else 0.
    pub ledger_halted: u64,
    pub partitions: BTreeMap<TopicPartition, PartitionProgress>,
    pub produce_count: u64,
    pub produce_latency_us_p50: u64,
    pub produce_latency_us_p99: u64,
    pub produce_latency_us_max: u64,
}

impl MetricsSnapshot {
    /// Sum of the lag of every partition.
    pub fn total_lag(&self) -> i64 {
        self.partitions.values().map(PartitionProgress::lag).sum()
    }
}

impl Default for LogMetrics {
    fn default() -> Self {
        LogMetrics {
            events_applied: AtomicU64::new(0),
            events_rejected: AtomicU64::new(0),
            duplicates_skipped: AtomicU64::new(0),
            dead_letters_written: AtomicU64::new(0),
            consumer_pauses: AtomicU64::new(0),
            spool_depth: AtomicU64::new(0),
            events_spooled: AtomicU64::new(0),
            halted: AtomicU64::new(0),
            partitions: Mutex::new(BTreeMap::new()),
            produce_latency_us: Mutex::new(
                Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("static histogram bounds"),
            ),
        }
    }
}

impl LogMetrics {
    pub fn set_halted(&self, halted: bool) {
        self.halted.store(u64::from(halted), Ordering::Relaxed);
    }
    pub fn add_applied(&self, n: u64) {
        self.events_applied.fetch_add(n, Ordering::Relaxed);
    }
    pub fn add_rejected(&self, n: u64) {
        self.events_rejected.fetch_add(n, Ordering::Relaxed);
    }
    pub fn add_duplicates(&self, n: u64) {
        self.duplicates_skipped.fetch_add(n, Ordering::Relaxed);
    }
    pub fn add_dead_letter_written(&self) {
        self.dead_letters_written.fetch_add(1, Ordering::Relaxed);
    }
    pub fn add_consumer_pause(&self) {
        self.consumer_pauses.fetch_add(1, Ordering::Relaxed);
    }
    pub fn add_spooled(&self) {
        self.events_spooled.fetch_add(1, Ordering::Relaxed);
    }
    pub fn set_spool_depth(&self, depth: u64) {
        self.spool_depth.store(depth, Ordering::Relaxed);
    }

    /// The next offset the ledger will apply for `tp` (after it applied `next - 1`).
    pub fn set_next_offset(&self, tp: &TopicPartition, next: i64) {
        let mut p = self.partitions.lock().unwrap_or_else(|e| e.into_inner());
        match p.get_mut(tp) {
            Some(progress) => progress.next_offset = next,
            None => {
                p.insert(
                    tp.clone(),
                    PartitionProgress {
                        high_watermark: 0,
                        next_offset: next,
                    },
                );
            }
        }
    }

    /// The broker's high watermark for `tp`, as last seen by the consumer.
    pub fn set_high_watermark(&self, tp: &TopicPartition, high_watermark: i64) {
        let mut p = self.partitions.lock().unwrap_or_else(|e| e.into_inner());
        let progress = p.entry(tp.clone()).or_default();
        progress.high_watermark = progress.high_watermark.max(high_watermark);
    }

    /// One produce-with-acknowledgement latency.
    pub fn record_produce_latency(&self, latency: Duration) {
        let us = (latency.as_micros().min(LATENCY_US_MAX as u128) as u64).max(1);
        let mut h = self
            .produce_latency_us
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        h.saturating_record(us);
    }

    pub fn snapshot(&self) -> MetricsSnapshot {
        let h = self
            .produce_latency_us
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        MetricsSnapshot {
            events_applied: self.events_applied.load(Ordering::Relaxed),
            events_rejected: self.events_rejected.load(Ordering::Relaxed),
            duplicates_skipped: self.duplicates_skipped.load(Ordering::Relaxed),
            dead_letters_written: self.dead_letters_written.load(Ordering::Relaxed),
            consumer_pauses: self.consumer_pauses.load(Ordering::Relaxed),
            spool_depth: self.spool_depth.load(Ordering::Relaxed),
            events_spooled: self.events_spooled.load(Ordering::Relaxed),
            ledger_halted: self.halted.load(Ordering::Relaxed),
            partitions: self
                .partitions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            produce_count: h.len(),
            produce_latency_us_p50: h.value_at_quantile(0.50),
            produce_latency_us_p99: h.value_at_quantile(0.99),
            produce_latency_us_max: h.max(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_watermark_minus_next_offset_per_partition() {
        let m = LogMetrics::default();
        let a = TopicPartition::new("account-updates", 0);
        let b = TopicPartition::new("account-updates", 1);
        m.set_high_watermark(&a, 100);
        m.set_next_offset(&a, 40);
        m.set_next_offset(&b, 7);
        m.set_high_watermark(&b, 7);
        m.set_high_watermark(&a, 90); // an older reading never moves it back
        let s = m.snapshot();
        assert_eq!(s.partitions[&a].lag(), 60);
        assert_eq!(s.partitions[&b].lag(), 0);
        assert_eq!(s.total_lag(), 60);
    }

    #[test]
    fn produce_latency_quantiles() {
        let m = LogMetrics::default();
        for us in 1..=100u64 {
            m.record_produce_latency(Duration::from_micros(us * 10));
        }
        let s = m.snapshot();
        assert_eq!(s.produce_count, 100);
        assert!((495..=505).contains(&s.produce_latency_us_p50), "{s:?}");
        assert!((985..=995).contains(&s.produce_latency_us_p99), "{s:?}");
    }
}
