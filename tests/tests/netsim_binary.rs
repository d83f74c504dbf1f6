//! The `netsim` binary as a process, with the authorizer's own link and pipeline in-process
//! dialling it (`netsim_support`):
//!
//! * `netsim scenarios` publishes its population to a real tansu broker (`scripts/broker`); the
//!   harness builds the authorizer's state by replaying that topic, so what the netsim published
//!   is what is decided on; every case passes, the harness stops the link when the netsim waits
//!   for the sign-off, and the netsim sees it; exit 0 and a JSON report saying so.
//! * `netsim load` prints a line of figures each second, a summary, an SVG of the latency
//!   distribution and a JSON report, and exits 0 with every request answered.
//!
//! Must never: assert a speed (timeouts only fail a test that hangs); leave the netsim running
//! (each test waits for its exit).

mod netsim_support;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::OpenOptionsExt;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use authorizer::kafka::{KafkaConfig, LogMetrics, ReplayOptions, ensure_topic, replay};
use iso8583::Dialect;
use ledger::{LedgerConfig, State};
use netsim_support::{HANG, PAN_KEY, start_authorizer, state_of};
use systests::netsim::Population;
use systests::now_unix_s;
use tokio::sync::mpsc;

fn broker() -> String {
    let script = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("../scripts/broker");
    let out = Command::new(script)
        .args(["start", "--watch-pid", &std::process::id().to_string()])
        .output()
        .expect("run scripts/broker");
    assert!(
        out.status.success(),
        "scripts/broker start failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("BROKER=").map(str::to_owned))
        .expect("scripts/broker prints BROKER=host:port")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `netsim` with `args`; its stdout lines arrive on the channel.
fn netsim(args: &[&str]) -> (Child, mpsc::UnboundedReceiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_netsim"))
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("run netsim");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (child, rx)
}

/// Lines up to (and including) the first one that starts with `prefix`.
async fn until(lines: &mut mpsc::UnboundedReceiver<String>, prefix: &str, seen: &mut Vec<String>) {
    tokio::time::timeout(HANG * 2, async {
        while let Some(line) = lines.recv().await {
            let done = line.starts_with(prefix);
            seen.push(line);
            if done {
                return;
            }
        }
        panic!("netsim ended before {prefix:?}: {seen:#?}");
    })
    .await
    .unwrap_or_else(|_| panic!("hung waiting for {prefix:?}: {seen:#?}"));
}

async fn exit_code(mut child: Child) -> i32 {
    tokio::task::spawn_blocking(move || child.wait().unwrap().code().unwrap_or(-1))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenarios_published_through_kafka_all_pass_and_the_sign_off_is_reported() {
    let brokers = broker();
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("pan_key");
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&key_file)
        .and_then(|mut f| std::io::Write::write_all(&mut f, hex::encode(PAN_KEY).as_bytes()))
        .unwrap();
    let report = dir.path().join("scenarios.json");
    let mut kafka = KafkaConfig::new(&brokers);
    let run = format!("netsim-{}", std::process::id());
    kafka.account_updates_topic = format!("{run}.account-updates");
    kafka.authorizations_topic = format!("{run}.authorizations");
    ensure_topic(&kafka, &kafka.authorizations_topic, 1)
        .await
        .unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let (child, mut lines) = netsim(&[
        "scenarios",
        "--listen",
        &listen,
        "--dialect",
        "mastercard",
        "--seed",
        "21",
        "--brokers",
        &brokers,
        "--account-updates-topic",
        &kafka.account_updates_topic,
        "--pan-key-file",
        key_file.to_str().unwrap(),
        "--daemon-echo-wait-s",
        "10",
        "--oversized-bytes",
        "5000",
        "--await-sign-off-s",
        "60",
        "--report-json",
        report.to_str().unwrap(),
    ]);
    let mut seen = Vec::new();
    until(&mut lines, "netsim: published", &mut seen).await;

    // The authorizer's state is what the netsim published, read back from Kafka.
    let replayed = tokio::task::spawn_blocking({
        let kafka = kafka.clone();
        move || {
            replay(
                &kafka,
                &ReplayOptions::from_beginning(&kafka),
                State::new(LedgerConfig::default()),
                Arc::new(LogMetrics::default()),
            )
            .expect("replay the published population")
        }
    })
    .await
    .unwrap();
    let (pop, _) = systests::scenarios::population(21, now_unix_s());
    assert_eq!(
        replayed.state.counts().cards as usize,
        pop.cards.len(),
        "every card event arrived"
    );
    let authorizer = start_authorizer(listen, Dialect::mastercard(), replayed.state);

    until(&mut lines, "netsim: waiting", &mut seen).await;
    authorizer.stop().await;
    until(&mut lines, "netsim: report in", &mut seen).await;
    let code = exit_code(child).await;
    let text = seen.join("\n");
    assert_eq!(code, 0, "{text}");
    assert!(!text.contains("FAIL "), "{text}");
    assert!(text.contains("PASS chip_approval_mc-cvn21"), "{text}");
    assert!(
        text.contains("PASS oversized_frame_reconnect_sign_on"),
        "{text}"
    );
    assert!(text.contains("PASS sign_off_on_stop"), "{text}");
    assert!(
        text.contains("netsim: 39 passed, 0 failed, 0 skipped"),
        "{text}"
    );
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(json["failed"], 0);
    assert_eq!(json["passed"], 39);
    assert_eq!(json["sign_off_seen"], true);
    assert_eq!(json["dialect"], "mastercard");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_prints_live_figures_and_writes_the_plot_and_the_json() {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("latency.svg");
    let json_path = dir.path().join("load.json");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let (child, mut lines) = netsim(&[
        "load",
        "--listen",
        &listen,
        "--seed",
        "5",
        "--accounts",
        "300",
        "--seconds",
        "3",
        "--in-flight",
        "16",
        "--mix",
        "chip",
        "--plot",
        svg.to_str().unwrap(),
        "--report-json",
        json_path.to_str().unwrap(),
    ]);
    let mut seen = Vec::new();
    until(&mut lines, "netsim: listening", &mut seen).await;
    let pop = Population::generate(5, 300, now_unix_s());
    let authorizer = start_authorizer(listen, Dialect::ascii(), state_of(&pop));
    until(&mut lines, "netsim: report in", &mut seen).await;
    let code = exit_code(child).await;
    authorizer.stop().await;
    let text = seen.join("\n");
    assert_eq!(code, 0, "{text}");
    assert!(
        seen.iter()
            .any(|l| l.starts_with("t=1 req=") && l.contains("codes[")),
        "a live line each second: {text}"
    );
    assert!(text.contains("load: latency p50="), "{text}");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json_path).unwrap()).unwrap();
    assert!(json["requests"].as_u64().unwrap() > 10, "{json}");
    assert_eq!(json["answered"], json["requests"], "{json}");
    assert_eq!(json["unanswered"], 0, "{json}");
    assert_eq!(json["arpc_refused"], 0, "{json}");
    assert!(json["arpc_ok"].as_u64().unwrap() > 0, "chip mix: {json}");
    assert_eq!(json["mix"], "chip");
    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(
        plot.starts_with("<svg") && plot.contains("<polyline"),
        "an SVG with the curve"
    );
}
