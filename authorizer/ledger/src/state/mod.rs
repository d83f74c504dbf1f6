//! The open-to-buy state and `apply`.
//!
//! # Convergence (why two replicas that applied the same events agree)
//!
//! Every piece of state is a join of the events that touched it (last writer wins by `version`
//! for accounts and cards, the max for a card's highest ATC, merged parts for holds, a
//! remove-wins set for cleared holds, the largest votes for the watermark), so the order of
//! application does not matter. The rules are in `apply.rs`, the hold parts in `hold.rs`.
//!
//! # Time and cleanup
//!
//! Nothing here reads a clock: time is an argument ([`State::open_to_buy`] takes `now`) or an
//! event's `at`. Records leave by one deterministic rule, the watermark (`apply.rs`, read from the
//! votes of `watermark.rs` so that no single event can drag it), so the state
//! after any prefix of the log is "the join of the events applied, minus what the watermark
//! retired", the same whatever the order.
//!
//! # Dedup window
//!
//! Recent event ids are remembered and a repeat is reported [`Applied::Unchanged`] without work
//! (`dedup.rs`): an optimisation and a report, not the guarantee (every rule is idempotent).
//!
//! # Files
//!
//! This file: the [`State`] itself, its configuration, constants and read accessors. Then
//! `account.rs` (accounts, cards, the held cache), `hold.rs` (hold records, hold lists, cleared
//! markers), `dedup.rs` (the dedup window), `apply.rs` (applying events), `record.rs`
//! (canonical records and the state hash), `invariants.rs` (the structural checks) and
//! `restore.rs` (rebuilding a state from snapshot records).
//!
//! Must never: read a clock, do I/O, or let the order in which events are applied change the
//! state (the state hash and snapshots depend on it).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use super::table::KeyTable;
use super::types::{
    AccountIndex, HoldId, OpenToBuy, PanHash, PanHashBuildHasher, TextBuildHasher, UnixSeconds,
};

mod account;
mod apply;
mod dedup;
mod hold;
mod invariants;
mod record;
mod restore;
mod watermark;

use account::account_id_hash;
pub use account::{Account, Card};
pub(crate) use account::{AccountIdText, ArenaText, HeldCache};
use dedup::DedupWindow;
pub(crate) use hold::{AccountHolds, Cleared, HoldLists};
pub use hold::{Hold, parts};
pub use record::StateHash;
pub(crate) use record::{LaneSum, grouped_to_canonical};
pub(crate) use restore::{
    PendingCard, RecordCheck, Restore, RestoreCards, RestoreError, RestoredAccount,
    RestoredAccountRef, RestoredCard,
};
pub use watermark::{WATERMARK_QUORUM, WatermarkVote, WatermarkVotes};

/// How long a hold record (approval, advice, reversal, decline) is kept after the DE 7 of its
/// request: longer than any hold lives (see [`HOLD_DURATION_MAX_S`]), so that a late reversal
/// or repeat still finds it. A constant of the log format: every replica must use the same.
pub const HOLD_RETENTION_S: i64 = 45 * 86_400;
/// The longest a hold may count against open-to-buy (decide's merchant-category table is
/// validated against it): retention minus a week for late reversals.
pub const HOLD_DURATION_MAX_S: i64 = HOLD_RETENTION_S - 7 * 86_400;
/// How long a cleared-hold marker is kept after its posting's `at` (one day more than holds).
pub const CLEARED_RETENTION_S: i64 = HOLD_RETENTION_S + 86_400;
/// How far past its DE 7 an authorizer event may move the watermark.
pub const WATERMARK_SKEW_MAX_S: i64 = 86_400;
/// Bound on distinct key-set names.
pub const KEY_SETS_MAX: usize = u16::MAX as usize;
/// Bound on accounts (indices are `u32`).
pub const ACCOUNTS_MAX: usize = u32::MAX as usize - 1;
/// Bound on the card-id arena (offsets are `u32`).
const CARD_ID_ARENA_MAX: usize = u32::MAX as usize;

/// Configuration of the ledger. Must be identical on every replica only where noted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerConfig {
    /// Number of event ids remembered for dedup (1..=16,777,216). Replica-local.
    pub dedup_window_events: usize,
}

impl LedgerConfig {
    pub const DEDUP_WINDOW_MAX: usize = 1 << 24;
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            dedup_window_events: 1 << 20,
        }
    }
}

/// What `apply` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    Changed,
    /// A duplicate, a stale version, a part already known, or a part past retention.
    Unchanged,
}

/// Sizes of the state, for metrics, `/state` and snapshot headers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Accounts the cloud has upserted.
    pub accounts: u64,
    /// Accounts named by a card or hold but not upserted yet (not in the state hash; replica-local:
    /// a replica that saw a hold before it retired keeps its placeholder).
    pub account_placeholders: u64,
    pub cards: u64,
    /// Hold records (any part: approval, advice, reversal, decline).
    pub holds: u64,
    /// Cleared-hold markers (tombstones from postings).
    pub cleared_markers: u64,
    /// Highest ATCs of cards not upserted yet (see [`State::pending_atc`]).
    pub pending_atcs: u64,
    /// Distinct key-set names seen (replica-local: names no card uses any more stay interned).
    pub key_sets: u64,
    /// Event ids currently in the dedup window (not part of the state).
    pub dedup_window: u64,
}

/// The stages of [`State::prefetch`] (`decide::Prepared::prefetch`), in the order a request goes
/// through them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrefetchStage {
    /// The index cache lines of the card and of the hold.
    Index,
    /// The card and hold records (their index lines should be loaded by now).
    Records,
    /// The card's account (the card record should be loaded by now).
    Account,
}

/// The whole open-to-buy state. Single writer; see the module documentation for the rules.
#[derive(Debug)]
pub struct State {
    config: LedgerConfig,
    pub(crate) accounts: Vec<Account>,
    /// Positions in `accounts`, found by the id stored there (each id is stored once).
    account_index: hashbrown::HashTable<AccountIndex>,
    pub(crate) cards: KeyTable<PanHash, Card>,
    card_id_arena: Vec<u8>,
    pub(crate) key_sets: Vec<Box<str>>,
    key_set_index: HashMap<Box<str>, u16, TextBuildHasher>,
    pub(crate) holds: KeyTable<HoldId, Hold>,
    /// The hold ids of each account ([`Account::holds`]).
    pub(crate) hold_lists: HoldLists,
    hold_retirement: BinaryHeap<Reverse<(UnixSeconds, HoldId)>>,
    pub(crate) cleared: HashMap<HoldId, Cleared, PanHashBuildHasher>,
    /// The highest ATC of cards the state does not know yet (an authorization event applied
    /// before its card's `card.upserted`): moved into the card when it arrives, so that the
    /// order of the two topics does not matter. Only cards some replica knew when it decided
    /// are named here, so the map empties as the cloud's topic catches up.
    pub(crate) pending_atcs: HashMap<PanHash, u16, PanHashBuildHasher>,
    cleared_retirement: BinaryHeap<Reverse<(UnixSeconds, HoldId)>>,
    /// The [`WATERMARK_QUORUM`]-th largest vote of the applied authorizer events (`watermark.rs`);
    /// records retained until at or before it go.
    pub(crate) watermark: UnixSeconds,
    pub(crate) watermark_votes: WatermarkVotes,
    dedup: DedupWindow,
    /// Accounts with status `Unknown` (named by a card or hold, not upserted yet), kept so that
    /// [`State::counts`] reads no account.
    placeholders: usize,
}

impl State {
    pub fn new(config: LedgerConfig) -> State {
        let dedup = DedupWindow::new(config.dedup_window_events);
        State {
            config,
            accounts: Vec::new(),
            account_index: hashbrown::HashTable::new(),
            cards: KeyTable::new(),
            card_id_arena: Vec::new(),
            key_sets: Vec::new(),
            key_set_index: HashMap::default(),
            holds: KeyTable::new(),
            hold_lists: HoldLists::default(),
            hold_retirement: BinaryHeap::new(),
            cleared: HashMap::default(),
            pending_atcs: HashMap::default(),
            cleared_retirement: BinaryHeap::new(),
            watermark: UnixSeconds(0),
            watermark_votes: WatermarkVotes::default(),
            dedup,
            placeholders: 0,
        }
    }

    pub fn config(&self) -> &LedgerConfig {
        &self.config
    }

    /// Reserves room for `accounts` accounts and `cards` cards (snapshot restore, benchmarks).
    pub fn reserve(&mut self, accounts: usize, cards: usize) {
        self.accounts.reserve_exact(accounts);
        super::table::advise_huge_pages(&self.accounts);
        let State {
            account_index,
            accounts: stored,
            ..
        } = self;
        account_index.reserve(accounts, |i| {
            account_id_hash(stored[i.0 as usize].id.as_bytes())
        });
        self.cards.reserve(cards);
        self.card_id_arena.reserve(cards.saturating_mul(12));
    }

    /// The watermark: the [`WATERMARK_QUORUM`]-th largest distinct vote `min(at, transmitted_at +
    /// 1 day)` of the applied authorizer events (0 until there are that many).
    pub fn watermark(&self) -> UnixSeconds {
        self.watermark
    }

    /// The votes the watermark is read from (the largest [`WATERMARK_QUORUM`]).
    pub fn watermark_votes(&self) -> &WatermarkVotes {
        &self.watermark_votes
    }

    pub fn account_by_id(&self, account_id: &str) -> Option<AccountIndex> {
        self.find_account(account_id)
    }

    pub fn account(&self, index: AccountIndex) -> &Account {
        &self.accounts[index.0 as usize]
    }

    /// How many hold records an account of this state has (read from the account itself unless
    /// it has 255 or more).
    pub fn hold_count(&self, account: &Account) -> usize {
        self.hold_lists.count(&account.holds)
    }

    /// Whether the account has at least `max` holds that count with money at `now` (approvals
    /// and approved advices not reversed to zero, cleared or expired). Declined, released and
    /// expired records do not count, so that declined requests can never make an account
    /// unusable; they are bounded by their retention. Reads the account's hold list only when
    /// it has `max` records or more, and stops at the `max`-th live one.
    pub fn live_holds_reach(&self, index: AccountIndex, now: UnixSeconds, max: usize) -> bool {
        let account = self.account(index);
        if self.hold_lists.count(&account.holds) < max {
            return false;
        }
        self.hold_lists
            .of(&account.holds)
            .iter()
            .filter(|hold_id| self.holds[*hold_id].is_live_at(now))
            .nth(max.saturating_sub(1))
            .is_some()
    }

    /// How many of the account's holds count with money at `now` (what `/accounts/{id}` shows as
    /// `holds`): approvals and approved advices not reversed to zero, cleared or expired.
    pub fn live_hold_count(&self, index: AccountIndex, now: UnixSeconds) -> usize {
        let account = self.account(index);
        self.hold_lists
            .of(&account.holds)
            .iter()
            .filter(|hold_id| self.holds[*hold_id].is_live_at(now))
            .count()
    }

    pub fn card(&self, pan_hash: &PanHash) -> Option<&Card> {
        self.cards.get(pan_hash)
    }

    pub fn card_id(&self, card: &Card) -> &str {
        self.arena_text(card.card_id)
    }

    pub fn key_set_name(&self, card: &Card) -> &str {
        &self.key_sets[usize::from(card.key_set)]
    }

    pub fn hold(&self, hold_id: &HoldId) -> Option<&Hold> {
        self.holds.get(hold_id)
    }

    /// Starts loading the records a decision on this card and hold will read (see
    /// `decide::Prepared::prefetch`). A hint: changes nothing.
    pub fn prefetch(&self, pan_hash: &PanHash, hold_id: Option<&HoldId>, stage: PrefetchStage) {
        match stage {
            PrefetchStage::Index => {
                self.cards.prefetch_slot(pan_hash);
                if let Some(hold_id) = hold_id {
                    self.holds.prefetch_slot(hold_id);
                }
            }
            PrefetchStage::Records => {
                self.cards.prefetch_entry(pan_hash);
                if let Some(hold_id) = hold_id {
                    self.holds.prefetch_entry(hold_id);
                }
            }
            PrefetchStage::Account => {
                if let Some(card) = self.cards.get(pan_hash) {
                    super::table::prefetch(&self.accounts[card.account.0 as usize]);
                }
            }
        }
    }

    /// The highest ATC the authorizers' events gave for a card this state does not know yet
    /// (it becomes the card's when its `card.upserted` arrives).
    pub fn pending_atc(&self, pan_hash: &PanHash) -> Option<u16> {
        self.pending_atcs.get(pan_hash).copied()
    }

    pub fn is_cleared(&self, hold_id: &HoldId) -> bool {
        self.cleared.contains_key(hold_id)
    }

    /// credit_limit − posted_balance − Σ holds of the account active at `now`.
    pub fn open_to_buy(&self, index: AccountIndex, now: UnixSeconds) -> OpenToBuy {
        let account = self.account(index);
        let held = match account.held.held_at(now) {
            Some(sum) => {
                debug_assert_eq!(
                    i128::from(sum),
                    self.held_by_reading_holds(account, now),
                    "held cache of {}",
                    account.id()
                );
                i128::from(sum)
            }
            None => self.held_by_reading_holds(account, now),
        };
        OpenToBuy(
            i128::from(account.credit_limit.minor())
                - i128::from(account.posted_balance.minor())
                - held,
        )
    }

    fn held_by_reading_holds(&self, account: &Account, now: UnixSeconds) -> i128 {
        self.hold_lists
            .of(&account.holds)
            .iter()
            .map(|hold_id| i128::from(self.holds[hold_id].held_at(now).minor()))
            .sum()
    }

    /// Sizes of the state. Constant time (metrics and `/state` read it often).
    pub fn counts(&self) -> Counts {
        let placeholders = self.placeholders;
        Counts {
            accounts: (self.accounts.len() - placeholders) as u64,
            account_placeholders: placeholders as u64,
            cards: self.cards.len() as u64,
            holds: self.holds.len() as u64,
            cleared_markers: self.cleared.len() as u64,
            pending_atcs: self.pending_atcs.len() as u64,
            key_sets: self.key_sets.len() as u64,
            dedup_window: self.dedup.len() as u64,
        }
    }

    fn arena_text(&self, text: ArenaText) -> &str {
        std::str::from_utf8(self.arena_bytes(text)).expect("the arena holds whole UTF-8 strings")
    }

    fn arena_bytes(&self, text: ArenaText) -> &[u8] {
        let start = text.offset() as usize;
        &self.card_id_arena[start..start + usize::from(text.len)]
    }

    fn find_account(&self, account_id: &str) -> Option<AccountIndex> {
        self.find_account_hashed(account_id, account_id_hash(account_id.as_bytes()))
    }

    fn find_account_hashed(&self, account_id: &str, hash: u64) -> Option<AccountIndex> {
        self.account_index
            .find(hash, |i| {
                self.accounts[i.0 as usize].id.as_bytes() == account_id.as_bytes()
            })
            .copied()
    }
}
