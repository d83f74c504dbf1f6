//! The problems of a configuration file, each naming its key, and the reader that walks the
//! parsed TOML table section by section, collecting every problem rather than stopping at the
//! first one, and reporting every key it was not asked for as unknown.
//!
//! Must never: put a secret's value in a problem (a problem names the key, the path and what is
//! wrong, never what a secret file holds), nor let an unknown key pass silently (a typo must never
//! leave a default in force).

use std::fmt;
use std::ops::RangeInclusive;

use toml::{Table, Value};

/// One problem: the key it is about (`network.max_frame_bytes`) and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigProblem {
    pub key: String,
    pub problem: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.problem)
    }
}

/// Every problem found in a configuration file, in the order of the file's sections. Its
/// `Display` is one line per problem (what `authorizer check-config` prints).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigErrors {
    pub problems: Vec<ConfigProblem>,
}

impl ConfigErrors {
    /// True when some problem is about `key`.
    pub fn names(&self, key: &str) -> bool {
        self.problems.iter().any(|p| p.key == key)
    }

    pub(crate) fn push(&mut self, key: impl Into<String>, problem: impl Into<String>) {
        self.problems.push(ConfigProblem {
            key: key.into(),
            problem: problem.into(),
        });
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.problems.is_empty()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// `prefix.key`, quoting `key` when it is not a bare TOML key (`kafka.properties."sasl.password"`).
pub(crate) fn join_key(prefix: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let key = if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    };
    if prefix.is_empty() {
        key
    } else {
        format!("{prefix}.{key}")
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a date-time",
        Value::Array(_) => "an array",
        Value::Table(_) => "a table",
    }
}

/// One table of the file being read. Every `take` removes the key; [`Section::finish`] reports
/// what is left as unknown keys.
pub(crate) struct Section {
    path: String,
    table: Table,
}

impl Section {
    pub(crate) fn root(table: Table) -> Section {
        Section {
            path: String::new(),
            table,
        }
    }

    /// A table found inside a free-form one (`hsm.key_sets.NAME`), named by its full key.
    pub(crate) fn nested(path: String, table: Table) -> Section {
        Section { path, table }
    }

    /// The full name of `key` in this section.
    pub(crate) fn key(&self, key: &str) -> String {
        join_key(&self.path, key)
    }

    /// `section.key`'s value, left in place.
    pub(crate) fn peek(&self, section: &str, key: &str) -> Option<&Value> {
        self.table.get(section)?.as_table()?.get(key)
    }

    /// The raw value, removed from the section.
    pub(crate) fn take(&mut self, key: &str) -> Option<Value> {
        self.table.remove(key)
    }

    /// The remaining entries (for free-form tables such as `kafka.properties`), emptying it.
    pub(crate) fn drain(&mut self) -> Vec<(String, Value)> {
        std::mem::take(&mut self.table).into_iter().collect()
    }

    fn wrong_type(&self, errors: &mut ConfigErrors, key: &str, want: &str, found: &Value) {
        errors.push(
            self.key(key),
            format!("must be {want} (found {})", type_name(found)),
        );
    }

    /// A sub-table; absent gives `None`, another type is a problem (and `None`).
    pub(crate) fn table(&mut self, errors: &mut ConfigErrors, key: &str) -> Option<Section> {
        match self.take(key)? {
            Value::Table(table) => Some(Section {
                path: self.key(key),
                table,
            }),
            other => {
                self.wrong_type(errors, key, "a table", &other);
                None
            }
        }
    }

    /// A sub-table, empty when absent (its required keys are then reported missing one by one).
    pub(crate) fn table_or_empty(&mut self, errors: &mut ConfigErrors, key: &str) -> Section {
        let path = self.key(key);
        self.table(errors, key).unwrap_or(Section {
            path,
            table: Table::new(),
        })
    }

    /// An optional string. An empty string is a problem (write nothing to take the default).
    pub(crate) fn string(&mut self, errors: &mut ConfigErrors, key: &str) -> Option<String> {
        self.string_value(
            errors,
            key,
            "must not be empty (leave the key out for the default)",
        )
    }

    fn string_value(
        &mut self,
        errors: &mut ConfigErrors,
        key: &str,
        empty: &str,
    ) -> Option<String> {
        match self.take(key)? {
            Value::String(s) if s.trim().is_empty() => {
                errors.push(self.key(key), empty);
                None
            }
            Value::String(s) => Some(s),
            other => {
                self.wrong_type(errors, key, "a string", &other);
                None
            }
        }
    }

    /// A string that must be there, not empty.
    pub(crate) fn required_string(
        &mut self,
        errors: &mut ConfigErrors,
        key: &str,
    ) -> Option<String> {
        if !self.table.contains_key(key) {
            errors.push(self.key(key), "missing");
            return None;
        }
        self.string_value(errors, key, "must not be empty")
    }

    /// A string with a default.
    pub(crate) fn string_or(
        &mut self,
        errors: &mut ConfigErrors,
        key: &str,
        default: &str,
    ) -> String {
        self.string(errors, key)
            .unwrap_or_else(|| default.to_owned())
    }

    /// An integer within `range`, `default` when absent (and, after a problem, so that reading
    /// goes on).
    pub(crate) fn integer_in(
        &mut self,
        errors: &mut ConfigErrors,
        key: &str,
        default: i64,
        range: RangeInclusive<i64>,
    ) -> i64 {
        match self.take(key) {
            None => default,
            Some(Value::Integer(n)) if range.contains(&n) => n,
            Some(Value::Integer(n)) => {
                errors.push(
                    self.key(key),
                    format!("must be {}..={} (found {n})", range.start(), range.end()),
                );
                default
            }
            Some(other) => {
                self.wrong_type(errors, key, "an integer", &other);
                default
            }
        }
    }

    /// A boolean, `default` when absent.
    pub(crate) fn bool_or(&mut self, errors: &mut ConfigErrors, key: &str, default: bool) -> bool {
        match self.take(key) {
            None => default,
            Some(Value::Boolean(b)) => b,
            Some(other) => {
                self.wrong_type(errors, key, "true or false", &other);
                default
            }
        }
    }

    /// A list of strings that must be there.
    pub(crate) fn required_string_list(
        &mut self,
        errors: &mut ConfigErrors,
        key: &str,
    ) -> Option<Vec<String>> {
        match self.take(key) {
            None => {
                errors.push(self.key(key), "missing");
                None
            }
            Some(Value::Array(items)) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.into_iter().enumerate() {
                    match item {
                        Value::String(s) => out.push(s),
                        other => {
                            errors.push(
                                format!("{}[{i}]", self.key(key)),
                                format!("must be a string (found {})", type_name(&other)),
                            );
                            return None;
                        }
                    }
                }
                Some(out)
            }
            Some(other) => {
                self.wrong_type(errors, key, "an array of strings", &other);
                None
            }
        }
    }

    /// Reports every key not taken as unknown.
    pub(crate) fn finish(self, errors: &mut ConfigErrors) {
        for key in self.table.keys() {
            errors.push(self.key(key), "unknown key");
        }
    }
}

/// `host:port` (a name or an address, `[v6]:port` too): no resolution, no connection.
pub(crate) fn host_port(text: &str) -> Result<(), String> {
    let bad = || format!("{text:?} is not host:port");
    let (host, port) = text.trim().rsplit_once(':').ok_or_else(bad)?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_:".contains(&b))
    {
        return Err(bad());
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!("{text:?}: the port must be 1..=65535")),
    }
}

/// A Kafka topic name: 1..=249 of `[A-Za-z0-9._-]`, not `.` nor `..`.
pub(crate) fn topic_name(text: &str) -> Result<(), String> {
    if text.len() <= 249
        && text != "."
        && text != ".."
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        Ok(())
    } else {
        Err(format!(
            "{text:?} is not a Kafka topic name (1..=249 characters of A-Z a-z 0-9 . _ -)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_quoted_only_when_not_bare() {
        assert_eq!(join_key("", "instance_id"), "instance_id");
        assert_eq!(
            join_key("hsm.key_sets", "mc-cvn17-1"),
            "hsm.key_sets.mc-cvn17-1"
        );
        assert_eq!(
            join_key("kafka.properties", "sasl.password"),
            "kafka.properties.\"sasl.password\""
        );
    }

    #[test]
    fn a_section_reports_what_it_was_not_asked_for() {
        let table: Table =
            toml::from_str("a = 1\nb = \"x\"\nc = true\nd = \" \"\ne = \"\"\n").unwrap();
        let mut errors = ConfigErrors::default();
        let mut s = Section::root(table);
        assert_eq!(s.integer_in(&mut errors, "a", 5, 0..=10), 1);
        assert_eq!(s.integer_in(&mut errors, "b", 5, 0..=10), 5);
        assert_eq!(s.required_string(&mut errors, "d"), None);
        assert_eq!(s.string_or(&mut errors, "e", "x"), "x");
        assert_eq!(s.required_string(&mut errors, "f"), None);
        s.finish(&mut errors);
        assert_eq!(
            errors.to_string(),
            "b: must be an integer (found a string)\nd: must not be empty\n\
             e: must not be empty (leave the key out for the default)\nf: missing\nc: unknown key"
        );
    }

    #[test]
    fn host_port_checks_without_resolving() {
        for ok in ["127.0.0.1:18583", "kafka-1.example:9092", "[::1]:9092"] {
            assert!(host_port(ok).is_ok(), "{ok}");
        }
        for bad in ["127.0.0.1", ":9092", "host:0", "host:99999", "a b:1"] {
            assert!(host_port(bad).is_err(), "{bad}");
        }
    }
}
