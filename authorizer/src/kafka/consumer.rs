//! The consumer: every partition of the input topics, by explicit assignment, into a bounded queue.
//!
//! There is no consumer group: a group's rebalances stop consumption for seconds and can hand a
//! partition to another process, and every replica needs every partition anyway. Offsets are not
//! committed to Kafka; the snapshot records them (see [`super::apply::Applier`]).
//!
//! One thread polls librdkafka and sends batches of records into a `std::sync::mpsc::sync_channel`
//! whose other end is the ledger thread. When the channel is full the consumer stops polling (so
//! librdkafka stops fetching once its bounded prefetch is full) and, if the ledger stays behind
//! for [`PAUSE_AFTER`], pauses every assigned partition until there is room: memory is bounded by
//! the channel capacity times the batch size plus librdkafka's `queued.max.messages.kbytes`.
//!
//! Never: commit offsets, join a group, skip a record silently (an out-of-range start offset is an
//! error, not a reset), or block the ledger thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;

use super::batch::RecordBatch;
use super::metrics::LogMetrics;
use super::parse::{Job, ParsePool};
use super::{KafkaConfig, LogError, Offsets, Source, TopicPartition, watermarks};

/// How long the ledger's queue may stay full before the consumer pauses its partitions.
pub const PAUSE_AFTER: Duration = Duration::from_millis(500);
/// Retry interval while the ledger's queue is full (the queue holds far more work than this).
const FULL_QUEUE_RETRY: Duration = Duration::from_millis(1);

/// One record from an input topic (the source names the topic: each source is read from one topic;
/// no per-record copy of the name, which would be a reference count shared by two threads).
#[derive(Clone, Debug)]
pub struct LogRecord {
    pub source: Source,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
}

/// What the consumer sends to the ledger thread. The daemon's own command type implements
/// `From<Consumed>` so that log records and decision requests share one bounded queue.
#[derive(Debug)]
pub enum Consumed {
    /// Records in offset order within each partition, their events parsed on the consumer's
    /// thread.
    Records(RecordBatch),
    /// The consumer stopped on an error it cannot recover from; nothing more will come.
    Failed(LogError),
}

/// Where to start reading.
#[derive(Clone, Debug, Default)]
pub enum StartOffsets {
    /// Every partition from its first retained record.
    #[default]
    Beginning,
    /// Next offset per partition (a snapshot's). Partitions not listed start at the beginning
    /// (they did not exist, or were empty, when the snapshot was taken).
    At(Offsets),
}

/// Tuning of the consumer; the defaults suit the daemon.
#[derive(Clone, Debug)]
pub struct ConsumerOptions {
    /// Records per batch sent to the ledger thread.
    pub batch_records_max: usize,
    /// librdkafka's prefetch bound for the whole consumer (`queued.max.messages.kbytes`).
    pub prefetch_kbytes_max: u32,
    /// How often librdkafka reports partition high watermarks (lag metrics).
    pub stats_interval: Duration,
    /// Longest time the broker holds a fetch open waiting for new records (tail latency).
    pub fetch_wait_max: Duration,
    /// Threads that parse the batches' JSON ([`ParsePool`]; at least 1).
    pub parse_threads: usize,
}

impl Default for ConsumerOptions {
    fn default() -> Self {
        ConsumerOptions {
            batch_records_max: 1024,
            prefetch_kbytes_max: 32 * 1024,
            stats_interval: Duration::from_secs(1),
            fetch_wait_max: Duration::from_millis(100),
            parse_threads: 2,
        }
    }
}

/// The running consumer thread.
pub struct ConsumerHandle {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// The partitions assigned and where each started.
    pub start_offsets: Offsets,
    /// High watermark of every assigned partition when the consumer started: the ledger is
    /// "caught up" (ready) once it has applied everything below these.
    pub start_high_watermarks: Offsets,
    /// Roles of the assigned topics.
    pub topics: Vec<(Source, String)>,
    /// When the partitions were assigned (fetching starts): the start of a replay's clock.
    pub assigned_at: std::time::Instant,
}

impl ConsumerHandle {
    /// Stops the thread and waits for it. The receiving end must have been dropped or be drained,
    /// or the thread may be blocked on a full queue.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ConsumerHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// librdkafka context that feeds partition high watermarks into the lag metrics.
struct StatsContext {
    metrics: Arc<LogMetrics>,
    last_error: Mutex<Option<String>>,
}

impl ClientContext for StatsContext {
    fn stats(&self, statistics: Statistics) {
        for (topic, t) in &statistics.topics {
            for p in t.partitions.values() {
                if p.partition >= 0 && p.hi_offset >= 0 {
                    self.metrics
                        .set_high_watermark(&TopicPartition::new(topic, p.partition), p.hi_offset);
                }
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // Transient broker errors (down, unreachable) are retried by librdkafka; log once per kind.
        let text = format!("{error}: {reason}");
        let mut last = self.last_error.lock().unwrap_or_else(|e| e.into_inner());
        if last.as_deref() != Some(text.as_str()) {
            tracing::warn!(error = %text, "kafka consumer");
            *last = Some(text);
        }
    }
}

impl ConsumerContext for StatsContext {}

/// Assigns every partition of `topics`, checks the start offsets against the retained log, and
/// starts the consumer thread sending into `tx`.
pub fn spawn<T>(
    cfg: &KafkaConfig,
    topics: &[(Source, String)],
    start: &StartOffsets,
    options: &ConsumerOptions,
    tx: SyncSender<T>,
    metrics: Arc<LogMetrics>,
) -> Result<ConsumerHandle, LogError>
where
    T: From<Consumed> + Send + 'static,
{
    let mut cc = cfg.client_config();
    // librdkafka wants a group id for `assign`; with assign and no commits, the group is never
    // joined and no group state is ever stored on the broker.
    cc.set("group.id", format!("{}-assign-only", cfg.client_id))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        // A start offset outside the retained log is an operator problem, never a silent reset.
        .set("auto.offset.reset", "error")
        .set(
            "queued.max.messages.kbytes",
            options.prefetch_kbytes_max.to_string(),
        )
        .set(
            "fetch.wait.max.ms",
            options.fetch_wait_max.as_millis().to_string(),
        )
        .set(
            "statistics.interval.ms",
            options.stats_interval.as_millis().to_string(),
        );
    let consumer: BaseConsumer<StatsContext> = cc
        .create_with_context(StatsContext {
            metrics: metrics.clone(),
            last_error: Mutex::new(None),
        })
        .map_err(LogError::kafka(cfg, "consumer"))?;

    let mut start_offsets = Offsets::new();
    let mut start_high_watermarks = Offsets::new();
    let mut assignment = TopicPartitionList::new();
    for (_, topic) in topics {
        for (tp, (low, high)) in watermarks(&consumer, cfg, topic)? {
            let offset = match start {
                StartOffsets::Beginning => low,
                StartOffsets::At(map) => map.get(&tp).copied().unwrap_or(low),
            };
            if offset < low || offset > high {
                return Err(LogError::OffsetOutOfRange {
                    tp,
                    offset,
                    low,
                    high,
                });
            }
            assignment
                .add_partition_offset(topic, tp.partition, Offset::Offset(offset))
                .map_err(LogError::kafka(cfg, format!("assignment of {tp}")))?;
            metrics.set_next_offset(&tp, offset);
            metrics.set_high_watermark(&tp, high);
            start_offsets.insert(tp.clone(), offset);
            start_high_watermarks.insert(tp, high);
        }
    }
    consumer
        .assign(&assignment)
        .map_err(LogError::kafka(cfg, "assign"))?;
    let assigned_at = std::time::Instant::now();

    let stop = Arc::new(AtomicBool::new(false));
    let thread_stop = stop.clone();
    let sources: Vec<(Source, Arc<str>)> = topics
        .iter()
        .map(|(r, t)| (*r, Arc::<str>::from(t.as_str())))
        .collect();
    let options = options.clone();
    let thread = std::thread::Builder::new()
        .name("log-consumer".into())
        .spawn(move || {
            poll_loop(
                consumer,
                assignment,
                sources,
                &options,
                tx,
                metrics,
                thread_stop,
            )
        })
        .map_err(|e| LogError::Consume {
            message: format!("cannot start the consumer thread: {e}"),
        })?;
    Ok(ConsumerHandle {
        stop,
        thread: Some(thread),
        start_offsets,
        start_high_watermarks,
        topics: topics.to_vec(),
        assigned_at,
    })
}

fn poll_loop<T: From<Consumed> + Send + 'static>(
    consumer: BaseConsumer<StatsContext>,
    assignment: TopicPartitionList,
    sources: Vec<(Source, Arc<str>)>,
    options: &ConsumerOptions,
    tx: SyncSender<T>,
    metrics: Arc<LogMetrics>,
    stop: Arc<AtomicBool>,
) {
    let batch_max = options.batch_records_max.max(1);
    let mut batch: Vec<LogRecord> = Vec::with_capacity(batch_max);
    // Batches the ledger thread is done with come back to be freed on this thread.
    let (home, spent) = std::sync::mpsc::channel::<RecordBatch>();
    let mut pool = match ParsePool::start(options.parse_threads, tx, home, stop.clone()) {
        Ok(pool) => pool,
        Err(e) => {
            tracing::error!(error = %e, "kafka consumer: cannot start the parsing threads");
            return;
        }
    };
    while !stop.load(Ordering::Acquire) {
        while let Ok(done) = spent.try_recv() {
            drop(done);
        }
        // Wait for records only when there is nothing to hand over.
        let wait = if batch.is_empty() {
            Duration::from_millis(100)
        } else {
            Duration::ZERO
        };
        match consumer.poll(wait) {
            Some(Ok(m)) => {
                let Some((source, _)) = sources.iter().find(|(_, t)| **t == *m.topic()) else {
                    continue; // not assigned by us; cannot happen with explicit assignment
                };
                batch.push(LogRecord {
                    source: *source,
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(<[u8]>::to_vec),
                    payload: m.payload().map(<[u8]>::to_vec),
                });
                if batch.len() < batch_max {
                    continue;
                }
            }
            Some(Err(e)) => {
                if fatal(&e) {
                    // After every batch before it; `finish` waits for the ledger to take them.
                    let mut failed = Job::Failed(LogError::Consume {
                        message: format!(
                            "{e}; the start offsets are outside the retained log: restore from a newer snapshot"
                        ),
                    });
                    loop {
                        match pool.try_submit(failed) {
                            Ok(()) => break,
                            Err(TrySendError::Full(back)) => failed = back,
                            Err(TrySendError::Disconnected(_)) => return,
                        }
                        if stop.load(Ordering::Acquire) {
                            return;
                        }
                        std::thread::sleep(FULL_QUEUE_RETRY);
                    }
                    pool.finish();
                    return;
                }
                tracing::warn!(error = %e, "kafka consumer: retrying");
                continue;
            }
            None if batch.is_empty() => continue,
            None => {}
        }
        let full = std::mem::replace(&mut batch, Vec::with_capacity(batch_max));
        // Parsed by the pool's threads, which takes that work off the single ledger thread.
        match pool.try_submit(Job::Records(full)) {
            Ok(()) => {}
            Err(TrySendError::Full(mut item)) => {
                // The ledger is behind. Not polling already stops fetching once librdkafka's
                // bounded prefetch is full; if the ledger stays behind for PAUSE_AFTER, pause the
                // partitions too (librdkafka drops its prefetched records and fetches nothing)
                // until there is room. Pausing at once on every full queue would throw away and
                // re-fetch the prefetch each time, which is slower than the ledger.
                let full_since = Instant::now();
                let mut paused = false;
                loop {
                    if stop.load(Ordering::Acquire) {
                        return;
                    }
                    std::thread::sleep(FULL_QUEUE_RETRY);
                    match pool.try_submit(item) {
                        Ok(()) => break,
                        Err(TrySendError::Full(back)) => item = back,
                        Err(TrySendError::Disconnected(_)) => return,
                    }
                    if !paused && full_since.elapsed() >= PAUSE_AFTER {
                        paused = consumer.pause(&assignment).is_ok();
                        metrics.add_consumer_pause();
                    }
                }
                if paused && let Err(e) = consumer.resume(&assignment) {
                    tracing::error!(error = %e, "kafka consumer: resume failed");
                }
            }
            Err(TrySendError::Disconnected(_)) => return,
        }
    }
}

fn fatal(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(RDKafkaErrorCode::AutoOffsetReset | RDKafkaErrorCode::OffsetOutOfRange)
    )
}
