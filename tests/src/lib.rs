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
//! * [`device`]: that interface device over TCP, the server the authorizer dials (sign-on, echoes,
//!   many requests in flight matched to their answers).
//! * [`scenarios`]: scripted cases with the answers the contract expects, judged field by field.
//! * [`load`]: traffic at a window or a rate, with latency figures; [`plot`] draws them as SVG.
//! * [`publish`]: the cloud's events for a population, produced to `account-updates`.
//!
//! * [`stage`]: a broker, daemons as processes and the netsim as a child, for the demo and the
//!   daemon benchmark.
//! * [`admin_http`]: a minimal client of the daemons' admin server (the demo, the system tests).
//!
//! Must never: be linked into the daemon; use a key that is not an obviously public test key.

#![forbid(unsafe_code)]

pub mod admin_http;
pub mod card;
pub mod cloud;
pub mod device;
pub mod load;
pub mod netsim;
pub mod plot;
pub mod publish;
pub mod rng;
pub mod scenarios;
pub mod stage;

/// Seconds since 1970-01-01 UTC, from the system clock (the daemon checks DE 7 against its own).
pub fn now_unix_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
