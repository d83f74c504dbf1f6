//! Reading the configuration file into [`Config`], section by section: types, bounds, defaults,
//! the secret files, the dialect, and the checks across sections (the time budgets).
//!
//! Must never: stop at the first problem (every section is read, every problem is kept), reach a
//! service (no DNS, no connection, no HSM session), or quote a secret in a problem.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use hsm::pkcs11::Pkcs11Config;
use hsm::{KeySet, KeySetId, Profile};
use ledger::decide::{DecideConfig, MccHoldRule, MccRange};
use ledger::{HOLD_DURATION_MAX_S, LedgerConfig};
use toml::{Table, Value};

use super::secret::{self, PanKeySecret, SecretLocator, SecretString};
use super::validate::{ConfigErrors, Section, host_port, topic_name};
use super::*;
use crate::kafka::properties;

const MS: i64 = 1;
const MINUTE_MS: i64 = 60_000 * MS;
const HOUR_MS: i64 = 60 * MINUTE_MS;

const ANSWER_BUDGET_MS: i64 = 1_500;
const HSM_BUDGET_MS: i64 = 200;
const ACK_BUDGET_MS: i64 = 500;

/// Response codes that approve: never what an HSM outage answers.
const APPROVAL_CODES: [&str; 5] = ["00", "08", "10", "11", "85"];

pub(super) fn load(
    path: &Path,
    credentials_dir: Option<&Path>,
    role: Role,
) -> Result<Loaded, ConfigErrors> {
    let mut errors = ConfigErrors::default();
    let shown = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            errors.push(shown, format!("cannot read the configuration file: {e}"));
            return Err(errors);
        }
    };
    let table: Table = match toml::from_str(&text) {
        Ok(t) => t,
        Err(e) => {
            // The message and the position only: the offending line may hold anything.
            let at = e.span().map_or(String::new(), |span| {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                format!("line {line}, column {column}: ")
            });
            errors.push(shown, format!("{at}not valid TOML: {}", e.message().trim()));
            return Err(errors);
        }
    };
    let config_dir = std::path::absolute(path)
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."));
    let loc = SecretLocator {
        config_dir,
        credentials_dir: credentials_dir.map(Path::to_path_buf),
    };
    let e = &mut errors;
    let mut root = Section::root(table);

    let instance_id = root.required_string(e, "instance_id").filter(|v| {
        let ok = (1..=64).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_graphic());
        if !ok {
            e.push(
                "instance_id",
                "must be 1..=64 printable ASCII characters, no spaces",
            );
        }
        ok
    });
    // The snapshotter neither signs on nor decides: `issuer_id` is the authorizer's.
    let issuer_id = match role {
        Role::Authorizer => root.required_string(e, "issuer_id"),
        Role::Snapshotter => root.string(e, "issuer_id"),
    }
    .filter(|v| {
        let ok = (1..=11).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_digit());
        if !ok {
            e.push("issuer_id", format!("must be 1..=11 digits (found {v:?})"));
        }
        ok
    });
    let log_format = match root.string_or(e, "log_format", "text").as_str() {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        other => {
            e.push(
                "log_format",
                format!("must be \"text\" or \"json\" (found {other:?})"),
            );
            LogFormat::Text
        }
    };
    // The budgets as written (their bounds are checked in their sections), for the check across
    // sections below, which must not depend on those sections being complete.
    let budget_ms = |section: &str, key: &str, default: i64| {
        root.peek(section, key)
            .and_then(Value::as_integer)
            .unwrap_or(default)
    };
    let budgets = (
        budget_ms("network", "answer_budget_ms", ANSWER_BUDGET_MS),
        budget_ms("hsm", "budget_ms", HSM_BUDGET_MS),
        budget_ms("kafka", "ack_budget_ms", ACK_BUDGET_MS),
    );
    if role == Role::Snapshotter {
        // Not read by the snapshotter (the authorizer's check-config checks them): no HSM PIN,
        // no PAN key and no dialect need to be on its host.
        for section in ["network", "hsm", "pan_key"] {
            root.take(section);
        }
        let kafka = kafka(
            root.table_or_empty(e, "kafka"),
            e,
            &loc,
            instance_id.as_deref().unwrap_or("snapshotter"),
        );
        let state = state(root.table_or_empty(e, "state"), e, &loc);
        let snapshotter = snapshotter(root.table_or_empty(e, "snapshotter"), e);
        let admin = admin(root.table_or_empty(e, "admin"), e);
        let ledger = ledger(root.table_or_empty(e, "ledger"), e);
        root.finish(e);
        return match (instance_id, kafka, state, admin) {
            (Some(instance_id), Some(kafka), Some(state), Some(admin)) if errors.is_empty() => {
                Ok(Loaded::Snapshotter(Box::new(SnapshotterConfig {
                    path: path.to_path_buf(),
                    instance_id,
                    log_format,
                    kafka,
                    state,
                    snapshotter,
                    admin,
                    ledger,
                })))
            }
            _ => {
                if errors.is_empty() {
                    errors.push(shown, "incomplete configuration");
                }
                Err(errors)
            }
        };
    }
    let network = network(root.table_or_empty(e, "network"), e, &loc);
    let kafka = kafka(
        root.table_or_empty(e, "kafka"),
        e,
        &loc,
        instance_id.as_deref().unwrap_or("authorizer"),
    );
    let hsm = hsm(root.table_or_empty(e, "hsm"), e, &loc);
    let pan_key = pan_key(root.table_or_empty(e, "pan_key"), e, &loc);
    let state = state(root.table_or_empty(e, "state"), e, &loc);
    let snapshotter = snapshotter(root.table_or_empty(e, "snapshotter"), e);
    let admin = admin(root.table_or_empty(e, "admin"), e);
    let ledger = ledger(root.table_or_empty(e, "ledger"), e);
    root.finish(e);

    let (answer_ms, hsm_ms, ack_ms) = budgets;
    if answer_ms <= hsm_ms.saturating_add(ack_ms) {
        e.push(
            "network.answer_budget_ms",
            format!(
                "must exceed hsm.budget_ms + kafka.ack_budget_ms ({hsm_ms} + {ack_ms} ms): an answer must have time left after the HSM and Kafka"
            ),
        );
    }

    match (
        instance_id,
        issuer_id,
        network,
        kafka,
        hsm,
        pan_key,
        state,
        admin,
    ) {
        (
            Some(instance_id),
            Some(issuer_id),
            Some(network),
            Some(kafka),
            Some(hsm),
            Some(pan_key),
            Some(state),
            Some(admin),
        ) if errors.is_empty() => {
            let config = Config {
                path: path.to_path_buf(),
                instance_id,
                issuer_id,
                log_format,
                network,
                kafka,
                hsm,
                pan_key,
                state,
                snapshotter,
                admin,
                ledger,
            };
            // A safety net behind the bounds above: the core's own check.
            if let Err(problem) = config.decide_config().validate() {
                errors.push("ledger", problem.to_string());
                return Err(errors);
            }
            Ok(Loaded::Authorizer(Box::new(config)))
        }
        _ => {
            if errors.is_empty() {
                errors.push(shown, "incomplete configuration");
            }
            Err(errors)
        }
    }
}

fn ms(n: i64) -> Duration {
    Duration::from_millis(n as u64)
}

fn network(mut s: Section, e: &mut ConfigErrors, loc: &SecretLocator) -> Option<NetworkSection> {
    let dialect_name = s.required_string(e, "dialect");
    let dialect = dialect_name.as_deref().and_then(|name| {
        let loaded = if iso8583::BUILTIN_NAMES.contains(&name) {
            iso8583::Dialect::builtin(name).ok_or_else(|| format!("{name}: no such built-in"))
        } else {
            iso8583::Dialect::load(loc.config_dir.join(name)).map_err(|err| err.to_string())
        };
        loaded.map_err(|p| e.push(s.key("dialect"), p)).ok()
    });
    let devices = s.required_string_list(e, "interface_devices");
    if let Some(devices) = &devices {
        if devices.is_empty() {
            e.push(
                s.key("interface_devices"),
                "must name at least one interface device",
            );
        }
        for (i, d) in devices.iter().enumerate() {
            let key = format!("{}[{i}]", s.key("interface_devices"));
            if let Err(p) = host_port(d) {
                e.push(key, p);
            } else if devices[..i].contains(d) {
                e.push(key, format!("{d:?} is listed twice"));
            }
        }
    }
    let max_frame_bytes = s.integer_in(e, "max_frame_bytes", 4_096, 128..=65_535) as usize;
    let echo_idle_s = s.integer_in(e, "echo_idle_s", 60, 1..=3_600);
    let answer_budget_ms = s.integer_in(e, "answer_budget_ms", ANSWER_BUDGET_MS, 1..=MINUTE_MS);
    let transmission_skew_s = s.integer_in(
        e,
        "transmission_skew_s",
        600,
        1..=DecideConfig::TRANSMISSION_SKEW_MAX_S,
    );
    let max_in_flight = s.integer_in(e, "max_in_flight", 256, 1..=65_536) as usize;
    let connect_timeout_ms = s.integer_in(e, "connect_timeout_ms", 3_000, 1..=10 * MINUTE_MS);
    let backoff_min = s.integer_in(e, "reconnect_backoff_min_ms", 100, 1..=10 * MINUTE_MS);
    let backoff_max = s.integer_in(e, "reconnect_backoff_max_ms", 10_000, 1..=10 * MINUTE_MS);
    if backoff_min > backoff_max {
        e.push(
            s.key("reconnect_backoff_max_ms"),
            format!("must be at least reconnect_backoff_min_ms ({backoff_min})"),
        );
    }
    let sign_on_timeout_ms = s.integer_in(e, "sign_on_timeout_ms", 5_000, 1..=10 * MINUTE_MS);
    s.finish(e);
    Some(NetworkSection {
        dialect_name: dialect_name?,
        dialect: dialect?,
        interface_devices: devices?,
        max_frame_bytes,
        echo_idle: Duration::from_secs(echo_idle_s as u64),
        answer_budget: ms(answer_budget_ms),
        transmission_skew_s,
        max_in_flight,
        connect_timeout: ms(connect_timeout_ms),
        reconnect_backoff_min: ms(backoff_min),
        reconnect_backoff_max: ms(backoff_max),
        sign_on_timeout: ms(sign_on_timeout_ms),
    })
}

/// The property's value as librdkafka takes it (text).
fn property_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Integer(n) => Some(n.to_string()),
        Value::Float(x) => Some(x.to_string()),
        Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Properties the configuration sets itself, and the key that does.
const OWN_PROPERTIES: [(&str, &str); 2] = [
    ("bootstrap.servers", "kafka.bootstrap"),
    ("client.id", "kafka.client_id"),
];

fn kafka(
    mut s: Section,
    e: &mut ConfigErrors,
    loc: &SecretLocator,
    instance_id: &str,
) -> Option<KafkaSection> {
    let bootstrap = s.required_string(e, "bootstrap");
    if let Some(b) = &bootstrap {
        for server in b.split(',') {
            let server = server.trim();
            let server = server.split_once("://").map_or(server, |(_, rest)| rest);
            if let Err(p) = host_port(server) {
                e.push(s.key("bootstrap"), p);
            }
        }
    }
    let client_id = s.string_or(e, "client_id", instance_id);
    let mut topics: Vec<(&str, String)> = Vec::new();
    for (key, default) in [
        ("account_updates_topic", "account-updates"),
        ("authorizations_topic", "authorizations"),
        ("dead_letter_topic", "account-updates.dlq"),
    ] {
        let topic = s.string_or(e, key, default);
        if let Err(p) = topic_name(&topic) {
            e.push(s.key(key), p);
        } else if let Some((other, _)) = topics.iter().find(|(_, t)| *t == topic) {
            e.push(s.key(key), format!("{topic:?} is already {}", s.key(other)));
        }
        topics.push((key, topic));
    }
    let mut topics = topics.into_iter().map(|(_, t)| t);
    let (account_updates_topic, authorizations_topic, dead_letter_topic) = (
        topics.next().unwrap_or_default(),
        topics.next().unwrap_or_default(),
        topics.next().unwrap_or_default(),
    );
    let ack_budget_ms = s.integer_in(e, "ack_budget_ms", ACK_BUDGET_MS, 1..=MINUTE_MS);
    let create_topics = s.bool_or(e, "create_topics", false);
    let partitions = s.integer_in(e, "partitions", 3, 1..=10_000) as i32;
    let request_timeout_ms = s.integer_in(e, "request_timeout_ms", 10_000, 1..=10 * MINUTE_MS);
    let message_timeout_ms = s.integer_in(e, "message_timeout_ms", 30_000, 1..=HOUR_MS);
    let linger_ms = s.integer_in(e, "linger_ms", 0, 0..=1_000);
    let spool_bytes_max = s.integer_in(e, "spool_bytes_max", 1 << 30, (1 << 20)..=i64::MAX) as u64;

    let mut props = Vec::new();
    let properties_file = s.string(e, "properties_file").map(|v| loc.resolve(&v));
    if let Some(path) = &properties_file {
        match properties::read_properties_file(path) {
            Ok(entries) => props.extend(entries),
            Err(p) => e.push(s.key("properties_file"), p),
        }
    }
    if let Some(mut table) = s.table(e, "properties") {
        for (name, value) in table.drain() {
            let key = table.key(&name);
            if properties::is_secret_property(&name) {
                e.push(
                    key,
                    "a secret must not be written in the configuration file: put it in the file named by kafka.properties_file (chmod 600)",
                );
            } else if let Some((_, own)) = OWN_PROPERTIES.iter().find(|(p, _)| *p == name) {
                e.push(key, format!("set by {own}"));
            } else if let Some(text) = property_text(&value) {
                props.push((name, text));
            } else {
                e.push(key, "must be a string, a number or a boolean");
            }
        }
    }
    s.finish(e);
    Some(KafkaSection {
        bootstrap: bootstrap?,
        client_id,
        account_updates_topic,
        authorizations_topic,
        dead_letter_topic,
        ack_budget: ms(ack_budget_ms),
        create_topics,
        partitions,
        request_timeout: ms(request_timeout_ms),
        message_timeout: ms(message_timeout_ms),
        linger: ms(linger_ms),
        spool_bytes_max,
        properties_file,
        properties: KafkaProperties(props),
    })
}

fn hsm(mut s: Section, e: &mut ConfigErrors, loc: &SecretLocator) -> Option<HsmSection> {
    let module = s
        .required_string(e, "module")
        .map(|m| loc.config_dir.join(m));
    if let Some(m) = &module {
        match std::fs::metadata(m) {
            Ok(meta) if meta.is_file() => {}
            Ok(_) => e.push(s.key("module"), format!("{}: not a file", m.display())),
            Err(err) => e.push(s.key("module"), format!("{}: {err}", m.display())),
        }
    }
    let token_label = s.required_string(e, "token_label").filter(|t| {
        let ok = t.len() <= 32;
        if !ok {
            e.push(
                s.key("token_label"),
                "must be at most 32 bytes (PKCS#11 labels)",
            );
        }
        ok
    });
    let pin_file = s.required_string(e, "pin_file").map(|v| loc.resolve(&v));
    let pin = pin_file.as_deref().and_then(|path| {
        let read = secret::open_private(path)
            .and_then(|_| Pkcs11Config::read_pin_file(path).map_err(|err| err.to_string()));
        match read {
            Ok(pin) if pin.is_empty() => {
                e.push(s.key("pin_file"), format!("{}: empty", path.display()));
                None
            }
            Ok(pin) => Some(SecretString::new(pin)),
            Err(p) => {
                e.push(s.key("pin_file"), p);
                None
            }
        }
    });
    let budget_ms = s.integer_in(e, "budget_ms", HSM_BUDGET_MS, 1..=MINUTE_MS);
    let unavailable_code = s.string_or(e, "unavailable_code", "91");
    if unavailable_code.len() != 2 || !unavailable_code.bytes().all(|b| b.is_ascii_alphanumeric()) {
        e.push(
            s.key("unavailable_code"),
            format!("must be 2 letters or digits (found {unavailable_code:?})"),
        );
    } else if APPROVAL_CODES.contains(&unavailable_code.as_str()) {
        e.push(
            s.key("unavailable_code"),
            format!("{unavailable_code:?} approves: an unchecked request must never be approved (91 lets the network stand in)"),
        );
    }
    let pool_size = s.integer_in(e, "pool_size", 2, 1..=256) as usize;
    let session_wait_ms = s.integer_in(e, "session_wait_ms", budget_ms, 1..=MINUTE_MS);
    let recycle_after_objects = s.integer_in(
        e,
        "recycle_after_objects",
        Pkcs11Config::DEFAULT_RECYCLE_AFTER_OBJECTS as i64,
        1..=i64::MAX,
    ) as u64;
    // Absent: no key set (the summary shows `key_sets=0`).
    let key_sets = match s.table(e, "key_sets") {
        None if e.names(&s.key("key_sets")) => None,
        None => Some(Vec::new()),
        Some(table) => key_sets(table, e),
    };
    s.finish(e);
    Some(HsmSection {
        module: module?,
        token_label: token_label?,
        pin_file: pin_file?,
        pin: pin?,
        budget: ms(budget_ms),
        unavailable_code,
        pool_size,
        session_wait: ms(session_wait_ms),
        recycle_after_objects,
        key_sets: key_sets?,
    })
}

fn key_sets(mut table: Section, e: &mut ConfigErrors) -> Option<Vec<KeySet>> {
    let known: Vec<&str> = Profile::ALL.iter().map(|p| p.name()).collect();
    let mut out = Vec::new();
    let mut complete = true;
    for (name, value) in table.drain() {
        let key = table.key(&name);
        let Value::Table(entry) = value else {
            e.push(key, "must be { key_label = \"...\", profile = \"...\" }");
            complete = false;
            continue;
        };
        if name.is_empty() {
            e.push(key.clone(), "a key set name must not be empty");
            complete = false;
        }
        let mut entry = Section::nested(key.clone(), entry);
        let label = entry.required_string(e, "key_label");
        let profile = entry.required_string(e, "profile").and_then(|p| {
            Profile::from_str(&p).ok().or_else(|| {
                e.push(
                    format!("{key}.profile"),
                    format!("{p:?} is not a known profile (one of {})", known.join(", ")),
                );
                None
            })
        });
        entry.finish(e);
        match (label, profile) {
            (Some(key_label), Some(profile)) => out.push(KeySet {
                id: KeySetId(name),
                key_label,
                profile,
            }),
            _ => complete = false,
        }
    }
    complete.then_some(out)
}

fn pan_key(mut s: Section, e: &mut ConfigErrors, loc: &SecretLocator) -> Option<PanKeySection> {
    let file = s.required_string(e, "file").map(|v| loc.resolve(&v));
    let key = file.as_deref().and_then(|path| {
        PanKeySecret::read(path)
            .map_err(|p| e.push(s.key("file"), p))
            .ok()
    });
    s.finish(e);
    Some(PanKeySection {
        file: file?,
        key: key?,
    })
}

fn state(mut s: Section, e: &mut ConfigErrors, loc: &SecretLocator) -> Option<StateSection> {
    let dir = s.required_string(e, "dir").map(|d| loc.config_dir.join(d));
    if let Some(d) = &dir
        && d.exists()
        && !d.is_dir()
    {
        e.push(s.key("dir"), format!("{}: not a directory", d.display()));
    }
    let s3 = s.table(e, "s3").map(|t| s3(t, e, loc));
    s.finish(e);
    Some(StateSection {
        dir: dir?,
        s3: match s3 {
            None => None,
            Some(section) => Some(section?),
        },
    })
}

fn s3(mut s: Section, e: &mut ConfigErrors, loc: &SecretLocator) -> Option<S3Section> {
    let endpoint = s.required_string(e, "endpoint").filter(|v| {
        let ok = v.starts_with("http://") || v.starts_with("https://");
        if !ok {
            e.push(
                s.key("endpoint"),
                format!("must be an http:// or https:// URL (found {v:?})"),
            );
        }
        ok
    });
    let bucket = s.required_string(e, "bucket").filter(|b| {
        let ok = (3..=63).contains(&b.len())
            && b.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-');
        if !ok {
            e.push(
                s.key("bucket"),
                format!("{b:?} is not an S3 bucket name (3..=63 of a-z 0-9 . -)"),
            );
        }
        ok
    });
    let prefix = match s.take("prefix") {
        None => String::new(),
        Some(Value::String(p)) => p,
        Some(_) => {
            e.push(s.key("prefix"), "must be a string");
            String::new()
        }
    };
    let region = s.string_or(e, "region", "us-east-1");
    let credentials_file = s
        .required_string(e, "credentials_file")
        .map(|v| loc.resolve(&v));
    let credentials = credentials_file.as_deref().and_then(|path| {
        let read = secret::read_secret_text(path).and_then(|c| {
            let t = c.expose();
            if t.contains("aws_access_key_id") && t.contains("aws_secret_access_key") {
                Ok(c)
            } else {
                Err(format!(
                    "{}: not in the AWS shared-credentials format ([default] with aws_access_key_id and aws_secret_access_key)",
                    path.display()
                ))
            }
        });
        read.map_err(|p| e.push(s.key("credentials_file"), p)).ok()
    });
    s.finish(e);
    Some(S3Section {
        endpoint: endpoint?,
        bucket: bucket?,
        prefix,
        region,
        credentials_file: credentials_file?,
        credentials: credentials?,
    })
}

fn snapshotter(mut s: Section, e: &mut ConfigErrors) -> SnapshotterSection {
    let every_s = s.integer_in(e, "every_s", 300, 1..=86_400);
    let keep_local = s.integer_in(e, "keep_local", 3, 1..=1_000) as usize;
    let keep_s3 = s.integer_in(e, "keep_s3", 48, 1..=100_000) as usize;
    s.finish(e);
    SnapshotterSection {
        every: Duration::from_secs(every_s as u64),
        keep_local,
        keep_s3,
    }
}

fn admin(mut s: Section, e: &mut ConfigErrors) -> Option<AdminSection> {
    let listen = s.string_or(e, "listen", "127.0.0.1:9464");
    let parsed = listen.parse().map_err(|_| {
        e.push(
            s.key("listen"),
            format!("must be IP:port, e.g. 127.0.0.1:9464 (found {listen:?})"),
        )
    });
    s.finish(e);
    Some(AdminSection {
        listen: parsed.ok()?,
    })
}

/// `NNNN` or `NNNN-NNNN` (from <= to), merchant category codes.
fn mcc_range(text: &str) -> Result<MccRange, String> {
    let bad = || format!("{text:?} is not an MCC or an MCC range (\"5542\", \"5812-5814\")");
    let (from, to) = text.split_once('-').unwrap_or((text, text));
    let mcc = |t: &str| {
        let t = t.trim();
        if t.len() == 4 && t.bytes().all(|b| b.is_ascii_digit()) {
            t.parse::<u16>().map_err(|_| bad())
        } else {
            Err(bad())
        }
    };
    let (from, to) = (mcc(from)?, mcc(to)?);
    if from > to {
        return Err(format!("{text:?}: the range must go upwards"));
    }
    Ok(MccRange { from, to })
}

/// `hold_duration_rules = [{ mcc = "3501-3999", duration_s = 2678400 }, ...]`: replaces the
/// default table when given.
fn hold_rules(s: &mut Section, e: &mut ConfigErrors) -> Option<Vec<MccHoldRule>> {
    let key = s.key("hold_duration_rules");
    let items = match s.take("hold_duration_rules")? {
        Value::Array(items) => items,
        _ => {
            e.push(
                key,
                "must be an array of { mcc = \"NNNN-NNNN\", duration_s = N }",
            );
            return None;
        }
    };
    if items.len() > DecideConfig::MCC_RULES_MAX {
        e.push(
            key.clone(),
            format!("at most {} rules", DecideConfig::MCC_RULES_MAX),
        );
    }
    let mut rules = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let item_key = format!("{key}[{i}]");
        let Value::Table(table) = item else {
            e.push(item_key, "must be { mcc = \"NNNN-NNNN\", duration_s = N }");
            continue;
        };
        let mut rule = Section::nested(item_key, table);
        let mcc = rule
            .required_string(e, "mcc")
            .and_then(|m| mcc_range(&m).map_err(|p| e.push(rule.key("mcc"), p)).ok());
        let duration_s = match rule.take("duration_s") {
            None => {
                e.push(rule.key("duration_s"), "missing");
                None
            }
            Some(Value::Integer(d)) if (60..=HOLD_DURATION_MAX_S).contains(&d) => Some(d),
            Some(_) => {
                e.push(
                    rule.key("duration_s"),
                    format!("must be an integer 60..={HOLD_DURATION_MAX_S} (seconds)"),
                );
                None
            }
        };
        rule.finish(e);
        if let (Some(range), Some(duration_s)) = (mcc, duration_s) {
            rules.push(MccHoldRule {
                from: range.from,
                to: range.to,
                duration_s,
            });
        }
    }
    Some(rules)
}

fn ledger(mut s: Section, e: &mut ConfigErrors) -> LedgerSection {
    let dedup_window_events = s.integer_in(
        e,
        "dedup_window_events",
        LedgerConfig::default().dedup_window_events as i64,
        1..=LedgerConfig::DEDUP_WINDOW_MAX as i64,
    ) as usize;
    let holds_per_account_max =
        s.integer_in(e, "holds_per_account_max", 1_024, 1..=65_536) as usize;
    let hold_duration_default_s = s.integer_in(
        e,
        "hold_duration_default_s",
        7 * 86_400,
        60..=HOLD_DURATION_MAX_S,
    );
    let hold_duration_rules = hold_rules(&mut s, e);
    let mut chip_amount_may_differ = Vec::new();
    let chip_key = s.key("chip_amount_may_differ_mcc");
    match s.take("chip_amount_may_differ_mcc") {
        None => {}
        Some(Value::Array(items)) => {
            if items.len() > DecideConfig::MCC_RULES_MAX {
                e.push(
                    chip_key.clone(),
                    format!("at most {} ranges", DecideConfig::MCC_RULES_MAX),
                );
            }
            for (i, item) in items.iter().enumerate() {
                match item.as_str().map(mcc_range) {
                    Some(Ok(range)) => chip_amount_may_differ.push(range),
                    Some(Err(p)) => e.push(format!("{chip_key}[{i}]"), p),
                    None => e.push(
                        format!("{chip_key}[{i}]"),
                        "must be a string (\"5542\", \"5812-5814\")",
                    ),
                }
            }
        }
        Some(_) => e.push(chip_key, "must be an array of MCCs or MCC ranges"),
    }
    let decline_unverified_arqc = s.bool_or(e, "decline_unverified_arqc", true);
    s.finish(e);
    LedgerSection {
        dedup_window_events,
        holds_per_account_max,
        hold_duration_default_s,
        hold_duration_rules,
        chip_amount_may_differ,
        decline_unverified_arqc,
    }
}
