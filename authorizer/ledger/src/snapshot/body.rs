//! The body's records, one at a time: a bounds-checked cursor over a record's bytes, and the
//! decoding of each canonical record (account, card, hold, cleared marker) into the state
//! being restored.
//!
//! Must never: read past a record's end, accept a field outside its bounds, or restore an
//! entity that does not encode back to exactly the record's bytes (the restore checks it).

use super::{RECORD_LEN_MAX, RecordCounts, SnapshotError};
use crate::state::{
    Hold, RecordCheck, Restore, RestoreError, RestoredAccount, RestoredAccountRef, RestoredCard,
};
use crate::{
    AccountIndex, AccountStatus, AmountMinor, CardExpiry, CardStatus, Currency, HoldId, PanHash,
    PanSequence, ResponseCode, UnixSeconds, Version,
};

/// A cursor over one record's bytes; every read is bounds-checked.
pub(super) struct Cursor<'a> {
    pub(super) bytes: &'a [u8],
    pub(super) record: u64,
}

impl<'a> Cursor<'a> {
    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], SnapshotError> {
        if self.bytes.len() < n {
            return Err(SnapshotError::RecordInvalid {
                record: self.record,
                reason: "record shorter than its fields",
            });
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }
    pub(super) fn u8(&mut self) -> Result<u8, SnapshotError> {
        Ok(self.take(1)?[0])
    }
    pub(super) fn u16(&mut self) -> Result<u16, SnapshotError> {
        Ok(u16::from_be_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }
    pub(super) fn u32(&mut self) -> Result<u32, SnapshotError> {
        Ok(u32::from_be_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    pub(super) fn u64(&mut self) -> Result<u64, SnapshotError> {
        Ok(u64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    pub(super) fn i64(&mut self) -> Result<i64, SnapshotError> {
        Ok(self.u64()? as i64)
    }
    pub(super) fn array<const N: usize>(&mut self) -> Result<[u8; N], SnapshotError> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }
    pub(super) fn text(&mut self) -> Result<&'a str, SnapshotError> {
        let len = self.u32()? as usize;
        if len == 0 || len > 255 {
            return Err(self.invalid("text length out of 1..=255"));
        }
        let bytes = self.take(len)?;
        crate::utf8(bytes).map_err(|_| self.invalid("text is not UTF-8"))
    }
    pub(super) fn amount(&mut self) -> Result<AmountMinor, SnapshotError> {
        let value = self.i64()?;
        AmountMinor::new(value).ok_or_else(|| self.invalid("amount out of bounds"))
    }
    pub(super) fn invalid(&self, reason: &'static str) -> SnapshotError {
        SnapshotError::RecordInvalid {
            record: self.record,
            reason,
        }
    }
    pub(super) fn finish(&self) -> Result<(), SnapshotError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(self.invalid("bytes left over in record"))
        }
    }
}

pub(super) fn restore_error((record, reason): RestoreError) -> SnapshotError {
    SnapshotError::RecordInvalid { record, reason }
}

/// Restores one canonical record; `Some(account)` when it opens a group.
pub(super) fn restore_record(
    restore: &mut Restore,
    record: &[u8],
    index: u64,
    in_group: Option<AccountIndex>,
    counts: &mut RecordCounts,
    scratch: &mut Vec<u8>,
) -> Result<Option<AccountIndex>, SnapshotError> {
    let mut c = Cursor {
        bytes: &record[1..],
        record: index,
    };
    let mut check = RecordCheck { record, scratch };
    let mut opened = None;
    match record[0] {
        b'A' => {
            counts.accounts += 1;
            opened = Some(restore_account(restore, &mut c, &mut check)?);
        }
        b'C' => {
            counts.cards += 1;
            restore_card(restore, &mut c, in_group, &mut check)?;
        }
        b'H' => {
            counts.holds += 1;
            restore_hold(restore, &mut c, in_group, &mut check)?;
        }
        b'X' => {
            counts.cleared_markers += 1;
            restore_cleared(restore, &mut c, &mut check)?;
        }
        b'T' => {
            counts.pending_atcs += 1;
            let pan_hash = PanHash(c.array::<32>()?);
            let atc = c.u16()?;
            restore
                .pending_atc(c.record, pan_hash, atc, &mut check)
                .map_err(|reason| c.invalid(reason))?;
        }
        _ => unreachable!("the scanner passes on only known canonical tags"),
    }
    c.finish()?;
    Ok(opened)
}

pub(super) fn check_record_len(len: u32, index: u64) -> Result<(), SnapshotError> {
    if len == 0 || len > RECORD_LEN_MAX {
        return Err(SnapshotError::RecordInvalid {
            record: index,
            reason: "record length out of 1..=65536",
        });
    }
    Ok(())
}

/// The account id of an `A` record (`None` if the record is too short to hold it).
pub(super) fn account_record_id(record: &[u8]) -> Option<&[u8]> {
    let (len, rest) = record.get(1..)?.split_first_chunk::<4>()?;
    rest.get(..u32::from_be_bytes(*len) as usize)
}

fn restore_account(
    restore: &mut Restore,
    c: &mut Cursor<'_>,
    check: &mut RecordCheck<'_>,
) -> Result<AccountIndex, SnapshotError> {
    let id = c.text()?;
    let version = Version(c.u64()?);
    let status = AccountStatus::from_u8(c.u8()?).ok_or_else(|| c.invalid("account status"))?;
    let currency = Currency::new(c.u16()?).ok_or_else(|| c.invalid("currency"))?;
    let credit_limit = c.amount()?;
    let posted_balance = c.amount()?;
    restore
        .account(
            c.record,
            RestoredAccount {
                id,
                version,
                status,
                currency,
                credit_limit,
                posted_balance,
            },
            check,
        )
        .map_err(|reason| c.invalid(reason))
}

/// A card record; `group`: the account of the group a grouped record is in.
fn restore_card(
    restore: &mut Restore,
    c: &mut Cursor<'_>,
    group: Option<AccountIndex>,
    check: &mut RecordCheck<'_>,
) -> Result<(), SnapshotError> {
    let pan_hash = PanHash(c.array::<32>()?);
    let account_id = c.text()?;
    let account = group.map_or(
        RestoredAccountRef::Id(account_id),
        RestoredAccountRef::Group,
    );
    let card_id = c.text()?;
    let version = Version(c.u64()?);
    let expiry =
        CardExpiry::parse_yymm(&c.array::<4>()?).ok_or_else(|| c.invalid("card expiry"))?;
    let psn = c.u8()?;
    if psn > 99 {
        return Err(c.invalid("psn above 99"));
    }
    let status = CardStatus::from_u8(c.u8()?).ok_or_else(|| c.invalid("card status"))?;
    let key_set = c.text()?;
    let last4 = c.array::<4>()?;
    if !last4.iter().all(u8::is_ascii_digit) {
        return Err(c.invalid("pan_last4 not digits"));
    }
    let atc = match (c.u8()?, c.u16()?) {
        (0, 0) => None,
        (1, atc) => Some(atc),
        _ => return Err(c.invalid("card ATC flag not 0 or 1, or an ATC without it")),
    };
    restore
        .card(
            c.record,
            RestoredCard {
                pan_hash,
                account,
                card_id,
                version,
                expiry,
                psn: PanSequence(psn),
                status,
                key_set,
                last4,
                atc,
            },
            check,
        )
        .map_err(|reason| c.invalid(reason))
}

/// A hold record; `group`: the account of the group a grouped record is in.
fn restore_hold(
    restore: &mut Restore,
    c: &mut Cursor<'_>,
    group: Option<AccountIndex>,
    check: &mut RecordCheck<'_>,
) -> Result<(), SnapshotError> {
    let hold_id = HoldId(c.array::<16>()?);
    let account_id = c.text()?;
    let account = group.map_or(
        RestoredAccountRef::Id(account_id),
        RestoredAccountRef::Group,
    );
    let parts = c.u8()?;
    let cleared = match c.u8()? {
        0 => false,
        1 => true,
        _ => return Err(c.invalid("cleared flag not 0 or 1")),
    };
    let decline_code = ResponseCode(c.array::<2>()?);
    if !decline_code.0.iter().all(u8::is_ascii_alphanumeric) {
        return Err(c.invalid("decline code not alphanumeric"));
    }
    let auth_amount = c.amount()?;
    let advice_amount = c.amount()?;
    let remaining_cap = c.amount()?;
    if auth_amount.is_negative() || advice_amount.is_negative() || remaining_cap.is_negative() {
        return Err(c.invalid("negative hold amount"));
    }
    let expires_at = UnixSeconds(c.i64()?);
    let transmitted_at = UnixSeconds(c.i64()?);
    if !(UnixSeconds::MIN..=UnixSeconds::MAX).contains(&transmitted_at) {
        return Err(c.invalid("transmitted_at out of bounds"));
    }
    let fingerprint = c.u64()?;
    let hold = Hold {
        account: AccountIndex(0),
        parts,
        cleared,
        decline_code,
        auth_amount,
        advice_amount,
        remaining_cap,
        expires_at,
        transmitted_at,
        fingerprint,
    };
    restore
        .hold(c.record, hold_id, account, hold, check)
        .map_err(|reason| c.invalid(reason))
}

fn restore_cleared(
    restore: &mut Restore,
    c: &mut Cursor<'_>,
    check: &mut RecordCheck<'_>,
) -> Result<(), SnapshotError> {
    let hold_id = HoldId(c.array::<16>()?);
    let account_id = c.text()?;
    let retain_until = UnixSeconds(c.i64()?);
    restore
        .cleared(hold_id, account_id, retain_until, check)
        .map_err(|reason| c.invalid(reason))
}
