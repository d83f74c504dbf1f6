//! Rebuilding a [`State`] from snapshot records ([`Restore`], and [`RestoreCards`] for the
//! cards table on the reader's other thread), with the big tables' inserts deferred and done in
//! the order of their home buckets.
//!
//! Must never: accept a record whose restored entity does not encode back to the record's bytes
//! ([`RecordCheck`]), let a duplicate account, card or hold pass, or report another error than
//! the first failing record in file order.

use std::cmp::Reverse;

use crate::table::UniformKey;
use crate::types::{
    AccountIndex, AccountStatus, AmountMinor, CardExpiry, CardStatus, Currency, HoldId, PanHash,
    PanSequence, UnixSeconds, Version,
};

use super::{
    ACCOUNTS_MAX, Account, AccountHolds, AccountIdText, Card, Cleared, HeldCache, Hold,
    LedgerConfig, State, WatermarkVotes, account_id_hash, parts,
};

/// A state being rebuilt from snapshot records, in file order.
///
/// The inserts into the big tables are deferred (measured on 10 M accounts and cards: done one
/// record at a time, the account index and card inserts were two thirds of the reading
/// thread's time, a cache and TLB miss or two each): the account index's and the hold
/// records' are done a batch at a time by [`Restore::flush`], the accounts' in the order of
/// their home buckets ([`bucket_order`]); the cards go to [`RestoreCards`] (on the other
/// thread of the reader). A record that names its account by id flushes the accounts first,
/// so it finds every account restored before it. Every restored entity is encoded again and
/// must give its record's bytes ([`RecordCheck`]).
pub(crate) struct Restore {
    state: State,
    /// Accounts stored but not yet in the account index.
    unindexed: Vec<Unindexed>,
    /// Scratch for sorting `unindexed`.
    unindexed_sorted: Vec<Unindexed>,
    /// Cards restored, for [`RestoreCards`] to insert (on the other thread).
    cards: Vec<PendingCard>,
    /// The key set of the last card restored.
    last_key_set: Option<u16>,
    holds: Vec<(u64, HoldId, Hold)>,
    /// The pending ATC records restored: their record numbers and cards.
    pending_atc_records: Vec<(u64, PanHash)>,
}

/// A restored card not yet in the cards table: its record number (for errors), key and value.
pub(crate) type PendingCard = (u64, PanHash, Card);

/// The cards table of a state being restored, filled on another thread than the [`Restore`]
/// that decodes the cards (the snapshot reader's two threads share the work so: the inserts
/// into a 10 M-entry table are the biggest single cost of a read). It keeps the table in an
/// otherwise empty `State` (so that it needs nothing of the table's type but its methods) and
/// moves it into the restored state at the end ([`RestoreCards::finish`]).
pub(crate) struct RestoreCards {
    shell: State,
    pending: Vec<PendingCard>,
    sorted: Vec<PendingCard>,
    /// The first duplicate found, in file order.
    error: Option<RestoreError>,
}

impl RestoreCards {
    /// Cards kept before they are inserted in bucket order (36 MiB, and as much to sort them).
    const PENDING_MAX: usize = 1 << 19;

    pub(crate) fn new(config: LedgerConfig, cards: usize) -> RestoreCards {
        let mut shell = State::new(config);
        shell.cards.reserve(cards);
        RestoreCards {
            shell,
            pending: Vec::new(),
            sorted: Vec::new(),
            error: None,
        }
    }

    /// Takes the cards of `batch` (leaving it empty).
    pub(crate) fn add(&mut self, batch: &mut Vec<PendingCard>) {
        self.pending.append(batch);
        if self.pending.len() >= Self::PENDING_MAX {
            self.flush();
        }
    }

    /// Inserts the pending cards, in the order of their home buckets (see [`bucket_order`]).
    pub(crate) fn flush(&mut self) {
        // In the order of their home slots in the cards table's index (reserved for all of them).
        let order = bucket_order(
            &self.pending,
            &mut self.sorted,
            self.shell.cards.index_slots(),
            |(_, pan_hash, _)| u64::from(pan_hash.bits()),
        );
        for &(record, pan_hash, card) in order {
            if self.shell.cards.insert(pan_hash, card).is_some()
                && self.error.is_none_or(|(earlier, _)| record < earlier)
            {
                self.error = Some((record, "duplicate card record"));
            }
        }
        self.pending.clear();
    }

    /// The first duplicate card so far (in file order), after a [`RestoreCards::flush`].
    pub(crate) fn error(&self) -> Option<RestoreError> {
        self.error
    }

    /// Moves the cards into `state` (restored by the [`Restore`] that decoded them), whose
    /// pending ATCs (`pending_atcs`: their records and cards) must name none of them.
    pub(crate) fn finish(
        mut self,
        state: &mut State,
        pending_atcs: &[(u64, PanHash)],
    ) -> Result<(), RestoreError> {
        self.flush();
        if let Some(error) = self.error {
            return Err(error);
        }
        assert_eq!(state.cards.len(), 0, "the cards are restored here only");
        std::mem::swap(&mut state.cards, &mut self.shell.cards);
        match pending_atcs
            .iter()
            .find(|(_, pan_hash)| state.cards.get(pan_hash).is_some())
        {
            Some((record, _)) => Err((*record, "pending ATC of a card the snapshot has")),
            None => Ok(()),
        }
    }
}

/// The number of buckets of a power-of-two hash table with room for `n` entries at 7/8 load
/// (hashbrown's sizing: the account index).
fn table_buckets(n: usize) -> usize {
    (n.saturating_mul(8) / 7).max(1).next_power_of_two()
}

/// `items` in the order of their home buckets in a table of `buckets` (a power of two) buckets
/// indexed by the low bits of `hash` (hashbrown's layout, and `KeyTable`'s index), by a counting sort on the buckets'
/// top 10 bits into `sorted` (1,024 bins: the sort's writes stay in the cache). Inserted in that order, consecutive inserts touch nearby memory
/// instead of one random cache line and page each of a table of up to a GiB (measured on 10 M
/// accounts: the account index's inserts went from ~4.6 s to ~0.9 s of CPU). The order only
/// affects speed: a table with another layout gets the same entries.
fn bucket_order<'a, T: Copy>(
    items: &'a [T],
    sorted: &'a mut Vec<T>,
    buckets: usize,
    hash: impl Fn(&T) -> u64,
) -> &'a [T] {
    const BIN_BITS: u32 = 10;
    let bucket_bits = buckets.trailing_zeros();
    let Some(&first) = items.first() else {
        return items;
    };
    if bucket_bits <= BIN_BITS || items.len() < 1 << 10 {
        return items;
    }
    let shift = bucket_bits - BIN_BITS;
    let mask = buckets as u64 - 1;
    let bin = |item: &T| ((hash(item) & mask) >> shift) as usize;
    let mut starts = vec![0u32; 1 << BIN_BITS];
    for item in items {
        starts[bin(item)] += 1;
    }
    let mut total = 0u32;
    for start in &mut starts {
        let count = *start;
        *start = total;
        total += count;
    }
    sorted.clear();
    sorted.resize(items.len(), first);
    for item in items {
        let slot = &mut starts[bin(item)];
        sorted[*slot as usize] = *item;
        *slot += 1;
    }
    sorted
}

/// The error of the first record in file order, if any.
fn first_error<const N: usize>(results: [Result<(), RestoreError>; N]) -> Result<(), RestoreError> {
    results
        .into_iter()
        .filter_map(Result::err)
        .min_by_key(|(record, _)| *record)
        .map_or(Ok(()), Err)
}

/// An account restored but not yet in the account index, with a copy of its id when short
/// (the inserts run in another order than the accounts were stored: reading the id from the
/// account would be a cache miss each).
#[derive(Clone, Copy)]
struct Unindexed {
    hash: u64,
    /// The record it came from (for errors).
    record: u64,
    index: AccountIndex,
    /// `id_len` bytes of `id` are the id; 0: the id is longer, read it from the account.
    id_len: u8,
    id: [u8; Unindexed::ID_MAX],
}

impl Unindexed {
    const ID_MAX: usize = 27;

    fn id<'a>(&'a self, accounts: &'a [Account]) -> &'a [u8] {
        if self.id_len == 0 {
            accounts[self.index.0 as usize].id.as_bytes()
        } else {
            &self.id[..usize::from(self.id_len)]
        }
    }
}

/// A restore error: the record it is about, and why.
pub(crate) type RestoreError = (u64, &'static str);

impl Restore {
    /// Deferred hold inserts kept before [`Restore::push`] flushes by itself (bounds their
    /// memory to ~0.3 MiB).
    const PENDING_MAX: usize = 4096;
    /// Deferred account-index inserts kept before [`Restore::push`] flushes (12 MiB, and as
    /// much to sort them): a flush inserts them in the order of their home buckets (see
    /// [`Restore::flush_accounts`]).
    const UNINDEXED_MAX: usize = 1 << 18;

    /// An empty state with room for what a snapshot header announces, so that no table grows
    /// while the snapshot is read.
    pub(crate) fn new(
        config: LedgerConfig,
        accounts: usize,
        cards: usize,
        holds: usize,
    ) -> Restore {
        let mut state = State::new(config);
        // The cards table is [`RestoreCards`]'s.
        state.reserve(accounts, 0);
        state.card_id_arena.reserve(cards.saturating_mul(12));
        state.holds.reserve(holds);
        Restore {
            state,
            unindexed: Vec::with_capacity(Self::UNINDEXED_MAX),
            unindexed_sorted: Vec::new(),
            cards: Vec::new(),
            last_key_set: None,
            holds: Vec::with_capacity(Self::PENDING_MAX),
            pending_atc_records: Vec::new(),
        }
    }

    /// Restores an upserted account (`record` is its record number, for errors).
    pub(crate) fn account(
        &mut self,
        record: u64,
        account: RestoredAccount<'_>,
        check: &mut RecordCheck<'_>,
    ) -> Result<AccountIndex, &'static str> {
        let state = &mut self.state;
        if state.accounts.len() >= ACCOUNTS_MAX {
            return Err("too many accounts");
        }
        let stored = Account {
            id: AccountIdText::new(account.id),
            version: account.version,
            status: account.status,
            currency: account.currency,
            credit_limit: account.credit_limit,
            posted_balance: account.posted_balance,
            holds: AccountHolds::default(),
            held: HeldCache::EMPTY,
        };
        if stored.is_placeholder() {
            return Err("account record with status unknown");
        }
        check.scratch.clear();
        state.account_record(&stored, check.scratch);
        check.verify()?;
        let index = AccountIndex(state.accounts.len() as u32);
        let id = stored.id.as_bytes();
        let mut unindexed = Unindexed {
            hash: account_id_hash(id),
            record,
            index,
            id_len: 0,
            id: [0; Unindexed::ID_MAX],
        };
        if id.len() <= Unindexed::ID_MAX {
            unindexed.id_len = id.len() as u8;
            unindexed.id[..id.len()].copy_from_slice(id);
        }
        self.unindexed.push(unindexed);
        state.accounts.push(stored);
        Ok(index)
    }

    pub(crate) fn card(
        &mut self,
        record: u64,
        card: RestoredCard<'_>,
        check: &mut RecordCheck<'_>,
    ) -> Result<(), &'static str> {
        let account = self.account_ref(card.account)?;
        let state = &mut self.state;
        // Cards share a few key sets, and runs of cards one: skip the lookup of the last one.
        let key_set = match self.last_key_set {
            Some(index) if *state.key_sets[usize::from(index)] == *card.key_set => index,
            _ => {
                let index = state
                    .intern_key_set(card.key_set)
                    .map_err(|_| "too many key sets")?;
                self.last_key_set = Some(index);
                index
            }
        };
        let card_id = state
            .store_card_id(card.card_id)
            .map_err(|_| "card id too long")?;
        let stored = Card {
            account,
            card_id,
            status: card.status,
            psn: card.psn,
            key_set,
            expiry: card.expiry,
            last4: card.last4,
            version: card.version,
            atc: card.atc.unwrap_or(0),
            atc_seen: card.atc.is_some(),
        };
        check.scratch.clear();
        state.card_record(&card.pan_hash, &stored, check.scratch);
        check.verify()?;
        self.cards.push((record, card.pan_hash, stored));
        Ok(())
    }

    pub(crate) fn hold(
        &mut self,
        record: u64,
        hold_id: HoldId,
        account: RestoredAccountRef<'_>,
        mut hold: Hold,
        check: &mut RecordCheck<'_>,
    ) -> Result<(), &'static str> {
        if hold.parts == 0 || hold.parts & !parts::ALL != 0 {
            return Err("hold record with invalid parts");
        }
        hold.account = self.account_ref(account)?;
        check.scratch.clear();
        self.state.hold_record(&hold_id, &hold, check.scratch);
        check.verify()?;
        self.holds.push((record, hold_id, hold));
        Ok(())
    }

    pub(crate) fn cleared(
        &mut self,
        hold_id: HoldId,
        account_id: &str,
        retain_until: UnixSeconds,
        check: &mut RecordCheck<'_>,
    ) -> Result<(), &'static str> {
        self.flush_accounts().map_err(|(_, reason)| reason)?;
        let state = &mut self.state;
        if state.cleared.contains_key(&hold_id) {
            return Err("duplicate cleared marker");
        }
        let account = state
            .intern_account(account_id)
            .map_err(|_| "too many accounts")?;
        let marker = Cleared {
            account,
            retain_until,
        };
        state.cleared.insert(hold_id, marker);
        state
            .cleared_retirement
            .push(Reverse((retain_until, hold_id)));
        check.scratch.clear();
        state.cleared_record(&hold_id, &marker, check.scratch);
        check.verify()
    }

    /// The highest ATC of a card the snapshot does not have (checked by
    /// [`RestoreCards::finish`], which has the cards).
    pub(crate) fn pending_atc(
        &mut self,
        record: u64,
        pan_hash: PanHash,
        atc: u16,
        check: &mut RecordCheck<'_>,
    ) -> Result<(), &'static str> {
        if self.state.pending_atcs.insert(pan_hash, atc).is_some() {
            return Err("duplicate pending ATC");
        }
        self.pending_atc_records.push((record, pan_hash));
        check.scratch.clear();
        super::record::pending_atc_record(&pan_hash, atc, check.scratch);
        check.verify()
    }

    /// The pending ATCs restored (record number, card), for [`RestoreCards::finish`].
    pub(crate) fn take_pending_atcs(&mut self) -> Vec<(u64, PanHash)> {
        std::mem::take(&mut self.pending_atc_records)
    }

    /// Flushes when enough inserts are pending; call after each record.
    pub(crate) fn push(&mut self) -> Result<(), RestoreError> {
        if self.holds.len() >= Self::PENDING_MAX {
            self.flush_holds()?;
        }
        if self.unindexed.len() >= Self::UNINDEXED_MAX {
            self.flush_accounts()?;
        }
        Ok(())
    }

    /// Does the pending inserts. On error, the first failing record in file order.
    pub(crate) fn flush(&mut self) -> Result<(), RestoreError> {
        let accounts = self.flush_accounts();
        let holds = self.flush_holds();
        first_error([accounts, holds])
    }

    /// The cards restored since the last call, for [`RestoreCards::add`] (`empty`: an empty
    /// vector to keep the next ones in, so that their memory is reused).
    pub(crate) fn take_cards(&mut self, empty: Vec<PendingCard>) -> Vec<PendingCard> {
        debug_assert!(empty.is_empty());
        std::mem::replace(&mut self.cards, empty)
    }

    /// The rebuilt state (after a last flush), its watermark set; without its cards (see
    /// [`RestoreCards::finish`]). Every card must have been taken ([`Restore::take_cards`]).
    pub(crate) fn finish(mut self, votes: WatermarkVotes) -> Result<State, RestoreError> {
        assert!(self.cards.is_empty(), "every restored card was taken");
        self.flush()?;
        self.state.watermark = votes.watermark();
        self.state.watermark_votes = votes;
        Ok(self.state)
    }

    /// The account a grouped record belongs to (its group's), or the one a canonical record
    /// names (interned as a placeholder if no record restored it).
    fn account_ref(
        &mut self,
        account: RestoredAccountRef<'_>,
    ) -> Result<AccountIndex, &'static str> {
        match account {
            RestoredAccountRef::Group(index) => {
                if (index.0 as usize) < self.state.accounts.len() {
                    Ok(index)
                } else {
                    Err("grouped record outside an account group")
                }
            }
            RestoredAccountRef::Id(id) => {
                self.flush_accounts().map_err(|(_, reason)| reason)?;
                self.state
                    .intern_account(id)
                    .map_err(|_| "too many accounts")
            }
        }
    }

    /// Inserts the pending accounts into the account index, in the order of their home buckets
    /// (see [`bucket_order`]). Every insert still checks for a duplicate id.
    fn flush_accounts(&mut self) -> Result<(), RestoreError> {
        if self.unindexed.is_empty() {
            return Ok(());
        }
        let State {
            account_index,
            accounts,
            ..
        } = &mut self.state;
        let buckets = table_buckets(account_index.capacity().max(accounts.len()));
        let order = bucket_order(&self.unindexed, &mut self.unindexed_sorted, buckets, |u| {
            u.hash
        });
        let mut first: Option<RestoreError> = None;
        for u in order {
            let id = u.id(accounts);
            match account_index.entry(
                u.hash,
                |i| accounts[i.0 as usize].id.as_bytes() == id,
                |i| account_id_hash(accounts[i.0 as usize].id.as_bytes()),
            ) {
                hashbrown::hash_table::Entry::Occupied(_) => {
                    // Not in file order: keep the first duplicate in file order.
                    if first.is_none_or(|(record, _)| u.record < record) {
                        first = Some((u.record, "duplicate account record"));
                    }
                }
                hashbrown::hash_table::Entry::Vacant(slot) => {
                    slot.insert(u.index);
                }
            }
        }
        self.unindexed.clear();
        first.map_or(Ok(()), Err)
    }

    fn flush_holds(&mut self) -> Result<(), RestoreError> {
        let state = &mut self.state;
        let mut result = Ok(());
        for &(record, hold_id, hold) in &self.holds {
            if state.holds.insert(hold_id, hold).is_some() {
                result = Err((record, "duplicate hold record"));
                break;
            }
            let account = &mut state.accounts[hold.account.0 as usize];
            state.hold_lists.link(&mut account.holds, hold_id);
            account.held.add(&hold);
            state
                .hold_retirement
                .push(Reverse((hold.retain_until(), hold_id)));
        }
        self.holds.clear();
        result
    }
}

/// The record a snapshot entity was restored from, and a scratch buffer: the restored entity is
/// encoded again and must give the same bytes (this proves the decoder and the restore lost
/// nothing, while the entity is still in cache; the bytes read are what the state hash covers).
pub(crate) struct RecordCheck<'a> {
    pub record: &'a [u8],
    pub scratch: &'a mut Vec<u8>,
}

impl RecordCheck<'_> {
    fn verify(&self) -> Result<(), &'static str> {
        if self.scratch.as_slice() == self.record {
            Ok(())
        } else {
            Err("the restored entity does not encode back to its record")
        }
    }
}

pub(crate) struct RestoredAccount<'a> {
    pub id: &'a str,
    pub version: Version,
    pub status: AccountStatus,
    pub currency: Currency,
    pub credit_limit: AmountMinor,
    pub posted_balance: AmountMinor,
}

/// How a restored record names its account.
#[derive(Clone, Copy, Debug)]
pub(crate) enum RestoredAccountRef<'a> {
    /// Grouped record: the account of the group it is in.
    Group(AccountIndex),
    /// Canonical record: the account id it carries.
    Id(&'a str),
}

pub(crate) struct RestoredCard<'a> {
    pub pan_hash: PanHash,
    pub account: RestoredAccountRef<'a>,
    pub card_id: &'a str,
    pub version: Version,
    pub expiry: CardExpiry,
    pub psn: PanSequence,
    pub status: CardStatus,
    pub key_set: &'a str,
    pub last4: [u8; 4],
    pub atc: Option<u16>,
}
