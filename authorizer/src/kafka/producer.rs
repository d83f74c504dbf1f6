//! The producer: authorizer events to Kafka within a time budget, or to the spool.
//!
//! [`Publisher::publish`] sends an event keyed by account id (idempotent producer, `acks=all`)
//! and waits for the acknowledgement for at most the caller's budget minus a reserve kept for the
//! spool's fsync. If Kafka acknowledges in time, the answer is [`Delivery::Acked`]. Otherwise
//! (timeout, broker unreachable, delivery error, librdkafka queue full) the event is appended to
//! the [`super::spool`] and fsync'd, and the answer is [`Delivery::Spooled`]: the caller may answer
//! the network, the event will reach Kafka.
//!
//! A drainer task sends spooled events in spool order, a window at a time, and removes each from
//! the spool only when Kafka acknowledged it. While the spool is not empty, new events go straight
//! to the spool behind it, so nothing overtakes the backlog. On open, the drainer starts with what
//! a previous process left in the spool.
//!
//! Published once: an event whose first send timed out may still be delivered by librdkafka
//! (until `message.timeout.ms`). Its spool record is *held*: the drainer does not send it, nor
//! anything after it, until that first send resolves; success removes the record (so it is not
//! sent again), failure releases it to the drainer. After a crash no first send survives, and the
//! spool is the only copy. Consumers still dedupe by `event_id`, because a send that failed on
//! the client side may have been written by the broker (the idempotent producer narrows this to a
//! broker that lost its session state).
//!
//! If the spool cannot take an event (full, disk error), the caller is told
//! ([`PublishError::Spool`]) and the spool never sends it later; if its first send is still in
//! flight the caller is told that too ([`PublishError::InDoubt`]): it may yet reach Kafka.
//!
//! Never: answer `Spooled` before the record is durable, remove a record Kafka did not
//! acknowledge, or let a spooled event be overtaken by a later one.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::metrics::LogMetrics;
use super::spool::{SpoolError, SpoolHandle, SpoolRecord};
use super::{KafkaConfig, LogError};

/// Settings of the publisher; `PublisherConfig::new(dir)` gives the daemon's defaults.
#[derive(Clone, Debug)]
pub struct PublisherConfig {
    /// Directory of the spool file. Must survive restarts (not a tmpfs).
    pub spool_dir: PathBuf,
    /// The spool refuses appends beyond this size ([`SpoolError::Full`]).
    pub spool_bytes_max: u64,
    /// Part of each caller's budget kept for the spool's fsync.
    pub spool_reserve: Duration,
    /// How long librdkafka keeps trying a message (`message.timeout.ms`): the longest a first
    /// send that timed out for its caller may hold back the drain.
    pub message_timeout: Duration,
    /// librdkafka `linger.ms`: batching delay, added to every acknowledgement.
    pub linger: Duration,
    /// Spooled events sent per round trip by the drainer.
    pub drain_window: usize,
    /// Longest pause between drain attempts while Kafka refuses them.
    pub drain_backoff_max: Duration,
}

impl PublisherConfig {
    pub fn new(spool_dir: impl Into<PathBuf>) -> Self {
        PublisherConfig {
            spool_dir: spool_dir.into(),
            spool_bytes_max: 1 << 30,
            spool_reserve: Duration::from_millis(50),
            message_timeout: Duration::from_secs(30),
            linger: Duration::from_millis(1),
            drain_window: 512,
            drain_backoff_max: Duration::from_secs(2),
        }
    }
}

/// An authorizer event to publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outbound {
    /// The Kafka key: the account id, so one account's events stay in order in one partition.
    pub key: String,
    /// Unique id of the event (consumers dedupe on it); for logs and errors.
    pub event_id: String,
    /// The event's JSON.
    pub payload: Vec<u8>,
}

/// Where an event is, once `publish` returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Kafka acknowledged it (all in-sync replicas).
    Acked { partition: i32, offset: i64 },
    /// It is durable in the local spool and will be sent when Kafka is back.
    Spooled { seq: u64 },
}

/// The event is not in the spool and Kafka did not acknowledge it: the caller must not count on
/// it.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// Neither in Kafka nor in the spool (a failed spool group is removed from the spool, so it
    /// is never sent later).
    #[error("event {event_id} could not be spooled: {source}")]
    Spool {
        event_id: String,
        #[source]
        source: SpoolError,
    },
    /// Not in the spool, but its first send had timed out and is still alive in librdkafka: it
    /// may yet reach Kafka (until `message.timeout.ms`). The caller must neither count on it nor
    /// assume it absent.
    #[error(
        "event {event_id} could not be spooled and its first send to Kafka is still in flight (it may yet be delivered): {source}"
    )]
    InDoubt {
        event_id: String,
        #[source]
        source: SpoolError,
    },
}

struct Shared {
    producer: FutureProducer,
    topic: String,
    spool: SpoolHandle,
    wake: Notify,
    closing: AtomicBool,
    metrics: Arc<LogMetrics>,
    cfg: PublisherConfig,
}

/// The publisher and its drainer task. Cheap to clone.
#[derive(Clone)]
pub struct Publisher {
    shared: Arc<Shared>,
    drainer: Arc<std::sync::Mutex<Option<JoinHandle<()>>>>,
}

impl Publisher {
    /// Opens the spool (recovering what a previous process left) and starts the drainer. Events
    /// go to the `authorizations` topic of `kafka`. Must be called inside a tokio runtime.
    pub fn open(
        kafka: &KafkaConfig,
        cfg: PublisherConfig,
        metrics: Arc<LogMetrics>,
    ) -> Result<Publisher, LogError> {
        let producer: FutureProducer = kafka
            .client_config()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", cfg.linger.as_millis().to_string())
            .set(
                "message.timeout.ms",
                cfg.message_timeout.as_millis().to_string(),
            )
            .create()
            .map_err(LogError::kafka(kafka, "producer"))?;
        let spool = SpoolHandle::open(&cfg.spool_dir, cfg.spool_bytes_max)?;
        metrics.set_spool_depth(spool.depth());
        let shared = Arc::new(Shared {
            producer,
            topic: kafka.authorizations_topic.clone(),
            spool,
            wake: Notify::new(),
            closing: AtomicBool::new(false),
            metrics,
            cfg,
        });
        let drainer = tokio::spawn(drain(shared.clone()));
        Ok(Publisher {
            shared,
            drainer: Arc::new(std::sync::Mutex::new(Some(drainer))),
        })
    }

    /// Publishes `event`; returns within `budget` plus the spool's fsync once Kafka has it
    /// ([`Delivery::Acked`]) or the spool has it ([`Delivery::Spooled`]).
    pub async fn publish(
        &self,
        event: &Outbound,
        budget: Duration,
    ) -> Result<Delivery, PublishError> {
        let s = &self.shared;
        let started = Instant::now();
        if s.spool.depth() > 0 {
            // A backlog is draining: queue behind it, never overtake it.
            return self.spool(event, None).await;
        }
        let record = FutureRecord::to(&s.topic)
            .key(event.key.as_bytes())
            .payload(event.payload.as_slice());
        let mut delivery = match s.producer.send_result(record) {
            Ok(d) => d,
            Err((e, _)) => {
                tracing::warn!(error = %e, event_id = %event.event_id, "producer queue refused the event; spooling");
                return self.spool(event, None).await;
            }
        };
        let wait = budget.saturating_sub(s.cfg.spool_reserve);
        match tokio::time::timeout(wait, &mut delivery).await {
            Ok(Ok(Ok(d))) => {
                s.metrics.record_produce_latency(started.elapsed());
                Ok(Delivery::Acked {
                    partition: d.partition,
                    offset: d.offset,
                })
            }
            Ok(Ok(Err((e, _)))) => {
                tracing::warn!(error = %e, event_id = %event.event_id, "event not acknowledged; spooling");
                self.spool(event, None).await
            }
            Ok(Err(_canceled)) => self.spool(event, None).await,
            Err(_elapsed) => self.spool(event, Some(delivery)).await,
        }
    }

    /// Appends to the spool; `in_flight` is a first send that may still be delivered.
    async fn spool(
        &self,
        event: &Outbound,
        in_flight: Option<DeliveryFuture>,
    ) -> Result<Delivery, PublishError> {
        let s = &self.shared;
        let seq = s
            .spool
            .append(
                &s.topic,
                event.key.as_bytes(),
                &event.payload,
                in_flight.is_some(),
            )
            .await
            .map_err(|source| {
                let event_id = event.event_id.clone();
                if in_flight.is_some() {
                    // Dropping the delivery future does not withdraw the message.
                    PublishError::InDoubt { event_id, source }
                } else {
                    PublishError::Spool { event_id, source }
                }
            })?;
        s.metrics.add_spooled();
        s.metrics.set_spool_depth(s.spool.depth());
        if let Some(first_send) = in_flight {
            let shared = s.clone();
            tokio::spawn(async move {
                let delivered = matches!(first_send.await, Ok(Ok(_)));
                let result = if delivered {
                    shared.spool.ack(seq).await
                } else {
                    shared.spool.release(seq).await
                };
                if let Err(e) = result {
                    tracing::error!(error = %e, seq, "spool: cannot record the outcome of a first send");
                }
                shared.wake.notify_one();
            });
        }
        s.wake.notify_one();
        Ok(Delivery::Spooled { seq })
    }

    /// Events in the spool not yet acknowledged by Kafka.
    pub fn spool_depth(&self) -> u64 {
        self.shared.spool.depth()
    }

    /// Waits until the spool is empty, for at most `timeout`; true if it is.
    pub async fn wait_drained(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.shared.spool.barrier().await.is_err() {
                return false;
            }
            if self.shared.spool.depth() == 0 {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            // The depth changes only in the spool thread; re-check on the drainer's rhythm.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the drainer (the spool keeps what was not sent, for the next start).
    pub async fn close(self) {
        self.shared.closing.store(true, Ordering::Release);
        self.shared.wake.notify_one();
        let task = self
            .drainer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// Sends spooled events in order, a window at a time; removes each once acknowledged.
async fn drain(s: Arc<Shared>) {
    let mut backoff = Duration::from_millis(50);
    while !s.closing.load(Ordering::Acquire) {
        let window = match s.spool.pending_after(0, s.cfg.drain_window).await {
            Ok(w) => w,
            Err(e) => {
                tracing::error!(error = %e, "spool drainer stopping");
                return;
            }
        };
        s.metrics.set_spool_depth(s.spool.depth());
        if window.is_empty() {
            // Empty, or its head is held by a first send still in flight: wait for a change.
            tokio::select! {
                _ = s.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            continue;
        }
        let all_sent = send_window(&s, &window).await;
        if all_sent {
            backoff = Duration::from_millis(50);
        } else {
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = wait_closing(&s) => {}
            }
            backoff = (backoff * 2).min(s.cfg.drain_backoff_max);
        }
    }
}

async fn wait_closing(s: &Shared) {
    while !s.closing.load(Ordering::Acquire) {
        s.wake.notified().await;
    }
}

/// Sends `window` in order and removes from the spool every record Kafka acknowledged. Returns
/// false if any failed (they are sent again next round). With the idempotent producer, failures
/// within one partition come in order (a timeout fails everything queued after it too), so a
/// retry does not reorder one account's events.
async fn send_window(s: &Shared, window: &[SpoolRecord]) -> bool {
    let mut in_flight = Vec::with_capacity(window.len());
    let mut all_sent = true;
    for r in window {
        let record = FutureRecord::to(&r.topic)
            .key(r.key.as_slice())
            .payload(r.payload.as_slice());
        match s.producer.send_result(record) {
            Ok(delivery) => in_flight.push((r.seq, delivery)),
            Err(_) => {
                all_sent = false; // librdkafka's queue is full: send the rest next round
                break;
            }
        }
    }
    for (seq, delivery) in in_flight {
        match delivery.await {
            Ok(Ok(_)) => {
                if let Err(e) = s.spool.ack(seq).await {
                    tracing::error!(error = %e, seq, "spool: cannot remove an acknowledged record");
                    return false;
                }
            }
            Ok(Err((e, _))) => {
                if all_sent {
                    tracing::warn!(error = %e, seq, "spooled event not acknowledged; will retry");
                }
                all_sent = false;
            }
            Err(_) => all_sent = false,
        }
    }
    all_sent
}
