//! The pipeline's counters: requests by MTI and DE 39, why requests were answered unavailable or
//! not at all, where events went, and stage durations (`total`, `hsm`, `ledger`, `kafka_ack`)
//! as histograms in microseconds. Read by tests, benches and the demo; when the pipeline is given
//! the daemon's [`Metrics`] registry, every answer, stage duration and HSM failure is recorded
//! there too at the same point (one place records, two views read).
//!
//! Must never: hold anything of a request but its MTI and response code.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram as PromHistogram;

use crate::admin::Metrics;
use crate::admin::metrics::{RequestLabels, StageLabels};

/// A stage of the request path whose duration is recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// Request in to answer out (or to the answer given up).
    Total,
    /// The ARQC check, including the wait for a free HSM worker.
    Hsm,
    /// Queued for the ledger thread to decision back.
    Ledger,
    /// Publishing the event (Kafka's acknowledgement or the spool's fsync).
    KafkaAck,
}

impl Stage {
    pub const ALL: [Stage; 4] = [Stage::Total, Stage::Hsm, Stage::Ledger, Stage::KafkaAck];

    pub fn name(self) -> &'static str {
        match self {
            Stage::Total => "total",
            Stage::Hsm => "hsm",
            Stage::Ledger => "ledger",
            Stage::KafkaAck => "kafka_ack",
        }
    }
}

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// Plain counters (monotonic).
        #[derive(Default, Debug)]
        pub struct Counts { $($(#[$doc])* pub $name: AtomicU64,)* }
        /// A copy of [`Counts`].
        #[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
        pub struct CountsSnapshot { $(pub $name: u64,)* }
        impl Counts {
            pub fn snapshot(&self) -> CountsSnapshot {
                CountsSnapshot { $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }
    };
}

counters! {
    /// Answered the unavailable code: the HSM was late or had no free worker.
    unavailable_hsm_timeout,
    /// Answered the unavailable code: the HSM failed.
    unavailable_hsm_error,
    /// Answered the unavailable code: the ledger's queue was full.
    unavailable_queue_full,
    /// Answered the unavailable code: the event could not be made durable (the replica diverged).
    unavailable_not_durable,
    /// Answered the unavailable code: the replica is not ready (catching up or diverged).
    unavailable_not_ready,
    /// Answered the unavailable code: the ledger thread could not decide (stopped, or the
    /// decision's event did not apply).
    unavailable_ledger,
    /// Not answered: the answer would have been later than `answer_budget`.
    late,
    /// Not answered: an MTI the pipeline does not handle (0800 is the link session's; responses).
    not_ours,
    /// ARQCs the HSM verified.
    hsm_verified,
    /// ARQCs the HSM rejected, or chip data it could not check (declined by the ledger).
    hsm_rejected,
    /// Events acknowledged by Kafka within the ack budget.
    acked,
    /// Events in the spool (Kafka late or down).
    spooled,
    /// Publishes that failed (neither Kafka nor the spool, or in doubt).
    publish_failed,
    /// Approvals answered without tag 91 because the ARPC could not be computed in time.
    arpc_failed,
}

/// Answers by request MTI and DE 39, with the exported counter of each pair (resolved once).
type ByCode = BTreeMap<([u8; 4], [u8; 2]), (u64, Option<Counter>)>;

/// Counters and histograms of one pipeline.
pub struct Counters {
    pub counts: Counts,
    by_code: Mutex<ByCode>,
    stages: [Mutex<Histogram<u64>>; 4],
    /// The daemon's registry, recorded into as well.
    export: Option<Arc<Metrics>>,
    /// The exported histogram of each stage, resolved once (no label allocation per request).
    exported_stages: Option<[PromHistogram; 4]>,
}

impl Default for Counters {
    fn default() -> Self {
        Counters::exporting(None)
    }
}

impl Counters {
    /// Counters that also record into `export` (the daemon's `/metrics`).
    pub fn exporting(export: Option<Arc<Metrics>>) -> Self {
        let h =
            || Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 2).expect("bounds are valid"));
        let exported_stages = export.as_ref().map(|m| {
            Stage::ALL.map(|stage| {
                m.request_duration
                    .get_or_create(&StageLabels {
                        stage: stage.name().to_owned(),
                    })
                    .clone()
            })
        });
        Counters {
            counts: Counts::default(),
            by_code: Mutex::new(BTreeMap::new()),
            stages: [h(), h(), h(), h()],
            export,
            exported_stages,
        }
    }

    /// Where a decision's event went (`acked`, `spooled`, `failed`), for
    /// `authorizer_events_published_total`.
    pub(crate) fn published(&self, counter: &AtomicU64, outcome: &str) {
        self.add(counter);
        if let Some(m) = &self.export {
            m.events_published
                .get_or_create(&crate::admin::metrics::OutcomeLabels {
                    outcome: outcome.to_owned(),
                })
                .inc();
        }
    }

    /// An HSM failure of `kind` (`timeout`, `error`), for `authorizer_hsm_errors_total`.
    pub(crate) fn hsm_error(&self, kind: &str) {
        if let Some(m) = &self.export {
            m.hsm_errors
                .get_or_create(&crate::admin::metrics::KindLabels {
                    kind: kind.to_owned(),
                })
                .inc();
        }
    }

    pub(crate) fn add(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn answered(&self, mti: [u8; 4], code: [u8; 2]) {
        let mut by_code = self.by_code.lock().unwrap_or_else(|e| e.into_inner());
        let (n, exported) = by_code.entry((mti, code)).or_insert_with(|| {
            let counter = self.export.as_ref().map(|m| {
                m.requests
                    .get_or_create(&RequestLabels {
                        mti: String::from_utf8_lossy(&mti).into_owned(),
                        response_code: String::from_utf8_lossy(&code).into_owned(),
                    })
                    .clone()
            });
            (0, counter)
        });
        *n += 1;
        if let Some(c) = exported {
            c.inc();
        }
    }

    pub(crate) fn stage(&self, stage: Stage, took: Duration) {
        if let Some(h) = &self.exported_stages {
            h[stage as usize].observe(took.as_secs_f64());
        }
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1);
        self.stages[stage as usize]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .saturating_record(us);
    }

    /// Requests answered, by request MTI and answer DE 39 (ASCII).
    pub fn by_code(&self) -> BTreeMap<(String, String), u64> {
        self.by_code
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|((m, c), (n, _))| {
                (
                    (
                        String::from_utf8_lossy(m).into_owned(),
                        String::from_utf8_lossy(c).into_owned(),
                    ),
                    *n,
                )
            })
            .collect()
    }

    /// A copy of a stage's histogram (microseconds).
    pub fn stage_histogram(&self, stage: Stage) -> Histogram<u64> {
        self.stages[stage as usize]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}
