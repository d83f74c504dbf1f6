//! Test harness (feature `testing`): a private SoftHSM2 token per test, in a directory private to
//! the test process, with the published test keys. Usable by the tests of any crate:
//!
//! ```no_run
//! let token = hsm::testing::TestToken::with_test_keys();
//! let verifier = hsm::pkcs11::Pkcs11Verifier::new(token.config(hsm::testing::test_key_sets())).unwrap();
//! ```
//!
//! How it shares the library: SoftHSM reads `SOFTHSM2_CONF` once, at `C_Initialize`, and its
//! state is process-global. So the first `TestToken` of a process writes one configuration
//! (token directory `$TMPDIR/hsm-testing-<pid>/tokens`), sets `SOFTHSM2_CONF` before the library
//! is loaded, and every later `TestToken` initialises one more token in that directory through
//! PKCS#11 itself (`C_InitToken` on SoftHSM's free slot), with a unique label. Tests running in
//! parallel threads therefore each have their own token and never see another test's keys.
//! Clean-up: the directory of a finished test process is removed by the next process that starts
//! the harness (Rust runs no destructor for statics); a test process never deletes a token file
//! SoftHSM still has open.
//!
//! Test-only: it panics with a message on any set-up failure (the test cannot run without it).
//! Requires `softhsm2` (`apt-get install -y softhsm2`); `HSM_PKCS11_MODULE` overrides the path.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use cryptoki::object::Attribute;
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use zeroize::Zeroizing;

use crate::ceremony::AdminSession;
use crate::pkcs11::{Module, Pkcs11Config, SOFTHSM2_MODULE, login_user, p11_error};
use crate::{KeySet, KeySetId, Profile, Step};

/// The issuer master key of the published EMV test vectors (pyemv's tests, EMV book examples).
/// Obviously a test key: it is printed in public documentation. Never use it for real cards.
pub const TEST_IMK: [u8; 16] = [
    0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF, 0xFE, 0xDC, 0xBA, 0x98, 0x76, 0x54, 0x32, 0x10,
];
/// Its label in a test token.
pub const TEST_IMK_LABEL: &str = "test-imk-ac";
/// The PINs of every test token.
pub const TEST_USER_PIN: &str = "1234";
pub const TEST_SO_PIN: &str = "123456";

/// One key set per profile, all on the test IMK, named after the profile (`visa-cvn18`).
pub fn test_key_sets() -> Vec<KeySet> {
    Profile::ALL
        .iter()
        .map(|p| KeySet {
            id: KeySetId(p.name().to_owned()),
            key_label: TEST_IMK_LABEL.to_owned(),
            profile: *p,
        })
        .collect()
}

struct TestEnv {
    dir: PathBuf,
    module: Arc<Module>,
}

static ENV: OnceLock<TestEnv> = OnceLock::new();
static CREATE: Mutex<()> = Mutex::new(());
static COUNTER: AtomicU32 = AtomicU32::new(0);

fn module_path() -> PathBuf {
    std::env::var_os("HSM_PKCS11_MODULE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(SOFTHSM2_MODULE))
}

fn env() -> &'static TestEnv {
    ENV.get_or_init(|| {
        let base = std::env::temp_dir();
        sweep_dead(&base);
        let dir = base.join(format!("hsm-testing-{}", std::process::id()));
        let tokens = dir.join("tokens");
        std::fs::create_dir_all(&tokens).expect("create the test token directory");
        let conf = dir.join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
                tokens.display()
            ),
        )
        .expect("write the SoftHSM2 configuration");
        let path = module_path();
        assert!(
            path.exists(),
            "PKCS#11 module {} missing: apt-get install -y softhsm2 (or set HSM_PKCS11_MODULE)",
            path.display()
        );
        // SAFETY: set once, before this process loads the library (which reads it in
        // C_Initialize, just below). Rust's own environment accesses are serialised with this
        // call; no C code of this process reads SOFTHSM2_CONF concurrently.
        unsafe { std::env::set_var("SOFTHSM2_CONF", &conf) };
        let module = Module::get(&path).unwrap_or_else(|e| panic!("load {}: {e}", path.display()));
        TestEnv { dir, module }
    })
}

/// Removes the directories of test processes that no longer run.
fn sweep_dead(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("hsm-testing-"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// A private, initialised SoftHSM2 token with a user PIN.
pub struct TestToken {
    module: Arc<Module>,
    label: String,
    pin_file: PathBuf,
}

impl TestToken {
    /// A new empty token.
    pub fn new() -> TestToken {
        let env = env();
        let _one = CREATE.lock().unwrap_or_else(|e| e.into_inner());
        let label = format!(
            "t{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        {
            let ctx = env.module.read();
            let free = ctx
                .get_all_slots()
                .expect("slot list")
                .into_iter()
                .find(|s| ctx.get_token_info(*s).is_ok_and(|i| !i.token_initialized()))
                .expect("SoftHSM always offers one free slot");
            let so_pin = AuthPin::from(TEST_SO_PIN);
            ctx.init_token(free, &so_pin, &label)
                .map_err(|e| p11_error(&label, Step::InitToken, e))
                .expect("C_InitToken");
            // SoftHSM moves an initialised token to a new slot id: find it by label.
            let slot = env.module.find_slot(&ctx, &label).expect("new token");
            let s = ctx.open_rw_session(slot).expect("open SO session");
            s.login(UserType::So, Some(&so_pin)).expect("SO login");
            s.init_pin(&AuthPin::from(TEST_USER_PIN))
                .expect("C_InitPIN");
            s.logout().expect("SO logout");
        }
        let pin_file = env.dir.join(format!("{label}.pin"));
        std::fs::write(&pin_file, format!("{TEST_USER_PIN}\n")).expect("write the PIN file");
        TestToken {
            module: env.module.clone(),
            label,
            pin_file,
        }
    }

    /// A new token holding [`TEST_IMK`] under [`TEST_IMK_LABEL`].
    pub fn with_test_keys() -> TestToken {
        let t = TestToken::new();
        t.import_key(TEST_IMK_LABEL, &TEST_IMK);
        t
    }

    /// Imports a key with the production template (as the ceremony does); returns its KCV.
    pub fn import_key(&self, label: &str, value: &[u8; 16]) -> [u8; 3] {
        self.admin()
            .import_key(label, &Zeroizing::new(*value))
            .unwrap_or_else(|e| panic!("import {label}: {e}"))
    }

    pub fn admin(&self) -> AdminSession {
        AdminSession::open(self.module.clone(), &self.label, TEST_USER_PIN)
            .unwrap_or_else(|e| panic!("admin session on {}: {e}", self.label))
    }

    pub fn module(&self) -> &Arc<Module> {
        &self.module
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// A file holding the user PIN (for tools that read the PIN from a file).
    pub fn pin_file(&self) -> &Path {
        &self.pin_file
    }

    /// The SoftHSM2 configuration file of this process's test tokens.
    pub fn softhsm2_conf(&self) -> PathBuf {
        env().dir.join("softhsm2.conf")
    }

    /// A backend configuration for this token: pool of 1, 1 s timeout, default recycling.
    pub fn config(&self, key_sets: Vec<KeySet>) -> Pkcs11Config {
        Pkcs11Config {
            module_path: self.module.path().to_owned(),
            token_label: self.label.clone(),
            user_pin: Zeroizing::new(TEST_USER_PIN.to_owned()),
            pool_size: 1,
            op_timeout: Duration::from_secs(1),
            recycle_after_objects: Pkcs11Config::DEFAULT_RECYCLE_AFTER_OBJECTS,
            key_sets,
        }
    }

    /// How many session objects (TOKEN false) this process has on the token: the issuer key
    /// copies of the pools plus any derived key still alive.
    pub fn count_session_objects(&self) -> usize {
        let ctx = self.module.read();
        let slot = self.module.find_slot(&ctx, &self.label).expect("slot");
        let s = ctx.open_ro_session(slot).expect("open session");
        login_user(&s, &AuthPin::from(TEST_USER_PIN)).expect("login");
        s.find_objects(&[Attribute::Token(false)])
            .expect("find session objects")
            .len()
    }
}

impl Default for TestToken {
    fn default() -> Self {
        TestToken::new()
    }
}
