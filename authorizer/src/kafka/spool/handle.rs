//! [`SpoolHandle`]: a [`Spool`] on its own thread, where appends from many callers share one
//! fsync (group commit).
//!
//! Must never: answer an append before its group is durable, answer it with success when its
//! group failed, or list for the drainer an event that is not durable.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot, watch};

use super::{Spool, SpoolError, SpoolRecord, io_err};

/// Appends and acks taken from the queue before one fsync.
const GROUP_MAX: usize = 1024;
/// Capacity of the request queue to the spool thread.
const QUEUE_CAPACITY: usize = 4096;

enum Request {
    Append {
        topic: String,
        key: Vec<u8>,
        payload: Vec<u8>,
        held: bool,
        reply: oneshot::Sender<Result<u64, SpoolError>>,
    },
    Ack {
        seq: u64,
    },
    Release {
        seq: u64,
    },
    Pending {
        after_seq: u64,
        max: usize,
        reply: oneshot::Sender<Result<Vec<SpoolRecord>, SpoolError>>,
    },
    Barrier {
        reply: oneshot::Sender<Result<(), SpoolError>>,
    },
}

/// A [`Spool`] on its own thread: appends from many callers share one fsync (group commit).
/// Cheap to clone; the thread stops when the last handle is dropped. A broken spool keeps
/// answering, every request with [`SpoolError::Broken`].
#[derive(Clone)]
pub struct SpoolHandle {
    tx: mpsc::Sender<Request>,
    depth: Arc<AtomicU64>,
    path: PathBuf,
    /// Its sender is dropped by the thread once it has closed the spool (and released its lock).
    done: watch::Receiver<()>,
}

impl SpoolHandle {
    /// Opens the spool in `dir` and starts its thread.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<SpoolHandle, SpoolError> {
        SpoolHandle::start(Spool::open(dir, max_bytes)?)
    }

    /// Starts the thread of an open spool.
    pub fn start(mut spool: Spool) -> Result<SpoolHandle, SpoolError> {
        let depth = Arc::new(AtomicU64::new(spool.depth()));
        let (tx, mut rx) = mpsc::channel::<Request>(QUEUE_CAPACITY);
        let path = spool.path().to_path_buf();
        let thread_depth = depth.clone();
        let (done_tx, done) = watch::channel(());
        std::thread::Builder::new()
            .name("log-spool".into())
            .spawn(move || {
                let mut group = Vec::with_capacity(GROUP_MAX);
                let mut held = BTreeSet::new();
                while let Some(first) = rx.blocking_recv() {
                    group.push(first);
                    while group.len() < GROUP_MAX {
                        match rx.try_recv() {
                            Ok(r) => group.push(r),
                            Err(_) => break,
                        }
                    }
                    run_group(&mut spool, &mut held, &mut group, &thread_depth);
                }
                drop(spool);
                drop(done_tx);
            })
            .map_err(io_err(&path, "spawn spool thread"))?;
        Ok(SpoolHandle {
            tx,
            depth,
            path,
            done,
        })
    }

    /// Appends an event and returns its seq once it is on disk.
    ///
    /// `held`: a first send of this event may still be delivered by the producer, so
    /// [`SpoolHandle::pending_after`] stops before it until [`SpoolHandle::release`] (that send
    /// failed) or [`SpoolHandle::ack`] (it succeeded). Held is a memory-only mark: after a restart
    /// no first send is alive.
    pub async fn append(
        &self,
        topic: &str,
        key: &[u8],
        payload: &[u8],
        held: bool,
    ) -> Result<u64, SpoolError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::Append {
                topic: topic.to_owned(),
                key: key.to_vec(),
                payload: payload.to_vec(),
                held,
                reply,
            })
            .await
            .map_err(|_| SpoolError::Stopped)?;
        rx.await.map_err(|_| SpoolError::Stopped)?
    }

    /// Removes `seq` (Kafka acknowledged it). Durable with the next group.
    pub async fn ack(&self, seq: u64) -> Result<(), SpoolError> {
        self.tx
            .send(Request::Ack { seq })
            .await
            .map_err(|_| SpoolError::Stopped)
    }

    /// Clears the held mark of `seq`: its first send failed, the drainer may send it.
    pub async fn release(&self, seq: u64) -> Result<(), SpoolError> {
        self.tx
            .send(Request::Release { seq })
            .await
            .map_err(|_| SpoolError::Stopped)
    }

    /// Up to `max` pending events with seq greater than `after_seq`, in order, stopping before
    /// the first held one.
    pub async fn pending_after(
        &self,
        after_seq: u64,
        max: usize,
    ) -> Result<Vec<SpoolRecord>, SpoolError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::Pending {
                after_seq,
                max,
                reply,
            })
            .await
            .map_err(|_| SpoolError::Stopped)?;
        rx.await.map_err(|_| SpoolError::Stopped)?
    }

    /// Returns once every request sent before it is processed (durable, or failed and undone).
    pub async fn barrier(&self) -> Result<(), SpoolError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::Barrier { reply })
            .await
            .map_err(|_| SpoolError::Stopped)?;
        rx.await.map_err(|_| SpoolError::Stopped)?
    }

    /// Drops this handle and waits until the spool is closed (its lock released), which is once
    /// every clone is dropped too.
    pub async fn close(self) {
        let SpoolHandle { tx, mut done, .. } = self;
        drop(tx);
        while done.changed().await.is_ok() {}
    }

    /// Events not yet acknowledged by Kafka.
    pub fn depth(&self) -> u64 {
        self.depth.load(Ordering::Acquire)
    }

    /// Path of the spool file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Runs one group: buffers its appends and acks, makes them durable with one sync, then answers.
/// If the sync fails, every append of the group is answered with the failure (the spool has
/// forgotten them), and listings are taken after the outcome, so they never hold such an event.
fn run_group(
    spool: &mut Spool,
    held: &mut BTreeSet<u64>,
    group: &mut Vec<Request>,
    depth: &AtomicU64,
) {
    let mut appended = Vec::new();
    let mut barriers = Vec::new();
    let mut listings = Vec::new();
    for request in group.drain(..) {
        match request {
            Request::Append {
                topic,
                key,
                payload,
                held: is_held,
                reply,
            } => match spool.append(&topic, &key, &payload) {
                Ok(seq) => {
                    if is_held {
                        held.insert(seq);
                    }
                    appended.push((reply, seq));
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Request::Ack { seq } => {
                held.remove(&seq);
                if let Err(e) = spool.ack(seq) {
                    tracing::error!(error = %e, seq, "spool: acknowledgement not recorded");
                }
            }
            Request::Release { seq } => {
                held.remove(&seq);
            }
            Request::Pending {
                after_seq,
                max,
                reply,
            } => listings.push((after_seq, max, reply)),
            Request::Barrier { reply } => barriers.push(reply),
        }
    }
    let synced = spool.sync();
    depth.store(spool.depth(), Ordering::Release);
    for (reply, seq) in appended {
        let _ = reply.send(match &synced {
            Ok(()) => Ok(seq),
            Err(e) => {
                held.remove(&seq);
                Err(e.again())
            }
        });
    }
    for (after_seq, max, reply) in listings {
        let records = spool.usable().map(|()| {
            spool
                .pending
                .range(after_seq.saturating_add(1)..)
                .take(max)
                .take_while(|(seq, _)| !held.contains(seq))
                .map(|(_, r)| r.clone())
                .collect()
        });
        let _ = reply.send(records);
    }
    for reply in barriers {
        let _ = reply.send(spool.usable());
    }
}
