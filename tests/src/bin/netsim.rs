//! `netsim`: the card network's interface device over TCP, for the authorizer daemon to dial.
//!
//! It listens, answers the daemon's sign-on, echoes and sign-off, optionally publishes its
//! population to `account-updates` as the bank's cloud would, waits until the daemon signed on,
//! then runs either the scripted scenarios (`netsim scenarios`: one `PASS`/`FAIL`/`SKIP` line
//! each, exit 0 iff none failed) or a load (`netsim load`: live figures each second, a report,
//! an SVG of the latency distribution, a JSON of the figures). See `docs/netsim.md`.
//!
//! Exit codes: 0 all passed (or the load ran with every request answered, apart from those in
//! flight on connections it dropped itself with `--drop-after-s`, and every ARPC accepted); 1 a failure of the run (a scenario failed, requests unanswered, ARPCs refused);
//! 2 bad arguments or setup (no port, no broker, no sign-on in time).
//!
//! Must never: print a PAN, track data or a key; use a key that is not a test key for the
//! cards (they are personalised from the public EMV test IMK).

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use iso8583::Dialect;
use serde::Serialize;
use systests::device::Device;
use systests::load::{LoadOptions, Mix};
use systests::netsim::Population;
use systests::scenarios::{self, Outcome, ScenarioOptions, Scenarios, Verdict};
use systests::{now_unix_s, plot, publish};

#[derive(Parser)]
#[command(
    name = "netsim",
    about = "The card network's interface device, simulated over TCP",
    args_override_self = true
)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Scripted cases with expected answers, judged field by field.
    Scenarios(ScenarioArgs),
    /// Traffic at a window or a rate, with latency figures.
    Load(LoadArgs),
}

#[derive(Args)]
struct Common {
    /// Address to listen on for the authorizer's connection.
    #[arg(long, default_value = "127.0.0.1:8583")]
    listen: String,
    /// `ascii`, `mastercard`, or a dialect file.
    #[arg(long, default_value = "ascii")]
    dialect: String,
    /// Seed of the population and the traffic.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Kafka bootstrap servers: publish the population to the account-updates topic first.
    #[arg(long)]
    brokers: Option<String>,
    #[arg(long, default_value = "account-updates")]
    account_updates_topic: String,
    /// The shared pan_key, 64 hex characters (needed with --brokers).
    #[arg(long)]
    pan_key_file: Option<PathBuf>,
    /// How long to wait for the daemon to connect and sign on.
    #[arg(long, default_value_t = 120)]
    wait_sign_on_s: u64,
    /// After the sign-on, wait this long before sending (e.g. for the daemon to catch up).
    #[arg(long, default_value_t = 0)]
    start_delay_ms: u64,
    /// An answer not there after this long is missing.
    #[arg(long, default_value_t = 10_000)]
    answer_timeout_ms: u64,
    /// Also write the results as JSON here.
    #[arg(long)]
    report_json: Option<PathBuf>,
}

#[derive(Args)]
struct ScenarioArgs {
    #[command(flatten)]
    common: Common,
    /// Wait this long, quiet, for the daemon's idle echo (more than its echo_idle_s); 0 skips.
    #[arg(long, default_value_t = 0)]
    daemon_echo_wait_s: u64,
    /// Size of the oversized frame (above the daemon's max_frame_bytes); 0 skips that case.
    #[arg(long, default_value_t = 8_000)]
    oversized_bytes: usize,
    /// After the cases, wait this long for the daemon's sign-off (send it SIGTERM); 0: don't.
    #[arg(long, default_value_t = 0)]
    await_sign_off_s: u64,
}

#[derive(Args)]
struct LoadArgs {
    #[command(flatten)]
    common: Common,
    /// Accounts (one card each).
    #[arg(long, default_value_t = 10_000)]
    accounts: usize,
    /// Requests in flight at most.
    #[arg(long, default_value_t = 64)]
    in_flight: usize,
    /// Requests per second (at most --in-flight in flight); without it, as fast as the window
    /// allows.
    #[arg(long)]
    rate: Option<f64>,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    #[arg(long, value_enum, default_value_t = Mix::Realistic)]
    mix: Mix,
    /// Write the latency distribution here as an SVG.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Wait until this many connections are signed on before sending.
    #[arg(long, default_value_t = 1)]
    wait_connections: usize,
    /// After this many seconds, drop every connection once, abruptly (no sign-off).
    #[arg(long)]
    drop_after_s: Option<u64>,
    /// Write one JSON line per answer received here (account id, MTI, DE 39, amounts, STAN,
    /// RRN, a reversal's original).
    #[arg(long)]
    approvals_file: Option<PathBuf>,
}

fn fail(what: &str, e: impl std::fmt::Display) -> ! {
    eprintln!("netsim: {what}: {e}");
    std::process::exit(2)
}

fn main() {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail("tokio runtime", e));
    let code = rt.block_on(async {
        match cli.mode {
            Mode::Scenarios(a) => scenarios_mode(a).await,
            Mode::Load(a) => load_mode(a).await,
        }
    });
    std::process::exit(code);
}

/// Listens, publishes `pop`'s events when asked, waits for `connections` signed-on connections.
async fn setup(common: &Common, pop: &Population, connections: usize) -> Arc<Device> {
    let dialect =
        Dialect::by_name_or_path(&common.dialect).unwrap_or_else(|e| fail(&common.dialect, e));
    let device = Device::bind(&common.listen, Arc::new(dialect))
        .await
        .unwrap_or_else(|e| fail(&format!("listen on {}", common.listen), e));
    println!(
        "netsim: listening on {} ({})",
        device.local_addr(),
        common.dialect
    );
    if let Some(brokers) = &common.brokers {
        let path = common
            .pan_key_file
            .as_ref()
            .unwrap_or_else(|| fail("--brokers", "needs --pan-key-file"));
        let key = publish::read_pan_key(path).unwrap_or_else(|e| fail("pan key", e));
        let events = pop.cloud_events(&key, now_unix_s() - 60);
        let n = publish::publish_events(brokers, &common.account_updates_topic, &events)
            .await
            .unwrap_or_else(|e| fail("publish the population", e));
        println!(
            "netsim: published {n} account and card events to {}",
            common.account_updates_topic
        );
    }
    if !device
        .wait_signed_on_count(connections, Duration::from_secs(common.wait_sign_on_s))
        .await
    {
        fail(
            "sign-on",
            format!(
                "{} of {connections} connections signed on within {} s",
                device.signed_on(),
                common.wait_sign_on_s
            ),
        );
    }
    println!(
        "netsim: the authorizer signed on (connection {}, {} signed on)",
        device.connections(),
        device.signed_on()
    );
    tokio::time::sleep(Duration::from_millis(common.start_delay_ms)).await;
    device
}

#[derive(Serialize)]
struct ScenarioJson {
    dialect: String,
    passed: usize,
    failed: usize,
    skipped: usize,
    scenarios: Vec<ScenarioLine>,
    connections: u64,
    /// `None` when not awaited.
    sign_off_seen: Option<bool>,
}

#[derive(Serialize)]
struct ScenarioLine {
    name: String,
    verdict: &'static str,
    detail: Option<String>,
}

fn line_of(o: &Outcome) -> ScenarioLine {
    let (verdict, detail) = match &o.verdict {
        Verdict::Pass => ("pass", None),
        Verdict::Fail(d) => ("fail", Some(d.clone())),
        Verdict::Skip(d) => ("skip", Some(d.clone())),
    };
    ScenarioLine {
        name: o.name.clone(),
        verdict,
        detail,
    }
}

async fn scenarios_mode(a: ScenarioArgs) -> i32 {
    let now = now_unix_s();
    let mut options = ScenarioOptions::new(a.common.seed);
    options.answer_timeout = Duration::from_millis(a.common.answer_timeout_ms);
    options.daemon_echo_wait = Duration::from_secs(a.daemon_echo_wait_s);
    options.oversized_bytes = a.oversized_bytes;
    let (pop, _) = scenarios::population(a.common.seed, now);
    let device = setup(&a.common, &pop, 1).await;
    let mut outcomes = Scenarios::new(&device, options, now).run().await;
    for o in &outcomes {
        println!("{}", o.line());
    }
    let mut sign_off_seen = None;
    if a.await_sign_off_s > 0 {
        let from = device.events().len();
        println!(
            "netsim: waiting {} s for the daemon's sign-off",
            a.await_sign_off_s
        );
        let o =
            scenarios::await_sign_off(&device, from, Duration::from_secs(a.await_sign_off_s)).await;
        println!("{}", o.line());
        sign_off_seen = Some(o.passed());
        outcomes.push(o);
    }
    let count = |v: &str| outcomes.iter().filter(|o| line_of(o).verdict == v).count();
    let (passed, failed, skipped) = (count("pass"), count("fail"), count("skip"));
    println!("netsim: {passed} passed, {failed} failed, {skipped} skipped");
    if let Some(path) = &a.common.report_json {
        let json = ScenarioJson {
            dialect: device.dialect().name().to_owned(),
            passed,
            failed,
            skipped,
            scenarios: outcomes.iter().map(line_of).collect(),
            connections: device.connections(),
            sign_off_seen,
        };
        write_json(path, &json);
    }
    device.close();
    i32::from(failed > 0)
}

async fn load_mode(a: LoadArgs) -> i32 {
    let now = now_unix_s();
    let mut pop = Population::generate(a.common.seed, a.accounts, now);
    let approvals = a.approvals_file.as_ref().map(|path| {
        let file = std::fs::File::create(path)
            .unwrap_or_else(|e| fail(&format!("approvals file {}", path.display()), e));
        Box::new(std::io::BufWriter::new(file)) as Box<dyn std::io::Write + Send>
    });
    let device = setup(&a.common, &pop, a.wait_connections.max(1)).await;
    let mut options = LoadOptions {
        in_flight: a.in_flight,
        rate: a.rate,
        mix: a.mix,
        answer_timeout: Duration::from_millis(a.common.answer_timeout_ms),
        live: true,
        drop_after: a.drop_after_s.map(Duration::from_secs),
        approvals,
        ..LoadOptions::new(a.common.seed, Duration::from_secs(a.seconds))
    };
    // SIGTERM: stop sending, wait for what is in flight, report and flush as at the end.
    let stop = options.stop.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            term.recv().await;
            eprintln!("netsim: SIGTERM, stopping the load");
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    });
    let (report, histogram) = systests::load::run(&device, &mut pop, &mut options).await;
    println!("{}", report.text());
    if let Some(path) = &a.plot {
        let title = format!(
            "authorizer latency, {} {} mix, {:.0} tps",
            report.dialect, report.mix, report.tps
        );
        match plot::latency_svg(path, &title, &histogram) {
            Ok(()) => println!("netsim: latency plot in {}", path.display()),
            Err(e) => eprintln!("netsim: plot: {e}"),
        }
    }
    if let Some(path) = &a.common.report_json {
        write_json(path, &report);
    }
    device.close();
    let ok = report.unanswered == report.lost_in_drop
        && report.arpc_refused == 0
        && report.repeats_different == 0;
    i32::from(!ok)
}

fn write_json(path: &std::path::Path, value: &impl Serialize) {
    let text = serde_json::to_string_pretty(value).expect("figures serialise");
    match std::fs::write(path, text) {
        Ok(()) => println!("netsim: report in {}", path.display()),
        Err(e) => eprintln!("netsim: {}: {e}", path.display()),
    }
}
