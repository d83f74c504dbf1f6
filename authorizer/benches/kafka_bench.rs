//! Benchmark of the log side against a real tansu broker (a bench binary, not criterion: each
//! figure needs a broker and a pre-filled topic, and one run of each is the measurement).
//!
//! ```text
//! cargo bench -p authorizer --bench kafka_bench                  # starts its own broker
//! AUTHORIZER_TEST_BROKER=127.0.0.1:PORT cargo bench -p authorizer --bench kafka_bench
//! LOG_BENCH_EVENTS=1000000 LOG_BENCH_PARTITIONS=10 LOG_BENCH_PRODUCES=2000 ...
//! ```
//!
//! Measures: fill rate (batched produce), replay rate into a counting no-op (the log side's own
//! ceiling: broker fetch + librdkafka + queue + applier) and into the real ledger (what
//! `authorizer replay` does), and produce-with-acknowledgement latency (one event at a time,
//! idempotent, acks=all) p50/p99.

#[path = "support/broker.rs"]
mod broker;

use std::sync::Arc;
use std::time::{Duration, Instant};

use authorizer::kafka::{
    Apply, KafkaConfig, LogMetrics, LogRecord, Outbound, Publisher, PublisherConfig, ReplayOptions,
    ensure_topic, replay,
};
use ledger::{Event, EventError, LedgerConfig, State};
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Counts records, applies nothing: the log side alone (with the parsing, which the consumer's
/// thread does).
struct Count(u64);

impl Apply for Count {
    type Rejection = std::convert::Infallible;
    fn apply(
        &mut self,
        record: &LogRecord,
        _: &Result<Event<'_>, EventError>,
    ) -> Result<(), Self::Rejection> {
        self.0 += record.payload.as_ref().map_or(0, Vec::len) as u64;
        Ok(())
    }
}

fn account_event(i: u64, accounts: u64) -> (String, Vec<u8>) {
    let a = i % accounts;
    let version = i / accounts + 1;
    let key = format!("acc-{a:08}");
    let value = format!(
        r#"{{"schema":1,"type":"account.upserted","event_id":"bench-{i}","at":"2026-11-22T10:15:00Z","account_id":"{key}","version":{version},"status":"open","currency":"986","credit_limit":{},"posted_balance":{},"cleared_holds":[]}}"#,
        500_000 + i % 1000,
        i % 777
    );
    (key, value.into_bytes())
}

fn hold_event(i: u64, accounts: u64) -> (String, Vec<u8>) {
    let a = i % accounts;
    let key = format!("acc-{a:08}");
    let value = format!(
        r#"{{"schema":1,"type":"hold.placed","event_id":"bench-hold-{i}","at":"2026-11-22T10:15:01Z","instance":"bench","account_id":"{key}","hold_id":"h-{i:032x}","response_code":"00","amount_minor":{},"currency":"986","approval_code":"ABC123","expires_at":"2026-11-29T10:15:00Z","trace":{{"mti":"0100","pan_masked":"541333******0010","transmission_date_time":"1122101500","transmitted_at":"2026-11-22T10:15:00Z","stan":"{:06}","acquirer_id":"12345","forwarder_id":"0"}}}}"#,
        100 + i % 5000,
        i % 1_000_000
    );
    (key, value.into_bytes())
}

/// Fills `topic` on `bootstrap` with `events` account upserts, batched; returns the elapsed time.
fn fill(
    rt: &tokio::runtime::Runtime,
    bootstrap: &str,
    topic: &str,
    events: u64,
    accounts: u64,
    idempotent: bool,
) -> Duration {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("enable.idempotence", idempotent.to_string())
        .set("acks", "all")
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap();
    let started = Instant::now();
    rt.block_on(async {
        let mut pending = std::collections::VecDeque::new();
        for i in 0..events {
            let (key, value) = account_event(i, accounts);
            loop {
                let record = FutureRecord::to(topic).key(&key).payload(&value);
                match producer.send_result(record) {
                    Ok(d) => {
                        pending.push_back(d);
                        break;
                    }
                    // librdkafka's queue is full: wait for the oldest half, then retry.
                    Err(_) => {
                        let n = pending.len().div_ceil(2);
                        for d in pending.drain(..n) {
                            d.await.expect("fill").expect("fill acknowledged");
                        }
                    }
                }
            }
        }
        for d in pending.drain(..) {
            d.await.expect("fill").expect("fill acknowledged");
        }
    });
    started.elapsed()
}

/// Replays `k`'s topics into a no-op and into the ledger, printing both rates.
/// `exact`: every event produced is still in the log (the mock cluster keeps only its last
/// segments, so there only the retained ones are replayed).
fn replay_both(k: &KafkaConfig, events: u64, exact: bool, what: &str) {
    let opts = ReplayOptions::from_beginning(k);
    let report = replay(k, &opts, Count(0), Arc::new(LogMetrics::default())).unwrap();
    let retained = report.progress.applied;
    assert!(retained > 0 && retained <= events);
    assert!(
        !exact || retained == events,
        "{retained} of {events} replayed"
    );
    println!(
        "{what}: replay into a no-op apply: {} records in {:.2} s = {:.0} records/s ({} MB of values)",
        report.progress.applied,
        report.replay_elapsed.as_secs_f64(),
        report.records_per_s(),
        report.state.0 / 1_000_000
    );
    let report = replay(
        k,
        &opts,
        State::new(LedgerConfig::default()),
        Arc::new(LogMetrics::default()),
    )
    .unwrap();
    assert_eq!(report.progress.applied, retained);
    println!(
        "{what}: replay into the ledger: {} records in {:.2} s = {:.0} records/s, accounts={}, state_hash={}",
        report.progress.applied,
        report.replay_elapsed.as_secs_f64(),
        report.records_per_s(),
        report.state.counts().accounts,
        report.state.state_hash()
    );
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    let events = env_or("LOG_BENCH_EVENTS", 1_000_000);
    let partitions = env_or("LOG_BENCH_PARTITIONS", 10) as i32;
    let produces = env_or("LOG_BENCH_PRODUCES", 2_000);
    let accounts = env_or("LOG_BENCH_ACCOUNTS", 100_000).max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let addr = broker::broker();
    let tag = format!(
        "{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    );
    let mut k = KafkaConfig::new(&addr);
    k.account_updates_topic = format!("bench-updates-{tag}");
    k.authorizations_topic = format!("bench-auth-{tag}");
    rt.block_on(async {
        ensure_topic(&k, &k.account_updates_topic, partitions)
            .await
            .unwrap();
        ensure_topic(&k, &k.authorizations_topic, partitions)
            .await
            .unwrap();
    });
    println!(
        "broker={addr} partitions={partitions} events={events} topic={} authorizations_topic={}",
        k.account_updates_topic, k.authorizations_topic
    );

    let took = fill(&rt, &addr, &k.account_updates_topic, events, accounts, true);
    println!(
        "tansu: fill {events} events in {:.2} s = {:.0} events/s (batched, idempotent, acks=all)",
        took.as_secs_f64(),
        events as f64 / took.as_secs_f64()
    );
    replay_both(&k, events, true, "tansu");

    // Produce with acknowledgement, one at a time (the daemon's pattern: answer after the ack).
    let spool = std::env::temp_dir().join(format!("authorizer-log-bench-spool-{tag}"));
    let metrics = Arc::new(LogMetrics::default());
    let _guard = rt.enter();
    let publisher = Publisher::open(&k, PublisherConfig::new(&spool), metrics.clone()).unwrap();
    rt.block_on(async {
        for i in 0..produces {
            let (key, payload) = hold_event(i, accounts);
            let event = Outbound {
                key,
                event_id: format!("bench-hold-{i}"),
                payload,
            };
            let d = publisher
                .publish(&event, Duration::from_secs(5))
                .await
                .unwrap();
            assert!(
                matches!(d, authorizer::kafka::Delivery::Acked { .. }),
                "{d:?}"
            );
        }
    });
    let m = metrics.snapshot();
    println!(
        "tansu: produce with ack (sequential, idempotent, acks=all, linger.ms=1): n={} p50={} us p99={} us max={} us",
        m.produce_count,
        m.produce_latency_us_p50,
        m.produce_latency_us_p99,
        m.produce_latency_us_max
    );
    rt.block_on(publisher.close());
    let _ = std::fs::remove_dir_all(&spool);

    // The ledger alone: the same kind of events applied from memory on this thread.
    let direct_events = env_or("LOG_BENCH_DIRECT_EVENTS", 1_000_000);
    let payloads: Vec<Vec<u8>> = (0..direct_events)
        .map(|i| account_event(i, accounts).1)
        .collect();
    let mut state = State::new(LedgerConfig::default());
    let started = Instant::now();
    for p in &payloads {
        state.apply_json(ledger::Source::AccountUpdates, p).unwrap();
    }
    let took = started.elapsed();
    println!(
        "ledger alone: apply_json of {direct_events} events from memory in {:.2} s = {:.0} events/s",
        took.as_secs_f64(),
        direct_events as f64 / took.as_secs_f64()
    );
    drop(payloads);

    // The same replay from librdkafka's in-process mock cluster: the log side's own ceiling,
    // without tansu's sqlite fetch path.
    let mock_events = env_or("LOG_BENCH_MOCK_EVENTS", 200_000);
    if mock_events > 0 {
        let mock = rdkafka::mocking::MockCluster::new(1).unwrap();
        let mut m = KafkaConfig::new(mock.bootstrap_servers());
        m.account_updates_topic = "mock-updates".into();
        m.authorizations_topic = "mock-auth".into();
        mock.create_topic(&m.account_updates_topic, partitions, 1)
            .unwrap();
        mock.create_topic(&m.authorizations_topic, partitions, 1)
            .unwrap();
        let took = fill(
            &rt,
            &m.bootstrap,
            &m.account_updates_topic,
            mock_events,
            accounts,
            false,
        );
        println!(
            "mock: fill {mock_events} events in {:.2} s = {:.0} events/s",
            took.as_secs_f64(),
            mock_events as f64 / took.as_secs_f64()
        );
        replay_both(&m, mock_events, false, "mock");
    }
}
