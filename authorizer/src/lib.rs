//! The card authorizer: the daemon and its edges.
//!
//! The pure, deterministic core (state, events, `apply`, the state hash, the decision rules and
//! the snapshot format) is the [`ledger`] crate, which does no I/O and reads no clock. This crate
//! holds what touches the world, each edge tested against the real service:
//! * [`kafka`]: Kafka in and out, dead letters, the local spool.
//! * [`link`]: the network link: the session and connection per interface device, and the
//!   mapping between ISO 8583 messages and decisions.
//! * [`config`]: the daemon's configuration file, its secrets and their checks.
//! * [`pipeline`]: one request from decoded message to answer: validation, the HSM, the ledger
//!   thread (the one writer of the state), the log, the answer.
//! * [`admin`]: the admin HTTP server (health, `/state`, `/accounts/…`, `/metrics`) and the
//!   metrics registry.
//! * [`daemon`]: `authorizer run`: the start sequence, systemd notifications, the log's feed,
//!   the rebuild of a diverged replica, and the graceful stop.
//!
//! Must never: decide money outside [`ledger`] (this crate moves bytes and events to and from it).

#![forbid(unsafe_code)]

pub mod admin;
pub mod config;
pub mod daemon;
pub mod kafka;
pub mod link;
pub mod pipeline;
pub mod snapshots;
