//! The daemon's configuration file (TOML, `docs/operations.md` §"Configuration"): the structs
//! it loads into, [`Config::load`], and the conversions to the structs the edges and the core
//! take ([`KafkaConfig`], [`PublisherConfig`], [`LedgerConfig`], [`DecideConfig`],
//! [`Pkcs11Config`]).
//!
//! * [`load`](Config::load) parses the file, checks every key (an unknown one is an error),
//!   reads every secret file it names ([`secret`]) and loads the dialect; it reaches no service
//!   (no DNS, no connection, no HSM). Every problem found is reported, each naming its key
//!   ([`ConfigErrors`]).
//! * `authorizer check-config` is `load` and [`Config::summary`].
//!
//! Must never: let a secret reach a `Debug` or `Display` output, an error or the summary (the
//! secret-holding fields are [`SecretString`] and [`PanKeySecret`], which print `<redacted>`, and
//! secret Kafka properties print `<redacted>` too); take a secret from argv or the environment.

mod load;
pub mod secret;
pub mod validate;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hsm::KeySet;
use hsm::pkcs11::Pkcs11Config;
use ledger::LedgerConfig;
use ledger::decide::DecideConfig;

use crate::kafka::{KafkaConfig, PublisherConfig, properties};
pub use secret::{PanKeySecret, SecretLocator, SecretString};
pub use validate::{ConfigErrors, ConfigProblem};

/// The whole configuration, checked. Both daemons load the same file; each uses its sections.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file it was loaded from.
    pub path: PathBuf,
    /// The instance's name: in published events, metrics and logs (1..=64 printable ASCII).
    pub instance_id: String,
    /// DE 33 of the authorizer's own 0800s (1..=11 digits).
    pub issuer_id: String,
    pub log_format: LogFormat,
    pub network: NetworkSection,
    pub kafka: KafkaSection,
    pub hsm: HsmSection,
    pub pan_key: PanKeySection,
    pub state: StateSection,
    pub snapshotter: SnapshotterSection,
    pub admin: AdminSection,
    pub ledger: LedgerSection,
}

/// Which daemon loads the file: each reads the sections it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// `authorizer run` and `check-config`: every section.
    Authorizer,
    /// `snapshotter run`: `[network]`, `[hsm]` and `[pan_key]` are not read (they may be absent,
    /// and their secret files need not be on the host); `issuer_id` is optional.
    Snapshotter,
}

/// What the snapshotter reads of the file ([`SnapshotterConfig::load`]).
#[derive(Clone, Debug)]
pub struct SnapshotterConfig {
    pub path: PathBuf,
    pub instance_id: String,
    pub log_format: LogFormat,
    pub kafka: KafkaSection,
    pub state: StateSection,
    pub snapshotter: SnapshotterSection,
    pub admin: AdminSection,
    pub ledger: LedgerSection,
}

impl SnapshotterConfig {
    /// Loads the file for the snapshotter ([`Role::Snapshotter`]): the same keys, bounds and
    /// secret rules as [`Config::load`] for the sections it reads; an unknown key is an error.
    pub fn load(path: impl AsRef<Path>) -> Result<SnapshotterConfig, ConfigErrors> {
        let credentials = std::env::var_os("CREDENTIALS_DIRECTORY")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from);
        Config::load_for(Role::Snapshotter, path.as_ref(), credentials.as_deref()).map(|loaded| {
            match loaded {
                Loaded::Snapshotter(config) => *config,
                Loaded::Authorizer(_) => unreachable!("loaded for the snapshotter"),
            }
        })
    }

    pub fn kafka_config(&self) -> KafkaConfig {
        self.kafka.kafka_config()
    }

    /// The local snapshots' directory: `state.dir/snapshots`.
    pub fn snapshot_dir(&self) -> PathBuf {
        self.state.dir.join("snapshots")
    }

    pub fn ledger_config(&self) -> LedgerConfig {
        LedgerConfig {
            dedup_window_events: self.ledger.dedup_window_events,
        }
    }
}

/// A configuration loaded for a [`Role`].
#[derive(Clone, Debug)]
pub enum Loaded {
    Authorizer(Box<Config>),
    Snapshotter(Box<SnapshotterConfig>),
}

impl KafkaSection {
    /// The Kafka clients' configuration (topics, `client.id`, the properties file's entries then
    /// `[kafka.properties]`).
    pub fn kafka_config(&self) -> KafkaConfig {
        let mut c = KafkaConfig::new(&self.bootstrap);
        c.client_id = self.client_id.clone();
        c.account_updates_topic = self.account_updates_topic.clone();
        c.authorizations_topic = self.authorizations_topic.clone();
        c.dead_letter_topic = self.dead_letter_topic.clone();
        c.extra = self.properties.0.clone();
        c.request_timeout = self.request_timeout;
        c
    }
}

/// `log_format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (the default).
    Text,
    /// One JSON object per line (journald, log shippers).
    Json,
}

/// `[network]`: the links to the interface devices.
#[derive(Clone)]
pub struct NetworkSection {
    /// `network.dialect` as written: `mastercard`, `ascii` or a dialect file's path.
    pub dialect_name: String,
    /// The dialect loaded.
    pub dialect: iso8583::Dialect,
    /// `host:port` of every interface device (not resolved here).
    pub interface_devices: Vec<String>,
    pub max_frame_bytes: usize,
    pub echo_idle: Duration,
    pub answer_budget: Duration,
    /// DE 7 further than this from the clock is in error (30, DE 44 = 007).
    pub transmission_skew_s: i64,
    /// Requests being decided at once on one link; more wait unread (backpressure).
    pub max_in_flight: usize,
    pub connect_timeout: Duration,
    pub reconnect_backoff_min: Duration,
    pub reconnect_backoff_max: Duration,
    /// Time allowed for the 0810 answering the authorizer's sign-on.
    pub sign_on_timeout: Duration,
}

impl fmt::Debug for NetworkSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetworkSection")
            .field("dialect", &self.dialect_name)
            .field("interface_devices", &self.interface_devices)
            .field("max_frame_bytes", &self.max_frame_bytes)
            .field("echo_idle", &self.echo_idle)
            .field("answer_budget", &self.answer_budget)
            .field("transmission_skew_s", &self.transmission_skew_s)
            .field("max_in_flight", &self.max_in_flight)
            .field("connect_timeout", &self.connect_timeout)
            .field("reconnect_backoff_min", &self.reconnect_backoff_min)
            .field("reconnect_backoff_max", &self.reconnect_backoff_max)
            .field("sign_on_timeout", &self.sign_on_timeout)
            .finish()
    }
}

/// `[kafka]`.
#[derive(Clone, Debug)]
pub struct KafkaSection {
    pub bootstrap: String,
    /// `client.id` sent to the broker; defaults to `instance_id`.
    pub client_id: String,
    pub account_updates_topic: String,
    pub authorizations_topic: String,
    pub dead_letter_topic: String,
    pub ack_budget: Duration,
    pub create_topics: bool,
    pub partitions: i32,
    pub request_timeout: Duration,
    pub message_timeout: Duration,
    pub linger: Duration,
    pub spool_bytes_max: u64,
    /// `kafka.properties_file`, resolved: the place for secret librdkafka properties.
    pub properties_file: Option<PathBuf>,
    /// The properties file's entries, then `[kafka.properties]`'s, in that order.
    pub properties: KafkaProperties,
}

/// librdkafka properties; `Debug` prints `<redacted>` for the value of every secret one.
#[derive(Clone, Default)]
pub struct KafkaProperties(pub Vec<(String, String)>);

impl fmt::Debug for KafkaProperties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(
                self.0
                    .iter()
                    .map(|(k, v)| (k.as_str(), properties::shown_value(k, v))),
            )
            .finish()
    }
}

/// `[hsm]`.
#[derive(Clone, Debug)]
pub struct HsmSection {
    pub module: PathBuf,
    pub token_label: String,
    /// Where the PIN was read from.
    pub pin_file: PathBuf,
    /// The user PIN (first line of the file).
    pub pin: SecretString,
    /// Time allowed per cryptogram operation.
    pub budget: Duration,
    /// DE 39 when the HSM is down or over budget.
    pub unavailable_code: String,
    pub pool_size: usize,
    /// Longest wait for a free session of the pool.
    pub session_wait: Duration,
    pub recycle_after_objects: u64,
    /// From `[hsm.key_sets]`, in name order.
    pub key_sets: Vec<KeySet>,
}

/// `[pan_key]`.
#[derive(Clone, Debug)]
pub struct PanKeySection {
    pub file: PathBuf,
    pub key: PanKeySecret,
}

/// `[state]`.
#[derive(Clone, Debug)]
pub struct StateSection {
    /// The spool and the local snapshots live under it.
    pub dir: PathBuf,
    pub s3: Option<S3Section>,
}

/// `[state.s3]`.
#[derive(Clone, Debug)]
pub struct S3Section {
    pub endpoint: String,
    pub bucket: String,
    pub prefix: String,
    pub region: String,
    pub credentials_file: PathBuf,
    /// The file's content (AWS shared-credentials format).
    pub credentials: SecretString,
}

/// `[snapshotter]`.
#[derive(Clone, Debug)]
pub struct SnapshotterSection {
    pub every: Duration,
    pub keep_local: usize,
    pub keep_s3: usize,
}

/// `[admin]`.
#[derive(Clone, Debug)]
pub struct AdminSection {
    pub listen: SocketAddr,
}

/// `[ledger]`: the state's and the decision rules' limits.
#[derive(Clone, Debug)]
pub struct LedgerSection {
    pub dedup_window_events: usize,
    pub holds_per_account_max: usize,
    pub hold_duration_default_s: i64,
    /// The hold-duration table by merchant category (first match wins); `None`: the core's
    /// default table ([`DecideConfig::new`]).
    pub hold_duration_rules: Option<Vec<ledger::decide::MccHoldRule>>,
    /// Merchant categories whose chip amount may differ from DE 4 (fuel, tips).
    pub chip_amount_may_differ: Vec<ledger::decide::MccRange>,
    pub decline_unverified_arqc: bool,
}

impl Config {
    /// Loads and checks the file at `path`: every key, every secret file (bare names looked up
    /// in `$CREDENTIALS_DIRECTORY` when set, else next to the file), the dialect. Reaches no
    /// service. Every problem is reported, each naming its key.
    pub fn load(path: impl AsRef<Path>) -> Result<Config, ConfigErrors> {
        let credentials = std::env::var_os("CREDENTIALS_DIRECTORY")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from);
        Config::load_with(path.as_ref(), credentials.as_deref())
    }

    /// [`Config::load`] with the credentials directory given rather than read from the
    /// environment.
    pub fn load_with(path: &Path, credentials_dir: Option<&Path>) -> Result<Config, ConfigErrors> {
        match load::load(path, credentials_dir, Role::Authorizer)? {
            Loaded::Authorizer(config) => Ok(*config),
            Loaded::Snapshotter(_) => unreachable!("loaded for the authorizer"),
        }
    }

    /// Loads the file for `role` (see [`Role`]), with the credentials directory given.
    pub fn load_for(
        role: Role,
        path: &Path,
        credentials_dir: Option<&Path>,
    ) -> Result<Loaded, ConfigErrors> {
        load::load(path, credentials_dir, role)
    }

    /// The one line `authorizer check-config` prints: names and counts, never a secret.
    pub fn summary(&self) -> String {
        format!(
            "config ok: instance_id={} dialect={} interface_devices={} kafka.bootstrap={} key_sets={} state.dir={} s3={} admin.listen={} log_format={}",
            self.instance_id,
            self.network.dialect_name,
            self.network.interface_devices.len(),
            self.kafka.bootstrap,
            self.hsm.key_sets.len(),
            self.state.dir.display(),
            if self.state.s3.is_some() { "yes" } else { "no" },
            self.admin.listen,
            match self.log_format {
                LogFormat::Text => "text",
                LogFormat::Json => "json",
            },
        )
    }

    /// The Kafka clients' configuration (topics, `client.id`, the properties file's entries then
    /// `[kafka.properties]`).
    pub fn kafka_config(&self) -> KafkaConfig {
        self.kafka.kafka_config()
    }

    /// The spool's directory: `state.dir/spool`.
    pub fn spool_dir(&self) -> PathBuf {
        self.state.dir.join("spool")
    }

    /// The local snapshots' directory: `state.dir/snapshots`.
    pub fn snapshot_dir(&self) -> PathBuf {
        self.state.dir.join("snapshots")
    }

    /// The publisher's configuration (spool under `state.dir`).
    pub fn publisher_config(&self) -> PublisherConfig {
        let mut c = PublisherConfig::new(self.spool_dir());
        c.spool_bytes_max = self.kafka.spool_bytes_max;
        c.message_timeout = self.kafka.message_timeout;
        c.linger = self.kafka.linger;
        c
    }

    pub fn ledger_config(&self) -> LedgerConfig {
        LedgerConfig {
            dedup_window_events: self.ledger.dedup_window_events,
        }
    }

    /// The decision rules' configuration (the default hold-duration table by MCC).
    pub fn decide_config(&self) -> DecideConfig {
        let mut c = DecideConfig::new(&self.instance_id);
        c.hold_duration_default_s = self.ledger.hold_duration_default_s;
        c.holds_per_account_max = self.ledger.holds_per_account_max;
        if let Some(rules) = &self.ledger.hold_duration_rules {
            c.hold_duration_rules = rules.clone();
        }
        c.chip_amount_may_differ = self.ledger.chip_amount_may_differ.clone();
        c.decline_unverified_arqc = self.ledger.decline_unverified_arqc;
        c.transmission_skew_s = self.network.transmission_skew_s;
        c
    }

    /// The HSM backend's configuration (with a copy of the PIN, zeroed on drop).
    pub fn pkcs11_config(&self) -> Pkcs11Config {
        Pkcs11Config {
            module_path: self.hsm.module.clone(),
            token_label: self.hsm.token_label.clone(),
            user_pin: zeroize::Zeroizing::new(self.hsm.pin.expose().to_owned()),
            pool_size: self.hsm.pool_size,
            op_timeout: self.hsm.session_wait,
            recycle_after_objects: self.hsm.recycle_after_objects,
            key_sets: self.hsm.key_sets.clone(),
        }
    }
}
