//! The netsim against the authorizer's own link and pipeline, in-process, over loopback TCP:
//! `authorizer::link::connection::run` dials the netsim's [`Device`], signs on, and hands each
//! request to an `authorizer::pipeline::Pipeline` on the real SoftHSM2 token, with the state
//! built by applying the netsim population's cloud events. Every scenario runs in both
//! dialects, then the link is stopped and the sign-off judged; a short load run must get every
//! request answered and every ARPC accepted by the cards.
//!
//! The event log here acknowledges every event at once (no broker): acceptable only in this
//! in-process harness (`netsim_support`), which tests the simulator and the link, not Kafka.
//!
//! Must never: assert a speed (timeouts only fail a test that hangs).

mod netsim_support;

use std::sync::Arc;
use std::time::Duration;

use iso8583::Dialect;
use netsim_support::{HANG, start_authorizer, state_of};
use systests::device::{Device, SessionState};
use systests::load::{self, LoadOptions, Mix};
use systests::netsim::Population;
use systests::now_unix_s;
use systests::scenarios::{self, ScenarioOptions, Scenarios, Verdict};

/// The harness for a device: the authorizer dials it with `pop`'s state.
fn authorizer_for(device: &Device, pop: &Population) -> netsim_support::Authorizer {
    start_authorizer(
        device.local_addr().to_string(),
        (**device.dialect()).clone(),
        state_of(pop),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_passes_in_both_dialects_and_the_sign_off_is_seen() {
    for name in ["ascii", "mastercard"] {
        let dialect = Arc::new(Dialect::builtin(name).unwrap());
        let device = Device::bind("127.0.0.1:0", dialect).await.unwrap();
        let now = now_unix_s();
        let seed = 11;
        let (pop, _) = scenarios::population(seed, now);
        let authorizer = authorizer_for(&device, &pop);
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
    let authorizer = authorizer_for(&device, &pop);
    assert!(device.wait_signed_on(HANG).await, "the link signs on");
    let mut options = LoadOptions {
        in_flight: 32,
        mix: Mix::Realistic,
        answer_timeout: Duration::from_secs(20),
        ..LoadOptions::new(seed, Duration::from_secs(3))
    };
    let (report, histogram) = load::run(&device, &mut pop, &mut options).await;
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

    // At a rate: never more requests than the pacing allows, all answered.
    let mut paced = LoadOptions {
        seed: seed + 1,
        rate: Some(100.0),
        duration: Duration::from_secs(2),
        mix: Mix::Magstripe,
        ..options
    };
    let (report, _) = load::run(&device, &mut pop, &mut paced).await;
    println!("{}", report.text());
    assert!(report.requests > 0, "{report:?}");
    assert!(
        report.requests <= (100.0 * report.seconds) as u64 + 1,
        "paced at 100/s: {report:?}"
    );
    assert_eq!(report.unanswered, 0, "{report:?}");
    assert_eq!(report.kinds.len(), 1, "magstripe only: {report:?}");
    assert!(report.kinds.contains_key("magstripe+PIN"), "{report:?}");
    authorizer.stop().await;
    device.close();
}
