//! The pipeline's seams: the HSM and the log behind small traits, so that the pipeline's rules
//! are tested without a token, a socket or a broker (test implementations that are slow, fail
//! or refuse on demand), and run in the daemon with the real [`hsm::pkcs11::Pkcs11Verifier`] and
//! [`Publisher`].
//!
//! * The chip seam is the `hsm` crate's own [`CryptogramVerifier`] (synchronous, `Send + Sync`):
//!   the pipeline runs it on its bounded pool of HSM workers (`chip.rs`).
//! * The log seam is [`EventLog`]: publish one event within a budget, and say where it is.
//!
//! Must never: hide a [`PublishError`] (the pipeline must know an event is not durable), or tie
//! the publish to the caller's future (the future an [`EventLog`] returns is `'static`, so the
//! pipeline spawns it and a caller that stops waiting never cancels a publish).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

pub use hsm::CryptogramVerifier;

use crate::kafka::{Delivery, Outbound, PublishError, Publisher};

/// A publish in progress, owned (spawnable).
pub type PublishFuture = Pin<Box<dyn Future<Output = Result<Delivery, PublishError>> + Send>>;

/// Where the pipeline makes its events durable: Kafka with `acks=all` within `budget`, else the
/// spool ([`Delivery::Spooled`]); `Err` when neither holds it.
pub trait EventLog: Send + Sync + 'static {
    fn publish(&self, event: Outbound, budget: Duration) -> PublishFuture;
}

impl EventLog for Publisher {
    fn publish(&self, event: Outbound, budget: Duration) -> PublishFuture {
        let publisher = self.clone();
        Box::pin(async move { publisher.publish(&event, budget).await })
    }
}
