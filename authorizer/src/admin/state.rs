//! The JSON bodies of the admin server: `/state` ([`StateView`]) and `/accounts/{account_id}`
//! ([`AccountView`]).
//!
//! Plain data, filled by whoever implements [`super::AdminSource`] and serialized as they are.
//! Must never: hold a PAN, track data, a PIN block, a key or any other secret (no field here can
//! carry one; keep it so), or compute anything (the figures come from the ledger as they are).

use std::collections::BTreeMap;

use serde::Serialize;

/// The body of `GET /state`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StateView {
    /// The instance's name (`instance_id` of the configuration).
    pub instance_id: String,
    /// Whether the instance is ready (the same answer as `/health/ready`).
    pub ready: bool,
    /// The state hash, in hex: two replicas with equal `offsets` have equal hashes.
    pub state_hash: String,
    /// The next offset to apply, per `topic/partition` (see [`StateView::set_offset`]).
    pub offsets: BTreeMap<String, i64>,
    /// How many records the state holds.
    pub counts: StateCounts,
    /// One entry per interface device link.
    pub links: Vec<LinkView>,
    /// Events waiting in the local spool.
    pub spool_events: u64,
}

impl StateView {
    /// Fills `state_hash`, `counts` and `offsets` from one reading of a state and its next
    /// offsets (taken together, so that they belong together).
    pub fn set_state(
        &mut self,
        state_hash: String,
        counts: &ledger::Counts,
        offsets: &crate::kafka::Offsets,
    ) {
        self.state_hash = state_hash;
        self.counts = StateCounts {
            accounts: counts.accounts,
            cards: counts.cards,
            holds: counts.holds,
        };
        for (tp, next) in offsets {
            self.set_offset(&tp.topic, tp.partition, *next);
        }
    }

    /// Records `next` as the next offset to apply on `topic` partition `partition`, under the
    /// key `topic/partition`.
    pub fn set_offset(&mut self, topic: &str, partition: i32, next: i64) {
        self.offsets.insert(format!("{topic}/{partition}"), next);
    }
}

/// `counts` of [`StateView`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StateCounts {
    pub accounts: u64,
    pub cards: u64,
    pub holds: u64,
}

/// One link of [`StateView::links`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LinkView {
    /// The interface device's address, `host:port`.
    pub address: String,
    /// The session state, in snake case (`connecting`, `connected`, `signed_on`, ...).
    pub state: String,
}

/// The body of `GET /accounts/{account_id}`. Amounts are in minor units of the currency, at the
/// current time (expired holds no longer counted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountView {
    pub account_id: String,
    /// `active`, `blocked`, ... as in the account events.
    pub status: String,
    /// ISO 4217 numeric code, three digits (`"986"`).
    pub currency: String,
    pub credit_limit: i64,
    pub posted_balance: i64,
    /// The sum of the open holds.
    pub held: i64,
    pub open_to_buy: i64,
    /// How many holds are open.
    pub holds: u64,
}
