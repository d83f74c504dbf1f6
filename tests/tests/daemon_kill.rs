//! SIGKILL under load, then the same command again, every part real: every approval the netsim
//! received before the kill must be held in the restarted daemon's state (`/accounts/{id}` shows
//! it, from the log and the spool the killed process left), and no hold may be there twice: an
//! account holds at most what was approved plus what was in flight when the process died (decided
//! and published, but never answered).

mod daemon_support;

use std::time::Duration;

use daemon_support::{Netsim, World};

const IN_FLIGHT: u64 = 16;

#[test]
fn sigkill_under_load_then_restart_holds_every_approval_once() {
    let world = World::new();
    let approvals = world.dir.path().join("approvals.jsonl");
    let mut netsim = Netsim::start(
        &world,
        "load",
        "ascii",
        &[
            "--accounts",
            "200",
            "--in-flight",
            &IN_FLIGHT.to_string(),
            "--seconds",
            "60",
            "--mix",
            "magstripe",
            "--approvals-file",
            approvals.to_str().unwrap(),
        ],
    );
    let config = world.config("auth-k", "ascii", std::slice::from_ref(&netsim.addr));
    let mut daemon = config.start();
    daemon.wait_ready(Duration::from_secs(120));
    netsim.wait_line(Duration::from_secs(60), |l| {
        l.starts_with("t=2") && !l.contains("req=0 ")
    });
    daemon.signal("KILL");
    daemon.wait_exit(Duration::from_secs(10));
    // The netsim stops on SIGTERM and writes what it received.
    netsim.signal("TERM");
    let _ = netsim.wait_exit(Duration::from_secs(30));

    // What the netsim was told: approvals (00) per account, with their amounts.
    let approved = daemon_support::approved_holds(&[approvals.as_path()]);
    let total: u64 = approved.values().map(|(n, _)| n).sum();
    assert!(total > 50, "too few approvals before the kill: {total}");

    // The same command again.
    let mut again = config.start();
    again.wait_ready(Duration::from_secs(120));
    let mut extra_holds = 0u64;
    for (account, (count, amount)) in &approved {
        let a = again
            .get(&format!("/accounts/{account}"))
            .expect("/accounts answers");
        assert_eq!(a.status, 200, "{account}: {}", a.body);
        let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
        let held = v["held"].as_u64().unwrap();
        let holds = v["holds"].as_u64().unwrap();
        assert!(
            held >= *amount && holds >= *count,
            "{account}: {count} approvals of {amount} in total received, but holds {holds} of {held}"
        );
        extra_holds += holds - count;
    }
    // Holds beyond the approvals received: only requests in flight at the kill.
    assert!(
        extra_holds <= IN_FLIGHT,
        "{extra_holds} holds more than approvals received (at most {IN_FLIGHT} were in flight)"
    );
    again.signal("TERM");
    assert_eq!(again.wait_exit(Duration::from_secs(60)).code(), Some(0));
}
