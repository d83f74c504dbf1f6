//! Snapshots with the real processes and the real broker: `snapshotter run` writes snapshots of
//! a published log, a last one on SIGTERM, and restarts from it; `authorizer snapshot inspect`
//! accepts a good file and refuses a flipped byte or a truncated file (exit 1, with the reason);
//! `authorizer run` with a snapshot in `state.dir/snapshots/` is ready with the same
//! `state_hash` as one replaying the log from its beginning, and a corrupt newest snapshot falls
//! back to the previous one, as does one whose offsets the log does not hold (logged and
//! counted).

mod daemon_support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use authorizer::kafka::{Offsets, TopicPartition};
use authorizer::snapshots::LocalStore;
use daemon_support::{Daemon, DaemonConfig, World, authorizer, free_port};
use ledger::{LedgerConfig, State};
use systests::cloud::AccountEvent;

const START: Duration = Duration::from_secs(120);

/// Publishes accounts `from..to` to the world's `account-updates` topic.
fn publish_accounts(world: &World, from: usize, to: usize) {
    let ids: Vec<String> = (from..to).map(|i| format!("acct-{i:05}")).collect();
    let events: Vec<(String, Vec<u8>)> = ids
        .iter()
        .map(|id| {
            let event = AccountEvent {
                event_id: format!("evt-{id}"),
                at_unix_s: 1_767_225_600,
                account_id: id,
                version: 1,
                status: "open",
                currency: "986",
                credit_limit_minor: 100_000,
                posted_balance_minor: 0,
                cleared_holds: &[],
            };
            (id.clone(), event.to_json())
        })
        .collect();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let n = runtime
        .block_on(systests::publish::publish_events(
            &world.broker,
            &world.account_updates_topic(),
            &events,
        ))
        .expect("publish");
    assert_eq!(n, to - from);
}

/// A snapshotter configuration in `world`: every second, keep 2.
fn snapshotter_config(world: &World, instance_id: &str) -> DaemonConfig {
    let device = format!("127.0.0.1:{}", free_port());
    let mut config = world.config(instance_id, "ascii", &[device]);
    config
        .text
        .push_str("\n[snapshotter]\nevery_s = 1\nkeep_local = 2\n");
    config
}

fn snapshot_files(state_dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(state_dir.join("snapshots"))
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "authsnap"));
    files.sort();
    files
}

/// Polls `/state` until `done` holds (panics with the daemon's stderr after `START`).
fn wait_state(daemon: &Daemon, done: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = Instant::now() + START;
    loop {
        let state = daemon.state();
        if done(&state) {
            return state;
        }
        assert!(
            Instant::now() < deadline,
            "/state never got there: {state}\n{}",
            daemon.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn inspect(file: &Path, softhsm2_conf: &Path) -> std::process::Output {
    authorizer(
        &["snapshot", "inspect", file.to_str().expect("utf-8 path")],
        softhsm2_conf,
    )
}

#[test]
fn the_snapshotter_writes_snapshots_a_last_one_on_sigterm_and_restarts_from_it() {
    let world = World::new();
    publish_accounts(&world, 0, 20);
    let config = snapshotter_config(&world, "snap-a");
    let mut snap = config.start_snapshotter();
    snap.wait_ready(START);
    let state = wait_state(&snap, |s| {
        s["counts"]["accounts"] == 20 && !s["last_snapshot"].is_null()
    });
    assert_eq!(state["instance_id"], "snap-a");
    assert_eq!(state["ready"], true);
    assert!(state.get("links").is_none(), "no links: {state}");
    assert_eq!(snap.get("/health/live").unwrap().status, 200);
    assert!(!snapshot_files(&config.state_dir).is_empty());
    let metrics = snap.get("/metrics").expect("/metrics").body;
    assert!(
        metrics.contains("snapshotter_last_snapshot_timestamp_seconds "),
        "{metrics}"
    );
    assert!(
        metrics.contains("snapshotter_snapshot_duration_seconds_count"),
        "{metrics}"
    );

    // More events, then SIGTERM: the last snapshot holds them.
    publish_accounts(&world, 20, 30);
    let before = wait_state(&snap, |s| s["counts"]["accounts"] == 30);
    snap.signal("TERM");
    assert_eq!(snap.wait_exit(START).code(), Some(0), "{}", snap.stderr());
    let files = snapshot_files(&config.state_dir);
    assert!(
        (1..=2).contains(&files.len()),
        "pruned to keep_local = 2: {files:?}"
    );
    let newest = files.last().expect("a snapshot").clone();
    let out = inspect(&newest, &config.softhsm2_conf);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("counts accounts=30 "), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "state_hash={}",
            before["state_hash"].as_str().unwrap()
        )),
        "{stdout}"
    );
    for (tp, next) in before["offsets"].as_object().unwrap() {
        assert!(stdout.contains(&format!("offset {tp}={next}")), "{stdout}");
    }

    // A restart starts from that snapshot, with the same state.
    let mut again = config.start_snapshotter();
    again.wait_ready(START);
    let state = again.state();
    assert_eq!(state["state_hash"], before["state_hash"]);
    assert_eq!(state["offsets"], before["offsets"]);
    assert_eq!(
        state["last_snapshot"]["key"],
        newest.file_name().unwrap().to_str().unwrap()
    );
    assert!(
        again.stderr().contains("restored from a snapshot"),
        "{}",
        again.stderr()
    );
    again.signal("TERM");
    assert_eq!(again.wait_exit(START).code(), Some(0));

    // A flipped byte and a truncated file are refused, with the reason.
    let bytes = std::fs::read(&newest).unwrap();
    let mut flipped = bytes.clone();
    let at = flipped.len() / 2;
    flipped[at] ^= 0x01;
    let bad = world.dir.path().join("flipped.authsnap");
    std::fs::write(&bad, &flipped).unwrap();
    let out = inspect(&bad, &config.softhsm2_conf);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("invalid"), "{stderr}");
    let short = world.dir.path().join("truncated.authsnap");
    std::fs::write(&short, &bytes[..bytes.len() - 7]).unwrap();
    let out = inspect(&short, &config.softhsm2_conf);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("invalid"), "{stderr}");
    assert!(
        stderr.contains("truncated") || stderr.contains("corrupt"),
        "{stderr}"
    );
}

#[test]
fn an_authorizer_restored_from_a_snapshot_equals_one_replaying_the_log_and_skips_a_corrupt_one() {
    let world = World::new();
    publish_accounts(&world, 0, 20);
    let config = snapshotter_config(&world, "snap-b");
    let mut snap = config.start_snapshotter();
    snap.wait_ready(START);
    wait_state(&snap, |s| s["counts"]["accounts"] == 20);
    snap.signal("TERM");
    assert_eq!(snap.wait_exit(START).code(), Some(0), "{}", snap.stderr());
    let snapshot = snapshot_files(&config.state_dir).pop().expect("a snapshot");
    // The log moves on after the snapshot: the tail is replayed from its offsets.
    publish_accounts(&world, 20, 35);

    let device = format!("127.0.0.1:{}", free_port());
    let with_snapshot = world.config("auth-a", "ascii", std::slice::from_ref(&device));
    let dir = with_snapshot.state_dir.join("snapshots");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(&snapshot, dir.join(snapshot.file_name().unwrap())).unwrap();
    let mut a = with_snapshot.start();
    a.wait_ready(START);
    let restored = a.state();
    assert!(
        a.stderr().contains("restored from a snapshot"),
        "{}",
        a.stderr()
    );
    a.signal("TERM");
    assert_eq!(a.wait_exit(START).code(), Some(0));

    let mut b = world
        .config("auth-b", "ascii", std::slice::from_ref(&device))
        .start();
    b.wait_ready(START);
    let replayed = b.state();
    assert!(b.stderr().contains("no usable snapshot"), "{}", b.stderr());
    b.signal("TERM");
    assert_eq!(b.wait_exit(START).code(), Some(0));
    assert_eq!(replayed["counts"]["accounts"], 35);
    assert_eq!(restored["offsets"], replayed["offsets"]);
    assert_eq!(restored["state_hash"], replayed["state_hash"]);

    // A corrupt newest snapshot: skipped for the previous one, logged and counted.
    let with_corrupt = world.config("auth-c", "ascii", std::slice::from_ref(&device));
    let dir = with_corrupt.state_dir.join("snapshots");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(&snapshot, dir.join(snapshot.file_name().unwrap())).unwrap();
    // Newer than the valid one: a snapshot whose offsets this log does not hold (another log's),
    // and a corrupt one.
    let mut beyond = Offsets::new();
    beyond.insert(
        TopicPartition::new(world.account_updates_topic(), 0),
        1_000_000,
    );
    LocalStore::new(&dir)
        .write(
            &State::new(LedgerConfig::default()),
            &beyond,
            9_000_000_000_000_000,
        )
        .unwrap();
    let mut bytes = std::fs::read(&snapshot).unwrap();
    let at = bytes.len() - 12;
    bytes[at] ^= 0x20;
    std::fs::write(dir.join("snapshot-9999999999999999.authsnap"), &bytes).unwrap();
    let mut c = with_corrupt.start();
    c.wait_ready(START);
    let state = c.state();
    assert_eq!(state["state_hash"], replayed["state_hash"]);
    let stderr = c.stderr();
    assert!(stderr.contains("skipping this snapshot"), "{stderr}");
    assert!(
        stderr.contains("snapshot-9999999999999999.authsnap"),
        "{stderr}"
    );
    assert!(stderr.contains("restored from a snapshot"), "{stderr}");
    let metrics = c.get("/metrics").expect("/metrics").body;
    assert!(
        metrics.contains("authorizer_snapshots_skipped_total{kind=\"checksum\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("authorizer_snapshots_skipped_total{kind=\"out_of_range\"} 1"),
        "{metrics}"
    );
    c.signal("TERM");
    assert_eq!(c.wait_exit(START).code(), Some(0));
}

#[test]
fn a_snapshotter_configuration_error_exits_2_naming_the_key() {
    let world = World::new();
    let mut config = snapshotter_config(&world, "snap-c");
    config.edit("keep_local = 2", "keep_local = 0");
    config.edit("[state]", "[state]\ncolour = \"blue\"");
    let mut snap = config.start_snapshotter();
    let status = snap.wait_exit(START);
    assert_eq!(status.code(), Some(2), "{}", snap.stderr());
    let stderr = snap.stderr();
    assert!(stderr.contains("snapshotter.keep_local"), "{stderr}");
    assert!(stderr.contains("state.colour"), "{stderr}");
}
