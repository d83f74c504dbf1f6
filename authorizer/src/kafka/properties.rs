//! Extra librdkafka properties, and which of them are secrets.
//!
//! A property whose name contains `password`, `secret`, `sasl.jaas` or `ssl.key` (any case) is a
//! secret: its value never appears in a `Debug` output ([`KafkaConfig`](super::KafkaConfig)
//! prints `<redacted>`), is refused on argv (`--kafka-property`, visible in `ps` and shell
//! histories) and comes from a properties file instead, which is refused when group or others can
//! read it.

use std::io::Read;
use std::path::Path;

/// Name fragments that make a property a secret.
pub const SECRET_PROPERTY_MARKERS: [&str; 4] = ["password", "secret", "sasl.jaas", "ssl.key"];

/// True when the property `name`'s value is a secret.
pub fn is_secret_property(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_PROPERTY_MARKERS.iter().any(|m| name.contains(m))
}

/// The value as `Debug` may show it.
pub(crate) fn shown_value<'a>(name: &str, value: &'a str) -> &'a str {
    if is_secret_property(name) {
        "<redacted>"
    } else {
        value
    }
}

/// Parses one `--kafka-property NAME=VALUE`; a secret property is refused (without echoing its
/// value) and must come from a properties file.
pub fn parse_argv_property(arg: &str) -> Result<(String, String), String> {
    let Some((name, value)) = arg.split_once('=') else {
        // Not echoed: a mistyped secret is still a secret.
        return Err("a --kafka-property is not NAME=VALUE".to_owned());
    };
    let name = name.trim();
    if is_secret_property(name) {
        return Err(format!(
            "--kafka-property {name} is a secret and must not be on the command line (argv is visible to every user of the host): put `{name}=...` in a file readable only by the authorizer's user (chmod 600) and pass --kafka-properties-file PATH"
        ));
    }
    Ok((name.to_owned(), value.trim().to_owned()))
}

/// Reads a properties file: `NAME=VALUE` lines; blank lines and lines starting with `#` are
/// skipped. Opened through [`open_private`](crate::config::secret::open_private): refused when
/// group or others may read it (`mode & 0o077 != 0`) or when it is not a regular file. Errors
/// name the path and the line number, never a value.
pub fn read_properties_file(path: &Path) -> Result<Vec<(String, String)>, String> {
    let cannot =
        |e: std::io::Error| format!("cannot read kafka properties file {}: {e}", path.display());
    let mut file = crate::config::secret::open_private(path)?;
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(cannot)?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, value) = line.split_once('=').ok_or_else(|| {
            format!(
                "kafka properties file {} line {}: not NAME=VALUE",
                path.display(),
                i + 1
            )
        })?;
        out.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn secret_names() {
        for name in [
            "sasl.password",
            "ssl.key.password",
            "ssl.key.pem",
            "sasl.jaas.config",
            "sasl.oauthbearer.client.secret",
            "SSL.KEYSTORE.PASSWORD",
        ] {
            assert!(is_secret_property(name), "{name}");
        }
        for name in [
            "sasl.username",
            "security.protocol",
            "max.partition.fetch.bytes",
        ] {
            assert!(!is_secret_property(name), "{name}");
        }
    }

    #[test]
    fn argv_takes_plain_properties_only() {
        assert_eq!(
            parse_argv_property(" security.protocol = SASL_SSL ").unwrap(),
            ("security.protocol".to_owned(), "SASL_SSL".to_owned())
        );
        let err = parse_argv_property("sasl.password=hunter2").unwrap_err();
        assert!(
            err.contains("--kafka-properties-file") && !err.contains("hunter2"),
            "{err}"
        );
        let err = parse_argv_property("sasl.password:hunter2").unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn a_private_properties_file_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kafka.properties");
        std::fs::write(
            &path,
            "# security\n\nsecurity.protocol=SASL_SSL\nsasl.password = hunter2=x\n",
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            read_properties_file(&path).unwrap(),
            vec![
                ("security.protocol".to_owned(), "SASL_SSL".to_owned()),
                ("sasl.password".to_owned(), "hunter2=x".to_owned()),
            ]
        );
        std::fs::write(&path, "sasl.password hunter2\n").unwrap();
        let err = read_properties_file(&path).unwrap_err();
        assert!(err.contains("line 1") && !err.contains("hunter2"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = read_properties_file(&path).unwrap_err();
        assert!(err.contains("chmod 600"), "{err}");
    }
}
