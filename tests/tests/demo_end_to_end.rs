//! The README's demo, end to end: the `demo` binary sets up a broker, a SoftHSM2 token, two
//! `authorizer run` daemons and the netsim in load mode, and must end with every request
//! answered, every ARPC accepted by the simulated cards, both daemons stopped cleanly and their
//! state hashes equal ("all checks passed"). Once on the real broker (tansu), once on the
//! embedded one in the other dialect.

mod daemon_support;

use std::process::Command;

fn run_demo(extra: &[&str]) -> String {
    // The demo starts the daemons from the binaries next to it.
    daemon_support::authorizer_bin();
    let out = Command::new(env!("CARGO_BIN_EXE_demo"))
        .current_dir(
            std::path::PathBuf::from(
                std::env::var_os("CARGO_MANIFEST_DIR")
                    .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
            )
            .join(".."),
        )
        .args(["--seconds", "4", "--accounts", "500"])
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

fn answered(out: &str) -> u64 {
    let line = out
        .lines()
        .find(|l| l.starts_with("load: ") && l.contains("requests"))
        .unwrap_or_else(|| panic!("no load summary in\n{out}"));
    line.split(", ")
        .find_map(|part| part.strip_suffix(" answered"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no answered count in {line}"))
}

#[test]
fn demo_on_two_daemons_and_tansu_converges() {
    let out = run_demo(&["--broker", "tansu"]);
    assert!(out.contains("all checks passed"), "{out}");
    assert!(out.contains("(equal: the replicas converged)"), "{out}");
    assert!(answered(&out) > 100, "{out}");
}

#[test]
fn demo_on_the_embedded_broker_in_the_mastercard_dialect() {
    let out = run_demo(&["--dialect", "mastercard"]);
    assert!(out.contains("all checks passed"), "{out}");
    assert!(answered(&out) > 100, "{out}");
}
