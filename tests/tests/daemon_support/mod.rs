//! Shared by the daemon's system tests: the real `authorizer` binary as a process, with a real
//! tansu broker (`scripts/broker`), a private SoftHSM2 token holding the public EMV test key
//! under every profile's key set, its secrets in 0600 files, and a configuration written for it.
//! The admin server is reached over loopback HTTP; signals are real signals.
//!
//! `AUTHORIZER_TEST_BROKER=host:port` uses a running broker; otherwise one is started per test
//! binary (stopped when it exits). Never skips for want of a part.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hsm::testing::TestToken;

/// The PAN key of the tests (the cloud's simulator hashes PANs with it too).
pub const PAN_KEY_HEX: &str = "7c1a0f6e2b9d4c3a8e5f1b0d7a6c9e2f4b8d1a3c5e7f9b0d2a4c6e8f0b1d3a5c";

pub fn pan_key() -> ledger::PanKey {
    let bytes = hex::decode(PAN_KEY_HEX).expect("hex");
    ledger::PanKey(bytes.try_into().expect("32 bytes"))
}

fn repo() -> PathBuf {
    std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("..")
}

/// The broker of this test binary.
pub fn broker() -> String {
    static BROKER: OnceLock<String> = OnceLock::new();
    BROKER
        .get_or_init(|| {
            if let Ok(b) = std::env::var("AUTHORIZER_TEST_BROKER") {
                return b;
            }
            let out = Command::new(repo().join("scripts/broker"))
                .args(["start", "--watch-pid", &std::process::id().to_string()])
                .output()
                .expect("run scripts/broker");
            assert!(
                out.status.success(),
                "scripts/broker start failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .find_map(|l| l.strip_prefix("BROKER=").map(str::to_owned))
                .expect("scripts/broker prints BROKER=host:port")
        })
        .clone()
}

/// The `authorizer` binary, built once per test binary (a no-op when it is fresh).
pub fn authorizer_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| built_bin("authorizer", "authorizer"))
        .clone()
}

/// `cargo build -p PACKAGE --bin NAME` in this run's profile, and the binary's path.
fn built_bin(package: &str, name: &str) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(repo())
        .args(["build", "-q", "-p", package, "--bin", name])
        .status()
        .expect("run cargo build");
    assert!(status.success(), "cargo build -p {package} failed");
    // target/<profile>/deps/<this test> → target/<profile>/<name>
    let exe = std::env::current_exe().expect("current exe");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .join(name);
    assert!(bin.exists(), "no {name} binary at {}", bin.display());
    bin
}

/// A free loopback port (bound and released: another process could take it in between, which
/// on a test machine does not happen in practice).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn write_private(path: &Path, content: &str) {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(content.as_bytes()))
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// One test's world: the broker, a token, a directory for configurations, secrets and state,
/// and topic names of its own.
pub struct World {
    /// One world at a time per test binary: a daemon's SoftHSM2 reads the token directory that
    /// another test's token creation may be writing (SoftHSM then fails the daemon's slot
    /// search), and two daemons under load would share two cores.
    _one_at_a_time: std::sync::MutexGuard<'static, ()>,
    pub broker: String,
    pub token: TestToken,
    pub dir: tempfile::TempDir,
    /// Prefix of this world's topics (`<prefix>.account-updates`, ...).
    pub prefix: String,
}

impl World {
    pub fn new() -> World {
        World::new_with_broker(broker())
    }

    /// A world on another broker (the embedded one, for the demo's figures).
    pub fn new_with_broker(broker: String) -> World {
        static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let one_at_a_time = ONE.lock().unwrap_or_else(|e| e.into_inner());
        let token = TestToken::with_test_keys();
        let dir = tempfile::tempdir().expect("tempdir");
        write_private(&dir.path().join("pan.key"), &format!("{PAN_KEY_HEX}\n"));
        let prefix = format!(
            "d{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        World {
            _one_at_a_time: one_at_a_time,
            broker,
            token,
            dir,
            prefix,
        }
    }

    pub fn account_updates_topic(&self) -> String {
        format!("{}.account-updates", self.prefix)
    }

    pub fn authorizations_topic(&self) -> String {
        format!("{}.authorizations", self.prefix)
    }

    /// The PAN key file (0600).
    pub fn pan_key_file(&self) -> PathBuf {
        self.dir.path().join("pan.key")
    }

    /// A configuration for instance `instance_id` (its own `state.dir` and admin port), talking
    /// to `devices` in `dialect`: the stage's ([`systests::stage::DaemonSpec`]), with this world's
    /// broker, token, topics and directory.
    pub fn config(&self, instance_id: &str, dialect: &str, devices: &[String]) -> DaemonConfig {
        let broker = systests::stage::Broker::external(&self.broker);
        let spec = systests::stage::DaemonSpec {
            name: instance_id,
            dialect,
            device: "DEVICES",
            broker: &broker,
            prefix: &self.prefix,
            token: &self.token,
            dir: self.dir.path(),
            ack_budget_ms: 1000,
            linger_ms: 0,
        };
        let admin = format!("127.0.0.1:{}", free_port());
        let devices: Vec<String> = devices.iter().map(|d| format!("{d:?}")).collect();
        let text = spec
            .config_text(&admin)
            .expect("the configuration")
            .replace("[\"DEVICES\"]", &format!("[{}]", devices.join(", ")));
        DaemonConfig {
            path: self.dir.path().join(format!("{instance_id}.toml")),
            text,
            admin,
            softhsm2_conf: self.token.softhsm2_conf(),
            state_dir: self.dir.path().join(format!("state-{instance_id}")),
        }
    }
}

/// A configuration, editable before the daemon starts.
pub struct DaemonConfig {
    pub path: PathBuf,
    pub text: String,
    pub admin: String,
    pub softhsm2_conf: PathBuf,
    pub state_dir: PathBuf,
}

impl DaemonConfig {
    /// Replaces `from` (which must be there) with `to`.
    pub fn edit(&mut self, from: &str, to: &str) -> &mut Self {
        assert!(self.text.contains(from), "no {from:?} in the configuration");
        self.text = self.text.replacen(from, to, 1);
        self
    }

    /// Writes the file and starts `authorizer run --config` on it.
    pub fn start(&self) -> Daemon {
        self.start_with_env(&[])
    }

    /// [`DaemonConfig::start`] with environment variables set (`NOTIFY_SOCKET`, `AUTHORIZER_LOG`).
    pub fn start_with_env(&self, env: &[(&str, &str)]) -> Daemon {
        let conf = self.softhsm2_conf.to_str().expect("a UTF-8 path");
        let mut all = vec![("SOFTHSM2_CONF", conf)];
        all.extend_from_slice(env);
        self.start_bin(authorizer_bin(), &all)
    }

    /// Writes the file and starts `BIN run --config` on it, stderr to a file of its own, with
    /// `env` set (and no `NOTIFY_SOCKET` unless given).
    fn start_bin(&self, bin: PathBuf, env: &[(&str, &str)]) -> Daemon {
        std::fs::write(&self.path, &self.text).expect("write the configuration");
        let stderr_path = self.path.with_extension(format!(
            "stderr.{}",
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
        let child = Command::new(&bin)
            .arg("run")
            .arg("--config")
            .arg(&self.path)
            .env_remove("NOTIFY_SOCKET")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        Daemon {
            child: Some(child),
            admin: self.admin.clone(),
            stderr_path,
        }
    }
}

/// A running `authorizer run` process; killed when dropped.
pub struct Daemon {
    child: Option<Child>,
    pub admin: String,
    pub stderr_path: PathBuf,
}

pub use systests::admin_http::Answer;

impl Daemon {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// What the daemon wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// `GET path` on the admin server; `None` when it does not answer.
    pub fn get(&self, path: &str) -> Option<Answer> {
        get(&self.admin, path)
    }

    /// Waits for `/health/ready` = 200; panics with the daemon's stderr after `timeout` or if
    /// it exited.
    pub fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.get("/health/ready").is_some_and(|a| a.status == 200) {
                return;
            }
            if let Some(status) = self.try_wait() {
                panic!(
                    "the authorizer exited ({status}) before ready:\n{}",
                    self.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "not ready after {timeout:?}:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `/state` as JSON.
    pub fn state(&self) -> serde_json::Value {
        let a = self.get("/state").expect("/state answers");
        assert_eq!(a.status, 200, "{}", a.body);
        serde_json::from_str(&a.body).expect("/state is JSON")
    }

    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().expect("try_wait")
    }

    /// Sends `signal` (a `kill -s` name: TERM, INT, KILL).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args(["-s", signal, &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s {signal} failed");
    }

    /// Waits for the process to exit, at most `timeout` (then kills it and panics).
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait() {
                self.child = None;
                return status;
            }
            if Instant::now() >= deadline {
                let stderr = self.stderr();
                self.kill();
                panic!("the authorizer did not exit within {timeout:?}:\n{stderr}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

pub use systests::admin_http::get;

/// Runs `authorizer` with `args` to completion (tools, `run` expected to fail at once).
pub fn authorizer(args: &[&str], softhsm2_conf: &Path) -> std::process::Output {
    Command::new(authorizer_bin())
        .args(args)
        .env("SOFTHSM2_CONF", softhsm2_conf)
        .stdin(Stdio::null())
        .output()
        .expect("run the authorizer")
}

/// The `netsim` binary of this build (built with the test binaries of this package).
pub fn netsim_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_netsim"))
}

/// A running `netsim` process: its listening address, and its stdout lines as they come.
pub struct Netsim {
    child: Option<Child>,
    /// Where the daemon must dial (`netsim: listening on ADDR`).
    pub addr: String,
    lines: std::sync::mpsc::Receiver<String>,
    /// Every stdout line read so far.
    pub seen: Vec<String>,
}

impl Netsim {
    /// Starts `netsim MODE --listen 127.0.0.1:0 ARGS...` publishing to `world`'s broker and
    /// topic, and waits until it listens and has published (so that a daemon started next
    /// finds the population in the log).
    pub fn start(world: &World, mode: &str, dialect: &str, args: &[&str]) -> Netsim {
        let mut child = Command::new(netsim_bin())
            .arg(mode)
            .args(["--listen", "127.0.0.1:0", "--dialect", dialect])
            .args(["--brokers", &world.broker])
            .args(["--account-updates-topic", &world.account_updates_topic()])
            .arg("--pan-key-file")
            .arg(world.pan_key_file())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start netsim");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut n = Netsim {
            child: Some(child),
            addr: String::new(),
            lines,
            seen: Vec::new(),
        };
        let listening = n.wait_line(Duration::from_secs(60), |l| l.contains("listening on"));
        n.addr = listening
            .split("listening on ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .expect("netsim: listening on ADDR")
            .to_owned();
        n.wait_line(Duration::from_secs(120), |l| l.contains("published"));
        n
    }

    /// Waits for a stdout line for which `want` holds and returns it (panics after `timeout`,
    /// or if netsim's stdout closed first).
    pub fn wait_line(&mut self, timeout: Duration, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if want(&line) {
                        return line;
                    }
                }
                Err(e) => panic!(
                    "netsim: no such line ({e:?}) after:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Waits for netsim to exit (reading the rest of its output); its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        let mut child = self.child.take().expect("running");
        loop {
            while let Ok(line) = self.lines.try_recv() {
                self.seen.push(line);
            }
            if let Some(status) = child.try_wait().expect("try_wait") {
                // The reader thread may still hold the last lines.
                while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    self.seen.push(line);
                }
                return status.code();
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "netsim did not exit within {timeout:?}:\n{}",
                    self.seen.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends `signal` (a `kill -s` name) to the netsim.
    pub fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("running");
        let status = Command::new("kill")
            .args(["-s", signal, &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s {signal} failed");
    }

    /// Everything it printed, one line each.
    pub fn output(&self) -> String {
        self.seen.join("\n")
    }
}

impl Drop for Netsim {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Per account: (approved holds, their amount), from the netsim's answer records in `files`
/// (`--approvals-file`, magstripe traffic: every record a 0100).
pub fn approved_holds(files: &[&Path]) -> BTreeMap<String, (u64, u64)> {
    let mut holds: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for file in files {
        let text = std::fs::read_to_string(file).expect("the approvals file");
        for line in text.lines() {
            let r: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            assert_eq!(r["mti"], "0100", "magstripe traffic only: {line}");
            assert!(r["rrn"].is_string() && r["stan"].is_string(), "{line}");
            let account = r["account_id"]
                .as_str()
                .expect("a known account")
                .to_owned();
            let entry = holds.entry(account).or_default();
            if r["response_code"] == "00" {
                entry.0 += 1;
                entry.1 += r["amount_minor"].as_u64().expect("DE 4");
            }
        }
    }
    holds
}

/// The `snapshotter` binary, built once per test binary (a no-op when it is fresh).
pub fn snapshotter_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| built_bin("snapshotter", "snapshotter"))
        .clone()
}

impl DaemonConfig {
    /// Writes the file and starts `snapshotter run --config` on it (a [`Daemon`] too: the same
    /// admin endpoints, signals and exit codes).
    pub fn start_snapshotter(&self) -> Daemon {
        self.start_snapshotter_with_env(&[])
    }

    /// [`DaemonConfig::start_snapshotter`] with environment variables set (`NOTIFY_SOCKET`).
    pub fn start_snapshotter_with_env(&self, env: &[(&str, &str)]) -> Daemon {
        self.start_bin(snapshotter_bin(), env)
    }
}
