//! End to end through every real part the project has so far: the demo binary with a real
//! tansu broker (started by `scripts/broker`) and a private SoftHSM2 token. It must answer
//! every request, have every ARPC accepted by the simulated cards, answer repeats identically,
//! and end with replica B (built from Kafka alone) at the same state hash as authorizer A.

use std::path::Path;
use std::process::Command;

fn broker() -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/broker");
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

fn run_demo(extra: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_demo"))
        .args(["--seconds", "3", "--accounts", "500"])
        .args(extra)
        .output()
        .expect("run the demo");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn demo_through_kafka_and_softhsm_converges() {
    let brokers = broker();
    let out = run_demo(&["--brokers", &brokers]);
    assert!(out.contains("all checks passed"), "{out}");
    assert!(out.contains("(equal: the replicas converged)"), "{out}");
    assert!(out.contains("replica B caught up true"), "{out}");
    // traffic flowed: some approvals, every chip answer's ARPC checked by a card
    let line = out
        .lines()
        .find(|l| l.starts_with("demo: ") && l.contains("requests; ARPCs accepted"))
        .expect("summary line");
    let requests: u64 = line["demo: ".len()..]
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("request count");
    assert!(requests > 100, "{line}");
}

#[test]
fn demo_in_memory_in_the_mastercard_dialect() {
    let out = run_demo(&["--dialect", "mastercard"]);
    assert!(out.contains("all checks passed"), "{out}");
}
