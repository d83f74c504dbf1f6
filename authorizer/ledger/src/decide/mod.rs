//! The decision rules: what to answer to an authorization, an advice or a reversal, and which
//! event to publish for it.
//!
//! [`decide`] is a pure function of the ledger [`State`], a [`Request`] (a plain struct the
//! network layer fills from a parsed ISO 8583 message), the [`Facts`] learned outside the ledger
//! (the HSM's cryptogram check) and `now`. It never mutates the state: the caller publishes
//! [`Decision::event`] and applies it to its own state at once (before deciding the next request),
//! which is what makes a repeat find the first answer and what keeps approvals within
//! open-to-buy. The rules are `docs/network.md`, section "Decision rules" (normative).
//!
//! # Files
//!
//! This file: [`decide`], [`decide_prepared`], [`Prepared`] and [`for_each_prefetched`] (the
//! ledger thread's prefetching loop). Then `request.rs` (what a decision reads and what it
//! answers: [`Request`], [`Facts`], [`Decision`]), `config.rs` ([`DecideConfig`] and its bounds),
//! `rules.rs` (the rules of each flow, in order) and `event.rs` (the event a decision publishes
//! and its content-derived id).
//!
//! Must never: approve beyond open-to-buy; decline an advice; read a clock; see a PAN (the
//! request carries the PAN hash and the masked PAN only).

pub use crate::state::PrefetchStage;
use crate::{HoldId, State, UnixSeconds};

mod config;
mod event;
mod request;
mod rules;

pub use config::{ConfigError, DecideConfig, MccHoldRule, MccRange};
pub use request::{
    ArpcInput, ChipData, Cryptogram, Decision, Facts, MessageClass, OriginalRequest,
    RemainingAmounts, Request,
};
use rules::{decide_advice, decide_authorization, decide_reversal, format_error};

/// Decides one request. Pure: same inputs, same decision.
pub fn decide<'a>(
    state: &State,
    request: &Request<'a>,
    facts: &Facts,
    config: &'a DecideConfig,
    now: UnixSeconds,
) -> Decision<'a> {
    decide_prepared(state, &Prepared::new(request), facts, config, now)
}

/// Decides a [`Prepared`] request: the same decision as [`decide`] on its request.
pub fn decide_prepared<'a>(
    state: &State,
    prepared: &Prepared<'_, 'a>,
    facts: &Facts,
    config: &'a DecideConfig,
    now: UnixSeconds,
) -> Decision<'a> {
    let request = prepared.request;
    match (request.class, prepared.hold_id) {
        (MessageClass::Authorization, Some(hold_id)) => decide_authorization(
            state,
            request,
            (hold_id, prepared.fingerprint),
            facts,
            config,
            now,
        ),
        (MessageClass::Advice, Some(hold_id)) => {
            decide_advice(state, request, hold_id, config, now)
        }
        (MessageClass::Reversal, Some(hold_id)) => {
            decide_reversal(state, request, hold_id, config, now)
        }
        // Only a reversal can lack its hold's identity: DE 90 is missing.
        (_, None) => format_error(90),
    }
}

/// A request with what can be computed from it alone before its turn: the id of the hold it
/// concerns and, for an authorization, its content fingerprint (a SHA-256 each). The ledger
/// thread prepares the requests a few places ahead of the one it decides, and starts loading
/// the records they will read ([`Prepared::prefetch`]), so that deciding does not wait for main
/// memory. Only [`Prepared::new`] makes one, so the hold id
/// always belongs to the request.
#[derive(Clone, Copy, Debug)]
pub struct Prepared<'r, 'a> {
    request: &'r Request<'a>,
    hold_id: Option<HoldId>,
    /// [`Request::content_fingerprint`] of an authorization (0 for the other classes).
    fingerprint: u64,
}

impl<'r, 'a> Prepared<'r, 'a> {
    pub fn new(request: &'r Request<'a>) -> Prepared<'r, 'a> {
        Prepared {
            request,
            hold_id: request.hold_identity().map(|i| HoldId::derive(&i)),
            fingerprint: match request.class {
                MessageClass::Authorization => request.content_fingerprint(),
                MessageClass::Advice | MessageClass::Reversal => 0,
            },
        }
    }

    pub fn request(&self) -> &'r Request<'a> {
        self.request
    }

    /// The hold this request concerns (`None`: a reversal without DE 90).
    pub fn hold_id(&self) -> Option<HoldId> {
        self.hold_id
    }

    /// Starts loading what deciding this request will read. A hint: changes nothing, and a stale
    /// one (the state changed since) only costs the load.
    pub fn prefetch(&self, state: &State, stage: PrefetchStage) {
        state.prefetch(&self.request.pan_hash, self.hold_id.as_ref(), stage);
    }
}

/// How many requests ahead [`for_each_prefetched`] starts loading the records of a request: the
/// index lines `2 * PREFETCH_DISTANCE` ahead, the records `PREFETCH_DISTANCE` ahead, the account
/// `PREFETCH_DISTANCE / 2` ahead.
pub const PREFETCH_DISTANCE: usize = 8;

/// Calls `step` on each request in order, prepared, after starting to load what the next ones
/// will read. `step` may change the state (decide, then apply the decision's event): prefetching
/// is only a hint, so the decisions are exactly those of calling [`decide`] on each in turn.
///
/// `prepare` makes each item's [`Prepared`] once: [`Prepared::new`] for requests (the hold id is
/// then computed here, on the ledger thread), or a copy for items the link threads prepared.
pub fn for_each_prefetched<'r, 'a: 'r, T>(
    state: &mut State,
    items: &'r [T],
    prepare: impl Fn(&'r T) -> Prepared<'r, 'a>,
    mut step: impl FnMut(&mut State, &Prepared<'r, 'a>),
) {
    const FAR: usize = 2 * PREFETCH_DISTANCE;
    const NEAR: usize = PREFETCH_DISTANCE;
    const ACCOUNT: usize = PREFETCH_DISTANCE / 2;
    const RING: usize = FAR + 1;
    let mut ring: [Option<Prepared<'r, 'a>>; RING] = [None; RING];
    for (j, item) in items.iter().enumerate().take(FAR) {
        let prepared = prepare(item);
        prepared.prefetch(state, PrefetchStage::Index);
        ring[j % RING] = Some(prepared);
    }
    for i in 0..items.len() {
        if let Some(item) = items.get(i + FAR) {
            let prepared = prepare(item);
            prepared.prefetch(state, PrefetchStage::Index);
            ring[(i + FAR) % RING] = Some(prepared);
        }
        if i + NEAR < items.len()
            && let Some(prepared) = &ring[(i + NEAR) % RING]
        {
            prepared.prefetch(state, PrefetchStage::Records);
        }
        if i + ACCOUNT < items.len()
            && let Some(prepared) = &ring[(i + ACCOUNT) % RING]
        {
            prepared.prefetch(state, PrefetchStage::Account);
        }
        let prepared = ring[i % RING]
            .take()
            .expect("each item is prepared FAR places ahead");
        step(state, &prepared);
    }
}
