//! [`RecordBatch`]: a batch of log records with their events already parsed, so that the JSON
//! is read on the consumer's thread and the single ledger thread only applies.
//!
//! Parsing is a pure function of the payload and costs about as much as applying (see
//! `docs/ledger.md`); doing it before the queue roughly doubles how many events per second the
//! ledger thread can apply. The events borrow their text from the payloads (no copy): the batch
//! owns both, and hands out the events only for as long as it is borrowed.
//!
//! A batch made with [`RecordBatch::parse_returning`] goes back to the thread that allocated it
//! when it is dropped, and is freed there: freeing a thousand payloads on the ledger thread that
//! another thread allocated cost the ledger thread about a third of its time (glibc's arenas).
//!
//! Never: let a payload change or go while an event borrows it (`self_cell` owns both, gives out
//! the records only as `&`, and drops the events first; no `unsafe` in this module).

use std::sync::mpsc::Sender;

use ledger::{Event, EventError};
use self_cell::self_cell;

use super::consumer::LogRecord;

/// `events[i]` is what `records[i]`'s payload parsed to (`None`: no payload).
type Events<'a> = Vec<Option<Result<Event<'a>, EventError>>>;

self_cell!(
    /// The records (the owner) and the events that borrow their payloads (the dependent):
    /// `self_cell` keeps the payloads in place and drops the events first, without `unsafe` here.
    struct Parsed {
        owner: Vec<LogRecord>,
        #[covariant]
        dependent: Events,
    }
);

/// Log records and the event parsed from each one's payload.
pub struct RecordBatch {
    /// Always `Some` but while being dropped (taken to be sent home).
    parsed: Option<Parsed>,
    /// Where the batch goes when dropped (the thread that allocated it), if anywhere.
    home: Option<Sender<RecordBatch>>,
}

impl RecordBatch {
    /// Parses every record's payload (a bad one is kept as its [`EventError`]).
    pub fn parse(records: Vec<LogRecord>) -> RecordBatch {
        RecordBatch::parse_returning(records, None)
    }

    /// [`RecordBatch::parse`], and when dropped the batch is sent to `home` (the caller's thread
    /// receives and drops it there); freed where dropped if `home` is gone.
    pub fn parse_returning(
        records: Vec<LogRecord>,
        home: Option<Sender<RecordBatch>>,
    ) -> RecordBatch {
        let parsed = Parsed::new(records, |records| {
            records
                .iter()
                .map(|record| {
                    let payload = record.payload.as_deref()?;
                    Some(Event::parse(record.source, payload))
                })
                .collect()
        });
        RecordBatch {
            parsed: Some(parsed),
            home,
        }
    }

    fn parsed(&self) -> &Parsed {
        self.parsed.as_ref().expect("a live batch has its records")
    }

    pub fn len(&self) -> usize {
        self.records().len()
    }

    pub fn is_empty(&self) -> bool {
        self.records().is_empty()
    }

    pub fn records(&self) -> &[LogRecord] {
        self.parsed().borrow_owner()
    }

    /// Each record with its parsed event (`None`: no payload).
    pub fn iter(
        &self,
    ) -> impl ExactSizeIterator<Item = (&LogRecord, Option<&Result<Event<'_>, EventError>>)> {
        let parsed = self.parsed();
        parsed
            .borrow_owner()
            .iter()
            .zip(parsed.borrow_dependent().iter().map(Option::as_ref))
    }

    /// The events that parsed, in order.
    pub fn events(&self) -> impl Iterator<Item = &Event<'_>> + Clone {
        self.parsed()
            .borrow_dependent()
            .iter()
            .filter_map(|event| event.as_ref().and_then(|e| e.as_ref().ok()))
    }

    /// The records back, once no event borrows them.
    pub fn into_records(mut self) -> Vec<LogRecord> {
        self.home = None;
        self.parsed
            .take()
            .map(Parsed::into_owner)
            .unwrap_or_default()
    }
}

impl Drop for RecordBatch {
    fn drop(&mut self) {
        if let Some(home) = self.home.take() {
            // The same buffers, moved (the cell's heap block does not move); if `home` is gone
            // the batch comes back and is freed here.
            let _ = home.send(RecordBatch {
                parsed: self.parsed.take(),
                home: None,
            });
        }
    }
}

impl std::fmt::Debug for RecordBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the payloads (see the module rules of `kafka`).
        f.debug_struct("RecordBatch")
            .field(
                "records",
                &self.parsed.as_ref().map_or(0, |p| p.borrow_owner().len()),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger::Source;

    fn record(offset: i64, payload: Option<&str>) -> LogRecord {
        LogRecord {
            source: Source::AccountUpdates,
            partition: 0,
            offset,
            key: None,
            payload: payload.map(|p| p.as_bytes().to_vec()),
        }
    }

    const ACCOUNT: &str = r#"{"schema":1,"type":"account.upserted","event_id":"e1","at":"2026-11-22T10:00:00Z","account_id":"acc-1","version":1,"status":"open","currency":"986","credit_limit":100000,"posted_balance":0,"cleared_holds":[]}"#;

    #[test]
    fn events_survive_the_batch_moving_and_match_a_fresh_parse() {
        let batch = RecordBatch::parse(vec![
            record(0, Some(ACCOUNT)),
            record(1, None),
            record(2, Some("{not json")),
        ]);
        // Move it across a thread, as the consumer does.
        let batch = std::thread::spawn(move || batch).join().unwrap();
        let items: Vec<_> = batch.iter().collect();
        assert_eq!(items.len(), 3);
        let fresh = Event::parse(Source::AccountUpdates, ACCOUNT.as_bytes()).unwrap();
        assert_eq!(items[0].1, Some(&Ok(fresh)));
        assert_eq!(items[0].1.unwrap().as_ref().unwrap().account_id(), "acc-1");
        assert!(items[1].1.is_none());
        assert!(matches!(items[2].1, Some(Err(EventError::Json { .. }))));
        assert_eq!(batch.events().count(), 1);
        let records = batch.into_records();
        assert_eq!(records[0].payload.as_deref(), Some(ACCOUNT.as_bytes()));
    }

    #[test]
    fn a_dropped_batch_goes_home_with_its_events_intact() {
        let (home, spent) = std::sync::mpsc::channel();
        let batch = RecordBatch::parse_returning(vec![record(7, Some(ACCOUNT))], Some(home));
        // Applied and dropped on another thread, as the ledger thread does.
        std::thread::spawn(move || {
            assert_eq!(batch.events().count(), 1);
            drop(batch);
        })
        .join()
        .unwrap();
        let back = spent.try_recv().expect("the batch came home");
        assert_eq!(back.records()[0].offset, 7);
        assert_eq!(back.events().next().unwrap().account_id(), "acc-1");
        drop(back); // `home: None` now: freed here, not sent again
        assert!(spent.try_recv().is_err());
        // With its home gone, a batch is simply freed where it is dropped.
        let (home, spent) = std::sync::mpsc::channel();
        drop(spent);
        drop(RecordBatch::parse_returning(
            vec![record(8, Some(ACCOUNT))],
            Some(home),
        ));
    }
}
