//! The metrics registry: every metric the authorizer exports on `/metrics`, as prometheus-client
//! families, and their text encoding.
//!
//! The edges (link, pipeline, Kafka) are handed an `Arc<Metrics>` and update the fields; the
//! admin server encodes them on each scrape. Label values are names the code chooses (MTI,
//! response code, device address, stage, kind, topic); must never: take a label value from a
//! PAN, track data, an amount or any other request content beyond the MTI and response code.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// The content type of [`Metrics::encode`]'s text (OpenMetrics, which Prometheus reads).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `{mti, response_code}` of `authorizer_requests_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The request's MTI, four digits (`"0100"`).
    pub mti: String,
    /// DE 39 of the answer, two characters (`"00"`, `"51"`).
    pub response_code: String,
}

/// `{stage}` of `authorizer_request_duration_seconds`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabels {
    /// `total`, `hsm`, `ledger`, `kafka_ack`.
    pub stage: String,
}

/// `{device}`: the interface device's address.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeviceLabels {
    pub device: String,
}

/// `{device, kind}` of `authorizer_bad_frames_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BadFrameLabels {
    pub device: String,
    /// Why the frame was refused (`length`, `parse`, ...).
    pub kind: String,
}

/// `{kind}` of `authorizer_hsm_errors_total` and `authorizer_state_records`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

/// `{outcome}` of `authorizer_events_published_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `acked` (Kafka acknowledged within the ack budget), `spooled` (in the local spool, sent
    /// later), `failed` (neither: the replica diverged).
    pub outcome: String,
}

/// `{topic, partition}` of `authorizer_kafka_lag_records`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    pub topic: String,
    pub partition: i32,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric of the authorizer. Cheap to update from any thread (atomics behind the
/// families); [`Metrics::encode`] writes them all.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// `authorizer_requests_total{mti,response_code}`: requests answered.
    pub requests: Family<RequestLabels, Counter>,
    /// `authorizer_request_duration_seconds{stage}`: time per request and stage, in seconds.
    pub request_duration: HistogramFamily<StageLabels>,
    /// `authorizer_link_up{device}`: 1 while the link to the device is up, else 0.
    pub link_up: Family<DeviceLabels, Gauge>,
    /// `authorizer_link_reconnects_total{device}`.
    pub link_reconnects: Family<DeviceLabels, Counter>,
    /// `authorizer_bad_frames_total{device,kind}`: frames that could not be read or parsed.
    pub bad_frames: Family<BadFrameLabels, Counter>,
    /// `authorizer_hsm_errors_total{kind}`.
    pub hsm_errors: Family<KindLabels, Counter>,
    /// `authorizer_kafka_lag_records{topic,partition}`: records not yet applied.
    pub kafka_lag: Family<PartitionLabels, Gauge>,
    /// `authorizer_spool_events`: events waiting in the spool.
    pub spool_events: Gauge,
    /// `authorizer_dead_letters_total`: events written to the dead-letter topic.
    pub dead_letters: Counter,
    /// `authorizer_state_records{kind}`: records in the state (`accounts`, `cards`, `holds`).
    pub state_records: Family<KindLabels, Gauge>,
    /// `authorizer_events_published_total{outcome}`: where the decisions' events went.
    pub events_published: Family<OutcomeLabels, Counter>,
    /// `authorizer_snapshots_skipped_total{kind}`: snapshots not restored at start (`checksum`,
    /// `state_hash`, `future_version`, `out_of_range`, ...).
    pub snapshots_skipped: Family<KindLabels, Counter>,
    /// `authorizer_ready`: 1 while ready to serve (the same answer as `/health/ready`), 0 while
    /// catching up, rebuilding or stopping.
    pub ready: Gauge,
}

/// Buckets of the request durations: 100 µs doubling up to about 6.5 s.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 17))
}

impl Metrics {
    /// Every family registered, none with a sample yet (except the plain counter and gauge,
    /// at 0).
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let request_duration: HistogramFamily<StageLabels> =
            Family::new_with_constructor(duration_histogram);
        let link_up = Family::<DeviceLabels, Gauge>::default();
        let link_reconnects = Family::<DeviceLabels, Counter>::default();
        let bad_frames = Family::<BadFrameLabels, Counter>::default();
        let hsm_errors = Family::<KindLabels, Counter>::default();
        let kafka_lag = Family::<PartitionLabels, Gauge>::default();
        let spool_events = Gauge::default();
        let dead_letters = Counter::default();
        let state_records = Family::<KindLabels, Gauge>::default();
        let events_published = Family::<OutcomeLabels, Counter>::default();
        let ready: Gauge = Gauge::default();
        let snapshots_skipped = Family::<KindLabels, Counter>::default();
        // Counters are registered without `_total`: the encoder adds it to their samples.
        registry.register("authorizer_requests", "Requests answered", requests.clone());
        registry.register_with_unit(
            "authorizer_request_duration",
            "Time per request, per stage",
            Unit::Seconds,
            request_duration.clone(),
        );
        registry.register(
            "authorizer_link_up",
            "1 while the link to an interface device is up",
            link_up.clone(),
        );
        registry.register(
            "authorizer_link_reconnects",
            "Reconnections to an interface device",
            link_reconnects.clone(),
        );
        registry.register(
            "authorizer_bad_frames",
            "Frames that could not be read or parsed",
            bad_frames.clone(),
        );
        registry.register("authorizer_hsm_errors", "HSM failures", hsm_errors.clone());
        registry.register(
            "authorizer_kafka_lag_records",
            "Records not yet applied",
            kafka_lag.clone(),
        );
        registry.register(
            "authorizer_spool_events",
            "Events waiting in the spool",
            spool_events.clone(),
        );
        registry.register(
            "authorizer_dead_letters",
            "Events written to the dead-letter topic",
            dead_letters.clone(),
        );
        registry.register(
            "authorizer_state_records",
            "Records in the state",
            state_records.clone(),
        );
        registry.register(
            "authorizer_events_published",
            "Decisions' events by where they went: acked by Kafka, spooled, failed",
            events_published.clone(),
        );
        registry.register(
            "authorizer_snapshots_skipped",
            "Snapshots not restored at start, by why (checksum, state_hash, future_version, out_of_range, ...)",
            snapshots_skipped.clone(),
        );
        registry.register(
            "authorizer_ready",
            "1 while ready to serve (as /health/ready), 0 while catching up, rebuilding or stopping",
            ready.clone(),
        );
        Self {
            registry,
            requests,
            request_duration,
            link_up,
            link_reconnects,
            bad_frames,
            hsm_errors,
            kafka_lag,
            spool_events,
            dead_letters,
            state_records,
            events_published,
            snapshots_skipped,
            ready,
        }
    }

    /// Counts one answered request.
    pub fn request_answered(&self, mti: &str, response_code: &str) {
        self.requests
            .get_or_create(&RequestLabels {
                mti: mti.to_owned(),
                response_code: response_code.to_owned(),
            })
            .inc();
    }

    /// Records `seconds` spent in `stage` by one request.
    pub fn observe_duration(&self, stage: &str, seconds: f64) {
        self.request_duration
            .get_or_create(&StageLabels {
                stage: stage.to_owned(),
            })
            .observe(seconds);
    }

    /// Sets whether the link to `device` is up.
    pub fn set_link_up(&self, device: &str, up: bool) {
        self.link_up
            .get_or_create(&DeviceLabels {
                device: device.to_owned(),
            })
            .set(i64::from(up));
    }

    /// Sets how many records of `kind` the state holds.
    pub fn set_state_records(&self, kind: &str, count: u64) {
        self.state_records
            .get_or_create(&KindLabels {
                kind: kind.to_owned(),
            })
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// The whole registry in the text format of [`CONTENT_TYPE`], ending with `# EOF`.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        encode(&mut text, &self.registry).expect("encoding metrics into a String");
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
