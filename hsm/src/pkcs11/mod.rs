//! The PKCS#11 backend of [`CryptogramVerifier`] (SoftHSM2 in tests, any token with
//! `CKM_DES3_ECB_ENCRYPT_DATA`, `CKM_DES3_CBC` and `CKM_DES3_ECB` in production).
//!
//! The chain of `emv-cryptograms-pkcs11.md`: ICC master key, session key and single-DES MAC key
//! are `C_DeriveKey(CKM_DES3_ECB_ENCRYPT_DATA)` session objects (sensitive, non-extractable),
//! the retail MAC is CBC with the single-DES key plus one 3DES-ECB block, the ARQC is compared on
//! the host in constant time, and every derived key is destroyed once its last use is over.
//!
//! Design:
//! * One [`Module`] per library path and process (a PKCS#11 library has process-global state:
//!   two `C_Initialize` would collide). It owns the `pkcs11::Ctx` behind a read/write lock:
//!   every operation holds the read side for its calls; [`Module::recycle`] takes the write side.
//! * **Memory bound.** SoftHSM 2.6 keeps every session object ever created until `C_Finalize`
//!   (about 290 bytes each; closing the session does not free them: measured, see docs/hsm.md).
//!   The module counts derived objects and, past `recycle_after_objects`, finalises and
//!   re-initialises the library between two operations (a pause of a few ms). Sessions carry the
//!   module epoch they were opened in; a stale one is dropped, never closed (its handle number may
//!   belong to a new session), and replaced on next use.
//! * **Pool.** Up to `pool_size` sessions, each logged in (once per token and epoch: login is
//!   per application) and holding a session copy (`C_CopyObject`, TOKEN false) of every issuer
//!   key, because a token object costs SoftHSM a file re-read on each use.
//! * **Timeout.** A caller waits at most `op_timeout` for a session. A PKCS#11 call already in
//!   progress cannot be cancelled (`C_CancelFunction` is a legacy no-op), so the hard bound on a
//!   hung HSM is the authorizer's own timeout around the blocking call.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as P11Error, Rv, RvError};
use cryptoki::mechanism::vendor_defined::VendorDefinedMechanism;
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use cryptoki_sys::*;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::emv::{self, ArpcKey, ArpcMethod, AuthorisationResponse, IssuerAuthData, Profile};
use crate::{
    ArpcStep, ArqcOutcome, CardData, CryptogramVerifier, EmvData, HsmError, KeySet, KeySetId,
    PendingArpc, Step,
};

/// Debian's SoftHSM2 module.
pub const SOFTHSM2_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// A loaded, initialised PKCS#11 library, shared by every user in the process.
pub struct Module {
    path: PathBuf,
    ctx: RwLock<Pkcs11>,
    /// Incremented by every re-initialisation: handles of an older epoch are meaningless.
    epoch: AtomicU64,
    /// Session objects created since the last `C_Initialize` (SoftHSM frees them only then).
    objects_since_init: AtomicU64,
    recycle_after_objects: AtomicU64,
    recycles: AtomicU64,
    recycle_lock: Mutex<()>,
}

static MODULES: Mutex<Vec<Arc<Module>>> = Mutex::new(Vec::new());

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these locks leaves no broken invariant worth refusing service for.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn init_args() -> CInitializeArgs {
    // OS locking: the library must be thread-safe, the pool calls it from several threads.
    // (SoftHSM disables its locks entirely when given no arguments.)
    CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)
}

impl Module {
    /// The process-wide module for `path`, loaded and initialised (OS locking) on first use.
    /// SoftHSM reads `SOFTHSM2_CONF` here, at the first `C_Initialize`.
    pub fn get(path: &Path) -> Result<Arc<Module>, HsmError> {
        let mut all = lock(&MODULES);
        if let Some(m) = all.iter().find(|m| m.path == path) {
            return Ok(m.clone());
        }
        let module_err = |step, e: P11Error| HsmError::Module {
            step,
            detail: format!("{}: {e}", path.display()),
        };
        let ctx = Pkcs11::new(path).map_err(|e| module_err(Step::LoadModule, e))?;
        ctx.initialize(init_args())
            .map_err(|e| p11_error("(module)", Step::Initialize, e))?;
        let m = Arc::new(Module {
            path: path.to_owned(),
            ctx: RwLock::new(ctx),
            epoch: AtomicU64::new(0),
            objects_since_init: AtomicU64::new(0),
            recycle_after_objects: AtomicU64::new(u64::MAX),
            recycles: AtomicU64::new(0),
            recycle_lock: Mutex::new(()),
        });
        all.push(m.clone());
        Ok(m)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Shared access to the library for one operation. Holds off [`Module::recycle`].
    pub fn read(&self) -> RwLockReadGuard<'_, Pkcs11> {
        self.ctx.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The current epoch; stable while a [`Module::read`] guard is held.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    pub fn objects_since_init(&self) -> u64 {
        self.objects_since_init.load(Ordering::Relaxed)
    }

    /// How many times the library was re-initialised to release SoftHSM's dead objects.
    pub fn recycles(&self) -> u64 {
        self.recycles.load(Ordering::Relaxed)
    }

    /// Lowers the object count past which the module is re-initialised (the smallest request of
    /// all users wins). `u64::MAX` (the default) never recycles.
    pub fn limit_objects(&self, max_objects: u64) {
        self.recycle_after_objects
            .fetch_min(max_objects, Ordering::Relaxed);
    }

    fn note_objects(&self, n: u64) {
        self.objects_since_init.fetch_add(n, Ordering::Relaxed);
    }

    /// Recycles when the object count is over the limit and nobody else is already at it.
    /// Call with no read guard held.
    pub fn recycle_if_due(&self) -> Result<bool, HsmError> {
        let limit = self.recycle_after_objects.load(Ordering::Relaxed);
        if self.objects_since_init() < limit {
            return Ok(false);
        }
        let Ok(_one) = self.recycle_lock.try_lock() else {
            return Ok(false);
        };
        if self.objects_since_init() < limit {
            return Ok(false);
        }
        self.recycle().map(|_| true)
    }

    /// `C_Finalize` then `C_Initialize`: frees every session object SoftHSM kept, closes every
    /// session of every user of this module (they reopen on next use). Waits for operations in
    /// progress; blocks new ones until done. Returns how long the library was unavailable.
    pub fn recycle(&self) -> Result<Duration, HsmError> {
        let ctx = self.ctx.write().unwrap_or_else(|e| e.into_inner());
        let started = Instant::now();
        // The epoch moves first: whatever happens next, no old handle is used again.
        self.epoch.fetch_add(1, Ordering::AcqRel);
        // `finalize` consumes a handle to the library; the library stays loaded (other handles,
        // this one included, keep it) and is initialised again through the same handle.
        ctx.clone()
            .finalize()
            .map_err(|e| p11_error("(module)", Step::Finalize, e))?;
        ctx.initialize(init_args())
            .map_err(|e| p11_error("(module)", Step::Initialize, e))?;
        self.objects_since_init.store(0, Ordering::Relaxed);
        self.recycles.fetch_add(1, Ordering::Relaxed);
        Ok(started.elapsed())
    }

    /// The slot holding the initialised token labelled `label`.
    pub fn find_slot(&self, ctx: &Pkcs11, label: &str) -> Result<Slot, HsmError> {
        let slots = ctx
            .get_slots_with_initialized_token()
            .map_err(|e| p11_error(label, Step::FindSlot, e))?;
        for slot in slots {
            let info = ctx
                .get_token_info(slot)
                .map_err(|e| p11_error(label, Step::FindSlot, e))?;
            if info.label().trim_end() == label {
                return Ok(slot);
            }
        }
        Err(HsmError::TokenNotFound {
            label: label.to_owned(),
            module: self.path.display().to_string(),
        })
    }
}

/// An error from the library, naming the key label and the step, with the CKR code.
pub fn p11_error(key_label: &str, step: Step, e: P11Error) -> HsmError {
    match e {
        P11Error::Pkcs11(rv, _function) => {
            let (rv, rv_name) = rv_code(rv);
            HsmError::Pkcs11 {
                key_label: key_label.to_owned(),
                step,
                rv,
                rv_name,
            }
        }
        other => HsmError::Module {
            step,
            detail: format!("key {key_label:?}: {other}"),
        },
    }
}

/// The CKR code and name of a cryptoki error (cryptoki keeps only an enum).
pub fn rv_code(rv: RvError) -> (u64, &'static str) {
    macro_rules! known {
        ($($c:ident),* $(,)?) => { [$(($c, stringify!($c))),*] };
    }
    let table = known![
        CKR_CANCEL,
        CKR_HOST_MEMORY,
        CKR_SLOT_ID_INVALID,
        CKR_GENERAL_ERROR,
        CKR_FUNCTION_FAILED,
        CKR_ARGUMENTS_BAD,
        CKR_ATTRIBUTE_READ_ONLY,
        CKR_ATTRIBUTE_SENSITIVE,
        CKR_ATTRIBUTE_TYPE_INVALID,
        CKR_ATTRIBUTE_VALUE_INVALID,
        CKR_DATA_INVALID,
        CKR_DATA_LEN_RANGE,
        CKR_DEVICE_ERROR,
        CKR_DEVICE_MEMORY,
        CKR_DEVICE_REMOVED,
        CKR_FUNCTION_NOT_SUPPORTED,
        CKR_KEY_HANDLE_INVALID,
        CKR_KEY_SIZE_RANGE,
        CKR_KEY_TYPE_INCONSISTENT,
        CKR_KEY_FUNCTION_NOT_PERMITTED,
        CKR_KEY_UNEXTRACTABLE,
        CKR_MECHANISM_INVALID,
        CKR_MECHANISM_PARAM_INVALID,
        CKR_OBJECT_HANDLE_INVALID,
        CKR_OPERATION_ACTIVE,
        CKR_OPERATION_NOT_INITIALIZED,
        CKR_PIN_INCORRECT,
        CKR_PIN_LOCKED,
        CKR_SESSION_CLOSED,
        CKR_SESSION_COUNT,
        CKR_SESSION_HANDLE_INVALID,
        CKR_SESSION_READ_ONLY,
        CKR_TEMPLATE_INCOMPLETE,
        CKR_TEMPLATE_INCONSISTENT,
        CKR_TOKEN_NOT_PRESENT,
        CKR_TOKEN_NOT_RECOGNIZED,
        CKR_USER_ALREADY_LOGGED_IN,
        CKR_USER_NOT_LOGGED_IN,
        CKR_USER_PIN_NOT_INITIALIZED,
        CKR_USER_TYPE_INVALID,
        CKR_BUFFER_TOO_SMALL,
        CKR_CRYPTOKI_NOT_INITIALIZED,
        CKR_CRYPTOKI_ALREADY_INITIALIZED,
    ];
    table
        .into_iter()
        .find(|(c, _)| matches!(Rv::from(*c), Rv::Error(e) if e == rv))
        // CK_RV is c_ulong: u64 here, u32 on some targets.
        .map(|(c, n)| {
            #[allow(clippy::useless_conversion)]
            let code = u64::from(c);
            (code, n)
        })
        .unwrap_or((u64::MAX, "unlisted CKR code"))
}

/// `C_Login` as the user; already logged in (login is per application) is fine.
pub fn login_user(session: &Session, pin: &AuthPin) -> Result<(), P11Error> {
    match session.login(UserType::User, Some(pin)) {
        Err(P11Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
        r => r,
    }
}

// ---------------------------------------------------------------------------------------------
// Raw calls. Everything below the pool is plain functions over (session, handles).
// ---------------------------------------------------------------------------------------------

/// `CK_KEY_DERIVATION_STRING_DATA`, the parameter of `CKM_DES3_ECB_ENCRYPT_DATA`.
#[repr(C)]
struct KeyDerivationStringData {
    data: *const u8,
    len: CK_ULONG,
}

/// `C_DeriveKey(base, CKM_DES3_ECB_ENCRYPT_DATA, data)`: a new two-key 3DES session object whose
/// value is 3DES-ECB(base, data), sensitive and non-extractable.
///
/// The one workaround of the binding: cryptoki 0.12 has no `Mechanism` for
/// `CKM_DES3_ECB_ENCRYPT_DATA`, and `MechanismType::new_vendor_defined` refuses codes below
/// `CKM_VENDOR_DEFINED`, yet its `VendorDefinedMechanism` passes any `MechanismType` and
/// parameter through unchanged. So the standard code is wrapped as a `MechanismType` here
/// ([`des3_ecb_encrypt_data`]) and sent as a "vendor" mechanism. The parameter points into
/// `params`/`data`, both alive for the whole call and not kept by the library after it.
/// `may_derive`/`may_encrypt` give the new key only the uses the profile needs.
pub fn derive_des2(
    session: &Session,
    base: ObjectHandle,
    data: &[u8; 16],
    may_derive: bool,
    may_encrypt: bool,
) -> Result<ObjectHandle, P11Error> {
    let params = KeyDerivationStringData {
        data: data.as_ptr(),
        len: data.len() as CK_ULONG,
    };
    let mechanism = Mechanism::VendorDefined(VendorDefinedMechanism::new(
        des3_ecb_encrypt_data(),
        Some(&params),
    ));
    // No CKA_VALUE_LEN: DES key types refuse it. PRIVATE false: a session object is visible to
    // this process only anyway, and SoftHSM then skips encrypting it in memory (a third faster).
    let template = [
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::DES2),
        Attribute::Token(false),
        Attribute::Private(false),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Encrypt(may_encrypt),
        Attribute::Decrypt(false),
        Attribute::Derive(may_derive),
    ];
    session.derive_key(&mechanism, base, &template)
}

/// `CKM_DES3_ECB_ENCRYPT_DATA` as a cryptoki `MechanismType` (see [`derive_des2`]).
pub fn des3_ecb_encrypt_data() -> MechanismType {
    // SAFETY: `MechanismType` is `#[repr(transparent)]` over `CK_MECHANISM_TYPE` (cryptoki
    // documents it so that slices of both have the same layout) and every value is valid for
    // it: cryptoki's own `TryFrom` is only a whitelist of names.
    unsafe { std::mem::transmute::<CK_MECHANISM_TYPE, MechanismType>(CKM_DES3_ECB_ENCRYPT_DATA) }
}

/// 3DES-CBC with a zero IV over whole blocks; returns the last ciphertext block.
fn cbc_last_block(session: &Session, key: ObjectHandle, data: &[u8]) -> Result<[u8; 8], P11Error> {
    let out = session.encrypt(&Mechanism::Des3Cbc([0u8; 8]), key, data)?;
    let last = out.len().checked_sub(8).ok_or(P11Error::Pkcs11(
        RvError::DataLenRange,
        cryptoki::context::Function::Encrypt,
    ))?;
    let mut block = [0u8; 8];
    block.copy_from_slice(&out[last..]);
    Ok(block)
}

/// 3DES-ECB of one block.
fn ecb_block(session: &Session, key: ObjectHandle, block: &[u8; 8]) -> Result<[u8; 8], P11Error> {
    let out = session.encrypt(&Mechanism::Des3Ecb, key, block)?;
    out.as_slice()
        .try_into()
        .map_err(|_| P11Error::Pkcs11(RvError::DataLenRange, cryptoki::context::Function::Encrypt))
}

/// ISO/IEC 9797-1 algorithm 3 (retail MAC) over padded `data`, without single DES: CBC with
/// `k_ll` (K_L‖K_L, which *is* single DES K_L) over all blocks but the last, then 3DES-ECB with
/// `k` over (H xor last block). Returns `(step, error)` so the caller names the failing step.
pub fn retail_mac(
    session: &Session,
    k_ll: ObjectHandle,
    k: ObjectHandle,
    data: &[u8],
) -> Result<[u8; 8], (Step, P11Error)> {
    debug_assert!(
        !data.is_empty() && data.len().is_multiple_of(8),
        "MAC input not padded"
    );
    let split = data.len().saturating_sub(8);
    let mut h = if split == 0 {
        [0u8; 8]
    } else {
        cbc_last_block(session, k_ll, &data[..split]).map_err(|e| (Step::MacChain, e))?
    };
    for (hb, db) in h.iter_mut().zip(&data[split..]) {
        *hb ^= db;
    }
    ecb_block(session, k, &h).map_err(|e| (Step::MacFinal, e))
}

// ---------------------------------------------------------------------------------------------
// The key chain of one card and transaction.
// ---------------------------------------------------------------------------------------------

/// The derived session objects of one transaction.
#[derive(Default)]
struct Derived {
    /// ICC master key (for CVN 10 also the MAC key).
    mk: Option<ObjectHandle>,
    /// AC session key (absent for CVN 10).
    sk: Option<ObjectHandle>,
    /// Single-DES MAC key K_L‖K_L of the MAC key.
    ll: Option<ObjectHandle>,
}

impl Derived {
    /// The 3DES key of the MAC and of method-2 ARPCs.
    fn mac_key(&self) -> Option<ObjectHandle> {
        self.sk.or(self.mk)
    }
}

/// The inputs of a derivation, all public data (kept for a re-derivation after a recycle).
#[derive(Clone)]
struct Plan {
    profile: Profile,
    mk_data: [u8; 16],
    sk_data: Option<[u8; 16]>,
    arqc: [u8; 8],
}

impl Plan {
    fn new(profile: Profile, card: &CardData, emv: &EmvData) -> Plan {
        let y = card.icc_mk_y(profile.icc_mk_option());
        Plan {
            profile,
            mk_data: emv::icc_mk_data(&y),
            sk_data: emv.session_key_data(profile),
            arqc: emv.arqc,
        }
    }
}

/// Derives MK, SK and K_L‖K_L. On error, destroys what it made and reports whether all destroys
/// succeeded (`false`: close the session rather than reuse it).
fn derive_chain(
    session: &Session,
    imk: ObjectHandle,
    plan: &Plan,
    label: &str,
) -> Result<Derived, (HsmError, bool)> {
    let profile = plan.profile;
    let mut d = Derived::default();
    let mk_encrypts = matches!(
        profile.arpc_method(),
        ArpcMethod::Method1(ArpcKey::IccMaster)
    ) || plan.sk_data.is_none();
    let fail = |d: &mut Derived, step, e| {
        let clean = destroy(session, d).is_ok();
        (p11_error(label, step, e), clean)
    };
    let mk = derive_des2(session, imk, &plan.mk_data, true, mk_encrypts)
        .map_err(|e| fail(&mut Derived::default(), Step::DeriveIccMasterKey, e))?;
    d.mk = Some(mk);
    match plan.sk_data {
        Some(sk_data) => {
            d.sk = Some(
                derive_des2(session, mk, &sk_data, false, true)
                    .map_err(|e| fail(&mut d, Step::DeriveSessionKey, e))?,
            );
            d.ll = Some(
                derive_des2(session, mk, &emv::left_twice(&sk_data), false, true)
                    .map_err(|e| fail(&mut d, Step::DeriveMacKey, e))?,
            );
        }
        None => {
            // SK = MK: its left half is 3DES(IMK, Y), so K_L‖K_L comes from the IMK with Y‖Y.
            d.ll = Some(
                derive_des2(session, imk, &emv::left_twice(&plan.mk_data), false, true)
                    .map_err(|e| fail(&mut d, Step::DeriveMacKey, e))?,
            );
        }
    }
    Ok(d)
}

/// Destroys every present handle; the first failure is returned after trying all.
fn destroy(session: &Session, d: &mut Derived) -> Result<(), P11Error> {
    let mut result = Ok(());
    for h in [d.mk.take(), d.sk.take(), d.ll.take()]
        .into_iter()
        .flatten()
    {
        if let Err(e) = session.destroy_object(h)
            && result.is_ok()
        {
            result = Err(e);
        }
    }
    result
}

/// Keeps only the keys the profile's ARPC needs; returns the others.
fn keep_for_arpc(profile: Profile, d: &mut Derived) -> Derived {
    let mut drop = Derived::default();
    match profile.arpc_method() {
        ArpcMethod::Method1(ArpcKey::IccMaster) => {
            drop.sk = d.sk.take();
            drop.ll = d.ll.take();
        }
        ArpcMethod::Method1(ArpcKey::Session) => {
            if d.sk.is_some() {
                drop.mk = d.mk.take();
            }
            drop.ll = d.ll.take();
        }
        ArpcMethod::Method2 => {
            if d.sk.is_some() {
                drop.mk = d.mk.take();
            }
        }
    }
    drop
}

fn missing() -> (Step, P11Error) {
    (
        Step::ArpcEncrypt,
        P11Error::Pkcs11(
            RvError::KeyHandleInvalid,
            cryptoki::context::Function::Encrypt,
        ),
    )
}

fn compute_arpc(
    session: &Session,
    d: &Derived,
    plan: &Plan,
    response: &AuthorisationResponse,
) -> Result<IssuerAuthData, (Step, P11Error)> {
    match plan.profile.arpc_method() {
        ArpcMethod::Method1(which) => {
            let key = match which {
                ArpcKey::IccMaster => d.mk,
                ArpcKey::Session => d.mac_key(),
            }
            .ok_or_else(missing)?;
            let mut block = plan.arqc;
            block[0] ^= response.arc[0];
            block[1] ^= response.arc[1];
            let arpc = ecb_block(session, key, &block).map_err(|e| (Step::ArpcEncrypt, e))?;
            Ok(IssuerAuthData::method1(arpc, response.arc))
        }
        ArpcMethod::Method2 => {
            let mut data = Vec::with_capacity(16);
            data.extend_from_slice(&plan.arqc);
            data.extend_from_slice(&response.csu);
            emv::pad(&mut data, emv::Padding::Method2);
            let (ll, k) = (d.ll.ok_or_else(missing)?, d.mac_key().ok_or_else(missing)?);
            let mac = retail_mac(session, ll, k, &data)?;
            let mut arpc = [0u8; 4];
            arpc.copy_from_slice(&mac[..4]);
            Ok(IssuerAuthData::method2(arpc, response.csu))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration, pool and the verifier.
// ---------------------------------------------------------------------------------------------

/// The backend's configuration. The PIN comes from a 0600 file or a systemd credential, never
/// from argv or the environment (see docs/hsm.md).
#[derive(Clone)]
pub struct Pkcs11Config {
    pub module_path: PathBuf,
    pub token_label: String,
    pub user_pin: Zeroizing<String>,
    /// Sessions in the pool. SoftHSM serialises, so 1–2 is enough for it; size it to the HSM.
    pub pool_size: usize,
    /// Longest wait for a free session.
    pub op_timeout: Duration,
    /// Re-initialise the library after this many derived session objects (SoftHSM keeps about
    /// 290 bytes each until then).
    pub recycle_after_objects: u64,
    pub key_sets: Vec<KeySet>,
}

impl std::fmt::Debug for Pkcs11Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Config")
            .field("module_path", &self.module_path)
            .field("token_label", &self.token_label)
            .field("user_pin", &"<redacted>")
            .field("pool_size", &self.pool_size)
            .field("op_timeout", &self.op_timeout)
            .field("recycle_after_objects", &self.recycle_after_objects)
            .field("key_sets", &self.key_sets)
            .finish()
    }
}

impl Pkcs11Config {
    pub const DEFAULT_RECYCLE_AFTER_OBJECTS: u64 = 60_000;

    /// Reads the PIN from a file (first line, trailing newline removed).
    pub fn read_pin_file(path: &Path) -> Result<Zeroizing<String>, HsmError> {
        let raw = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| HsmError::Module {
            step: Step::Login,
            detail: format!("cannot read PIN file {}: {e}", path.display()),
        })?);
        Ok(Zeroizing::new(
            raw.lines().next().unwrap_or_default().to_owned(),
        ))
    }
}

/// One pooled session: the epoch it belongs to, and its copies of the issuer keys (indexed like
/// `Inner::labels`; `None` when the token has no key with that label). Opened "no drop": it is
/// closed explicitly, and only while its epoch is current.
struct PooledSession {
    session: Session,
    epoch: u64,
    issuer_keys: Vec<Option<ObjectHandle>>,
}

struct PoolState {
    idle: Vec<PooledSession>,
    /// Sessions open or being opened (idle + leased).
    open: usize,
}

struct Inner {
    module: Arc<Module>,
    token_label: String,
    pin: AuthPin,
    pool_size: usize,
    op_timeout: Duration,
    /// Distinct issuer key labels; key sets point into it.
    labels: Vec<String>,
    key_sets: HashMap<KeySetId, (usize, Profile)>,
    pool: Mutex<PoolState>,
    available: Condvar,
    /// (epoch, slot): slot ids may change when the library is re-initialised.
    slot: Mutex<(u64, Slot)>,
}

/// [`CryptogramVerifier`] over a PKCS#11 token.
#[derive(Clone)]
pub struct Pkcs11Verifier {
    inner: Arc<Inner>,
}

/// A session taken from the pool; goes back on drop (or is closed if `broken`).
struct Lease {
    inner: Arc<Inner>,
    session: Option<PooledSession>,
    broken: bool,
}

impl Pkcs11Verifier {
    /// Loads the module, finds the token and opens one session to check PIN and keys.
    pub fn new(config: Pkcs11Config) -> Result<Pkcs11Verifier, HsmError> {
        let module = Module::get(&config.module_path)?;
        module.limit_objects(config.recycle_after_objects);
        let mut labels: Vec<String> = Vec::new();
        let mut key_sets = HashMap::new();
        for ks in &config.key_sets {
            let idx = match labels.iter().position(|l| *l == ks.key_label) {
                Some(i) => i,
                None => {
                    labels.push(ks.key_label.clone());
                    labels.len() - 1
                }
            };
            key_sets.insert(ks.id.clone(), (idx, ks.profile));
        }
        let slot = {
            let ctx = module.read();
            (module.epoch(), module.find_slot(&ctx, &config.token_label)?)
        };
        let inner = Arc::new(Inner {
            module,
            token_label: config.token_label,
            pin: AuthPin::from(config.user_pin.as_str()),
            pool_size: config.pool_size.max(1),
            op_timeout: config.op_timeout,
            labels,
            key_sets,
            pool: Mutex::new(PoolState {
                idle: Vec::new(),
                open: 0,
            }),
            available: Condvar::new(),
            slot: Mutex::new(slot),
        });
        let v = Pkcs11Verifier { inner };
        // Fail at start-up, not at the first card: PIN, token and every issuer key.
        {
            let mut lease = v.inner.checkout()?;
            let ctx = v.inner.module.read();
            v.inner.ensure_fresh(&ctx, &mut lease)?;
            let keys = &lease.session.as_ref().expect("fresh session").issuer_keys;
            if let Some(i) = keys.iter().position(Option::is_none) {
                return Err(HsmError::KeyNotFound {
                    label: v.inner.labels[i].clone(),
                });
            }
        }
        Ok(v)
    }

    pub fn module(&self) -> &Arc<Module> {
        &self.inner.module
    }

    /// Sessions currently open by this verifier (idle or leased).
    pub fn open_sessions(&self) -> usize {
        lock(&self.inner.pool).open
    }

    /// Closes every idle session (they reopen on demand).
    pub fn close_idle_sessions(&self) {
        let idle = std::mem::take(&mut lock(&self.inner.pool).idle);
        let n = idle.len();
        {
            let _ctx = self.inner.module.read();
            let epoch = self.inner.module.epoch();
            for s in idle {
                if s.epoch == epoch {
                    let _ = s.session.close();
                }
            }
        }
        lock(&self.inner.pool).open -= n;
        self.inner.available.notify_all();
    }
}

impl Inner {
    fn checkout(self: &Arc<Inner>) -> Result<Lease, HsmError> {
        let deadline = Instant::now() + self.op_timeout;
        let mut st = lock(&self.pool);
        loop {
            if let Some(s) = st.idle.pop() {
                return Ok(Lease {
                    inner: self.clone(),
                    session: Some(s),
                    broken: false,
                });
            }
            if st.open < self.pool_size {
                st.open += 1;
                return Ok(Lease {
                    inner: self.clone(),
                    session: None,
                    broken: false,
                });
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(HsmError::Timeout {
                    waited_ms: self.op_timeout.as_millis() as u64,
                    pool_size: self.pool_size,
                });
            }
            st = self
                .available
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Makes sure the lease holds a session of the current epoch (opening one if needed).
    /// Call with the read guard held, so the epoch cannot move meanwhile.
    fn ensure_fresh(&self, ctx: &Pkcs11, lease: &mut Lease) -> Result<(), HsmError> {
        let epoch = self.module.epoch();
        if lease.session.as_ref().is_some_and(|s| s.epoch == epoch) {
            return Ok(());
        }
        // A stale session died with the old epoch: forget it (it is "no drop"), never close its
        // handle, which may now belong to somebody else's session.
        lease.session = None;
        lease.session = Some(self.open_session(ctx, epoch)?);
        Ok(())
    }

    fn slot(&self, ctx: &Pkcs11, epoch: u64) -> Result<Slot, HsmError> {
        let mut s = lock(&self.slot);
        if s.0 != epoch {
            *s = (epoch, self.module.find_slot(ctx, &self.token_label)?);
        }
        Ok(s.1)
    }

    fn open_session(&self, ctx: &Pkcs11, epoch: u64) -> Result<PooledSession, HsmError> {
        let label = &self.token_label;
        let slot = self.slot(ctx, epoch)?;
        let session = ctx
            .open_ro_session_no_drop(slot)
            .map_err(|e| p11_error(label, Step::OpenSession, e))?;
        let mut issuer_keys = Vec::with_capacity(self.labels.len());
        let filled = (|| {
            login_user(&session, &self.pin).map_err(|e| p11_error(label, Step::Login, e))?;
            for key_label in &self.labels {
                let copy = match find_token_key(&session, key_label)? {
                    None => None,
                    Some(h) => Some(
                        session
                            .copy_object(h, &[Attribute::Token(false)])
                            .map_err(|e| p11_error(key_label, Step::CopyIssuerKey, e))?,
                    ),
                };
                issuer_keys.push(copy);
            }
            Ok(())
        })();
        match filled {
            Ok(()) => Ok(PooledSession {
                session,
                epoch,
                issuer_keys,
            }),
            Err(e) => {
                let _ = session.close();
                Err(e)
            }
        }
    }

    fn release(&self, session: Option<PooledSession>, broken: bool) {
        match session {
            Some(s) if !broken => {
                lock(&self.pool).idle.push(s);
            }
            Some(s) => {
                {
                    let _ctx = self.module.read();
                    if s.epoch == self.module.epoch() {
                        let _ = s.session.close();
                    }
                }
                lock(&self.pool).open -= 1;
            }
            None => {
                lock(&self.pool).open -= 1;
            }
        }
        self.available.notify_one();
    }
}

/// The token key labelled `label`.
pub fn find_token_key(session: &Session, label: &str) -> Result<Option<ObjectHandle>, HsmError> {
    let found = session
        .find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Token(true),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .map_err(|e| p11_error(label, Step::FindKey, e))?;
    match found.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(*one)),
        _ => Err(HsmError::Ceremony(format!(
            "two keys are labelled {label:?}: labels must be unique, remove one"
        ))),
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.inner.release(self.session.take(), self.broken);
    }
}

impl CryptogramVerifier for Pkcs11Verifier {
    fn verify_arqc(
        &self,
        key_set: &KeySetId,
        card: &CardData,
        emv: &EmvData,
    ) -> Result<ArqcOutcome, HsmError> {
        let inner = &self.inner;
        let &(key_idx, profile) = inner
            .key_sets
            .get(key_set)
            .ok_or_else(|| HsmError::UnknownKeySet(key_set.clone()))?;
        // Bad chip data is refused before the HSM is touched.
        let mac_input = emv.mac_input(profile)?;
        let plan = Plan::new(profile, card, emv);
        let label = &inner.labels[key_idx];

        let mut lease = inner.checkout()?;
        let outcome = {
            let ctx = inner.module.read();
            inner.ensure_fresh(&ctx, &mut lease)?;
            let pooled = lease.session.as_ref().expect("fresh session");
            let session = &pooled.session;
            let imk = pooled.issuer_keys[key_idx].ok_or_else(|| HsmError::KeyNotFound {
                label: label.clone(),
            })?;
            let mut d = match derive_chain(session, imk, &plan, label) {
                Ok(d) => d,
                Err((e, clean)) => {
                    lease.broken = !clean;
                    return Err(e);
                }
            };
            inner.module.note_objects(3);
            let (ll, k) = (d.ll.expect("derived"), d.mac_key().expect("derived"));
            let mac = match retail_mac(session, ll, k, &mac_input) {
                Ok(mac) => mac,
                Err((step, e)) => {
                    lease.broken = destroy(session, &mut d).is_err();
                    return Err(p11_error(label, step, e));
                }
            };
            let verified: bool = mac.ct_eq(&emv.arqc).into();
            let mut unneeded = if verified {
                keep_for_arpc(profile, &mut d)
            } else {
                std::mem::take(&mut d)
            };
            if let Err(e) = destroy(session, &mut unneeded) {
                let _ = destroy(session, &mut d);
                lease.broken = true;
                return Err(p11_error(label, Step::DestroyKey, e));
            }
            if verified {
                ArqcOutcome::Verified(PendingArpc::new(Box::new(Pkcs11Pending {
                    epoch: inner.module.epoch(),
                    lease: Some(lease),
                    keys: d,
                    plan,
                    key_idx,
                })))
            } else {
                drop(lease);
                ArqcOutcome::Rejected
            }
        };
        // The operation is done: a failed recycle must not lose its result. The library's state
        // then shows in the next operation's error (CKR_CRYPTOKI_NOT_INITIALIZED at the latest).
        let _ = inner.module.recycle_if_due();
        Ok(outcome)
    }
}

/// The session and keys kept between verification and ARPC.
struct Pkcs11Pending {
    lease: Option<Lease>,
    epoch: u64,
    keys: Derived,
    plan: Plan,
    key_idx: usize,
}

impl ArpcStep for Pkcs11Pending {
    fn arpc(
        mut self: Box<Self>,
        response: &AuthorisationResponse,
    ) -> Result<IssuerAuthData, HsmError> {
        let mut lease = self.lease.take().expect("lease held until arpc");
        let inner = lease.inner.clone();
        let label = inner.labels[self.key_idx].clone();
        let result = {
            let ctx = inner.module.read();
            if self.epoch != inner.module.epoch() {
                // The library was re-initialised since the verification: the keys went with it.
                // Derive them again in a fresh session (at most once per recycle).
                self.keys = Derived::default();
                inner.ensure_fresh(&ctx, &mut lease)?;
                let pooled = lease.session.as_ref().expect("fresh session");
                let imk =
                    pooled.issuer_keys[self.key_idx].ok_or_else(|| HsmError::KeyNotFound {
                        label: label.clone(),
                    })?;
                match derive_chain(&pooled.session, imk, &self.plan, &label) {
                    Ok(d) => self.keys = d,
                    Err((e, clean)) => {
                        lease.broken = !clean;
                        return Err(e);
                    }
                }
                inner.module.note_objects(3);
                self.epoch = inner.module.epoch();
            }
            let session = &lease.session.as_ref().expect("session").session;
            let r = compute_arpc(session, &self.keys, &self.plan, response);
            let destroyed = destroy(session, &mut self.keys);
            lease.broken = destroyed.is_err();
            r.map_err(|(step, e)| p11_error(&label, step, e))
        };
        drop(lease);
        // The operation is done: a failed recycle must not lose its result. The library's state
        // then shows in the next operation's error (CKR_CRYPTOKI_NOT_INITIALIZED at the latest).
        let _ = inner.module.recycle_if_due();
        result
    }
}

impl Drop for Pkcs11Pending {
    fn drop(&mut self) {
        // Dropped without an ARPC (declined, timeout...): destroy the keys it kept.
        if let Some(lease) = self.lease.as_mut() {
            let module = lease.inner.module.clone();
            let _ctx = module.read();
            if self.epoch == module.epoch()
                && let Some(pooled) = lease.session.as_ref()
                && destroy(&pooled.session, &mut self.keys).is_err()
            {
                lease.broken = true;
            }
        }
    }
}
