//! [`ParsePool`]: the consumer's batches parsed on several threads, delivered in order.
//!
//! Parsing an event's JSON costs more than applying it (see `docs/ledger.md`): one thread that
//! copies and parses every record caps how fast the ledger catches up with the log, while the
//! ledger thread waits. The pool spreads the parsing over `threads` threads and hands the
//! parsed batches to the ledger's queue in exactly the order they were submitted:
//!
//! * batch number `n` goes to worker `n % threads`, whose input is a FIFO, so each worker sees
//!   its batches in increasing order;
//! * a worker sends batch `n` only when it is `n`'s turn (a counter under a mutex, advanced
//!   after each send), so the queue receives `0, 1, 2, …` whatever order the parsing ends in.
//!
//! Backpressure is unchanged: a worker whose turn it is waits for room in the ledger's queue,
//! the other workers wait for their turn, their inputs (one batch each) fill, and
//! [`ParsePool::try_submit`] reports the pool full to the consumer, which stops polling and
//! pauses as it did with the queue itself.
//!
//! Never: reorder, drop or duplicate a batch; block forever once told to stop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::LogError;
use super::batch::RecordBatch;
use super::consumer::{Consumed, LogRecord};

/// How long a worker sleeps between attempts while the ledger's queue is full, and at most
/// between checks of the stop flag while it waits for its turn.
const RETRY: Duration = Duration::from_millis(1);

/// What the consumer hands to the pool, in log order.
pub enum Job {
    /// Records to parse.
    Records(Vec<LogRecord>),
    /// The consumer failed: delivered after every batch submitted before it.
    Failed(LogError),
}

/// Parsing threads between the consumer and the ledger's queue (see the module docs).
pub struct ParsePool {
    inputs: Vec<SyncSender<(u64, Job)>>,
    /// The number of the next batch submitted.
    next: u64,
    /// Set when the pool is dropped: the workers stop waiting.
    dropped: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
}

/// When a worker stops waiting (for its turn, or for room in the ledger's queue).
struct Stop {
    /// The caller's (the consumer's stop flag).
    caller: Arc<AtomicBool>,
    /// The pool's, set when it is dropped.
    dropped: Arc<AtomicBool>,
}

impl Stop {
    fn now(&self) -> bool {
        self.caller.load(Ordering::Acquire) || self.dropped.load(Ordering::Acquire)
    }
}

/// Whose turn it is to send.
struct Turn {
    next: Mutex<u64>,
    changed: Condvar,
}

impl ParsePool {
    /// Starts `threads` (at least 1) parsing threads that send to `queue`. Spent batches are
    /// sent to `home` (the submitting thread, which allocated their records) to be freed there.
    /// Once `stop` is set (or the pool dropped) the workers stop waiting and drop what they
    /// have not delivered.
    pub fn start<T: From<Consumed> + Send + 'static>(
        threads: usize,
        queue: SyncSender<T>,
        home: Sender<RecordBatch>,
        stop: Arc<AtomicBool>,
    ) -> std::io::Result<ParsePool> {
        let dropped = Arc::new(AtomicBool::new(false));
        let turn = Arc::new(Turn {
            next: Mutex::new(0),
            changed: Condvar::new(),
        });
        let mut inputs = Vec::new();
        let mut workers = Vec::new();
        for i in 0..threads.max(1) {
            let (input, jobs) = mpsc::sync_channel(1);
            let (queue, home, turn) = (queue.clone(), home.clone(), turn.clone());
            let worker_stop = Stop {
                caller: stop.clone(),
                dropped: dropped.clone(),
            };
            let worker = std::thread::Builder::new()
                .name(format!("log-parse-{i}"))
                .spawn(move || work(jobs, &queue, &home, &worker_stop, &turn));
            match worker {
                Ok(worker) => workers.push(worker),
                Err(e) => {
                    // Stop the ones started (their inputs close when `inputs` drops).
                    dropped.store(true, Ordering::Release);
                    return Err(e);
                }
            }
            inputs.push(input);
        }
        Ok(ParsePool {
            inputs,
            next: 0,
            dropped,
            workers,
        })
    }

    /// Hands a job to its worker, or gives it back if that worker is still busy with its last
    /// one (the ledger is behind) or gone (`Disconnected`: the ledger's queue is closed).
    pub fn try_submit(&mut self, job: Job) -> Result<(), TrySendError<Job>> {
        let worker = (self.next % self.inputs.len() as u64) as usize;
        match self.inputs[worker].try_send((self.next, job)) {
            Ok(()) => {
                self.next += 1;
                Ok(())
            }
            Err(TrySendError::Full((_, job))) => Err(TrySendError::Full(job)),
            Err(TrySendError::Disconnected((_, job))) => Err(TrySendError::Disconnected(job)),
        }
    }

    /// Delivers every job submitted, then returns (waits for the ledger's queue to take them,
    /// unless `stop` is set).
    pub fn finish(mut self) {
        self.inputs.clear();
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

impl Drop for ParsePool {
    /// Stops the workers without waiting for room in the ledger's queue: jobs not yet sent are
    /// dropped (the consumer is stopping; what it did not deliver is read again from the log).
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::Release);
        self.inputs.clear();
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

fn work<T: From<Consumed>>(
    jobs: Receiver<(u64, Job)>,
    queue: &SyncSender<T>,
    home: &Sender<RecordBatch>,
    stop: &Stop,
    turn: &Turn,
) {
    for (number, job) in jobs {
        let mut item = T::from(match job {
            Job::Records(records) => {
                Consumed::Records(RecordBatch::parse_returning(records, Some(home.clone())))
            }
            Job::Failed(error) => Consumed::Failed(error),
        });
        {
            let mut next = turn.next.lock().unwrap_or_else(|e| e.into_inner());
            while *next != number {
                if stop.now() {
                    return;
                }
                next = turn
                    .changed
                    .wait_timeout(next, RETRY)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        }
        // Our turn: no other worker sends until the counter moves on.
        loop {
            match queue.try_send(item) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) => item = back,
                Err(TrySendError::Disconnected(_)) => return,
            }
            if stop.now() {
                return;
            }
            std::thread::sleep(RETRY);
        }
        *turn.next.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        turn.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::Source;

    fn records(first: i64, n: usize) -> Vec<LogRecord> {
        (0..n as i64)
            .map(|i| LogRecord {
                source: Source::AccountUpdates,
                partition: 0,
                offset: first + i,
                key: None,
                // Every other payload is garbage, so that batches take different times.
                payload: Some(if (first + i) % 2 == 0 {
                    format!(r#"{{"schema":1,"type":"account.upserted","event_id":"e{}","at":"2026-11-22T10:00:00Z","account_id":"acc-{}","version":1,"status":"open","currency":"986","credit_limit":100000,"posted_balance":0,"cleared_holds":[]}}"#, first + i, first + i).into_bytes()
                } else {
                    b"{not json".to_vec()
                }),
            })
            .collect()
    }

    fn offsets(inbound: &Consumed) -> Vec<i64> {
        match inbound {
            Consumed::Records(batch) => batch.records().iter().map(|r| r.offset).collect(),
            Consumed::Failed(_) => vec![-1],
        }
    }

    /// Batches of different sizes over three workers and a queue of one: delivered in order,
    /// each parsed, and the failure after them.
    #[test]
    fn batches_arrive_in_submission_order() {
        let (queue, ledger) = mpsc::sync_channel::<Consumed>(1);
        let (home, spent) = mpsc::channel();
        let mut pool = ParsePool::start(3, queue, home, Arc::default()).unwrap();
        let consumer = std::thread::spawn(move || {
            let mut first = 0i64;
            for n in (1..60).map(|k| (k * 7) % 13 + 1) {
                let mut job = Job::Records(records(first, n));
                loop {
                    match pool.try_submit(job) {
                        Ok(()) => break,
                        Err(TrySendError::Full(back)) => job = back,
                        Err(TrySendError::Disconnected(_)) => panic!("the ledger is there"),
                    }
                    std::thread::yield_now();
                }
                first += n as i64;
            }
            let mut job = Job::Failed(LogError::Consume {
                message: "test".into(),
            });
            while let Err(TrySendError::Full(back)) = pool.try_submit(job) {
                job = back;
                std::thread::yield_now();
            }
            pool.finish();
            first
        });
        let mut seen = Vec::new();
        let mut failed = false;
        for inbound in ledger {
            assert!(!failed, "nothing after the failure");
            if let Consumed::Records(batch) = &inbound {
                for ((record, event), offset) in batch.iter().zip(offsets(&inbound)) {
                    assert_eq!(record.offset, offset);
                    assert_eq!(event.unwrap().is_ok(), offset % 2 == 0);
                }
            }
            let got = offsets(&inbound);
            failed = got == [-1];
            if !failed {
                seen.extend(got);
            }
        }
        let total = consumer.join().unwrap();
        assert!(failed);
        assert_eq!(seen, (0..total).collect::<Vec<_>>());
        // Every batch came home to be freed.
        assert_eq!(spent.try_iter().count(), 59);
    }

    /// Dropping the pool while the ledger takes nothing returns (workers do not wait forever).
    #[test]
    fn dropping_the_pool_stops_workers_blocked_on_a_full_queue() {
        let (queue, ledger) = mpsc::sync_channel::<Consumed>(1);
        let (home, _spent) = mpsc::channel();
        let mut pool = ParsePool::start(2, queue, home, Arc::default()).unwrap();
        let mut submitted = 0;
        for first in 0..4 {
            if pool.try_submit(Job::Records(records(first, 1))).is_ok() {
                submitted += 1;
            }
        }
        assert!(submitted >= 2);
        drop(pool);
        // The queue held one batch, the first.
        assert_eq!(offsets(&ledger.recv().unwrap()), [0]);
    }

    /// `finish` returns once the caller's stop flag is set, though the ledger takes nothing.
    #[test]
    fn finish_returns_on_the_callers_stop() {
        let (queue, ledger) = mpsc::sync_channel::<Consumed>(1);
        let (home, _spent) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let mut pool = ParsePool::start(2, queue, home, stop.clone()).unwrap();
        for first in 0..2 {
            pool.try_submit(Job::Records(records(first, 1))).unwrap();
        }
        let finishing = std::thread::spawn(move || pool.finish());
        std::thread::sleep(Duration::from_millis(20));
        assert!(!finishing.is_finished(), "batch 1 waits for room");
        stop.store(true, Ordering::Release);
        finishing.join().unwrap();
        assert_eq!(offsets(&ledger.recv().unwrap()), [0]);
    }
}
