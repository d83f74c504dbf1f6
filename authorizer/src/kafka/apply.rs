//! The ledger-thread side of the consumer's queue: applies records, tracks offsets, routes rejects.
//!
//! The ledger thread owns an [`Applier`] next to the state. For each batch from the consumer it
//! applies the records of each partition in offset order, skips a record at an offset it already
//! applied (a redelivery after a pause, for example; the ledger's own `event_id` check catches
//! republished events), sends an event the ledger rejects to the dead-letter writer with the reason,
//! and advances the next offset of the partition. Those next offsets are what a snapshot records:
//! the state is exactly "every record below them, applied".
//!
//! Ready means: every partition's next offset reached the high watermark seen when the consumer
//! started; tailing continues afterwards. Readiness is one-way but for one case: a halt.
//!
//! A rejection that says nothing about the event but about this replica (the state reached a
//! capacity bound, [`Apply::halts`]) is not a dead letter: skipping the event would leave this
//! replica without a hold or an account that every other replica has. The applier **halts**
//! instead: it applies nothing more from any partition, keeps the offset of that record (so a
//! restart, once the operator has raised the bound, applies it), logs an error, sets the
//! `ledger_halted` metric, and is no longer ready.
//!
//! Never: apply a record twice at the same offset, move an offset back, skip an event because of
//! this replica's own limits, or lose a rejected event (the ledger thread waits for room in the
//! dead-letter queue rather than drop one).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use super::batch::RecordBatch;
use super::consumer::{ConsumerHandle, LogRecord};
use super::dlq::DeadLetter;
use super::metrics::LogMetrics;
use super::{Offsets, Source, TopicPartition};
use ledger::{Event, EventError};

/// What the log feeds: the ledger's state. One JSON event per record value, parsed by the
/// consumer's thread ([`RecordBatch`]).
pub trait Apply {
    /// Why an event was rejected. Its `Display` is the dead-letter reason header.
    type Rejection: fmt::Display;
    /// Starts loading what applying the batch's events will read. A hint; by default nothing.
    fn prefetch(&self, _batch: &RecordBatch) {}
    /// Applies the event of one record (`event`: what its payload parsed to). A rejected event
    /// must leave the state unchanged.
    fn apply(
        &mut self,
        record: &LogRecord,
        event: &Result<Event<'_>, EventError>,
    ) -> Result<(), Self::Rejection>;
    /// Whether a rejection is about this replica rather than the event (a capacity bound): the
    /// applier then halts instead of dead-lettering. By default no rejection halts.
    fn halts(_rejection: &Self::Rejection) -> bool {
        false
    }
}

/// Why an applier stopped applying: the record it could not apply, which stays unapplied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Halt {
    pub tp: TopicPartition,
    pub offset: i64,
    pub reason: String,
}

/// Where rejected events go.
pub enum DeadLetters {
    /// To the dead-letter writer (the daemon).
    Kafka(mpsc::Sender<DeadLetter>),
    /// Kept in memory, the first `keep_max` of them (read-only tools such as `replay`).
    Collect {
        kept: Vec<DeadLetter>,
        keep_max: usize,
    },
}

/// Counters of one applier.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub applied: u64,
    pub rejected: u64,
    pub duplicates: u64,
    pub ready: bool,
    /// The applier halted ([`Applier::halt`]): nothing more is applied.
    pub halted: bool,
}

struct Slot {
    tp: TopicPartition,
    next: i64,
    target: i64,
    dirty: bool,
}

/// Applies consumer batches to a state; see the module documentation.
pub struct Applier {
    slots: BTreeMap<(Source, i32), Slot>,
    behind: usize,
    progress: Progress,
    ready_tx: watch::Sender<bool>,
    dead_letters: DeadLetters,
    metrics: Arc<LogMetrics>,
    halt: Option<Halt>,
}

impl Applier {
    /// An applier for the partitions `consumer` was assigned, starting at its start offsets.
    pub fn new(
        consumer: &ConsumerHandle,
        dead_letters: DeadLetters,
        metrics: Arc<LogMetrics>,
    ) -> Applier {
        Applier::for_partitions(
            &consumer.topics,
            &consumer.start_offsets,
            &consumer.start_high_watermarks,
            dead_letters,
            metrics,
        )
    }

    /// An applier for the partitions of `start_offsets` (topics with sources in `topics`); ready
    /// once each reaches its entry in `high_watermarks`.
    pub fn for_partitions(
        topics: &[(Source, String)],
        start_offsets: &Offsets,
        high_watermarks: &Offsets,
        dead_letters: DeadLetters,
        metrics: Arc<LogMetrics>,
    ) -> Applier {
        let mut slots = BTreeMap::new();
        for (tp, &next) in start_offsets {
            let Some((source, _)) = topics.iter().find(|(_, t)| *t == tp.topic) else {
                continue;
            };
            let target = high_watermarks.get(tp).copied().unwrap_or(next);
            slots.insert(
                (*source, tp.partition),
                Slot {
                    tp: tp.clone(),
                    next,
                    target,
                    dirty: false,
                },
            );
        }
        let behind = slots.values().filter(|s| s.next < s.target).count();
        let (ready_tx, _) = watch::channel(behind == 0);
        Applier {
            slots,
            behind,
            progress: Progress {
                ready: behind == 0,
                ..Progress::default()
            },
            ready_tx,
            dead_letters,
            metrics,
            halt: None,
        }
    }

    /// Applies a batch from the consumer.
    pub fn apply_batch<A: Apply>(&mut self, state: &mut A, batch: &RecordBatch) {
        let before = self.progress;
        state.prefetch(batch);
        for (record, event) in batch.iter() {
            self.apply_one(state, record, event);
        }
        for slot in self.slots.values_mut().filter(|s| s.dirty) {
            slot.dirty = false;
            self.metrics.set_next_offset(&slot.tp, slot.next);
        }
        self.metrics
            .add_applied(self.progress.applied - before.applied);
        self.metrics
            .add_rejected(self.progress.rejected - before.rejected);
        self.metrics
            .add_duplicates(self.progress.duplicates - before.duplicates);
        if self.halt.is_some() {
            if self.progress.ready || !self.progress.halted {
                self.progress.ready = false;
                self.ready_tx.send_replace(false);
            }
            self.progress.halted = true;
            return;
        }
        if !self.progress.ready && self.behind == 0 {
            self.progress.ready = true;
            self.ready_tx.send_replace(true);
        }
    }

    fn apply_one<A: Apply>(
        &mut self,
        state: &mut A,
        record: &LogRecord,
        event: Option<&Result<Event<'_>, EventError>>,
    ) {
        if self.halt.is_some() {
            return;
        }
        let Some(slot) = self.slots.get_mut(&(record.source, record.partition)) else {
            tracing::error!(source = ?record.source, partition = record.partition, "record from a partition not assigned; ignored");
            return;
        };
        if record.offset < slot.next {
            self.progress.duplicates += 1;
            return;
        }
        let reason = match event {
            None => Some("record has no value (a tombstone); events are never deleted".to_owned()),
            Some(event) => match state.apply(record, event) {
                Ok(()) => None,
                Err(rejection) if A::halts(&rejection) => {
                    let halt = Halt {
                        tp: slot.tp.clone(),
                        offset: record.offset,
                        reason: rejection.to_string(),
                    };
                    tracing::error!(
                        topic = %halt.tp.topic,
                        partition = halt.tp.partition,
                        offset = halt.offset,
                        reason = %halt.reason,
                        "ledger halted: this replica cannot apply an event every replica must have; \
                         nothing more is applied until the bound is raised and the process restarted"
                    );
                    self.metrics.set_halted(true);
                    self.halt = Some(halt);
                    return;
                }
                Err(rejection) => Some(rejection.to_string()),
            },
        };
        let was_behind = slot.next < slot.target;
        slot.next = record.offset + 1;
        slot.dirty = true;
        if was_behind && slot.next >= slot.target {
            self.behind -= 1;
        }
        let Some(reason) = reason else {
            self.progress.applied += 1;
            return;
        };
        self.progress.rejected += 1;
        let source_topic = self.slots[&(record.source, record.partition)]
            .tp
            .topic
            .clone();
        let letter = DeadLetter {
            source_topic,
            partition: record.partition,
            offset: record.offset,
            key: record.key.clone(),
            payload: record.payload.clone(),
            reason,
        };
        match &mut self.dead_letters {
            DeadLetters::Kafka(tx) => {
                // Waits for room: a dead letter is never dropped. Bad events are rare; a full
                // queue means Kafka is down, and then the ledger has nothing to read anyway.
                if tx.blocking_send(letter).is_err() {
                    tracing::error!("dead-letter writer stopped; a rejected event was not written");
                }
            }
            DeadLetters::Collect { kept, keep_max } => {
                if kept.len() < *keep_max {
                    kept.push(letter);
                }
            }
        }
    }

    /// Next offset per partition: the state holds exactly the records below these.
    pub fn offsets(&self) -> Offsets {
        self.slots
            .values()
            .map(|s| (s.tp.clone(), s.next))
            .collect()
    }

    pub fn progress(&self) -> Progress {
        self.progress
    }

    /// `Some` once the applier halted: the record it could not apply (see the module doc).
    pub fn halt(&self) -> Option<&Halt> {
        self.halt.as_ref()
    }

    /// True once every partition caught up with its start high watermark.
    pub fn is_ready(&self) -> bool {
        self.progress.ready
    }

    /// Watches readiness from other threads or tasks.
    pub fn subscribe_ready(&self) -> watch::Receiver<bool> {
        self.ready_tx.subscribe()
    }

    /// The dead letters kept by [`DeadLetters::Collect`].
    pub fn into_kept_dead_letters(self) -> Vec<DeadLetter> {
        match self.dead_letters {
            DeadLetters::Collect { kept, .. } => kept,
            DeadLetters::Kafka(_) => Vec::new(),
        }
    }
}

/// The ledger is what the log feeds in the authorizer.
impl Apply for ledger::State {
    type Rejection = ledger::EventError;

    fn prefetch(&self, batch: &RecordBatch) {
        self.prefetch_events(batch.events());
    }

    fn halts(rejection: &EventError) -> bool {
        matches!(rejection, EventError::CapacityExceeded { .. })
    }

    fn apply(
        &mut self,
        _record: &LogRecord,
        event: &Result<Event<'_>, EventError>,
    ) -> Result<(), Self::Rejection> {
        match event {
            Ok(event) => ledger::State::apply(self, event).map(|_| ()),
            Err(error) => Err(error.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Applies "ok" payloads, rejects anything else; remembers what it applied.
    #[derive(Default)]
    struct Log(Vec<Vec<u8>>);

    impl Apply for Log {
        type Rejection = String;
        fn apply(
            &mut self,
            record: &LogRecord,
            _: &Result<Event<'_>, EventError>,
        ) -> Result<(), String> {
            let payload = record.payload.as_deref().unwrap_or_default();
            if payload.starts_with(b"ok") {
                self.0.push(payload.to_vec());
                Ok(())
            } else {
                Err(format!("not ok: {} bytes", payload.len()))
            }
        }
    }

    fn record(partition: i32, offset: i64, payload: Option<&[u8]>) -> LogRecord {
        LogRecord {
            source: Source::AccountUpdates,
            partition,
            offset,
            key: Some(b"acc-1".to_vec()),
            payload: payload.map(<[u8]>::to_vec),
        }
    }

    fn applier(start: i64, high: i64) -> Applier {
        let topics = vec![(Source::AccountUpdates, "updates".to_owned())];
        let tp = |p| TopicPartition::new("updates", p);
        let starts: Offsets = [(tp(0), start), (tp(1), 0)].into();
        let highs: Offsets = [(tp(0), high), (tp(1), 0)].into();
        Applier::for_partitions(
            &topics,
            &starts,
            &highs,
            DeadLetters::Collect {
                kept: Vec::new(),
                keep_max: 10,
            },
            Arc::new(LogMetrics::default()),
        )
    }

    #[test]
    fn redelivered_offsets_are_skipped_and_ready_comes_at_the_watermark() {
        let mut a = applier(5, 8);
        let mut state = Log::default();
        assert!(!a.is_ready());
        a.apply_batch(
            &mut state,
            &RecordBatch::parse(vec![record(0, 5, Some(b"ok5")), record(0, 6, Some(b"ok6"))]),
        );
        assert!(!a.is_ready());
        // A redelivery after a pause: 5 and 6 again, then 7.
        a.apply_batch(
            &mut state,
            &RecordBatch::parse(vec![
                record(0, 5, Some(b"ok5")),
                record(0, 6, Some(b"ok6")),
                record(0, 7, Some(b"ok7")),
            ]),
        );
        assert!(a.is_ready());
        assert_eq!(
            state.0,
            vec![b"ok5".to_vec(), b"ok6".to_vec(), b"ok7".to_vec()]
        );
        let p = a.progress();
        assert_eq!((p.applied, p.rejected, p.duplicates), (3, 0, 2));
        assert_eq!(a.offsets()[&TopicPartition::new("updates", 0)], 8);
        assert_eq!(a.offsets()[&TopicPartition::new("updates", 1)], 0);
    }

    #[test]
    fn rejected_and_empty_records_become_dead_letters_and_advance_the_offset() {
        let mut a = applier(0, 3);
        let mut state = Log::default();
        a.apply_batch(
            &mut state,
            &RecordBatch::parse(vec![
                record(0, 0, Some(b"garbage")),
                record(0, 1, None),
                record(0, 2, Some(b"ok")),
            ]),
        );
        assert!(a.is_ready());
        assert_eq!(a.progress().rejected, 2);
        assert_eq!(a.offsets()[&TopicPartition::new("updates", 0)], 3);
        let letters = a.into_kept_dead_letters();
        assert_eq!(letters.len(), 2);
        assert_eq!(letters[0].reason, "not ok: 7 bytes");
        assert_eq!((letters[0].partition, letters[0].offset), (0, 0));
        assert_eq!(letters[0].payload.as_deref(), Some(&b"garbage"[..]));
        assert!(
            letters[1].reason.contains("tombstone"),
            "{}",
            letters[1].reason
        );
    }

    /// A capacity bound of this replica (here: 65,535 distinct key sets) is not the event's
    /// fault: the applier halts at that record instead of skipping it.
    const KEY_SETS_MAX: usize = u16::MAX as usize;

    #[test]
    fn a_capacity_error_halts_the_ledger_and_keeps_the_offset_instead_of_skipping_the_event() {
        let cards = KEY_SETS_MAX + 1;
        let mut a = applier(0, cards as i64 + 1);
        let mut state = ledger::State::new(ledger::LedgerConfig::default());
        let card = |i: usize| {
            format!(
                r#"{{"schema":1,"type":"card.upserted","event_id":"c{i}","at":"2026-11-22T10:00:00Z","account_id":"acc-1","card_id":"card-{i}","version":1,"pan_hash":"{:064x}","pan_last4":"0010","expiry":"2811","psn":"01","status":"active","key_set":"ks-{i}"}}"#,
                i + 1
            )
        };
        let mut records: Vec<LogRecord> = (0..cards)
            .map(|i| record(0, i as i64, Some(card(i).as_bytes())))
            .collect();
        let account = br#"{"schema":1,"type":"account.upserted","event_id":"a1","at":"2026-11-22T10:00:00Z","account_id":"acc-1","version":1,"status":"open","currency":"986","credit_limit":100,"posted_balance":0}"#;
        records.push(record(0, cards as i64, Some(account)));
        a.apply_batch(&mut state, &RecordBatch::parse(records));
        let halt = a.halt().expect("halted").clone();
        assert_eq!(halt.offset, KEY_SETS_MAX as i64);
        assert!(halt.reason.contains("key set"), "{}", halt.reason);
        // Nothing after it was applied, its offset is kept, nothing was dead-lettered.
        assert_eq!(
            a.offsets()[&TopicPartition::new("updates", 0)],
            KEY_SETS_MAX as i64
        );
        assert!(
            state
                .account_by_id("acc-1")
                .is_none_or(|i| { state.account(i).status() == ledger::AccountStatus::Unknown })
        );
        let p = a.progress();
        assert!(p.halted && !p.ready);
        assert_eq!(p.rejected, 0);
        assert_eq!(a.metrics.snapshot().ledger_halted, 1);
        assert!(a.into_kept_dead_letters().is_empty());
    }

    #[test]
    fn empty_log_is_ready_at_once() {
        assert!(applier(4, 4).is_ready());
    }
}
