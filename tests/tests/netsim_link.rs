//! The netsim against the authorizer's own link and pipeline, in-process, over loopback TCP:
//! `authorizer::link::connection::run` dials the netsim's [`Device`], signs on, and hands each
//! request to an `authorizer::pipeline::Pipeline` on the real SoftHSM2 token, with the state
//! built by applying the netsim population's cloud events. Every scenario runs in both
//! dialects, then the link is stopped and the sign-off judged; a short load run must get every
//! request answered and every ARPC accepted by the cards.
//!
//! The event log here acknowledges every event at once (no broker): acceptable only in this
//! in-process harness, which tests the simulator and the link, not the Kafka path.
//! No assertion of speed: timeouts only fail a test that hangs.

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
use systests::device::{Device, SessionState};
use systests::load::{self, LoadOptions, Mix};
use systests::netsim::Population;
use systests::now_unix_s;
use systests::scenarios::{self, ScenarioOptions, Scenarios, Verdict};
use tokio::sync::watch;
use tokio::task::JoinHandle;

const PAN_KEY: [u8; 32] = [0x5a; 32];
const HANG: Duration = Duration::from_secs(60);

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

struct Authorizer {
    stop: watch::Sender<bool>,
    link: JoinHandle<()>,
    ledger: LedgerHandle,
    _token: TestToken,
}

/// The authorizer's link and pipeline for `pop`, dialling `device`.
fn start_authorizer(device: &Device, pop: &Population) -> Authorizer {
    let dialect: Dialect = (**device.dialect()).clone();
    let pan_key = PanKey(PAN_KEY);
    let mut state = State::new(LedgerConfig::default());
    for (_, json) in pop.cloud_events(&pan_key, now_unix_s() - 60) {
        state
            .apply_json(Source::AccountUpdates, &json)
            .expect("the simulated cloud speaks the contract");
    }
    let token = TestToken::with_test_keys();
    let verifier = Pkcs11Verifier::new(token.config(test_key_sets())).expect("HSM verifier");
    let mut config =
        PipelineConfig::new(dialect.clone(), pan_key, DecideConfig::new("netsim-test"));
    config.hsm_budget = Duration::from_secs(5);
    config.answer_budget = Duration::from_secs(20);
    let (pipeline, ledger) = Pipeline::start(
        state,
        config,
        Arc::new(verifier),
        Arc::new(AckAtOnce(AtomicI64::new(0))),
    );
    let address = device.local_addr().to_string();
    let mut session = SessionConfig::new(&dialect, "4242");
    session.echo_idle = Duration::from_secs(1);
    let mut link = LinkConfig::new(address.clone(), Arc::new(dialect), session);
    link.backoff_base = Duration::from_millis(5);
    link.backoff_max = Duration::from_millis(50);
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
    async fn stop(self) {
        self.stop.send(true).expect("the link listens");
        tokio::time::timeout(HANG, self.link)
            .await
            .expect("the link stops")
            .expect("the link task ends cleanly");
        drop(self.ledger.stop());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_passes_in_both_dialects_and_the_sign_off_is_seen() {
    for name in ["ascii", "mastercard"] {
        let dialect = Arc::new(Dialect::builtin(name).unwrap());
        let device = Device::bind("127.0.0.1:0", dialect).await.unwrap();
        let now = now_unix_s();
        let seed = 11;
        let (pop, _) = scenarios::population(seed, now);
        let authorizer = start_authorizer(&device, &pop);
        assert!(
            device.wait_signed_on(HANG).await,
            "{name}: the link signs on"
        );

        let mut options = ScenarioOptions::new(seed);
        options.daemon_echo_wait = Duration::from_secs(10);
        options.oversized_bytes = 5_000; // above the default max_frame_bytes, 4,096
        options.reconnect_wait = HANG;
        let outcomes = Scenarios::new(&device, options, now).run().await;
        let failed: Vec<String> = outcomes
            .iter()
            .filter(|o| !o.passed())
            .map(|o| o.line())
            .collect();
        assert!(failed.is_empty(), "{name}: {failed:#?}");
        for o in &outcomes {
            println!("{name}: {}", o.line());
        }
        assert_eq!(outcomes.len(), 38, "{name}: every case ran");
        assert!(
            device.connections() >= 2,
            "{name}: the oversized frame forced a reconnection"
        );

        let from = device.events().len();
        let stopping = tokio::spawn(authorizer.stop());
        let sign_off = scenarios::await_sign_off(&device, from, HANG).await;
        assert_eq!(
            sign_off.verdict,
            Verdict::Pass,
            "{name}: {}",
            sign_off.line()
        );
        tokio::time::timeout(HANG, stopping).await.unwrap().unwrap();
        assert_eq!(device.state(), SessionState::SignedOff);
        device.close();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_load_run_is_answered_in_full_and_the_cards_accept_every_arpc() {
    let dialect = Arc::new(Dialect::ascii());
    let device = Device::bind("127.0.0.1:0", dialect).await.unwrap();
    let seed = 3;
    let mut pop = Population::generate(seed, 500, now_unix_s());
    let authorizer = start_authorizer(&device, &pop);
    assert!(device.wait_signed_on(HANG).await, "the link signs on");
    let options = LoadOptions {
        seed,
        in_flight: 32,
        rate: None,
        duration: Duration::from_secs(3),
        mix: Mix::Realistic,
        answer_timeout: Duration::from_secs(20),
        live: false,
    };
    let (report, histogram) = load::run(&device, &mut pop, &options).await;
    println!("{}", report.text());
    assert!(report.requests > 50, "{report:?}");
    assert_eq!(report.unanswered, 0, "{report:?}");
    assert_eq!(report.not_sent, 0, "{report:?}");
    assert_eq!(report.answered, report.requests);
    assert_eq!(report.arpc_refused, 0, "{report:?}");
    assert!(
        report.arpc_ok > 0,
        "chip answers carried tag 91: {report:?}"
    );
    assert_eq!(report.repeats_different, 0, "{report:?}");
    assert!(
        report.codes.get("00").copied().unwrap_or(0) > 0,
        "{report:?}"
    );
    assert!(
        !report.codes.contains_key("91"),
        "nothing unavailable: {report:?}"
    );
    assert_eq!(histogram.len(), report.answered);
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["answered"], report.answered);
    assert!(
        json["latency_us"]["p999"].as_u64().unwrap() >= json["latency_us"]["p50"].as_u64().unwrap()
    );
    authorizer.stop().await;
    device.close();
}
