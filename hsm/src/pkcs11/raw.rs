//! The raw PKCS#11 calls of the chain: plain functions over (session, handles) for the key
//! derivation (`C_DeriveKey` with `CKM_DES3_ECB_ENCRYPT_DATA`), 3DES-CBC/ECB and the retail MAC.
//! No pool, no state: the callers own the sessions and destroy what these create.
//!
//! This module holds the crate's only `unsafe` outside the test harness (one block, in
//! [`des3_ecb_encrypt_data`]), and the one raw pointer handed to the library
//! (`KeyDerivationStringData`); keep any new one here, with its `// SAFETY:` argument.
//!
//! What it must never do: create a key that is extractable, not sensitive, or a token object
//! (every derived key is a sensitive, non-extractable session object with only the uses its
//! caller asks for), read a key value, or let the library keep a pointer past the call.

use cryptoki::error::{Error as P11Error, RvError};
use cryptoki::mechanism::vendor_defined::VendorDefinedMechanism;
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use cryptoki_sys::*;

use crate::Step;

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
#[allow(unsafe_code)]
pub fn des3_ecb_encrypt_data() -> MechanismType {
    // SAFETY: `MechanismType` is `#[repr(transparent)]` over `CK_MECHANISM_TYPE` (cryptoki
    // documents it so that slices of both have the same layout) and every value is valid for
    // it: cryptoki's own `TryFrom` is only a whitelist of names.
    unsafe { std::mem::transmute::<CK_MECHANISM_TYPE, MechanismType>(CKM_DES3_ECB_ENCRYPT_DATA) }
}

/// 3DES-CBC with a zero IV over whole blocks; returns the last ciphertext block.
pub(super) fn cbc_last_block(
    session: &Session,
    key: ObjectHandle,
    data: &[u8],
) -> Result<[u8; 8], P11Error> {
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
pub(super) fn ecb_block(
    session: &Session,
    key: ObjectHandle,
    block: &[u8; 8],
) -> Result<[u8; 8], P11Error> {
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
