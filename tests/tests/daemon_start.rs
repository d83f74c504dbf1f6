//! `authorizer run` as a process: the start sequence and the stop, with a real broker and a real
//! SoftHSM2 token. A configuration error exits 2 naming the key; a key label missing on the token
//! exits 1 naming the label; a good start is ready once caught up with the log (the admin server
//! says so, `/state` and `/metrics` answer), and SIGTERM stops it with exit 0.

mod daemon_support;

use std::time::Duration;

use daemon_support::{World, free_port};

#[test]
fn a_configuration_error_exits_2_naming_the_key() {
    let world = World::new();
    let mut config = world.config("auth-a", "ascii", &["127.0.0.1:1".into()]);
    config.edit("ack_budget_ms = 1000", "ack_budget_ms = \"soon\"");
    config.edit("[network]", "[network]\ncolour = \"blue\"");
    let mut daemon = config.start();
    let status = daemon.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(2), "{}", daemon.stderr());
    let stderr = daemon.stderr();
    assert!(stderr.contains("kafka.ack_budget_ms"), "{stderr}");
    assert!(stderr.contains("network.colour"), "{stderr}");
}

#[test]
fn a_key_label_missing_on_the_token_exits_1_naming_it() {
    let world = World::new();
    let mut config = world.config("auth-a", "ascii", &["127.0.0.1:1".into()]);
    config.edit(
        "[hsm.key_sets]",
        "[hsm.key_sets]\n\"visa-2027\" = { key_label = \"imk-ac-visa-2027\", profile = \"visa-cvn18\" }",
    );
    let mut daemon = config.start();
    let status = daemon.wait_exit(Duration::from_secs(60));
    assert_eq!(status.code(), Some(1), "{}", daemon.stderr());
    let stderr = daemon.stderr();
    assert!(stderr.contains("imk-ac-visa-2027"), "{stderr}");
    assert!(
        !stderr.contains("1234"),
        "the PIN must never be printed: {stderr}"
    );
}

#[test]
fn ready_after_catch_up_then_sigterm_exits_0() {
    let world = World::new();
    // Nothing listens there: the link keeps dialling, which must not hold readiness back.
    let device = format!("127.0.0.1:{}", free_port());
    let mut daemon = world
        .config("auth-a", "mastercard", std::slice::from_ref(&device))
        .start();
    daemon.wait_ready(Duration::from_secs(120));

    assert_eq!(daemon.get("/health/live").unwrap().status, 200);
    let state = daemon.state();
    assert_eq!(state["instance_id"], "auth-a");
    assert_eq!(state["ready"], true);
    assert_eq!(state["spool_events"], 0);
    assert_eq!(state["counts"]["accounts"], 0);
    assert_eq!(state["links"][0]["address"], device.as_str());
    assert_ne!(state["links"][0]["state"], "signed_on");
    assert_eq!(state["state_hash"].as_str().unwrap().len(), 64);
    // Both input topics, every partition (4 each), at their beginning.
    let offsets = state["offsets"].as_object().unwrap();
    assert_eq!(offsets.len(), 8, "{offsets:?}");
    assert!(offsets.values().all(|v| v == 0), "{offsets:?}");
    assert_eq!(daemon.get("/accounts/acc-unknown").unwrap().status, 404);

    // Metrics are refreshed every second.
    std::thread::sleep(Duration::from_millis(1500));
    let metrics = daemon.get("/metrics").unwrap().body;
    for name in [
        "authorizer_link_up{device=",
        "authorizer_link_reconnects_total{device=",
        "authorizer_spool_events 0",
        "authorizer_state_records{kind=\"accounts\"} 0",
        "authorizer_kafka_lag_records{",
        "authorizer_ready 1",
    ] {
        assert!(metrics.contains(name), "no {name} in\n{metrics}");
    }

    daemon.signal("TERM");
    let status = daemon.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "{}", daemon.stderr());
    assert!(daemon.stderr().contains("stopped"), "{}", daemon.stderr());
}
