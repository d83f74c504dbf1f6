//! Shared by the benches that need a broker: `AUTHORIZER_TEST_BROKER`, else one started by
//! `scripts/broker` for this process (stopped when it exits).
//!
//! Must never: reuse a broker of another run's data directory (the script makes a fresh one).

use std::process::Command;

/// The broker's address.
pub fn broker() -> String {
    if let Ok(addr) = std::env::var("AUTHORIZER_TEST_BROKER")
        && !addr.is_empty()
    {
        return addr;
    }
    let script = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("../scripts/broker");
    let out = Command::new(script)
        .arg("start")
        .arg("--watch-pid")
        .arg(std::process::id().to_string())
        .output()
        .expect("scripts/broker");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("BROKER="))
        .expect("BROKER=")
        .to_owned()
}
