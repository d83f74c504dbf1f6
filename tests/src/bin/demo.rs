//! The demo: simulated network traffic through the authorizer's whole decision path, with live
//! figures on screen.
//!
//! What runs, for real: the ISO 8583 codec (both directions, the `ascii` dialect or any other),
//! the ledger and the decision rules, and every chip cryptogram verified and every ARPC computed
//! inside a private SoftHSM2 token through PKCS#11. The simulated cards check each ARPC they get
//! back. The cloud's account and card events enter the ledger as the contract's JSON.
//!
//! Not yet in this demo: the TCP link to the network's interface device and the Kafka log (their
//! issues are open); the requests travel in memory.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use authorizer::decide::{Cryptogram, DecideConfig, Facts, decide};
use authorizer::ledger::{Event, LedgerConfig, PanKey, Source, State, UnixSeconds};
use authorizer::link::translate::{
    Inbound, MaskedPan, answer, classify, echo_fields, format_error_answer, icc_tags,
    request_from_message, response_mti,
};
use bytes::Bytes;
use clap::Parser;
use hdrhistogram::Histogram;
use hsm::pkcs11::Pkcs11Verifier;
use hsm::{ArqcOutcome, AuthorisationResponse, CardData, CryptogramVerifier, EmvData, KeySetId};
use iso8583::{Dialect, Message, response_to};
use systests::netsim::{Kind, Population, Traffic};

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
    events_published: u64,
}

struct Authorizer {
    dialect: Dialect,
    state: State,
    config: DecideConfig,
    pan_key: PanKey,
    verifier: Pkcs11Verifier,
}

impl Authorizer {
    /// One request in, one answer out: the daemon's path without the socket and the log.
    fn handle(&mut self, frame: Bytes, now: UnixSeconds, f: &mut Figures) -> Bytes {
        let message = match Message::decode(&self.dialect, frame) {
            Ok(m) => m,
            Err(e) => panic!("the simulator sent an undecodable frame: {e}"),
        };
        let class = match classify(message.mti()) {
            Some(Inbound::Decide(class)) => class,
            Some(Inbound::NetworkManagement) => {
                let mut b = response_to(
                    &message,
                    response_mti(message.mti()),
                    echo_fields(message.mti()),
                );
                b.set(39, "00");
                return b.encode(&self.dialect).expect("0810");
            }
            None => panic!("the simulator sent an MTI the authorizer does not answer"),
        };
        let masked = MaskedPan::of(message.pan().unwrap_or(""));
        let request = match request_from_message(&message, class, &self.pan_key, &masked) {
            Ok(r) => r,
            Err(field) => {
                return format_error_answer(&self.dialect, &message, field).expect("answer");
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
            // The daemon publishes this to Kafka (acks=all) before it answers.
            self.state
                .apply(&Event::Authorization(event.clone()))
                .expect("our own event applies");
            f.events_published += 1;
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
        answer(
            &self.dialect,
            &message,
            &decision,
            tag91.as_ref().map(|t| t.as_bytes()),
        )
        .expect("the answer encodes")
    }
}

fn main() {
    let args = Args::parse();
    let dialect = match Dialect::builtin(&args.dialect) {
        Some(d) => d,
        None => Dialect::load(&args.dialect).unwrap_or_else(|e| {
            eprintln!("demo: dialect {}: {e}", args.dialect);
            std::process::exit(2)
        }),
    };
    let pan_key = PanKey(DEMO_PAN_KEY);
    let start_unix = now_unix_s();

    println!("demo: private SoftHSM2 token with the public EMV test keys ...");
    let token = hsm::testing::TestToken::with_test_keys();
    let verifier =
        Pkcs11Verifier::new(token.config(hsm::testing::test_key_sets())).unwrap_or_else(|e| {
            eprintln!("demo: HSM: {e}");
            std::process::exit(1)
        });

    println!(
        "demo: {} accounts and cards from the cloud (account.upserted, card.upserted JSON) ...",
        args.accounts
    );
    let mut pop = Population::generate(args.seed, args.accounts, start_unix);
    let mut state = State::new(LedgerConfig::default());
    let t = Instant::now();
    for (_, json) in pop.cloud_events(&pan_key, start_unix - 60) {
        state
            .apply_json(Source::AccountUpdates, &json)
            .expect("the simulated cloud speaks the contract");
    }
    println!(
        "demo: ledger loaded in {} ms; state hash {}",
        t.elapsed().as_millis(),
        state.state_hash()
    );

    let mut authorizer = Authorizer {
        dialect: dialect.clone(),
        state,
        config: DecideConfig::new("demo-1"),
        pan_key,
        verifier,
    };
    let mut traffic = Traffic::new(args.seed);
    let mut figures = Figures::default();
    let mut latency_us = Histogram::<u64>::new_with_bounds(1, 10_000_000, 3).expect("histogram");
    let tty = std::io::stdout().is_terminal();
    let started = Instant::now();
    let mut last_print = Instant::now();
    let mut last_requests = 0u64;
    loop {
        let now = now_unix_s();
        let sent = traffic.next(&mut pop, &dialect, now);
        let kind = sent.kind;
        let t0 = Instant::now();
        let answer_frame = authorizer.handle(sent.frame.clone(), UnixSeconds(now), &mut figures);
        latency_us.saturating_record(t0.elapsed().as_micros().max(1) as u64);
        let answer = Message::decode(&dialect, answer_frame).expect("the answer decodes");
        let checked = traffic.observe(&pop, sent, &answer);
        figures.requests += 1;
        *figures.by_kind.entry(kind.name()).or_default() += 1;
        *figures
            .by_code
            .entry(String::from_utf8_lossy(&checked.response_code).into_owned())
            .or_default() += 1;
        match checked.arpc_ok {
            Some(true) => figures.arpc_ok += 1,
            Some(false) => {
                figures.arpc_bad += 1;
                if std::env::var_os("DEMO_DEBUG").is_some() {
                    eprintln!(
                        "arpc refused: {:?} code {:?}",
                        kind,
                        String::from_utf8_lossy(&checked.response_code)
                    );
                }
            }
            None => {}
        }
        match checked.repeat_consistent {
            Some(true) => figures.repeats_same += 1,
            Some(false) => figures.repeats_different += 1,
            None => {}
        }
        if last_print.elapsed() >= Duration::from_secs(1) {
            let rate =
                (figures.requests - last_requests) as f64 / last_print.elapsed().as_secs_f64();
            print_figures(
                &figures,
                &latency_us,
                &authorizer.state,
                rate,
                started.elapsed(),
                tty,
            );
            last_print = Instant::now();
            last_requests = figures.requests;
            if args.seconds > 0 && started.elapsed() >= Duration::from_secs(args.seconds) {
                break;
            }
        }
        let _ = Kind::ALL; // the kinds are listed in the figures as they occur
    }
    let ok = figures.arpc_bad == 0 && figures.repeats_different == 0 && figures.hsm_errors == 0;
    println!(
        "demo: done: {} requests; ARPCs accepted by the cards {}/{}; repeats answered identically {}/{}; {}",
        figures.requests,
        figures.arpc_ok,
        figures.arpc_ok + figures.arpc_bad,
        figures.repeats_same,
        figures.repeats_same + figures.repeats_different,
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

fn print_figures(
    f: &Figures,
    lat: &Histogram<u64>,
    state: &State,
    rate: f64,
    elapsed: Duration,
    tty: bool,
) {
    let counts = state.counts();
    let codes: Vec<String> = f.by_code.iter().map(|(c, n)| format!("{c}:{n}")).collect();
    if !tty {
        println!(
            "t={:>4}s req={} rate={:.0}/s p50={}us p99={}us codes[{}] hsm ok={} bad={} arpc ok={} bad={} holds={}",
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
            counts.holds
        );
        return;
    }
    let mut out = String::new();
    out.push_str("\x1b[2J\x1b[H");
    out.push_str("authorizer demo — simulated network → ISO 8583 → ledger + SoftHSM2 → answer\n\n");
    out.push_str(&format!(
        "  running {:>5} s   requests {:>9}   rate {:>8.0} /s\n",
        elapsed.as_secs(),
        f.requests,
        rate
    ));
    out.push_str(&format!(
        "  latency (decode → HSM → decide → encode)  p50 {} µs  p99 {} µs  max {} µs\n\n",
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
    out.push_str(&format!(
        "  ledger: {} accounts, {} cards, {} hold records, {} events applied\n  state hash {}\n",
        counts.accounts,
        counts.cards,
        counts.holds,
        f.events_published,
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
