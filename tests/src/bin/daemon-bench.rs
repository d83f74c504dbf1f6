//! The daemon's benchmark: one `authorizer run` process (release build) against the netsim over
//! loopback TCP, on the embedded broker or tansu, with a real SoftHSM2 token; prints the netsim's
//! figures (TPS, latency from send to answer) and the daemon's own CPU time per answered request,
//! read from its `/proc/PID/stat` over the traffic (the netsim and the broker excluded).
//!
//! One line of figures, `key=value`, for people and scripts (`scripts/bench-daemon` runs the
//! matrix). A bench, not a test: it judges nothing but prints what it measured. Must never: use a
//! real key or PAN.

#![forbid(unsafe_code)]

use std::time::Duration;

use clap::Parser;
use hsm::testing::TestToken;
use systests::stage::{
    Broker, BrokerKind, DEMO_PAN_KEY_HEX, DaemonSpec, read_replica, start_netsim_load, wait_line,
    write_private,
};

#[derive(Parser)]
#[command(
    about = "One authorizer daemon under netsim load: TPS, latency and daemon CPU per request"
)]
struct Args {
    #[arg(long, value_enum, default_value_t = BrokerKind::Embedded)]
    broker: BrokerKind,
    /// A running broker to use instead (`host:port`; the daemon creates its topics there).
    #[arg(long)]
    brokers: Option<String>,
    /// `magstripe`, `chip` or `realistic`.
    #[arg(long, default_value = "magstripe")]
    mix: String,
    #[arg(long, default_value_t = 64)]
    in_flight: usize,
    /// Requests per second (default: as fast as the window allows).
    #[arg(long)]
    rate: Option<f64>,
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    #[arg(long, default_value_t = 20_000)]
    accounts: usize,
    #[arg(long, default_value = "ascii")]
    dialect: String,
    /// The daemon's `kafka.ack_budget_ms`.
    #[arg(long, default_value_t = 1000)]
    ack_budget_ms: u64,
    /// The daemon's `kafka.linger_ms`.
    #[arg(long, default_value_t = 0)]
    linger_ms: u64,
}

fn fail(what: &str, e: impl std::fmt::Display) -> ! {
    eprintln!("daemon-bench: {what}: {e}");
    std::process::exit(1)
}

fn main() {
    let args = Args::parse();
    let prefix = format!("bench{}", std::process::id());
    let dir = tempfile::Builder::new()
        .prefix("authorizer-bench-")
        .tempdir()
        .unwrap_or_else(|e| fail("work dir", e));
    let broker = match &args.brokers {
        Some(addr) => Broker::external(addr),
        None => Broker::start(args.broker, &prefix).unwrap_or_else(|e| fail("broker", e)),
    };
    let token = TestToken::with_test_keys();
    write_private(
        &dir.path().join("pan.key"),
        &format!("{DEMO_PAN_KEY_HEX}\n"),
    )
    .unwrap_or_else(|e| fail("pan key", e));
    let report = dir.path().join("report.json");
    let mut netsim_args: Vec<String> = vec![
        "--accounts".into(),
        args.accounts.to_string(),
        "--in-flight".into(),
        args.in_flight.to_string(),
        "--seconds".into(),
        args.seconds.to_string(),
        "--mix".into(),
        args.mix.clone(),
        "--report-json".into(),
        report.display().to_string(),
    ];
    if let Some(rate) = args.rate {
        netsim_args.extend(["--rate".into(), rate.to_string()]);
    }
    let (mut netsim, device, lines) =
        start_netsim_load(&broker, &prefix, dir.path(), &args.dialect, &netsim_args)
            .unwrap_or_else(|e| fail("netsim", e));
    let spec = DaemonSpec {
        name: "bench-a",
        dialect: &args.dialect,
        device: &device,
        broker: &broker,
        prefix: &prefix,
        token: &token,
        dir: dir.path(),
        ack_budget_ms: args.ack_budget_ms,
        linger_ms: args.linger_ms,
    };
    let mut daemon = spec.start().unwrap_or_else(|e| fail("daemon", e));
    daemon
        .wait_ready(Duration::from_secs(600))
        .unwrap_or_else(|e| fail("daemon", e));
    wait_line(&lines, Duration::from_secs(120), |l| {
        l.contains("signed on")
    })
    .unwrap_or_else(|e| fail("sign-on", e));
    let cpu_start = daemon.cpu_seconds().unwrap_or(0.0);
    let exit = netsim.wait().ok().and_then(|s| s.code());
    let cpu = daemon.cpu_seconds().unwrap_or(0.0) - cpu_start;
    let replica = read_replica(&daemon.admin);
    let stopped = daemon.stop();
    let r: serde_json::Value = std::fs::read_to_string(&report)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_else(|| fail("netsim report", "missing"));
    let answered = r["answered"].as_f64().unwrap_or(0.0);
    let l = &r["latency_us"];
    println!(
        "daemon-bench: broker={} mix={} in_flight={} rate={} seconds={} answered={} unanswered={} tps={:.0} p50_us={} p99_us={} p999_us={} max_us={} daemon_cpu_s={:.2} daemon_cpu_us_per_request={:.1} kafka_acked={:.0} spooled={:.0} netsim_exit={} daemon_clean_stop={}",
        broker.kind.name().replace(' ', "_"),
        args.mix,
        args.in_flight,
        args.rate.map_or("max".into(), |r| r.to_string()),
        args.seconds,
        answered,
        r["unanswered"],
        r["tps"].as_f64().unwrap_or(0.0),
        l["p50"],
        l["p99"],
        l["p999"],
        l["max"],
        cpu,
        if answered > 0.0 {
            cpu * 1e6 / answered
        } else {
            0.0
        },
        replica.acked,
        replica.spooled,
        exit.map_or("?".into(), |c| c.to_string()),
        stopped,
    );
}
