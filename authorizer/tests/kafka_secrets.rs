//! Kafka credentials never reach argv or a `Debug` output: `KafkaConfig`'s `Debug` redacts the
//! values of secret properties, the `authorizer` tools refuse a secret `--kafka-property` and take
//! secrets from `--kafka-properties-file`, which must not be readable by group or others. No
//! broker needed: every refusal happens before a connection.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use authorizer::kafka::KafkaConfig;

const SECRET: &str = "hunter2-s3cr3t";

/// Runs `authorizer ARGS`, killing it after 30 s (a refusal comes long before).
fn authorizer(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_authorizer"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn debug_of_kafka_config_redacts_secret_properties() {
    let mut c = KafkaConfig::new("127.0.0.1:9092");
    for key in [
        "sasl.password",
        "ssl.key.password",
        "ssl.key.pem",
        "sasl.jaas.config",
        "sasl.oauthbearer.client.secret",
        "SASL.PASSWORD",
    ] {
        c.extra.push((key.to_owned(), format!("{SECRET}-{key}")));
    }
    c.extra
        .push(("max.partition.fetch.bytes".to_owned(), "8388608".to_owned()));
    let debug = format!("{c:?}");
    assert!(!debug.contains(SECRET), "{debug}");
    assert!(debug.contains("sasl.password"), "{debug}");
    assert!(debug.contains("<redacted>"), "{debug}");
    assert!(debug.contains("8388608"), "{debug}");
    let pretty = format!("{c:#?}");
    assert!(!pretty.contains(SECRET), "{pretty}");
}

#[test]
fn a_secret_kafka_property_on_argv_is_refused() {
    for key in [
        "sasl.password",
        "ssl.key.password",
        "sasl.jaas.config",
        "x.secret",
    ] {
        let prop = format!("{key}={SECRET}");
        let out = authorizer(&[
            "replay",
            "--brokers",
            "127.0.0.1:1",
            "--from-beginning",
            "--kafka-property",
            &prop,
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{key}: {err}");
        assert!(err.contains("--kafka-properties-file"), "{key}: {err}");
        assert!(err.contains(key), "{key}: {err}");
        assert!(!err.contains(SECRET), "{key}: {err}");
    }
}

#[test]
fn a_kafka_properties_file_readable_by_others_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kafka.properties");
    std::fs::write(&path, format!("# SASL\nsasl.password={SECRET}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = authorizer(&[
        "replay",
        "--brokers",
        "127.0.0.1:1",
        "--from-beginning",
        "--kafka-properties-file",
        path.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains(path.to_str().unwrap()), "{err}");
    assert!(err.contains("chmod 600"), "{err}");
    assert!(!err.contains(SECRET), "{err}");
}
