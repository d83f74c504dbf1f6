//! HSM facts for chip requests: a bounded pool of HSM workers with a per-call budget.
//!
//! PKCS#11 calls block, so each runs on tokio's blocking pool (`spawn_blocking`) while holding
//! one of `hsm_workers` permits of a semaphore. The caller waits at most `hsm_budget` for a
//! permit *and* the call together; past it the caller is told [`ChipFact::Unavailable`] and goes
//! on (the pipeline answers the unavailable code). The call itself is not cancelled (a blocking
//! PKCS#11 call cannot be): it finishes on its thread, keeps its permit until then, and drops
//! what it returns (a [`PendingArpc`] dropped releases its session). So slow HSM calls can never
//! pile up beyond `hsm_workers` threads: once all permits are taken, new requests time out
//! waiting for one. The ARPC after the decision runs on the blocking pool too, within the same
//! budget but without a permit (see [`HsmPool::arpc`]).
//!
//! Must never: block a tokio worker on the HSM (dropping a [`PendingArpc`] calls it too: see
//! [`Pending`]), hold more than `hsm_workers` calls at once, or
//! log the PAN (only the [`CardData`] it is given, whose `Debug` masks it).

use std::sync::Arc;
use std::time::Duration;

use hsm::{
    ArqcOutcome, AuthorisationResponse, CardData, CryptogramVerifier, EmvData, HsmError,
    IssuerAuthData, KeySetId, PendingArpc,
};
use tokio::sync::Semaphore;

/// What the HSM says about a request's ARQC.
pub enum ChipFact {
    /// The ARQC is the card's; the ARPC is computed from this once decided.
    Verified(Pending),
    /// The ARQC does not match, or the chip data cannot be checked (missing or malformed tags):
    /// the card's fault, declined by the ledger's cryptogram rule.
    NotVerified,
    /// The HSM failed or did not answer within the budget: not the card's fault; the pipeline
    /// answers the unavailable code.
    Unavailable(Unavailable),
}

/// A verified ARQC's pending ARPC step. Dropping a [`PendingArpc`] makes PKCS#11 calls (it
/// destroys the keys it kept), so this wrapper drops it on the blocking pool, never on a tokio
/// worker.
pub struct Pending(Option<PendingArpc>);

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(pending) = self.0.take() {
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn_blocking(move || drop(pending));
                }
                Err(_) => drop(pending),
            }
        }
    }
}

/// Why the HSM could not give a fact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unavailable {
    /// No answer (or no free worker) within `hsm_budget`.
    Timeout,
    /// The HSM answered with an error that is not about the chip data.
    Error,
}

/// The pool of HSM workers.
#[derive(Clone)]
pub struct HsmPool {
    verifier: Arc<dyn CryptogramVerifier>,
    permits: Arc<Semaphore>,
    budget: Duration,
}

impl HsmPool {
    pub fn new(verifier: Arc<dyn CryptogramVerifier>, workers: usize, budget: Duration) -> Self {
        HsmPool {
            verifier,
            permits: Arc::new(Semaphore::new(workers.max(1))),
            budget,
        }
    }

    /// Verifies the ARQC of `emv` for `card` with the key set `key_set`, on a worker, within the
    /// budget.
    pub async fn verify(&self, key_set: KeySetId, card: CardData, emv: EmvData) -> ChipFact {
        let verifier = self.verifier.clone();
        let permits = self.permits.clone();
        let work = async move {
            let permit = permits.acquire_owned().await.ok()?;
            let handle = tokio::task::spawn_blocking(move || {
                let out = verifier.verify_arqc(&key_set, &card, &emv);
                drop(permit);
                out
            });
            handle.await.ok()
        };
        let out = tokio::time::timeout(self.budget, work).await.ok().flatten();
        match out {
            None => ChipFact::Unavailable(Unavailable::Timeout),
            Some(Ok(ArqcOutcome::Verified(pending))) => ChipFact::Verified(Pending(Some(pending))),
            Some(Ok(ArqcOutcome::Rejected)) => ChipFact::NotVerified,
            // Chip data the HSM cannot use is the card's (or terminal's) fault, not the HSM's.
            Some(Err(HsmError::Emv(_))) => ChipFact::NotVerified,
            Some(Err(_)) => ChipFact::Unavailable(Unavailable::Error),
        }
    }

    /// Computes tag 91 from a verified ARQC's pending step, within the budget; `None` if the HSM
    /// failed or was late (the answer then goes without tag 91).
    ///
    /// Without a worker permit: the pending step holds one of the backend's sessions, and a
    /// verification holding a permit may be waiting for that very session; an ARPC that waited
    /// for a permit would wait for itself (until the backend's session timeout). Bounded all the
    /// same: at most one ARPC per pending step, and pending steps are bounded by the backend's
    /// session pool.
    pub async fn arpc(
        &self,
        mut pending: Pending,
        response: AuthorisationResponse,
    ) -> Option<IssuerAuthData> {
        let step = pending.0.take()?;
        let handle = tokio::task::spawn_blocking(move || step.arpc(&response).ok());
        tokio::time::timeout(self.budget, handle)
            .await
            .ok()
            .and_then(Result::ok)
            .flatten()
    }
}
