//! The backend's configuration and the [`CryptogramVerifier`] over a PKCS#11 token: ARQC check
//! through the derivation chain in a pooled session, and the ARPC step that keeps the session
//! and only the keys it needs until the response is decided.
//!
//! What it must never do: show the PIN (`Debug` redacts it; it comes from a 0600 file or a
//! systemd credential, never argv or the environment), touch the HSM for chip data that is
//! already malformed, compare the ARQC in variable time, or lose a result to a failed recycle.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use cryptoki::types::AuthPin;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::chain::{Derived, Plan, compute_arpc, derive_chain, destroy, keep_for_arpc};
use super::error::p11_error;
use super::lock;
use super::module::Module;
use super::pool::{Inner, Lease, PoolState};
use super::raw::retail_mac;
use crate::emv::{AuthorisationResponse, IssuerAuthData};
use crate::{
    ArpcStep, ArqcOutcome, CardData, CryptogramVerifier, EmvData, HsmError, KeySet, KeySetId,
    PendingArpc, Step,
};

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
    /// 216 bytes each until then).
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

    /// Reads the PIN from a file (first line, trailing newline removed). A file readable by
    /// group or others (`mode & 0o077 != 0`) is refused before anything is read from it.
    pub fn read_pin_file(path: &Path) -> Result<Zeroizing<String>, HsmError> {
        use std::io::Read;
        use std::os::unix::fs::MetadataExt;
        let cannot = |e: std::io::Error| HsmError::Module {
            step: Step::Login,
            detail: format!("cannot read PIN file {}: {e}", path.display()),
        };
        let mut file = std::fs::File::open(path).map_err(cannot)?;
        // The mode of the file opened, not of the path looked up again.
        let mode = file.metadata().map_err(cannot)?.mode();
        if mode & 0o077 != 0 {
            return Err(HsmError::Module {
                step: Step::Login,
                detail: format!(
                    "PIN file {} is readable by group or others (mode {:03o}); it is a secret: run `chmod 600 {}`",
                    path.display(),
                    mode & 0o777,
                    path.display()
                ),
            });
        }
        let mut raw = Zeroizing::new(String::new());
        file.read_to_string(&mut raw).map_err(cannot)?;
        Ok(Zeroizing::new(
            raw.lines().next().unwrap_or_default().to_owned(),
        ))
    }
}

/// [`CryptogramVerifier`] over a PKCS#11 token.
#[derive(Clone)]
pub struct Pkcs11Verifier {
    inner: Arc<Inner>,
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
