//! The session pool of one verifier: up to `pool_size` sessions, each logged in and holding a
//! session copy of every issuer key; a caller waits at most `op_timeout` for one. A session
//! carries the module epoch it was opened in and is replaced, never closed, once stale.
//!
//! What it must never do: close a session of an older epoch (its handle number may belong to
//! somebody else's session now), hand one session to two callers at once, copy an issuer key
//! to anything but a session object of the same token, or log the PIN it logs in with.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use cryptoki::context::Pkcs11;
use cryptoki::object::{Attribute, ObjectHandle};
use cryptoki::session::Session;
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;

use super::error::p11_error;
use super::lock;
use super::module::{Module, find_token_key, login_user};
use crate::emv::Profile;
use crate::{HsmError, KeySetId, Step};

/// One pooled session: the epoch it belongs to, and its copies of the issuer keys (indexed like
/// `Inner::labels`; `None` when the token has no key with that label). Opened "no drop": it is
/// closed explicitly, and only while its epoch is current.
pub(super) struct PooledSession {
    pub(super) session: Session,
    pub(super) epoch: u64,
    pub(super) issuer_keys: Vec<Option<ObjectHandle>>,
}

pub(super) struct PoolState {
    pub(super) idle: Vec<PooledSession>,
    /// Sessions open or being opened (idle + leased).
    pub(super) open: usize,
}

pub(super) struct Inner {
    pub(super) module: Arc<Module>,
    pub(super) token_label: String,
    pub(super) pin: AuthPin,
    pub(super) pool_size: usize,
    pub(super) op_timeout: Duration,
    /// Distinct issuer key labels; key sets point into it.
    pub(super) labels: Vec<String>,
    pub(super) key_sets: HashMap<KeySetId, (usize, Profile)>,
    pub(super) pool: Mutex<PoolState>,
    pub(super) available: Condvar,
    /// (epoch, slot): slot ids may change when the library is re-initialised.
    pub(super) slot: Mutex<(u64, Slot)>,
}

/// A session taken from the pool; goes back on drop (or is closed if `broken`).
pub(super) struct Lease {
    pub(super) inner: Arc<Inner>,
    pub(super) session: Option<PooledSession>,
    pub(super) broken: bool,
}

impl Inner {
    pub(super) fn checkout(self: &Arc<Inner>) -> Result<Lease, HsmError> {
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
    pub(super) fn ensure_fresh(&self, ctx: &Pkcs11, lease: &mut Lease) -> Result<(), HsmError> {
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

    pub(super) fn slot(&self, ctx: &Pkcs11, epoch: u64) -> Result<Slot, HsmError> {
        let mut s = lock(&self.slot);
        if s.0 != epoch {
            *s = (epoch, self.module.find_slot(ctx, &self.token_label)?);
        }
        Ok(s.1)
    }

    pub(super) fn open_session(&self, ctx: &Pkcs11, epoch: u64) -> Result<PooledSession, HsmError> {
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

    pub(super) fn release(&self, session: Option<PooledSession>, broken: bool) {
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

impl Drop for Lease {
    fn drop(&mut self) {
        self.inner.release(self.session.take(), self.broken);
    }
}
