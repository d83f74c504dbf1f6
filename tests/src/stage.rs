//! The stage the demo and the daemon benchmark set up: a broker (the embedded mock cluster or
//! tansu), the daemons' configurations and secrets, `authorizer run` processes, their admin
//! servers read back, and the netsim as a child process whose stdout lines arrive as they come.
//!
//! Every child runs in its own process group, so that Ctrl-C reaches only the binary that set the
//! stage, which then stops the others in order. Must never: use a real key or PAN (the demo's
//! PAN key is a constant; the token holds the public EMV test key).

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use hsm::testing::{TEST_IMK_LABEL, TestToken};

use crate::admin_http::{get, metric_sum};

/// A demo-only PAN key (64 hex characters); a bank's comes from a 0600 file or a credential.
pub const DEMO_PAN_KEY_HEX: &str =
    "64656d6f2d70616e2d6b65792d6e6f742d666f722d70726f64756374696f6e21";

/// A binary next to the running one (`target/<profile>/NAME`).
pub fn bin(name: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current exe: {e}"))?;
    let path = exe.parent().ok_or("no bin dir")?.join(name);
    if path.exists() {
        Ok(path)
    } else {
        Err(format!(
            "{} missing: build it with `cargo build --release -p authorizer -p systests`",
            path.display()
        ))
    }
}

/// Starts `cmd` in its own process group.
pub fn spawn(cmd: &mut Command, what: &str) -> Result<Child, String> {
    cmd.process_group(0)
        .spawn()
        .map_err(|e| format!("start {what}: {e}"))
}

/// Sends `sig` (a `kill -s` name) to `child`.
pub fn signal(child: &Child, sig: &str) {
    let _ = Command::new("kill")
        .args(["-s", sig, &child.id().to_string()])
        .status();
}

/// The lines of a child's (piped) stdout, as they come.
pub fn lines(child: &mut Child) -> Receiver<String> {
    let (tx, rx) = channel();
    if let Some(out) = child.stdout.take() {
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    rx
}

/// The first line for which `want` holds, within `timeout`.
pub fn wait_line(
    rx: &Receiver<String>,
    timeout: Duration,
    want: impl Fn(&str) -> bool,
) -> Result<String, String> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) if want(&l) => return Ok(l),
            Ok(_) => {}
            Err(e) => return Err(format!("{e:?}")),
        }
    }
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Writes a secret file, mode 0600.
pub fn write_private(path: &Path, text: &str) -> Result<(), String> {
    let _ = std::fs::remove_file(path);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Which broker carries the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BrokerKind {
    /// librdkafka's mock cluster in a small process (`mock-broker`): starts in a second, keeps
    /// everything in memory.
    Embedded,
    /// tansu, through `scripts/broker` (built once, about 20 minutes on 2 cores).
    Tansu,
}

impl BrokerKind {
    pub fn name(self) -> &'static str {
        match self {
            BrokerKind::Embedded => "embedded mock cluster",
            BrokerKind::Tansu => "tansu",
        }
    }
}

/// A running broker.
pub struct Broker {
    pub kind: BrokerKind,
    pub addr: String,
    /// The embedded broker's process (tansu watches our pid and stops by itself).
    child: Option<Child>,
}

impl Broker {
    /// Starts a broker with the topics `PREFIX.account-updates`, `PREFIX.authorizations` (4
    /// partitions each) and `PREFIX.account-updates.dlq`: created by the embedded broker itself
    /// (it has no CreateTopics), by the daemons on tansu ([`Broker::create_topics`]).
    pub fn start(kind: BrokerKind, prefix: &str) -> Result<Broker, String> {
        let pid = std::process::id().to_string();
        match kind {
            BrokerKind::Embedded => {
                let mut c = Command::new(bin("mock-broker")?);
                c.args(["--watch-pid", &pid])
                    .args(["--topic", &format!("{prefix}.account-updates:4")])
                    .args(["--topic", &format!("{prefix}.authorizations:4")])
                    .args(["--topic", &format!("{prefix}.account-updates.dlq:1")])
                    .stdout(Stdio::piped());
                let mut child = spawn(&mut c, "mock-broker")?;
                let rx = lines(&mut child);
                let line = wait_line(&rx, Duration::from_secs(30), |l| l.starts_with("BROKER="))
                    .map_err(|e| format!("mock-broker: {e}"))?;
                Ok(Broker {
                    kind,
                    addr: line["BROKER=".len()..].to_owned(),
                    child: Some(child),
                })
            }
            BrokerKind::Tansu => {
                let out = Command::new("scripts/broker")
                    .args(["start", "--watch-pid", &pid])
                    .output()
                    .map_err(|e| format!("scripts/broker (run from the repository): {e}"))?;
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                let addr = text
                    .lines()
                    .find_map(|l| l.strip_prefix("BROKER="))
                    .ok_or_else(|| {
                        format!(
                            "scripts/broker start: {}",
                            String::from_utf8_lossy(&out.stderr)
                        )
                    })?
                    .to_owned();
                Ok(Broker {
                    kind,
                    addr,
                    child: None,
                })
            }
        }
    }

    /// A broker someone else runs (tansu, or any Kafka): the daemons create the topics.
    pub fn external(addr: &str) -> Broker {
        Broker {
            kind: BrokerKind::Tansu,
            addr: addr.to_owned(),
            child: None,
        }
    }

    /// Whether the daemons must create the topics (`kafka.create_topics`).
    pub fn create_topics(&self) -> bool {
        self.kind == BrokerKind::Tansu
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(&c, "TERM");
            let _ = c.wait();
        }
    }
}

/// What a daemon of the stage is configured with.
pub struct DaemonSpec<'a> {
    pub name: &'a str,
    pub dialect: &'a str,
    pub device: &'a str,
    pub broker: &'a Broker,
    pub prefix: &'a str,
    pub token: &'a TestToken,
    /// Holds `pan.key`; the daemon's configuration, log and `state-NAME/` go there too.
    pub dir: &'a Path,
    pub ack_budget_ms: u64,
    /// The producer's `kafka.linger_ms` (the daemon's default is 0).
    pub linger_ms: u64,
}

impl DaemonSpec<'_> {
    /// The configuration file's text (every profile's key set on the test key).
    pub fn config_text(&self, admin: &str) -> Result<String, String> {
        let key_sets: String = hsm::Profile::ALL
            .iter()
            .map(|p| {
                format!(
                    "{:?} = {{ key_label = {TEST_IMK_LABEL:?}, profile = {:?} }}\n",
                    p.name(),
                    p.name()
                )
            })
            .collect();
        let state = self.dir.join(format!("state-{}", self.name));
        std::fs::create_dir_all(&state).map_err(|e| format!("{}: {e}", state.display()))?;
        Ok(format!(
            r#"# The configuration of {name} (docs/operations.md explains every key).
instance_id = "{name}"
issuer_id = "12345"
log_format = "text"

[network]
dialect = "{dialect}"
interface_devices = ["{device}"]
echo_idle_s = 60
answer_budget_ms = 3000
connect_timeout_ms = 1000
reconnect_backoff_min_ms = 50
reconnect_backoff_max_ms = 1000

[kafka]
bootstrap = "{broker}"
account_updates_topic = "{prefix}.account-updates"
authorizations_topic = "{prefix}.authorizations"
dead_letter_topic = "{prefix}.account-updates.dlq"
ack_budget_ms = {ack}
linger_ms = {linger}
create_topics = {create}
partitions = 4

[hsm]
module = "{module}"
token_label = "{token}"
pin_file = "{pin}"
budget_ms = 1000
pool_size = 2
[hsm.key_sets]
{key_sets}
[pan_key]
file = "{pan_key}"

[state]
dir = "{state}"

[admin]
listen = "{admin}"
"#,
            name = self.name,
            dialect = self.dialect,
            device = self.device,
            broker = self.broker.addr,
            prefix = self.prefix,
            ack = self.ack_budget_ms,
            linger = self.linger_ms,
            create = self.broker.create_topics(),
            module = self.token.module().path().display(),
            token = self.token.label(),
            pin = self.token.pin_file().display(),
            pan_key = self.dir.join("pan.key").display(),
            state = state.display(),
        ))
    }

    /// Writes the configuration and starts `authorizer run` on it (stderr to `NAME.log`).
    pub fn start(&self) -> Result<DaemonProcess, String> {
        let admin = format!("127.0.0.1:{}", free_port());
        let config = self.dir.join(format!("{}.toml", self.name));
        std::fs::write(&config, self.config_text(&admin)?)
            .map_err(|e| format!("{}: {e}", config.display()))?;
        let log = self.dir.join(format!("{}.log", self.name));
        let stderr = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let mut c = Command::new(bin("authorizer")?);
        c.arg("run")
            .arg("--config")
            .arg(&config)
            .env("SOFTHSM2_CONF", self.token.softhsm2_conf())
            .env_remove("NOTIFY_SOCKET")
            .stdout(Stdio::null())
            .stderr(stderr);
        Ok(DaemonProcess {
            name: self.name.to_owned(),
            admin,
            child: spawn(&mut c, self.name)?,
            log,
        })
    }
}

/// A running daemon of the stage.
pub struct DaemonProcess {
    pub name: String,
    pub admin: String,
    pub child: Child,
    pub log: PathBuf,
}

impl DaemonProcess {
    /// Waits for `/health/ready` = 200; `Err` with its log if it exited first.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if get(&self.admin, "/health/ready").is_some_and(|a| a.status == 200) {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                return Err(format!(
                    "{} exited ({status}) before ready:\n{log}",
                    self.name
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!("{} not ready after {timeout:?}", self.name));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM and wait; whether it exited 0.
    pub fn stop(&mut self) -> bool {
        signal(&self.child, "TERM");
        self.child.wait().is_ok_and(|s| s.success())
    }

    /// CPU time (user + system) the process used so far, from `/proc/PID/stat`.
    pub fn cpu_seconds(&self) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).ok()?;
        // Fields after the command name (which may hold spaces) start after the last ')'.
        let rest = stat.rsplit_once(')')?.1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
        let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
        Some(ticks / 100.0)
    }
}

/// What a daemon's admin server says of it.
#[derive(Default, Debug, Clone)]
pub struct Replica {
    pub ready: bool,
    /// The links' states, comma-separated.
    pub links: String,
    pub hash: String,
    pub offsets: BTreeMap<String, i64>,
    pub holds: u64,
    pub spool: u64,
    pub acked: f64,
    pub spooled: f64,
    pub failed: f64,
    pub lag: f64,
    pub answered: f64,
}

/// Reads `/state` and `/metrics` of the admin server at `admin`.
pub fn read_replica(admin: &str) -> Replica {
    let mut r = Replica::default();
    if let Some(a) = get(admin, "/state")
        && let Ok(v) = serde_json::from_str::<serde_json::Value>(&a.body)
    {
        r.ready = v["ready"] == true;
        r.hash = v["state_hash"].as_str().unwrap_or("").to_owned();
        r.holds = v["counts"]["holds"].as_u64().unwrap_or(0);
        r.spool = v["spool_events"].as_u64().unwrap_or(0);
        r.links = v["links"]
            .as_array()
            .map(|l| {
                l.iter()
                    .filter_map(|x| x["state"].as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        if let Some(o) = v["offsets"].as_object() {
            r.offsets = o
                .iter()
                .map(|(k, v)| (k.clone(), v.as_i64().unwrap_or(0)))
                .collect();
        }
    }
    if let Some(m) = get(admin, "/metrics") {
        let e = "authorizer_events_published_total";
        r.acked = metric_sum(&m.body, e, "outcome=\"acked\"");
        r.spooled = metric_sum(&m.body, e, "outcome=\"spooled\"");
        r.failed = metric_sum(&m.body, e, "outcome=\"failed\"");
        r.lag = metric_sum(&m.body, "authorizer_kafka_lag_records", "");
        r.answered = metric_sum(&m.body, "authorizer_requests_total", "");
    }
    r
}

/// A `netsim load` child publishing to `broker`'s `PREFIX.account-updates`, started and past
/// its "published" line; returns it, its listening address and its stdout lines.
pub fn start_netsim_load(
    broker: &Broker,
    prefix: &str,
    dir: &Path,
    dialect: &str,
    args: &[String],
) -> Result<(Child, String, Receiver<String>), String> {
    let mut c = Command::new(bin("netsim")?);
    c.arg("load")
        .args(["--listen", "127.0.0.1:0", "--dialect", dialect])
        .args(["--brokers", &broker.addr])
        .args([
            "--account-updates-topic",
            &format!("{prefix}.account-updates"),
        ])
        .arg("--pan-key-file")
        .arg(dir.join("pan.key"))
        .args(args)
        .stdout(Stdio::piped());
    let mut child = spawn(&mut c, "netsim")?;
    let rx = lines(&mut child);
    let listening = wait_line(&rx, Duration::from_secs(60), |l| l.contains("listening on"))
        .map_err(|e| format!("netsim: {e}"))?;
    let addr = listening
        .split("listening on ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .ok_or("netsim: no listening address")?
        .to_owned();
    wait_line(&rx, Duration::from_secs(300), |l| l.contains("published"))
        .map_err(|e| format!("netsim: {e}"))?;
    Ok((child, addr, rx))
}
