//! The deployment files' checks, run by `cargo test --workspace`: `scripts/check-units` (the
//! systemd units verify clean and score an exposure of at most 2.0, and the check refuses a unit
//! with an unknown key or without its hardening) and `scripts/check-ansible` (ansible-lint's
//! production profile, the roles applied to the example inventory in scratch roots with the real
//! `authorizer check-config` on every configuration, and a second run that changes nothing).
//!
//! Both scripts install their tools when missing (`scripts/install-deps`); a tool that cannot be
//! installed fails the test with the script's message. They must never start a service or
//! write outside their scratch directories, and these tests skip nothing.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("..")
    .canonicalize()
    .expect("repository root")
}

fn run(script: &str, args: &[&Path], envs: &[(&str, &Path)]) -> (bool, String) {
    let path = repo().join("scripts").join(script);
    let mut cmd = Command::new(&path);
    cmd.args(args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let Output {
        status,
        stdout,
        stderr,
    } = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&stdout),
        String::from_utf8_lossy(&stderr)
    );
    (status.success(), text)
}

/// The `exposure UNIT FIGURE` lines check-units prints.
fn exposures(out: &str) -> Vec<(String, f64)> {
    out.lines()
        .filter_map(|l| {
            let mut w = l.strip_prefix("exposure ")?.split_whitespace();
            let unit = w.next()?.to_owned();
            let figure = w.next()?.parse().ok()?;
            Some((unit, figure))
        })
        .collect()
}

#[test]
fn units_verify_clean_with_exposure_at_most_2() {
    let (ok, out) = run("check-units", &[], &[]);
    assert!(ok, "scripts/check-units failed:\n{out}");
    let figures = exposures(&out);
    let units: Vec<&str> = figures.iter().map(|(u, _)| u.as_str()).collect();
    assert_eq!(
        units,
        ["authorizer@.service", "snapshotter.service"],
        "{out}"
    );
    for (unit, figure) in &figures {
        assert!(*figure <= 2.0, "{unit}: exposure {figure}\n{out}");
    }
    assert!(!out.contains("Unknown key"), "{out}");
}

#[test]
fn check_units_refuses_an_unknown_key_and_a_unit_without_hardening() {
    let unit = fs::read_to_string(repo().join("systemd/authorizer@.service")).expect("unit");

    let typo = tempfile::tempdir().expect("tempdir");
    fs::write(
        typo.path().join("authorizer@.service"),
        unit.replace("WatchdogSec=10s", "WatchdogSec=10s\nWatchDogSec=10s"),
    )
    .expect("write");
    let (ok, out) = run("check-units", &[typo.path()], &[]);
    assert!(!ok, "a unit with an unknown key passed:\n{out}");
    assert!(out.contains("Unknown key 'WatchDogSec'"), "{out}");

    let bare = tempfile::tempdir().expect("tempdir");
    let unhardened: String = unit
        .lines()
        .take_while(|l| !l.starts_with("# Hardening"))
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(bare.path().join("authorizer@.service"), unhardened).expect("write");
    let (ok, out) = run("check-units", &[bare.path()], &[]);
    assert!(!ok, "a unit without hardening passed:\n{out}");
    let figures = exposures(&out);
    assert_eq!(figures.len(), 1, "{out}");
    assert!(figures[0].1 > 2.0, "{out}");
    assert!(out.contains("is above 2.0"), "{out}");
}

/// The `authorizer` binary cargo built next to this test, when it did (`cargo test --workspace`
/// builds it for the authorizer package's own tests); otherwise check-ansible builds it.
fn authorizer_bin() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let bin = exe.parent()?.parent()?.join("authorizer");
    bin.is_file().then_some(bin)
}

#[test]
fn ansible_roles_lint_clean_deploy_and_are_idempotent() {
    let bin = authorizer_bin();
    let envs: Vec<(&str, &Path)> = bin
        .as_deref()
        .map(|b| ("AUTHORIZER_BIN", b))
        .into_iter()
        .collect();
    let (ok, out) = run("check-ansible", &[], &envs);
    assert!(ok, "scripts/check-ansible failed:\n{out}");
    // the real loader accepted every authorizer configuration the role wrote
    assert_eq!(
        out.matches("config ok: instance_id=auth-").count(),
        4,
        "{out}"
    );
    // three recaps of five hosts; the last two (site.yml again, rolling-upgrade.yml) changed nothing
    let recaps: Vec<&str> = out
        .lines()
        .filter(|l| l.contains(" unreachable="))
        .collect();
    assert_eq!(recaps.len(), 15, "{out}");
    assert!(
        recaps[..5].iter().all(|l| !l.contains(" changed=0 ")),
        "{out}"
    );
    assert!(
        recaps[5..].iter().all(|l| l.contains(" changed=0 ")),
        "{out}"
    );
    assert!(recaps.iter().all(|l| l.contains(" failed=0 ")), "{out}");
    assert!(out.contains("check-ansible: ok"), "{out}");
}
