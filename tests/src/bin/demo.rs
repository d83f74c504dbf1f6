//! The demo: the real thing, on one machine. Two `authorizer run` daemons (processes), a Kafka-
//! protocol broker, a private SoftHSM2 token, and the network simulator (`netsim load`) as the
//! card network's interface device over loopback TCP, with live figures on screen.
//!
//! What runs: the broker (by default the embedded one, `mock-broker`, which starts in a second;
//! `--broker tansu` for the real one through `scripts/broker`); the netsim publishes its
//! population's accounts and cards to `account-updates` (the cloud's side), then listens; daemons
//! A and B rebuild their state from the log, say ready, dial the netsim and sign on; the netsim
//! spreads the realistic mix over both links; each daemon verifies every ARQC and computes every
//! ARPC in the token, decides, publishes the decision (`acks=all`, spool behind it) and answers;
//! each follows the other's decisions through the log. At the end both must show the same
//! offsets and the same state hash.
//!
//! This file orchestrates and shows; the daemons are the binaries a bank runs, and the traffic,
//! the judging and the latency figures are the netsim's. Must never: use a real key or PAN (the
//! token holds the public EMV test key, the PAN key is a demo constant).

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use hsm::testing::TestToken;
use systests::stage::{
    Broker, BrokerKind, DEMO_PAN_KEY_HEX, DaemonSpec, Replica, read_replica, signal,
    start_netsim_load, write_private,
};

#[derive(Parser)]
#[command(
    about = "Two authorizer daemons, a broker, a SoftHSM2 token and the network simulator, with live figures"
)]
struct Args {
    /// Stop after this many seconds of traffic (0: until Ctrl-C).
    #[arg(long, default_value_t = 0)]
    seconds: u64,
    /// Accounts (one card each) in the simulated population.
    #[arg(long, default_value_t = 20_000)]
    accounts: usize,
    /// Dialect: `ascii`, `mastercard`, or a dialect file.
    #[arg(long, default_value = "ascii")]
    dialect: String,
    /// Requests in flight at most (the netsim's window, over both links).
    #[arg(long, default_value_t = 64)]
    in_flight: usize,
    /// Requests per second (default: as fast as the window allows).
    #[arg(long)]
    rate: Option<f64>,
    /// The traffic mix: `realistic`, `chip` or `magstripe`.
    #[arg(long, default_value = "realistic")]
    mix: String,
    /// Seed of the population and the traffic.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Which broker carries the log.
    #[arg(long, value_enum, default_value_t = BrokerKind::Embedded)]
    broker: BrokerKind,
    /// Where the configurations, logs, report and latency plot go (default: a new temporary
    /// directory, kept at the end and printed).
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

const PREFIX: &str = "demo";

fn fail(what: &str, e: impl std::fmt::Display) -> ! {
    eprintln!("demo: {what}: {e}");
    std::process::exit(1)
}

/// `key=value` fields of a netsim live line (`t=3 req=.. tps=.. p50=..us ..`).
fn fields(line: &str) -> BTreeMap<&str, &str> {
    line.split_whitespace()
        .filter_map(|w| w.split_once('='))
        .collect()
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

fn screen(
    args: &Args,
    elapsed: Duration,
    live: &str,
    replicas: &[(&str, Replica)],
    broker: &str,
    tty: bool,
) {
    let f = fields(live);
    let codes = live
        .split_once("codes[")
        .and_then(|(_, rest)| rest.split_once(']'))
        .map_or("", |(c, _)| c);
    if !tty {
        let rs: Vec<String> = replicas
            .iter()
            .map(|(n, r)| {
                format!(
                    "{n}[links={} acked={:.0} spooled={:.0} lag={:.0} hash={}]",
                    r.links,
                    r.acked,
                    r.spooled,
                    r.lag,
                    r.hash.get(..8).unwrap_or("-")
                )
            })
            .collect();
        println!("{live} {}", rs.join(" "));
        return;
    }
    let get = |k: &str| f.get(k).copied().unwrap_or("-");
    let mut out = String::from("\x1b[2J\x1b[H");
    out.push_str(&format!(
        "authorizer demo: netsim (the network's interface device) → TCP → 2 authorizer daemons → SoftHSM2, Kafka ({broker})\n\n"
    ));
    out.push_str(&format!(
        "  running {:>4} s   mix {}   dialect {}   requests sent {}   answers/s {}\n",
        elapsed.as_secs(),
        args.mix,
        args.dialect,
        get("req"),
        get("tps"),
    ));
    out.push_str(&format!(
        "  latency, netsim send → answer (after Kafka's ack): p50 {}   p99 {}   in flight {}   unanswered {}\n\n",
        get("p50"),
        get("p99"),
        get("in_flight"),
        get("unanswered"),
    ));
    out.push_str("  answers by DE 39\n");
    for c in codes.split_whitespace() {
        if let Some((code, n)) = c.split_once(':') {
            out.push_str(&format!("    {code} {:<24} {n:>9}\n", code_name(code)));
        }
    }
    out.push_str(
        "\n  daemon   ready  link         answered   Kafka acked   spooled  failed  spool  lag   holds   state hash\n",
    );
    for (name, r) in replicas {
        out.push_str(&format!(
            "  {name:<8} {:<6} {:<12} {:>8.0}   {:>11.0}   {:>7.0}  {:>6.0}  {:>5}  {:>4.0}  {:>6}   {}\n",
            if r.ready { "yes" } else { "no" },
            r.links,
            r.answered,
            r.acked,
            r.spooled,
            r.failed,
            r.spool,
            r.lag,
            r.holds,
            r.hash.get(..16).unwrap_or("-"),
        ));
    }
    out.push_str("\n  Ctrl-C to stop\n");
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(out.as_bytes());
    let _ = stdout.flush();
}

fn main() {
    let args = Args::parse();
    let dir = match &args.work_dir {
        Some(d) => {
            std::fs::create_dir_all(d).unwrap_or_else(|e| fail("work dir", e));
            d.clone()
        }
        None => tempfile::Builder::new()
            .prefix("authorizer-demo-")
            .tempdir()
            .unwrap_or_else(|e| fail("work dir", e))
            .keep(),
    };
    println!(
        "demo: files (configurations, logs, report, plot) in {}",
        dir.display()
    );

    let broker = Broker::start(args.broker, PREFIX).unwrap_or_else(|e| fail("broker", e));
    let broker_name = args.broker.name();
    println!("demo: broker ({broker_name}) at {}", broker.addr);

    println!("demo: private SoftHSM2 token with the public EMV test key under every profile");
    let token = TestToken::with_test_keys();
    write_private(&dir.join("pan.key"), &format!("{DEMO_PAN_KEY_HEX}\n"))
        .unwrap_or_else(|e| fail("pan key", e));

    // The netsim: publishes the population, then listens.
    let seconds = if args.seconds == 0 {
        86_400
    } else {
        args.seconds
    };
    let report = dir.join("netsim-report.json");
    let plot = dir.join("latency.svg");
    let mut netsim_args: Vec<String> = [
        "--seed",
        &args.seed.to_string(),
        "--accounts",
        &args.accounts.to_string(),
        "--in-flight",
        &args.in_flight.to_string(),
        "--seconds",
        &seconds.to_string(),
        "--mix",
        &args.mix,
        "--wait-connections",
        "2",
        "--report-json",
        &report.display().to_string(),
        "--plot",
        &plot.display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(rate) = args.rate {
        netsim_args.extend(["--rate".to_owned(), rate.to_string()]);
    }
    let (mut netsim, device, netsim_lines) =
        start_netsim_load(&broker, PREFIX, &dir, &args.dialect, &netsim_args)
            .unwrap_or_else(|e| fail("netsim", e));
    println!("demo: the netsim published its population and listens on {device}");

    // The daemons.
    let mut daemons = Vec::new();
    let t = Instant::now();
    for name in ["auth-a", "auth-b"] {
        let spec = DaemonSpec {
            name,
            dialect: &args.dialect,
            device: &device,
            broker: &broker,
            prefix: PREFIX,
            token: &token,
            dir: &dir,
            ack_budget_ms: 1000,
            linger_ms: 0,
        };
        daemons.push(spec.start().unwrap_or_else(|e| fail(name, e)));
    }
    for d in &mut daemons {
        d.wait_ready(Duration::from_secs(600))
            .unwrap_or_else(|e| fail(&d.name, e));
        println!(
            "demo: {} ready after {} ms (state rebuilt from the log)",
            d.name,
            t.elapsed().as_millis()
        );
    }

    // Live figures until the netsim is done or Ctrl-C.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail("tokio", e));
    let interrupted = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let flag = interrupted.clone();
        rt.spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                flag.store(true, std::sync::atomic::Ordering::Release);
            }
        });
    }
    let tty = std::io::stdout().is_terminal();
    let started = Instant::now();
    let mut live = String::new();
    let mut netsim_exit = None;
    let mut netsim_out = Vec::new();
    loop {
        rt.block_on(async { tokio::time::sleep(Duration::from_secs(1)).await });
        while let Ok(l) = netsim_lines.try_recv() {
            if l.starts_with("t=") {
                live = l;
            } else {
                netsim_out.push(l);
            }
        }
        let replicas: Vec<(&str, Replica)> = daemons
            .iter()
            .map(|d| (d.name.as_str(), read_replica(&d.admin)))
            .collect();
        if !live.is_empty() {
            screen(&args, started.elapsed(), &live, &replicas, broker_name, tty);
        }
        if let Ok(Some(status)) = netsim.try_wait() {
            netsim_exit = status.code();
            break;
        }
        if interrupted.load(std::sync::atomic::Ordering::Acquire) {
            println!("demo: interrupted: stopping the traffic");
            signal(&netsim, "TERM");
            let _ = netsim.wait();
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    while let Ok(l) = netsim_lines.try_recv() {
        if !l.starts_with("t=") {
            netsim_out.push(l);
        }
    }
    for l in &netsim_out {
        if l.starts_with("load:") || l.contains("plot") {
            println!("{l}");
        }
    }

    // Convergence: both replicas at the same offsets (every event of both in the log and read by
    // both), then their state hashes.
    let deadline = Instant::now() + Duration::from_secs(60);
    // Settled: equal offsets, empty spools, and the same offsets at the previous look (no longer
    // moving), so that two replicas passing the same offsets on their way do not count.
    let mut previous: Option<BTreeMap<String, i64>> = None;
    let (a, b) = loop {
        let a = read_replica(&daemons[0].admin);
        let b = read_replica(&daemons[1].admin);
        let equal = a.offsets == b.offsets && a.spool == 0 && b.spool == 0;
        let settled = equal && previous.as_ref() == Some(&a.offsets);
        previous = equal.then(|| a.offsets.clone());
        if settled || Instant::now() >= deadline {
            break (a, b);
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    let same_offsets = a.offsets == b.offsets;
    let same_hash = same_offsets && a.hash == b.hash && !a.hash.is_empty();
    println!(
        "demo: Kafka acknowledged A {:.0} + B {:.0} events, spooled {:.0} + {:.0}, failed {:.0} + {:.0}",
        a.acked, b.acked, a.spooled, b.spooled, a.failed, b.failed
    );
    println!(
        "demo: offsets equal {same_offsets}; state hash A {} B {} {}",
        a.hash,
        b.hash,
        if same_hash {
            "(equal: the replicas converged)"
        } else {
            "(DIFFERENT)"
        }
    );

    // Stop the daemons (graceful: sign off, answer what is in flight, drain the spool).
    let mut clean = true;
    for d in &daemons {
        signal(&d.child, "TERM");
    }
    for d in &mut daemons {
        let status = d.child.wait().ok();
        clean &= status.is_some_and(|s| s.success());
        println!(
            "demo: {} stopped ({}); its log: {}",
            d.name,
            status.map_or("?".into(), |s| s.to_string()),
            d.log.display()
        );
    }
    drop(broker);
    drop(token);
    let traffic_ok =
        interrupted.load(std::sync::atomic::Ordering::Acquire) || netsim_exit == Some(0);
    let ok = traffic_ok && same_hash && clean && a.failed == 0.0 && b.failed == 0.0;
    println!(
        "demo: {}",
        if ok {
            "all checks passed"
        } else {
            "CHECKS FAILED"
        }
    );
    if !ok {
        std::process::exit(1);
    }
}
