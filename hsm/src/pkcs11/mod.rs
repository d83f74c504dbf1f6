//! The PKCS#11 backend of [`CryptogramVerifier`](crate::CryptogramVerifier) (SoftHSM2 in tests,
//! any token with `CKM_DES3_ECB_ENCRYPT_DATA`, `CKM_DES3_CBC` and `CKM_DES3_ECB` in production).
//!
//! The chain of docs/cryptograms.md: ICC master key, session key and single-DES MAC key
//! are `C_DeriveKey(CKM_DES3_ECB_ENCRYPT_DATA)` session objects (sensitive, non-extractable),
//! the retail MAC is CBC with the single-DES key plus one 3DES-ECB block, the ARQC is compared on
//! the host in constant time, and every derived key is destroyed once its last use is over.
//!
//! Design:
//! * One [`Module`] per library path and process (a PKCS#11 library has process-global state:
//!   two `C_Initialize` would collide). It owns the `pkcs11::Ctx` behind a read/write lock:
//!   every operation holds the read side for its calls; [`Module::recycle`] takes the write side.
//! * **Memory bound.** SoftHSM 2.6 keeps every session object ever created until `C_Finalize`
//!   (about 216 bytes each; closing the session does not free them: measured, see docs/hsm.md).
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
//!
//! One file per idea: [`module`] (loading, the token, login, key lookup), [`error`] (CKR codes to
//! [`HsmError`](crate::HsmError)), [`raw`] (the PKCS#11 calls themselves, and the crate's only
//! production `unsafe`), `chain` (the derivation chain of one card and transaction), `pool` (the
//! session pool), `verifier` (the configuration and the [`CryptogramVerifier`](crate::CryptogramVerifier)).
//! Their public items are re-exported here, at the paths they always had (`hsm::pkcs11::…`).
//!
//! What no part of it may ever do: let a key value leave the token (derived keys are sensitive,
//! non-extractable session objects, destroyed after use), or log, print or put in an error the
//! PIN, a key, a PAN or a cryptogram input.

mod chain;
pub mod error;
pub mod module;
mod pool;
pub mod raw;
mod verifier;

use std::sync::{Mutex, MutexGuard};

pub use error::{p11_error, rv_code};
pub use module::{Module, SOFTHSM2_MODULE, find_token_key, login_user};
pub use raw::{derive_des2, des3_ecb_encrypt_data, retail_mac};
pub use verifier::{Pkcs11Config, Pkcs11Verifier};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these locks leaves no broken invariant worth refusing service for.
    m.lock().unwrap_or_else(|e| e.into_inner())
}
