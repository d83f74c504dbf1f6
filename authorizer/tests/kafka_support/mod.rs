//! Shared by the `log_*` test binaries: a real tansu broker (started through `scripts/broker`),
//! unique topic names, contract events, and raw produce/consume helpers.
//!
//! `AUTHORIZER_TEST_BROKER=host:port` uses a running broker; otherwise each test binary starts
//! its own (one per binary, stopped when the binary exits) through `scripts/broker start`, which
//! builds tansu into the cache first if it is missing. Tests never skip for want of a broker.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use authorizer::kafka::{KafkaConfig, ensure_topic};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

pub struct Broker {
    pub addr: String,
    pub dir: Option<PathBuf>,
}

fn script() -> PathBuf {
    std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("../scripts/broker")
}

/// Runs `scripts/broker start` and returns the address it printed. Without `dir`, the script
/// makes a temporary data directory and removes it when this process exits.
pub fn start_broker_in(dir: Option<&Path>, port: Option<u16>) -> Broker {
    let mut cmd = Command::new(script());
    cmd.arg("start")
        .arg("--watch-pid")
        .arg(std::process::id().to_string());
    if let Some(dir) = dir {
        cmd.arg("--data-dir").arg(dir);
    }
    if let Some(p) = port {
        cmd.arg("--port").arg(p.to_string());
    }
    let out = cmd.output().expect("run scripts/broker");
    assert!(
        out.status.success(),
        "scripts/broker start failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("scripts/broker printed no {name}"))
            .to_owned()
    };
    Broker {
        addr: field("BROKER="),
        dir: Some(PathBuf::from(field("BROKER_DIR="))),
    }
}

/// [`start_broker_in`] a given data directory (kept by the caller, e.g. for a restart).
pub fn start_broker(dir: &Path, port: Option<u16>) -> Broker {
    start_broker_in(Some(dir), port)
}

impl Broker {
    pub fn stop(&self) {
        let dir = self
            .dir
            .as_ref()
            .expect("only brokers we started can be stopped");
        let out = Command::new(script())
            .arg("stop")
            .arg("--data-dir")
            .arg(dir)
            .output()
            .expect("run scripts/broker stop");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn port(&self) -> u16 {
        self.addr.rsplit(':').next().unwrap().parse().unwrap()
    }
}

/// The broker of this test binary.
pub fn broker() -> &'static Broker {
    static BROKER: OnceLock<Broker> = OnceLock::new();
    BROKER.get_or_init(|| match std::env::var("AUTHORIZER_TEST_BROKER") {
        Ok(addr) if !addr.is_empty() => Broker { addr, dir: None },
        _ => start_broker_in(None, None),
    })
}

/// A name no other test (or earlier run) uses.
pub fn unique(name: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{name}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A config with unique topic names, created with `partitions` partitions each.
pub fn kafka_with_topics(rt: &tokio::runtime::Runtime, test: &str, partitions: i32) -> KafkaConfig {
    let mut k = KafkaConfig::new(&broker().addr);
    k.account_updates_topic = unique(&format!("{test}-updates"));
    k.authorizations_topic = unique(&format!("{test}-auth"));
    k.dead_letter_topic = format!("{}.dlq", k.account_updates_topic);
    create_topics(rt, &k, partitions);
    k
}

pub fn create_topics(rt: &tokio::runtime::Runtime, k: &KafkaConfig, partitions: i32) {
    rt.block_on(async {
        for t in [
            &k.account_updates_topic,
            &k.authorizations_topic,
            &k.dead_letter_topic,
        ] {
            ensure_topic(k, t, partitions).await.expect("create topic");
        }
    });
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

pub fn raw_producer(k: &KafkaConfig) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", &k.bootstrap)
        .set("broker.address.family", "v4")
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()
        .unwrap()
}

/// Produces `(key, value)` records in order and waits for every acknowledgement.
pub fn produce(
    rt: &tokio::runtime::Runtime,
    k: &KafkaConfig,
    topic: &str,
    records: &[(String, Option<Vec<u8>>)],
) {
    let p = raw_producer(k);
    rt.block_on(async {
        let mut pending = Vec::new();
        for (key, value) in records {
            let mut r: FutureRecord<'_, str, [u8]> = FutureRecord::to(topic).key(key.as_str());
            if let Some(v) = value {
                r = r.payload(v.as_slice());
            }
            pending.push(p.send_result(r).map_err(|(e, _)| e).expect("enqueue"));
        }
        for d in pending {
            d.await.expect("delivery").expect("acknowledged");
        }
    });
}

/// A record read back, with its headers.
#[derive(Debug)]
pub struct Read {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Every record of `topic` (all partitions) up to the high watermarks, partition by partition.
pub fn read_all(k: &KafkaConfig, topic: &str) -> Vec<Read> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &k.bootstrap)
        .set("broker.address.family", "v4")
        .set("enable.auto.commit", "false")
        .set("group.id", "log-test-reader")
        .create()
        .unwrap();
    let parts = authorizer::kafka::partitions_of(&c, k, topic).unwrap();
    let mut out = Vec::new();
    let mut tpl = TopicPartitionList::new();
    let mut remaining = 0i64;
    let mut high = std::collections::BTreeMap::new();
    for p in parts {
        let (lo, hi) = c
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .unwrap();
        tpl.add_partition_offset(topic, p, Offset::Offset(lo))
            .unwrap();
        remaining += hi - lo;
        high.insert(p, hi);
    }
    c.assign(&tpl).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while remaining > 0 {
        assert!(
            Instant::now() < deadline,
            "read_all({topic}): {remaining} records missing after 60 s"
        );
        let Some(m) = c.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = m.expect("consume");
        if m.offset() >= high[&m.partition()] {
            continue;
        }
        remaining -= 1;
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default();
        out.push(Read {
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(<[u8]>::to_vec),
            headers,
        });
    }
    out.sort_by_key(|r| (r.partition, r.offset));
    out
}

pub const PAN_HASH_PREFIX: &str = "5f0e1c2b3a49586776859a0b1c2d3e4f5f0e1c2b3a49586776859a0b1c2d";

pub fn account_json(
    event_id: &str,
    account: u32,
    version: u64,
    limit: i64,
    balance: i64,
) -> Vec<u8> {
    format!(
        r#"{{"schema":1,"type":"account.upserted","event_id":"{event_id}","at":"2026-11-22T10:15:00Z","account_id":"acc-{account:06}","version":{version},"status":"open","currency":"986","credit_limit":{limit},"posted_balance":{balance},"cleared_holds":[]}}"#
    )
    .into_bytes()
}

pub fn card_json(event_id: &str, account: u32, version: u64, status: &str) -> Vec<u8> {
    format!(
        r#"{{"schema":1,"type":"card.upserted","event_id":"{event_id}","at":"2026-11-22T10:15:00Z","account_id":"acc-{account:06}","card_id":"card-{account:06}","version":{version},"pan_hash":"{PAN_HASH_PREFIX}{account:04x}","pan_last4":"0010","expiry":"2811","psn":"01","status":"{status}","key_set":"mc-cvn17-1"}}"#
    )
    .into_bytes()
}

pub fn hold_placed_json(event_id: &str, account: u32, hold: u64, amount: i64) -> Vec<u8> {
    format!(
        r#"{{"schema":1,"type":"hold.placed","event_id":"{event_id}","at":"2026-11-22T10:15:01Z","instance":"auth-a","account_id":"acc-{account:06}","hold_id":"h-{hold:032x}","response_code":"00","amount_minor":{amount},"currency":"986","approval_code":"ABC123","expires_at":"2026-11-29T10:15:00Z","trace":{{"mti":"0100","pan_masked":"541333******0010","transmission_date_time":"1122101500","transmitted_at":"2026-11-22T10:15:00Z","stan":"{stan:06}","acquirer_id":"12345","forwarder_id":"0"}}}}"#,
        stan = hold % 1_000_000
    )
    .into_bytes()
}

/// A mixed workload: per account an upsert, a later upsert, a card; returned as (key, value).
pub fn cloud_events(tag: &str, accounts: u32) -> Vec<(String, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    for a in 0..accounts {
        let key = format!("acc-{a:06}");
        out.push((
            key.clone(),
            Some(account_json(
                &format!("{tag}-a1-{a}"),
                a,
                1,
                100_000 + a as i64,
                0,
            )),
        ));
        out.push((
            key.clone(),
            Some(card_json(&format!("{tag}-c1-{a}"), a, 1, "active")),
        ));
        out.push((
            key,
            Some(account_json(
                &format!("{tag}-a2-{a}"),
                a,
                2,
                200_000,
                1_000 + a as i64,
            )),
        ));
    }
    out
}

/// Hold events for the authorizations topic.
pub fn hold_events(tag: &str, accounts: u32, first_hold: u64) -> Vec<(String, Option<Vec<u8>>)> {
    (0..accounts)
        .map(|a| {
            (
                format!("acc-{a:06}"),
                Some(hold_placed_json(
                    &format!("{tag}-h-{a}"),
                    a,
                    first_hold + a as u64,
                    1_000 + a as i64,
                )),
            )
        })
        .collect()
}
