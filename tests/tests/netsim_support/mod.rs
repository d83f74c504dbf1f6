//! Shared by the netsim's test binaries: the authorizer's own link and pipeline, in-process,
//! dialling a netsim on loopback TCP, on a private SoftHSM2 token with the test keys.
//!
//! The event log acknowledges every event at once (no broker): acceptable only in these
//! in-process harnesses, which test the simulator and the link, not the Kafka path.
//!
//! Must never: be used as a model of the daemon's wiring (the daemon publishes to Kafka before
//! it answers); use a key that is not a test key.
#![allow(dead_code)]

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use authorizer::kafka::{Delivery, Outbound};
use authorizer::link::connection::{LinkConfig, RequestHandler, run};
use authorizer::link::session::SessionConfig;
use authorizer::link::status::LinkStatus;
use authorizer::pipeline::{EventLog, LedgerHandle, Pipeline, PipelineConfig, PublishFuture};
use bytes::Bytes;
use hsm::pkcs11::Pkcs11Verifier;
use hsm::testing::{TestToken, test_key_sets};
use iso8583::{Dialect, Message};
use ledger::decide::DecideConfig;
use ledger::{LedgerConfig, PanKey, Source, State};
use systests::netsim::Population;
use systests::now_unix_s;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub const PAN_KEY: [u8; 32] = [0x5a; 32];
pub const HANG: Duration = Duration::from_secs(60);

/// Every event durable at once (in-process harness only).
struct AckAtOnce(AtomicI64);

impl EventLog for AckAtOnce {
    fn publish(&self, _event: Outbound, _budget: Duration) -> PublishFuture {
        let offset = self.0.fetch_add(1, Ordering::Relaxed);
        Box::pin(async move {
            Ok(Delivery::Acked {
                partition: 0,
                offset,
            })
        })
    }
}

struct Handler(Pipeline);

impl RequestHandler for Handler {
    fn handle(&self, request: Message) -> impl Future<Output = Option<Bytes>> + Send {
        self.0.handle(request)
    }
}

pub struct Authorizer {
    stop: watch::Sender<bool>,
    link: JoinHandle<()>,
    ledger: LedgerHandle,
    _token: TestToken,
}

/// The state the cloud's events of `pop` make.
pub fn state_of(pop: &Population) -> State {
    let mut state = State::new(LedgerConfig::default());
    for (_, json) in pop.cloud_events(&PanKey(PAN_KEY), now_unix_s() - 60) {
        state
            .apply_json(Source::AccountUpdates, &json)
            .expect("the simulated cloud speaks the contract");
    }
    state
}

/// The authorizer's link and pipeline on `state`, dialling `address` in `dialect` (echo after
/// 1 s idle, a short backoff).
pub fn start_authorizer(address: String, dialect: Dialect, state: State) -> Authorizer {
    let token = TestToken::with_test_keys();
    let verifier = Pkcs11Verifier::new(token.config(test_key_sets())).expect("HSM verifier");
    let mut config = PipelineConfig::new(
        dialect.clone(),
        PanKey(PAN_KEY),
        DecideConfig::new("netsim-test"),
    );
    config.hsm_budget = Duration::from_secs(5);
    config.answer_budget = Duration::from_secs(20);
    let (pipeline, ledger) = Pipeline::start(
        state,
        config,
        Arc::new(verifier),
        Arc::new(AckAtOnce(AtomicI64::new(0))),
    );
    let mut session = SessionConfig::new(&dialect, "4242");
    session.echo_idle = Duration::from_secs(1);
    let mut link = LinkConfig::new(address.clone(), Arc::new(dialect), session);
    link.backoff_base = Duration::from_millis(5);
    link.backoff_max = Duration::from_millis(100);
    let (stop, stop_rx) = watch::channel(false);
    let status = Arc::new(LinkStatus::new(address));
    let handler = Arc::new(Handler(pipeline));
    let link = tokio::spawn(async move {
        run(link, handler, status, stop_rx)
            .await
            .expect("the session configuration is valid")
    });
    Authorizer {
        stop,
        link,
        ledger,
        _token: token,
    }
}

impl Authorizer {
    /// Stops the link (it signs off) and the ledger thread.
    pub async fn stop(self) {
        self.stop.send(true).expect("the link listens");
        tokio::time::timeout(HANG, self.link)
            .await
            .expect("the link stops")
            .expect("the link task ends cleanly");
        drop(self.ledger.stop());
    }
}
