//! EMV issuer chip cryptography for the authorizer: verify the ARQC a card sent, and compute the
//! ARPC (tag 91) that goes back with the response, with the issuer master keys inside an HSM.
//!
//! What it is for:
//! * [`CryptogramVerifier`], the backend-neutral interface the authorizer calls (synchronous,
//!   `Send + Sync`, meant for a blocking pool with a timeout around it). Verification first; the
//!   ARPC after the decision, through the [`PendingArpc`] the verification hands back.
//! * [`emv`]: the profiles (`visa-cvn10` … `mc-cvn21`), the MAC input from DE 55 tags, 9F10
//!   layouts, derivation data. Pure, no I/O.
//! * [`pkcs11`]: the PKCS#11 backend (SoftHSM2 in tests), with a session pool and a bound on
//!   SoftHSM's memory growth; [`ceremony`]: key import from clear components with check values.
//! * `testing` (feature `testing`): a private SoftHSM2 token for tests of any crate.
//!
//! What it must never do: let a key value leave the token (every key is sensitive and
//! non-extractable; derived keys are session objects destroyed after use), log or print a PAN
//! (only [`CardData::masked_pan`]), a PIN, a key or a key component, or panic on card data.
//!
//! The limits of a PKCS#11 backend (whoever holds the user PIN can compute cryptograms) are
//! stated in `docs/hsm.md`.

// `unsafe` is denied everywhere but in two places, each with its SAFETY argument: the
// mechanism constant in `pkcs11::raw` and the test harness's one `set_var` in `testing`.
#![deny(unsafe_code)]

pub mod ceremony;
pub mod emv;
pub mod pkcs11;
#[cfg(feature = "testing")]
pub mod testing;

use std::fmt;

pub use emv::{AuthorisationResponse, CardData, EmvData, EmvError, IssuerAuthData, Profile};

/// The name of a key set, as cards carry it (`key_set` in the card record).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeySetId(pub String);

impl fmt::Display for KeySetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A key set: which issuer master key (IMK-AC, by its label in the token) and which cryptogram
/// profile the cards of this set use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeySet {
    pub id: KeySetId,
    pub key_label: String,
    pub profile: Profile,
}

/// The result of an ARQC check.
pub enum ArqcOutcome {
    /// The ARQC is the card's. Compute the ARPC with the response once decided (or drop it:
    /// dropping releases whatever the backend holds).
    Verified(PendingArpc),
    /// The ARQC does not match: the authorizer declines, with no tag 91.
    Rejected,
}

impl ArqcOutcome {
    pub fn is_verified(&self) -> bool {
        matches!(self, ArqcOutcome::Verified(_))
    }
}

impl fmt::Debug for ArqcOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ArqcOutcome::Verified(_) => "Verified",
            ArqcOutcome::Rejected => "Rejected",
        })
    }
}

/// What a backend keeps between the verification and the ARPC (for PKCS#11: the session and the
/// derived keys the ARPC needs). Implemented by backends; dropping it must release everything.
pub trait ArpcStep: Send {
    fn arpc(self: Box<Self>, response: &AuthorisationResponse) -> Result<IssuerAuthData, HsmError>;
}

/// The second step of a verified ARQC: [`PendingArpc::arpc`] gives tag 91's value.
pub struct PendingArpc(Box<dyn ArpcStep>);

impl PendingArpc {
    pub fn new(step: Box<dyn ArpcStep>) -> Self {
        PendingArpc(step)
    }
    pub fn arpc(self, response: &AuthorisationResponse) -> Result<IssuerAuthData, HsmError> {
        self.0.arpc(response)
    }
}

/// The interface the authorizer calls. Synchronous: run it on a blocking pool with a timeout.
pub trait CryptogramVerifier: Send + Sync {
    /// Verifies the ARQC in `emv` for `card` with the key set's issuer master key and profile.
    /// `Err` means the check could not be made (unknown key set, bad chip data, HSM trouble);
    /// the authorizer's policy decides what to answer then.
    fn verify_arqc(
        &self,
        key_set: &KeySetId,
        card: &CardData,
        emv: &EmvData,
    ) -> Result<ArqcOutcome, HsmError>;
}

/// The PKCS#11 step an error happened in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    LoadModule,
    Initialize,
    Finalize,
    FindSlot,
    OpenSession,
    Login,
    FindKey,
    CopyIssuerKey,
    DeriveIccMasterKey,
    DeriveSessionKey,
    DeriveMacKey,
    MacChain,
    MacFinal,
    ArpcEncrypt,
    DestroyKey,
    CreateKey,
    ReadAttribute,
    InitToken,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Why a cryptogram could not be checked or computed.
#[derive(Debug, thiserror::Error)]
pub enum HsmError {
    #[error("key set {0} is not configured: add it to the key-set configuration")]
    UnknownKeySet(KeySetId),
    #[error("chip data: {0}")]
    Emv(#[from] EmvError),
    #[error(
        "PKCS#11 {step} failed for key {key_label:?}: {rv_name} (0x{rv:08X}); check the token, the PIN and the key-set configuration"
    )]
    Pkcs11 {
        key_label: String,
        step: Step,
        rv: u64,
        rv_name: &'static str,
    },
    #[error("PKCS#11 {step}: {detail}")]
    Module { step: Step, detail: String },
    #[error(
        "no issuer key labelled {label:?} in the token: import it with `hsm-keys import` or fix the key set"
    )]
    KeyNotFound { label: String },
    #[error("no token labelled {label:?} in module {module}: create it or fix the configuration")]
    TokenNotFound { label: String, module: String },
    #[error(
        "no HSM session free within {waited_ms} ms (pool of {pool_size}): the HSM is slow or the pool too small"
    )]
    Timeout { waited_ms: u64, pool_size: usize },
    #[error("key ceremony: {0}")]
    Ceremony(String),
}
