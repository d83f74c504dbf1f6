//! Building a state from the log: [`replay`] (up to the high watermarks, then stop) and
//! [`Follower`] (catch up, then keep tailing on a ledger thread).
//!
//! Both run the same pieces the daemon runs: the consumer thread, the bounded queue, and an
//! [`Applier`] on a ledger thread. `replay` is the `authorizer replay` operator tool and the
//! measure of replay speed; `Follower` is the daemon's ledger loop without decisions, used by the
//! snapshotter-like paths and the tests.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{RecvTimeoutError, sync_channel};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::apply::{Applier, Apply, DeadLetters, Progress};
use super::consumer::{self, Consumed, ConsumerOptions, StartOffsets};
use super::dlq::DeadLetter;
use super::metrics::LogMetrics;
use super::{KafkaConfig, LogError, Offsets, Source};

/// What to replay and how.
#[derive(Clone, Debug)]
pub struct ReplayOptions {
    pub topics: Vec<(Source, String)>,
    pub start: StartOffsets,
    /// Capacity of the queue to the ledger thread, in batches.
    pub queue_batches: usize,
    pub consumer: ConsumerOptions,
    /// Rejected events kept in the report (replay never writes dead letters).
    pub dead_letters_keep_max: usize,
}

impl ReplayOptions {
    /// Both input topics of `kafka`, from the beginning.
    pub fn from_beginning(kafka: &KafkaConfig) -> Self {
        ReplayOptions {
            topics: kafka.inputs(),
            start: StartOffsets::Beginning,
            queue_batches: 64,
            consumer: ConsumerOptions::default(),
            dead_letters_keep_max: 100,
        }
    }
}

/// The outcome of a replay.
pub struct ReplayReport<A> {
    pub state: A,
    /// Next offset per partition: the state holds exactly the records below.
    pub offsets: Offsets,
    pub progress: Progress,
    /// The first rejected events (see [`ReplayOptions::dead_letters_keep_max`]).
    pub dead_letters: Vec<DeadLetter>,
    /// From the assignment (fetching starts) to the last record applied.
    pub replay_elapsed: Duration,
    /// Including metadata, watermarks and assignment.
    pub total_elapsed: Duration,
}

impl<A> ReplayReport<A> {
    /// Records (applied, rejected) per second over `replay_elapsed`.
    pub fn records_per_s(&self) -> f64 {
        let n = (self.progress.applied + self.progress.rejected) as f64;
        n / self.replay_elapsed.as_secs_f64().max(1e-9)
    }
}

/// Applies every record of `opts.topics` below the high watermarks seen at start to `state`, on
/// the calling thread, and stops.
pub fn replay<A: Apply>(
    kafka: &KafkaConfig,
    opts: &ReplayOptions,
    mut state: A,
    metrics: Arc<LogMetrics>,
) -> Result<ReplayReport<A>, LogError> {
    let started = Instant::now();
    let (tx, rx) = sync_channel::<Consumed>(opts.queue_batches.max(1));
    let handle = consumer::spawn(
        kafka,
        &opts.topics,
        &opts.start,
        &opts.consumer,
        tx,
        metrics.clone(),
    )?;
    let mut applier = Applier::new(
        &handle,
        DeadLetters::Collect {
            kept: Vec::new(),
            keep_max: opts.dead_letters_keep_max,
        },
        metrics,
    );
    let result = loop {
        if applier.is_ready() {
            break Ok(());
        }
        match rx.recv() {
            Ok(Consumed::Records(records)) => {
                applier.apply_batch(&mut state, &records);
                if let Some(halt) = applier.halt() {
                    break Err(LogError::Halted {
                        tp: halt.tp.clone(),
                        offset: halt.offset,
                        reason: halt.reason.clone(),
                    });
                }
            }
            Ok(Consumed::Failed(e)) => break Err(e),
            Err(_) => break Err(LogError::Stopped { what: "consumer" }),
        }
    };
    let replay_elapsed = handle.assigned_at.elapsed();
    drop(rx);
    handle.stop();
    result?;
    Ok(ReplayReport {
        offsets: applier.offsets(),
        progress: applier.progress(),
        state,
        dead_letters: applier.into_kept_dead_letters(),
        replay_elapsed,
        total_elapsed: started.elapsed(),
    })
}

/// What a [`Follower`] has done so far.
#[derive(Clone, Debug, Default)]
pub struct FollowerView {
    pub progress: Progress,
    pub offsets: Offsets,
    /// Set if the consumer stopped on an error.
    pub failed: Option<String>,
}

struct Watched {
    view: Mutex<FollowerView>,
    changed: Condvar,
}

/// A read of the state queued to the ledger thread ([`Follower::with_state`]).
type Job<A> = Box<dyn FnOnce(&A, &Offsets) + Send>;

/// Reads waiting for the ledger thread; `None` once the thread is gone (a queued read is then
/// dropped, which its caller sees).
type Jobs<A> = Arc<Mutex<Option<Vec<Job<A>>>>>;

/// A ledger thread that catches up and then tails, writing rejected events to the dead-letter
/// writer. The daemon's loop, without decisions.
pub struct Follower<A> {
    watched: Arc<Watched>,
    stop: Arc<AtomicBool>,
    jobs: Jobs<A>,
    thread: Option<JoinHandle<A>>,
}

impl<A: Apply + Send + 'static> Follower<A> {
    /// Starts the consumer and the ledger thread. `dead_letters` is the queue of a running
    /// [`super::DeadLetterWriter`].
    pub fn start(
        kafka: &KafkaConfig,
        opts: &ReplayOptions,
        mut state: A,
        dead_letters: tokio::sync::mpsc::Sender<DeadLetter>,
        metrics: Arc<LogMetrics>,
    ) -> Result<Follower<A>, LogError> {
        let (tx, rx) = sync_channel::<Consumed>(opts.queue_batches.max(1));
        let handle = consumer::spawn(
            kafka,
            &opts.topics,
            &opts.start,
            &opts.consumer,
            tx,
            metrics.clone(),
        )?;
        let mut applier = Applier::new(&handle, DeadLetters::Kafka(dead_letters), metrics);
        let watched = Arc::new(Watched {
            view: Mutex::new(FollowerView {
                progress: applier.progress(),
                offsets: applier.offsets(),
                failed: None,
            }),
            changed: Condvar::new(),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let jobs: Jobs<A> = Arc::new(Mutex::new(Some(Vec::new())));
        let (w, st, js) = (watched.clone(), stop.clone(), jobs.clone());
        let thread = std::thread::Builder::new()
            .name("ledger".into())
            .spawn(move || {
                let run_jobs = |state: &A, offsets: &Offsets| {
                    let pending = std::mem::take(
                        js.lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .get_or_insert_with(Vec::new),
                    );
                    for job in pending {
                        job(state, offsets);
                    }
                };
                while !st.load(Ordering::Acquire) {
                    run_jobs(&state, &applier.offsets());
                    let failed = match rx.recv_timeout(Duration::from_millis(100)) {
                        Ok(Consumed::Records(records)) => {
                            applier.apply_batch(&mut state, &records);
                            applier.halt().map(|halt| {
                                LogError::Halted {
                                    tp: halt.tp.clone(),
                                    offset: halt.offset,
                                    reason: halt.reason.clone(),
                                }
                                .to_string()
                            })
                        }
                        Ok(Consumed::Failed(e)) => Some(e.to_string()),
                        Err(RecvTimeoutError::Timeout) => continue,
                        Err(RecvTimeoutError::Disconnected) => Some("consumer stopped".into()),
                    };
                    let mut view = w.view.lock().unwrap_or_else(|e| e.into_inner());
                    view.progress = applier.progress();
                    view.offsets = applier.offsets();
                    let stop_now = failed.is_some();
                    view.failed = failed;
                    drop(view);
                    w.changed.notify_all();
                    if stop_now {
                        break;
                    }
                }
                run_jobs(&state, &applier.offsets());
                *js.lock().unwrap_or_else(|e| e.into_inner()) = None;
                drop(rx);
                handle.stop();
                state
            })
            .map_err(|e| LogError::Consume {
                message: format!("cannot start the ledger thread: {e}"),
            })?;
        Ok(Follower {
            watched,
            stop,
            jobs,
            thread: Some(thread),
        })
    }

    /// Runs `read` on the ledger thread, between two batches, with the state and the next
    /// offset of every partition (the state holds exactly the records below them), and returns
    /// its result; `None` if the ledger thread is gone. Waits up to one poll interval (100 ms)
    /// plus the batch being applied.
    pub fn with_state<R: Send + 'static>(
        &self,
        read: impl FnOnce(&A, &Offsets) -> R + Send + 'static,
    ) -> Option<R> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        {
            let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
            jobs.as_mut()?
                .push(Box::new(move |state: &A, offsets: &Offsets| {
                    let _ = tx.send(read(state, offsets));
                }));
        }
        rx.recv().ok()
    }

    /// The current view.
    pub fn view(&self) -> FollowerView {
        self.watched
            .view
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits until `done(view)` holds or the consumer failed, for at most `timeout`; returns the
    /// last view and whether `done` held.
    pub fn wait_until(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&FollowerView) -> bool,
    ) -> (FollowerView, bool) {
        let deadline = Instant::now() + timeout;
        let mut view = self.watched.view.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if done(&view) {
                return (view.clone(), true);
            }
            let now = Instant::now();
            if view.failed.is_some() || now >= deadline {
                return (view.clone(), false);
            }
            view = self
                .watched
                .changed
                .wait_timeout(view, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Stops the ledger thread and the consumer, and returns the state.
    pub fn stop(mut self) -> A {
        self.stop.store(true, Ordering::Release);
        let thread = self.thread.take();
        match thread.map(JoinHandle::join) {
            Some(Ok(state)) => state,
            // The thread panicked: a broken invariant in the state; let it crash loudly here too.
            Some(Err(panic)) => std::panic::resume_unwind(panic),
            None => unreachable!("stop consumes the follower"),
        }
    }
}

impl<A> Drop for Follower<A> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}
