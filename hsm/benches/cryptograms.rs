//! Benchmark of ARQC verification + ARPC inside SoftHSM2, printing figures:
//!
//!   cargo bench -p hsm --bench cryptograms              # 50,000 per phase, 1,000,000 long run
//!   cargo bench -p hsm --bench cryptograms -- 20000 200000
//!   cargo bench -p hsm --bench cryptograms -- long 0 1000000 60000   # long run only, fresh
//!
//! Phases: the raw rate of a minimal call sequence (the same PKCS#11 calls as a visa-cvn18
//! verification with ARPC, straight on one session: 3 derives, 4 encrypts, 3 destroys), then the
//! `Pkcs11Verifier` for visa-cvn18 and mc-cvn17 on one session and on a pool of 2 sessions
//! driven by 2 threads, the raw rate again (the machine is shared: the two raw runs bracket the
//! noise), what closing sessions does to SoftHSM's memory, and resident memory over the long run
//! with the module recycled every `recycle_after_objects` derived objects (default 60,000).

use std::sync::Arc;
use std::thread;
use std::time::Instant;

use cryptoki::mechanism::Mechanism;
use cryptoki::object::Attribute;
use hdrhistogram::Histogram;
use hsm::emv::{IccMkOption, icc_mk_data, left_twice};
use hsm::pkcs11::{Pkcs11Config, Pkcs11Verifier, derive_des2, find_token_key, login_user};
use hsm::testing::{PublishedVector, TEST_IMK_LABEL, TEST_USER_PIN, TestToken, test_key_sets};
use hsm::{
    ArqcOutcome, AuthorisationResponse, CardData, CryptogramVerifier, EmvData, KeySetId, Profile,
};

fn vm_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// The published vector of visa-cvn18 (`visa`) or mc-cvn17.
fn emv(visa: bool) -> EmvData {
    let profile = if visa {
        Profile::VisaCvn18
    } else {
        Profile::McCvn17
    };
    PublishedVector::of(profile).emv()
}

#[allow(dead_code)]
struct Figures {
    per_s: f64,
    p50_us: u64,
    p99_us: u64,
    max_us: u64,
}

fn report(name: &str, n: u64, secs: f64, h: &Histogram<u64>) -> Figures {
    let f = Figures {
        per_s: n as f64 / secs,
        p50_us: h.value_at_quantile(0.50),
        p99_us: h.value_at_quantile(0.99),
        max_us: h.max(),
    };
    println!(
        "{name:<40} {n:>9} ops {:>9.0}/s  p50 {:>4} µs  p99 {:>4} µs  max {:>6} µs",
        f.per_s, f.p50_us, f.p99_us, f.max_us
    );
    f
}

/// The minimal call sequence of a visa-cvn18 verification with ARPC, on one session.
fn raw(token: &TestToken, n: u64) -> Figures {
    let module = token.module();
    let ctx = module.read();
    let slot = module.find_slot(&ctx, token.label()).unwrap();
    let s = ctx.open_ro_session(slot).unwrap();
    login_user(&s, &TEST_USER_PIN.into()).unwrap();
    let imk_token = find_token_key(&s, TEST_IMK_LABEL).unwrap().unwrap();
    let imk = s
        .copy_object(imk_token, &[Attribute::Token(false)])
        .unwrap();
    let y = CardData::new("1234567890123456", 0)
        .unwrap()
        .icc_mk_y(IccMkOption::A);
    let mk_data = icc_mk_data(&y);
    let e = emv(true);
    let sk_data = e.session_key_data(hsm::Profile::VisaCvn18).unwrap();
    let ll_data = left_twice(&sk_data);
    let mac_input = e.mac_input(hsm::Profile::VisaCvn18).unwrap();
    let split = mac_input.len() - 8;
    let mut hist = Histogram::<u64>::new(3).unwrap();
    let started = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        let mk = derive_des2(&s, imk, &mk_data, true, false).unwrap();
        let sk = derive_des2(&s, mk, &sk_data, false, true).unwrap();
        let ll = derive_des2(&s, mk, &ll_data, false, true).unwrap();
        let c = s
            .encrypt(&Mechanism::Des3Cbc([0; 8]), ll, &mac_input[..split])
            .unwrap();
        let mut block = [0u8; 8];
        for i in 0..8 {
            block[i] = c[c.len() - 8 + i] ^ mac_input[split + i];
        }
        let mac = s.encrypt(&Mechanism::Des3Ecb, sk, &block).unwrap();
        assert_eq!(mac, e.arqc);
        let c = s
            .encrypt(&Mechanism::Des3Cbc([0; 8]), ll, &mac[..8])
            .unwrap();
        let mut block = [0u8; 8];
        block[..4].copy_from_slice(&[0; 4]);
        block[4] = 0x80;
        for i in 0..8 {
            block[i] ^= c[i];
        }
        let _arpc = s.encrypt(&Mechanism::Des3Ecb, sk, &block).unwrap();
        s.destroy_object(mk).unwrap();
        s.destroy_object(sk).unwrap();
        s.destroy_object(ll).unwrap();
        hist.record(t.elapsed().as_micros() as u64).unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    drop(s);
    drop(ctx);
    let f = report("raw call sequence (cvn18 shape)", n, secs, &hist);
    module.recycle().unwrap();
    f
}

fn verify_once(v: &Pkcs11Verifier, ks: &KeySetId, card: &CardData, e: &EmvData) {
    let ArqcOutcome::Verified(p) = v.verify_arqc(ks, card, e).unwrap() else {
        panic!("rejected")
    };
    let _ = p
        .arpc(&AuthorisationResponse::from_response_code(*b"00", true))
        .unwrap();
}

fn ours(v: &Arc<Pkcs11Verifier>, name: &str, visa: bool, threads: u64, n: u64) -> Figures {
    let ks = KeySetId(if visa { "visa-cvn18" } else { "mc-cvn17" }.into());
    let card = CardData::new("1234567890123456", 0).unwrap();
    let e = emv(visa);
    let started = Instant::now();
    let hists: Vec<Histogram<u64>> = (0..threads)
        .map(|_| {
            let (v, ks, card, e) = (v.clone(), ks.clone(), card.clone(), e.clone());
            thread::spawn(move || {
                let mut hist = Histogram::<u64>::new(3).unwrap();
                for _ in 0..n / threads {
                    let t = Instant::now();
                    verify_once(&v, &ks, &card, &e);
                    hist.record(t.elapsed().as_micros() as u64).unwrap();
                }
                hist
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    let secs = started.elapsed().as_secs_f64();
    let mut all = Histogram::<u64>::new(3).unwrap();
    for h in &hists {
        all.add(h).unwrap();
    }
    report(name, n, secs, &all)
}

fn main() {
    let long_only = std::env::args().any(|a| a == "long");
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = args.first().copied().unwrap_or(50_000);
    let long = args.get(1).copied().unwrap_or(1_000_000);
    let recycle_after = args
        .get(2)
        .copied()
        .unwrap_or(Pkcs11Config::DEFAULT_RECYCLE_AFTER_OBJECTS);

    let token = TestToken::with_test_keys();
    let module = token.module().clone();
    if long_only {
        println!("SoftHSM2 long run only, fresh process (shared 2-core machine)");
        long_run(&token, long, recycle_after);
        return;
    }
    println!("SoftHSM2 benchmark (shared 2-core machine: figures are noisy), {n} per phase");
    let mut one = token.config(test_key_sets());
    one.recycle_after_objects = u64::MAX; // phases recycle between themselves
    let single = Arc::new(Pkcs11Verifier::new(one.clone()).unwrap());
    // Warm-up.
    raw(&token, 2_000);
    ours(&single, "warm-up", true, 1, 2_000);
    module.recycle().unwrap();

    // Raw and ours alternate in rounds, so that the load of the shared machine hits both alike;
    // the overhead is the median of the per-round ratios.
    let rounds = 5;
    let mut ratios = Vec::new();
    let (mut raw_rates, mut v18_rates, mut m17_rates) = (Vec::new(), Vec::new(), Vec::new());
    let mut v18_p = Vec::new();
    let mut m17_p = Vec::new();
    for r in 0..rounds {
        println!("round {}", r + 1);
        let a = raw(&token, n / rounds);
        let b = ours(
            &single,
            "verifier visa-cvn18, 1 session",
            true,
            1,
            n / rounds,
        );
        module.recycle().unwrap();
        let c = ours(
            &single,
            "verifier mc-cvn17, 1 session",
            false,
            1,
            n / rounds,
        );
        module.recycle().unwrap();
        ratios.push(b.per_s / a.per_s);
        raw_rates.push(a.per_s);
        v18_rates.push(b.per_s);
        m17_rates.push(c.per_s);
        v18_p.push((b.p50_us, b.p99_us));
        m17_p.push((c.p50_us, c.p99_us));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    println!(
        "median of rounds: raw {:.0}/s, visa-cvn18 {:.0}/s, mc-cvn17 {:.0}/s; visa-cvn18 = {:.1} % of raw (per-round ratios {:?})",
        median(&mut raw_rates),
        median(&mut v18_rates),
        median(&mut m17_rates),
        100.0 * median(&mut ratios.clone()),
        ratios
            .iter()
            .map(|r| format!("{:.1}", 100.0 * r))
            .collect::<Vec<_>>()
    );
    drop(single);

    let mut pooled = one.clone();
    pooled.pool_size = 2;
    let pool = Arc::new(Pkcs11Verifier::new(pooled).unwrap());
    ours(&pool, "verifier visa-cvn18, pool 2, 2 threads", true, 2, n);
    module.recycle().unwrap();
    ours(&pool, "verifier mc-cvn17, pool 2, 2 threads", false, 2, n);
    module.recycle().unwrap();
    drop(pool);

    // What releases SoftHSM's dead session objects? Closing sessions, without recycling:
    let exp = Arc::new(Pkcs11Verifier::new(one).unwrap());
    let ks = KeySetId("visa-cvn18".into());
    let card = CardData::new("1234567890123456", 0).unwrap();
    let e = emv(true);
    let rss0 = vm_rss_kb();
    let exp_n = (n * 2).max(10_000);
    for i in 0..exp_n {
        verify_once(&exp, &ks, &card, &e);
        if i % 1_000 == 999 {
            exp.close_idle_sessions();
        }
    }
    let rss1 = vm_rss_kb();
    let pause = module.recycle().unwrap();
    let rss2 = vm_rss_kb();
    println!(
        "no recycling, sessions closed every 1,000: VmRSS {rss0} kB -> {rss1} kB after {exp_n} verifications ({:.0} bytes per derived object); C_Finalize+C_Initialize took {} ms -> {rss2} kB",
        (rss1.saturating_sub(rss0) * 1024) as f64 / (exp_n * 3) as f64,
        pause.as_millis()
    );
    drop(exp);
    long_run(&token, long, recycle_after);
}

/// Resident memory over `long` verifications with ARPC, recycling at `recycle_after` objects.
fn long_run(token: &TestToken, long: u64, recycle_after: u64) {
    let module = token.module().clone();
    let ks = KeySetId("visa-cvn18".into());
    let card = CardData::new("1234567890123456", 0).unwrap();
    let e = emv(true);
    let mut prod = token.config(test_key_sets());
    prod.recycle_after_objects = recycle_after;
    let v = Arc::new(Pkcs11Verifier::new(prod).unwrap());
    let recycles0 = module.recycles();
    let rss_start = vm_rss_kb();
    let mut hist = Histogram::<u64>::new(3).unwrap();
    let started = Instant::now();
    let mut series = Vec::new();
    for i in 0..long {
        let t = Instant::now();
        verify_once(&v, &ks, &card, &e);
        hist.record(t.elapsed().as_micros() as u64).unwrap();
        if (i + 1) % (long / 10).max(1) == 0 {
            series.push(vm_rss_kb());
        }
    }
    let secs = started.elapsed().as_secs_f64();
    report(
        &format!("long run visa-cvn18, recycle at {recycle_after}"),
        long,
        secs,
        &hist,
    );
    println!(
        "long run: VmRSS before {rss_start} kB, every tenth: {series:?} kB, after {} kB; {} recycles; p99.9 {} µs",
        vm_rss_kb(),
        module.recycles() - recycles0,
        hist.value_at_quantile(0.999)
    );
}
