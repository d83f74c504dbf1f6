//! The monitoring files' check, run by `cargo test --workspace`: `scripts/check-observability`
//! accepts the repository's dashboard and alert rules (promtool compiles the rules and passes
//! their unit tests, every metric name is one the daemons register, every runbook is a section of
//! the operator's guide, every dashboard query parses), and refuses a dashboard naming a metric
//! nobody exports, a query that does not parse, a dashboard that is not JSON, a runbook that
//! points nowhere, and rules that no longer do what their unit tests expect.
//!
//! The script installs promtool when missing (`scripts/install-deps observability`); a tool that
//! cannot be installed fails the test with the script's message. The broken copies live in
//! temporary directories: these tests must never change the repository's files.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository, from `CARGO_MANIFEST_DIR` at run time (cargo sets it), not the path compiled
/// in: a target directory shared with another checkout must not check that checkout's files.
fn repo() -> PathBuf {
    PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("..")
    .canonicalize()
    .expect("repository root")
}

/// Runs `scripts/check-observability [DASHBOARD [RULES_DIR]]`: success, and stdout + stderr.
fn check(args: &[&Path]) -> (bool, String) {
    let path = repo().join("scripts/check-observability");
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(&path)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&stdout),
        String::from_utf8_lossy(&stderr)
    );
    (status.success(), text)
}

fn dashboard() -> PathBuf {
    repo().join("observability/grafana/authorizer.json")
}

/// A copy of `observability/prometheus/` in a temporary directory, with `edit` applied to
/// `alerts.yml`.
fn rules_copy(edit: impl Fn(&str) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = repo().join("observability/prometheus");
    let alerts = fs::read_to_string(src.join("alerts.yml")).expect("alerts.yml");
    let edited = edit(&alerts);
    assert_ne!(edited, alerts, "the edit changed nothing");
    fs::write(dir.path().join("alerts.yml"), edited).expect("write alerts.yml");
    fs::copy(
        src.join("alerts_test.yml"),
        dir.path().join("alerts_test.yml"),
    )
    .expect("copy alerts_test.yml");
    dir
}

#[test]
fn dashboard_and_alert_rules_pass_every_check() {
    let (ok, out) = check(&[]);
    assert!(ok, "scripts/check-observability failed:\n{out}");
    assert!(out.contains("rules: SUCCESS: 11 rules found"), "{out}");
    assert!(out.contains("rule tests: SUCCESS"), "{out}");
    assert!(
        out.contains("dashboard: 17 panels, 21 queries, all parse, every metric exported"),
        "{out}"
    );
    assert!(
        out.contains("alerts: 11 alerts, every metric exported, every runbook a section"),
        "{out}"
    );
    assert!(out.contains("check-observability: ok"), "{out}");
}

#[test]
fn a_dashboard_naming_an_unknown_metric_or_a_bad_query_is_refused() {
    let text = fs::read_to_string(dashboard()).expect("dashboard");
    // `authorizer_link_up` is a gauge: a counter's `_total` on it names nothing the daemon exports
    let broken = text.replacen("authorizer_link_up{", "authorizer_link_up_total{", 1);
    assert_ne!(broken, text);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("authorizer.json");
    fs::write(&path, broken).expect("write");
    let (ok, out) = check(&[&path]);
    assert!(!ok, "a dashboard with an unknown metric passed:\n{out}");
    assert!(
        out.contains("authorizer_link_up_total is not a metric the daemons export"),
        "{out}"
    );

    let unbalanced = text.replacen(
        "sum by (response_code) (rate(",
        "sum by (response_code (rate(",
        1,
    );
    assert_ne!(unbalanced, text);
    fs::write(&path, unbalanced).expect("write");
    let (ok, out) = check(&[&path]);
    assert!(
        !ok,
        "a dashboard with a query that does not parse passed:\n{out}"
    );
    assert!(out.contains("dashboard: a query does not parse"), "{out}");
    assert!(out.contains("could not parse expression"), "{out}");

    fs::write(&path, "{\"panels\": [").expect("write");
    let (ok, out) = check(&[&path]);
    assert!(!ok, "a dashboard that is not JSON passed:\n{out}");
    assert!(out.contains("authorizer.json"), "{out}");
}

#[test]
fn a_runbook_that_points_to_no_section_is_refused() {
    let rules = rules_copy(|a| {
        a.replace(
            "docs/operators-guide.md#hsm-errors",
            "docs/operators-guide.md#hsm-trouble",
        )
    });
    let (ok, out) = check(&[&dashboard(), rules.path()]);
    assert!(!ok, "a runbook without its section passed:\n{out}");
    assert!(
        out.contains(
            "alert AuthorizerHsmErrors: runbook docs/operators-guide.md#hsm-trouble is not a section"
        ),
        "{out}"
    );
}

#[test]
fn rules_that_no_longer_do_what_their_tests_expect_fail() {
    // the link-down alert waiting 10 minutes instead of 2: its firing case at 5m must fail
    let rules = rules_copy(|a| {
        a.replacen(
            "expr: authorizer_link_up == 0\n        for: 2m",
            "expr: authorizer_link_up == 0\n        for: 10m",
            1,
        )
    });
    let (ok, out) = check(&[&dashboard(), rules.path()]);
    assert!(!ok, "rules that break their tests passed:\n{out}");
    assert!(out.contains("promtool test rules failed"), "{out}");
    assert!(out.contains("alertname: AuthorizerLinkDown"), "{out}");
}
