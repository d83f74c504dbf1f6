//! Secrets named by the configuration: where their files are, the refusal of a file other users
//! may read, and the wrappers that hold what they contain.
//!
//! * A value containing `/` is a path (relative: to the configuration file's directory); a bare
//!   name is looked up in `$CREDENTIALS_DIRECTORY` (systemd credentials) when that is set, else
//!   next to the configuration file ([`SecretLocator`]).
//! * A secret file readable by group or others (`mode & 0o077 != 0`, the mode of the file opened)
//!   is refused, naming the path and the fix (`chmod 600`).
//! * What a secret file holds lives in [`SecretString`] or [`PanKeySecret`]: zeroed on drop, and
//!   their `Debug` prints `<redacted>`.
//!
//! Must never: put a secret's content in an error, a `Debug` or `Display` output; read a secret
//! from argv or the environment (only the *directory* of systemd credentials comes from it).

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

/// Where secret files named by the configuration are.
#[derive(Clone, Debug)]
pub struct SecretLocator {
    /// The configuration file's directory: relative paths, and bare names without credentials.
    pub config_dir: PathBuf,
    /// `$CREDENTIALS_DIRECTORY` when the service runs with systemd credentials.
    pub credentials_dir: Option<PathBuf>,
}

impl SecretLocator {
    /// The path a secret key's value names.
    pub fn resolve(&self, value: &str) -> PathBuf {
        if value.contains('/') {
            self.config_dir.join(value)
        } else {
            self.credentials_dir
                .as_deref()
                .unwrap_or(&self.config_dir)
                .join(value)
        }
    }
}

/// Opens a secret file, refusing it when group or others may read it. The error is
/// `PATH: reason`, never anything the file holds.
pub fn open_private(path: &Path) -> Result<File, String> {
    let cannot = |e: std::io::Error| format!("{}: {e}", path.display());
    let file = File::open(path).map_err(cannot)?;
    let meta = file.metadata().map_err(cannot)?;
    if !meta.is_file() {
        return Err(format!("{}: not a regular file", path.display()));
    }
    let mode = meta.mode();
    if mode & 0o077 != 0 {
        return Err(format!(
            "{}: readable by group or others (mode {:03o}; chmod 600 {})",
            path.display(),
            mode & 0o777,
            path.display()
        ));
    }
    Ok(file)
}

/// Reads a whole secret file (private, as [`open_private`] checks), as UTF-8 text.
pub fn read_secret_text(path: &Path) -> Result<SecretString, String> {
    let mut file = open_private(path)?;
    let mut bytes = Zeroizing::new(Vec::new());
    file.read_to_end(&mut bytes)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let text =
        std::str::from_utf8(&bytes).map_err(|_| format!("{}: not UTF-8 text", path.display()))?;
    if text.trim().is_empty() {
        return Err(format!("{}: empty", path.display()));
    }
    Ok(SecretString(Zeroizing::new(text.to_owned())))
}

/// Text read from a secret file. Zeroed on drop; `Debug` prints `<redacted>`; no `Display`.
#[derive(Clone)]
pub struct SecretString(Zeroizing<String>);

impl SecretString {
    pub fn new(value: Zeroizing<String>) -> SecretString {
        SecretString(value)
    }

    /// The secret itself: hand it to what needs it (a login, a signer), never to a log.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The PAN-hash key: the 32 bytes its file's 64 hex characters encode. Zeroed on drop; `Debug`
/// prints `<redacted>`.
#[derive(Clone)]
pub struct PanKeySecret(Zeroizing<[u8; 32]>);

impl PanKeySecret {
    /// Reads the key file: 64 hex characters (surrounding white space ignored). The error never
    /// quotes the content.
    pub fn read(path: &Path) -> Result<PanKeySecret, String> {
        let text = read_secret_text(path)?;
        let hex = text.expose().trim();
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "{}: must hold 64 hex characters (found {} characters{})",
                path.display(),
                hex.chars().count(),
                if hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    ""
                } else {
                    ", not all hex"
                }
            ));
        }
        let mut key = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(hex, &mut key[..])
            .map_err(|_| format!("{}: must hold 64 hex characters", path.display()))?;
        Ok(PanKeySecret(key))
    }

    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    /// The key as the ledger takes it (a copy the caller keeps for the process's life).
    pub fn to_ledger(&self) -> ledger::PanKey {
        ledger::PanKey(*self.0)
    }
}

impl fmt::Debug for PanKeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn write(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn bare_names_go_to_the_credentials_directory_else_next_to_the_file() {
        let with = SecretLocator {
            config_dir: "/etc/authorizer".into(),
            credentials_dir: Some("/run/credentials/authorizer.service".into()),
        };
        assert_eq!(
            with.resolve("hsm.pin"),
            Path::new("/run/credentials/authorizer.service/hsm.pin")
        );
        assert_eq!(with.resolve("/srv/hsm.pin"), Path::new("/srv/hsm.pin"));
        assert_eq!(
            with.resolve("secrets/hsm.pin"),
            Path::new("/etc/authorizer/secrets/hsm.pin")
        );
        let without = SecretLocator {
            credentials_dir: None,
            ..with
        };
        assert_eq!(
            without.resolve("hsm.pin"),
            Path::new("/etc/authorizer/hsm.pin")
        );
    }

    #[test]
    fn a_secret_others_may_read_is_refused_without_its_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "s", "hunter2\n", 0o644);
        let err = read_secret_text(&path).unwrap_err();
        assert!(
            err.contains("readable by group or others") && err.contains("chmod 600"),
            "{err}"
        );
        assert!(!err.contains("hunter2"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let s = read_secret_text(&path).unwrap();
        assert_eq!(s.expose(), "hunter2\n");
        assert_eq!(format!("{s:?}"), "<redacted>");
    }

    #[test]
    fn the_pan_key_is_64_hex_characters() {
        let dir = tempfile::tempdir().unwrap();
        let good = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF";
        let path = write(dir.path(), "pan.key", &format!("{good}\n"), 0o600);
        let key = PanKeySecret::read(&path).unwrap();
        assert_eq!(key.expose()[..2], [0x00, 0x11]);
        assert_eq!(key.expose()[31], 0xff);
        assert!(!format!("{key:?}").contains("0011"));
        let path = write(dir.path(), "short.key", "abcdef", 0o600);
        let err = PanKeySecret::read(&path).unwrap_err();
        assert!(err.contains("64 hex") && !err.contains("abcdef"), "{err}");
        let path = write(dir.path(), "nothex.key", &"zz".repeat(32), 0o600);
        let err = PanKeySecret::read(&path).unwrap_err();
        assert!(err.contains("not all hex") && !err.contains("zz"), "{err}");
    }
}
