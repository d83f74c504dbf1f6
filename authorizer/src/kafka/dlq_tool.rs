//! The operator's dead-letter tool: `authorizer dlq list` and `authorizer dlq republish`.
//!
//! * [`read_letters`] reads the dead-letter topic (every partition, or one) up to the high
//!   watermarks seen at start, optionally only an offset range, and decodes the headers the
//!   writer ([`super::dlq`]) puts on each letter.
//! * [`list`] prints one `key=value` line per letter: where it sits in the dead-letter topic, its
//!   Kafka time, its origin and the ledger's reason. The content only on request, and then as
//!   [`shown_content`] makes it: every field whose name says PAN or track withheld, and every run
//!   of 13 or more digits masked with the project's rule (`iso8583::mask`).
//! * [`republish`] sends selected letters' original key and value back to their source topic and
//!   partition (the partition the cloud's partitioner chose, so the account's events stay in one
//!   partition), one line per letter saying what was sent. It refuses a letter whose source topic
//!   is not one of the two input topics, or that has no value (a tombstone is never an event).
//!   Sending a letter twice is harmless: the ledger applies an `event_id` once.
//!
//! Never prints a letter's content unmasked, never prints a PAN or track field's value, never
//! writes to the dead-letter topic (letters are evidence: they are neither edited nor deleted),
//! and never sends anything to a topic that is not an input topic.

use std::collections::BTreeMap;
use std::io::Write;
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use super::dlq::{
    HEADER_REASON, HEADER_SOURCE_OFFSET, HEADER_SOURCE_PARTITION, HEADER_SOURCE_TOPIC,
};
use super::{KafkaConfig, LogError, partitions_of};

/// One letter read back from the dead-letter topic. Header fields are `None` when the header is
/// missing or not what the writer writes (a letter from another writer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Letter {
    pub dlq_partition: i32,
    pub dlq_offset: i64,
    /// The record's Kafka timestamp (ms since the epoch): when the letter was written.
    pub time_ms: Option<i64>,
    pub reason: Option<String>,
    pub source_topic: Option<String>,
    pub source_partition: Option<i32>,
    pub source_offset: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
}

/// Which letters to read.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// Only this partition of the dead-letter topic.
    pub partition: Option<i32>,
    /// Only these dead-letter offsets (inclusive ranges); all when empty.
    pub offsets: Vec<RangeInclusive<i64>>,
    /// Only letters whose reason contains this text.
    pub reason_contains: Option<String>,
}

impl Selection {
    fn wants(&self, letter: &Letter) -> bool {
        let offset_ok =
            self.offsets.is_empty() || self.offsets.iter().any(|r| r.contains(&letter.dlq_offset));
        let reason_ok = self.reason_contains.as_deref().is_none_or(|needle| {
            letter
                .reason
                .as_deref()
                .is_some_and(|reason| reason.contains(needle))
        });
        offset_ok && reason_ok
    }
}

/// Parses `N,M-K,...` (dead-letter offsets, inclusive ranges).
pub fn parse_offset_ranges(text: &str) -> Result<Vec<RangeInclusive<i64>>, String> {
    let mut out = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let bad = || format!("--offsets: {item:?} is not N or N-M (example: 3,7-9)");
        let (from, to) = match item.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (item, item),
        };
        let from: i64 = from.parse().map_err(|_| bad())?;
        let to: i64 = to.parse().map_err(|_| bad())?;
        if from < 0 || to < from {
            return Err(bad());
        }
        out.push(from..=to);
    }
    if out.is_empty() {
        return Err("--offsets: no offset given (example: 3,7-9)".into());
    }
    Ok(out)
}

/// Reads the letters `selection` names, up to the high watermarks seen at start, in
/// (partition, offset) order.
pub fn read_letters(cfg: &KafkaConfig, selection: &Selection) -> Result<Vec<Letter>, LogError> {
    let topic = cfg.dead_letter_topic.as_str();
    let mut cc = cfg.client_config();
    // As the consumer: a group id for `assign` only, never joined, nothing committed.
    cc.set("group.id", format!("{}-assign-only", cfg.client_id))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "error");
    let consumer: BaseConsumer = cc
        .create()
        .map_err(LogError::kafka(cfg, "dead-letter reader"))?;
    let mut partitions = partitions_of(&consumer, cfg, topic)?;
    if let Some(p) = selection.partition {
        if !partitions.contains(&p) {
            return Err(LogError::NoPartitions {
                topic: format!("{topic} (partition {p})"),
                bootstrap: cfg.bootstrap.clone(),
            });
        }
        partitions = vec![p];
    }
    let lowest = selection.offsets.iter().map(|r| *r.start()).min();
    let highest = selection.offsets.iter().map(|r| *r.end()).max();
    let mut tpl = TopicPartitionList::new();
    // Per partition, the offset at which reading stops.
    let mut end: BTreeMap<i32, i64> = BTreeMap::new();
    for p in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, cfg.request_timeout)
            .map_err(LogError::kafka(cfg, format!("watermarks of {topic}/{p}")))?;
        let start = lowest.map_or(low, |l| l.max(low));
        let stop = highest.map_or(high, |h| (h + 1).min(high));
        if start < stop {
            tpl.add_partition_offset(topic, p, Offset::Offset(start))
                .map_err(LogError::kafka(cfg, format!("assign {topic}/{p}")))?;
            end.insert(p, stop);
        }
    }
    let mut out = Vec::new();
    if end.is_empty() {
        return Ok(out);
    }
    consumer
        .assign(&tpl)
        .map_err(LogError::kafka(cfg, format!("assign {topic}")))?;
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    let deadline = Instant::now() + cfg.request_timeout * 6;
    while next.len() < end.len() || next.iter().any(|(p, n)| *n < end[p]) {
        if Instant::now() >= deadline {
            return Err(LogError::Consume {
                message: format!(
                    "reading {topic}: the broker did not deliver every letter below the high watermarks within {:?}",
                    cfg.request_timeout * 6
                ),
            });
        }
        let Some(m) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = m.map_err(LogError::kafka(cfg, format!("reading {topic}")))?;
        let (p, offset) = (m.partition(), m.offset());
        let Some(&stop) = end.get(&p) else { continue };
        next.insert(p, offset + 1);
        if offset >= stop {
            continue;
        }
        let header = |name: &str| -> Option<String> {
            let headers = m.headers()?;
            headers
                .iter()
                .find(|h| h.key == name)
                .and_then(|h| h.value)
                .and_then(|v| std::str::from_utf8(v).ok())
                .map(str::to_owned)
        };
        let letter = Letter {
            dlq_partition: p,
            dlq_offset: offset,
            time_ms: m.timestamp().to_millis(),
            reason: header(HEADER_REASON),
            source_topic: header(HEADER_SOURCE_TOPIC),
            source_partition: header(HEADER_SOURCE_PARTITION).and_then(|v| v.parse().ok()),
            source_offset: header(HEADER_SOURCE_OFFSET).and_then(|v| v.parse().ok()),
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(<[u8]>::to_vec),
        };
        if selection.wants(&letter) {
            out.push(letter);
        }
    }
    out.sort_by_key(|l| (l.dlq_partition, l.dlq_offset));
    Ok(out)
}

/// Every run of 13 or more ASCII digits in `text` masked (first 6 and last 4 shown).
pub fn mask_digit_runs(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.len() >= iso8583::mask::SHOW_FROM_DIGITS {
            out.push_str(&iso8583::mask::masked_pan(run));
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in text.chars() {
        if c.is_ascii_digit() {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

/// Whether a JSON field name says PAN or track data (`pan`, `pan_last4`, `trace.pan_masked`,
/// `track2`, ...): its value is never shown.
fn is_card_field(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n == "pan" || n.starts_with("pan_") || n.ends_with("_pan") || n.contains("track")
}

fn withhold(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (name, v) in map.iter_mut() {
                if is_card_field(name) {
                    *v = serde_json::Value::String("<withheld>".into());
                } else {
                    withhold(v);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(withhold),
        _ => {}
    }
}

/// A letter's content as `--show-content` prints it, on one line: JSON with every PAN or track
/// field withheld, anything else as a quoted string; in both, every 13+ digit run masked.
pub fn shown_content(value: Option<&[u8]>) -> String {
    let Some(bytes) = value else {
        return "<none>".into();
    };
    let text = match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(mut json) => {
            withhold(&mut json);
            json.to_string()
        }
        Err(_) => {
            serde_json::Value::String(String::from_utf8_lossy(bytes).into_owned()).to_string()
        }
    };
    mask_digit_runs(&text)
}

fn quoted(text: Option<&str>) -> String {
    match text {
        Some(t) => format!("{:?}", mask_digit_runs(t)),
        None => "-".into(),
    }
}

fn shown<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

/// A `dlq.reason` as shown: digit runs masked in the part that may quote the event, but not in
/// the ledger's own description of what it expected (`... is invalid: expected an integer
/// 0..=999999999999999`), which is text of the code, never of the event.
fn shown_reason(reason: &str) -> String {
    const EXPECTED: &str = " is invalid: expected ";
    let shown = match reason.rfind(EXPECTED) {
        Some(at) => format!("{}{}", mask_digit_runs(&reason[..at]), &reason[at..]),
        None => mask_digit_runs(reason),
    };
    format!("{shown:?}")
}

/// One `list` line.
pub fn list_line(letter: &Letter, show_content: bool) -> String {
    let mut line = format!(
        "letter dlq_partition={} dlq_offset={} time={} source_topic={} source_partition={} source_offset={} reason={}",
        letter.dlq_partition,
        letter.dlq_offset,
        shown(letter.time_ms.map(crate::snapshots::rfc3339_ms)),
        shown(letter.source_topic.as_deref()),
        shown(letter.source_partition),
        shown(letter.source_offset),
        letter
            .reason
            .as_deref()
            .map_or_else(|| "-".into(), shown_reason),
    );
    if show_content {
        let key = letter.key.as_deref().map(String::from_utf8_lossy);
        line.push_str(&format!(
            " key={} content={}",
            quoted(key.as_deref()),
            shown_content(letter.value.as_deref())
        ));
    }
    line
}

/// `authorizer dlq list`: one line per selected letter, then `letters=N`.
pub fn list(
    cfg: &KafkaConfig,
    selection: &Selection,
    show_content: bool,
    out: &mut impl Write,
) -> Result<(), String> {
    let letters = read_letters(cfg, selection).map_err(|e| e.to_string())?;
    for letter in &letters {
        writeln!(out, "{}", list_line(letter, show_content)).map_err(|e| e.to_string())?;
    }
    writeln!(out, "letters={}", letters.len()).map_err(|e| e.to_string())
}

/// The dead-letter partition `--offsets` refers to: the one given, or the topic's only one.
pub fn republish_partition(cfg: &KafkaConfig, given: Option<i32>) -> Result<i32, String> {
    if let Some(p) = given {
        return Ok(p);
    }
    let consumer: BaseConsumer = cfg
        .client_config()
        .create()
        .map_err(|e| LogError::kafka(cfg, "dead-letter reader")(e).to_string())?;
    let partitions =
        partitions_of(&consumer, cfg, &cfg.dead_letter_topic).map_err(|e| e.to_string())?;
    match partitions.as_slice() {
        [only] => Ok(*only),
        many => Err(format!(
            "{} has {} partitions: say which one the offsets are in with --partition",
            cfg.dead_letter_topic,
            many.len()
        )),
    }
}

/// Why a letter is not sent back.
fn refusal(cfg: &KafkaConfig, letter: &Letter) -> Option<String> {
    let inputs: Vec<String> = cfg.inputs().into_iter().map(|(_, t)| t).collect();
    let Some(topic) = &letter.source_topic else {
        return Some(format!("no {HEADER_SOURCE_TOPIC} header"));
    };
    if !inputs.contains(topic) {
        return Some(format!(
            "source topic {topic} is not an input topic ({})",
            inputs.join(", ")
        ));
    }
    if letter.source_partition.is_none() {
        return Some(format!("no valid {HEADER_SOURCE_PARTITION} header"));
    }
    if letter.value.is_none() {
        return Some("no value (a tombstone is never an event)".into());
    }
    None
}

/// The `event_id` of a JSON payload, if it has one (masked like any shown text).
fn event_id(value: &[u8]) -> Option<String> {
    let json: serde_json::Value = serde_json::from_slice(value).ok()?;
    json.get("event_id")?.as_str().map(mask_digit_runs)
}

/// `authorizer dlq republish`: sends every selected letter that is not refused back to its
/// source topic and partition and prints one line per letter (`sent ...`, `refused ...`,
/// `missing ...` for a requested offset that holds no letter), then `sent=N refused=M missing=K`.
/// Returns whether every requested letter was sent.
pub fn republish(
    cfg: &KafkaConfig,
    selection: &Selection,
    out: &mut impl Write,
) -> Result<bool, String> {
    let letters = read_letters(cfg, selection).map_err(|e| e.to_string())?;
    let w = |out: &mut dyn Write, line: String| writeln!(out, "{line}").map_err(|e| e.to_string());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let producer: FutureProducer = cfg
        .client_config()
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()
        .map_err(|e| LogError::kafka(cfg, "republish producer")(e).to_string())?;
    let (mut sent, mut refused) = (0usize, 0usize);
    for letter in &letters {
        let at = format!(
            "dlq_partition={} dlq_offset={}",
            letter.dlq_partition, letter.dlq_offset
        );
        if let Some(why) = refusal(cfg, letter) {
            refused += 1;
            w(out, format!("refused {at} reason={why:?}"))?;
            continue;
        }
        let (topic, partition) = (
            letter.source_topic.as_deref().unwrap_or_default(),
            letter.source_partition.unwrap_or_default(),
        );
        let value = letter.value.as_deref().unwrap_or_default();
        let mut record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(topic).partition(partition).payload(value);
        if let Some(k) = &letter.key {
            record = record.key(k.as_slice());
        }
        let delivered = rt
            .block_on(producer.send(record, Duration::from_secs(30)))
            .map_err(|(e, _)| {
                format!(
                    "{at}: not acknowledged by {topic}/{partition}: {e}; nothing after it was sent ({sent} sent before)"
                )
            })?;
        sent += 1;
        w(
            out,
            format!(
                "sent {at} topic={topic} partition={} offset={} event_id={} key_bytes={} value_bytes={} source_offset={}",
                delivered.partition,
                delivered.offset,
                quoted(event_id(value).as_deref()),
                letter.key.as_ref().map_or(0, Vec::len),
                value.len(),
                shown(letter.source_offset),
            ),
        )?;
    }
    // Requested offsets that hold no letter (only single offsets: a range may have gaps once
    // filtered by reason, which is not an error).
    let mut missing = 0usize;
    for r in &selection.offsets {
        if r.start() == r.end()
            && !letters.iter().any(|l| l.dlq_offset == *r.start())
            && selection.reason_contains.is_none()
        {
            missing += 1;
            w(out, format!("missing dlq_offset={}", r.start()))?;
        }
    }
    w(
        out,
        format!("sent={sent} refused={refused} missing={missing}"),
    )?;
    Ok(refused == 0 && missing == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_ranges_parse_and_refuse_nonsense() {
        assert_eq!(
            parse_offset_ranges("3, 7-9,12").unwrap(),
            vec![3..=3, 7..=9, 12..=12]
        );
        for bad in ["", "x", "9-7", "-1", "3-", "1-2-3"] {
            assert!(parse_offset_ranges(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn digit_runs_of_13_or_more_are_masked_shorter_ones_kept() {
        assert_eq!(
            mask_digit_runs("pan 5413330089010434, amount 123456789012"),
            "pan 541333******0434, amount 123456789012"
        );
        assert_eq!(mask_digit_runs("5413330089012"), "541333***9012");
        assert_eq!(
            shown_reason(
                "field `account_id` = \"5413330089010434\" is invalid: expected an integer 0..=999999999999999"
            ),
            r#""field `account_id` = \"541333******0434\" is invalid: expected an integer 0..=999999999999999""#
        );
        assert_eq!(
            mask_digit_runs(";4761739001010010=2811?"),
            ";476173******0010=2811?"
        );
    }

    #[test]
    fn content_withholds_card_fields_and_masks_pans_anywhere() {
        let shown = shown_content(Some(
            br#"{"event_id":"e1","pan":"5413330089010434","trace":{"pan_masked":"5413330089010434","track2":"x"},"pan_last4":"0434","note":"card 5413330089010434"}"#,
        ));
        assert!(!shown.contains("5413330089010434"), "{shown}");
        assert!(shown.contains(r#""pan_last4":"<withheld>""#), "{shown}");
        assert!(shown.contains(r#""pan":"<withheld>""#), "{shown}");
        assert!(shown.contains(r#""track2":"<withheld>""#), "{shown}");
        assert!(shown.contains("card 541333******0434"), "{shown}");
        assert!(shown.contains(r#""event_id":"e1""#), "{shown}");
        let garbage = shown_content(Some(b"\x00\xffnot json 5413330089010434\n"));
        assert!(!garbage.contains('\n') && !garbage.contains("5413330089010434"));
        assert_eq!(shown_content(None), "<none>");
    }
}
