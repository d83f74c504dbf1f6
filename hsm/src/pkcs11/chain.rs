//! The key chain of one card and transaction: ICC master key, AC session key and the single-DES
//! MAC key derived from the issuer key, which of them the ARPC keeps, their destruction, and the
//! ARPC itself. The inputs ([`Plan`]) are public data only, kept so the chain can be derived
//! again after a recycle.
//!
//! What it must never do: leave a derived key behind (every path destroys what it made, and
//! reports when a destroy failed so that the session is closed instead of reused), or keep a
//! key the profile's ARPC does not need.

use cryptoki::error::{Error as P11Error, RvError};
use cryptoki::object::ObjectHandle;
use cryptoki::session::Session;

use super::error::p11_error;
use super::raw::{derive_des2, ecb_block, retail_mac};
use crate::emv::{self, ArpcKey, ArpcMethod, AuthorisationResponse, IssuerAuthData, Profile};
use crate::{CardData, EmvData, HsmError, Step};

/// The derived session objects of one transaction.
#[derive(Default)]
pub(super) struct Derived {
    /// ICC master key (for CVN 10 also the MAC key).
    pub(super) mk: Option<ObjectHandle>,
    /// AC session key (absent for CVN 10).
    pub(super) sk: Option<ObjectHandle>,
    /// Single-DES MAC key K_L‖K_L of the MAC key.
    pub(super) ll: Option<ObjectHandle>,
}

impl Derived {
    /// The 3DES key of the MAC and of method-2 ARPCs.
    pub(super) fn mac_key(&self) -> Option<ObjectHandle> {
        self.sk.or(self.mk)
    }
}

/// The inputs of a derivation, all public data (kept for a re-derivation after a recycle).
#[derive(Clone)]
pub(super) struct Plan {
    pub(super) profile: Profile,
    pub(super) mk_data: [u8; 16],
    pub(super) sk_data: Option<[u8; 16]>,
    pub(super) arqc: [u8; 8],
}

impl Plan {
    pub(super) fn new(profile: Profile, card: &CardData, emv: &EmvData) -> Plan {
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
pub(super) fn derive_chain(
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
pub(super) fn destroy(session: &Session, d: &mut Derived) -> Result<(), P11Error> {
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
pub(super) fn keep_for_arpc(profile: Profile, d: &mut Derived) -> Derived {
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

pub(super) fn missing() -> (Step, P11Error) {
    (
        Step::ArpcEncrypt,
        P11Error::Pkcs11(
            RvError::KeyHandleInvalid,
            cryptoki::context::Function::Encrypt,
        ),
    )
}

pub(super) fn compute_arpc(
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
