//! The graceful stop under load, with every part real: the netsim sends magstripe authorizations
//! to the daemon, which is sent SIGTERM in the middle of it. The daemon must sign off, answer every
//! request it had taken (the netsim counts none unanswered), hold every event in Kafka or its
//! spool and then drain the spool, and exit 0; started again on the same `state.dir`, it is ready
//! with exactly the approvals of the first run held (read back from the log): every account holds
//! the sum of its approvals, in as many holds, neither fewer nor more.

mod daemon_support;

use std::time::Duration;

use daemon_support::{Netsim, World};

#[test]
fn sigterm_during_load_answers_everything_in_flight_and_exits_0() {
    let world = World::new();
    let report = world.dir.path().join("load.json");
    let approvals = world.dir.path().join("approvals.jsonl");
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
            "magstripe",
            "--report-json",
            report.to_str().unwrap(),
            "--approvals-file",
            approvals.to_str().unwrap(),
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

    // What the netsim was answered: approvals (00) per account, with their amounts.
    let approved = daemon_support::approved_holds(&[approvals.as_path()]);
    assert!(approved.len() > 10, "{}", netsim.output());

    // The decisions are in the log: a new daemon on the same state.dir rebuilds them, once each.
    let mut again = config.start();
    again.wait_ready(Duration::from_secs(120));
    assert_eq!(again.state()["spool_events"], 0);
    for (account, (count, amount)) in &approved {
        let a = again.get(&format!("/accounts/{account}")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
        assert_eq!(
            (v["held"].as_u64(), v["holds"].as_u64()),
            (Some(*amount), Some(*count)),
            "{account}: {}",
            a.body
        );
    }
    again.signal("TERM");
    assert_eq!(again.wait_exit(Duration::from_secs(60)).code(), Some(0));
}
