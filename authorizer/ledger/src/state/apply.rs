//! Applying events to the [`State`]: the convergence rules, the watermark and the retirement
//! of records.
//!
//! # Convergence (why two replicas that applied the same events agree)
//!
//! Every piece of state is a join of the events that touched it, so the order of application
//! does not matter:
//! * accounts and cards: last writer wins by `version`; an equal version with different content
//!   (a cloud bug) is broken by comparing the content, so that every replica picks the same one;
//! * a card's highest ATC: the max of the ATCs the authorizer events carry for it, whatever
//!   `card.upserted` says (a new version keeps it); an ATC for a card not upserted yet waits in
//!   the pending ATCs and becomes the card's when it arrives (the two topics in any order);
//! * a hold record is keyed by its [`HoldId`] and merges *parts* (see `hold.rs`): the approval
//!   (`hold.placed`, amount merged by max), the advice (`hold.adjusted`, overrides the approval's
//!   amount, merged by max), reversals (`hold.released`, the remaining amount merged by min:
//!   remove wins, and a release that arrives first simply waits for its hold), the decline
//!   (`authorization.declined`); its content fingerprint is the approvals' max if any, else the
//!   declines' max;
//! * postings (`cleared_holds`) are a set of cleared-hold markers (remove wins, in any order);
//! * the hold watermark is the quorum-th largest vote of the authorizers' events applied
//!   (`watermark.rs`: a function of the set).
//!
//! # Time and cleanup
//!
//! Nothing here reads a clock. Hold expiry is a field of the hold (decided by the authorizer that
//! approved, from the merchant category); [`State::open_to_buy`] takes `now` and ignores holds
//! expired at `now`, without changing the state. Records are removed by one deterministic rule:
//! a hold record is retained until `transmitted_at + HOLD_RETENTION_S` (DE 7 of the request, the
//! same for every part of one hold), a cleared marker until its posting's `at +
//! CLEARED_RETENTION_S`; the watermark is the [`WATERMARK_QUORUM`](super::WATERMARK_QUORUM)-th
//! largest vote `min(at, transmitted_at + 1 day)` of the authorizer events (so one replica's
//! runaway clock cannot retire holds early, and one event dated far ahead cannot move it);
//! a record whose retention is at or before the watermark is purged, and a
//! part that arrives already past it is dropped. The state after any prefix of the log is thus
//! "the join of the events applied, minus what the watermark retired", the same whatever the order.
//! Assumption (documented in the report): a posting's `at` is at most one day before the DE 7 of
//! the holds it clears, so that a cleared marker never retires before its hold.
//!
//! Must never: read a clock, or make a result depend on the order events arrive in; apply half
//! an event (a capacity error leaves the state as it was); purge a record the watermark has not
//! passed, nor free a hold that a later part of it still needs.

use std::cmp::Reverse;

use crate::event::{
    AccountUpserted, AuthorizationEvent, AuthorizationKind, CardUpserted, Event, EventError, Source,
};
use crate::types::{
    AMOUNT_MINOR_MAX, AccountIndex, AccountStatus, AmountMinor, Currency, HoldId, ResponseCode,
    UnixSeconds, Version,
};

use super::{
    ACCOUNTS_MAX, Account, AccountHolds, AccountIdText, Applied, ArenaText, CARD_ID_ARENA_MAX,
    CLEARED_RETENTION_S, Card, Cleared, HOLD_RETENTION_S, HeldCache, Hold, KEY_SETS_MAX, State,
    WATERMARK_SKEW_MAX_S, WatermarkVote, account_id_hash, parts,
};

impl State {
    /// Starts loading what applying these events will read: the dedup window's slot, the
    /// account (its index entry and its record, by a lookup whose result is dropped: lookups of
    /// different events overlap in the CPU), the card or hold record. For the events of one
    /// batch (up to a few hundred) before applying them in order: the results are exactly those
    /// of applying them one by one, only with fewer waits for memory. A hint: changes nothing.
    pub fn prefetch_events<'e>(&self, events: impl Iterator<Item = &'e Event<'e>> + Clone) {
        for event in events.clone() {
            self.dedup.prefetch(event.event_key());
            match event {
                Event::AccountUpserted(_) => {}
                Event::CardUpserted(e) => self.cards.prefetch_slot(&e.pan_hash),
                Event::Authorization(e) => self.holds.prefetch_slot(&e.hold_id),
            }
        }
        for event in events {
            std::hint::black_box(self.find_account(event.account_id()));
            match event {
                Event::AccountUpserted(_) => {}
                Event::CardUpserted(e) => self.cards.prefetch_entry(&e.pan_hash),
                Event::Authorization(e) => self.holds.prefetch_entry(&e.hold_id),
            }
        }
    }

    /// Parses one event read from `source` and applies it. Never panics on bad input: a bad
    /// event is an [`EventError`] whose `Display` is the dead-letter reason.
    pub fn apply_json(&mut self, source: Source, payload: &[u8]) -> Result<Applied, EventError> {
        let event = Event::parse(source, payload)?;
        self.apply(&event)
    }

    /// Applies one parsed event. Errors only when a capacity bound is reached (the event is then
    /// not applied at all).
    pub fn apply(&mut self, event: &Event<'_>) -> Result<Applied, EventError> {
        let key = event.event_key();
        let Err(vacant) = self.dedup.find(key) else {
            return Ok(Applied::Unchanged);
        };
        let applied = match event {
            Event::AccountUpserted(e) => self.apply_account(e)?,
            Event::CardUpserted(e) => self.apply_card(e)?,
            Event::Authorization(e) => self.apply_authorization(e, None)?,
        };
        // The window is untouched by the apply: the probe's empty slot is still the key's.
        self.dedup.insert_absent(key, vacant);
        Ok(applied)
    }

    /// Applies the event of a decision this replica just made on this state
    /// (`decide::Decision::event`, with `Decision::account` as `account`), before deciding the
    /// next request. The same rules as [`State::apply`], with two steps saved: the account is the
    /// one decided on (checked by its id; looked up when it does not match), and the dedup window
    /// is not consulted nor filled. The event is new by construction (a repeat decides no event),
    /// and its copy read back from the log later applies as a no-op, as any event applied twice.
    pub fn apply_decided(
        &mut self,
        event: &AuthorizationEvent<'_>,
        account: Option<AccountIndex>,
    ) -> Result<Applied, EventError> {
        let account = account.filter(|index| {
            self.accounts
                .get(index.0 as usize)
                .is_some_and(|a| a.id() == event.account_id)
        });
        self.apply_authorization(event, account)
    }

    /// Recomputes an account's held cache at the watermark when a hold it counts may have
    /// expired (state time reached `next_expiry`) or the cache is not usable.
    fn refresh_held(&mut self, index: AccountIndex) {
        let account = &self.accounts[index.0 as usize];
        if account.held.is_valid() && self.watermark < account.held.next_expiry() {
            return;
        }
        let held = HeldCache::of(
            self.watermark,
            self.hold_lists
                .of(&account.holds)
                .iter()
                .map(|hold_id| &self.holds[hold_id]),
        );
        self.accounts[index.0 as usize].held = held;
    }

    pub(super) fn intern_account(&mut self, account_id: &str) -> Result<AccountIndex, EventError> {
        let hash = account_id_hash(account_id.as_bytes());
        let State {
            account_index,
            accounts,
            ..
        } = self;
        // One probe: the entry is either the account or the slot for it.
        let slot = match account_index.entry(
            hash,
            |i| accounts[i.0 as usize].id.as_bytes() == account_id.as_bytes(),
            |i| account_id_hash(accounts[i.0 as usize].id.as_bytes()),
        ) {
            hashbrown::hash_table::Entry::Occupied(entry) => return Ok(*entry.get()),
            hashbrown::hash_table::Entry::Vacant(slot) => slot,
        };
        if accounts.len() >= ACCOUNTS_MAX {
            return Err(EventError::CapacityExceeded {
                what: "accounts",
                limit: ACCOUNTS_MAX as u64,
            });
        }
        let index = AccountIndex(accounts.len() as u32);
        slot.insert(index);
        let capacity = accounts.capacity();
        self.placeholders += 1;
        accounts.push(Account {
            id: AccountIdText::new(account_id),
            version: Version(0),
            status: AccountStatus::Unknown,
            currency: Currency::default(),
            credit_limit: AmountMinor::ZERO,
            posted_balance: AmountMinor::ZERO,
            holds: AccountHolds::default(),
            held: HeldCache::EMPTY,
        });
        if accounts.capacity() != capacity {
            crate::table::advise_huge_pages(accounts);
        }
        Ok(index)
    }

    pub(super) fn intern_key_set(&mut self, name: &str) -> Result<u16, EventError> {
        if let Some(index) = self.key_set_index.get(name) {
            return Ok(*index);
        }
        if self.key_sets.len() >= KEY_SETS_MAX {
            return Err(EventError::CapacityExceeded {
                what: "key sets",
                limit: KEY_SETS_MAX as u64,
            });
        }
        let index = self.key_sets.len() as u16;
        self.key_sets.push(name.into());
        self.key_set_index.insert(name.into(), index);
        Ok(index)
    }

    pub(super) fn store_card_id(&mut self, card_id: &str) -> Result<ArenaText, EventError> {
        let len = u8::try_from(card_id.len()).map_err(|_| EventError::CapacityExceeded {
            what: "bytes in one card id",
            limit: 255,
        })?;
        if self.card_id_arena.len() + card_id.len() > CARD_ID_ARENA_MAX {
            return Err(EventError::CapacityExceeded {
                what: "bytes of card ids",
                limit: CARD_ID_ARENA_MAX as u64,
            });
        }
        let offset = self.card_id_arena.len() as u32;
        self.card_id_arena.extend_from_slice(card_id.as_bytes());
        Ok(ArenaText::new(offset, len))
    }

    fn apply_account(&mut self, e: &AccountUpserted<'_>) -> Result<Applied, EventError> {
        let index = self.intern_account(&e.account_id)?;
        let mut changed = false;
        // Postings clear holds whatever the version: removal is a set union, and the newest
        // balance already includes every hold an older posting cleared.
        let retain_until = UnixSeconds(e.at.0 + CLEARED_RETENTION_S);
        for hold_id in &e.cleared_holds {
            changed |= self.add_cleared(*hold_id, index, retain_until);
        }
        let candidate = (
            e.version,
            e.status,
            e.currency,
            e.credit_limit,
            e.posted_balance,
        );
        let account = &mut self.accounts[index.0 as usize];
        let was_placeholder = account.is_placeholder();
        if candidate > account.order_key() {
            account.version = e.version;
            account.status = e.status;
            account.currency = e.currency;
            account.credit_limit = e.credit_limit;
            account.posted_balance = e.posted_balance;
            changed = true;
        }
        assert!(!account.is_placeholder() || account.version == Version(0));
        match (was_placeholder, account.is_placeholder()) {
            (true, false) => self.placeholders -= 1,
            (false, true) => self.placeholders += 1,
            _ => {}
        }
        Ok(if changed {
            Applied::Changed
        } else {
            Applied::Unchanged
        })
    }

    fn apply_card(&mut self, e: &CardUpserted<'_>) -> Result<Applied, EventError> {
        if let Some(existing) = self.cards.get(&e.pan_hash) {
            if e.version < existing.version {
                return Ok(Applied::Unchanged);
            }
            if e.version == existing.version {
                // Tie-break on content so that every replica keeps the same card.
                let existing_key = (
                    self.account(existing.account).id(),
                    self.arena_text(existing.card_id),
                    existing.expiry,
                    existing.psn,
                    existing.status,
                    self.key_sets[usize::from(existing.key_set)].as_ref(),
                    existing.last4,
                );
                let candidate_key = (
                    e.account_id.as_ref(),
                    e.card_id.as_ref(),
                    e.expiry,
                    e.psn,
                    e.status,
                    e.key_set.as_ref(),
                    e.pan_last4,
                );
                if candidate_key <= existing_key {
                    return Ok(Applied::Unchanged);
                }
            }
        }
        let account = self.intern_account(&e.account_id)?;
        let key_set = self.intern_key_set(&e.key_set)?;
        let card_id = match self.cards.get(&e.pan_hash) {
            Some(existing) if self.arena_text(existing.card_id) == e.card_id.as_ref() => {
                existing.card_id
            }
            _ => self.store_card_id(&e.card_id)?,
        };
        // The highest ATC is the authorizers', not the cloud's: a new version keeps it, and a
        // new card takes the one its events gave before it arrived.
        let atc = match self.cards.get(&e.pan_hash) {
            Some(existing) => existing.atc(),
            None => self.pending_atcs.remove(&e.pan_hash),
        };
        let mut card = Card {
            account,
            card_id,
            status: e.status,
            psn: e.psn,
            key_set,
            expiry: e.expiry,
            last4: e.pan_last4,
            version: e.version,
            atc: 0,
            atc_seen: false,
        };
        card.raise_atc(atc);
        self.cards.insert(e.pan_hash, card);
        Ok(Applied::Changed)
    }

    /// Adds a cleared marker; returns whether anything changed.
    fn add_cleared(
        &mut self,
        hold_id: HoldId,
        account: AccountIndex,
        retain_until: UnixSeconds,
    ) -> bool {
        if retain_until <= self.watermark {
            return false;
        }
        let mut changed = false;
        match self.cleared.get(&hold_id).copied() {
            None => {
                self.cleared.insert(
                    hold_id,
                    Cleared {
                        account,
                        retain_until,
                    },
                );
                self.cleared_retirement
                    .push(Reverse((retain_until, hold_id)));
                changed = true;
            }
            Some(marker) => {
                // Merge by max of (retain_until, then the smaller account id): a max-semilattice,
                // so purging the parts whose retention passed gives the same marker in any order.
                let mut merged = marker;
                let smaller_account = self.accounts[account.0 as usize].id()
                    < self.accounts[marker.account.0 as usize].id();
                if retain_until > marker.retain_until
                    || (retain_until == marker.retain_until && smaller_account)
                {
                    merged = Cleared {
                        account,
                        retain_until,
                    };
                    if retain_until > marker.retain_until {
                        self.cleared_retirement
                            .push(Reverse((retain_until, hold_id)));
                    }
                }
                if merged != marker {
                    self.cleared.insert(hold_id, merged);
                    changed = true;
                }
            }
        }
        if let Some(hold) = self.holds.get_mut(&hold_id)
            && !hold.cleared
        {
            let before = *hold;
            hold.cleared = true;
            let after = *hold;
            let held = &mut self.accounts[after.account.0 as usize].held;
            held.remove(&before);
            held.add(&after);
            return true;
        }
        changed
    }

    /// `account`: the event's account when the caller knows it (checked by the caller).
    fn apply_authorization(
        &mut self,
        e: &AuthorizationEvent<'_>,
        account: Option<AccountIndex>,
    ) -> Result<Applied, EventError> {
        // A hold that has expired when it is placed holds nothing and would let the same money
        // be approved again: the event is wrong (its decision took the expiry from a stale time).
        if matches!(
            e.kind,
            AuthorizationKind::HoldPlaced | AuthorizationKind::HoldAdjusted
        ) && e.expires_at.is_some_and(|expires_at| expires_at <= e.at)
        {
            return Err(EventError::InvalidField {
                field: "expires_at",
                value: e.expires_at.map(|t| t.to_string()).unwrap_or_default(),
                expected: "an instant after `at`",
            });
        }
        let mut changed = false;
        // The event votes for the watermark with its `at`, but never further than a day past
        // the DE 7 it carries (the network's clock); the watermark is the quorum-th largest
        // vote, so no single event can drag it (`watermark.rs`).
        let vote = WatermarkVote {
            at: e.at.min(UnixSeconds(
                e.trace
                    .transmitted_at
                    .0
                    .saturating_add(WATERMARK_SKEW_MAX_S),
            )),
            hold_id: e.hold_id,
            kind: e.kind.code(),
        };
        if self.watermark_votes.add(vote) {
            changed = true;
            let watermark = self.watermark_votes.watermark();
            if watermark > self.watermark {
                self.watermark = watermark;
                self.retire();
            }
        }
        let transmitted_at = e.trace.transmitted_at;
        let retain_until = UnixSeconds(transmitted_at.0 + HOLD_RETENTION_S);
        if retain_until <= self.watermark {
            changed |= self.raise_card_atc(e);
            return Ok(if changed {
                Applied::Changed
            } else {
                Applied::Unchanged
            });
        }
        let account = match account {
            Some(index) => index,
            None => self.intern_account(&e.account_id)?,
        };
        changed |= self.raise_card_atc(e);
        let cleared = self.cleared.contains_key(&e.hold_id);
        let before = self.holds.get(&e.hold_id).copied();
        let mut hold = before.unwrap_or(Hold {
            account,
            parts: 0,
            cleared,
            decline_code: ResponseCode::APPROVED,
            auth_amount: AmountMinor::ZERO,
            advice_amount: AmountMinor::ZERO,
            remaining_cap: AmountMinor::new(AMOUNT_MINOR_MAX).expect("the max is in range"),
            expires_at: UnixSeconds(0),
            transmitted_at,
            fingerprint: 0,
        });
        if hold.account != account {
            // Parts disagree on the account (a card moved between the decisions): every replica
            // keeps the smaller account id.
            if *e.account_id < *self.accounts[hold.account.0 as usize].id() {
                self.unlink_hold(hold.account, e.hold_id);
                hold.account = account;
                if before.is_some() {
                    self.hold_lists
                        .link(&mut self.accounts[account.0 as usize].holds, e.hold_id);
                }
            }
        }
        if transmitted_at < hold.transmitted_at {
            hold.transmitted_at = transmitted_at;
            self.hold_retirement
                .push(Reverse((hold.retain_until(), e.hold_id)));
        }
        match e.kind {
            AuthorizationKind::HoldPlaced => {
                // The approval's fingerprint replaces a decline's (the approval is the answer a
                // repeat gets); approvals merge by max.
                let fingerprint = e.content_fingerprint.unwrap_or(0);
                hold.fingerprint = if hold.has(parts::AUTH) {
                    hold.fingerprint.max(fingerprint)
                } else {
                    fingerprint
                };
                hold.parts |= parts::AUTH;
                hold.auth_amount = hold.auth_amount.max(e.amount_minor);
                hold.expires_at = hold.expires_at.max(e.expires_at.unwrap_or(UnixSeconds(0)));
            }
            AuthorizationKind::HoldAdjusted => {
                hold.parts |= parts::ADVICE;
                let amount = if e.network_response_code == Some(ResponseCode::APPROVED) {
                    e.amount_minor
                } else {
                    AmountMinor::ZERO
                };
                hold.advice_amount = hold.advice_amount.max(amount);
                hold.expires_at = hold.expires_at.max(e.expires_at.unwrap_or(UnixSeconds(0)));
            }
            AuthorizationKind::HoldReleased => {
                hold.parts |= parts::RELEASE;
                let remaining = e.remaining_minor.unwrap_or(AmountMinor::ZERO);
                hold.remaining_cap = hold.remaining_cap.min(remaining);
            }
            AuthorizationKind::Declined => {
                let fingerprint = e.content_fingerprint.unwrap_or(0);
                if !hold.has(parts::AUTH) {
                    hold.fingerprint = if hold.has(parts::DECLINE) {
                        hold.fingerprint.max(fingerprint)
                    } else {
                        fingerprint
                    };
                }
                if hold.has(parts::DECLINE) {
                    hold.decline_code = hold.decline_code.max(e.response_code);
                } else {
                    hold.decline_code = e.response_code;
                }
                hold.parts |= parts::DECLINE;
            }
        }
        assert!(hold.parts & !parts::ALL == 0);
        assert!(!hold.remaining_cap.is_negative() && !hold.auth_amount.is_negative());
        if before == Some(hold) {
            return Ok(if changed {
                Applied::Changed
            } else {
                Applied::Unchanged
            });
        }
        if before.is_none() {
            self.hold_lists
                .link(&mut self.accounts[hold.account.0 as usize].holds, e.hold_id);
            self.hold_retirement
                .push(Reverse((hold.retain_until(), e.hold_id)));
        }
        self.holds.insert(e.hold_id, hold);
        if let Some(before) = before {
            self.accounts[before.account.0 as usize]
                .held
                .remove(&before);
        }
        self.accounts[hold.account.0 as usize].held.add(&hold);
        self.refresh_held(hold.account);
        Ok(Applied::Changed)
    }

    /// Raises the highest ATC of the event's card to the event's (a max: any order gives the
    /// same card); returns whether it changed. Not subject to the hold's retention: the counter
    /// outlives the holds of its card.
    fn raise_card_atc(&mut self, e: &AuthorizationEvent<'_>) -> bool {
        let Some(card_atc) = e.card_atc else {
            return false;
        };
        match self.cards.get_mut(&card_atc.pan_hash) {
            Some(card) => card.raise_atc(Some(card_atc.atc)),
            None => match self.pending_atcs.get_mut(&card_atc.pan_hash) {
                Some(pending) if *pending >= card_atc.atc => false,
                Some(pending) => {
                    *pending = card_atc.atc;
                    true
                }
                None => {
                    self.pending_atcs.insert(card_atc.pan_hash, card_atc.atc);
                    true
                }
            },
        }
    }

    fn unlink_hold(&mut self, account: AccountIndex, hold_id: HoldId) {
        self.hold_lists
            .unlink(&mut self.accounts[account.0 as usize].holds, hold_id);
    }

    /// Purges every record retained until at or before the watermark.
    fn retire(&mut self) {
        while let Some(Reverse((retain_until, hold_id))) = self.hold_retirement.peek().copied() {
            if retain_until > self.watermark {
                break;
            }
            self.hold_retirement.pop();
            if let Some(hold) = self.holds.get(&hold_id)
                && hold.retain_until() <= self.watermark
            {
                let hold = *hold;
                self.holds.remove(&hold_id);
                self.unlink_hold(hold.account, hold_id);
                self.accounts[hold.account.0 as usize].held.remove(&hold);
            }
        }
        while let Some(Reverse((retain_until, hold_id))) = self.cleared_retirement.peek().copied() {
            if retain_until > self.watermark {
                break;
            }
            self.cleared_retirement.pop();
            if let Some(marker) = self.cleared.get(&hold_id)
                && marker.retain_until <= self.watermark
            {
                self.cleared.remove(&hold_id);
            }
        }
    }
}
