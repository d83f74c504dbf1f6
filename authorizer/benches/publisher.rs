//! Bench of the [`Publisher`] against a real tansu broker: how many events per second it gets
//! acknowledged by Kafka within the budget, at what latency, and how many go to the spool.
//!
//! This is the Publisher's ceiling the daemon is compared to. A bench binary (no criterion): each
//! figure needs a broker, and one run of each setting is the measurement.
//!
//! ```text
//! cargo bench -p authorizer --bench publisher -- --brokers 127.0.0.1:PORT
//! cargo bench -p authorizer --bench publisher -- --in-flight 1,64,256 --events 20000
//! cargo bench -p authorizer --bench publisher -- --in-flight 256 --rate 3500 --events 70000
//! ```
//!
//! Without `--brokers` (or `AUTHORIZER_TEST_BROKER`) it starts its own through `scripts/broker`.
//! Each run uses a fresh topic and a fresh spool directory, so runs do not share a warm producer.
//! Printed per run: the spool depth every second, then events/s, the latency of `publish` for
//! acknowledged and for spooled events (p50/p99/p99.9, hdrhistogram), and a one-line `summary`.
//!
//! Never: print an event's payload, or reuse a topic another run wrote to.

#[path = "support/broker.rs"]
mod broker;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use authorizer::kafka::{
    Delivery, KafkaConfig, LogMetrics, Outbound, Publisher, PublisherConfig, Spool, ensure_topic,
};
use clap::Parser;
use hdrhistogram::Histogram;
use tokio::sync::Semaphore;

#[derive(Parser, Debug)]
#[command(about = "Publisher bench against a real broker")]
struct Args {
    /// Broker address; default `AUTHORIZER_TEST_BROKER`, else one started by `scripts/broker`.
    #[arg(long)]
    brokers: Option<String>,
    /// Events published per run.
    #[arg(long, default_value_t = 20_000)]
    events: u64,
    /// Events in flight at once; one run per value (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = vec![1usize, 64, 256])]
    in_flight: Vec<usize>,
    /// Offered load, events per second (0: as fast as the in-flight bound allows).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Budget of each `publish`, in milliseconds (the daemon's ack budget).
    #[arg(long, default_value_t = 500)]
    budget_ms: u64,
    /// Partitions of the topic.
    #[arg(long, default_value_t = 10)]
    partitions: i32,
    /// Distinct account ids (keys).
    #[arg(long, default_value_t = 10_000)]
    accounts: u64,
    /// Do not call `Publisher::warm_up` before the first event (what a daemon that forgets it
    /// gets).
    #[arg(long)]
    cold: bool,
    /// Runs one event at a time cap for the 1-in-flight run (it is slow): at most this many.
    #[arg(long, default_value_t = 2_000)]
    events_single: u64,
    /// The publisher's `linger.ms` (default: `PublisherConfig::new`'s).
    #[arg(long)]
    linger_ms: Option<u64>,
    /// Extra librdkafka properties for the producer, `name=value` (repeatable), e.g.
    /// `batch.num.messages=100`.
    #[arg(long = "property")]
    properties: Vec<String>,
    /// Instead of publishing: leave this many events in the spool (as a process stopped during an
    /// outage would), open the publisher over it and time the drain alone.
    #[arg(long, default_value_t = 0)]
    drain: u64,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// A `hold.placed` event as the pipeline publishes it (about 480 bytes).
fn hold_event(run: &str, i: u64, accounts: u64) -> Outbound {
    let key = format!("acc-{:08}", i % accounts);
    let event_id = format!("bench-{run}-{i}");
    let payload = format!(
        r#"{{"schema":1,"type":"hold.placed","event_id":"{event_id}","at":"2026-11-22T10:15:01Z","instance":"bench","account_id":"{key}","hold_id":"h-{i:032x}","response_code":"00","amount_minor":{},"currency":"986","approval_code":"ABC123","expires_at":"2026-11-29T10:15:00Z","trace":{{"mti":"0100","pan_masked":"541333******0010","transmission_date_time":"1122101500","transmitted_at":"2026-11-22T10:15:00Z","stan":"{:06}","acquirer_id":"12345","forwarder_id":"0"}}}}"#,
        100 + i % 5000,
        i % 1_000_000
    );
    Outbound {
        key,
        event_id,
        payload: payload.into_bytes(),
    }
}

#[derive(Default)]
struct Counts {
    acked: AtomicU64,
    spooled: AtomicU64,
    failed: AtomicU64,
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).unwrap()
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        0.0
    } else {
        h.value_at_quantile(q) as f64 / 1000.0
    }
}

/// One run: a fresh topic, publisher and spool; `events` published with at most `in_flight`
/// outstanding, at `rate` per second if not 0.
async fn run(args: &Args, addr: &str, in_flight: usize, events: u64) {
    let tag = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let mut kafka = KafkaConfig::new(addr);
    kafka.authorizations_topic = format!("bench-pub-{tag}");
    kafka.client_id = format!("bench-pub-{in_flight}");
    for p in &args.properties {
        let (k, v) = p.split_once('=').expect("--property name=value");
        kafka.extra.push((k.to_owned(), v.to_owned()));
    }
    ensure_topic(&kafka, &kafka.authorizations_topic, args.partitions)
        .await
        .expect("create topic");
    let spool_dir = tempfile::tempdir().expect("spool dir");
    if args.drain > 0 {
        let mut spool = Spool::open(spool_dir.path(), 1 << 32).expect("spool");
        for i in 0..args.drain {
            let e = hold_event(&tag, i, args.accounts);
            spool
                .append(&kafka.authorizations_topic, e.key.as_bytes(), &e.payload)
                .expect("append");
        }
        spool.sync().expect("sync");
    }
    let mut cfg = PublisherConfig::new(spool_dir.path());
    if let Some(ms) = args.linger_ms {
        cfg.linger = Duration::from_millis(ms);
    }
    let opened = Instant::now();
    let publisher =
        Publisher::open(&kafka, cfg, Arc::new(LogMetrics::default())).expect("publisher");
    let warm_started = Instant::now();
    if !args.cold {
        publisher
            .warm_up(Duration::from_secs(10))
            .await
            .expect("warm up");
    }
    let warm = warm_started.elapsed();
    if args.drain > 0 {
        // From the open: the drainer starts there (its first sends wait for the producer id).
        let started = opened;
        let drained = publisher.wait_drained(Duration::from_secs(300)).await;
        let elapsed = started.elapsed();
        publisher.close().await;
        println!(
            "summary drain events={} drained={drained} drain_ms={} drain_events_per_s={:.0}",
            args.drain,
            elapsed.as_millis(),
            args.drain as f64 / elapsed.as_secs_f64()
        );
        return;
    }

    let budget = Duration::from_millis(args.budget_ms);
    let counts = Arc::new(Counts::default());
    let acked_hist = Arc::new(std::sync::Mutex::new(hist()));
    let spooled_hist = Arc::new(std::sync::Mutex::new(hist()));
    let gate = Arc::new(Semaphore::new(in_flight));
    let started = Instant::now();

    // The spool depth over time, every second, until the run is over and the spool drained.
    let sampler = {
        let publisher = publisher.clone();
        let counts = counts.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            let mut depths = Vec::new();
            loop {
                tick.tick().await;
                let depth = publisher.spool_depth();
                depths.push(depth);
                println!(
                    "  t={:>3}s acked={} spooled={} spool_depth={}",
                    started.elapsed().as_secs(),
                    counts.acked.load(Ordering::Relaxed),
                    counts.spooled.load(Ordering::Relaxed),
                    depth
                );
            }
        })
    };

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..events {
        if args.rate > 0 {
            let due = started + Duration::from_secs_f64(i as f64 / args.rate as f64);
            tokio::time::sleep_until(due.into()).await;
        }
        let permit = gate.clone().acquire_owned().await.unwrap();
        let event = hold_event(&tag, i, args.accounts);
        let (publisher, counts) = (publisher.clone(), counts.clone());
        let (acked_hist, spooled_hist) = (acked_hist.clone(), spooled_hist.clone());
        tasks.spawn(async move {
            let t = Instant::now();
            let r = publisher.publish(&event, budget).await;
            let us = (t.elapsed().as_micros() as u64).max(1);
            match r {
                Ok(Delivery::Acked { .. }) => {
                    counts.acked.fetch_add(1, Ordering::Relaxed);
                    acked_hist.lock().unwrap().saturating_record(us);
                }
                Ok(Delivery::Spooled { .. }) => {
                    counts.spooled.fetch_add(1, Ordering::Relaxed);
                    spooled_hist.lock().unwrap().saturating_record(us);
                }
                Err(_) => {
                    counts.failed.fetch_add(1, Ordering::Relaxed);
                }
            }
            drop(permit);
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = started.elapsed();
    let drain_started = Instant::now();
    let drained = publisher.wait_drained(Duration::from_secs(120)).await;
    let drain = drain_started.elapsed();
    sampler.abort();
    let max_depth_seen = publisher.spool_depth();
    publisher.close().await;

    let acked = counts.acked.load(Ordering::Relaxed);
    let spooled = counts.spooled.load(Ordering::Relaxed);
    let failed = counts.failed.load(Ordering::Relaxed);
    let a = acked_hist.lock().unwrap();
    let s = spooled_hist.lock().unwrap();
    let per_s = events as f64 / elapsed.as_secs_f64();
    println!(
        "  acked: p50={:.2}ms p99={:.2}ms p99.9={:.2}ms max={:.2}ms; spooled: p50={:.2}ms p99={:.2}ms max={:.2}ms",
        ms(&a, 0.5),
        ms(&a, 0.99),
        ms(&a, 0.999),
        a.max() as f64 / 1000.0,
        ms(&s, 0.5),
        ms(&s, 0.99),
        s.max() as f64 / 1000.0,
    );
    println!(
        "summary in_flight={in_flight} rate={} events={events} events_per_s={per_s:.0} acked={acked} spooled={spooled} failed={failed} ack_p50_ms={:.2} ack_p99_ms={:.2} ack_p999_ms={:.2} budget_ms={} warm_up_ms={} drained={drained} drain_ms={} depth_after={max_depth_seen}",
        if args.rate == 0 {
            "max".to_string()
        } else {
            args.rate.to_string()
        },
        ms(&a, 0.5),
        ms(&a, 0.99),
        ms(&a, 0.999),
        args.budget_ms,
        if args.cold { 0 } else { warm.as_millis() },
        drain.as_millis(),
    );
}

fn main() {
    let args = Args::parse();
    let addr = args.brokers.clone().unwrap_or_else(broker::broker);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "publisher bench: broker {addr}, {} partitions, {} accounts, budget {} ms, {}",
        args.partitions,
        args.accounts,
        args.budget_ms,
        if args.cold {
            "cold producer"
        } else {
            "warmed producer"
        }
    );
    if args.drain > 0 {
        println!("run: drain of {} spooled events", args.drain);
        rt.block_on(run(&args, &addr, 1, 0));
        return;
    }
    for &n in &args.in_flight {
        let events = if n == 1 {
            args.events.min(args.events_single)
        } else {
            args.events
        };
        println!("run: in_flight={n} events={events}");
        rt.block_on(run(&args, &addr, n.max(1), events));
    }
}
