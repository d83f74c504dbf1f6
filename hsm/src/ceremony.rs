//! Key ceremony: import an issuer master key from clear components, with check values, and list
//! the keys of a token. Used by the `hsm-keys` binary and by the test harness.
//!
//! Components are XORed on the host (the key exists in clear in this process's memory for the
//! moment of the import, in zeroized buffers); the import template makes the key sensitive,
//! non-extractable, usable only to derive with `CKM_DES3_ECB_ENCRYPT_DATA`.
//! Never prints or logs a component or key value: only check values (KCV, 3 bytes).

use std::sync::Arc;

use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use cryptoki::types::AuthPin;
use zeroize::Zeroizing;

use crate::pkcs11::{Module, des3_ecb_encrypt_data, find_token_key, p11_error};
use crate::{HsmError, Step};

/// A two-key 3DES key value or component, wiped on drop.
pub type KeyBytes = Zeroizing<[u8; 16]>;

/// A logged-in read/write session for administration; closed on drop.
pub struct AdminSession {
    module: Arc<Module>,
    session: Option<Session>,
    epoch: u64,
}

/// What the ceremony prints: each component's KCV and the final key's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportReport {
    pub label: String,
    pub component_kcvs: Vec<[u8; 3]>,
    pub kcv: [u8; 3],
}

/// A key as `list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    pub label: String,
    pub key_type: String,
    pub kcv: Option<[u8; 3]>,
    pub sensitive: bool,
    pub extractable: bool,
    pub encrypt: bool,
}

/// Sets odd parity on every byte (DES ignores the parity bit; the check value does not change).
pub fn set_odd_parity(key: &mut [u8; 16]) {
    for b in key.iter_mut() {
        let ones = (*b >> 1).count_ones();
        *b = (*b & 0xFE) | u8::from(ones % 2 == 0);
    }
}

/// XOR of the components, with odd parity. Refuses fewer than 2 or more than 3 components,
/// repeated components and an all-zero result.
pub fn combine(components: &[KeyBytes]) -> Result<KeyBytes, HsmError> {
    if !(2..=3).contains(&components.len()) {
        return Err(HsmError::Ceremony(format!(
            "{} components given: enter 2 or 3",
            components.len()
        )));
    }
    for (i, a) in components.iter().enumerate() {
        for b in &components[i + 1..] {
            if a[..] == b[..] {
                return Err(HsmError::Ceremony(
                    "two components are equal: each custodian must bring their own".into(),
                ));
            }
        }
    }
    let mut key = Zeroizing::new([0u8; 16]);
    for c in components {
        for (k, b) in key.iter_mut().zip(c.iter()) {
            *k ^= b;
        }
    }
    set_odd_parity(&mut key);
    if key.iter().all(|b| *b & 0xFE == 0) {
        return Err(HsmError::Ceremony("the components XOR to zero".into()));
    }
    Ok(key)
}

/// Parses 32 hex digits (spaces allowed) into a component.
pub fn parse_component(text: &str) -> Result<KeyBytes, HsmError> {
    let clean: Zeroizing<String> =
        Zeroizing::new(text.chars().filter(|c| !c.is_whitespace()).collect());
    let mut out = Zeroizing::new([0u8; 16]);
    hex::decode_to_slice(clean.as_bytes(), &mut out[..]).map_err(|_| {
        HsmError::Ceremony(format!(
            "a component must be 32 hex digits (got {} characters)",
            clean.len()
        ))
    })?;
    Ok(out)
}

impl AdminSession {
    /// Opens a read/write session on the token labelled `token_label` and logs the user in.
    pub fn open(module: Arc<Module>, token_label: &str, pin: &str) -> Result<Self, HsmError> {
        let (session, epoch) = {
            let ctx = module.read();
            let slot = module.find_slot(&ctx, token_label)?;
            // Closed explicitly in Drop, and only in its own epoch.
            let session = ctx
                .open_rw_session_no_drop(slot)
                .map_err(|e| p11_error(token_label, Step::OpenSession, e))?;
            if let Err(e) = crate::pkcs11::login_user(&session, &AuthPin::from(pin)) {
                let _ = session.close();
                return Err(p11_error(token_label, Step::Login, e));
            }
            (session, module.epoch())
        };
        Ok(AdminSession {
            module,
            session: Some(session),
            epoch,
        })
    }

    pub fn module(&self) -> &Arc<Module> {
        &self.module
    }

    /// Runs `f` with the session, the library held for reading.
    pub fn with_session<T>(
        &self,
        f: impl FnOnce(&Session) -> Result<T, HsmError>,
    ) -> Result<T, HsmError> {
        let _ctx = self.module.read();
        if self.epoch != self.module.epoch() {
            return Err(HsmError::Module {
                step: Step::OpenSession,
                detail: "the library was re-initialised: open a new admin session".into(),
            });
        }
        f(self.session.as_ref().expect("open until drop"))
    }

    /// The KCV of a clear value, computed by the token: a short-lived session object, sensitive
    /// and usable for nothing, whose `CKA_CHECK_VALUE` is read, then destroyed.
    pub fn kcv_of(&self, value: &KeyBytes) -> Result<[u8; 3], HsmError> {
        self.with_session(|s| {
            let template = [
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::DES2),
                Attribute::Token(false),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Encrypt(false),
                Attribute::Derive(false),
                Attribute::Value(value.to_vec()),
            ];
            let h = s
                .create_object(&template)
                .map_err(|e| p11_error("(component)", Step::CreateKey, e))?;
            let kcv = read_kcv(s, h, "(component)");
            let destroyed = s.destroy_object(h);
            let kcv = kcv?;
            destroyed.map_err(|e| p11_error("(component)", Step::DestroyKey, e))?;
            Ok(kcv)
        })
    }

    /// Imports an issuer master key under `label` with the production template.
    pub fn import_key(&self, label: &str, value: &KeyBytes) -> Result<[u8; 3], HsmError> {
        self.with_session(|s| {
            if find_token_key(s, label)?.is_some() {
                return Err(HsmError::Ceremony(format!(
                    "a key labelled {label:?} exists already: choose a new label (keys are never overwritten)"
                )));
            }
            let template = [
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::DES2),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Derive(true),
                Attribute::Encrypt(false),
                Attribute::Decrypt(false),
                Attribute::Sign(false),
                Attribute::Verify(false),
                Attribute::Wrap(false),
                Attribute::Unwrap(false),
                // Not CKA_MODIFIABLE false: SoftHSM then refuses C_CopyObject (the per-session
                // copy). SENSITIVE cannot be cleared nor EXTRACTABLE set anyway, and
                // CKA_ALLOWED_MECHANISMS keeps it to derivation (tests/key_protection.rs).
                Attribute::AllowedMechanisms(vec![des3_ecb_encrypt_data()]),
                Attribute::Label(label.as_bytes().to_vec()),
                Attribute::Value(value.to_vec()),
            ];
            let h = s
                .create_object(&template)
                .map_err(|e| p11_error(label, Step::CreateKey, e))?;
            read_kcv(s, h, label)
        })
    }

    /// The ceremony: KCV of each component, XOR, import, KCV of the key.
    pub fn import_from_components(
        &self,
        label: &str,
        components: &[KeyBytes],
    ) -> Result<ImportReport, HsmError> {
        let key = combine(components)?;
        let component_kcvs = components
            .iter()
            .map(|c| self.kcv_of(c))
            .collect::<Result<Vec<_>, _>>()?;
        let kcv = self.import_key(label, &key)?;
        Ok(ImportReport {
            label: label.to_owned(),
            component_kcvs,
            kcv,
        })
    }

    /// Every secret key on the token, with its check value and protection flags.
    pub fn list(&self) -> Result<Vec<KeyInfo>, HsmError> {
        self.with_session(|s| {
            let found = s
                .find_objects(&[
                    Attribute::Class(ObjectClass::SECRET_KEY),
                    Attribute::Token(true),
                ])
                .map_err(|e| p11_error("(all)", Step::FindKey, e))?;
            let mut out = Vec::with_capacity(found.len());
            for h in found {
                out.push(key_info(s, h)?);
            }
            out.sort_by(|a, b| a.label.cmp(&b.label));
            Ok(out)
        })
    }
}

impl Drop for AdminSession {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            let _ctx = self.module.read();
            if self.epoch == self.module.epoch() {
                let _ = s.close();
            }
        }
    }
}

/// Label, type, check value and flags of a key (never its value).
pub fn key_info(s: &Session, h: ObjectHandle) -> Result<KeyInfo, HsmError> {
    let attrs = s
        .get_attributes(
            h,
            &[
                AttributeType::Label,
                AttributeType::KeyType,
                AttributeType::CheckValue,
                AttributeType::Sensitive,
                AttributeType::Extractable,
                AttributeType::Encrypt,
            ],
        )
        .map_err(|e| p11_error("(key)", Step::ReadAttribute, e))?;
    let mut info = KeyInfo {
        label: String::new(),
        key_type: String::new(),
        kcv: None,
        sensitive: false,
        extractable: false,
        encrypt: false,
    };
    for a in attrs {
        match a {
            Attribute::Label(l) => info.label = String::from_utf8_lossy(&l).into_owned(),
            Attribute::KeyType(t) => info.key_type = t.to_string(),
            Attribute::CheckValue(v) => info.kcv = v.as_slice().try_into().ok(),
            Attribute::Sensitive(b) => info.sensitive = b,
            Attribute::Extractable(b) => info.extractable = b,
            Attribute::Encrypt(b) => info.encrypt = b,
            _ => {}
        }
    }
    Ok(info)
}

fn read_kcv(s: &Session, h: ObjectHandle, label: &str) -> Result<[u8; 3], HsmError> {
    let attrs = s
        .get_attributes(h, &[AttributeType::CheckValue])
        .map_err(|e| p11_error(label, Step::ReadAttribute, e))?;
    attrs
        .into_iter()
        .find_map(|a| match a {
            Attribute::CheckValue(v) => v.as_slice().try_into().ok(),
            _ => None,
        })
        .ok_or_else(|| HsmError::Ceremony(format!("the token gives no check value for {label:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combine_xors_sets_parity_and_refuses_bad_sets() {
        let a = parse_component("0123456789ABCDEF FEDCBA9876543210").unwrap();
        let z = Zeroizing::new([0u8; 16]);
        let k = combine(&[a.clone(), z.clone()]).unwrap();
        assert_eq!(
            hex::encode_upper(&k[..]),
            "0123456789ABCDEFFEDCBA9876543210"
        );
        assert!(combine(std::slice::from_ref(&a)).is_err());
        assert!(combine(&[a.clone(), a.clone()]).is_err());
        let mut b = a.clone();
        b[0] ^= 0x01; // differs only in a parity bit: XOR is all parity bits
        assert!(combine(&[a.clone(), b]).is_err());
        assert!(parse_component("0123").is_err());
    }

    #[test]
    fn parity_is_odd() {
        let mut k = [0u8; 16];
        set_odd_parity(&mut k);
        assert!(k.iter().all(|b| b.count_ones() % 2 == 1));
    }
}
