//! Two daemons, A and B, on one broker and one world's topics (two instances of one bank), with
//! every part real: `authorizer` processes, a real broker, a real SoftHSM2 token, the netsim as
//! the interface device over loopback TCP.
//!
//! First the traffic goes to A only (a netsim that A alone dials): B, with no network yet, must
//! still follow the log (its offsets grow with A's decisions). Then a second netsim that both
//! dial, waiting for both to sign on, spreads its traffic over the two. At the end, once both
//! `/state` show the same `offsets`, their `state_hash` must be the same, and every account
//! must hold, on both, exactly what the netsims' answer records say was approved.
//!
//! Magstripe traffic only: the second run replays the first's population and cards, which chip
//! cards would refuse for their counters. Must never: compare hashes before the offsets are
//! equal; pass if one of the daemons got no traffic in the second run.

mod daemon_support;

use std::time::{Duration, Instant};

use daemon_support::{Daemon, Netsim, World, free_port};

/// The sum of the `authorizations/*` offsets in `/state`.
fn authorizations_offset(state: &serde_json::Value) -> u64 {
    state["offsets"]
        .as_object()
        .expect("offsets")
        .iter()
        .filter(|(k, _)| k.contains("authorizations/"))
        .map(|(_, v)| v.as_u64().expect("offset"))
        .sum()
}

fn load_args<'a>(listen: &'a str, report: &'a str, approvals: &'a str) -> Vec<&'a str> {
    vec![
        "--listen",
        listen,
        "--seed",
        "31",
        "--accounts",
        "150",
        "--in-flight",
        "16",
        "--seconds",
        "4",
        "--mix",
        "magstripe",
        "--report-json",
        report,
        "--approvals-file",
        approvals,
    ]
}

fn read_json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("the load report")).expect("JSON")
}

fn wait_until(
    what: &str,
    timeout: Duration,
    mut ok: impl FnMut() -> bool,
    why: impl Fn() -> String,
) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(
            Instant::now() < deadline,
            "{what} within {timeout:?}: {}",
            why()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn stop(mut daemon: Daemon) {
    daemon.signal("TERM");
    let status = daemon.wait_exit(Duration::from_secs(60));
    assert_eq!(status.code(), Some(0), "{}", daemon.stderr());
}

#[test]
fn two_daemons_converge_to_the_same_state_hash_and_hold_what_was_approved() {
    let world = World::new();
    let dir = world.dir.path();
    let (p1, p2) = (free_port(), free_port());
    let (listen1, listen2) = (format!("127.0.0.1:{p1}"), format!("127.0.0.1:{p2}"));
    let (r1, r2) = (dir.join("load1.json"), dir.join("load2.json"));
    let (f1, f2) = (dir.join("answers1.jsonl"), dir.join("answers2.jsonl"));

    // Phase 1: a netsim on p1, which only A dials; B dials p2, where nobody listens yet.
    let mut first = Netsim::start(
        &world,
        "load",
        "ascii",
        &load_args(&listen1, r1.to_str().unwrap(), f1.to_str().unwrap()),
    );
    assert_eq!(first.addr, listen1);
    let mut a = world
        .config("auth-a", "ascii", &[listen1.clone(), listen2.clone()])
        .start();
    let mut b = world
        .config("auth-b", "ascii", std::slice::from_ref(&listen2))
        .start();
    a.wait_ready(Duration::from_secs(120));
    b.wait_ready(Duration::from_secs(120));
    let b_before = authorizations_offset(&b.state());

    let code = first.wait_exit(Duration::from_secs(120));
    let out1 = first.output();
    println!("{out1}");
    assert_eq!(code, Some(0), "first netsim:\n{out1}\n{}", a.stderr());
    let report1 = read_json(&r1);
    assert_eq!(
        report1["per_connection"].as_array().unwrap().len(),
        1,
        "{out1}"
    );
    let approved1 = report1["codes"]["00"].as_u64().unwrap_or(0);
    assert!(approved1 > 0, "{out1}");

    // B, not connected to any network, follows A's decisions in the log.
    wait_until(
        "B follows the log",
        Duration::from_secs(60),
        || authorizations_offset(&b.state()) >= b_before + approved1,
        || format!("B {} A {}", b.state(), a.state()),
    );
    assert!(
        b.state()["links"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["state"] != "signed_on"),
        "B has no network yet: {}",
        b.state()
    );

    // Phase 2: a netsim on p2 that both dial; it waits for both to sign on.
    let mut args = load_args(&listen2, r2.to_str().unwrap(), f2.to_str().unwrap());
    args.extend(["--wait-connections", "2"]);
    let mut second = Netsim::start(&world, "load", "ascii", &args);
    let code = second.wait_exit(Duration::from_secs(180));
    let out2 = second.output();
    println!("{out2}");
    assert_eq!(
        code,
        Some(0),
        "second netsim:\n{out2}\nA:\n{}\nB:\n{}",
        a.stderr(),
        b.stderr()
    );
    let report2 = read_json(&r2);
    let per = report2["per_connection"].as_array().unwrap();
    assert_eq!(per.len(), 2, "{out2}");
    for c in per {
        assert!(
            c["answered"].as_u64().unwrap() > 0,
            "both daemons answered: {out2}"
        );
        assert_eq!(c["unanswered"], 0, "{out2}");
    }

    // Convergence: equal offsets, then equal hashes.
    // Equal twice in a row, half a second apart: equal and no longer moving (both at the end of
    // the log), not two replicas passing the same offsets on their way.
    let mut last = None;
    wait_until(
        "equal offsets, twice in a row",
        Duration::from_secs(60),
        || {
            let (oa, ob) = (a.state()["offsets"].clone(), b.state()["offsets"].clone());
            let settled = oa == ob && last.as_ref() == Some(&oa);
            last = (oa == ob).then_some(oa);
            if !settled {
                std::thread::sleep(Duration::from_millis(400));
            }
            settled
        },
        || format!("A {} B {}", a.state(), b.state()),
    );
    let (sa, sb) = (a.state(), b.state());
    assert_eq!(sa["offsets"], sb["offsets"]);
    assert_eq!(sa["state_hash"], sb["state_hash"], "A {sa} B {sb}");
    assert_eq!(sa["counts"], sb["counts"], "A {sa} B {sb}");

    // What each account holds, on both, is what the answers say was approved.
    let expected = daemon_support::approved_holds(&[&f1, &f2]);
    let approved: u64 = expected.values().map(|(n, _)| n).sum();
    assert_eq!(
        approved,
        approved1 + report2["codes"]["00"].as_u64().unwrap_or(0),
        "one record per answer"
    );
    for (account, (holds, held)) in &expected {
        for (name, daemon) in [("A", &a), ("B", &b)] {
            let answer = daemon
                .get(&format!("/accounts/{account}"))
                .expect("/accounts answers");
            assert_eq!(answer.status, 200, "{name} {account}: {}", answer.body);
            let view: serde_json::Value = serde_json::from_str(&answer.body).expect("JSON");
            assert_eq!(view["holds"], *holds, "{name} {account}: {view}");
            assert_eq!(view["held"], *held, "{name} {account}: {view}");
        }
    }

    stop(a);
    stop(b);
}
