//! The Kafka log side of the authorizer: what comes in, what goes out, and what must never be lost.
//!
//! * [`consumer`]: reads `account-updates` and `authorizations`, every partition, by explicit
//!   assignment (no consumer group, so no rebalances), from a snapshot's offsets or from the
//!   beginning, into a bounded queue towards the single ledger thread, each batch's events
//!   already parsed ([`batch`]). When the queue is full the consumer pauses its partitions
//!   instead of buffering.
//! * [`apply`]: the ledger-thread side of that queue: applies records in offset order, skips
//!   records delivered twice, tracks the next offset per partition (what a snapshot records),
//!   routes rejected events to the dead-letter topic, and says when the state has caught up with
//!   the log ("ready").
//! * [`dlq`]: writes rejected events to `account-updates.dlq` with the reason and their origin in
//!   headers; [`dlq_tool`] lists them and sends chosen ones back (`authorizer dlq`).
//! * [`producer`]: publishes authorizer events keyed by account id (idempotent, `acks=all`); the
//!   caller waits for the acknowledgement within a time budget, after which the event goes to the
//!   [`spool`], which drains to Kafka in order when it is back, also after a restart.
//! * [`replay`]: builds a state from the log up to the high watermarks; the `authorizer replay`
//!   tool and the replay benchmark.
//! * [`metrics`]: lag per partition, events applied, dead letters, spool depth, produce latency.
//!
//! This module never decides anything and never holds money state: the ledger does, on its own
//! thread. It never drops an event silently, never answers a producer's caller before the event
//! is either acknowledged by Kafka or fsync'd in the spool, and never logs payloads (they can
//! carry masked PANs only, but the rule is simpler than the exception).
//!
//! Topics, headers, the spool format and operations are described in `docs/kafka.md`.

pub mod apply;
pub mod batch;
pub mod consumer;
pub mod dlq;
pub mod dlq_tool;
pub mod metrics;
pub mod parse;
pub mod producer;
pub mod properties;
pub mod replay;
pub mod spool;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::types::RDKafkaErrorCode;

/// Each input topic is named by the stream it carries, the ledger's [`Source`].
pub use ledger::Source;

pub use apply::{Applier, Apply, DeadLetters, Progress};
pub use batch::RecordBatch;
pub use consumer::{Consumed, ConsumerHandle, ConsumerOptions, LogRecord, StartOffsets};
pub use dlq::{DeadLetter, DeadLetterWriter};
pub use metrics::{LogMetrics, MetricsSnapshot};
pub use parse::{Job, ParsePool};
pub use producer::{Delivery, Outbound, PublishError, Publisher, PublisherConfig};
pub use replay::{Follower, FollowerView, ReplayOptions, ReplayReport, replay};
pub use spool::{Spool, SpoolError, SpoolHandle, SpoolRecord};

/// One partition of one topic.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}

/// Next offset to read (= last applied + 1) per partition: what a snapshot records and what a
/// restart resumes from.
pub type Offsets = BTreeMap<TopicPartition, i64>;

/// How to reach Kafka and what the topics are called. Its `Debug` prints `<redacted>` for the
/// value of every secret property ([`properties::is_secret_property`]).
#[derive(Clone)]
pub struct KafkaConfig {
    /// `host:port[,host:port]`.
    pub bootstrap: String,
    /// Identifies this authorizer instance to the broker (`client.id`).
    pub client_id: String,
    pub account_updates_topic: String,
    pub authorizations_topic: String,
    pub dead_letter_topic: String,
    /// Extra librdkafka properties (security settings, for example), applied last.
    pub extra: Vec<(String, String)>,
    /// Bound on metadata and watermark requests.
    pub request_timeout: Duration,
}

impl fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let extra: Vec<(&str, &str)> = self
            .extra
            .iter()
            .map(|(k, v)| (k.as_str(), properties::shown_value(k, v)))
            .collect();
        f.debug_struct("KafkaConfig")
            .field("bootstrap", &self.bootstrap)
            .field("client_id", &self.client_id)
            .field("account_updates_topic", &self.account_updates_topic)
            .field("authorizations_topic", &self.authorizations_topic)
            .field("dead_letter_topic", &self.dead_letter_topic)
            .field("extra", &extra)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

impl KafkaConfig {
    /// The default topic names (`account-updates`, `authorizations`, `account-updates.dlq`).
    pub fn new(bootstrap: impl Into<String>) -> Self {
        KafkaConfig {
            bootstrap: bootstrap.into(),
            client_id: "authorizer".into(),
            account_updates_topic: "account-updates".into(),
            authorizations_topic: "authorizations".into(),
            dead_letter_topic: "account-updates.dlq".into(),
            extra: Vec::new(),
            request_timeout: Duration::from_secs(10),
        }
    }

    /// The two topics the ledger is built from, with their sources.
    pub fn inputs(&self) -> Vec<(Source, String)> {
        vec![
            (Source::AccountUpdates, self.account_updates_topic.clone()),
            (Source::Authorizations, self.authorizations_topic.clone()),
        ]
    }

    /// A librdkafka client configuration with the common properties.
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap)
            .set("client.id", &self.client_id)
            // Loopback brokers in tests resolve "localhost" twice (v4, v6); be explicit.
            .set("broker.address.family", "v4");
        for (k, v) in &self.extra {
            c.set(k, v);
        }
        c
    }
}

/// Errors of the log side. Each names the thing and the value, and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error(
        "kafka {what} (bootstrap {bootstrap}): {source}; check that the broker is up and reachable"
    )]
    Kafka {
        what: String,
        bootstrap: String,
        #[source]
        source: Box<rdkafka::error::KafkaError>,
    },
    #[error(
        "topic {topic} does not exist or has no partitions (bootstrap {bootstrap}); create it first"
    )]
    NoPartitions { topic: String, bootstrap: String },
    #[error("creating topic {topic}: {code}")]
    CreateTopic { topic: String, code: String },
    #[error(
        "start offset {offset} of {tp} is outside the log's offsets [{low}, {high}]: the snapshot is older than the retained log or from another log; restore from a newer snapshot of this log"
    )]
    OffsetOutOfRange {
        tp: TopicPartition,
        offset: i64,
        low: i64,
        high: i64,
    },
    #[error("kafka consumer failed: {message}")]
    Consume { message: String },
    #[error(transparent)]
    Spool(Box<SpoolError>),
    #[error(
        "kafka producer (bootstrap {bootstrap}): no idempotent producer id within {waited:?}; check that the broker is up and allows idempotent producers (IdempotentWrite)"
    )]
    WarmUp { bootstrap: String, waited: Duration },
    #[error("the {what} stopped before the work was done")]
    Stopped { what: &'static str },
    #[error(
        "ledger halted at {tp} offset {offset}: {reason}; this replica cannot apply an event every replica must have, and skipping it would make it diverge: raise the bound and restart (the offset is kept, nothing after it was applied)"
    )]
    Halted {
        tp: TopicPartition,
        offset: i64,
        reason: String,
    },
}

impl From<SpoolError> for LogError {
    fn from(e: SpoolError) -> Self {
        LogError::Spool(Box::new(e))
    }
}

impl LogError {
    pub(crate) fn kafka(
        cfg: &KafkaConfig,
        what: impl Into<String>,
    ) -> impl FnOnce(rdkafka::error::KafkaError) -> LogError + '_ {
        let what = what.into();
        move |source| LogError::Kafka {
            what,
            bootstrap: cfg.bootstrap.clone(),
            source: Box::new(source),
        }
    }
}

/// Creates `topic` with `partitions` partitions (replication 1) unless it exists. A topic the
/// broker already lists is left as it is without asking for a creation (a broker may not offer
/// CreateTopics, as librdkafka's mock cluster does not).
pub async fn ensure_topic(cfg: &KafkaConfig, topic: &str, partitions: i32) -> Result<(), LogError> {
    let (cc, name, timeout) = (cfg.client_config(), topic.to_owned(), cfg.request_timeout);
    let listed = tokio::task::spawn_blocking(move || {
        // A consumer's metadata request never creates the topic (allow.auto.create.topics is
        // false for consumers).
        let consumer: BaseConsumer = cc.create().ok()?;
        let metadata = consumer.fetch_metadata(Some(&name), timeout).ok()?;
        Some(
            metadata
                .topics()
                .iter()
                .any(|t| t.name() == name && t.error().is_none() && !t.partitions().is_empty()),
        )
    })
    .await
    .ok()
    .flatten()
    .unwrap_or(false);
    if listed {
        return Ok(());
    }
    let admin: AdminClient<DefaultClientContext> = cfg
        .client_config()
        .create()
        .map_err(LogError::kafka(cfg, "admin client"))?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let opts = AdminOptions::new().operation_timeout(Some(cfg.request_timeout));
    let results = admin
        .create_topics([&new], &opts)
        .await
        .map_err(LogError::kafka(cfg, format!("create topic {topic}")))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(LogError::CreateTopic {
                    topic: name,
                    code: code.to_string(),
                });
            }
        }
    }
    Ok(())
}

/// The partitions of `topic`, from the broker's metadata.
pub fn partitions_of<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    cfg: &KafkaConfig,
    topic: &str,
) -> Result<Vec<i32>, LogError> {
    let md = consumer
        .fetch_metadata(Some(topic), cfg.request_timeout)
        .map_err(LogError::kafka(cfg, format!("metadata of {topic}")))?;
    let mut parts: Vec<i32> = md
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    parts.sort_unstable();
    if parts.is_empty() {
        return Err(LogError::NoPartitions {
            topic: topic.into(),
            bootstrap: cfg.bootstrap.clone(),
        });
    }
    Ok(parts)
}

/// Low and high watermarks (first retained offset, next offset to be written) of every partition
/// of `topic`.
pub fn watermarks<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    cfg: &KafkaConfig,
    topic: &str,
) -> Result<BTreeMap<TopicPartition, (i64, i64)>, LogError> {
    let mut out = BTreeMap::new();
    for p in partitions_of(consumer, cfg, topic)? {
        let wm = consumer
            .fetch_watermarks(topic, p, cfg.request_timeout)
            .map_err(LogError::kafka(cfg, format!("watermarks of {topic}/{p}")))?;
        out.insert(TopicPartition::new(topic, p), wm);
    }
    Ok(out)
}

/// The offsets a snapshot recorded, as consumer start offsets.
pub fn offsets_from_snapshot(resume: &ledger::snapshot::ResumeOffsets) -> Offsets {
    resume
        .iter()
        .map(|(topic, partition, next)| (TopicPartition::new(topic, partition), next))
        .collect()
}

/// The applier's offsets, for a snapshot header.
pub fn snapshot_offsets(
    offsets: &Offsets,
) -> Result<ledger::snapshot::ResumeOffsets, ledger::snapshot::SnapshotError> {
    let mut resume = ledger::snapshot::ResumeOffsets::new();
    for (tp, &next) in offsets {
        resume.set(&tp.topic, tp.partition, next)?;
    }
    Ok(resume)
}
