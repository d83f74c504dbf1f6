//! The log side against a real Kafka-protocol broker (tansu, sqlite storage), started by
//! `scripts/broker` once for this binary. Each test uses its own topics.

mod kafka_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use authorizer::kafka::dlq::{
    HEADER_REASON, HEADER_SOURCE_OFFSET, HEADER_SOURCE_PARTITION, HEADER_SOURCE_TOPIC,
};
use authorizer::kafka::{
    Apply, DeadLetterWriter, Delivery, Follower, KafkaConfig, LogMetrics, LogRecord, Outbound,
    Publisher, PublisherConfig, ReplayOptions, StartOffsets, replay,
};
use kafka_support::*;
use ledger::{Event, EventError, LedgerConfig, Source, State};

const WAIT: Duration = Duration::from_secs(120);

fn new_state() -> State {
    State::new(LedgerConfig::default())
}

/// The same events applied directly, in topic order (account-updates then authorizations).
fn direct(updates: &[(String, Option<Vec<u8>>)], auths: &[(String, Option<Vec<u8>>)]) -> State {
    let mut s = new_state();
    for (_, v) in updates {
        let _ = s.apply_json(Source::AccountUpdates, v.as_deref().unwrap_or_default());
    }
    for (_, v) in auths {
        let _ = s.apply_json(Source::Authorizations, v.as_deref().unwrap_or_default());
    }
    s
}

fn replay_all(
    k: &KafkaConfig,
    start: StartOffsets,
    state: State,
) -> authorizer::kafka::ReplayReport<State> {
    let mut opts = ReplayOptions::from_beginning(k);
    opts.start = start;
    replay(k, &opts, state, Arc::new(LogMetrics::default())).expect("replay")
}

#[test]
fn contract_events_replayed_from_kafka_give_the_direct_state_hash() {
    let rt = runtime();
    let k = kafka_with_topics(&rt, "contract", 3);
    let updates = cloud_events("c", 200);
    let auths = hold_events("c", 200, 1);
    produce(&rt, &k, &k.account_updates_topic, &updates);
    produce(&rt, &k, &k.authorizations_topic, &auths);

    let report = replay_all(&k, StartOffsets::Beginning, new_state());
    let expected = direct(&updates, &auths);
    assert_eq!(report.progress.applied, 800);
    assert_eq!(report.progress.rejected, 0);
    assert!(report.progress.ready);
    assert_eq!(report.state.counts().accounts, 200);
    assert_eq!(report.state.counts().cards, 200);
    assert_eq!(report.state.counts().holds, 200);
    assert_eq!(report.state.state_hash(), expected.state_hash());
    // The offsets are the end of the log: 6 partitions, 800 records in all.
    assert_eq!(report.offsets.len(), 6);
    assert_eq!(report.offsets.values().sum::<i64>(), 800);
}

#[test]
fn replay_from_mid_log_offsets_plus_that_state_equals_a_full_replay() {
    let rt = runtime();
    let k = kafka_with_topics(&rt, "resume", 4);
    let first = cloud_events("r1", 100);
    produce(&rt, &k, &k.account_updates_topic, &first);
    produce(&rt, &k, &k.authorizations_topic, &hold_events("r1", 50, 1));
    let mid = replay_all(&k, StartOffsets::Beginning, new_state());
    assert_eq!(mid.progress.applied, 350);

    // More of everything, including newer versions of the same accounts.
    let mut second = cloud_events("r2", 150);
    for (_, v) in second.iter_mut() {
        let text = String::from_utf8(v.take().unwrap()).unwrap();
        *v = Some(
            text.replace("\"version\":1,", "\"version\":3,")
                .replace("\"version\":2,", "\"version\":4,")
                .into_bytes(),
        );
    }
    produce(&rt, &k, &k.account_updates_topic, &second);
    produce(
        &rt,
        &k,
        &k.authorizations_topic,
        &hold_events("r2", 150, 1_000),
    );

    // The state at that point goes through a real snapshot file, as a restart would.
    let resume = authorizer::kafka::snapshot_offsets(&mid.offsets).unwrap();
    let mut file = Vec::new();
    ledger::snapshot::write(&mut file, &mid.state, &resume, 0).unwrap();
    let (restored, read_offsets, _) = ledger::snapshot::read(file.as_slice()).unwrap();
    assert_eq!(restored.state_hash(), mid.state.state_hash());
    let start = authorizer::kafka::offsets_from_snapshot(&read_offsets);
    assert_eq!(start, mid.offsets);
    let resumed = replay_all(&k, StartOffsets::At(start), restored);
    let full = replay_all(&k, StartOffsets::Beginning, new_state());
    assert_eq!(
        resumed.progress.applied,
        450 + 150,
        "only the records after the offsets"
    );
    assert_eq!(full.progress.applied, 350 + 600);
    assert_eq!(resumed.offsets, full.offsets);
    assert_eq!(resumed.state.state_hash(), full.state.state_hash());
    // Counts of the state (the dedup window is replica-local memory, not state).
    let state_counts = |s: &State| ledger::Counts {
        dedup_window: 0,
        ..s.counts()
    };
    assert_eq!(state_counts(&resumed.state), state_counts(&full.state));
}

#[test]
fn invalid_events_go_to_the_dead_letter_topic_and_consumption_continues() {
    let rt = runtime();
    let k = kafka_with_topics(&rt, "dlq", 2);
    let good = cloud_events("g", 20);
    let bad: Vec<(&str, Option<Vec<u8>>)> = vec![
        ("garbage", Some(b"\x00\xffnot json at all".to_vec())),
        (
            "truncated",
            Some(account_json("t1", 1, 5, 100, 0)[..60].to_vec()),
        ),
        (
            "wrong type",
            Some(
                String::from_utf8(account_json("t2", 1, 5, 100, 0))
                    .unwrap()
                    .replace("\"credit_limit\":100", "\"credit_limit\":\"100\"")
                    .into_bytes(),
            ),
        ),
        ("negative limit", Some(account_json("t3", 1, 5, -1, 0))),
        (
            "unknown status",
            Some(
                String::from_utf8(account_json("t4", 1, 5, 100, 0))
                    .unwrap()
                    .replace("\"open\"", "\"dormant\"")
                    .into_bytes(),
            ),
        ),
        (
            "bad pan_hash",
            Some(
                String::from_utf8(card_json("t5", 1, 5, "active"))
                    .unwrap()
                    .replace(PAN_HASH_PREFIX, "zz")
                    .into_bytes(),
            ),
        ),
        ("tombstone", None),
    ];
    // Interleave: a bad event after every third good one, same keys so they share partitions.
    let mut records = Vec::new();
    let mut bad_iter = bad.iter();
    for (i, g) in good.iter().enumerate() {
        records.push(g.clone());
        if i % 3 == 2
            && let Some((_, v)) = bad_iter.next()
        {
            records.push((g.0.clone(), v.clone()));
        }
    }
    for (_, v) in bad_iter {
        records.push(("acc-000001".into(), v.clone()));
    }
    produce(&rt, &k, &k.account_updates_topic, &records);

    let metrics = Arc::new(LogMetrics::default());
    let _guard = rt.enter();
    let (writer, dlq_tx) = DeadLetterWriter::spawn(&k, metrics.clone()).unwrap();
    let follower = Follower::start(
        &k,
        &ReplayOptions::from_beginning(&k),
        new_state(),
        dlq_tx,
        metrics.clone(),
    )
    .unwrap();
    let (view, ok) = follower.wait_until(WAIT, |v| {
        v.progress.applied + v.progress.rejected == records.len() as u64
    });
    assert!(ok, "not all records consumed: {view:?}");
    assert!(view.progress.ready);
    assert_eq!(view.progress.applied, good.len() as u64);
    assert_eq!(view.progress.rejected, bad.len() as u64);
    let state = follower.stop();
    rt.block_on(writer.finish());
    assert_eq!(metrics.snapshot().dead_letters_written, bad.len() as u64);
    // Nothing else affected: the state is that of the good events alone.
    assert_eq!(state.state_hash(), direct(&good, &[]).state_hash());

    let letters = read_all(&k, &k.dead_letter_topic);
    assert_eq!(letters.len(), bad.len());
    let sources = read_all(&k, &k.account_updates_topic);
    for letter in &letters {
        let h = |name: &str| {
            let v = &letter
                .headers
                .iter()
                .find(|(k, _)| k == name)
                .unwrap_or_else(|| panic!("header {name} missing: {letter:?}"))
                .1;
            String::from_utf8(v.clone()).unwrap()
        };
        assert_eq!(h(HEADER_SOURCE_TOPIC), k.account_updates_topic);
        let partition: i32 = h(HEADER_SOURCE_PARTITION).parse().unwrap();
        let offset: i64 = h(HEADER_SOURCE_OFFSET).parse().unwrap();
        let source = sources
            .iter()
            .find(|s| s.partition == partition && s.offset == offset)
            .expect("source record exists");
        assert_eq!(
            letter.value, source.value,
            "the dead letter carries the original bytes"
        );
        assert_eq!(letter.key, source.key);
        // The reason is the ledger's own rejection of those bytes.
        let expected: String = match &source.value {
            None => "record has no value (a tombstone); events are never deleted".into(),
            Some(v) => new_state()
                .apply_json(Source::AccountUpdates, v)
                .map(|_| ())
                .unwrap_err()
                .to_string(),
        };
        assert_eq!(h(HEADER_REASON), expected);
    }
}

#[test]
fn duplicate_delivery_changes_nothing() {
    let rt = runtime();
    let k = kafka_with_topics(&rt, "dup", 3);
    let updates = cloud_events("d", 100);
    let auths = hold_events("d", 100, 7);
    produce(&rt, &k, &k.account_updates_topic, &updates);
    produce(&rt, &k, &k.authorizations_topic, &auths);
    let once = replay_all(&k, StartOffsets::Beginning, new_state());
    // Every event delivered again (a producer retry, a republished spool record), twice.
    produce(&rt, &k, &k.account_updates_topic, &updates);
    produce(&rt, &k, &k.authorizations_topic, &auths);
    produce(&rt, &k, &k.authorizations_topic, &auths);
    let thrice = replay_all(&k, StartOffsets::Beginning, new_state());
    assert_eq!(
        thrice.progress.applied + thrice.progress.rejected,
        2 * 400 + 100
    );
    assert_eq!(thrice.progress.rejected, 0);
    assert_eq!(thrice.state.state_hash(), once.state.state_hash());
    assert_eq!(thrice.state.counts().holds, once.state.counts().holds);
    // Applying the tail again on top of the final state changes nothing either.
    let again = replay_all(&k, StartOffsets::At(once.offsets.clone()), thrice.state);
    assert_eq!(again.state.state_hash(), once.state.state_hash());
}

/// A state whose apply waits while a gate is closed: a ledger that is behind.
struct Gated {
    inner: State,
    open: Arc<AtomicBool>,
}

impl Apply for Gated {
    type Rejection = EventError;
    fn apply(
        &mut self,
        record: &LogRecord,
        event: &Result<Event<'_>, EventError>,
    ) -> Result<(), EventError> {
        while !self.open.load(Ordering::Acquire) {
            std::thread::park_timeout(Duration::from_millis(5));
        }
        Apply::apply(&mut self.inner, record, event)
    }
}

#[test]
fn consumer_pauses_while_the_ledger_is_behind_and_loses_nothing() {
    let rt = runtime();
    let k = kafka_with_topics(&rt, "pause", 2);
    let updates = cloud_events("p", 1_000);
    produce(&rt, &k, &k.account_updates_topic, &updates);
    let open = Arc::new(AtomicBool::new(false));
    let metrics = Arc::new(LogMetrics::default());
    let mut opts = ReplayOptions::from_beginning(&k);
    opts.queue_batches = 1;
    opts.consumer.batch_records_max = 16;
    let _guard = rt.enter();
    let (_writer, dlq_tx) = DeadLetterWriter::spawn(&k, metrics.clone()).unwrap();
    let follower = Follower::start(
        &k,
        &opts,
        Gated {
            inner: new_state(),
            open: open.clone(),
        },
        dlq_tx,
        metrics.clone(),
    )
    .unwrap();
    let deadline = Instant::now() + WAIT;
    while metrics.snapshot().consumer_pauses == 0 {
        assert!(Instant::now() < deadline, "the consumer never paused");
        std::thread::park_timeout(Duration::from_millis(10));
    }
    assert!(!follower.view().progress.ready);
    open.store(true, Ordering::Release);
    let (view, ok) = follower.wait_until(WAIT, |v| v.progress.ready);
    assert!(ok, "{view:?}");
    assert_eq!(view.progress.applied, 3_000);
    let state = follower.stop();
    assert_eq!(state.inner.state_hash(), direct(&updates, &[]).state_hash());
    assert_eq!(metrics.snapshot().total_lag(), 0);
}

#[test]
fn published_events_are_acknowledged_within_budget_and_read_back() {
    let rt = runtime();
    let k = kafka_with_topics(&rt, "publish", 3);
    let spool = tempfile::tempdir().unwrap();
    let metrics = Arc::new(LogMetrics::default());
    let events = hold_events("pub", 300, 1);
    let _guard = rt.enter();
    let publisher =
        Publisher::open(&k, PublisherConfig::new(spool.path()), metrics.clone()).unwrap();
    rt.block_on(async {
        for (key, v) in &events {
            let payload = v.clone().unwrap();
            let event = Outbound {
                key: key.clone(),
                event_id: key.clone(),
                payload,
            };
            let d = publisher
                .publish(&event, Duration::from_secs(10))
                .await
                .unwrap();
            assert!(matches!(d, Delivery::Acked { .. }), "{d:?}");
        }
    });
    assert_eq!(publisher.spool_depth(), 0);
    let m = metrics.snapshot();
    assert_eq!(m.produce_count, 300);
    assert!(m.produce_latency_us_p50 > 0 && m.produce_latency_us_p99 >= m.produce_latency_us_p50);
    rt.block_on(publisher.close());
    // Keyed by account: each account's events sit in one partition; the state matches.
    let report = replay_all(&k, StartOffsets::Beginning, new_state());
    assert_eq!(report.progress.applied, 300);
    assert_eq!(report.state.state_hash(), direct(&[], &events).state_hash());
}
