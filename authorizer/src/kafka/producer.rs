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
//! the spool only when Kafka acknowledged it. On open, the drainer starts with what a previous
//! process left in the spool.
//!
//! Never overtake, per key: while the spool holds an event of a key (an account), every new event
//! of that key goes to the spool behind it. A key leaves spool mode as soon as its last spooled
//! event is acknowledged by Kafka, so a backlog that is being drained does not capture every later
//! event (with one global "spool not empty" rule, a steady load kept the spool from ever being
//! empty at the instant of a publish, and every event was spooled forever). While Kafka is
//! *stalled* (a send missed its budget or failed, and nothing was acknowledged since), every new
//! event goes straight to the spool without waiting for its budget, as Kafka cannot take it;
//! the first acknowledgement (a direct send, a first send or a drained window) ends the stall.
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

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::statistics::Statistics;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::metrics::LogMetrics;
use super::spool::{Spool, SpoolError, SpoolHandle, SpoolRecord};
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
            linger: Duration::ZERO,
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

/// The producer's client context: notes from librdkafka's statistics when the idempotent
/// producer has its producer id (what [`Publisher::warm_up`] waits for).
#[derive(Default)]
struct ProducerState {
    pid_assigned: AtomicBool,
    changed: Notify,
}

#[derive(Clone, Default)]
struct PublisherContext(Arc<ProducerState>);

impl ClientContext for PublisherContext {
    fn stats(&self, statistics: Statistics) {
        let assigned = statistics
            .eos
            .is_some_and(|eos| eos.idemp_state == "Assigned" && eos.producer_id >= 0);
        if self.0.pid_assigned.swap(assigned, Ordering::AcqRel) != assigned {
            self.0.changed.notify_waiters();
        }
    }
}

struct Shared {
    producer: FutureProducer<PublisherContext>,
    state: Arc<ProducerState>,
    topic: String,
    kafka_bootstrap: String,
    spool: SpoolHandle,
    /// Per key, the events of that key in the spool (appended or being appended, not yet
    /// acknowledged by Kafka). A key listed here is in spool mode.
    spooled_keys: std::sync::Mutex<HashMap<Vec<u8>, u64>>,
    /// Kafka missed a budget or refused a send, and acknowledged nothing since.
    stalled: AtomicBool,
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
        let context = PublisherContext::default();
        let state = context.0.clone();
        let producer: FutureProducer<PublisherContext> = kafka
            .client_config()
            // Statistics say when the producer id is assigned (1 s is librdkafka's granularity).
            .set("statistics.interval.ms", "1000")
            .set("enable.idempotence", "true")
            // After the broker was away, try again within a second (librdkafka's default backs
            // off to 10 s), so a stall ends soon after the broker is back.
            .set("reconnect.backoff.max.ms", "1000")
            .set("acks", "all")
            .set("linger.ms", cfg.linger.as_millis().to_string())
            .set(
                "message.timeout.ms",
                cfg.message_timeout.as_millis().to_string(),
            )
            .create_with_context(context)
            .map_err(LogError::kafka(kafka, "producer"))?;
        let spool = Spool::open(&cfg.spool_dir, cfg.spool_bytes_max)?;
        let mut spooled_keys: HashMap<Vec<u8>, u64> = HashMap::new();
        for r in spool.pending() {
            *spooled_keys.entry(r.key.clone()).or_default() += 1;
        }
        let spool = SpoolHandle::start(spool)?;
        metrics.set_spool_depth(spool.depth());
        let shared = Arc::new(Shared {
            producer,
            state,
            topic: kafka.authorizations_topic.clone(),
            kafka_bootstrap: kafka.bootstrap.clone(),
            spool,
            spooled_keys: std::sync::Mutex::new(spooled_keys),
            stalled: AtomicBool::new(false),
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

    /// Sets up what the first event would otherwise wait for: the connection to the broker, the
    /// topic's metadata (its partitions' leaders) and the idempotent producer's id (about a second
    /// on tansu, as librdkafka retries every 500 ms until a broker is up). Call it before the
    /// daemon says it is ready: without it, the first events of a burst wait for this set-up,
    /// miss their budget and go to the spool. Publishes nothing. Fails if not done within
    /// `timeout` (the broker is unreachable or refuses the producer id).
    pub async fn warm_up(&self, timeout: Duration) -> Result<(), LogError> {
        let s = self.shared.clone();
        let deadline = Instant::now() + timeout;
        let metadata = tokio::task::spawn_blocking(move || {
            s.producer
                .client()
                .fetch_metadata(Some(&s.topic), timeout)
                .map(|m| {
                    m.topics()
                        .first()
                        .is_some_and(|t| t.error().is_none() && !t.partitions().is_empty())
                })
        })
        .await
        .map_err(|_| LogError::Stopped {
            what: "producer warm-up",
        })?;
        let bootstrap = || self.shared.kafka_bootstrap.clone();
        match metadata {
            Ok(true) => {}
            Ok(false) => {
                return Err(LogError::NoPartitions {
                    topic: self.shared.topic.clone(),
                    bootstrap: bootstrap(),
                });
            }
            Err(source) => {
                return Err(LogError::Kafka {
                    what: format!("producer warm-up (metadata of {})", self.shared.topic),
                    bootstrap: bootstrap(),
                    source: Box::new(source),
                });
            }
        }
        let state = &self.shared.state;
        loop {
            let changed = state.changed.notified();
            if state.pid_assigned.load(Ordering::Acquire) {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(LogError::WarmUp {
                    bootstrap: bootstrap(),
                    waited: timeout,
                });
            }
            let _ = tokio::time::timeout(left, changed).await;
        }
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
        if s.stalled.load(Ordering::Acquire) || s.key_spooled(event.key.as_bytes()) {
            // Kafka cannot take it now, or this key's backlog is draining: queue behind it,
            // never overtake it.
            return self.spool(event, None).await;
        }
        let record = FutureRecord::to(&s.topic)
            .key(event.key.as_bytes())
            .payload(event.payload.as_slice());
        let mut delivery = match s.producer.send_result(record) {
            Ok(d) => d,
            Err((e, _)) => {
                tracing::warn!(error = %e, event_id = %event.event_id, "producer queue refused the event; spooling");
                s.stall();
                return self.spool(event, None).await;
            }
        };
        let wait = budget.saturating_sub(s.cfg.spool_reserve);
        match tokio::time::timeout(wait, &mut delivery).await {
            Ok(Ok(Ok(d))) => {
                s.acknowledged();
                s.metrics.record_produce_latency(started.elapsed());
                Ok(Delivery::Acked {
                    partition: d.partition,
                    offset: d.offset,
                })
            }
            Ok(Ok(Err((e, _)))) => {
                tracing::warn!(error = %e, event_id = %event.event_id, "event not acknowledged; spooling");
                s.stall();
                self.spool(event, None).await
            }
            Ok(Err(_canceled)) => {
                s.stall();
                self.spool(event, None).await
            }
            Err(_elapsed) => {
                s.stall();
                self.spool(event, Some(delivery)).await
            }
        }
    }

    /// Appends to the spool; `in_flight` is a first send that may still be delivered.
    async fn spool(
        &self,
        event: &Outbound,
        in_flight: Option<DeliveryFuture>,
    ) -> Result<Delivery, PublishError> {
        let s = &self.shared;
        // Marked before the append is queued (no await in between), so a later event of this key
        // sees it and queues behind this one.
        s.key_in(event.key.as_bytes());
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
                s.key_out(event.key.as_bytes());
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
            let key = event.key.as_bytes().to_vec();
            tokio::spawn(async move {
                let delivered = matches!(first_send.await, Ok(Ok(_)));
                let result = if delivered {
                    shared.acknowledged();
                    let r = shared.spool.ack(seq).await;
                    shared.key_out(&key);
                    r
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

impl Shared {
    fn key_spooled(&self, key: &[u8]) -> bool {
        self.keys().contains_key(key)
    }

    fn key_in(&self, key: &[u8]) {
        *self.keys().entry(key.to_vec()).or_default() += 1;
    }

    /// One event of `key` left the spool (acknowledged by Kafka, or its append failed).
    fn key_out(&self, key: &[u8]) {
        let mut keys = self.keys();
        if let Some(n) = keys.get_mut(key) {
            *n -= 1;
            if *n == 0 {
                keys.remove(key);
            }
        }
    }

    fn keys(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, u64>> {
        self.spooled_keys.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stall(&self) {
        if !self.stalled.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                "kafka did not acknowledge in time: new events go to the spool until it does"
            );
        }
    }

    fn acknowledged(&self) {
        if self.stalled.swap(false, Ordering::AcqRel) {
            tracing::info!(
                "kafka acknowledges again: events are sent directly unless their key is spooled"
            );
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
            Ok(delivery) => in_flight.push((r.seq, r.key.as_slice(), delivery)),
            Err(_) => {
                all_sent = false; // librdkafka's queue is full: send the rest next round
                break;
            }
        }
    }
    for (seq, key, delivery) in in_flight {
        match delivery.await {
            Ok(Ok(_)) => {
                s.acknowledged();
                if let Err(e) = s.spool.ack(seq).await {
                    tracing::error!(error = %e, seq, "spool: cannot remove an acknowledged record");
                    return false;
                }
                s.key_out(key);
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
