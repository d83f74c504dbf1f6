//! The graceful stop under load, with every part real: the netsim sends the realistic mix to the
//! daemon, which is sent SIGTERM in the middle of it. The daemon must sign off, answer every
//! request it had taken (the netsim counts none unanswered), hold every event in Kafka or its
//! spool and then drain the spool, and exit 0; started again on the same `state.dir`, it is ready
//! with the decisions of the first run in its state (read back from the log).

mod daemon_support;

use std::time::Duration;

use daemon_support::{Netsim, World};

#[test]
fn sigterm_during_load_answers_everything_in_flight_and_exits_0() {
    let world = World::new();
    let report = world.dir.path().join("load.json");
    let mut netsim = Netsim::start(
        &world,
        "load",
        "ascii",
        &[
            "--accounts",
            "300",
            "--in-flight",
            "32",
            "--seconds",
            "8",
            "--mix",
            "realistic",
            "--report-json",
            report.to_str().unwrap(),
        ],
    );
    let config = world.config("auth-t", "ascii", std::slice::from_ref(&netsim.addr));
    let mut daemon = config.start();
    daemon.wait_ready(Duration::from_secs(120));
    // Traffic flows: a few live lines with answers.
    netsim.wait_line(Duration::from_secs(60), |l| {
        l.starts_with("t=3") && !l.contains("req=0 ")
    });

    daemon.signal("TERM");
    let status = daemon.wait_exit(Duration::from_secs(60));
    let stderr = daemon.stderr();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("signing off"), "{stderr}");
    assert!(stderr.contains("every event is in Kafka"), "{stderr}");

    // The netsim goes on until its time is up, sending nothing while no daemon is signed on.
    let _ = netsim.wait_exit(Duration::from_secs(60));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("the load report"))
            .expect("JSON");
    let answered = r["answered"].as_u64().unwrap();
    assert!(answered > 100, "{}", netsim.output());
    assert_eq!(
        r["unanswered"],
        0,
        "requests left unanswered:\n{}",
        netsim.output()
    );
    assert_eq!(r["arpc_refused"], 0, "{}", netsim.output());
    let approvals = r["codes"]["00"].as_u64().unwrap_or(0);
    assert!(approvals > 0, "{}", netsim.output());

    // The decisions are in the log: a new daemon on the same state.dir rebuilds them.
    let mut again = config.start();
    again.wait_ready(Duration::from_secs(120));
    let state = again.state();
    assert_eq!(state["spool_events"], 0);
    assert!(
        state["counts"]["holds"].as_u64().unwrap() >= approvals,
        "{state} after {approvals} approvals"
    );
    again.signal("TERM");
    assert_eq!(again.wait_exit(Duration::from_secs(60)).code(), Some(0));
}
