//! Dead letters: input events the ledger rejected, written to `account-updates.dlq`.
//!
//! The record keeps the original key and value byte for byte (garbage included) and says why and
//! where from in headers:
//!
//! | header | value |
//! |---|---|
//! | `dlq.reason` | the ledger's reason, UTF-8 |
//! | `dlq.source.topic` | topic the event was read from |
//! | `dlq.source.partition` | partition, decimal |
//! | `dlq.source.offset` | offset, decimal |
//!
//! The writer is a tokio task behind a bounded queue; it retries each letter until Kafka
//! acknowledges it (idempotent producer, `acks=all`), in order. Never drops a letter, never
//! rewrites its content.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::metrics::LogMetrics;
use super::{KafkaConfig, LogError};

pub const HEADER_REASON: &str = "dlq.reason";
pub const HEADER_SOURCE_TOPIC: &str = "dlq.source.topic";
pub const HEADER_SOURCE_PARTITION: &str = "dlq.source.partition";
pub const HEADER_SOURCE_OFFSET: &str = "dlq.source.offset";

/// Capacity of the queue from the ledger thread to the writer.
pub const DEAD_LETTER_QUEUE_CAPACITY: usize = 10_000;

/// A rejected input event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    pub source_topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub reason: String,
}

/// The running writer task.
pub struct DeadLetterWriter {
    task: JoinHandle<()>,
}

impl DeadLetterWriter {
    /// Starts the writer on the current tokio runtime; returns the queue the ledger thread sends
    /// to. The task ends once every sender is dropped and the queue is written.
    pub fn spawn(
        cfg: &KafkaConfig,
        metrics: Arc<LogMetrics>,
    ) -> Result<(DeadLetterWriter, mpsc::Sender<DeadLetter>), LogError> {
        let producer: FutureProducer = cfg
            .client_config()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .create()
            .map_err(LogError::kafka(cfg, "dead-letter producer"))?;
        let topic = cfg.dead_letter_topic.clone();
        let (tx, mut rx) = mpsc::channel::<DeadLetter>(DEAD_LETTER_QUEUE_CAPACITY);
        let task = tokio::spawn(async move {
            while let Some(letter) = rx.recv().await {
                write(&producer, &topic, &letter).await;
                metrics.add_dead_letter_written();
            }
        });
        Ok((DeadLetterWriter { task }, tx))
    }

    /// Waits until every letter sent before the senders were dropped is acknowledged.
    pub async fn finish(self) {
        let _ = self.task.await;
    }
}

async fn write(producer: &FutureProducer, topic: &str, letter: &DeadLetter) {
    let partition = letter.partition.to_string();
    let offset = letter.offset.to_string();
    let mut backoff = Duration::from_millis(100);
    loop {
        let headers = OwnedHeaders::new_with_capacity(4)
            .insert(Header {
                key: HEADER_REASON,
                value: Some(letter.reason.as_bytes()),
            })
            .insert(Header {
                key: HEADER_SOURCE_TOPIC,
                value: Some(letter.source_topic.as_bytes()),
            })
            .insert(Header {
                key: HEADER_SOURCE_PARTITION,
                value: Some(partition.as_bytes()),
            })
            .insert(Header {
                key: HEADER_SOURCE_OFFSET,
                value: Some(offset.as_bytes()),
            });
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).headers(headers);
        if let Some(k) = &letter.key {
            record = record.key(k.as_slice());
        }
        if let Some(p) = &letter.payload {
            record = record.payload(p.as_slice());
        }
        match producer.send(record, Duration::from_secs(5)).await {
            Ok(_) => return,
            Err((e, _)) => {
                tracing::warn!(
                    error = %e,
                    source_topic = %letter.source_topic,
                    partition = letter.partition,
                    offset = letter.offset,
                    "dead letter not acknowledged; retrying"
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}
