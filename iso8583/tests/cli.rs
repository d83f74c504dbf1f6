//! The `iso8583` command: decode to JSON, encode from JSON, exit code 2 on invalid input.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn run(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_iso8583"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

const JSON: &str = r#"{"mti":"0100","fields":{"2":"5413330089010012","4":"000000012500","11":"004711","55":"9F26080102030405060708","70":"301"}}"#;

#[test]
fn encode_then_decode_both_dialects() {
    for dialect in ["ascii", "mastercard"] {
        let enc = run(&["encode", "--dialect", dialect, "--hex"], JSON.as_bytes());
        assert!(
            enc.status.success(),
            "{}",
            String::from_utf8_lossy(&enc.stderr)
        );
        let hex_text = String::from_utf8(enc.stdout).unwrap();
        assert!(
            hex_text
                .trim()
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase())
        );
        let dec = run(
            &["decode", "--dialect", dialect, "--hex", "--show-secrets"],
            hex_text.as_bytes(),
        );
        assert!(
            dec.status.success(),
            "{}",
            String::from_utf8_lossy(&dec.stderr)
        );
        assert_eq!(String::from_utf8(dec.stdout).unwrap().trim(), JSON);
        // By default DE 2 is masked.
        let dec = run(
            &["decode", "--dialect", dialect, "--hex"],
            hex_text.as_bytes(),
        );
        assert_eq!(
            String::from_utf8(dec.stdout).unwrap().trim(),
            JSON.replace("5413330089010012", "541333******0012")
        );
        // Raw bytes in, raw bytes out.
        let raw = run(&["encode", "--dialect", dialect], JSON.as_bytes());
        assert_eq!(hex::encode_upper(&raw.stdout), hex_text.trim());
        let dec = run(
            &["decode", "--dialect", dialect, "--show-secrets"],
            &raw.stdout,
        );
        assert_eq!(String::from_utf8(dec.stdout).unwrap().trim(), JSON);
    }
}

#[test]
fn dialect_file_path_is_accepted() {
    let dir = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("dialects/ascii.toml");
    let path = dir.to_str().expect("a UTF-8 path");
    let enc = run(&["encode", "--dialect", path, "--hex"], JSON.as_bytes());
    assert!(
        enc.status.success(),
        "{}",
        String::from_utf8_lossy(&enc.stderr)
    );
}

#[test]
fn invalid_input_exits_2_with_one_line_naming_field_and_offset() {
    // DE 2's 10th digit replaced by 'A' (ASCII message, PAN starts at byte 14).
    let mut msg = b"0100".to_vec();
    msg.extend_from_slice(&[0x40, 0, 0, 0, 0, 0, 0, 0]);
    msg.extend_from_slice(b"16541333008A010012");
    let out = run(&["decode", "--dialect", "ascii"], &msg);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        err,
        "iso8583: field 2 at byte 23: byte 0x41 is not allowed in a `n` field\n"
    );
    assert!(out.stdout.is_empty());

    let out = run(&["decode", "--dialect", "ascii", "--hex"], b"30313030ZZ");
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(String::from_utf8(out.stderr).unwrap().lines().count(), 1);

    let bad = r#"{"mti":"0100","fields":{"4":"12x"}}"#;
    let out = run(&["encode", "--dialect", "mastercard"], bad.as_bytes());
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "iso8583: field 4 at character 2: byte 0x78 is not allowed in a `n` field\n"
    );

    let out = run(&["decode", "--dialect", "nosuch.toml"], b"");
    assert_eq!(out.status.code(), Some(2));
}

/// DE 2, 35, 45 and 52 (PAN, track 2, track 1, PIN block) as a trace shows them.
const SECRETS: &str = r#"{"mti":"0100","fields":{"2":"5413330089010434","4":"000000012500","35":"5413330089010434=28122011234567890","45":"B5413330089010434^DOE/JOHN^2812201","52":"0123456789ABCDEF"}}"#;

#[test]
fn decode_masks_pan_tracks_and_pin_block_unless_asked() {
    let enc = run(
        &["encode", "--dialect", "ascii", "--hex"],
        SECRETS.as_bytes(),
    );
    assert!(
        enc.status.success(),
        "{}",
        String::from_utf8_lossy(&enc.stderr)
    );
    let hex_text = enc.stdout;
    let dec = run(&["decode", "--dialect", "ascii", "--hex"], &hex_text);
    assert!(
        dec.status.success(),
        "{}",
        String::from_utf8_lossy(&dec.stderr)
    );
    let out = String::from_utf8(dec.stdout).unwrap();
    for secret in [
        "5413330089010434",
        "0089010",
        "28122011234567890",
        "DOE/JOHN",
        "0123456789ABCDEF",
    ] {
        assert!(!out.contains(secret), "{secret} in {out}");
    }
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let f = &json["fields"];
    assert_eq!(f["2"], "541333******0434");
    assert_eq!(f["35"], "*".repeat(34));
    assert_eq!(f["45"], "*".repeat(34));
    assert_eq!(f["52"], "*".repeat(16));
    assert_eq!(f["4"], "000000012500");

    let dec = run(
        &["decode", "--dialect", "ascii", "--hex", "--show-secrets"],
        &hex_text,
    );
    assert!(
        dec.status.success(),
        "{}",
        String::from_utf8_lossy(&dec.stderr)
    );
    assert_eq!(String::from_utf8(dec.stdout).unwrap().trim(), SECRETS);
}
