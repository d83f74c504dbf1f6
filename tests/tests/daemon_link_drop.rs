//! A link failure in the middle of a load, with every part real: the netsim sends magstripe
//! traffic to the `authorizer` daemon (a process, a real broker, a real SoftHSM2 token) and,
//! two seconds in, drops the daemon's connection abruptly (no sign-off). The daemon must dial
//! again and sign on again (its `/metrics` count the reconnect, `/state` shows the link signed
//! on), and every request the netsim sent on the new connection must be answered. Only the
//! requests in flight on the dropped connection may stay unanswered.
//!
//! Must never: accept unanswered requests sent after the reconnect; pass without a reconnect.

mod daemon_support;

use std::time::{Duration, Instant};

use daemon_support::{Daemon, Netsim, World};

/// The sum of `authorizer_link_reconnects_total` over the devices (0 before a first sample).
fn reconnects(daemon: &Daemon) -> u64 {
    let metrics = daemon.get("/metrics").expect("/metrics answers");
    assert_eq!(metrics.status, 200, "{}", metrics.body);
    metrics
        .body
        .lines()
        .filter(|l| l.starts_with("authorizer_link_reconnects_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

fn links_signed_on(daemon: &Daemon) -> bool {
    let state = daemon.state();
    state["links"]
        .as_array()
        .is_some_and(|links| !links.is_empty() && links.iter().all(|l| l["state"] == "signed_on"))
}

#[test]
fn a_dropped_link_reconnects_and_every_request_after_the_reconnect_is_answered() {
    let world = World::new();
    let report = world.dir.path().join("load.json");
    let mut netsim = Netsim::start(
        &world,
        "load",
        "ascii",
        &[
            "--accounts",
            "200",
            "--in-flight",
            "16",
            "--seconds",
            "6",
            "--drop-after-s",
            "2",
            "--mix",
            "magstripe",
            "--report-json",
            report.to_str().unwrap(),
        ],
    );
    let config = world.config("auth-l", "ascii", std::slice::from_ref(&netsim.addr));
    let mut daemon = config.start();
    daemon.wait_ready(Duration::from_secs(120));
    assert_eq!(reconnects(&daemon), 0, "no reconnect before the drop");

    netsim.wait_line(Duration::from_secs(60), |l| {
        l.contains("dropped 1 connections")
    });
    // The daemon dials again: the metric counts it and the link is signed on again.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(reconnects(&daemon) >= 1 && links_signed_on(&daemon)) {
        assert!(
            Instant::now() < deadline,
            "no reconnect: {} reconnects, /state {}\n{}",
            reconnects(&daemon),
            daemon.state(),
            daemon.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let code = netsim.wait_exit(Duration::from_secs(120));
    let out = netsim.output();
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("the load report"))
            .expect("JSON");
    println!("{out}");
    assert_eq!(code, Some(0), "netsim failed:\n{out}\n{}", daemon.stderr());
    assert_eq!(r["dropped_connections"], 1, "{out}");
    assert!(r["connections"].as_u64().unwrap() >= 2, "{out}");
    let after_sent = r["after_reconnect_sent"].as_u64().unwrap();
    assert!(
        after_sent > 50,
        "traffic resumed after the reconnect:\n{out}"
    );
    assert_eq!(
        r["after_reconnect_answered"], after_sent,
        "every request after the reconnect answered:\n{out}"
    );
    // Only what was in flight on the dropped connection went unanswered.
    assert_eq!(r["unanswered"], r["lost_in_drop"], "{out}");
    assert!(r["answered"].as_u64().unwrap() > after_sent, "{out}");
    let per: Vec<u64> = r["per_connection"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["requests"].as_u64().unwrap())
        .collect();
    assert!(per.len() >= 2 && per.iter().all(|&n| n > 0), "{out}");
    assert!(r["codes"]["00"].as_u64().unwrap_or(0) > 0, "{out}");

    daemon.signal("TERM");
    assert_eq!(
        daemon.wait_exit(Duration::from_secs(60)).code(),
        Some(0),
        "{}",
        daemon.stderr()
    );
}
