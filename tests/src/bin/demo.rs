//! The demo: simulated card-network traffic through the authorizer's whole path, with live
//! figures on screen.
//!
//! What runs, for real: the ISO 8583 codec (both directions; `ascii` or any dialect), the
//! authorizer's request pipeline (`authorizer::pipeline`: validation, every chip cryptogram
//! verified and every ARPC computed inside a private SoftHSM2 token through PKCS#11 on the HSM
//! pool, the ledger thread and the decision rules, the answer budget), and — with `--brokers`
//! (what `scripts/demo` does) — the Kafka log on a real broker: the cloud publishes its account and
//! card events to `account-updates`, authorizer A builds its state by replaying the log, answers
//! each request only once its event is acknowledged by Kafka (or in the spool), and replica B
//! follows the log alone; at the end B's state hash must equal A's. The simulated cards check every
//! ARPC.
//!
//! This file keeps only the simulation and the screen: what the daemon does is the pipeline's.
//! It also answers the network's 0800 echoes, as the link session will.
//!
//! Not yet here: the TCP link to the network's interface device (the requests travel in memory)
//! and the daemon's own process; their issues come next.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use authorizer::kafka::{
    Delivery, Follower, KafkaConfig, LogMetrics, Outbound, Publisher, PublisherConfig,
    ReplayOptions, ensure_topic, replay, watermarks,
};
use authorizer::link::translate::{RequestKind, classify, echo_fields, response_mti};
use authorizer::pipeline::{CountsSnapshot, EventLog, Pipeline, PipelineConfig, PublishFuture};
use bytes::Bytes;
use clap::Parser;
use hdrhistogram::Histogram;
use hsm::pkcs11::Pkcs11Verifier;
use iso8583::{Dialect, Message, response_to};
use ledger::decide::DecideConfig;
use ledger::{Counts, LedgerConfig, PanKey, Source, State, StateHash};
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
    /// Time budget of one HSM call, in milliseconds; past it the answer is the unavailable code.
    #[arg(long, default_value_t = 1_000)]
    hsm_budget_ms: u64,
    /// An answer later than this (milliseconds after the request) is not sent.
    #[arg(long, default_value_t = 15_000)]
    answer_budget_ms: u64,
    /// Requests in flight at most.
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
    unanswered: u64,
    by_kind: BTreeMap<&'static str, u64>,
    by_code: BTreeMap<String, u64>,
    arpc_ok: u64,
    arpc_bad: u64,
    repeats_same: u64,
    repeats_different: u64,
}

/// Without `--brokers`: every event is "durable" at once (the state is in memory only).
struct MemoryLog {
    offset: AtomicI64,
}

impl EventLog for MemoryLog {
    fn publish(&self, _event: Outbound, _budget: Duration) -> PublishFuture {
        let offset = self.offset.fetch_add(1, Ordering::Relaxed);
        Box::pin(async move {
            Ok(Delivery::Acked {
                partition: 0,
                offset,
            })
        })
    }
}

/// The publisher, with more time for its first send: it sets up the connection and the
/// idempotent producer id (about a second on tansu), so the budget measures the steady state
/// instead of spooling the first burst.
struct WarmingPublisher {
    publisher: Publisher,
    warmed: AtomicBool,
}

impl EventLog for WarmingPublisher {
    fn publish(&self, event: Outbound, budget: Duration) -> PublishFuture {
        let budget = if self.warmed.swap(true, Ordering::AcqRel) {
            budget
        } else {
            Duration::from_secs(10)
        };
        EventLog::publish(&self.publisher, event, budget)
    }
}

/// A request and its answer (`None`: not sent, too late).
struct Done {
    sent: Sent,
    answer: Option<Bytes>,
    started: Instant,
}

/// The Kafka side of the demo: the broker's topics, the publisher of A, replica B.
struct Log {
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

/// The link session's answer to a network management request (0800 → 0810, DE 39 = 00).
fn session_answer(dialect: &Dialect, message: &Message) -> Bytes {
    let mut b = response_to(
        message,
        response_mti(message.mti()),
        echo_fields(message.mti()),
    );
    b.set(39, "00");
    b.encode(dialect).expect("0810")
}

fn main() {
    let args = Args::parse();
    let dialect = match Dialect::builtin(&args.dialect) {
        Some(d) => d,
        None => Dialect::load(&args.dialect).unwrap_or_else(|e| fail(&args.dialect, e)),
    };
    let pan_key = PanKey(DEMO_PAN_KEY);
    let start_unix = now_unix_s();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail("tokio runtime", e));

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
            let (state, log) = start_log(&rt, brokers, &events);
            (state, Some(log))
        }
    };
    println!(
        "demo: authorizer A ready: {} accounts, {} cards; state hash {}",
        state.counts().accounts,
        state.counts().cards,
        state.state_hash()
    );

    let event_log: Arc<dyn EventLog> = match &log {
        Some(log) => Arc::new(WarmingPublisher {
            publisher: log.publisher.clone(),
            warmed: AtomicBool::new(false),
        }),
        None => Arc::new(MemoryLog {
            offset: AtomicI64::new(0),
        }),
    };
    let mut config = PipelineConfig::new(dialect.clone(), pan_key, DecideConfig::new("demo-a"));
    config.ack_budget = Duration::from_millis(args.ack_budget_ms);
    config.hsm_budget = Duration::from_millis(args.hsm_budget_ms);
    config.answer_budget = Duration::from_millis(args.answer_budget_ms);
    let (pipeline, ledger) = Pipeline::start(state, config, Arc::new(verifier), event_log);

    let mut traffic = Traffic::new(args.seed);
    let mut figures = Figures::default();
    let mut latency_us = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
    let tty = std::io::stdout().is_terminal();
    let (done_tx, done_rx): (Sender<Done>, Receiver<Done>) = channel();
    let mut in_flight = 0usize;
    let started = Instant::now();
    let mut last_print = Instant::now();
    let mut last_requests = 0u64;

    let finish = |d: Done,
                  traffic: &mut Traffic,
                  pop: &Population,
                  f: &mut Figures,
                  latency_us: &mut Histogram<u64>| {
        latency_us.saturating_record(d.started.elapsed().as_micros().max(1) as u64);
        let kind = d.sent.kind;
        f.requests += 1;
        *f.by_kind.entry(kind.name()).or_default() += 1;
        let Some(answer) = d.answer else {
            f.unanswered += 1;
            return;
        };
        let answer = Message::decode(&dialect, answer).expect("the answer decodes");
        let checked = traffic.observe(pop, d.sent, &answer);
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
        let message = match Message::decode(&dialect, sent.frame.clone()) {
            Ok(m) => m,
            Err(e) => panic!("the simulator sent an undecodable frame: {e}"),
        };
        if classify(message.mti()) == Some(RequestKind::NetworkManagement) {
            let answer = session_answer(&dialect, &message);
            let done = Done {
                sent,
                answer: Some(answer),
                started: t0,
            };
            finish(done, &mut traffic, &pop, &mut figures, &mut latency_us);
        } else {
            let answer = pipeline.handle(message);
            let tx = done_tx.clone();
            in_flight += 1;
            rt.spawn(async move {
                let answer = answer.await;
                let _ = tx.send(Done {
                    sent,
                    answer,
                    started: t0,
                });
            });
        }
        // Answers as they come; wait when the window is full.
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
            let (counts, hash) = rt
                .block_on(pipeline.inspect(|s| (s.counts(), s.state_hash())))
                .expect("the ledger thread runs");
            let screen = Screen {
                f: &figures,
                lat: &latency_us,
                p: &pipeline.counters().counts.snapshot(),
                counts,
                hash,
            };
            print_figures(&screen, rate, started.elapsed(), lag_b, tty);
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
    let p = pipeline.counters().counts.snapshot();
    drop(pipeline);
    let state_a = ledger.stop();
    let mut ok = figures.arpc_bad == 0
        && figures.repeats_different == 0
        && p.unavailable_hsm_error == 0
        && p.publish_failed == 0;
    println!(
        "demo: {} requests; ARPCs accepted by the cards {}/{}; repeats answered identically {}/{}; not answered in time {}",
        figures.requests,
        figures.arpc_ok,
        figures.arpc_ok + figures.arpc_bad,
        figures.repeats_same,
        figures.repeats_same + figures.repeats_different,
        figures.unanswered,
    );
    if let Some(log) = log {
        ok &= converge(&rt, log, &state_a);
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

/// Creates the topics, publishes the cloud's events, replays them into A, starts replica B and
/// the publisher.
fn start_log(
    rt: &tokio::runtime::Runtime,
    brokers: &str,
    events: &[(String, Vec<u8>)],
) -> (State, Log) {
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
fn converge(rt: &tokio::runtime::Runtime, log: Log, a: &State) -> bool {
    let drained = rt.block_on(log.publisher.wait_drained(Duration::from_secs(60)));
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
    rt.block_on(log.publisher.close());
    drained && caught_up && same
}

/// What the screen shows besides the rates.
struct Screen<'a> {
    f: &'a Figures,
    lat: &'a Histogram<u64>,
    p: &'a CountsSnapshot,
    counts: Counts,
    hash: StateHash,
}

fn print_figures(s: &Screen<'_>, rate: f64, elapsed: Duration, lag_b: Option<i64>, tty: bool) {
    let (f, lat, p, counts) = (s.f, s.lat, s.p, s.counts);
    let events = p.acked + p.spooled;
    let unavailable = p.unavailable_hsm_timeout
        + p.unavailable_hsm_error
        + p.unavailable_queue_full
        + p.unavailable_not_durable
        + p.unavailable_not_ready
        + p.unavailable_ledger;
    let codes: Vec<String> = f.by_code.iter().map(|(c, n)| format!("{c}:{n}")).collect();
    if !tty {
        println!(
            "t={:>4}s req={} rate={:.0}/s p50={}us p99={}us codes[{}] hsm ok={} bad={} arpc ok={} bad={} unavailable={} late={} kafka acked={} spooled={} lagB={} holds={}",
            elapsed.as_secs(),
            f.requests,
            rate,
            lat.value_at_quantile(0.5),
            lat.value_at_quantile(0.99),
            codes.join(" "),
            p.hsm_verified,
            p.hsm_rejected,
            f.arpc_ok,
            f.arpc_bad,
            unavailable,
            p.late,
            p.acked,
            p.spooled,
            lag_b.map_or("-".into(), |l| l.to_string()),
            counts.holds
        );
        return;
    }
    let mut out = String::new();
    out.push_str("\x1b[2J\x1b[H");
    out.push_str(
        "authorizer demo — simulated network → ISO 8583 → pipeline (SoftHSM2 → ledger → Kafka) → answer\n\n",
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
        "\n  HSM (PKCS#11, SoftHSM2): ARQC verified {}  rejected {}  late {}  errors {}\n",
        p.hsm_verified, p.hsm_rejected, p.unavailable_hsm_timeout, p.unavailable_hsm_error
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
    out.push_str(&format!(
        "  answered unavailable {}   not answered in time {}\n",
        unavailable, p.late
    ));
    match lag_b {
        Some(lag) => out.push_str(&format!(
            "  Kafka: events {}  acknowledged {}  spooled {}  failed {}   replica B lag {}\n",
            events, p.acked, p.spooled, p.publish_failed, lag
        )),
        None => out.push_str(&format!(
            "  Kafka: not connected (no --brokers); {} events applied in memory\n",
            events
        )),
    }
    out.push_str(&format!(
        "  ledger A: {} accounts, {} cards, {} hold records\n  state hash {}\n",
        counts.accounts, counts.cards, counts.holds, s.hash
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
        "91" => "issuer unavailable",
        "94" => "duplicate transmission",
        _ => "",
    }
}
