//! The configuration file and `authorizer check-config`, on real files in a temporary directory:
//! the example configuration is valid, every problem is reported naming its key (unknown keys,
//! missing keys, bounds, a secret file others may read, a bad dialect), secrets are found in
//! `$CREDENTIALS_DIRECTORY` or next to the file, and no secret reaches the summary line, an error
//! or a `Debug` output. No service is needed: `check-config` reaches none.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use authorizer::config::{Config, LogFormat};

const EXAMPLE: &str = include_str!("../config/authorizer.example.toml");
const PIN: &str = "pin-7r4x9q";
/// 0xa5 repeated: its hex and its decimal `Debug` (165) are both easy to look for.
const PAN_KEY_HEX: &str = "a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5";
const S3_SECRET: &str = "s3-s3cr3t-Zk81";
const KAFKA_SECRET: &str = "kafka-pw-Qm27";

/// A directory holding a configuration and its secrets.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    /// The example configuration with its `state.dir` in the temporary directory, next to its
    /// secrets (0600).
    fn example() -> Setup {
        let setup = Setup {
            dir: tempfile::tempdir().unwrap(),
        };
        setup.write_secrets(setup.dir.path());
        let state = setup.dir.path().join("state");
        std::fs::create_dir(&state).unwrap();
        setup.write_config(&EXAMPLE.replace(
            "dir = \"/var/lib/authorizer\"",
            &format!("dir = {:?}", state.display().to_string()),
        ));
        setup
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("authorizer.toml")
    }

    fn config(&self) -> String {
        std::fs::read_to_string(self.path()).unwrap()
    }

    fn write_config(&self, text: &str) {
        std::fs::write(self.path(), text).unwrap();
    }

    /// Replaces `from` (which must be there) in the configuration.
    fn edit(&self, from: &str, to: &str) {
        let text = self.config();
        assert!(text.contains(from), "the configuration has no {from:?}");
        self.write_config(&text.replacen(from, to, 1));
    }

    fn write_secrets(&self, dir: &Path) {
        private(&dir.join("hsm.pin"), &format!("{PIN}\n"));
        private(&dir.join("pan.key"), &format!("{PAN_KEY_HEX}\n"));
        private(
            &dir.join("s3.credentials"),
            &format!(
                "[default]\naws_access_key_id = AKIDEXAMPLE\naws_secret_access_key = {S3_SECRET}\n"
            ),
        );
    }

    fn check(&self) -> Output {
        check_config(&self.path(), None)
    }
}

fn private(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Runs `authorizer check-config --config PATH`, with `$CREDENTIALS_DIRECTORY` set only when
/// given.
fn check_config(path: &Path, credentials: Option<&Path>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_authorizer"));
    cmd.arg("check-config")
        .arg("--config")
        .arg(path)
        .env_remove("CREDENTIALS_DIRECTORY")
        .stdin(Stdio::null());
    if let Some(dir) = credentials {
        cmd.env("CREDENTIALS_DIRECTORY", dir);
    }
    cmd.output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts exit 2 and returns the problem lines.
fn problems(o: &Output) -> Vec<String> {
    assert_eq!(
        o.status.code(),
        Some(2),
        "stdout: {}\nstderr: {}",
        stdout(o),
        stderr(o)
    );
    stderr(o).lines().map(str::to_owned).collect()
}

fn assert_no_secret(text: &str) {
    for secret in [
        PIN,
        PAN_KEY_HEX,
        "a5a5a5a5",
        "165, 165",
        S3_SECRET,
        KAFKA_SECRET,
    ] {
        assert!(!text.contains(secret), "{secret:?} in {text}");
    }
}

#[test]
fn the_example_configuration_is_valid_and_its_summary_holds_no_secret() {
    let setup = Setup::example();
    let out = setup.check();
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let summary = stdout(&out);
    assert_eq!(summary.lines().count(), 1, "{summary}");
    assert!(
        summary.starts_with("config ok: instance_id=auth-a dialect=mastercard interface_devices=2"),
        "{summary}"
    );
    assert!(summary.contains("key_sets=2"), "{summary}");
    assert_no_secret(&summary);
    assert_no_secret(&stderr(&out));
}

#[test]
fn an_unknown_key_exits_2_naming_it() {
    let setup = Setup::example();
    setup.edit("echo_idle_s = 60", "echo_idel_s = 60");
    setup.edit("[admin]", "[admim]");
    let lines = problems(&setup.check());
    assert!(
        lines.contains(&"network.echo_idel_s: unknown key".to_owned()),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"admim: unknown key".to_owned()),
        "{lines:?}"
    );
}

#[test]
fn a_missing_required_key_exits_2_naming_it() {
    let setup = Setup::example();
    setup.edit("bootstrap = \"127.0.0.1:9092\"", "");
    let lines = problems(&setup.check());
    assert_eq!(lines, ["kafka.bootstrap: missing"]);
}

#[test]
fn several_problems_are_all_reported() {
    let setup = Setup::example();
    setup.edit("max_frame_bytes = 4096", "max_frame_bytes = 10");
    setup.edit("issuer_id = \"12345\"", "issuer_id = \"12a45\"");
    setup.edit("profile = \"mc-cvn17\"", "profile = \"mc-cvn99\"");
    setup.edit("token_label = \"authorizer\"", "");
    setup.edit("log_format = \"text\"", "log_format = \"xml\"");
    setup.edit("keep_s3 = 48", "keep_s3 = \"48\"");
    let lines = problems(&setup.check());
    let keys: Vec<&str> = lines
        .iter()
        .map(|l| l.split_once(": ").unwrap().0)
        .collect();
    assert_eq!(
        keys,
        [
            "issuer_id",
            "log_format",
            "network.max_frame_bytes",
            "hsm.token_label",
            "hsm.key_sets.mc-cvn17-1.profile",
            "snapshotter.keep_s3",
        ],
        "{lines:?}"
    );
    assert!(
        lines[2].contains("128..=65535") && lines[2].contains("found 10"),
        "{lines:?}"
    );
    assert!(lines[4].contains("mc-cvn17"), "{lines:?}");
}

#[test]
fn a_pin_file_others_may_read_is_refused_naming_the_key_and_the_path() {
    let setup = Setup::example();
    let pin = setup.dir.path().join("hsm.pin");
    std::fs::set_permissions(&pin, std::fs::Permissions::from_mode(0o644)).unwrap();
    let lines = problems(&setup.check());
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    assert!(
        line.starts_with(&format!("hsm.pin_file: {}: ", pin.display())),
        "{line}"
    );
    assert!(
        line.contains("readable by group or others") && line.contains("chmod 600"),
        "{line}"
    );
    assert_no_secret(line);
}

#[test]
fn bare_names_are_looked_up_in_the_credentials_directory_when_it_is_set() {
    let setup = Setup::example();
    let credentials = tempfile::tempdir().unwrap();
    setup.write_secrets(credentials.path());
    // Next to the configuration: a PIN file others may read, which must not be the one used.
    let beside = setup.dir.path().join("hsm.pin");
    std::fs::set_permissions(&beside, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = check_config(&setup.path(), Some(credentials.path()));
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    // Without the variable, the file next to the configuration is the one read.
    let lines = problems(&check_config(&setup.path(), None));
    assert!(lines[0].starts_with("hsm.pin_file: "), "{lines:?}");
    // A secret missing from the credentials directory is named with the path looked up.
    std::fs::remove_file(credentials.path().join("pan.key")).unwrap();
    let lines = problems(&check_config(&setup.path(), Some(credentials.path())));
    let wanted = format!(
        "pan_key.file: {}: ",
        credentials.path().join("pan.key").display()
    );
    assert!(lines[0].starts_with(&wanted), "{lines:?}");
}

#[test]
fn a_bare_name_falls_back_to_the_configuration_directory_and_a_relative_path_is_taken_from_it() {
    let setup = Setup::example();
    let config = Config::load_with(&setup.path(), None).unwrap();
    assert_eq!(config.hsm.pin_file, setup.dir.path().join("hsm.pin"));
    assert_eq!(config.hsm.pin.expose(), PIN);
    // A value with a `/` is a path, relative to the configuration's directory.
    let secrets = setup.dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    setup.write_secrets(&secrets);
    setup.edit("pin_file = \"hsm.pin\"", "pin_file = \"secrets/hsm.pin\"");
    let config = Config::load_with(&setup.path(), Some(Path::new("/nonexistent"))).err();
    // pan_key.file and credentials_file are bare names: they go to the credentials directory.
    let errors = config.expect("bare names must be looked up in the credentials directory");
    assert!(
        errors.names("pan_key.file") && !errors.names("hsm.pin_file"),
        "{errors}"
    );
    let config = Config::load_with(&setup.path(), None).unwrap();
    assert_eq!(
        config.hsm.pin_file,
        setup.dir.path().join("secrets/hsm.pin")
    );
}

#[test]
fn a_bad_dialect_is_named() {
    let setup = Setup::example();
    setup.edit(
        "dialect = \"mastercard\"",
        "dialect = \"dialects/nope.toml\"",
    );
    let lines = problems(&setup.check());
    let missing = setup.dir.path().join("dialects/nope.toml");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("network.dialect: ")
            && lines[0].contains(&missing.display().to_string()),
        "{lines:?}"
    );
    // A dialect file that exists but is wrong is named too; a right one is loaded.
    std::fs::create_dir(setup.dir.path().join("dialects")).unwrap();
    std::fs::write(&missing, "name = \"x\"\nbase = \"visa\"\n").unwrap();
    let lines = problems(&setup.check());
    assert!(
        lines[0].starts_with("network.dialect: ") && lines[0].contains("visa"),
        "{lines:?}"
    );
    std::fs::write(
        &missing,
        "name = \"mybank-switch\"\nbase = \"mastercard\"\ncode_page = \"500\"\n",
    )
    .unwrap();
    let out = setup.check();
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert!(stdout(&out).contains("dialect=dialects/nope.toml"));
}

#[test]
fn no_secret_in_the_debug_of_the_loaded_configuration() {
    let setup = Setup::example();
    private(
        &setup.dir.path().join("kafka.properties"),
        &format!("sasl.password={KAFKA_SECRET}\n"),
    );
    setup.edit(
        "# properties_file = \"kafka.properties\"",
        "properties_file = \"kafka.properties\"",
    );
    let config = Config::load_with(&setup.path(), None).unwrap();
    let debug = format!("{config:?}");
    assert_no_secret(&debug);
    assert!(debug.contains("<redacted>"), "{debug}");
    assert_no_secret(&format!("{:?}", config.kafka_config()));
    assert_no_secret(&format!("{:?}", config.pkcs11_config()));
    // The secrets are there for what needs them.
    assert_eq!(config.pan_key.key.expose(), &[0xa5; 32]);
    assert!(
        config
            .state
            .s3
            .as_ref()
            .unwrap()
            .credentials
            .expose()
            .contains(S3_SECRET)
    );
    assert!(
        config
            .kafka_config()
            .extra
            .contains(&("sasl.password".to_owned(), KAFKA_SECRET.to_owned()))
    );
}

#[test]
fn a_secret_kafka_property_written_inline_is_refused_without_its_value() {
    let setup = Setup::example();
    setup.edit(
        "[kafka.properties]",
        &format!("[kafka.properties]\n\"sasl.password\" = \"{KAFKA_SECRET}\"\n\"security.protocol\" = \"SASL_SSL\""),
    );
    let out = setup.check();
    let lines = problems(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("kafka.properties.\"sasl.password\": ")
            && lines[0].contains("kafka.properties_file"),
        "{lines:?}"
    );
    assert_no_secret(&stderr(&out));
}

#[test]
fn secret_files_must_hold_what_they_are_for() {
    let setup = Setup::example();
    private(&setup.dir.path().join("pan.key"), "a5a5a5a5\n");
    private(&setup.dir.path().join("s3.credentials"), S3_SECRET);
    private(&setup.dir.path().join("hsm.pin"), "\n");
    let out = setup.check();
    let lines = problems(&out);
    let keys: Vec<&str> = lines
        .iter()
        .map(|l| l.split_once(": ").unwrap().0)
        .collect();
    assert_eq!(
        keys,
        ["hsm.pin_file", "pan_key.file", "state.s3.credentials_file"],
        "{lines:?}"
    );
    assert!(lines[1].contains("64 hex characters"), "{lines:?}");
    assert_no_secret(&stderr(&out));
}

#[test]
fn money_first_checks_across_keys() {
    let setup = Setup::example();
    setup.edit("unavailable_code = \"91\"", "unavailable_code = \"00\"");
    setup.edit("answer_budget_ms = 1500", "answer_budget_ms = 600");
    setup.edit(
        "dead_letter_topic = \"account-updates.dlq\"",
        "dead_letter_topic = \"account-updates\"",
    );
    // A broken section elsewhere does not hide the check across sections.
    private(&setup.dir.path().join("hsm.pin"), "\n");
    let lines = problems(&setup.check());
    let keys: Vec<&str> = lines
        .iter()
        .map(|l| l.split_once(": ").unwrap().0)
        .collect();
    assert_eq!(
        keys,
        [
            "kafka.dead_letter_topic",
            "hsm.pin_file",
            "hsm.unavailable_code",
            "network.answer_budget_ms"
        ],
        "{lines:?}"
    );
}

#[test]
fn the_loaded_configuration_converts_to_what_the_edges_and_the_core_take() {
    let setup = Setup::example();
    setup.edit("log_format = \"text\"", "log_format = \"json\"");
    setup.edit(
        "# \"security.protocol\" = \"SASL_SSL\"",
        "\"security.protocol\" = \"SASL_SSL\"\n\"fetch.wait.max.ms\" = 50",
    );
    let config = Config::load_with(&setup.path(), None).unwrap();
    assert_eq!(config.log_format, LogFormat::Json);
    let kafka = config.kafka_config();
    assert_eq!(kafka.bootstrap, "127.0.0.1:9092");
    assert_eq!(kafka.client_id, "auth-a");
    assert_eq!(kafka.dead_letter_topic, "account-updates.dlq");
    assert!(
        kafka
            .extra
            .contains(&("security.protocol".into(), "SASL_SSL".into()))
    );
    assert!(
        kafka
            .extra
            .contains(&("fetch.wait.max.ms".into(), "50".into()))
    );
    let publisher = config.publisher_config();
    assert_eq!(publisher.spool_dir, setup.dir.path().join("state/spool"));
    assert_eq!(publisher.spool_bytes_max, 1 << 30);
    assert_eq!(config.ledger_config().dedup_window_events, 1 << 20);
    let decide = config.decide_config();
    decide.validate().unwrap();
    assert_eq!(decide.instance, "auth-a");
    assert_eq!(decide.transmission_skew_s, 600);
    let hsm = config.pkcs11_config();
    assert_eq!(hsm.token_label, "authorizer");
    assert_eq!(hsm.key_sets.len(), 2);
    assert_eq!(hsm.key_sets[0].id.0, "mc-cvn17-1");
    assert_eq!(hsm.key_sets[0].profile.name(), "mc-cvn17");
    assert_eq!(hsm.op_timeout.as_millis(), 200);
    assert_eq!(config.network.interface_devices.len(), 2);
    assert_eq!(config.network.dialect.name(), "mastercard");
    assert_eq!(config.admin.listen.to_string(), "127.0.0.1:9464");
}

#[test]
fn hold_rules_and_chip_amount_ranges_reach_the_decision_rules() {
    let setup = Setup::example();
    let config = Config::load_with(&setup.path(), None).unwrap();
    // Not given: the core's default table.
    assert_eq!(
        config.decide_config().hold_duration_rules,
        ledger::decide::DecideConfig::new("auth-a").hold_duration_rules
    );
    setup.edit(
        "chip_amount_may_differ_mcc = []",
        "chip_amount_may_differ_mcc = [\"5542\", \"5812-5814\"]\nhold_duration_rules = [{ mcc = \"7011\", duration_s = 86400 }]",
    );
    let decide = Config::load_with(&setup.path(), None)
        .unwrap()
        .decide_config();
    assert_eq!(decide.hold_duration_s(Some(7011)), 86_400);
    assert_eq!(decide.hold_duration_s(Some(3600)), 7 * 86_400);
    assert_eq!(decide.chip_amount_may_differ.len(), 2);
    assert_eq!(
        (
            decide.chip_amount_may_differ[1].from,
            decide.chip_amount_may_differ[1].to
        ),
        (5812, 5814)
    );
    setup.edit("\"5812-5814\"", "\"5814-5812\"");
    setup.edit("duration_s = 86400", "duration_s = 10");
    let lines = problems(&setup.check());
    let keys: Vec<&str> = lines
        .iter()
        .map(|l| l.split_once(": ").unwrap().0)
        .collect();
    assert_eq!(
        keys,
        [
            "ledger.hold_duration_rules[0].duration_s",
            "ledger.chip_amount_may_differ_mcc[1]"
        ],
        "{lines:?}"
    );
}

#[test]
fn an_unreadable_or_malformed_file_is_one_problem_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("authorizer.toml");
    let lines = problems(&check_config(&path, None));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with(&format!("{}: ", path.display())),
        "{lines:?}"
    );
    // The line is not quoted back: it might hold a secret written by mistake.
    std::fs::write(&path, "instance_id = \"auth-a\"\npin = hunter2\n").unwrap();
    let lines = problems(&check_config(&path, None));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("line 2"), "{lines:?}");
    assert!(!lines[0].contains("hunter2"), "{lines:?}");
}

#[test]
fn a_configuration_of_the_required_keys_only_takes_the_defaults() {
    let setup = Setup::example();
    let state = setup.dir.path().join("state");
    setup.write_config(&format!(
        r#"instance_id = "auth-b"
issuer_id = "12345"
[network]
dialect = "ascii"
interface_devices = ["127.0.0.1:18583"]
[kafka]
bootstrap = "127.0.0.1:9092"
[hsm]
module = "{module}"
token_label = "authorizer"
pin_file = "hsm.pin"
[pan_key]
file = "pan.key"
[state]
dir = {state:?}
"#,
        module = hsm::pkcs11::SOFTHSM2_MODULE,
        state = state.display().to_string(),
    ));
    let out = setup.check();
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert!(stdout(&out).contains("key_sets=0 "), "{}", stdout(&out));
    assert!(stdout(&out).contains("s3=no "), "{}", stdout(&out));
    let c = Config::load_with(&setup.path(), None).unwrap();
    assert_eq!(c.log_format, LogFormat::Text);
    assert_eq!(c.network.max_frame_bytes, 4096);
    assert_eq!(c.network.echo_idle.as_secs(), 60);
    assert_eq!(c.network.answer_budget.as_millis(), 1500);
    assert_eq!(c.kafka.account_updates_topic, "account-updates");
    assert_eq!(c.kafka.authorizations_topic, "authorizations");
    assert_eq!(c.kafka.dead_letter_topic, "account-updates.dlq");
    assert_eq!(c.kafka.client_id, "auth-b");
    assert_eq!(c.kafka.ack_budget.as_millis(), 500);
    assert!(!c.kafka.create_topics);
    assert_eq!(c.kafka.partitions, 3);
    assert_eq!(c.hsm.budget.as_millis(), 200);
    assert_eq!(c.hsm.unavailable_code, "91");
    assert_eq!(c.hsm.pool_size, 2);
    assert_eq!(c.snapshotter.every.as_secs(), 300);
    assert_eq!((c.snapshotter.keep_local, c.snapshotter.keep_s3), (3, 48));
    assert_eq!(c.admin.listen.to_string(), "127.0.0.1:9464");
    assert!(c.state.s3.is_none());
}
