//! The PIN file is a secret: one readable by group or others is refused, naming the path and the
//! fix. No token needed.

use std::os::unix::fs::PermissionsExt;

use hsm::pkcs11::Pkcs11Config;

fn pin_file(mode: u32) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hsm.pin");
    std::fs::write(&path, "123456\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    (dir, path)
}

#[test]
fn a_pin_file_readable_by_group_or_others_is_refused() {
    for mode in [0o644, 0o640, 0o604, 0o660, 0o602] {
        let (_dir, path) = pin_file(mode);
        let err = Pkcs11Config::read_pin_file(&path)
            .map(|_| ())
            .expect_err(&format!("mode {mode:o} must be refused"));
        let text = err.to_string();
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(text.contains("chmod 600"), "{text}");
        assert!(!text.contains("123456"), "{text}");
    }
}

#[test]
fn a_pin_file_of_mode_600_or_400_is_read() {
    for mode in [0o600, 0o400] {
        let (_dir, path) = pin_file(mode);
        let pin = Pkcs11Config::read_pin_file(&path).unwrap();
        assert_eq!(pin.as_str(), "123456");
    }
}

#[test]
fn the_test_harness_writes_pin_files_0600() {
    let token = hsm::testing::TestToken::new();
    let mode = std::fs::metadata(token.pin_file())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
}
