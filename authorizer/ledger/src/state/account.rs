//! Accounts and cards as stored: an [`Account`] in one cache line (its id inline when short,
//! [`AccountIdText`]), its held cache ([`HeldCache`]: the sum of its holds, so that open-to-buy
//! reads no hold record), the hash of account ids in the account index, and the 32-byte
//! [`Card`] (its card id in the state's arena, [`ArenaText`]).
//!
//! Must never: grow an `Account` past 64 bytes or a `Card` past 32 (asserted at compile time
//! where it matters); let the held cache claim a sum it cannot vouch for (an unusable cache sends
//! open-to-buy to the hold records); put a replica-local field (the held cache, the hold list)
//! into what the state hash or a snapshot sees.

use std::fmt;

use crate::types::{
    AccountIndex, AccountStatus, AmountMinor, CardExpiry, CardStatus, Currency, PanSequence,
    TextHasher, UnixSeconds, Version,
};

use super::{AccountHolds, Hold};

/// An account. `Unknown` status with version 0 is a placeholder.
///
/// One cache line (64 bytes, aligned): a decision reads the account and nothing else of it.
/// Measured on 10 M accounts, the accounts were half of a snapshot read's memory at 112 bytes
/// each, and the kernel's zeroing of fresh pages a third of the restoring thread's time.
#[derive(Clone, Debug, PartialEq, Eq)]
#[repr(align(64))]
pub struct Account {
    pub(crate) id: AccountIdText,
    pub(crate) version: Version,
    pub(crate) credit_limit: AmountMinor,
    pub(crate) posted_balance: AmountMinor,
    /// The sum of its holds, kept up to date by `apply` so that open-to-buy does not read every
    /// hold record. Replica-local (not in the state hash nor in snapshots).
    pub(crate) held: HeldCache,
    /// Its hold records (in [`HoldLists`]), and how many.
    ///
    /// [`HoldLists`]: super::HoldLists
    pub(crate) holds: AccountHolds,
    pub(crate) currency: Currency,
    pub(crate) status: AccountStatus,
}

const _: () = assert!(std::mem::size_of::<Account>() == 64);

/// What an account's holds add up to, as of a state time: `sum_minor` is the sum of
/// [`Hold::amount`] over the account's holds with `expires_at > as_of`, and `next_expiry` is at
/// most the earliest `expires_at` (after `as_of`) of those that hold money. For any `now` with
/// `as_of <= now < next_expiry`, no hold that counted has expired, so the holds held at `now` sum
/// to `sum_minor` exactly; outside that window [`State::open_to_buy`] reads the holds. Updated
/// by every change of a hold (add the new hold's contribution, remove the old one's), refreshed
/// (recomputed at the watermark) when the watermark reaches `next_expiry`.
///
/// The two times are Unix seconds in a `u32` (to 2106), so that the account fits a cache line:
/// `as_of` is clamped into that range when the cache is computed (any `as_of` is correct, the
/// sum being of the holds that expire after it), and `next_expiry` is rounded down to it (a
/// shorter window is correct too); past 2106 the window is empty and open-to-buy reads the
/// holds.
///
/// [`State::open_to_buy`]: super::State::open_to_buy
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HeldCache {
    pub(super) as_of: u32,
    pub(super) next_expiry: u32,
    pub(super) sum_minor: i64,
}

impl HeldCache {
    /// No holds: valid for every time the cache can represent.
    pub(super) const EMPTY: HeldCache = HeldCache {
        as_of: 0,
        next_expiry: u32::MAX,
        sum_minor: 0,
    };
    /// Not usable (the sum overflowed `i64`): open-to-buy reads the holds until a refresh.
    const INVALID: HeldCache = HeldCache {
        as_of: u32::MAX,
        next_expiry: 0,
        sum_minor: 0,
    };

    /// `at` clamped into the cache's range.
    fn clamp(at: UnixSeconds) -> u32 {
        at.0.clamp(0, i64::from(u32::MAX)) as u32
    }

    pub(super) fn as_of(&self) -> UnixSeconds {
        UnixSeconds(i64::from(self.as_of))
    }

    pub(super) fn next_expiry(&self) -> UnixSeconds {
        UnixSeconds(i64::from(self.next_expiry))
    }

    pub(super) fn is_valid(&self) -> bool {
        *self != HeldCache::INVALID
    }

    fn contribution(&self, hold: &Hold) -> i64 {
        if hold.expires_at > self.as_of() {
            hold.amount().minor()
        } else {
            0
        }
    }

    pub(super) fn add(&mut self, hold: &Hold) {
        if !self.is_valid() {
            return;
        }
        let contribution = self.contribution(hold);
        match self.sum_minor.checked_add(contribution) {
            Some(sum) => self.sum_minor = sum,
            None => *self = HeldCache::INVALID,
        }
        if contribution > 0 {
            self.next_expiry = self.next_expiry.min(HeldCache::clamp(hold.expires_at));
        }
    }

    pub(super) fn remove(&mut self, hold: &Hold) {
        if !self.is_valid() {
            return;
        }
        match self.sum_minor.checked_sub(self.contribution(hold)) {
            Some(sum) => self.sum_minor = sum,
            None => *self = HeldCache::INVALID,
        }
    }

    /// The sum held at `now`, when this cache can tell.
    pub(super) fn held_at(&self, now: UnixSeconds) -> Option<i64> {
        (self.as_of() <= now && now < self.next_expiry()).then_some(self.sum_minor)
    }

    /// Recomputed from the holds, as of `as_of` (clamped).
    pub(super) fn of<'h>(as_of: UnixSeconds, holds: impl Iterator<Item = &'h Hold>) -> HeldCache {
        let mut cache = HeldCache {
            as_of: HeldCache::clamp(as_of),
            next_expiry: u32::MAX,
            sum_minor: 0,
        };
        let mut sum: i128 = 0;
        for hold in holds {
            let contribution = cache.contribution(hold);
            sum += i128::from(contribution);
            if contribution > 0 {
                cache.next_expiry = cache.next_expiry.min(HeldCache::clamp(hold.expires_at));
            }
        }
        match i64::try_from(sum) {
            Ok(sum) => HeldCache {
                sum_minor: sum,
                ..cache
            },
            Err(_) => HeldCache::INVALID,
        }
    }
}

impl Account {
    pub fn id(&self) -> &str {
        self.id.as_str()
    }
    pub fn version(&self) -> Version {
        self.version
    }
    pub fn status(&self) -> AccountStatus {
        self.status
    }
    pub fn currency(&self) -> Currency {
        self.currency
    }
    pub fn credit_limit(&self) -> AmountMinor {
        self.credit_limit
    }
    pub fn posted_balance(&self) -> AmountMinor {
        self.posted_balance
    }
    pub fn is_placeholder(&self) -> bool {
        self.status == AccountStatus::Unknown
    }

    /// The LWW order: version first, then content (a deterministic tie-break).
    pub(super) fn order_key(&self) -> (Version, AccountStatus, Currency, AmountMinor, AmountMinor) {
        (
            self.version,
            self.status,
            self.currency,
            self.credit_limit,
            self.posted_balance,
        )
    }
}

/// An account id, stored once: inline in the [`Account`] when it has at most
/// [`AccountIdText::INLINE_MAX`] bytes (no allocation, and the id shares the account's cache
/// line: `acc-000123` of the contract has 10), on the heap otherwise (behind a thin pointer, so
/// that the id takes 16 bytes either way). The account index refers to accounts by position
/// only.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum AccountIdText {
    Inline {
        len: u8,
        bytes: [u8; AccountIdText::INLINE_MAX],
    },
    Heap(Box<LongAccountId>),
}

/// An account id too long to be inline.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct LongAccountId(Box<str>);

const _: () = assert!(std::mem::size_of::<AccountIdText>() == 16);

impl AccountIdText {
    pub(crate) const INLINE_MAX: usize = 14;

    pub(super) fn new(id: &str) -> AccountIdText {
        if id.len() <= Self::INLINE_MAX {
            let mut bytes = [0u8; Self::INLINE_MAX];
            bytes[..id.len()].copy_from_slice(id.as_bytes());
            AccountIdText::Inline {
                len: id.len() as u8,
                bytes,
            }
        } else {
            AccountIdText::Heap(Box::new(LongAccountId(id.into())))
        }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            AccountIdText::Inline { len, bytes } => &bytes[..usize::from(*len)],
            AccountIdText::Heap(text) => text.0.as_bytes(),
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).expect("built from a str")
    }
}

impl fmt::Debug for AccountIdText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// The hash of an account id in the account index.
pub(super) fn account_id_hash(id: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut hasher = TextHasher::default();
    hasher.write(id);
    hasher.finish()
}

/// Reference to a card id inside the arena. Byte-aligned (5 bytes), so that a [`Card`] with
/// its ATC fits 32.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ArenaText {
    /// The offset, native-endian.
    offset: [u8; 4],
    pub(super) len: u8,
}

impl ArenaText {
    pub(super) fn new(offset: u32, len: u8) -> ArenaText {
        ArenaText {
            offset: offset.to_ne_bytes(),
            len,
        }
    }

    pub(super) fn offset(&self) -> u32 {
        u32::from_ne_bytes(self.offset)
    }
}

/// A card, stored in 32 bytes (plus its 32-byte key and its card id bytes in the arena).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Card {
    /// The highest ATC (9F36) of a verified ARQC any replica has decided for this card, valid
    /// when `atc_seen`: merged by max from the authorization events, never lowered by a
    /// `card.upserted`.
    pub(crate) atc: u16,
    pub(crate) atc_seen: bool,
    pub(crate) account: AccountIndex,
    pub(crate) card_id: ArenaText,
    pub(crate) status: CardStatus,
    pub(crate) psn: PanSequence,
    pub(crate) key_set: u16,
    pub(crate) expiry: CardExpiry,
    pub(crate) last4: [u8; 4],
    pub(crate) version: Version,
}

impl Card {
    pub fn account(&self) -> AccountIndex {
        self.account
    }
    pub fn status(&self) -> CardStatus {
        self.status
    }
    pub fn psn(&self) -> PanSequence {
        self.psn
    }
    pub fn expiry(&self) -> CardExpiry {
        self.expiry
    }
    pub fn version(&self) -> Version {
        self.version
    }
    pub fn last4(&self) -> [u8; 4] {
        self.last4
    }
    /// The highest ATC of a verified ARQC decided for this card (`None`: none yet).
    pub fn atc(&self) -> Option<u16> {
        self.atc_seen.then_some(self.atc)
    }

    /// Raises the highest ATC to `atc`; returns whether it changed.
    pub(super) fn raise_atc(&mut self, atc: Option<u16>) -> bool {
        if atc > self.atc() {
            self.atc = atc.unwrap_or(0);
            self.atc_seen = true;
            return true;
        }
        false
    }
}

const _: () = assert!(std::mem::size_of::<Card>() == 32);
