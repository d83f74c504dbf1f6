//! Hold records and their parts ([`Hold`], [`parts`]), the lists of each account's holds
//! ([`HoldLists`], [`AccountHolds`]) and the cleared-hold markers of postings ([`Cleared`]).
//!
//! A hold record is keyed by its [`HoldId`] and merges parts, each by a join (see `apply.rs`):
//! the approval (amount by max), the advice (overrides the approval's amount, by max), reversals
//! (the remaining amount by min), the decline; the content fingerprint a repeat must match (the
//! approvals' max, else the declines'). Its retention (`transmitted_at +
//! HOLD_RETENTION_S`) is the same for every part.
//!
//! Must never: list a hold under another account than its record's, lose or repeat a hold id in
//! a list (the count and the list agree), or free a list slot that an account still points to.

use std::num::NonZeroU32;

use crate::types::{AccountIndex, AmountMinor, HoldId, ResponseCode, UnixSeconds};

use super::HOLD_RETENTION_S;

/// Where an account's hold records are listed ([`HoldLists`]), and how many there are: exact
/// up to 254, 255 meaning "255 or more, count the list" (a decision checks the count against
/// `holds_per_account_max` from the account's own cache line). Byte-aligned (5 bytes) so that
/// the account fits 64.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct AccountHolds {
    /// The list's id, native-endian; 0: no list.
    list: [u8; 4],
    count: u8,
}

impl AccountHolds {
    fn list(&self) -> Option<NonZeroU32> {
        NonZeroU32::new(u32::from_ne_bytes(self.list))
    }

    fn set_list(&mut self, list: Option<NonZeroU32>) {
        self.list = list.map_or(0, NonZeroU32::get).to_ne_bytes();
    }
}

/// The hold lists of the accounts that have holds, out of line so that an [`Account`] fits a
/// cache line (most accounts hold nothing at a time). Slot 0 is unused (a list id is non-zero);
/// emptied slots are reused.
///
/// [`Account`]: super::Account
#[derive(Clone, Debug, Default)]
pub(crate) struct HoldLists {
    lists: Vec<HoldList>,
    free: Vec<NonZeroU32>,
}

/// One account's hold ids. Most accounts hold one at a time: that one is kept in the slot
/// itself, without an allocation (24 bytes either way).
#[derive(Clone, Debug, Default)]
enum HoldList {
    #[default]
    Empty,
    One(HoldId),
    Many(Vec<HoldId>),
}

const _: () = assert!(std::mem::size_of::<HoldList>() == 24);

impl HoldList {
    fn ids(&self) -> &[HoldId] {
        match self {
            HoldList::Empty => &[],
            HoldList::One(id) => std::slice::from_ref(id),
            HoldList::Many(ids) => ids,
        }
    }
}

impl HoldLists {
    /// The hold ids of an account (unordered).
    pub(crate) fn of(&self, holds: &AccountHolds) -> &[HoldId] {
        match holds.list() {
            Some(list) => self.lists[list.get() as usize].ids(),
            None => &[],
        }
    }

    pub(crate) fn count(&self, holds: &AccountHolds) -> usize {
        if holds.count < u8::MAX {
            usize::from(holds.count)
        } else {
            self.of(holds).len()
        }
    }

    /// Adds a hold to an account's list.
    pub(super) fn link(&mut self, holds: &mut AccountHolds, hold_id: HoldId) {
        let list = match holds.list() {
            Some(list) => list,
            None => {
                let list = self.free.pop().unwrap_or_else(|| {
                    if self.lists.is_empty() {
                        self.lists.push(HoldList::Empty);
                    }
                    let list = u32::try_from(self.lists.len())
                        .ok()
                        .and_then(NonZeroU32::new)
                        .expect("fewer hold lists than holds");
                    self.lists.push(HoldList::Empty);
                    list
                });
                holds.set_list(Some(list));
                list
            }
        };
        let slot = &mut self.lists[list.get() as usize];
        *slot = match std::mem::take(slot) {
            HoldList::Empty => HoldList::One(hold_id),
            HoldList::One(first) => HoldList::Many(vec![first, hold_id]),
            HoldList::Many(mut ids) => {
                ids.push(hold_id);
                HoldList::Many(ids)
            }
        };
        holds.count = slot.ids().len().min(usize::from(u8::MAX)) as u8;
    }

    pub(super) fn unlink(&mut self, holds: &mut AccountHolds, hold_id: HoldId) {
        let Some(list) = holds.list() else {
            return;
        };
        let slot = &mut self.lists[list.get() as usize];
        match slot {
            HoldList::One(id) if *id == hold_id => *slot = HoldList::Empty,
            HoldList::Many(ids) => {
                if let Some(position) = ids.iter().position(|h| *h == hold_id) {
                    ids.swap_remove(position);
                }
                if ids.is_empty() {
                    *slot = HoldList::Empty;
                }
            }
            _ => {}
        }
        holds.count = slot.ids().len().min(usize::from(u8::MAX)) as u8;
        if matches!(slot, HoldList::Empty) {
            holds.set_list(None);
            self.free.push(list);
        }
    }
}

/// Which parts a hold record has merged.
pub mod parts {
    pub const AUTH: u8 = 1;
    pub const ADVICE: u8 = 2;
    pub const RELEASE: u8 = 4;
    pub const DECLINE: u8 = 8;
    pub const ALL: u8 = AUTH | ADVICE | RELEASE | DECLINE;
}

/// A hold record: 56 bytes plus its 16-byte id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hold {
    pub(crate) account: AccountIndex,
    pub(crate) parts: u8,
    pub(crate) cleared: bool,
    /// DE 39 of a recorded decline (`00` when none).
    pub(crate) decline_code: ResponseCode,
    pub(crate) auth_amount: AmountMinor,
    pub(crate) advice_amount: AmountMinor,
    /// At most this stays held (`AMOUNT_MINOR_MAX` when no reversal).
    pub(crate) remaining_cap: AmountMinor,
    /// The hold stops counting at this instant (0 when neither approval nor advice is known).
    pub(crate) expires_at: UnixSeconds,
    /// DE 7 of the request with its year; fixes the retention.
    pub(crate) transmitted_at: UnixSeconds,
    /// The content fingerprint of the authorization the record answers
    /// (`decide::content_fingerprint`: DE 3, DE 4, DE 49, DE 6, DE 51), that a repeat must
    /// match: the approval's when there is one, else the decline's (each merged by max, so
    /// the record is a function of its parts); 0 when no event said (never a fingerprint).
    pub(crate) fingerprint: u64,
}

const _: () = assert!(std::mem::size_of::<Hold>() == 56);

impl Hold {
    pub fn account(&self) -> AccountIndex {
        self.account
    }
    pub fn has(&self, part: u8) -> bool {
        self.parts & part != 0
    }
    pub fn is_cleared(&self) -> bool {
        self.cleared
    }
    pub fn decline_code(&self) -> Option<ResponseCode> {
        self.has(parts::DECLINE).then_some(self.decline_code)
    }
    pub fn parts(&self) -> u8 {
        self.parts
    }
    /// At most this stays held after reversals
    /// ([`AMOUNT_MINOR_MAX`](crate::types::AMOUNT_MINOR_MAX) when none).
    pub fn remaining_cap(&self) -> AmountMinor {
        self.remaining_cap
    }
    /// The content fingerprint a repeat must match (`None` when no event carried one).
    pub fn fingerprint(&self) -> Option<u64> {
        (self.fingerprint != 0).then_some(self.fingerprint)
    }
    /// The approved amount (zero without an approval part).
    pub fn auth_amount(&self) -> AmountMinor {
        self.auth_amount
    }
    /// Whether the hold counts against open-to-buy at `now` with money (an approval or an
    /// approved advice, not reversed to zero, not cleared, not expired).
    pub fn is_live_at(&self, now: UnixSeconds) -> bool {
        self.held_at(now) != AmountMinor::ZERO
    }
    pub fn expires_at(&self) -> UnixSeconds {
        self.expires_at
    }
    pub fn transmitted_at(&self) -> UnixSeconds {
        self.transmitted_at
    }
    pub fn retain_until(&self) -> UnixSeconds {
        UnixSeconds(self.transmitted_at.0 + HOLD_RETENTION_S)
    }

    /// The amount held before expiry: the advice's if any, else the approval's, capped by
    /// reversals; zero once cleared by a posting.
    pub fn amount(&self) -> AmountMinor {
        if self.cleared {
            return AmountMinor::ZERO;
        }
        let base = if self.has(parts::ADVICE) {
            self.advice_amount
        } else if self.has(parts::AUTH) {
            self.auth_amount
        } else {
            AmountMinor::ZERO
        };
        base.min(self.remaining_cap)
    }

    /// The amount that counts against open-to-buy at `now`.
    pub fn held_at(&self, now: UnixSeconds) -> AmountMinor {
        if now >= self.expires_at {
            return AmountMinor::ZERO;
        }
        self.amount()
    }
}

/// A cleared-hold marker (a posting named the hold).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cleared {
    pub(crate) account: AccountIndex,
    pub(crate) retain_until: UnixSeconds,
}

#[cfg(test)]
mod hold_lists_tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Each account's list and count follow a model of plain vectors, past the 255 that the
        /// count keeps inline, and emptied lists are reused.
        #[test]
        fn lists_follow_a_model(
            ops in proptest::collection::vec((0usize..3, 0u8..6), 0..2000),
        ) {
            let mut lists = HoldLists::default();
            let mut holds = [AccountHolds::default(); 3];
            let mut model: [Vec<HoldId>; 3] = Default::default();
            let mut next = 0u32;
            for (account, op) in ops {
                // Mostly links, so that accounts pass 255 holds; an unlink takes the oldest.
                if op > 0 {
                    let mut id = [0u8; 16];
                    id[..4].copy_from_slice(&next.to_le_bytes());
                    next += 1;
                    lists.link(&mut holds[account], HoldId(id));
                    model[account].push(HoldId(id));
                } else if let Some(&id) = model[account].first() {
                    lists.unlink(&mut holds[account], id);
                    model[account].remove(0);
                }
                prop_assert_eq!(lists.count(&holds[account]), model[account].len());
                prop_assert_eq!(holds[account].list().is_some(), !model[account].is_empty());
                // Slot 0 and one list per account that holds something, at most.
                prop_assert!(lists.lists.len() <= 1 + 3);
            }
            for (a, expected) in model.iter().enumerate() {
                let mut listed = lists.of(&holds[a]).to_vec();
                let mut expected = expected.clone();
                listed.sort();
                expected.sort();
                prop_assert_eq!(listed, expected);
            }
        }
    }

    #[test]
    fn an_account_with_300_holds_counts_them_all() {
        let mut lists = HoldLists::default();
        let mut holds = AccountHolds::default();
        for i in 0..300u16 {
            let mut id = [0u8; 16];
            id[..2].copy_from_slice(&i.to_le_bytes());
            lists.link(&mut holds, HoldId(id));
            assert_eq!(lists.count(&holds), usize::from(i) + 1);
        }
        assert_eq!(holds.count, u8::MAX);
        for i in 0..300u16 {
            let mut id = [0u8; 16];
            id[..2].copy_from_slice(&i.to_le_bytes());
            lists.unlink(&mut holds, HoldId(id));
            assert_eq!(lists.count(&holds), 299 - usize::from(i));
        }
        assert_eq!(holds, AccountHolds::default());
    }
}
