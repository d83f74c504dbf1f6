//! Typed views of the fields the authorizer reads. Each parses the already-validated logical
//! value of one field; character validity was checked by decode, so only content rules (a month
//! of 13, letters in DE 95) can fail here, with a [`ValueError`] naming the field.

use crate::de48;
use crate::error::ValueError;
use crate::message::{Message, Mti};
use crate::tlv;

/// Parses ASCII digits; the caller guarantees they are digits (validated `n` fields).
#[inline]
fn digits_u64(d: &[u8]) -> u64 {
    d.iter().fold(0u64, |acc, &c| {
        acc.wrapping_mul(10)
            .wrapping_add(u64::from(c.wrapping_sub(b'0')))
    })
}

/// Parses digits, refusing anything else.
fn strict_digits(field: u8, d: &[u8], what: &'static str) -> Result<u64, ValueError> {
    if d.is_empty() || d.len() > 19 || !d.iter().all(u8::is_ascii_digit) {
        return Err(ValueError { field, what });
    }
    Ok(digits_u64(d))
}

fn two(d: &[u8]) -> u8 {
    (d[0] - b'0') * 10 + (d[1] - b'0')
}

/// DE 3: transaction type, from account, to account (2 digits each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessingCode {
    /// 00 purchase, 01 cash, 09 purchase with cashback, 20 refund, 30 balance inquiry ...
    pub transaction_type: u8,
    /// 00 default, 10 savings, 20 checking, 30 credit.
    pub from_account: u8,
    /// Same codes as `from_account`.
    pub to_account: u8,
}

/// DE 7: transmission date and time, MMDDhhmmss UTC (no year on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TransmissionDateTime {
    /// 1..=12.
    pub month: u8,
    /// 1..=31.
    pub day: u8,
    /// 0..=23.
    pub hour: u8,
    /// 0..=59.
    pub minute: u8,
    /// 0..=59.
    pub second: u8,
}

impl TransmissionDateTime {
    fn parse(field: u8, d: &[u8]) -> Result<TransmissionDateTime, ValueError> {
        if d.len() != 10 || !d.iter().all(u8::is_ascii_digit) {
            return Err(ValueError {
                field,
                what: "date-time is not 10 digits MMDDhhmmss",
            });
        }
        let t = TransmissionDateTime {
            month: two(&d[0..2]),
            day: two(&d[2..4]),
            hour: two(&d[4..6]),
            minute: two(&d[6..8]),
            second: two(&d[8..10]),
        };
        if !(1..=12).contains(&t.month)
            || !(1..=31).contains(&t.day)
            || t.hour > 23
            || t.minute > 59
            || t.second > 59
        {
            return Err(ValueError {
                field,
                what: "date-time MMDDhhmmss out of range",
            });
        }
        Ok(t)
    }
}

/// DE 14: card expiry, YYMM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Expiry {
    /// Two-digit year (the century is the caller's business).
    pub year: u8,
    /// 1..=12.
    pub month: u8,
}

/// DE 22: POS entry mode, PAN entry mode (2 digits) and PIN entry capability (1 digit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PosEntryMode {
    /// 01 manual, 02/90 magstripe, 05 chip, 07 contactless chip, 81 e-commerce ...
    pub pan_entry: u8,
    /// 1 can accept PIN, 2 cannot, 8 PIN pad down, 0 unknown.
    pub pin_capability: u8,
}

/// DE 90: the original message a reversal refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OriginalData {
    /// MTI of the original (0100 ...).
    pub mti: Mti,
    /// DE 11 of the original.
    pub stan: u32,
    /// DE 7 of the original.
    pub transmission_datetime: TransmissionDateTime,
    /// DE 32 of the original, as a number (zero-padded to 11 on the wire).
    pub acquirer_id: u64,
    /// DE 33 of the original, as a number.
    pub forwarding_id: u64,
}

/// DE 95: amounts that remain after a partial reversal, in minor units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplacementAmounts {
    /// Actual transaction amount (DE 4 currency).
    pub transaction_minor: u64,
    /// Actual settlement amount (DE 5 currency).
    pub settlement_minor: u64,
    /// Actual cardholder billing amount (DE 6 currency).
    pub billing_minor: u64,
}

impl ReplacementAmounts {
    /// True when every amount is zero (the whole hold is released).
    pub fn is_zero(&self) -> bool {
        self.transaction_minor == 0 && self.settlement_minor == 0 && self.billing_minor == 0
    }
}

impl Message {
    /// DE 2, the PAN. Never log it unmasked.
    #[inline]
    pub fn pan(&self) -> Option<&str> {
        self.text(2)
    }

    /// DE 3.
    pub fn processing_code(&self) -> Option<ProcessingCode> {
        // A dialect file may redefine DE 3, so digits are checked, not assumed.
        let d = self
            .field(3)
            .filter(|d| d.len() == 6 && d.iter().all(u8::is_ascii_digit))?;
        Some(ProcessingCode {
            transaction_type: two(&d[0..2]),
            from_account: two(&d[2..4]),
            to_account: two(&d[4..6]),
        })
    }

    /// DE 4, transaction amount in minor units of DE 49.
    #[inline]
    pub fn amount_transaction(&self) -> Option<u64> {
        self.numeric(4)
    }

    /// DE 5, settlement amount in minor units of DE 50.
    #[inline]
    pub fn amount_settlement(&self) -> Option<u64> {
        self.numeric(5)
    }

    /// DE 6, cardholder billing amount in minor units of DE 51.
    #[inline]
    pub fn amount_billing(&self) -> Option<u64> {
        self.numeric(6)
    }

    /// DE 7.
    pub fn transmission_datetime(&self) -> Result<Option<TransmissionDateTime>, ValueError> {
        self.field(7)
            .map(|d| TransmissionDateTime::parse(7, d))
            .transpose()
    }

    /// DE 11, the STAN.
    #[inline]
    pub fn stan(&self) -> Option<u32> {
        self.numeric(11).and_then(|v| u32::try_from(v).ok())
    }

    /// DE 14, expiry YYMM.
    pub fn expiry(&self) -> Result<Option<Expiry>, ValueError> {
        let Some(d) = self.field(14) else {
            return Ok(None);
        };
        if d.len() != 4 || !d.iter().all(u8::is_ascii_digit) {
            return Err(ValueError {
                field: 14,
                what: "expiry is not 4 digits YYMM",
            });
        }
        let e = Expiry {
            year: two(&d[0..2]),
            month: two(&d[2..4]),
        };
        if !(1..=12).contains(&e.month) {
            return Err(ValueError {
                field: 14,
                what: "expiry month out of range 01..12",
            });
        }
        Ok(Some(e))
    }

    /// DE 22.
    pub fn pos_entry_mode(&self) -> Option<PosEntryMode> {
        let d = self
            .field(22)
            .filter(|d| d.len() == 3 && d.iter().all(u8::is_ascii_digit))?;
        Some(PosEntryMode {
            pan_entry: two(&d[0..2]),
            pin_capability: d[2] - b'0',
        })
    }

    /// DE 49, 50, 51 style currency code, DE 70 and any numeric field as a number.
    #[inline]
    pub fn numeric(&self, n: usize) -> Option<u64> {
        self.field(n)
            .filter(|d| !d.is_empty() && d.len() <= 19 && d.iter().all(u8::is_ascii_digit))
            .map(digits_u64)
    }

    /// DE 90, the original data elements of a reversal.
    pub fn original_data(&self) -> Result<Option<OriginalData>, ValueError> {
        let Some(d) = self.field(90) else {
            return Ok(None);
        };
        if d.len() != 42 {
            return Err(ValueError {
                field: 90,
                what: "original data is not 42 digits",
            });
        }
        let mti = Mti::new(&d[0..4]).ok_or(ValueError {
            field: 90,
            what: "original MTI is not 4 digits",
        })?;
        let stan = strict_digits(90, &d[4..10], "original STAN is not digits")? as u32;
        let transmission_datetime = TransmissionDateTime::parse(90, &d[10..20])?;
        let acquirer_id = strict_digits(90, &d[20..31], "original DE 32 is not digits")?;
        let forwarding_id = strict_digits(90, &d[31..42], "original DE 33 is not digits")?;
        Ok(Some(OriginalData {
            mti,
            stan,
            transmission_datetime,
            acquirer_id,
            forwarding_id,
        }))
    }

    /// DE 95, replacement amounts of a partial reversal.
    pub fn replacement_amounts(&self) -> Result<Option<ReplacementAmounts>, ValueError> {
        let Some(d) = self.field(95) else {
            return Ok(None);
        };
        if d.len() != 42 {
            return Err(ValueError {
                field: 95,
                what: "replacement amounts are not 42 characters",
            });
        }
        let what = "replacement amounts are not digits";
        let r = ReplacementAmounts {
            transaction_minor: strict_digits(95, &d[0..12], what)?,
            settlement_minor: strict_digits(95, &d[12..24], what)?,
            billing_minor: strict_digits(95, &d[24..36], what)?,
        };
        strict_digits(95, &d[36..42], what)?;
        Ok(Some(r))
    }

    /// DE 55 as a BER-TLV reader (zero-copy).
    pub fn icc_data(&self) -> Option<tlv::Reader<'_>> {
        self.field(55).map(tlv::Reader::new)
    }

    /// DE 48 as a transaction category code plus `TT LL value` subelements.
    pub fn de48(&self) -> Option<de48::Reader<'_>> {
        self.field(48).map(de48::Reader::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_parse() {
        assert_eq!(digits_u64(b"000000012345"), 12345);
        assert_eq!(
            strict_digits(4, b"12a", "x"),
            Err(ValueError {
                field: 4,
                what: "x"
            })
        );
        assert_eq!(
            strict_digits(4, b"", "x"),
            Err(ValueError {
                field: 4,
                what: "x"
            })
        );
    }

    #[test]
    fn datetime_ranges() {
        assert!(TransmissionDateTime::parse(7, b"1231235959").is_ok());
        assert!(TransmissionDateTime::parse(7, b"1331235959").is_err());
        assert!(TransmissionDateTime::parse(7, b"1200235959").is_err());
        assert!(TransmissionDateTime::parse(7, b"1201245959").is_err());
        assert!(TransmissionDateTime::parse(7, b"12012359").is_err());
    }
}
