//! The request pipeline's rules (`docs/pipeline.md`), one test per rule, with test seams: an HSM
//! and a log that are slow (held behind a gate the test opens), fail or refuse on demand. No
//! socket, no broker, no token.

mod pipeline_support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use authorizer::kafka::{
    Applier, DeadLetters, LogMetrics, LogRecord, RecordBatch, Source, TopicPartition,
};
use authorizer::pipeline::{Pipeline, Stage};
use iso8583::{MessageBuilder, Mti};
use ledger::{LedgerConfig, State};
use pipeline_support::*;

// ---- the rules --------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authorization_is_approved_once_its_event_is_durable_and_a_verified_chip_gets_tag_91() {
    let (hsm, log) = (TestHsm::new(Hsm::Verify), TestLog::new(Log::Ack));
    let p = start(&hsm, &log, config());
    let answer = p.handle(chip_authorization(1, 10_000)).await;
    assert_eq!(code(&answer), "00");
    let answer = decode(answer.as_ref().unwrap());
    assert_eq!(answer.mti().as_u16(), 110);
    // The same through the message-typed entry point: the repeat's answer, decoded.
    let repeat = p
        .handle_message(chip_authorization(1, 10_000))
        .await
        .unwrap();
    assert_eq!(
        (repeat.text(39), repeat.text(38)),
        (Some("00"), answer.text(38))
    );
    let de55 = answer.field(55).expect("tag 91 in DE 55");
    assert!(
        de55.windows(3).any(|w| w == [0x91, 10, 0x91]),
        "{de55:02X?}"
    );
    assert_eq!(hsm.calls.load(Ordering::SeqCst), 2);
    assert_eq!(log.published.lock().unwrap().len(), 1);
    assert_eq!(holds(&p).await, (1, i128::from(LIMIT - 10_000)));
    assert_eq!(p.counters().counts.snapshot().acked, 1);
    assert_eq!(
        p.counters().by_code().get(&("0100".into(), "00".into())),
        Some(&2)
    );
    let recorded = |stage| p.counters().stage_histogram(stage).len();
    assert_eq!(
        [Stage::Total, Stage::Hsm, Stage::Ledger, Stage::KafkaAck].map(recorded),
        [2, 2, 2, 1]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_arqc_is_declined_by_the_ledger_not_answered_unavailable() {
    let (hsm, log) = (TestHsm::new(Hsm::Reject), TestLog::new(Log::Ack));
    let p = start(&hsm, &log, config());
    let c = code(&p.handle(chip_authorization(1, 10_000)).await);
    assert_eq!(c, "05");
    // The decline is recorded (a repeat finds it) but holds nothing.
    assert_eq!(holds(&p).await.1, i128::from(LIMIT));
    assert_eq!(p.counters().counts.snapshot().unavailable_hsm_error, 0);
    assert_eq!(p.counters().counts.snapshot().hsm_rejected, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_field_is_answered_30_with_the_field_in_de_44() {
    let (hsm, log) = (TestHsm::new(Hsm::Verify), TestLog::new(Log::Ack));
    let p = start(&hsm, &log, config());
    let mut b = builder(100, 1, 100);
    b.set(14, "2213"); // month 13
    let answer = p.handle(message(&b)).await;
    assert_eq!(code(&answer), "30");
    assert_eq!(decode(answer.as_ref().unwrap()).text(44), Some("014"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_1_an_hsm_slower_than_its_budget_is_answered_unavailable_and_nothing_is_held() {
    let (hsm, log) = (TestHsm::new(Hsm::Held), TestLog::new(Log::Ack));
    let p = start(&hsm, &log, config());
    // The HSM does not answer until the gate opens, which happens only after the answer: the
    // answer cannot have waited for it.
    let answer = p.handle(chip_authorization(1, 10_000)).await;
    assert_eq!(code(&answer), "91");
    assert_eq!(decode(answer.as_ref().unwrap()).mti().as_u16(), 110);
    assert_eq!(holds(&p).await, (0, i128::from(LIMIT)));
    assert!(log.published.lock().unwrap().is_empty());
    assert_eq!(p.counters().counts.snapshot().unavailable_hsm_timeout, 1);
    hsm.open.send(()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_1_an_hsm_that_fails_is_answered_unavailable_and_nothing_is_held() {
    let (hsm, log) = (TestHsm::new(Hsm::Fail), TestLog::new(Log::Ack));
    let mut config = config();
    config.unavailable_code = ledger::ResponseCode(*b"96");
    let p = start(&hsm, &log, config);
    assert_eq!(code(&p.handle(chip_authorization(1, 10_000)).await), "96");
    assert_eq!(holds(&p).await, (0, i128::from(LIMIT)));
    assert_eq!(p.counters().counts.snapshot().unavailable_hsm_error, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_1_busy_hsm_workers_bound_the_calls_and_the_next_request_is_answered_unavailable() {
    let (hsm, log) = (TestHsm::new(Hsm::Held), TestLog::new(Log::Ack));
    let mut config = config();
    config.hsm_workers = 1;
    let p = start(&hsm, &log, config);
    assert_eq!(code(&p.handle(chip_authorization(1, 100)).await), "91");
    // The first call still holds the only worker: the second never reaches the HSM.
    assert_eq!(code(&p.handle(chip_authorization(2, 100)).await), "91");
    assert_eq!(hsm.calls.load(Ordering::SeqCst), 1);
    assert_eq!(p.counters().counts.snapshot().unavailable_hsm_timeout, 2);
    hsm.open.send(()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_2_a_full_ledger_queue_is_answered_unavailable_and_nothing_is_held() {
    let (hsm, log) = (TestHsm::new(Hsm::Verify), TestLog::new(Log::Ack));
    let mut config = config();
    config.ledger_queue = 1;
    let p = start(&hsm, &log, config);
    // Hold the ledger thread inside a command, then fill its one-slot queue.
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let busy = {
        let p = p.clone();
        tokio::spawn(async move {
            p.inspect(move |_| {
                started_tx.send(()).unwrap();
                let _ = release_rx.recv();
            })
            .await
        })
    };
    tokio::task::spawn_blocking(move || started_rx.recv().unwrap())
        .await
        .unwrap();
    let queued = {
        let p = p.clone();
        tokio::spawn(async move { p.inspect(|s| s.counts().holds).await })
    };
    // Wait until the queued command occupies the slot (the busy one was taken off the queue).
    while p.ledger_queue_depth() < 1 {
        tokio::task::yield_now().await;
    }
    let answer = p.handle(authorization(1, 100)).await;
    assert_eq!(code(&answer), "91");
    assert_eq!(p.counters().counts.snapshot().unavailable_queue_full, 1);
    release_tx.send(()).unwrap();
    busy.await.unwrap().unwrap();
    assert_eq!(queued.await.unwrap(), Some(0));
    assert_eq!(holds(&p).await.0, 0);
    assert!(log.published.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_3_an_event_kafka_did_not_acknowledge_in_time_is_spooled_and_answered_normally() {
    let (hsm, log) = (TestHsm::new(Hsm::Verify), TestLog::new(Log::Spool));
    let p = start(&hsm, &log, config());
    assert_eq!(code(&p.handle(authorization(1, 10_000)).await), "00");
    assert_eq!(p.counters().counts.snapshot().spooled, 1);
    assert_eq!(holds(&p).await.0, 1);
    assert!(p.ready());
}

async fn not_durable_diverges_and_replace_state_serves_again(failure: Log) {
    let (hsm, log) = (TestHsm::new(Hsm::Verify), TestLog::new(failure));
    let p = start(&hsm, &log, config());
    assert!(p.ready());
    assert_eq!(code(&p.handle(authorization(1, 10_000)).await), "91");
    assert!(p.diverged());
    assert!(!p.ready());
    assert_eq!(p.counters().counts.snapshot().unavailable_not_durable, 1);
    // Every later request, even one Kafka would take, is answered unavailable.
    log.set(Log::Ack);
    assert_eq!(code(&p.handle(authorization(2, 10_000)).await), "91");
    assert_eq!(p.counters().counts.snapshot().unavailable_not_ready, 1);
    assert!(log.published.lock().unwrap().is_empty());
    // The owner rebuilds the state from the durable log (here: the cloud's events only).
    let old = p
        .replace_state(state(), None)
        .await
        .expect("the ledger thread runs");
    assert_eq!(
        old.counts().holds,
        1,
        "the phantom hold was in the old state"
    );
    assert!(p.ready() && !p.diverged());
    assert_eq!(holds(&p).await, (0, i128::from(LIMIT)));
    assert_eq!(code(&p.handle(authorization(3, 10_000)).await), "00");
    assert_eq!(holds(&p).await, (1, i128::from(LIMIT - 10_000)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_4_an_event_neither_kafka_nor_the_spool_took_is_not_approved_and_the_replica_diverges()
{
    not_durable_diverges_and_replace_state_serves_again(Log::Fail).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_4_an_event_in_doubt_is_not_approved_and_the_replica_diverges() {
    not_durable_diverges_and_replace_state_serves_again(Log::InDoubt).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_5_a_late_answer_is_not_sent_the_publish_completes_and_the_hold_stays() {
    let (hsm, log) = (TestHsm::new(Hsm::Verify), TestLog::new(Log::Held));
    let mut config = config();
    config.answer_budget = Duration::from_millis(50);
    let p = start(&hsm, &log, config);
    // Kafka holds the publish until the gate opens, after the budget.
    assert_eq!(p.handle(authorization(1, 10_000)).await, None);
    assert_eq!(p.counters().counts.snapshot().late, 1);
    log.gate.add_permits(1);
    log.completed().await;
    assert_eq!(
        log.published.lock().unwrap().len(),
        1,
        "the publish was not cancelled"
    );
    assert_eq!(hold_amount(&p, 1).await, Some(10_000));
    assert!(p.ready());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_5_the_stand_in_advice_of_a_late_approval_reconciles_to_one_hold() {
    let (hsm, log) = (TestHsm::new(Hsm::Verify), TestLog::new(Log::Held));
    let mut config = config();
    config.answer_budget = Duration::from_millis(50);
    let p = start(&hsm, &log, config);
    assert_eq!(p.handle(authorization(1, 10_000)).await, None);
    log.gate.add_permits(1);
    log.completed().await;
    log.set(Log::Ack);
    // The network stood in and approved 80.00 instead: the advice replaces the hold's amount.
    let mut advice = builder(120, 1, 8_000);
    advice.set(39, "00");
    let answer = p.handle(message(&advice)).await;
    assert_eq!(code(&answer), "00");
    assert_eq!(decode(answer.as_ref().unwrap()).mti().as_u16(), 130);
    assert_eq!(holds(&p).await, (1, i128::from(LIMIT - 8_000)));
    assert_eq!(hold_amount(&p, 1).await, Some(8_000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_5_a_stand_in_decline_advice_releases_the_late_approvals_hold() {
    let (hsm, log) = (TestHsm::new(Hsm::Verify), TestLog::new(Log::Held));
    let mut config = config();
    config.answer_budget = Duration::from_millis(50);
    let p = start(&hsm, &log, config);
    assert_eq!(p.handle(authorization(1, 10_000)).await, None);
    log.gate.add_permits(1);
    log.completed().await;
    log.set(Log::Ack);
    let mut advice = builder(120, 1, 10_000);
    advice.set(39, "05");
    assert_eq!(code(&p.handle(message(&advice)).await), "00");
    // The hold record stays (an adjusted hold of 0 until it expires), holding nothing.
    assert_eq!(hold_amount(&p, 1).await, Some(0));
    assert_eq!(holds(&p).await, (1, i128::from(LIMIT)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_5_a_reversal_of_a_late_approval_releases_its_hold() {
    let (hsm, log) = (TestHsm::new(Hsm::Verify), TestLog::new(Log::Held));
    let mut config = config();
    config.answer_budget = Duration::from_millis(50);
    let p = start(&hsm, &log, config);
    assert_eq!(p.handle(authorization(1, 10_000)).await, None);
    log.gate.add_permits(1);
    log.completed().await;
    log.set(Log::Ack);
    let mut reversal = builder(420, 2, 10_000);
    reversal.set(
        90,
        format!("0100{:06}{}{:011}{:011}", 1, "1122101500", 12345, 0),
    );
    let answer = p.handle(message(&reversal)).await;
    assert_eq!(code(&answer), "00");
    assert_eq!(decode(answer.as_ref().unwrap()).mti().as_u16(), 430);
    assert_eq!(holds(&p).await.1, i128::from(LIMIT));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_6_many_requests_in_flight_are_each_answered_their_own_answer() {
    let (hsm, log) = (TestHsm::new(Hsm::Verify), TestLog::new(Log::Ack));
    let p = start(&hsm, &log, config());
    let mut tasks = Vec::new();
    for stan in 1..=300u32 {
        let p = p.clone();
        let request = if stan % 3 == 0 {
            chip_authorization(stan, 100)
        } else {
            authorization(stan, 100)
        };
        tasks.push(tokio::spawn(async move { (stan, p.handle(request).await) }));
    }
    // Requests in flight reach the ledger in any order: a chip request overtaken by one with a
    // higher ATC of the same card is an ATC replay (05), decided and published like any decline.
    let mut approvals = BTreeMap::new();
    for t in tasks {
        let (stan, answer) = t.await.unwrap();
        let answer = decode(answer.as_ref().unwrap());
        assert_eq!(answer.stan(), Some(stan));
        let code = answer.text(39).unwrap();
        if stan % 3 == 0 && code == "05" {
            continue;
        }
        assert_eq!(code, "00", "stan {stan}");
        approvals.insert(stan, answer.text(38).unwrap().to_owned());
    }
    let approved = approvals.len() as i64;
    assert!(
        approved >= 201,
        "every magstripe request and at least one chip request approved"
    );
    assert_eq!(holds(&p).await, (300, i128::from(LIMIT - approved * 100)));
    assert_eq!(log.published.lock().unwrap().len(), 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_6_a_repeat_is_answered_the_first_answer_once_the_first_event_is_durable() {
    let (hsm, log) = (TestHsm::new(Hsm::Verify), TestLog::new(Log::Held));
    let p = start(&hsm, &log, config());
    let first = tokio::spawn({
        let p = p.clone();
        async move { p.handle(authorization(1, 10_000)).await }
    });
    // The first decision is in the state (its hold is there) while its event is not durable.
    while hold_amount(&p, 1).await.is_none() {
        tokio::task::yield_now().await;
    }
    let repeat = tokio::spawn({
        let p = p.clone();
        async move { p.handle(message(&builder(101, 1, 10_000))).await }
    });
    // Once the repeat is decided (answered from the first decision), it must wait for the
    // first event, not answer.
    while p.decisions() < 2 {
        tokio::task::yield_now().await;
    }
    p.inspect(|_| ()).await.unwrap();
    assert!(!repeat.is_finished());
    log.gate.add_permits(1);
    let (first, repeat) = (first.await.unwrap(), repeat.await.unwrap());
    let (first, repeat) = (
        decode(first.as_ref().unwrap()),
        decode(repeat.as_ref().unwrap()),
    );
    assert_eq!(first.text(39), Some("00"));
    assert_eq!(repeat.text(39), Some("00"));
    assert_eq!(first.text(38), repeat.text(38));
    assert_eq!(holds(&p).await, (1, i128::from(LIMIT - 10_000)));
    assert_eq!(log.published.lock().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_6_a_repeat_of_a_decision_whose_event_failed_is_not_approved() {
    let (hsm, log) = (TestHsm::new(Hsm::Verify), TestLog::new(Log::Held));
    let p = start(&hsm, &log, config());
    let first = tokio::spawn({
        let p = p.clone();
        async move { p.handle(authorization(1, 10_000)).await }
    });
    while hold_amount(&p, 1).await.is_none() {
        tokio::task::yield_now().await;
    }
    let repeat = tokio::spawn({
        let p = p.clone();
        async move { p.handle(message(&builder(101, 1, 10_000))).await }
    });
    while p.decisions() < 2 {
        tokio::task::yield_now().await;
    }
    // The held publish fails once its gate closes.
    log.gate.close();
    let first = first.await.unwrap();
    let repeat = repeat.await.unwrap();
    assert_eq!(code(&first), "91");
    assert_eq!(code(&repeat), "91");
    assert!(p.diverged());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_6_network_management_is_not_the_pipelines() {
    let (hsm, log) = (TestHsm::new(Hsm::Verify), TestLog::new(Log::Ack));
    let p = start(&hsm, &log, config());
    let mut b = MessageBuilder::new(Mti::from_u16(800).unwrap());
    b.set(7, "1122101500").set(11, "000001").set(70, "301");
    assert_eq!(p.handle(message(&b)).await, None);
    assert_eq!(p.counters().counts.snapshot().not_ours, 1);
    assert!(p.counters().by_code().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_logs_records_are_applied_on_the_ledger_thread_and_readiness_waits_for_the_catch_up() {
    let (hsm, log) = (TestHsm::new(Hsm::Verify), TestLog::new(Log::Ack));
    let topic = "account-updates".to_owned();
    let tp = TopicPartition::new(topic.clone(), 0);
    let applier = Applier::for_partitions(
        &[(Source::AccountUpdates, topic)],
        &[(tp.clone(), 0)].into_iter().collect(),
        &[(tp, 2)].into_iter().collect(),
        DeadLetters::Collect {
            kept: Vec::new(),
            keep_max: 8,
        },
        Arc::new(LogMetrics::default()),
    );
    let (p, ledger) = Pipeline::start_with_applier(
        State::new(LedgerConfig::default()),
        applier,
        config(),
        hsm.clone(),
        Arc::new(Shared(log.clone())),
    );
    assert!(!p.ready());
    assert_eq!(code(&p.handle(authorization(1, 100)).await), "91");
    let record = |offset, payload: Vec<u8>| LogRecord {
        source: Source::AccountUpdates,
        partition: 0,
        offset,
        key: Some(b"acc-1".to_vec()),
        payload: Some(payload),
    };
    let batch = RecordBatch::parse(vec![record(0, account_json(1)), record(1, card_json())]);
    let p2 = p.clone();
    assert!(
        tokio::task::spawn_blocking(move || p2.apply_log(batch))
            .await
            .unwrap()
    );
    assert_eq!(holds(&p).await, (0, i128::from(LIMIT)));
    assert!(p.ready());
    assert_eq!(code(&p.handle(authorization(2, 100)).await), "00");
    drop(p);
    let state = tokio::task::spawn_blocking(move || ledger.stop())
        .await
        .unwrap();
    assert_eq!(state.counts().holds, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_state_with_its_own_applier_is_ready_only_once_that_applier_caught_up() {
    let (hsm, log) = (TestHsm::new(Hsm::Verify), TestLog::new(Log::Fail));
    let p = start(&hsm, &log, config());
    assert_eq!(code(&p.handle(authorization(1, 100)).await), "91");
    assert!(p.diverged());
    // The rebuilt state is at offset 1 of a partition whose end is 2: not caught up yet.
    let topic = "account-updates".to_owned();
    let tp = TopicPartition::new(topic.clone(), 0);
    let applier = Applier::for_partitions(
        &[(Source::AccountUpdates, topic)],
        &[(tp.clone(), 1)].into_iter().collect(),
        &[(tp, 2)].into_iter().collect(),
        DeadLetters::Collect {
            kept: Vec::new(),
            keep_max: 8,
        },
        Arc::new(LogMetrics::default()),
    );
    let mut rebuilt = State::new(LedgerConfig::default());
    rebuilt
        .apply_json(Source::AccountUpdates, &account_json(1))
        .unwrap();
    p.replace_state(rebuilt, Some(applier)).await.unwrap();
    assert!(!p.diverged());
    assert!(!p.ready());
    let batch = RecordBatch::parse(vec![LogRecord {
        source: Source::AccountUpdates,
        partition: 0,
        offset: 1,
        key: Some(b"acc-1".to_vec()),
        payload: Some(card_json()),
    }]);
    let p2 = p.clone();
    assert!(
        tokio::task::spawn_blocking(move || p2.apply_log(batch))
            .await
            .unwrap()
    );
    p.inspect(|_| ()).await.unwrap();
    assert!(p.ready());
    log.set(Log::Ack);
    assert_eq!(code(&p.handle(authorization(2, 100)).await), "00");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_1_an_arpc_never_waits_for_a_worker_held_by_a_verification_waiting_for_its_session() {
    let hsm = Arc::new(PooledHsm {
        sessions: Arc::new(SessionPool {
            free: std::sync::Mutex::new(1),
            changed: std::sync::Condvar::new(),
            waiting: AtomicUsize::new(0),
            contend: std::sync::atomic::AtomicBool::new(true),
        }),
    });
    let log = TestLog::new(Log::Ack);
    let mut config = config();
    config.hsm_workers = 1;
    config.hsm_budget = Duration::from_secs(2);
    let (p, ledger) = Pipeline::start(state(), config, hsm, Arc::new(Shared(log.clone())));
    std::mem::forget(ledger);
    let tasks: Vec<_> = (1..=2)
        .map(|stan| {
            let p = p.clone();
            tokio::spawn(async move { p.handle(chip_authorization(stan, 100)).await })
        })
        .collect();
    // The two may reach the ledger in either order: the later ATC first makes the other an ATC
    // replay (05). Approved or declined, a verified ARQC gets its tag 91.
    let mut approved = 0;
    for t in tasks {
        let answer = t.await.unwrap();
        let code = code(&answer);
        assert!(code == "00" || code == "05", "{code}");
        approved += usize::from(code == "00");
        assert!(
            decode(answer.as_ref().unwrap()).field(55).is_some(),
            "tag 91"
        );
    }
    assert!(approved >= 1);
    let c = p.counters().counts.snapshot();
    assert_eq!((c.arpc_failed, c.hsm_verified), (0, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_another_replica_published_lowers_open_to_buy_for_the_next_decision() {
    let (hsm, log) = (TestHsm::new(Hsm::Verify), TestLog::new(Log::Ack));
    let topic = "authorizations".to_owned();
    let tp = TopicPartition::new(topic.clone(), 0);
    let applier = Applier::for_partitions(
        &[(Source::Authorizations, topic)],
        &[(tp.clone(), 0)].into_iter().collect(),
        &[(tp, 0)].into_iter().collect(),
        DeadLetters::Collect {
            kept: Vec::new(),
            keep_max: 8,
        },
        Arc::new(LogMetrics::default()),
    );
    let (p, ledger) = Pipeline::start_with_applier(
        state(),
        applier,
        config(),
        hsm.clone(),
        Arc::new(Shared(log.clone())),
    );
    std::mem::forget(ledger);
    let placed = format!(
        r#"{{"schema":1,"type":"hold.placed","event_id":"b-1","at":"2026-11-22T10:15:01Z","instance":"auth-b","account_id":"acc-1","hold_id":"h-00112233445566778899aabbccddeeff","response_code":"00","amount_minor":{},"currency":"986","approval_code":"ABC123","expires_at":"2026-11-29T10:15:00Z","trace":{{"mti":"0100","pan_masked":"541333******0434","transmission_date_time":"1122101500","transmitted_at":"2026-11-22T10:15:00Z","stan":"999999","acquirer_id":"12345","forwarder_id":"0"}}}}"#,
        LIMIT - 50
    );
    let batch = RecordBatch::parse(vec![LogRecord {
        source: Source::Authorizations,
        partition: 0,
        offset: 0,
        key: Some(b"acc-1".to_vec()),
        payload: Some(placed.into_bytes()),
    }]);
    let p2 = p.clone();
    assert!(
        tokio::task::spawn_blocking(move || p2.apply_log(batch))
            .await
            .unwrap()
    );
    assert_eq!(holds(&p).await, (1, 50));
    assert_eq!(code(&p.handle(authorization(1, 100)).await), "51");
    assert_eq!(code(&p.handle(authorization(2, 50)).await), "00");
}
