//! The log's feed into the pipeline: a consumer of both input topics (every partition, assign
//! mode) and a forwarding thread handing its batches to the ledger thread
//! ([`Pipeline::apply_log`]), whose wait for room in the ledger's queue is the consumer's
//! backpressure.
//!
//! Two steps, so that the applier exists before the pipeline that owns it: [`open`] assigns the
//! partitions and returns the [`Applier`] for them, [`Opened::forward`] starts feeding a
//! pipeline. Must never: apply anything itself (the ledger thread is the one writer), or skip a
//! batch (a batch it cannot hand over stops the feed, which the daemon sees as failed).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, sync_channel};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::kafka::{
    Applier, Consumed, ConsumerHandle, ConsumerOptions, DeadLetter, DeadLetters, KafkaConfig,
    LogError, LogMetrics, StartOffsets, consumer,
};
use crate::pipeline::Pipeline;

/// Batches between the consumer and the forwarding thread.
const QUEUE_BATCHES: usize = 16;

/// A consumer assigned and started, not yet feeding a pipeline.
pub struct Opened {
    handle: ConsumerHandle,
    rx: Receiver<Consumed>,
}

/// Assigns every partition of the input topics from `start`, and returns the consumer with the
/// applier for its partitions (rejected events go to `dead_letters`).
pub fn open(
    kafka: &KafkaConfig,
    start: &StartOffsets,
    dead_letters: mpsc::Sender<DeadLetter>,
    metrics: Arc<LogMetrics>,
) -> Result<(Opened, Applier), LogError> {
    let (tx, rx) = sync_channel::<Consumed>(QUEUE_BATCHES);
    let handle = consumer::spawn(
        kafka,
        &kafka.inputs(),
        start,
        &ConsumerOptions::default(),
        tx,
        metrics.clone(),
    )?;
    let applier = Applier::new(&handle, DeadLetters::Kafka(dead_letters), metrics);
    Ok((Opened { handle, rx }, applier))
}

impl Opened {
    /// Where every assigned partition starts.
    pub fn start_offsets(&self) -> crate::kafka::Offsets {
        self.handle.start_offsets.clone()
    }
}

/// A running feed.
pub struct LogFeed {
    handle: Option<ConsumerHandle>,
    stop: Arc<AtomicBool>,
    failed: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Opened {
    /// Starts the forwarding thread into `pipeline`.
    pub fn forward(self, pipeline: Pipeline) -> std::io::Result<LogFeed> {
        let stop = Arc::new(AtomicBool::new(false));
        let failed = Arc::new(AtomicBool::new(false));
        let (st, fl, rx) = (stop.clone(), failed.clone(), self.rx);
        let thread = std::thread::Builder::new()
            .name("log-feed".into())
            .spawn(move || {
                while !st.load(Ordering::Acquire) {
                    match rx.recv_timeout(Duration::from_millis(100)) {
                        Ok(Consumed::Records(batch)) => {
                            if !pipeline.apply_log(batch) {
                                fl.store(true, Ordering::Release);
                                break;
                            }
                        }
                        Ok(Consumed::Failed(e)) => {
                            tracing::error!(error = %e, "the log's consumer stopped");
                            fl.store(true, Ordering::Release);
                            break;
                        }
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => {
                            fl.store(true, Ordering::Release);
                            break;
                        }
                    }
                }
            })?;
        Ok(LogFeed {
            handle: Some(self.handle),
            stop,
            failed,
            thread: Some(thread),
        })
    }
}

impl LogFeed {
    /// The consumer stopped on an error, or the ledger thread is gone: nothing more comes.
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// Stops forwarding (after the batch being handed over, if any) and the consumer. Blocking.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        if let Some(handle) = self.handle.take() {
            handle.stop();
        }
    }
}

impl Drop for LogFeed {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}
