//! Simulators for the system tests, the demo and the benchmarks: what stands outside the
//! authorizer in production.
//!
//! * [`card`]: a chip card in software (its ICC master key derived from a *test* issuer key, as
//!   personalisation does), which computes ARQCs and checks the issuer's ARPC. Test-only: the
//!   issuer side never computes cryptograms outside the HSM.
//! * [`cloud`]: the bank's cloud services, which publish `account.upserted` and `card.upserted`
//!   exactly as `docs/kafka-contract.md` says.
//! * [`netsim`]: the card network's interface device: a population of cards and a seeded
//!   generator of realistic traffic (chip, contactless, magstripe, e-commerce, repeats, advices,
//!   full and partial reversals, network management, and a share of bad requests).
//!
//! Must never: be linked into the daemon; use a key that is not an obviously public test key.

#![forbid(unsafe_code)]

pub mod card;
pub mod cloud;
pub mod netsim;
pub mod rng;
