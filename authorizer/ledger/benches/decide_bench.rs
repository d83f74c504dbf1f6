//! Decision benchmark (a bench binary printing figures): decisions per second on one thread with
//! 1,000,000 accounts and cards.
//!
//! Run: `cargo bench -p ledger --bench decide_bench` (`DECIDE_BENCH_REPEAT=K` runs the
//! prefetched decide-only pass K times, for profiling it).

#[path = "ledger_support/mod.rs"]
mod support;

use std::time::Instant;

use ledger::decide::{
    Cryptogram, DecideConfig, Facts, MessageClass, Prepared, Request, decide, decide_prepared,
    for_each_prefetched,
};
use ledger::{
    AmountMinor, Currency, InstitutionId, LedgerConfig, Stan, State, TransmissionStamp, UnixSeconds,
};

const N: u64 = 1_000_000;

fn request(i: u64) -> Request<'static> {
    // A cheap deterministic scramble so that lookups jump around the maps.
    let card = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % N;
    Request {
        class: MessageClass::Authorization,
        mti: *b"0100",
        pan_hash: support::pan_hash(card),
        pan_masked: "541333******0010",
        transmission: TransmissionStamp(1_122_101_500),
        stan: Stan((i % 1_000_000) as u32),
        processing_code: Some(*b"000000"),
        acquirer: InstitutionId(12345 + i / 1_000_000),
        forwarder: InstitutionId(0),
        amount_transaction: AmountMinor::new(1_000).unwrap(),
        currency_transaction: Currency::new(986).unwrap(),
        amount_billing: None,
        currency_billing: None,
        card_expiry: None,
        merchant_category: Some(5812),
        network_response_code: None,
        original: None,
        replacement: None,
        retrieval_reference: None,
        chip: None,
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let mut state = State::new(LedgerConfig::default());
    let started = Instant::now();
    support::build(&mut state, N, 100_000_000);
    println!(
        "built {N} accounts and cards in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let config = DecideConfig::new("auth-a");
    config.validate().unwrap();
    let facts = Facts {
        cryptogram: Cryptogram::Absent,
    };
    let now = UnixSeconds(support::NOW_S + 5);
    let requests: Vec<Request<'static>> = (0..2 * N).map(request).collect();

    let report = |what: &str, count: usize, (wall, cpu): (f64, f64), extra: String| {
        println!(
            "{what}: {count} in {wall:.3} s = {:.0} decisions/s (on the CPU {cpu:.3} s = {:.0}/s){extra}",
            count as f64 / wall,
            count as f64 / cpu
        );
    };

    // 1. decide only (the state does not change: every request is a fresh approval), one by one.
    let mut approved = 0u64;
    let times = support::timed(|| {
        for r in &requests {
            let d = decide(&state, r, &facts, &config, now);
            approved += u64::from(d.response_code.is_approved());
        }
    });
    report(
        "decide only, one by one",
        requests.len(),
        times,
        format!(", {approved} approved"),
    );

    // 2. decide only, as the ledger thread does: each request prepared (its hold id) and its
    // records prefetched a few requests ahead; all the work on this thread.
    let mut approved = 0u64;
    let times = support::timed(|| {
        for_each_prefetched(&mut state, &requests, Prepared::new, |state, prepared| {
            let d = decide_prepared(state, prepared, &facts, &config, now);
            approved += u64::from(d.response_code.is_approved());
        });
    });
    report(
        "decide only, prefetched",
        requests.len(),
        times,
        format!(", {approved} approved"),
    );

    // 3. the same, with the requests prepared beforehand (the link threads can compute the hold
    // ids, a SHA-256 each, before handing the requests to the ledger thread).
    let prepared: Vec<Prepared> = requests.iter().map(Prepared::new).collect();
    let mut approved = 0u64;
    let times = support::timed(|| {
        for_each_prefetched(
            &mut state,
            &prepared,
            |p| *p,
            |state, prepared| {
                let d = decide_prepared(state, prepared, &facts, &config, now);
                approved += u64::from(d.response_code.is_approved());
            },
        );
    });
    report(
        "decide only, prefetched, prepared by the link threads",
        requests.len(),
        times,
        format!(", {approved} approved"),
    );
    drop(prepared);

    let repeat: u32 = std::env::var("DECIDE_BENCH_REPEAT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    for _ in 0..repeat {
        let times = support::timed(|| {
            for_each_prefetched(&mut state, &requests, Prepared::new, |state, prepared| {
                let d = decide_prepared(state, prepared, &facts, &config, now);
                assert!(d.response_code.is_approved());
            });
        });
        report(
            "decide only, prefetched, again",
            requests.len(),
            times,
            String::new(),
        );
    }

    // 4. decide and apply the event (what the ledger thread does): every approval holds.
    let mut approved = 0u64;
    let times = support::timed(|| {
        for_each_prefetched(&mut state, &requests, Prepared::new, |state, prepared| {
            let d = decide_prepared(state, prepared, &facts, &config, now);
            approved += u64::from(d.response_code.is_approved());
            if let Some(event) = &d.event {
                state.apply_decided(event, d.account).unwrap();
            }
        });
    });
    let holds = state.counts().holds;
    report(
        "decide + apply, prefetched",
        requests.len(),
        times,
        format!(", {approved} approved, {holds} holds"),
    );

    // 5. repeats of decided requests (found through the hold id).
    let mut repeats = 0u64;
    let times = support::timed(|| {
        for r in &requests[..N as usize] {
            repeats += u64::from(decide(&state, r, &facts, &config, now).repeat);
        }
    });
    report("repeats", N as usize, times, format!(", {repeats} repeats"));

    // 6. the same repeats the ledger thread's way (a repeat reads its account too: the currency
    // of the first approval is the account's).
    let mut repeats = 0u64;
    let times = support::timed(|| {
        for_each_prefetched(
            &mut state,
            &requests[..N as usize],
            Prepared::new,
            |state, prepared| {
                let d = decide_prepared(state, prepared, &facts, &config, now);
                repeats += u64::from(d.repeat);
            },
        );
    });
    report(
        "repeats, prefetched",
        N as usize,
        times,
        format!(", {repeats} repeats"),
    );
}
