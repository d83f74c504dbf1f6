//! The `hsm-keys` binary end to end, in its own test process: the child process writes the
//! token files that this process's SoftHSM also has open, which must not race other tests.

use hsm::testing::TestToken;

#[test]
fn hsm_keys_binary_reads_components_from_files_and_the_pin_from_a_file() {
    let token = TestToken::new();
    let dir = tempfile::tempdir().unwrap();
    let c1 = dir.path().join("c1");
    let c2 = dir.path().join("c2");
    std::fs::write(&c1, "0123456789ABCDEF0123456789ABCDEF\n").unwrap();
    std::fs::write(&c2, "00000000000000000000000000000001\n").unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_hsm-keys"))
            .env("SOFTHSM2_CONF", token.softhsm2_conf())
            .args(["--token", token.label(), "--pin-file"])
            .arg(token.pin_file())
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    let (ok, text) = run(&[
        "import",
        "--label",
        "imk-cli",
        "--component-file",
        c1.to_str().unwrap(),
        "--component-file",
        c2.to_str().unwrap(),
    ]);
    assert!(ok, "{text}");
    assert!(
        text.contains("component 1 KCV") && text.contains("component 2 KCV"),
        "{text}"
    );
    assert!(
        !text.contains("0123456789ABCDEF"),
        "a component was printed: {text}"
    );
    let (ok, list) = run(&["list"]);
    assert!(ok, "{list}");
    let kcv = text.rsplit("KCV ").next().unwrap().trim();
    assert!(list.contains("imk-cli") && list.contains(kcv), "{list}");
}
