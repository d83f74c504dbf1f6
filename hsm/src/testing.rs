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

/// One published vector (`docs/cryptograms.md`, "Published vectors"; pyemv's own tests): card
/// PAN `1234567890123456`, PSN `00`, on [`TEST_IMK`].
pub struct PublishedVector {
    pub profile: Profile,
    /// 9F10, built from the published CVR/counters with the layouts of `Profile::mac_tail`:
    /// Visa `06 DKI CVN CVR(4)`, M/Chip `DKI CVN CVR(6) DAC(2) counters(8)`.
    pub iad: &'static str,
    pub arqc: &'static str,
    pub arc: &'static str,
    pub csu: &'static str,
    /// Tag 91 of the answer: ARPC ‖ ARC (method 1) or ARPC ‖ CSU (method 2).
    pub tag91: &'static str,
}

/// The PAN of every published vector.
pub const PUBLISHED_PAN: &str = "1234567890123456";

pub const PUBLISHED_VECTORS: &[PublishedVector] = &[
    PublishedVector {
        profile: Profile::VisaCvn10,
        iad: "06010A03A06010",
        arqc: "29CCA15AE665FA2E",
        arc: "3030",
        csu: "00000000",
        tag91: "28993816AFAE4AEB3030",
    },
    PublishedVector {
        profile: Profile::VisaCvn18,
        iad: "06011203A0B800",
        arqc: "7A788EA6B8A3E733",
        arc: "3030",
        csu: "00000000",
        tag91: "9AF514C100000000",
    },
    PublishedVector {
        profile: Profile::McCvn16,
        iad: "0110A000032200000000",
        arqc: "24CCF3DEE3158C70",
        arc: "0010",
        csu: "00000000",
        tag91: "73F6BBF389A6586C0010",
    },
    PublishedVector {
        profile: Profile::McCvn17,
        iad: "0111A00003220000000000000000000322FF",
        arqc: "EAE8A620A75648D8",
        arc: "0010",
        csu: "00000000",
        tag91: "29CF11FBDB9CA6500010",
    },
    PublishedVector {
        profile: Profile::McCvn20,
        iad: "0114A000032200000000",
        arqc: "CD29615D6452E70E",
        arc: "0010",
        csu: "00000000",
        tag91: "DFD0956606B68D640010",
    },
    PublishedVector {
        profile: Profile::McCvn21,
        iad: "0115A00003220000000000000000000322FF",
        arqc: "C30E54BE496CF5E5",
        arc: "0010",
        csu: "00000000",
        tag91: "4F51F9CC63CE8B3C0010",
    },
];

impl PublishedVector {
    /// The vector for `profile` (not every profile has one: visa-cvn22 has none).
    pub fn of(profile: Profile) -> &'static PublishedVector {
        PUBLISHED_VECTORS
            .iter()
            .find(|v| v.profile == profile)
            .unwrap_or_else(|| panic!("no published vector for {profile}"))
    }

    /// The DE 55 tags of the vector's transaction (Visa cases: 9F02 000000004000, 95
    /// 8000048000, 9A 191105, 9C 01, 9F37 52BF4585; Mastercard cases: 9F02 000000009999, 95
    /// 8000000000, 9A 209906, 9C 00, 9F37 ABCDEF12; all: 9F03 zero, 9F1A and 5F2A 0124, 82
    /// 1800, 9F36 001C).
    pub fn tags(&self) -> Vec<(u32, Vec<u8>)> {
        use crate::emv::tag;
        let h = |s: &str| hex::decode(s).expect("static hex");
        let visa = matches!(self.profile, Profile::VisaCvn10 | Profile::VisaCvn18);
        let pick = |v: &'static str, m: &'static str| h(if visa { v } else { m });
        vec![
            (tag::ARQC, h(self.arqc)),
            (tag::AMOUNT_AUTHORISED, pick("000000004000", "000000009999")),
            (tag::AMOUNT_OTHER, h("000000000000")),
            (tag::TERMINAL_COUNTRY, h("0124")),
            (tag::TVR, pick("8000048000", "8000000000")),
            (tag::CURRENCY, h("0124")),
            (tag::DATE, pick("191105", "209906")),
            (tag::TRANSACTION_TYPE, pick("01", "00")),
            (tag::UNPREDICTABLE_NUMBER, pick("52BF4585", "ABCDEF12")),
            (tag::AIP, h("1800")),
            (tag::ATC, h("001C")),
            (tag::IAD, h(self.iad)),
        ]
    }

    /// The tags as [`crate::EmvData`].
    pub fn emv(&self) -> crate::EmvData {
        let tags = self.tags();
        let refs: Vec<(u32, &[u8])> = tags.iter().map(|(t, v)| (*t, v.as_slice())).collect();
        crate::EmvData::from_tags(&refs).expect("the published vectors are complete")
    }

    /// The answer the published ARPC was computed for.
    pub fn response(&self) -> crate::AuthorisationResponse {
        let h = |s: &str| hex::decode(s).expect("static hex");
        crate::AuthorisationResponse {
            arc: h(self.arc).try_into().expect("2 bytes"),
            csu: h(self.csu).try_into().expect("4 bytes"),
        }
    }
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

#[allow(unsafe_code)]
fn env() -> &'static TestEnv {
    ENV.get_or_init(|| {
        let base = std::env::temp_dir();
        sweep_dead(&base);
        let dir = base.join(format!("hsm-testing-{}", std::process::id()));
        // Process ids wrap (32,768 on many hosts): a directory of this pid is a dead process's
        // (this runs once per process), and its tokens would carry labels this process is about
        // to use. Start empty.
        let _ = std::fs::remove_dir_all(&dir);
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
        {
            // 0600, as the verifier demands of a PIN file.
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&pin_file)
                .and_then(|mut f| f.write_all(format!("{TEST_USER_PIN}\n").as_bytes()))
                .expect("write the PIN file");
        }
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
