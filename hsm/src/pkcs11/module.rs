//! The PKCS#11 library of the process and the token: loading and initialising the module (once
//! per path), its re-initialisation to bound SoftHSM's memory, finding the token's slot, the user
//! login, and looking up an issuer key by label.
//!
//! What it must never do: initialise one library twice in a process (PKCS#11 state is
//! process-global), use a handle of an older epoch after [`Module::recycle`], read or export a
//! key value (it hands out object handles only), or log or put in an error the PIN it logs in
//! with.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as P11Error, RvError};
use cryptoki::object::{Attribute, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;

use super::error::p11_error;
use super::lock;
use crate::{HsmError, Step};

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

    pub(super) fn note_objects(&self, n: u64) {
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

/// `C_Login` as the user; already logged in (login is per application) is fine.
pub fn login_user(session: &Session, pin: &AuthPin) -> Result<(), P11Error> {
    match session.login(UserType::User, Some(pin)) {
        Err(P11Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
        r => r,
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
