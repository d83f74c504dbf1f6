//! Canonical records and the state hash: the bytes of each account, card, hold record and cleared
//! marker ([`State::for_each_record`]), the snapshot's grouped form of them
//! ([`State::for_each_snapshot_record`], [`grouped_to_canonical`]), and the order-independent
//! [`StateHash`] over them ([`LaneSum`]).
//!
//! Must never: name an account or key set by a local index (records carry ids), depend on map
//! order or on replica-local fields (placeholders, held caches, the dedup window), or change a
//! byte of a record without a new hash version (replicas and snapshots compare them).

use std::fmt;

use sha2::{Digest, Sha256};

use crate::types::{HoldId, PanHash};

use super::{Account, Card, Cleared, Hold, State, WatermarkVotes};

/// The order-independent hash of the whole state (32 bytes, hex in `Display`; see `LaneSum`
/// for how it is computed: version `authorizer.state-hash.v4`).
///
/// Version 4 (snapshot format 4): the card record ends with the card's highest ATC (a flag
/// byte, then u16), the hold record with its content fingerprint (u64), and the pending ATCs
/// of cards not upserted yet are records of their own (`T`). Version 3 had neither.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct StateHash(pub [u8; 32]);

impl fmt::Display for StateHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for StateHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StateHash({self})")
    }
}

impl State {
    /// The hash of the whole state, independent of map order and of the order events were
    /// applied in: the wrapping sum of one 128-bit XXH3 digest per record (accounts except
    /// placeholders, cards, hold records, cleared markers, pending ATCs), then SHA-256 over that
    /// sum, the number of records and the watermark votes (version 4; version 1 summed a
    /// SHA-256 per record).
    /// Records name accounts and key sets by their ids, never by local indices.
    pub fn state_hash(&self) -> StateHash {
        let mut sum = LaneSum::default();
        let result: Result<(), std::convert::Infallible> = self.for_each_record(|record| {
            sum.add(record);
            Ok(())
        });
        match result {
            Ok(()) => {}
            Err(never) => match never {},
        }
        sum.finish(&self.watermark_votes)
    }

    /// Calls `f` with the canonical bytes of every record of the state, in kind order (accounts
    /// except placeholders, cards, hold records, cleared markers), each kind in map order. These
    /// bytes feed the state hash; the snapshot body writes the same records grouped by account
    /// ([`State::for_each_snapshot_record`]), and its reader hashes the canonical form again.
    pub(crate) fn for_each_record<E>(
        &self,
        mut f: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut buffer = Vec::with_capacity(256);
        for account in &self.accounts {
            if !account.is_placeholder() {
                buffer.clear();
                self.account_record(account, &mut buffer);
                f(&buffer)?;
            }
        }
        for (pan_hash, card) in self.cards.iter() {
            buffer.clear();
            self.card_record(pan_hash, card, &mut buffer);
            f(&buffer)?;
        }
        for (hold_id, hold) in &self.holds {
            buffer.clear();
            self.hold_record(hold_id, hold, &mut buffer);
            f(&buffer)?;
        }
        self.each_cleared_record(&mut buffer, &mut f)
    }

    /// Calls `f` with every record of a snapshot body, grouped by account: each upserted account's
    /// `A` record is followed by its cards and its hold records in *grouped* form (tag `c` / `h`:
    /// the canonical record without the account id, which the group gives); then the cards
    /// (`C`) and holds (`H`) of placeholder accounts and the cleared markers (`X`) in canonical
    /// form. [`grouped_to_canonical`] gives back the canonical bytes the state hash covers.
    /// Needs a temporary index of 16 bytes per card (the cards map is keyed by PAN hash).
    pub(crate) fn for_each_snapshot_record<E>(
        &self,
        mut f: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        // Counting sort of the cards by account: `ends[i]` ends account i's run in `grouped`.
        assert!(
            u32::try_from(self.cards.len()).is_ok(),
            "card count fits the index"
        );
        let mut ends = vec![0u32; self.accounts.len()];
        for (_, card) in self.cards.iter() {
            ends[card.account.0 as usize] += 1;
        }
        let mut total = 0u32;
        for end in &mut ends {
            total += *end;
            *end = total - *end; // the run's start, advanced to its end while filling
        }
        assert_eq!(total as usize, self.cards.len());
        let mut grouped: Vec<Option<(&PanHash, &Card)>> = vec![None; self.cards.len()];
        for (pan_hash, card) in self.cards.iter() {
            let slot = &mut ends[card.account.0 as usize];
            grouped[*slot as usize] = Some((pan_hash, card));
            *slot += 1;
        }
        let mut buffer = Vec::with_capacity(256);
        let runs = || {
            let mut start = 0usize;
            ends.iter().map(move |end| {
                let run = start..*end as usize;
                start = *end as usize;
                run
            })
        };
        for (account, run) in self.accounts.iter().zip(runs()) {
            if account.is_placeholder() {
                continue;
            }
            buffer.clear();
            self.account_record(account, &mut buffer);
            f(&buffer)?;
            for entry in &grouped[run] {
                let (pan_hash, card) = entry.expect("every slot of a run is filled");
                buffer.clear();
                self.card_record(pan_hash, card, &mut buffer);
                canonical_to_grouped(&mut buffer);
                f(&buffer)?;
            }
            for hold_id in self.hold_lists.of(&account.holds) {
                buffer.clear();
                self.hold_record(hold_id, &self.holds[hold_id], &mut buffer);
                canonical_to_grouped(&mut buffer);
                f(&buffer)?;
            }
        }
        for (account, run) in self.accounts.iter().zip(runs()) {
            if account.is_placeholder() {
                for entry in &grouped[run] {
                    let (pan_hash, card) = entry.expect("every slot of a run is filled");
                    buffer.clear();
                    self.card_record(pan_hash, card, &mut buffer);
                    f(&buffer)?;
                }
            }
        }
        for account in self.accounts.iter().filter(|a| a.is_placeholder()) {
            for hold_id in self.hold_lists.of(&account.holds) {
                buffer.clear();
                self.hold_record(hold_id, &self.holds[hold_id], &mut buffer);
                f(&buffer)?;
            }
        }
        self.each_cleared_record(&mut buffer, &mut f)
    }

    /// The cleared-marker records then the pending ATCs, last in both the hash order and the
    /// snapshot order.
    fn each_cleared_record<E>(
        &self,
        buffer: &mut Vec<u8>,
        f: &mut impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        for (hold_id, marker) in &self.cleared {
            buffer.clear();
            self.cleared_record(hold_id, marker, buffer);
            f(buffer)?;
        }
        for (pan_hash, atc) in &self.pending_atcs {
            buffer.clear();
            pending_atc_record(pan_hash, *atc, buffer);
            f(buffer)?;
        }
        Ok(())
    }

    pub(super) fn account_record(&self, account: &Account, b: &mut Vec<u8>) {
        b.push(b'A');
        put_text(b, account.id.as_bytes());
        b.extend_from_slice(&account.version.0.to_be_bytes());
        b.push(account.status as u8);
        b.extend_from_slice(&account.currency.code().to_be_bytes());
        b.extend_from_slice(&account.credit_limit.minor().to_be_bytes());
        b.extend_from_slice(&account.posted_balance.minor().to_be_bytes());
    }

    pub(super) fn card_record(&self, pan_hash: &PanHash, card: &Card, b: &mut Vec<u8>) {
        b.push(b'C');
        b.extend_from_slice(&pan_hash.0);
        put_text(b, self.accounts[card.account.0 as usize].id.as_bytes());
        put_text(b, self.arena_bytes(card.card_id));
        b.extend_from_slice(&card.version.0.to_be_bytes());
        b.extend_from_slice(&card.expiry.to_yymm());
        b.push(card.psn.0);
        b.push(card.status as u8);
        put_text(b, self.key_sets[usize::from(card.key_set)].as_bytes());
        b.extend_from_slice(&card.last4);
        b.push(u8::from(card.atc_seen));
        b.extend_from_slice(&card.atc.to_be_bytes());
    }

    pub(super) fn hold_record(&self, hold_id: &HoldId, hold: &Hold, b: &mut Vec<u8>) {
        b.push(b'H');
        b.extend_from_slice(&hold_id.0);
        put_text(b, self.accounts[hold.account.0 as usize].id.as_bytes());
        b.push(hold.parts);
        b.push(u8::from(hold.cleared));
        b.extend_from_slice(&hold.decline_code.0);
        b.extend_from_slice(&hold.auth_amount.minor().to_be_bytes());
        b.extend_from_slice(&hold.advice_amount.minor().to_be_bytes());
        b.extend_from_slice(&hold.remaining_cap.minor().to_be_bytes());
        b.extend_from_slice(&hold.expires_at.0.to_be_bytes());
        b.extend_from_slice(&hold.transmitted_at.0.to_be_bytes());
        b.extend_from_slice(&hold.fingerprint.to_be_bytes());
    }

    pub(super) fn cleared_record(&self, hold_id: &HoldId, marker: &Cleared, b: &mut Vec<u8>) {
        b.push(b'X');
        b.extend_from_slice(&hold_id.0);
        put_text(b, self.accounts[marker.account.0 as usize].id.as_bytes());
        b.extend_from_slice(&marker.retain_until.0.to_be_bytes());
    }
}

/// The record of the highest ATC of a card the state does not know yet: `T`, PAN hash, ATC.
pub(super) fn pending_atc_record(pan_hash: &PanHash, atc: u16, b: &mut Vec<u8>) {
    b.push(b'T');
    b.extend_from_slice(&pan_hash.0);
    b.extend_from_slice(&atc.to_be_bytes());
}

/// Bytes between the tag and the account id in the canonical record of a kind that snapshots
/// group by account (`C` card: the PAN hash; `H` hold: the hold id).
pub(crate) fn grouped_key_len(canonical_tag: u8) -> Option<usize> {
    match canonical_tag {
        b'C' => Some(32),
        b'H' => Some(16),
        _ => None,
    }
}

/// `C`/`H` canonical record → `c`/`h` grouped record (the account id cut out).
fn canonical_to_grouped(b: &mut Vec<u8>) {
    let key = grouped_key_len(b[0]).expect("only cards and holds are grouped");
    let at = 1 + key;
    let len = u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes")) as usize;
    b.drain(at..at + 4 + len);
    b[0] = b[0].to_ascii_lowercase();
}

/// `c`/`h` grouped record + its group's account id → the canonical `C`/`H` record, in `out`.
/// `None` when the record is not a grouped kind or is shorter than its key.
pub(crate) fn grouped_to_canonical(
    grouped: &[u8],
    account_id: &[u8],
    out: &mut Vec<u8>,
) -> Option<()> {
    let tag = grouped.first()?.to_ascii_uppercase();
    if grouped[0] == tag {
        return None;
    }
    let at = 1 + grouped_key_len(tag)?;
    if grouped.len() < at {
        return None;
    }
    out.clear();
    out.push(tag);
    out.extend_from_slice(&grouped[1..at]);
    put_text(out, account_id);
    out.extend_from_slice(&grouped[at..]);
    Some(())
}

fn put_text(b: &mut Vec<u8>, text: &[u8]) {
    let len = u32::try_from(text.len()).expect("ids are bounded far below 4 GiB");
    b.extend_from_slice(&len.to_be_bytes());
    b.extend_from_slice(text);
}

/// The order-independent sum behind [`StateHash`] (version 4): the wrapping (mod 2^128) sum of
/// one 128-bit XXH3 digest per record, and the number of records; [`LaneSum::finish`] hashes
/// both with the watermark through SHA-256.
///
/// XXH3-128 (not SHA-256 per record, as version 1 did) because a snapshot read hashes ~21 M
/// records: SHA-256 was ~85 ns a record (measured, with the SHA extensions), XXH3 is ~10. It
/// is not a cryptographic hash: the state hash detects accidental differences between replicas
/// (a bug, a corrupt file that passed its checksums), which a 128-bit digest does with
/// probability 2^-128 per difference; it is no defence against someone forging a state.
#[derive(Default)]
pub(crate) struct LaneSum {
    sum: u128,
    records: u64,
}

impl LaneSum {
    pub(crate) fn finish(&self, votes: &WatermarkVotes) -> StateHash {
        let mut sha = Sha256::new();
        sha.update(b"authorizer.state-hash.v4\0");
        sha.update(self.sum.to_be_bytes());
        sha.update(self.records.to_be_bytes());
        sha.update(votes.watermark().0.to_be_bytes());
        sha.update((votes.largest().len() as u64).to_be_bytes());
        for vote in votes.largest() {
            sha.update(vote.at.0.to_be_bytes());
            sha.update(vote.hold_id.0);
            sha.update([vote.kind]);
        }
        StateHash(sha.finalize().into())
    }

    pub(crate) fn add(&mut self, record: &[u8]) {
        self.sum = self.sum.wrapping_add(xxhash_rust::xxh3::xxh3_128(record));
        self.records += 1;
    }
}
