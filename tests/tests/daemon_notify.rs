//! The daemon under systemd's notification protocol, against a real `NOTIFY_SOCKET` (a datagram
//! socket this test listens on, as systemd does): `STATUS=` lines while it starts, `READY=1` only
//! once caught up with the log (the admin server says ready by then), `WATCHDOG=1` again and
//! again while it runs (sent from the ledger thread) when `WATCHDOG_USEC` is set, and
//! `STOPPING=1` on SIGTERM. Also: `log_format = "json"` writes one JSON object per line, each
//! naming the instance. The snapshotter speaks the same protocol.

mod daemon_support;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use daemon_support::{World, free_port};

/// Every datagram received within `timeout`, until `until` holds for one.
fn receive_until(
    socket: &UnixDatagram,
    timeout: Duration,
    mut until: impl FnMut(&str) -> bool,
) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 4096];
    while Instant::now() < deadline {
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        if let Ok(n) = socket.recv(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            let done = until(&text);
            got.push(text);
            if done {
                break;
            }
        }
    }
    got
}

#[test]
fn ready_watchdog_status_and_stopping_reach_the_notify_socket() {
    let world = World::new();
    let socket_path = world.dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    let device = format!("127.0.0.1:{}", free_port());
    let mut config = world.config("auth-n", "ascii", std::slice::from_ref(&device));
    config.edit("log_format = \"text\"", "log_format = \"json\"");
    let mut daemon = config.start_with_env(&[
        ("NOTIFY_SOCKET", socket_path.to_str().unwrap()),
        ("WATCHDOG_USEC", "400000"),
    ]);

    let before_ready = receive_until(&socket, Duration::from_secs(120), |m| m.contains("READY=1"));
    assert!(
        before_ready.last().is_some_and(|m| m.contains("READY=1")),
        "no READY=1: {before_ready:?}\n{}",
        daemon.stderr()
    );
    assert!(
        before_ready.iter().any(|m| m.starts_with("STATUS=")),
        "{before_ready:?}"
    );
    // READY only once ready: the admin server agrees as soon as READY arrived.
    assert_eq!(daemon.get("/health/ready").unwrap().status, 200);

    let mut watchdogs = 0;
    receive_until(&socket, Duration::from_secs(3), |m| {
        watchdogs += usize::from(m.contains("WATCHDOG=1"));
        false
    });
    // 400 ms asked: a ping every 200 ms; 3 s give about 15; a stalled loop would give none.
    assert!(watchdogs >= 5, "{watchdogs} watchdog pings in 3 s");

    daemon.signal("TERM");
    let after = receive_until(&socket, Duration::from_secs(30), |m| {
        m.contains("STOPPING=1")
    });
    assert!(
        after.iter().any(|m| m.contains("STOPPING=1")),
        "no STOPPING=1: {after:?}"
    );
    assert_eq!(daemon.wait_exit(Duration::from_secs(30)).code(), Some(0));

    // log_format = "json": every line of stderr is one JSON object with a level and a message.
    let stderr = daemon.stderr();
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(lines.len() >= 3, "{stderr}");
    for line in lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string() && v["message"].is_string(), "{line}");
        assert_eq!(v["instance"], "auth-n", "{line}");
    }
}

#[test]
fn the_snapshotter_sends_ready_watchdog_and_stopping_too() {
    let world = World::new();
    let socket_path = world.dir.path().join("notify-snap.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    let device = format!("127.0.0.1:{}", free_port());
    let mut config = world.config("snap-n", "ascii", std::slice::from_ref(&device));
    config
        .text
        .push_str("\n[snapshotter]\nevery_s = 60\nkeep_local = 2\n");
    let mut snap = config.start_snapshotter_with_env(&[
        ("NOTIFY_SOCKET", socket_path.to_str().unwrap()),
        ("WATCHDOG_USEC", "400000"),
    ]);
    let got = receive_until(&socket, Duration::from_secs(120), |m| m.contains("READY=1"));
    assert!(
        got.last().is_some_and(|m| m.contains("READY=1")),
        "no READY=1: {got:?}\n{}",
        snap.stderr()
    );
    assert_eq!(snap.get("/health/ready").unwrap().status, 200);
    let mut watchdogs = 0;
    receive_until(&socket, Duration::from_secs(3), |m| {
        watchdogs += usize::from(m.contains("WATCHDOG=1"));
        false
    });
    assert!(watchdogs >= 5, "{watchdogs} watchdog pings in 3 s");
    snap.signal("TERM");
    let after = receive_until(&socket, Duration::from_secs(30), |m| {
        m.contains("STOPPING=1")
    });
    assert!(after.iter().any(|m| m.contains("STOPPING=1")), "{after:?}");
    assert_eq!(snap.wait_exit(Duration::from_secs(60)).code(), Some(0));
}
