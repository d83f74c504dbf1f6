//! The demo: simulated card-network traffic through the authorizer's whole path, with live
//! figures on screen.
//!
//! What runs, for real: the ISO 8583 codec (both directions; `ascii` or any dialect), every chip
//! cryptogram verified and every ARPC computed inside a private SoftHSM2 token through PKCS#11,
//! the ledger and the decision rules, and — with `--brokers` (what `scripts/demo` does) — the
//! Kafka log on a real broker: the cloud publishes its account and card events to
//! `account-updates`, authorizer A builds its state by replaying the log, answers each request
//! only once its event is acknowledged by Kafka (or in the spool), and replica B follows the log
//! alone; at the end B's state hash must equal A's. The simulated cards check every ARPC.
//!
//! Not yet here: the TCP link to the network's interface device (the requests travel in memory)
//! and the daemon's own process; their issues come next.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use authorizer::kafka::{
    Delivery, Follower, KafkaConfig, LogMetrics, Outbound, Publisher, PublisherConfig,
    ReplayOptions, ensure_topic, replay, watermarks,
};
use authorizer::link::translate::{
    MaskedPan, RequestKind, answer, classify, echo_fields, format_error_answer, icc_tags,
    request_from_message, response_mti,
};
use bytes::Bytes;
use clap::Parser;
use hdrhistogram::Histogram;
use hsm::pkcs11::Pkcs11Verifier;
use hsm::{ArqcOutcome, AuthorisationResponse, CardData, CryptogramVerifier, EmvData, KeySetId};
use iso8583::{Dialect, Message, response_to};
use ledger::decide::{Cryptogram, DecideConfig, Facts, decide};
use ledger::{AuthorizationEvent, LedgerConfig, PanKey, Source, State, UnixSeconds};
use rdkafka::consumer::BaseConsumer;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use systests::netsim::{Population, Sent, Traffic};

#[derive(Parser)]
#[command(about = "Simulated card network traffic through the authorizer, with live figures")]
struct Args {
    /// Accounts (one card each) in the simulated population.
    #[arg(long, default_value_t = 20_000)]
    accounts: usize,
    /// Stop after this many seconds (0: run until interrupted).
    #[arg(long, default_value_t = 0)]
    seconds: u64,
    /// Dialect: `ascii`, `mastercard`, or a dialect file.
    #[arg(long, default_value = "ascii")]
    dialect: String,
    /// Seed of the traffic generator.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Kafka bootstrap servers (`host:port`). Without it, the log is left out and events are
    /// applied in memory only.
    #[arg(long)]
    brokers: Option<String>,
    /// Time budget for Kafka's acknowledgement of a decision, in milliseconds; past it the event
    /// goes to the spool and the answer goes out.
    #[arg(long, default_value_t = 500)]
    ack_budget_ms: u64,
    /// Requests in flight (waiting for Kafka) at most.
    #[arg(long, default_value_t = 256)]
    in_flight: usize,
}

fn now_unix_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A demo-only PAN key; a bank's comes from a 0600 file or a systemd credential.
const DEMO_PAN_KEY: [u8; 32] = *b"demo-pan-key-not-for-production!";

#[derive(Default)]
struct Figures {
    requests: u64,
    by_kind: BTreeMap<&'static str, u64>,
    by_code: BTreeMap<String, u64>,
    hsm_verified: u64,
    hsm_rejected: u64,
    hsm_errors: u64,
    arpc_ok: u64,
    arpc_bad: u64,
    repeats_same: u64,
    repeats_different: u64,
    events: u64,
    acked: u64,
    spooled: u64,
    publish_failed: u64,
}

struct Authorizer {
    dialect: Dialect,
    state: State,
    config: DecideConfig,
    pan_key: PanKey,
    verifier: Pkcs11Verifier,
}

impl Authorizer {
    /// One request in: the answer, and the event that must be durable before the answer goes
    /// out. The daemon's path without the socket.
    fn handle(
        &mut self,
        frame: Bytes,
        now: UnixSeconds,
        f: &mut Figures,
    ) -> (Bytes, Option<AuthorizationEvent<'static>>) {
        let message = match Message::decode(&self.dialect, frame) {
            Ok(m) => m,
            Err(e) => panic!("the simulator sent an undecodable frame: {e}"),
        };
        let class = match classify(message.mti()) {
            Some(RequestKind::Decide(class)) => class,
            Some(RequestKind::NetworkManagement) => {
                let mut b = response_to(
                    &message,
                    response_mti(message.mti()),
                    echo_fields(message.mti()),
                );
                b.set(39, "00");
                return (b.encode(&self.dialect).expect("0810"), None);
            }
            None => panic!("the simulator sent an MTI the authorizer does not answer"),
        };
        let masked = MaskedPan::of(message.pan().unwrap_or(""));
        let request = match request_from_message(&message, class, &self.pan_key, &masked) {
            Ok(r) => r,
            Err(field) => {
                let answer = format_error_answer(&self.dialect, &message, field).expect("answer");
                return (answer, None);
            }
        };
        // Chip data: verify the ARQC in the HSM when the card is ours.
        let mut pending = None;
        let mut cryptogram = Cryptogram::Absent;
        if let (Some(tags), Some(card)) = (icc_tags(&message), self.state.card(&request.pan_hash)) {
            cryptogram = Cryptogram::NotVerified;
            let key_set = KeySetId(self.state.key_set_name(card).to_owned());
            let checked = tags.ok().and_then(|tags| {
                let emv = EmvData::from_tags(&tags).ok()?;
                let card = CardData::new(message.pan()?, u16::from(card.psn().0)).ok()?;
                Some(self.verifier.verify_arqc(&key_set, &card, &emv))
            });
            match checked {
                Some(Ok(ArqcOutcome::Verified(p))) => {
                    f.hsm_verified += 1;
                    cryptogram = Cryptogram::Verified;
                    pending = Some(p);
                }
                Some(Ok(ArqcOutcome::Rejected)) => f.hsm_rejected += 1,
                Some(Err(_)) | None => f.hsm_errors += 1,
            }
        }
        let decision = decide(
            &self.state,
            &request,
            &Facts { cryptogram },
            &self.config,
            now,
        );
        if let Some(event) = &decision.event {
            // Applied at once, so the next decision sees the hold; the copy read back from Kafka
            // is a no-op (idempotent apply).
            self.state
                .apply_decided(event, decision.account)
                .expect("our own event applies");
            f.events += 1;
        }
        let tag91 = match (decision.arpc, pending) {
            (Some(input), Some(p)) => p
                .arpc(&AuthorisationResponse {
                    arc: input.arc,
                    csu: input.csu,
                })
                .ok(),
            _ => None,
        };
        let answer = answer(
            &self.dialect,
            &message,
            &decision,
            tag91.as_ref().map(|t| t.as_bytes()),
        )
        .expect("the answer encodes");
        (answer, decision.event.map(AuthorizationEvent::into_owned))
    }
}

/// A request whose answer is ready (its event durable, when it had one).
struct Done {
    sent: Sent,
    answer: Bytes,
    started: Instant,
    delivery: Option<Result<Delivery, String>>,
}

/// The Kafka side of the demo: the broker's topics, the publisher of A, replica B.
struct Log {
    rt: tokio::runtime::Runtime,
    kafka: KafkaConfig,
    publisher: Publisher,
    replica_b: Follower<State>,
    metrics_b: Arc<LogMetrics>,
    _dead_letters: tokio::sync::mpsc::Receiver<authorizer::kafka::DeadLetter>,
    _spool_dir: tempfile::TempDir,
}

fn fail(what: &str, e: impl std::fmt::Display) -> ! {
    eprintln!("demo: {what}: {e}");
    std::process::exit(1)
}

/// The cloud publishes the population to `account-updates`; returns how many events.
fn cloud_publishes(kafka: &KafkaConfig, events: &[(String, Vec<u8>)]) -> usize {
    let producer: BaseProducer = kafka
        .client_config()
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "20")
        .create()
        .unwrap_or_else(|e| fail("cloud producer", e));
    for (key, value) in events {
        let mut record = BaseRecord::to(&kafka.account_updates_topic)
            .key(key.as_str())
            .payload(value.as_slice());
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(50));
                }
            }
        }
    }
    producer
        .flush(Duration::from_secs(120))
        .unwrap_or_else(|e| fail("cloud producer flush", e));
    events.len()
}

fn main() {
    let args = Args::parse();
    let dialect = match Dialect::builtin(&args.dialect) {
        Some(d) => d,
        None => Dialect::load(&args.dialect).unwrap_or_else(|e| fail(&args.dialect, e)),
    };
    let pan_key = PanKey(DEMO_PAN_KEY);
    let start_unix = now_unix_s();

    println!("demo: private SoftHSM2 token with the public EMV test keys");
    let token = hsm::testing::TestToken::with_test_keys();
    let verifier = Pkcs11Verifier::new(token.config(hsm::testing::test_key_sets()))
        .unwrap_or_else(|e| fail("HSM", e));

    let mut pop = Population::generate(args.seed, args.accounts, start_unix);
    let events = pop.cloud_events(&pan_key, start_unix - 60);
    let (state, log) = match &args.brokers {
        None => {
            println!("demo: no --brokers: the cloud's events are applied in memory");
            let mut state = State::new(LedgerConfig::default());
            for (_, json) in &events {
                state
                    .apply_json(Source::AccountUpdates, json)
                    .expect("the simulated cloud speaks the contract");
            }
            (state, None)
        }
        Some(brokers) => {
            let (state, log) = start_log(brokers, &events);
            (state, Some(log))
        }
    };
    println!(
        "demo: authorizer A ready: {} accounts, {} cards; state hash {}",
        state.counts().accounts,
        state.counts().cards,
        state.state_hash()
    );

    let mut authorizer = Authorizer {
        dialect: dialect.clone(),
        state,
        config: DecideConfig::new("demo-a"),
        pan_key,
        verifier,
    };
    let mut traffic = Traffic::new(args.seed);
    let mut figures = Figures::default();
    let mut latency_us = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
    let tty = std::io::stdout().is_terminal();
    let (done_tx, done_rx): (Sender<Done>, Receiver<Done>) = channel();
    let mut in_flight = 0usize;
    let mut warmed = false;
    let budget = Duration::from_millis(args.ack_budget_ms);
    let started = Instant::now();
    let mut last_print = Instant::now();
    let mut last_requests = 0u64;

    let finish = |d: Done,
                  traffic: &mut Traffic,
                  pop: &Population,
                  f: &mut Figures,
                  latency_us: &mut Histogram<u64>| {
        latency_us.saturating_record(d.started.elapsed().as_micros().max(1) as u64);
        match d.delivery {
            Some(Ok(Delivery::Acked { .. })) => f.acked += 1,
            Some(Ok(Delivery::Spooled { .. })) => f.spooled += 1,
            Some(Err(_)) => f.publish_failed += 1,
            None => {}
        }
        let answer = Message::decode(&dialect, d.answer).expect("the answer decodes");
        let kind = d.sent.kind;
        let checked = traffic.observe(pop, d.sent, &answer);
        f.requests += 1;
        *f.by_kind.entry(kind.name()).or_default() += 1;
        *f.by_code
            .entry(String::from_utf8_lossy(&checked.response_code).into_owned())
            .or_default() += 1;
        match checked.arpc_ok {
            Some(true) => f.arpc_ok += 1,
            Some(false) => f.arpc_bad += 1,
            None => {}
        }
        match checked.repeat_consistent {
            Some(true) => f.repeats_same += 1,
            Some(false) => f.repeats_different += 1,
            None => {}
        }
    };

    loop {
        let now = now_unix_s();
        let sent = traffic.next(&mut pop, &dialect, now);
        let t0 = Instant::now();
        let (answer, event) = authorizer.handle(sent.frame.clone(), UnixSeconds(now), &mut figures);
        match (&log, event) {
            (Some(log), Some(event)) => {
                let out = Outbound {
                    key: event.account_id().to_owned(),
                    event_id: event.event_id().to_owned(),
                    payload: event.to_json(),
                };
                let publisher = log.publisher.clone();
                if !warmed {
                    // The producer's first send sets up the connection and the idempotent
                    // producer id (about a second on tansu): give it the time once, so the
                    // budget measures the steady state instead of spooling the first burst.
                    let delivery = log
                        .rt
                        .block_on(publisher.publish(&out, Duration::from_secs(10)))
                        .map_err(|e| e.to_string());
                    warmed = true;
                    let done = Done {
                        sent,
                        answer,
                        started: t0,
                        delivery: Some(delivery),
                    };
                    finish(done, &mut traffic, &pop, &mut figures, &mut latency_us);
                    continue;
                }
                let tx = done_tx.clone();
                in_flight += 1;
                log.rt.spawn(async move {
                    let delivery = publisher
                        .publish(&out, budget)
                        .await
                        .map_err(|e| e.to_string());
                    let _ = tx.send(Done {
                        sent,
                        answer,
                        started: t0,
                        delivery: Some(delivery),
                    });
                });
            }
            _ => finish(
                Done {
                    sent,
                    answer,
                    started: t0,
                    delivery: None,
                },
                &mut traffic,
                &pop,
                &mut figures,
                &mut latency_us,
            ),
        }
        // Answers whose events Kafka acknowledged; wait when the window is full.
        while in_flight > 0 {
            let d = if in_flight >= args.in_flight {
                done_rx.recv().ok()
            } else {
                done_rx.try_recv().ok()
            };
            let Some(d) = d else { break };
            in_flight -= 1;
            finish(d, &mut traffic, &pop, &mut figures, &mut latency_us);
        }
        if last_print.elapsed() >= Duration::from_secs(1) {
            let rate =
                (figures.requests - last_requests) as f64 / last_print.elapsed().as_secs_f64();
            let lag_b = log.as_ref().map(|l| l.metrics_b.snapshot().total_lag());
            print_figures(
                &figures,
                &latency_us,
                &authorizer.state,
                rate,
                started.elapsed(),
                lag_b,
                tty,
            );
            last_print = Instant::now();
            last_requests = figures.requests;
            if args.seconds > 0 && started.elapsed() >= Duration::from_secs(args.seconds) {
                break;
            }
        }
    }
    while in_flight > 0 {
        let d = done_rx.recv().expect("in-flight answers arrive");
        in_flight -= 1;
        finish(d, &mut traffic, &pop, &mut figures, &mut latency_us);
    }
    let mut ok = figures.arpc_bad == 0
        && figures.repeats_different == 0
        && figures.hsm_errors == 0
        && figures.publish_failed == 0;
    println!(
        "demo: {} requests; ARPCs accepted by the cards {}/{}; repeats answered identically {}/{}",
        figures.requests,
        figures.arpc_ok,
        figures.arpc_ok + figures.arpc_bad,
        figures.repeats_same,
        figures.repeats_same + figures.repeats_different,
    );
    if let Some(log) = log {
        ok &= converge(log, &authorizer.state);
    }
    println!(
        "demo: {}",
        if ok {
            "all checks passed"
        } else {
            "CHECKS FAILED"
        }
    );
    drop(token);
    if !ok {
        std::process::exit(1);
    }
}

/// Creates the topics, publishes the cloud's events, replays them into A, starts replica B and
/// the publisher.
fn start_log(brokers: &str, events: &[(String, Vec<u8>)]) -> (State, Log) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail("tokio runtime", e));
    let mut kafka = KafkaConfig::new(brokers);
    // Each run on its own topics, so a broker can be reused.
    let run = format!("demo-{}", std::process::id());
    kafka.account_updates_topic = format!("{run}.account-updates");
    kafka.authorizations_topic = format!("{run}.authorizations");
    kafka.dead_letter_topic = format!("{run}.account-updates.dlq");
    rt.block_on(async {
        for (topic, partitions) in [
            (&kafka.account_updates_topic, 4),
            (&kafka.authorizations_topic, 4),
            (&kafka.dead_letter_topic, 1),
        ] {
            ensure_topic(&kafka, topic, partitions)
                .await
                .unwrap_or_else(|e| fail("create topics", e));
        }
    });
    let t = Instant::now();
    let n = cloud_publishes(&kafka, events);
    println!(
        "demo: the cloud published {n} account and card events to {} in {} ms",
        kafka.account_updates_topic,
        t.elapsed().as_millis()
    );
    let mut a = kafka.clone();
    a.client_id = "demo-authorizer-a".into();
    let report = replay(
        &a,
        &ReplayOptions::from_beginning(&a),
        State::new(LedgerConfig::default()),
        Arc::new(LogMetrics::default()),
    )
    .unwrap_or_else(|e| fail("replay", e));
    println!(
        "demo: authorizer A replayed {} events from Kafka in {} ms",
        report.progress.applied,
        report.replay_elapsed.as_millis()
    );
    let _guard = rt.enter();
    let spool_dir = tempfile::tempdir().unwrap_or_else(|e| fail("spool dir", e));
    let publisher = Publisher::open(
        &a,
        PublisherConfig::new(spool_dir.path()),
        Arc::new(LogMetrics::default()),
    )
    .unwrap_or_else(|e| fail("publisher", e));
    let mut b = kafka.clone();
    b.client_id = "demo-replica-b".into();
    let metrics_b = Arc::new(LogMetrics::default());
    let (dlq_tx, dlq_rx) = tokio::sync::mpsc::channel(1024);
    let replica_b = Follower::start(
        &b,
        &ReplayOptions::from_beginning(&b),
        State::new(LedgerConfig::default()),
        dlq_tx,
        metrics_b.clone(),
    )
    .unwrap_or_else(|e| fail("replica B", e));
    drop(_guard);
    (
        report.state,
        Log {
            rt,
            kafka,
            publisher,
            replica_b,
            metrics_b,
            _dead_letters: dlq_rx,
            _spool_dir: spool_dir,
        },
    )
}

/// Waits until every event is in Kafka and replica B has read it all, then compares B's state
/// hash with A's.
fn converge(log: Log, a: &State) -> bool {
    let drained = log
        .rt
        .block_on(log.publisher.wait_drained(Duration::from_secs(60)));
    let consumer: BaseConsumer = log
        .kafka
        .client_config()
        .create()
        .unwrap_or_else(|e| fail("watermark consumer", e));
    let mut ends = BTreeMap::new();
    for topic in [
        &log.kafka.account_updates_topic,
        &log.kafka.authorizations_topic,
    ] {
        for (tp, (_, high)) in
            watermarks(&consumer, &log.kafka, topic).unwrap_or_else(|e| fail("watermarks", e))
        {
            ends.insert(tp, high);
        }
    }
    let (_, caught_up) = log.replica_b.wait_until(Duration::from_secs(60), |v| {
        ends.iter()
            .all(|(tp, high)| *high == 0 || v.offsets.get(tp).is_some_and(|next| next >= high))
    });
    let b = log.replica_b.stop();
    let same = b.state_hash() == a.state_hash();
    println!(
        "demo: spool drained {drained}; replica B caught up {caught_up}; state hash A {} B {} {}",
        a.state_hash(),
        b.state_hash(),
        if same {
            "(equal: the replicas converged)"
        } else {
            "(DIFFERENT)"
        }
    );
    log.rt.block_on(log.publisher.close());
    drained && caught_up && same
}

fn print_figures(
    f: &Figures,
    lat: &Histogram<u64>,
    state: &State,
    rate: f64,
    elapsed: Duration,
    lag_b: Option<i64>,
    tty: bool,
) {
    let counts = state.counts();
    let codes: Vec<String> = f.by_code.iter().map(|(c, n)| format!("{c}:{n}")).collect();
    if !tty {
        println!(
            "t={:>4}s req={} rate={:.0}/s p50={}us p99={}us codes[{}] hsm ok={} bad={} arpc ok={} bad={} kafka acked={} spooled={} lagB={} holds={}",
            elapsed.as_secs(),
            f.requests,
            rate,
            lat.value_at_quantile(0.5),
            lat.value_at_quantile(0.99),
            codes.join(" "),
            f.hsm_verified,
            f.hsm_rejected,
            f.arpc_ok,
            f.arpc_bad,
            f.acked,
            f.spooled,
            lag_b.map_or("-".into(), |l| l.to_string()),
            counts.holds
        );
        return;
    }
    let mut out = String::new();
    out.push_str("\x1b[2J\x1b[H");
    out.push_str(
        "authorizer demo — simulated network → ISO 8583 → SoftHSM2 → ledger → Kafka → answer\n\n",
    );
    out.push_str(&format!(
        "  running {:>5} s   requests {:>9}   rate {:>8.0} /s\n",
        elapsed.as_secs(),
        f.requests,
        rate
    ));
    out.push_str(&format!(
        "  latency, request in → answer out (after Kafka's ack)  p50 {} µs  p99 {} µs  max {} µs\n\n",
        lat.value_at_quantile(0.5),
        lat.value_at_quantile(0.99),
        lat.max()
    ));
    out.push_str("  requests by kind                      answers by DE 39\n");
    let kinds: Vec<_> = f.by_kind.iter().collect();
    let codes: Vec<_> = f.by_code.iter().collect();
    for i in 0..kinds.len().max(codes.len()) {
        let k = kinds
            .get(i)
            .map(|(k, n)| format!("{k:<20} {n:>9}"))
            .unwrap_or_default();
        let c = codes
            .get(i)
            .map(|(c, n)| format!("{c} {:<22} {n:>9}", code_name(c)))
            .unwrap_or_default();
        out.push_str(&format!("    {k:<34}  {c}\n"));
    }
    out.push_str(&format!(
        "\n  HSM (PKCS#11, SoftHSM2): ARQC verified {}  rejected {}  errors {}\n",
        f.hsm_verified, f.hsm_rejected, f.hsm_errors
    ));
    out.push_str(&format!(
        "  cards checking the ARPC: accepted {}  refused {}\n",
        f.arpc_ok, f.arpc_bad
    ));
    out.push_str(&format!(
        "  repeats answered identically: {} of {}\n",
        f.repeats_same,
        f.repeats_same + f.repeats_different
    ));
    match lag_b {
        Some(lag) => out.push_str(&format!(
            "  Kafka: events {}  acknowledged {}  spooled {}  failed {}   replica B lag {}\n",
            f.events, f.acked, f.spooled, f.publish_failed, lag
        )),
        None => out.push_str(&format!(
            "  Kafka: not connected (no --brokers); {} events applied in memory\n",
            f.events
        )),
    }
    out.push_str(&format!(
        "  ledger A: {} accounts, {} cards, {} hold records\n  state hash {}\n",
        counts.accounts,
        counts.cards,
        counts.holds,
        state.state_hash()
    ));
    out.push_str("\n  Ctrl-C to stop\n");
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(out.as_bytes());
    let _ = stdout.flush();
}

fn code_name(code: &str) -> &'static str {
    match code {
        "00" => "approved",
        "05" => "do not honour",
        "14" => "invalid card",
        "30" => "format error",
        "41" => "lost card",
        "43" => "stolen card",
        "51" => "insufficient funds",
        "54" => "expired card",
        "62" => "restricted card",
        _ => "",
    }
}
