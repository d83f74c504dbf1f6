//! The configuration loaded for the snapshotter (`SnapshotterConfig::load`, `Role::Snapshotter`):
//! a file without `[network]`, `[hsm]`, `[pan_key]` or `issuer_id` loads, the authorizer's
//! sections are not read when present (their secret files need not exist), unknown keys and bad
//! values of the sections it reads are still refused, and the authorizer still requires its
//! sections.

use std::path::{Path, PathBuf};
use std::time::Duration;

use authorizer::config::{Config, SnapshotterConfig};

const MINIMAL: &str = r#"instance_id = "snap-1"

[kafka]
bootstrap = "127.0.0.1:9092"

[state]
dir = "state"

[snapshotter]
every_s = 60
keep_local = 5

[admin]
listen = "127.0.0.1:9465"
"#;

fn write(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("snapshotter.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_file_without_the_authorizers_sections_loads_for_the_snapshotter_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), MINIMAL);
    let config = SnapshotterConfig::load(&path).expect("loads for the snapshotter");
    assert_eq!(config.instance_id, "snap-1");
    assert_eq!(config.snapshotter.every, Duration::from_secs(60));
    assert_eq!(config.snapshotter.keep_local, 5);
    assert_eq!(
        config.snapshot_dir(),
        dir.path().join("state").join("snapshots")
    );
    assert_eq!(config.kafka_config().client_id, "snap-1");

    let errors = Config::load(&path).expect_err("the authorizer needs its sections");
    for key in ["issuer_id", "network.dialect", "hsm.module", "pan_key.file"] {
        assert!(errors.names(key), "{key} not named: {errors:?}");
    }
}

#[test]
fn the_authorizers_sections_are_not_read_but_the_snapshotters_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    // A PIN file and a PAN key that do not exist: the snapshotter's host need not hold them.
    let with_authorizer = format!(
        "{MINIMAL}\n[network]\ndialect = \"mastercard\"\ninterface_devices = [\"127.0.0.1:1\"]\n\n[hsm]\nmodule = \"/nowhere.so\"\ntoken_label = \"t\"\npin_file = \"/nowhere.pin\"\n\n[pan_key]\nfile = \"/nowhere.key\"\n"
    );
    let path = write(
        dir.path(),
        &with_authorizer.replace("instance_id", "issuer_id = \"12345\"\ninstance_id"),
    );
    SnapshotterConfig::load(&path).expect("the authorizer's sections are not read");

    let path = write(
        dir.path(),
        &MINIMAL
            .replace("keep_local = 5", "keep_local = 0\nkeep_locale = 2")
            .replace("[state]", "colour = \"blue\"\n[state]"),
    );
    let errors = SnapshotterConfig::load(&path).expect_err("bad values are refused");
    for key in [
        "snapshotter.keep_local",
        "snapshotter.keep_locale",
        "kafka.colour",
    ] {
        assert!(errors.names(key), "{key} not named: {errors:?}");
    }
}
