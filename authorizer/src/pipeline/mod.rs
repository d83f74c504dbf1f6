//! The request pipeline: a decoded request message in, its answer out (or none), with every
//! rule of `docs/pipeline.md` between.
//!
//! ```text
//! Message ─► validate (30 + DE 44) ─► PAN hash ─► card lookup ─► HSM facts (pool, hsm_budget)
//!         ─► ledger thread decides + applies ─► publish (acks=all or spool) ─► answer (+ ARPC)
//! ```
//!
//! * [`Pipeline::start`] moves the [`State`] onto the ledger thread (`ledger_thread.rs`), the one
//!   writer, fed by a bounded queue; the log's records reach it through [`Pipeline::apply_log`].
//! * [`Pipeline::handle`] runs one request. Everything after the ledger's decision (publishing,
//!   the ARPC, encoding) runs in a spawned task, so the caller's future can be dropped or give up
//!   at `answer_budget` without ever cancelling a publish: an event decided is always published.
//! * The HSM and the log are seams (`seams.rs`); the HSM pool is `chip.rs`; counters are
//!   `counters.rs`.
//!
//! Must never: approve before the event is durable (Kafka or the spool); keep serving on a state
//! that holds a decision whose event could not be made durable (the replica is then *diverged*:
//! not ready, every request answered the unavailable code until [`Pipeline::replace_state`]);
//! queue without bound; block a tokio worker on the HSM or the ledger; answer a network
//! management message (0800 is the link session's); log a PAN.

mod chip;
mod counters;
mod ledger_thread;
mod request;
mod seams;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hsm::{AuthorisationResponse, CardData, EmvData, KeySetId};
use iso8583::{Dialect, Message, response_to};
use ledger::decide::{Cryptogram, DecideConfig, Facts, MessageClass};
use ledger::{PanKey, ResponseCode, State, UnixSeconds};
use tokio::sync::oneshot;

pub use chip::{ChipFact, HsmPool, Pending, Unavailable};
pub use counters::{Counters, Counts, CountsSnapshot, Stage};
pub use ledger_thread::{CardFacts, Settled};
pub use request::OwnedRequest;
pub use seams::{CryptogramVerifier, EventLog, PublishFuture};

use crate::kafka::{Applier, Delivery, Offsets, Outbound, RecordBatch};
use crate::link::translate::{
    MaskedPan, RequestKind, answer, classify, echo_fields, format_error_answer, icc_tags,
    request_from_message, response_mti,
};
use ledger_thread::{Command, DecideJob, Decided, Durability, LedgerThread};

/// The numbers and settings the pipeline needs (the daemon's configuration fills them).
#[derive(Clone)]
pub struct PipelineConfig {
    pub dialect: Dialect,
    pub pan_key: PanKey,
    pub decide: DecideConfig,
    /// DE 39 when the HSM, the ledger or the log cannot decide in time (default "91").
    pub unavailable_code: ResponseCode,
    /// HSM workers (blocking PKCS#11 calls at once).
    pub hsm_workers: usize,
    /// Longest wait for one HSM call, including the wait for a free worker.
    pub hsm_budget: Duration,
    /// Budget given to the log for Kafka's acknowledgement (then the spool).
    pub ack_budget: Duration,
    /// An answer later than this after the request arrived is not sent. Should exceed
    /// `hsm_budget` twice (ARQC, then ARPC) plus `ack_budget` and the spool's fsync, or answers
    /// the log spooled in time are still late.
    pub answer_budget: Duration,
    /// Commands the ledger thread's queue holds; a request that finds it full is answered
    /// the unavailable code.
    pub ledger_queue: usize,
    /// Commands the ledger thread takes per turn.
    pub ledger_batch_max: usize,
    /// The time decisions are made at.
    pub clock: fn() -> UnixSeconds,
    /// The daemon's metrics registry: answers, stage durations and HSM failures are recorded
    /// there too (`None`: the pipeline's own [`Counters`] only).
    pub metrics: Option<Arc<crate::admin::Metrics>>,
}

/// The system clock, in seconds.
pub fn system_clock() -> UnixSeconds {
    UnixSeconds(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0),
    )
}

impl PipelineConfig {
    pub fn new(dialect: Dialect, pan_key: PanKey, decide: DecideConfig) -> Self {
        PipelineConfig {
            dialect,
            pan_key,
            decide,
            unavailable_code: ResponseCode(*b"91"),
            hsm_workers: 4,
            hsm_budget: Duration::from_millis(250),
            ack_budget: Duration::from_millis(500),
            answer_budget: Duration::from_millis(1500),
            ledger_queue: 4096,
            ledger_batch_max: 256,
            clock: system_clock,
            metrics: None,
        }
    }
}

/// Readiness flags shared with the ledger thread.
pub(crate) struct Flags {
    /// The log's catch-up is done (true without an applier).
    pub(crate) log_ready: AtomicBool,
    /// A decision in the state has an event that is not durable: serve nothing until the state is
    /// replaced.
    pub(crate) diverged: AtomicBool,
    /// Commands in the ledger thread's queue (sent, not yet taken).
    pub(crate) queue_depth: AtomicUsize,
    /// Requests the ledger thread decided.
    pub(crate) decisions: AtomicU64,
}

struct Inner {
    config: PipelineConfig,
    queue: SyncSender<Command>,
    hsm: HsmPool,
    log: Arc<dyn EventLog>,
    flags: Arc<Flags>,
    counters: Counters,
}

/// The pipeline's handle. Cheap to clone.
#[derive(Clone)]
pub struct Pipeline {
    inner: Arc<Inner>,
}

/// The ledger thread, to stop it and get the state back.
pub struct LedgerHandle {
    queue: SyncSender<Command>,
    flags: Arc<Flags>,
    thread: JoinHandle<State>,
}

impl LedgerHandle {
    /// Stops the ledger thread (after what is queued before the stop) and returns the state.
    pub fn stop(self) -> State {
        let _ = send_blocking(&self.queue, &self.flags, Command::Stop);
        match self.thread.join() {
            Ok(state) => state,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

/// Why a request was answered the unavailable code.
#[derive(Clone, Copy)]
enum Why {
    HsmTimeout,
    HsmError,
    QueueFull,
    NotDurable,
    NotReady,
    Ledger,
}

impl Pipeline {
    /// Starts the ledger thread with `state`. Without an [`Applier`] the pipeline is ready at
    /// once and takes no log records; see [`Pipeline::start_with_applier`].
    pub fn start(
        state: State,
        config: PipelineConfig,
        verifier: Arc<dyn CryptogramVerifier>,
        log: Arc<dyn EventLog>,
    ) -> (Pipeline, LedgerHandle) {
        Pipeline::start_inner(state, None, config, verifier, log)
    }

    /// [`Pipeline::start`] with the [`Applier`] of the log's consumer: [`Pipeline::apply_log`]
    /// applies its batches on the ledger thread, and the pipeline is ready once it caught up.
    pub fn start_with_applier(
        state: State,
        applier: Applier,
        config: PipelineConfig,
        verifier: Arc<dyn CryptogramVerifier>,
        log: Arc<dyn EventLog>,
    ) -> (Pipeline, LedgerHandle) {
        Pipeline::start_inner(state, Some(applier), config, verifier, log)
    }

    fn start_inner(
        state: State,
        applier: Option<Applier>,
        config: PipelineConfig,
        verifier: Arc<dyn CryptogramVerifier>,
        log: Arc<dyn EventLog>,
    ) -> (Pipeline, LedgerHandle) {
        let flags = Arc::new(Flags {
            log_ready: AtomicBool::new(applier.as_ref().is_none_or(|a| a.progress().ready)),
            diverged: AtomicBool::new(false),
            queue_depth: AtomicUsize::new(0),
            decisions: AtomicU64::new(0),
        });
        let (queue, rx) = sync_channel(config.ledger_queue.max(1));
        let ledger = LedgerThread {
            state,
            decide: config.decide.clone(),
            clock: config.clock,
            applier,
            flags: flags.clone(),
            batch_max: config.ledger_batch_max.max(1),
        };
        let thread = std::thread::Builder::new()
            .name("ledger".into())
            .spawn(move || ledger.run(rx))
            .expect("the ledger thread starts");
        let hsm = HsmPool::new(verifier, config.hsm_workers, config.hsm_budget);
        let counters = Counters::exporting(config.metrics.clone());
        let pipeline = Pipeline {
            inner: Arc::new(Inner {
                config,
                queue: queue.clone(),
                hsm,
                log,
                flags,
                counters,
            }),
        };
        let flags = pipeline.inner.flags.clone();
        (
            pipeline,
            LedgerHandle {
                queue,
                flags,
                thread,
            },
        )
    }

    /// Ready to serve: caught up with the log and not diverged.
    pub fn ready(&self) -> bool {
        self.inner.flags.log_ready.load(Ordering::Acquire) && !self.diverged()
    }

    /// A decision whose event could not be made durable is in the state (see the module docs).
    pub fn diverged(&self) -> bool {
        self.inner.flags.diverged.load(Ordering::Acquire)
    }

    pub fn counters(&self) -> &Counters {
        &self.inner.counters
    }

    /// Replaces the ledger's state (one rebuilt from the durable log after a divergence), clears
    /// the divergence, and returns the old state. Queued after the commands already queued.
    ///
    /// `applier`: the applier of the consumer that feeds the new state (its offsets are the new
    /// state's: the records below them are in it). `None` keeps the current applier, which is
    /// right only if the new state holds every record below the current applier's offsets
    /// (records at or above them are applied again as they come, a no-op for those it holds).
    pub async fn replace_state(&self, state: State, applier: Option<Applier>) -> Option<State> {
        let (tx, rx) = oneshot::channel();
        let command = Command::ReplaceState {
            state: Box::new(state),
            applier,
            reply: tx,
        };
        // Blocking send: waits for room rather than drop the new state.
        self.send_blocking(command).await?;
        rx.await.ok().map(|b| *b)
    }

    /// Hands a batch of the log's records to the ledger thread, waiting for room in its queue
    /// (blocking: call it from the consumer's forwarding thread, never from a tokio worker). The
    /// wait is the consumer's backpressure. `false` if the ledger thread is gone.
    pub fn apply_log(&self, batch: RecordBatch) -> bool {
        send_blocking(
            &self.inner.queue,
            &self.inner.flags,
            Command::ApplyLog(batch),
        )
    }

    /// Requests the ledger thread has decided so far.
    pub fn decisions(&self) -> u64 {
        self.inner.flags.decisions.load(Ordering::Acquire)
    }

    /// Commands waiting in the ledger thread's queue.
    pub fn ledger_queue_depth(&self) -> usize {
        self.inner.flags.queue_depth.load(Ordering::Acquire)
    }

    /// Sends `command` from a blocking thread, waiting for room.
    async fn send_blocking(&self, command: Command) -> Option<()> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || send_blocking(&inner.queue, &inner.flags, command))
            .await
            .ok()?
            .then_some(())
    }

    /// Runs `f` on the ledger thread with the state (admin reads, tests); `None` if the ledger
    /// thread is gone.
    pub async fn inspect<R: Send + 'static>(
        &self,
        f: impl FnOnce(&State) -> R + Send + 'static,
    ) -> Option<R> {
        self.inspect_log(move |state, _| f(state)).await
    }

    /// [`Pipeline::inspect`] with the log's next offsets (the applier's; empty without one),
    /// read in the same turn of the ledger thread as the state: they belong together, as
    /// `/state` shows them.
    pub async fn inspect_log<R: Send + 'static>(
        &self,
        f: impl FnOnce(&State, Offsets) -> R + Send + 'static,
    ) -> Option<R> {
        let (tx, rx) = oneshot::channel();
        let command = Command::Inspect(Box::new(move |s, applier| {
            let offsets = applier.map(Applier::offsets).unwrap_or_default();
            let _ = tx.send(f(s, offsets));
        }));
        self.send_blocking(command).await?;
        rx.await.ok()
    }

    /// One request: its answer, or `None` when it is not the pipeline's (0800, responses) or
    /// the answer would be later than `answer_budget` (both counted).
    pub fn handle(
        &self,
        request: Message,
    ) -> impl std::future::Future<Output = Option<Bytes>> + Send + 'static {
        let pipeline = self.clone();
        async move { pipeline.run(request).await }
    }

    /// [`Pipeline::handle`] with the answer decoded again, for a link handler that takes
    /// messages (the encoded answer of [`Pipeline::handle`] saves that decode).
    pub fn handle_message(
        &self,
        request: Message,
    ) -> impl std::future::Future<Output = Option<Message>> + Send + 'static {
        let pipeline = self.clone();
        async move {
            let answer = pipeline.clone().run(request).await?;
            Message::decode(&pipeline.inner.config.dialect, answer).ok()
        }
    }

    async fn run(self, message: Message) -> Option<Bytes> {
        let started = Instant::now();
        let inner = &self.inner;
        let class = match classify(message.mti()) {
            Some(RequestKind::Decide(class)) => class,
            Some(RequestKind::NetworkManagement) | None => {
                inner.counters.add(&inner.counters.counts.not_ours);
                return None;
            }
        };
        let mti = *message.mti().as_bytes();
        let deadline = started + inner.config.answer_budget;
        let answered = self.answer(message, class, deadline).await;
        let took = started.elapsed();
        match answered {
            Some((bytes, code)) if Instant::now() <= deadline => {
                inner.counters.answered(mti, code);
                inner.counters.stage(Stage::Total, took);
                Some(bytes)
            }
            _ => {
                inner.counters.add(&inner.counters.counts.late);
                inner.counters.stage(Stage::Total, took);
                None
            }
        }
    }

    /// The answer and its DE 39; `None` when it was not ready by `deadline`.
    async fn answer(
        &self,
        message: Message,
        class: MessageClass,
        deadline: Instant,
    ) -> Option<(Bytes, [u8; 2])> {
        let inner = self.inner.clone();
        let config = &inner.config;
        let masked = MaskedPan::of(message.pan().unwrap_or(""));
        let owned = match request_from_message(&message, class, &config.pan_key, &masked) {
            Ok(request) => OwnedRequest::detach(&request, masked),
            Err(field) => {
                return format_error_answer(&config.dialect, &message, field)
                    .ok()
                    .map(|b| (b, ResponseCode::FORMAT_ERROR.0));
            }
        };
        if !self.ready() {
            return inner.unavailable(&message, Why::NotReady);
        }
        // Chip data of a card we know: the HSM's facts, within its budget.
        let mut cryptogram = Cryptogram::Absent;
        let mut pending: Option<Pending> = None;
        if let Some(tags) = icc_tags(&message) {
            let (tx, rx) = oneshot::channel();
            let lookup = Command::Lookup {
                pan_hash: owned.view().pan_hash,
                reply: tx,
            };
            if let Err(why) = inner.submit(lookup) {
                return inner.unavailable(&message, why);
            }
            let Ok(Ok(card)) = tokio::time::timeout_at(deadline.into(), rx).await else {
                return inner.unavailable(&message, Why::Ledger);
            };
            if let Some(card) = card {
                cryptogram = Cryptogram::NotVerified;
                let checkable = tags.ok().and_then(|tags| {
                    let emv = EmvData::from_tags(&tags).ok()?;
                    let data = CardData::new(message.pan()?, card.psn).ok()?;
                    Some((emv, data))
                });
                if let Some((emv, data)) = checkable {
                    let t = Instant::now();
                    let fact = inner.hsm.verify(KeySetId(card.key_set), data, emv).await;
                    inner.counters.stage(Stage::Hsm, t.elapsed());
                    match fact {
                        ChipFact::Verified(p) => {
                            inner.counters.add(&inner.counters.counts.hsm_verified);
                            cryptogram = Cryptogram::Verified;
                            pending = Some(p);
                        }
                        ChipFact::NotVerified => {
                            inner.counters.add(&inner.counters.counts.hsm_rejected);
                        }
                        ChipFact::Unavailable(Unavailable::Timeout) => {
                            return inner.unavailable(&message, Why::HsmTimeout);
                        }
                        ChipFact::Unavailable(Unavailable::Error) => {
                            return inner.unavailable(&message, Why::HsmError);
                        }
                    }
                }
            }
        }
        let (tx, rx) = oneshot::channel();
        let job = DecideJob {
            request: owned,
            facts: Facts { cryptogram },
            reply: tx,
        };
        if let Err(why) = inner.submit(Command::Decide(job)) {
            return inner.unavailable(&message, why);
        }
        // From here the decision may be in the state: finish in a task of its own, so that
        // giving up at the deadline (or being dropped) never cancels the publish.
        let (done_tx, done_rx) = oneshot::channel();
        let finisher = inner.clone();
        tokio::spawn(async move {
            let out = finisher.finish(message, rx, pending).await;
            let _ = done_tx.send(out);
        });
        match tokio::time::timeout_at(deadline.into(), done_rx).await {
            Ok(Ok(out)) => out,
            _ => None,
        }
    }
}

/// Queues `command`, waiting for room (a blocking call); `false` if the ledger thread is gone.
fn send_blocking(queue: &SyncSender<Command>, flags: &Flags, command: Command) -> bool {
    flags.queue_depth.fetch_add(1, Ordering::AcqRel);
    let sent = queue.send(command).is_ok();
    if !sent {
        flags.queue_depth.fetch_sub(1, Ordering::AcqRel);
    }
    sent
}

impl Inner {
    /// Queues `command` if there is room, never waiting.
    fn submit(&self, command: Command) -> Result<(), Why> {
        self.flags.queue_depth.fetch_add(1, Ordering::AcqRel);
        let refused = match self.queue.try_send(command) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Full(_)) => Why::QueueFull,
            Err(TrySendError::Disconnected(_)) => Why::Ledger,
        };
        self.flags.queue_depth.fetch_sub(1, Ordering::AcqRel);
        Err(refused)
    }

    /// The unavailable answer: the echo set and DE 39 = `unavailable_code`.
    fn unavailable(&self, request: &Message, why: Why) -> Option<(Bytes, [u8; 2])> {
        match why {
            Why::HsmTimeout => self.counters.hsm_error("timeout"),
            Why::HsmError => self.counters.hsm_error("error"),
            _ => {}
        }
        let c = &self.counters.counts;
        self.counters.add(match why {
            Why::HsmTimeout => &c.unavailable_hsm_timeout,
            Why::HsmError => &c.unavailable_hsm_error,
            Why::QueueFull => &c.unavailable_queue_full,
            Why::NotDurable => &c.unavailable_not_durable,
            Why::NotReady => &c.unavailable_not_ready,
            Why::Ledger => &c.unavailable_ledger,
        });
        let mti = request.mti();
        let code = self.config.unavailable_code;
        let mut b = response_to(request, response_mti(mti), echo_fields(mti));
        b.set(39, code.0);
        b.encode(&self.config.dialect)
            .ok()
            .map(|bytes| (bytes, code.0))
    }

    /// After the decision: publish its event (or wait for the first one's, for a repeat), the
    /// ARPC, the answer.
    async fn finish(
        &self,
        message: Message,
        decided: oneshot::Receiver<Decided>,
        pending: Option<Pending>,
    ) -> Option<(Bytes, [u8; 2])> {
        let queued = Instant::now();
        let Ok(decided) = decided.await else {
            return self.unavailable(&message, Why::Ledger);
        };
        self.counters.stage(Stage::Ledger, queued.elapsed());
        let Some(decision) = decided.decision else {
            return self.unavailable(&message, Why::Ledger);
        };
        let arpc = async {
            match (decision.arpc, pending) {
                (Some(input), Some(p)) => {
                    let response = AuthorisationResponse {
                        arc: input.arc,
                        csu: input.csu,
                    };
                    let tag91 = self.hsm.arpc(p, response).await;
                    if tag91.is_none() {
                        self.counters.add(&self.counters.counts.arpc_failed);
                    }
                    tag91
                }
                _ => None,
            }
        };
        let durable = async {
            match decided.durability {
                Durability::Nothing => true,
                Durability::Owner(settled) => {
                    let Some(event) = &decision.event else {
                        return true;
                    };
                    let out = Outbound {
                        key: event.account_id().to_owned(),
                        event_id: event.event_id().to_owned(),
                        payload: event.to_json(),
                    };
                    let t = Instant::now();
                    let delivery = self.log.publish(out, self.config.ack_budget).await;
                    self.counters.stage(Stage::KafkaAck, t.elapsed());
                    let c = &self.counters.counts;
                    match delivery {
                        Ok(Delivery::Acked { .. }) => self.counters.published(&c.acked, "acked"),
                        Ok(Delivery::Spooled { .. }) => {
                            self.counters.published(&c.spooled, "spooled")
                        }
                        Err(e) => {
                            self.counters.published(&c.publish_failed, "failed");
                            // The state holds a decision no one else will ever learn: stop
                            // serving from it until it is rebuilt from the durable log.
                            self.flags.diverged.store(true, Ordering::Release);
                            tracing::error!(error = %e, "event not durable: the replica diverged; answering the unavailable code until its state is rebuilt");
                            let _ = settled.send(Settled::Failed);
                            return false;
                        }
                    }
                    let _ = settled.send(Settled::Durable);
                    true
                }
                Durability::Waiter(mut first) => {
                    matches!(
                        first.wait_for(|s| *s != Settled::Pending).await.map(|s| *s),
                        Ok(Settled::Durable)
                    )
                }
            }
        };
        let (tag91, durable) = tokio::join!(arpc, durable);
        if !durable {
            return self.unavailable(&message, Why::NotDurable);
        }
        let iad = tag91.as_ref().map(|t| t.as_bytes());
        match answer(&self.config.dialect, &message, &decision, iad) {
            Ok(bytes) => Some((bytes, decision.response_code.0)),
            Err(e) => {
                tracing::error!(error = %e, "the answer does not encode");
                None
            }
        }
    }
}
