//! Ledger benchmarks (a bench binary printing figures):
//! * events applied per second from JSON bytes (mix of the four kinds a replica reads), with
//!   the parse alone and the apply alone (events parsed beforehand) for the breakdown;
//! * bytes of memory per account, per card and per hold (counting allocator).
//!
//! Run: `cargo bench -p authorizer --bench ledger_bench` (`-- apply_json`: only the throughput).

#[path = "../ledger/benches/ledger_support/mod.rs"]
mod support;

use std::time::Instant;

use ledger::{LedgerConfig, Source, State};
use std::sync::mpsc::TrySendError;

use authorizer::kafka::{
    Applier, Consumed, DeadLetters, Job, LogMetrics, LogRecord, Offsets, ParsePool, RecordBatch,
    TopicPartition,
};

#[global_allocator]
static ALLOCATOR: support::Counting = support::Counting;

fn memory() {
    const N: u64 = 1_000_000;
    // The dedup window is replica-local bookkeeping, measured separately.
    let mut state = State::new(LedgerConfig {
        dedup_window_events: 1,
    });
    let (base, base_allocs) = support::live();
    for i in 0..N {
        state.apply(&support::account_event(i, 1_000_000)).unwrap();
    }
    let (after_accounts, after_accounts_allocs) = support::live();
    for i in 0..N {
        state.apply(&support::card_event(i)).unwrap();
    }
    let (after_cards, after_cards_allocs) = support::live();
    for i in 0..N {
        state.apply(&support::hold_event(i, i)).unwrap();
    }
    let (after_holds, after_holds_allocs) = support::live();
    let per = |bytes: i64, allocs: i64| (bytes as f64 / N as f64, allocs as f64 / N as f64);
    let (a, aa) = per(after_accounts - base, after_accounts_allocs - base_allocs);
    let (c, ca) = per(
        after_cards - after_accounts,
        after_cards_allocs - after_accounts_allocs,
    );
    let (h, ha) = per(
        after_holds - after_cards,
        after_holds_allocs - after_cards_allocs,
    );
    println!("memory, {N} each (heap bytes requested; allocations per item in brackets):");
    println!("  per account: {a:.1} bytes [{aa:.2} allocations]");
    println!("  per card:    {c:.1} bytes [{ca:.2} allocations]");
    println!("  per hold:    {h:.1} bytes [{ha:.2} allocations] (first hold of an account)");
    let counts = state.counts();
    assert_eq!((counts.accounts, counts.cards, counts.holds), (N, N, N));
    let mut window = State::new(LedgerConfig::default());
    let (before_window, _) = support::live();
    for i in 0..(1u64 << 20) {
        let mut event = support::account_event(i % 16, i as i64);
        if let ledger::Event::AccountUpserted(e) = &mut event {
            e.event_id = format!("w-{i}").into();
            e.version = ledger::Version(i);
        }
        window.apply(&event).unwrap();
    }
    let (after_window, _) = support::live();
    println!(
        "  dedup window ({} event ids, 16 accounts): {:.1} MiB",
        window.counts().dedup_window,
        (after_window - before_window) as f64 / 1048576.0
    );
}

/// Events per batch in the batched pass (the consumer hands the ledger thread batches).
const BATCH: usize = 256;
/// Records per consumer batch (`ConsumerOptions::batch_records_max`'s default).
const CONSUMER_BATCH: usize = 1024;
/// Accounts (and cards) of the state the events apply to.
const ACCOUNTS: u64 = 100_000;

fn apply_json(events_total: u64) {
    let mut state = State::new(LedgerConfig::default());
    support::build(&mut state, ACCOUNTS, 1_000_000);
    // A mix: 50% hold.placed, 20% hold.released, 20% account.upserted, 10% card.upserted.
    let mut payloads: Vec<(Source, Vec<u8>)> = Vec::with_capacity(events_total as usize);
    for i in 0..events_total {
        let account = i % ACCOUNTS;
        let (source, json) = match i % 10 {
            0..=4 => {
                let ledger::Event::Authorization(e) = support::hold_event(i, account) else { unreachable!() };
                (Source::Authorizations, e.to_json())
            }
            5 | 6 => {
                let ledger::Event::Authorization(mut e) = support::hold_event(i - 5, (i - 5) % ACCOUNTS) else { unreachable!() };
                e.kind = ledger::AuthorizationKind::HoldReleased;
                e.content_fingerprint = None;
                e.event_id = format!("r-{i}").into();
                e.remaining_minor = Some(ledger::AmountMinor::ZERO);
                e.expires_at = None;
                (Source::Authorizations, e.to_json())
            }
            7 | 8 => (
                Source::AccountUpdates,
                format!(
                    r#"{{"schema":1,"type":"account.upserted","event_id":"{:08x}-1111-4222-8333-{:012x}","at":"2026-11-22T10:15:00Z","account_id":"acc-{account:08}","version":{},"status":"open","currency":"986","credit_limit":500000,"posted_balance":{},"cleared_holds":[]}}"#,
                    i, i, 2 + i / ACCOUNTS, i % 1000
                )
                .into_bytes(),
            ),
            _ => (
                Source::AccountUpdates,
                format!(
                    r#"{{"schema":1,"type":"card.upserted","event_id":"{:08x}-2222-4222-8333-{:012x}","at":"2026-11-22T10:15:00Z","account_id":"acc-{account:08}","card_id":"card-{account:08}","version":{},"pan_hash":"{}","pan_last4":"0010","expiry":"2811","psn":"01","status":"active","key_set":"mc-cvn17-1"}}"#,
                    i, i, 2 + i / ACCOUNTS, hex::encode(support::pan_hash(account).0)
                )
                .into_bytes(),
            ),
        };
        payloads.push((source, json));
    }
    let bytes: usize = payloads.iter().map(|(_, p)| p.len()).sum();
    let started = Instant::now();
    let mut parsed = 0u64;
    for (source, payload) in &payloads {
        parsed += u64::from(ledger::Event::parse(*source, payload).is_ok());
    }
    let elapsed = started.elapsed();
    println!(
        "parse only: {parsed} events in {:.3} s = {:.0} events/s",
        elapsed.as_secs_f64(),
        events_total as f64 / elapsed.as_secs_f64()
    );
    // The apply alone, on a copy of the state, from events parsed beforehand.
    let mut copy = State::new(LedgerConfig::default());
    support::build(&mut copy, ACCOUNTS, 1_000_000);
    let events: Vec<ledger::Event<'_>> = payloads
        .iter()
        .map(|(source, payload)| ledger::Event::parse(*source, payload).unwrap())
        .collect();
    let started = Instant::now();
    for event in &events {
        copy.apply(event).unwrap();
    }
    let elapsed = started.elapsed();
    println!(
        "apply only: {} events in {:.3} s = {:.0} events/s",
        events.len(),
        elapsed.as_secs_f64(),
        events.len() as f64 / elapsed.as_secs_f64()
    );
    let copy_hash = copy.state_hash();
    drop(events);
    drop(copy);
    let (_, allocs_before) = support::live();
    let started = Instant::now();
    let mut changed = 0u64;
    for (source, payload) in &payloads {
        if state.apply_json(*source, payload).unwrap() == ledger::Applied::Changed {
            changed += 1;
        }
    }
    let elapsed = started.elapsed();
    let (_, allocs_after) = support::live();
    println!(
        "apply_json: {events_total} events ({:.0} bytes avg, {changed} changed) in {:.3} s = {:.0} events/s; net live allocations {}",
        bytes as f64 / events_total as f64,
        elapsed.as_secs_f64(),
        events_total as f64 / elapsed.as_secs_f64(),
        allocs_after - allocs_before
    );
    // What the ledger thread does with a batch from the consumer: parse the batch, start loading
    // what its events will read, apply them in order.
    let mut batched = State::new(LedgerConfig::default());
    support::build(&mut batched, ACCOUNTS, 1_000_000);
    let mut parsed: Vec<ledger::Event<'_>> = Vec::with_capacity(BATCH);
    let times = support::timed(|| {
        for batch in payloads.chunks(BATCH) {
            parsed.clear();
            parsed.extend(
                batch
                    .iter()
                    .map(|(source, payload)| ledger::Event::parse(*source, payload).unwrap()),
            );
            batched.prefetch_events(parsed.iter());
            for event in &parsed {
                batched.apply(event).unwrap();
            }
        }
    });
    println!(
        "apply_json in batches of {BATCH}, prefetched: {events_total} events in {:.3} s = {:.0} events/s (on the CPU {:.3} s = {:.0}/s)",
        times.0,
        events_total as f64 / times.0,
        times.1,
        events_total as f64 / times.1
    );
    drop(parsed);
    assert_eq!(
        batched.state_hash(),
        copy_hash,
        "batched apply reaches the same state"
    );
    drop(batched);

    // The daemon's way: the consumer's thread copies each record, parsing threads parse the
    // batches (`ParsePool`, in order), the ledger thread applies them (`Applier::apply_batch`:
    // offsets, prefetch, apply), with bounded queues between them.
    for parse_threads in [1, 2] {
        logs_way(&payloads, parse_threads, copy_hash);
    }
    let started = Instant::now();
    let hash = state.state_hash();
    assert_eq!(hash, copy_hash, "apply and apply_json reach the same state");
    println!(
        "state_hash over {:?}: {:.3} s ({hash})",
        state.counts(),
        started.elapsed().as_secs_f64()
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    // `-- apply_json` runs only that part (for profiling).
    let only_apply = std::env::args().any(|a| a == "apply_json");
    // `-- events=N`: fewer events (for callgrind).
    let events = std::env::args()
        .find_map(|a| a.strip_prefix("events=").and_then(|n| n.parse().ok()))
        .unwrap_or(1_000_000);
    if !only_apply {
        memory();
    }
    apply_json(events);
}

/// Applies `payloads` as the daemon does (see `apply_json`) with `parse_threads` parsing
/// threads, and prints the figures; checks the state reached is `expected`.
fn logs_way(payloads: &[(Source, Vec<u8>)], parse_threads: usize, expected: ledger::StateHash) {
    let events_total = payloads.len() as u64;
    let mut piped = State::new(LedgerConfig::default());
    support::build(&mut piped, ACCOUNTS, 1_000_000);
    let topics = vec![
        (Source::AccountUpdates, "account-updates".to_owned()),
        (Source::Authorizations, "authorizations".to_owned()),
    ];
    let starts: Offsets = [
        (TopicPartition::new("account-updates", 0), 0),
        (TopicPartition::new("authorizations", 0), 0),
    ]
    .into();
    let mut next_offsets = [0i64; 2];
    let records: Vec<(Source, i64, &[u8])> = payloads
        .iter()
        .map(|(source, payload)| {
            let source = *source;
            let offset = &mut next_offsets[source as usize];
            *offset += 1;
            (source, *offset - 1, payload.as_slice())
        })
        .collect();
    let highs: Offsets = [
        (TopicPartition::new("account-updates", 0), next_offsets[0]),
        (TopicPartition::new("authorizations", 0), next_offsets[1]),
    ]
    .into();
    let mut applier = Applier::for_partitions(
        &topics,
        &starts,
        &highs,
        DeadLetters::Collect {
            kept: Vec::new(),
            keep_max: 10,
        },
        std::sync::Arc::new(LogMetrics::default()),
    );
    let mut ledger_cpu_s = 0.0;
    let times = support::timed(|| {
        std::thread::scope(|scope| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Consumed>(64);
            // Spent batches go back to be freed where they were allocated (as the consumer's).
            let (home, spent) = std::sync::mpsc::channel::<RecordBatch>();
            let records = &records;
            scope.spawn(move || {
                let mut pool =
                    ParsePool::start(parse_threads, tx, home, Default::default()).unwrap();
                for chunk in records.chunks(CONSUMER_BATCH) {
                    while let Ok(done) = spent.try_recv() {
                        drop(done);
                    }
                    let batch: Vec<LogRecord> = chunk
                        .iter()
                        .map(|(source, offset, payload)| LogRecord {
                            source: *source,
                            partition: 0,
                            offset: *offset,
                            key: None,
                            payload: Some(payload.to_vec()),
                        })
                        .collect();
                    let mut job = Job::Records(batch);
                    // The consumer sleeps between attempts; waiting here is the same (the
                    // ledger or the parsing is behind).
                    while let Err(TrySendError::Full(back)) = pool.try_submit(job) {
                        job = back;
                        std::thread::sleep(std::time::Duration::from_micros(100));
                    }
                }
                pool.finish();
                // Free the rest where it was allocated.
                drop(spent);
            });
            let (piped, applier) = (&mut piped, &mut applier);
            let ledger = scope.spawn(move || {
                support::timed(|| {
                    for inbound in rx {
                        let Consumed::Records(batch) = inbound else {
                            panic!("no failure here");
                        };
                        applier.apply_batch(piped, &batch);
                    }
                })
                .1
            });
            ledger_cpu_s = ledger.join().unwrap();
        });
    });
    let progress = applier.progress();
    assert_eq!((progress.applied, progress.rejected), (events_total, 0));
    assert!(applier.is_ready());
    println!(
        "apply_json, the log's way (copy on the consumer's thread, parse on {parse_threads} thread(s), apply on the ledger thread): {events_total} events in {:.3} s = {:.0} events/s (the ledger thread on the CPU {ledger_cpu_s:.3} s = {:.0}/s)",
        times.0,
        events_total as f64 / times.0,
        events_total as f64 / ledger_cpu_s
    );
    assert_eq!(
        piped.state_hash(),
        expected,
        "pipelined apply reaches the same state"
    );
    drop(piped);
}
