//! Every scripted case of the network simulator against the real daemon, in both dialects: the
//! `authorizer` binary as a process, the population published to a real broker by the netsim (the
//! cloud's side) and replayed by the daemon before it is ready, the cryptograms in a real
//! SoftHSM2 token, the netsim as the interface device over loopback TCP. Then SIGTERM: the
//! netsim must see the daemon sign off, and the daemon exits 0. At `debug` the daemon logs one
//! line per request: no full PAN may appear in its log.

mod daemon_support;

use std::time::Duration;

use daemon_support::{Netsim, World};

fn every_scenario_passes(dialect: &str, seed: &str) {
    let world = World::new();
    let mut netsim = Netsim::start(
        &world,
        "scenarios",
        dialect,
        &[
            "--seed",
            seed,
            "--daemon-echo-wait-s",
            "3",
            "--await-sign-off-s",
            "60",
        ],
    );
    let mut config = world.config("auth-s", dialect, std::slice::from_ref(&netsim.addr));
    config.edit("echo_idle_s = 60", "echo_idle_s = 1");
    let mut daemon = config.start_with_env(&[("AUTHORIZER_LOG", "debug")]);
    daemon.wait_ready(Duration::from_secs(120));

    netsim.wait_line(Duration::from_secs(300), |l| {
        l.contains("waiting") && l.contains("sign-off")
    });
    daemon.signal("TERM");
    let code = netsim.wait_exit(Duration::from_secs(60));
    let out = netsim.output();
    assert_eq!(code, Some(0), "netsim failed:\n{out}\n{}", daemon.stderr());
    assert!(out.contains("PASS sign_off_on_stop"), "{out}");
    assert!(out.contains("0 failed"), "{out}");
    assert!(!out.contains("FAIL"), "{out}");
    let status = daemon.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "{}", daemon.stderr());

    let log = daemon.stderr();
    assert!(log.contains("request"), "no request lines at debug:\n{log}");
    // A PAN is 13 to 19 digits: no such run of digits in the log (masked PANs have `*`).
    let longest_digit_run = log
        .split(|c: char| !c.is_ascii_digit())
        .map(str::len)
        .max()
        .unwrap_or(0);
    assert!(
        longest_digit_run < 13,
        "a run of {longest_digit_run} digits in the log"
    );
}

#[test]
fn every_scenario_passes_against_the_daemon_in_ascii() {
    every_scenario_passes("ascii", "101");
}

#[test]
fn every_scenario_passes_against_the_daemon_in_mastercard() {
    every_scenario_passes("mastercard", "202");
}
