//! The card authorizer.
//!
//! Pure, deterministic core (no I/O, no clock; time is an argument):
//! * [`ledger`]: accounts, cards, holds, events and `apply`, the state hash.
//! * [`decide`]: the decision rules for authorizations, advices and reversals.
//! * [`snapshot`]: the snapshot file format.
//!
//! Edges (I/O, tested against real services):
//! * [`log`]: Kafka in and out, dead letters, the local spool.
//! * [`link`]: the network link; today the mapping between ISO 8583 messages and decisions.

pub mod decide;
pub mod ledger;
pub mod link;
pub mod log;
pub mod snapshot;
