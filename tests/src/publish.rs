//! The cloud's side of a simulated population: its `account.upserted` and `card.upserted`
//! events produced to `account-updates` as the bank's cloud does (key = account id, acks=all,
//! idempotent, flushed before returning), and the shared `pan_key` read from its file.
//!
//! Must never: print a key or a PAN (events carry only the PAN's keyed hash and last four
//! digits); return before every event is acknowledged by the broker.

use std::time::Duration;

use authorizer::kafka::{KafkaConfig, ensure_topic};
use ledger::PanKey;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

/// Reads a `pan_key` file: 64 hex characters (surrounding whitespace ignored), the 32 bytes
/// the cloud and the authorizers share.
pub fn read_pan_key(path: &std::path::Path) -> Result<PanKey, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let bytes = hex::decode(text.trim())
        .map_err(|_| format!("{}: not 64 hex characters", path.display()))?;
    let key: [u8; 32] = bytes
        .try_into()
        .map_err(|_| format!("{}: not 64 hex characters", path.display()))?;
    Ok(PanKey(key))
}

/// Creates `topic` if it is missing (4 partitions) and produces `events` (key, JSON value) to
/// it; returns once the broker acknowledged all of them.
pub async fn publish_events(
    brokers: &str,
    topic: &str,
    events: &[(String, Vec<u8>)],
) -> Result<usize, String> {
    let kafka = KafkaConfig::new(brokers);
    ensure_topic(&kafka, topic, 4)
        .await
        .map_err(|e| format!("create {topic}: {e}"))?;
    let producer: BaseProducer = kafka
        .client_config()
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "20")
        .create()
        .map_err(|e| format!("producer: {e}"))?;
    let events = events.to_vec();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        for (key, value) in &events {
            let mut record = BaseRecord::to(&topic)
                .key(key.as_str())
                .payload(value.as_slice());
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((_, r)) => {
                        record = r;
                        producer.poll(Duration::from_millis(50));
                    }
                }
            }
        }
        producer
            .flush(Duration::from_secs(120))
            .map_err(|e| format!("flush: {e}"))?;
        Ok(events.len())
    })
    .await
    .map_err(|e| format!("producer task: {e}"))?
}
