//! Test seams and helpers of `pipeline.rs`: a state with one account and card, request
//! messages, and an HSM and a log that are slow (held behind a gate the test opens), fail or
//! refuse on demand. No socket, no broker, no token.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use authorizer::kafka::{Delivery, Outbound, PublishError, Source, SpoolError};
use authorizer::pipeline::{EventLog, Pipeline, PipelineConfig, PublishFuture};
use bytes::Bytes;
use hsm::{
    ArpcStep, ArqcOutcome, AuthorisationResponse, CardData, CryptogramVerifier, EmvData, HsmError,
    IssuerAuthData, KeySetId, PendingArpc, Step,
};
use iso8583::{Dialect, Message, MessageBuilder, Mti, tlv};
use ledger::decide::{DecideConfig, Prepared};
use ledger::{HoldId, LedgerConfig, PanHash, PanKey, State, UnixSeconds};
use tokio::sync::{Semaphore, mpsc};

pub const PAN: &str = "5413330089010434";
pub const PAN_KEY: [u8; 32] = [7; 32];
pub const LIMIT: i64 = 1_000_000;

pub fn clock() -> UnixSeconds {
    ledger::time::parse_rfc3339_utc("2026-11-22T10:15:05Z").unwrap()
}

pub fn dialect() -> Dialect {
    Dialect::builtin("ascii").unwrap()
}

pub fn pan_hash() -> PanHash {
    PanHash::of_pan(&PanKey(PAN_KEY), PAN.as_bytes()).unwrap()
}

pub fn account_json(version: u64) -> Vec<u8> {
    format!(
        r#"{{"schema":1,"type":"account.upserted","event_id":"acc-v{version}","at":"2026-11-22T10:00:00Z","account_id":"acc-1","version":{version},"status":"open","currency":"986","credit_limit":{LIMIT},"posted_balance":0}}"#
    )
    .into_bytes()
}

pub fn card_json() -> Vec<u8> {
    format!(
        r#"{{"schema":1,"type":"card.upserted","event_id":"card-v1","at":"2026-11-22T10:00:00Z","account_id":"acc-1","card_id":"card-1","version":1,"pan_hash":"{}","pan_last4":"0434","expiry":"2811","psn":"01","status":"active","key_set":"mc-cvn17-1"}}"#,
        hex::encode(pan_hash().0)
    )
    .into_bytes()
}

pub fn state() -> State {
    let mut state = State::new(LedgerConfig::default());
    state
        .apply_json(Source::AccountUpdates, &account_json(1))
        .unwrap();
    state
        .apply_json(Source::AccountUpdates, &card_json())
        .unwrap();
    state
}

pub fn config() -> PipelineConfig {
    let mut c = PipelineConfig::new(dialect(), PanKey(PAN_KEY), DecideConfig::new("auth-a"));
    c.clock = clock;
    c.hsm_budget = Duration::from_millis(100);
    c.answer_budget = Duration::from_secs(10);
    c
}

/// DE 55 with every tag the ARQC check needs, consistent with the request; `atc` is the card's
/// application transaction counter (9F36), which must rise from one chip request to the next.
pub fn chip(amount: u64, atc: u16) -> Vec<u8> {
    let mut w = tlv::Writer::new();
    let bcd = |digits: &str| -> Vec<u8> {
        digits
            .as_bytes()
            .chunks(2)
            .map(|p| ((p[0] - b'0') << 4) | (p[1] - b'0'))
            .collect()
    };
    w.put(0x9F26, &[0xA1; 8]);
    w.put(0x9F02, &bcd(&format!("{amount:012}")));
    w.put(0x9F03, &[0; 6]);
    w.put(0x9F1A, &bcd("0076"));
    w.put(0x95, &[0; 5]);
    w.put(0x5F2A, &bcd("0986"));
    w.put(0x9A, &bcd("261122"));
    w.put(0x9C, &[0]);
    w.put(0x9F37, &[1, 2, 3, 4]);
    w.put(0x82, &[0x39, 0x00]);
    w.put(0x9F36, &atc.to_be_bytes());
    w.put(
        0x9F10,
        &[
            0x01, 0x10, 0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ],
    );
    w.as_bytes().to_vec()
}

pub fn builder(mti: u16, stan: u32, amount: u64) -> MessageBuilder {
    let mut b = MessageBuilder::new(Mti::from_u16(mti).unwrap());
    b.set(2, PAN)
        .set(3, "000000")
        .set(4, format!("{amount:012}"))
        .set(7, "1122101500")
        .set(11, format!("{stan:06}"))
        .set(18, "5812")
        .set(32, "12345")
        .set(37, format!("{stan:012}"))
        .set(41, "TERM0001")
        .set(49, "986");
    b
}

pub fn message(b: &MessageBuilder) -> Message {
    Message::decode(&dialect(), b.encode(&dialect()).unwrap()).unwrap()
}

pub fn authorization(stan: u32, amount: u64) -> Message {
    message(&builder(100, stan, amount))
}

/// A chip authorization whose ATC is its STAN (so that requests sent in STAN order rise).
pub fn chip_authorization(stan: u32, amount: u64) -> Message {
    let mut b = builder(100, stan, amount);
    b.set(55, chip(amount, stan as u16));
    message(&b)
}

pub fn decode(answer: &Bytes) -> Message {
    Message::decode(&dialect(), answer.clone()).unwrap()
}

pub fn code(answer: &Option<Bytes>) -> String {
    let answer = answer.as_ref().expect("an answer");
    decode(answer).text(39).unwrap().to_owned()
}

/// The hold id of an authorization with this STAN (the ledger's own derivation).
pub fn hold_of(stan: u32) -> HoldId {
    let m = authorization(stan, 1);
    let masked = authorizer::link::translate::MaskedPan::of(PAN);
    let r = authorizer::link::translate::request_from_message(
        &m,
        ledger::decide::MessageClass::Authorization,
        &PanKey(PAN_KEY),
        &masked,
    )
    .unwrap();
    Prepared::new(&r).hold_id().unwrap()
}

/// Holds and open-to-buy, read on the ledger thread.
pub async fn holds(p: &Pipeline) -> (u64, i128) {
    p.inspect(|s| {
        let account = s.card(&pan_hash()).unwrap().account();
        (s.counts().holds, s.open_to_buy(account, clock()).0)
    })
    .await
    .unwrap()
}

pub async fn hold_amount(p: &Pipeline, stan: u32) -> Option<i64> {
    let id = hold_of(stan);
    p.inspect(move |s| s.hold(&id).map(|h| h.held_at(clock()).minor()))
        .await
        .unwrap()
}

// ---- the seams --------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Hsm {
    Verify,
    Reject,
    Fail,
    /// Does not answer until the gate opens (then verifies).
    Held,
}

pub struct TestHsm {
    pub mode: Mutex<Hsm>,
    pub gate: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
    pub open: std::sync::mpsc::Sender<()>,
    pub calls: AtomicUsize,
}

impl TestHsm {
    pub fn new(mode: Hsm) -> Arc<TestHsm> {
        let (open, gate) = std::sync::mpsc::channel();
        Arc::new(TestHsm {
            mode: Mutex::new(mode),
            gate: Mutex::new(gate),
            open,
            calls: AtomicUsize::new(0),
        })
    }
}

pub struct TestArpc;

impl ArpcStep for TestArpc {
    fn arpc(self: Box<Self>, response: &AuthorisationResponse) -> Result<IssuerAuthData, HsmError> {
        Ok(IssuerAuthData::method1([0x91; 8], response.arc))
    }
}

impl CryptogramVerifier for TestHsm {
    fn verify_arqc(
        &self,
        _key_set: &KeySetId,
        _card: &CardData,
        _emv: &EmvData,
    ) -> Result<ArqcOutcome, HsmError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mode = *self.mode.lock().unwrap();
        match mode {
            Hsm::Verify => Ok(ArqcOutcome::Verified(PendingArpc::new(Box::new(TestArpc)))),
            Hsm::Reject => Ok(ArqcOutcome::Rejected),
            Hsm::Fail => Err(HsmError::Module {
                step: Step::MacFinal,
                detail: "test: the token is gone".into(),
            }),
            Hsm::Held => {
                let _ = self.gate.lock().unwrap().recv();
                Ok(ArqcOutcome::Verified(PendingArpc::new(Box::new(TestArpc))))
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Log {
    Ack,
    Spool,
    Fail,
    InDoubt,
    /// Publishes wait for a permit of the gate (then acknowledge).
    Held,
}

pub struct TestLog {
    pub mode: Mutex<Log>,
    pub gate: Arc<Semaphore>,
    pub published: Mutex<Vec<Outbound>>,
    pub done: mpsc::UnboundedSender<String>,
    pub done_rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<String>>,
}

impl TestLog {
    pub fn new(mode: Log) -> Arc<TestLog> {
        let (done, done_rx) = mpsc::unbounded_channel();
        Arc::new(TestLog {
            mode: Mutex::new(mode),
            gate: Arc::new(Semaphore::new(0)),
            published: Mutex::new(Vec::new()),
            done,
            done_rx: tokio::sync::Mutex::new(done_rx),
        })
    }

    pub fn set(&self, mode: Log) {
        *self.mode.lock().unwrap() = mode;
    }

    /// Waits until a publish has completed; its event id.
    /// (The timeout only turns a publish that never completes into a failure instead of a hang.)
    pub async fn completed(&self) -> String {
        let mut rx = self.done_rx.lock().await;
        tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .expect("the publish completes")
            .unwrap()
    }
}

pub fn spool_error() -> SpoolError {
    SpoolError::Io {
        path: PathBuf::from("/spool/authorizations.spool"),
        op: "append",
        source: std::io::Error::other("test: no space left"),
    }
}

pub struct Shared(pub Arc<TestLog>);

impl EventLog for Shared {
    fn publish(&self, event: Outbound, _budget: Duration) -> PublishFuture {
        let log = self.0.clone();
        Box::pin(async move {
            let mode = *log.mode.lock().unwrap();
            let event_id = event.event_id.clone();
            let out = match mode {
                Log::Ack => Ok(Delivery::Acked {
                    partition: 0,
                    offset: 1,
                }),
                Log::Spool => Ok(Delivery::Spooled { seq: 1 }),
                Log::Fail => Err(PublishError::Spool {
                    event_id: event_id.clone(),
                    source: spool_error(),
                }),
                Log::InDoubt => Err(PublishError::InDoubt {
                    event_id: event_id.clone(),
                    source: spool_error(),
                }),
                // A closed gate: neither Kafka nor the spool took it.
                Log::Held => match log.gate.acquire().await {
                    Ok(permit) => {
                        permit.forget();
                        Ok(Delivery::Acked {
                            partition: 0,
                            offset: 1,
                        })
                    }
                    Err(_) => Err(PublishError::Spool {
                        event_id: event_id.clone(),
                        source: spool_error(),
                    }),
                },
            };
            if out.is_ok() {
                log.published.lock().unwrap().push(event);
            }
            let _ = log.done.send(event_id);
            out
        })
    }
}

pub fn start(hsm: &Arc<TestHsm>, log: &Arc<TestLog>, config: PipelineConfig) -> Pipeline {
    let (p, ledger) = Pipeline::start(state(), config, hsm.clone(), Arc::new(Shared(log.clone())));
    // The ledger thread stops when every handle is gone; tests do not need the state back.
    std::mem::forget(ledger);
    p
}

/// An HSM like the PKCS#11 backend: a verification takes a session from a pool of `size` and its
/// pending ARPC keeps it until the ARPC is computed (or dropped). The first ARPC step waits until
/// another verification is waiting for a session, so that the worker pool is contended.
pub struct SessionPool {
    pub free: std::sync::Mutex<usize>,
    pub changed: std::sync::Condvar,
    pub waiting: AtomicUsize,
    /// The first ARPC waits for a contending verification; the others do not.
    pub contend: std::sync::atomic::AtomicBool,
}

pub struct PooledHsm {
    pub sessions: Arc<SessionPool>,
}

pub struct PooledArpc {
    pub sessions: Arc<SessionPool>,
}

pub const SAFETY: Duration = Duration::from_secs(5);

impl ArpcStep for PooledArpc {
    fn arpc(self: Box<Self>, response: &AuthorisationResponse) -> Result<IssuerAuthData, HsmError> {
        if !self.sessions.contend.swap(false, Ordering::SeqCst) {
            return Ok(IssuerAuthData::method1([0x91; 8], response.arc));
        }
        let free = self.sessions.free.lock().unwrap();
        let _ = self
            .sessions
            .changed
            .wait_timeout_while(free, SAFETY, |_| {
                self.sessions.waiting.load(Ordering::SeqCst) == 0
            })
            .unwrap();
        Ok(IssuerAuthData::method1([0x91; 8], response.arc))
    }
}

impl Drop for PooledArpc {
    fn drop(&mut self) {
        *self.sessions.free.lock().unwrap() += 1;
        self.sessions.changed.notify_all();
    }
}

impl CryptogramVerifier for PooledHsm {
    fn verify_arqc(
        &self,
        _key_set: &KeySetId,
        _card: &CardData,
        _emv: &EmvData,
    ) -> Result<ArqcOutcome, HsmError> {
        let s = &self.sessions;
        let mut free = s.free.lock().unwrap();
        if *free == 0 {
            s.waiting.fetch_add(1, Ordering::SeqCst);
            s.changed.notify_all();
            free = s
                .changed
                .wait_timeout_while(free, SAFETY, |f| *f == 0)
                .unwrap()
                .0;
            s.waiting.fetch_sub(1, Ordering::SeqCst);
            if *free == 0 {
                return Err(HsmError::Timeout {
                    waited_ms: SAFETY.as_millis() as u64,
                    pool_size: 1,
                });
            }
        }
        *free -= 1;
        Ok(ArqcOutcome::Verified(PendingArpc::new(Box::new(
            PooledArpc {
                sessions: s.clone(),
            },
        ))))
    }
}
