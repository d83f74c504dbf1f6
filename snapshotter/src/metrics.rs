//! The snapshotter's metrics registry (`/metrics`): when the last snapshot was written, how long
//! writing takes, failures by kind, snapshots skipped at restore by why.
//!
//! Label values are names the code chooses (`write`, `prune`, `checksum`, ...); must never take
//! one from a record's content.

use std::sync::atomic::AtomicU64;

use authorizer::admin::MetricsText;
use authorizer::admin::metrics::KindLabels;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// Every metric of the snapshotter.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// `snapshotter_last_snapshot_timestamp_seconds`: Unix time of the last snapshot written.
    pub last_snapshot_timestamp: Gauge<f64, AtomicU64>,
    /// `snapshotter_snapshot_duration_seconds`: time to write one snapshot (fsyncs included).
    pub snapshot_duration: Histogram,
    /// `snapshotter_failures_total{kind}`: `write` (a snapshot not written), `prune`.
    pub failures: Family<KindLabels, Counter>,
    /// `snapshotter_snapshots_skipped_total{kind}`: snapshots not restored at start.
    pub snapshots_skipped: Family<KindLabels, Counter>,
    /// `snapshotter_snapshots_written_total`.
    pub snapshots_written: Counter,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let last_snapshot_timestamp = Gauge::<f64, AtomicU64>::default();
        // 10 ms doubling up to about 5.5 min.
        let snapshot_duration = Histogram::new(exponential_buckets(0.01, 2.0, 16));
        let failures = Family::<KindLabels, Counter>::default();
        let snapshots_skipped = Family::<KindLabels, Counter>::default();
        let snapshots_written = Counter::default();
        registry.register(
            "snapshotter_last_snapshot_timestamp_seconds",
            "Unix time when the last snapshot was written",
            last_snapshot_timestamp.clone(),
        );
        registry.register_with_unit(
            "snapshotter_snapshot_duration",
            "Time to write a snapshot",
            Unit::Seconds,
            snapshot_duration.clone(),
        );
        // Counters are registered without `_total`: the encoder adds it to their samples.
        registry.register(
            "snapshotter_failures",
            "Failed snapshots, by kind (write, prune)",
            failures.clone(),
        );
        registry.register(
            "snapshotter_snapshots_skipped",
            "Snapshots not restored at start, by why (checksum, state_hash, future_version, out_of_range, ...)",
            snapshots_skipped.clone(),
        );
        registry.register(
            "snapshotter_snapshots_written",
            "Snapshots written",
            snapshots_written.clone(),
        );
        Metrics {
            registry,
            last_snapshot_timestamp,
            snapshot_duration,
            failures,
            snapshots_skipped,
            snapshots_written,
        }
    }

    pub fn failed(&self, kind: &str) {
        self.failures
            .get_or_create(&KindLabels {
                kind: kind.to_owned(),
            })
            .inc();
    }
}

impl MetricsText for Metrics {
    fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        encode(&mut text, &self.registry).expect("encoding metrics into a String");
        text
    }
}
