//! Parsed ISO 8583 message → [`Request`], and [`Decision`] → answer message.
//!
//! The codec has already checked every field's characters and length against the dialect; here
//! the *content* rules are checked (a month of 13, DE 6 without DE 51, a reversal without DE 90),
//! and the first field that fails is named, so the answer can carry DE 39 = 30 and DE 44 = that
//! field as three digits. Nothing here does I/O or reads a clock.

use bytes::Bytes;
use iso8583::{Dialect, EncodeError, Message, MessageBuilder, Mti, response_to, tlv};

use ledger::decide::{
    ChipData, Decision, MessageClass, OriginalRequest, RemainingAmounts, Request,
};
use ledger::{
    AmountMinor, CardExpiry, Currency, InstitutionId, PanHash, PanKey, ResponseCode, Stan,
    TransmissionStamp,
};

/// The first field of a request whose content is wrong (DE 44 of the format-error answer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldInError(pub u8);

impl std::fmt::Display for FieldInError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "field {} is missing or malformed", self.0)
    }
}

/// What a request MTI asks of the authorizer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestKind {
    /// Decided by the ledger: authorization, advice or reversal.
    Decide(MessageClass),
    /// 0800: network management, answered by the session.
    NetworkManagement,
}

/// Classifies a request MTI; `None` for anything the authorizer does not answer (responses,
/// other classes), which the link logs and counts.
pub fn classify(mti: Mti) -> Option<RequestKind> {
    Some(match mti.as_u16() {
        100 | 101 => RequestKind::Decide(MessageClass::Authorization),
        120 | 121 => RequestKind::Decide(MessageClass::Advice),
        400 | 401 | 420 | 421 => RequestKind::Decide(MessageClass::Reversal),
        800 => RequestKind::NetworkManagement,
        _ => return None,
    })
}

/// The answer's MTI: 0100/0101 → 0110, 0120/0121 → 0130, 0400/0401 → 0410, 0420/0421 → 0430,
/// 0800 → 0810.
pub fn response_mti(request: Mti) -> Mti {
    let v = request.as_u16();
    Mti::from_u16(v - v % 10 + 10).expect("a request MTI plus 10 stays within 4 digits")
}

/// The fields an answer copies from its request (`docs/network.md`).
pub fn echo_fields(request: Mti) -> &'static [usize] {
    match request.as_u16() / 100 {
        1 => &[2, 3, 4, 5, 6, 7, 11, 32, 33, 37, 41, 42, 49, 50, 51, 63],
        4 => &[2, 3, 4, 7, 11, 32, 33, 37, 41, 49, 90],
        _ => &[7, 11, 33, 70],
    }
}

/// A PAN masked for logs and events by the project's one rule ([`iso8583::mask`]: first 6 and
/// last 4 digits, `*` between, from 13 digits on; all `*` below). Kept on the stack.
#[derive(Clone, Copy)]
pub struct MaskedPan {
    buf: [u8; 19],
    len: u8,
}

impl MaskedPan {
    /// Masks `pan` (at most 19 digits, as DE 2; anything shorter than 13 is masked whole).
    pub fn of(pan: &str) -> MaskedPan {
        let p = pan.as_bytes();
        let len = p.len().min(19);
        let mut buf = [b'*'; 19];
        if p.is_ascii() {
            iso8583::mask::mask_pan_into(&p[..len], &mut buf[..len]);
        }
        MaskedPan {
            buf,
            len: len as u8,
        }
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..usize::from(self.len)])
            .expect("digits and '*' are ASCII by construction")
    }
}

impl std::fmt::Debug for MaskedPan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Fills a [`Request`] from a validated message of class `class`. `masked` must be
/// `MaskedPan::of(message.pan())`: the request borrows it, so the PAN itself goes no further.
pub fn request_from_message<'m>(
    message: &'m Message,
    class: MessageClass,
    pan_key: &PanKey,
    masked: &'m MaskedPan,
) -> Result<Request<'m>, FieldInError> {
    let pan = message.pan().ok_or(FieldInError(2))?;
    let pan_hash = PanHash::of_pan(pan_key, pan.as_bytes()).ok_or(FieldInError(2))?;
    let transmission = message
        .numeric(7)
        .filter(|_| matches!(message.transmission_datetime(), Ok(Some(_))))
        .map(TransmissionStamp)
        .ok_or(FieldInError(7))?;
    let stan = message.stan().map(Stan).ok_or(FieldInError(11))?;
    // DE 3 is part of what a repeat must share with its original: kept as its 6 digits.
    let processing_code = match message.field(3) {
        None => None,
        Some(d) => Some(
            <[u8; 6]>::try_from(d)
                .ok()
                .filter(|d| d.iter().all(u8::is_ascii_digit))
                .ok_or(FieldInError(3))?,
        ),
    };
    let acquirer = institution(message, 32)?;
    let forwarder = institution(message, 33)?;
    let amount_transaction = amount(message, 4)?.ok_or(FieldInError(4))?;
    let currency_transaction = currency(message, 49)?.ok_or(FieldInError(49))?;
    let amount_billing = amount(message, 6)?;
    let currency_billing = currency(message, 51)?;
    if amount_billing.is_some() && currency_billing.is_none() {
        return Err(FieldInError(51));
    }
    let card_expiry = match message.field(14) {
        None => None,
        Some(d) => Some(CardExpiry::parse_yymm(d).ok_or(FieldInError(14))?),
    };
    let merchant_category = match message.field(18) {
        None => None,
        Some(_) => Some(
            message
                .numeric(18)
                .and_then(|m| u16::try_from(m).ok())
                .ok_or(FieldInError(18))?,
        ),
    };
    let network_response_code = match class {
        MessageClass::Advice => Some(
            message
                .text(39)
                .and_then(ResponseCode::parse)
                .ok_or(FieldInError(39))?,
        ),
        _ => None,
    };
    let (original, replacement) = match class {
        MessageClass::Reversal => {
            let o = message
                .original_data()
                .ok()
                .flatten()
                .ok_or(FieldInError(90))?;
            let original = OriginalRequest {
                mti: *o.mti.as_bytes(),
                stan: Stan(o.stan),
                transmission: TransmissionStamp(
                    message
                        .field(90)
                        .map(|d| digits(&d[10..20]))
                        .ok_or(FieldInError(90))?,
                ),
                acquirer: InstitutionId(o.acquirer_id),
                forwarder: InstitutionId(o.forwarding_id),
            };
            let replacement = match message.replacement_amounts() {
                Err(_) => return Err(FieldInError(95)),
                Ok(None) => None,
                Ok(Some(r)) => Some(RemainingAmounts {
                    transaction: minor(r.transaction_minor, 95)?,
                    settlement: minor(r.settlement_minor, 95)?,
                    billing: minor(r.billing_minor, 95)?,
                }),
            };
            (Some(original), replacement)
        }
        _ => (None, None),
    };
    Ok(Request {
        class,
        mti: *message.mti().as_bytes(),
        pan_hash,
        pan_masked: masked.as_str(),
        transmission,
        stan,
        processing_code,
        acquirer,
        forwarder,
        amount_transaction,
        currency_transaction,
        amount_billing,
        currency_billing,
        card_expiry,
        merchant_category,
        network_response_code,
        original,
        replacement,
        retrieval_reference: message.text(37),
        chip: chip_data(message)?,
    })
}

/// The DE 55 tags a verified ARQC binds to the request ([`ChipData`]); `None` without DE 55.
/// A DE 55 that is not BER-TLV, or one of these tags not in its format, is DE 55 in error.
fn chip_data(message: &Message) -> Result<Option<ChipData>, FieldInError> {
    let Some(reader) = message.icc_data() else {
        return Ok(None);
    };
    let bad = FieldInError(55);
    let mut chip = ChipData::default();
    for item in reader {
        let element = item.map_err(|_| bad)?;
        let value = element.value;
        match element.tag {
            0x9F02 => {
                let minor = bcd(value).filter(|_| value.len() == 6).ok_or(bad)?;
                chip.amount = Some(self::minor(minor, 55)?);
            }
            0x5F2A => {
                let code = bcd(value).filter(|_| value.len() == 2).ok_or(bad)?;
                chip.currency = Some(
                    u16::try_from(code)
                        .ok()
                        .and_then(Currency::new)
                        .ok_or(bad)?,
                );
            }
            0x9A => {
                let date = bcd(value).filter(|_| value.len() == 3).ok_or(bad)?;
                chip.date = Some((
                    (date / 10_000) as u8,
                    (date / 100 % 100) as u8,
                    (date % 100) as u8,
                ));
            }
            0x9F36 => {
                let atc: [u8; 2] = value.try_into().map_err(|_| bad)?;
                chip.atc = Some(u16::from_be_bytes(atc));
            }
            _ => {}
        }
    }
    Ok(Some(chip))
}

/// The value of packed BCD digits (`None` if a nibble is not a digit).
fn bcd(bytes: &[u8]) -> Option<u64> {
    bytes.iter().try_fold(0u64, |acc, &b| {
        let (high, low) = (b >> 4, b & 0x0f);
        (high <= 9 && low <= 9).then(|| acc * 100 + u64::from(high) * 10 + u64::from(low))
    })
}

/// Digits already validated by the codec (DE 90 is an `n` field).
fn digits(d: &[u8]) -> u64 {
    d.iter()
        .fold(0u64, |acc, c| acc * 10 + u64::from(c.wrapping_sub(b'0')))
}

fn institution(message: &Message, n: usize) -> Result<InstitutionId, FieldInError> {
    match message.field(n) {
        None => Ok(InstitutionId(0)),
        Some(_) => message
            .numeric(n)
            .map(InstitutionId)
            .ok_or(FieldInError(n as u8)),
    }
}

fn minor(value: u64, field: u8) -> Result<AmountMinor, FieldInError> {
    i64::try_from(value)
        .ok()
        .and_then(AmountMinor::new_non_negative)
        .ok_or(FieldInError(field))
}

fn amount(message: &Message, n: usize) -> Result<Option<AmountMinor>, FieldInError> {
    match message.field(n) {
        None => Ok(None),
        Some(_) => {
            let v = message.numeric(n).ok_or(FieldInError(n as u8))?;
            minor(v, n as u8).map(Some)
        }
    }
}

fn currency(message: &Message, n: usize) -> Result<Option<Currency>, FieldInError> {
    match message.text(n) {
        None => Ok(None),
        Some(t) => Currency::parse(t).map(Some).ok_or(FieldInError(n as u8)),
    }
}

/// DE 55 split into (tag, value) pairs.
pub type IccTags<'m> = Vec<(u32, &'m [u8])>;

/// DE 55 as (tag, value) pairs, for the HSM's [`hsm::EmvData::from_tags`]. At most 32 tags;
/// `None` when DE 55 is absent, `Err` when it is not well-formed BER-TLV.
pub fn icc_tags(message: &Message) -> Option<Result<IccTags<'_>, FieldInError>> {
    const TAGS_MAX: usize = 32;
    let reader = message.icc_data()?;
    let mut tags = Vec::with_capacity(16);
    for item in reader {
        match item {
            Ok(t) if tags.len() < TAGS_MAX => tags.push((t.tag, t.value)),
            _ => return Some(Err(FieldInError(55))),
        }
    }
    Some(Ok(tags))
}

/// The answer to a decided request: the echo set, DE 39, DE 38 when approved, DE 44 on a format
/// error, DE 55 with tag 91 when `issuer_auth_data` (the ARPC) is given.
pub fn answer(
    dialect: &Dialect,
    request: &Message,
    decision: &Decision,
    issuer_auth_data: Option<&[u8]>,
) -> Result<Bytes, EncodeError> {
    let mti = request.mti();
    let mut b = response_to(request, response_mti(mti), echo_fields(mti));
    b.set(39, decision.response_code.0);
    if let Some(code) = decision.approval_code {
        b.set(38, code.0);
    }
    if let Some(field) = decision.field_in_error {
        b.set(44, format!("{field:03}"));
    }
    if let Some(iad) = issuer_auth_data {
        let mut w = tlv::Writer::new();
        w.put(0x91, iad);
        b.set(55, w.as_bytes());
    }
    b.encode(dialect)
}

/// The answer to a request whose content failed: DE 39 = 30, DE 44 = the field, and whatever of
/// the echo set the request has.
pub fn format_error_answer(
    dialect: &Dialect,
    request: &Message,
    field: FieldInError,
) -> Result<Bytes, EncodeError> {
    let mti = request.mti();
    let mut b: MessageBuilder = response_to(request, response_mti(mti), echo_fields(mti));
    b.set(39, ResponseCode::FORMAT_ERROR.0);
    b.set(44, format!("{:03}", field.0));
    b.encode(dialect)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_mtis() {
        for (req, resp) in [
            (100, 110),
            (101, 110),
            (120, 130),
            (121, 130),
            (400, 410),
            (401, 410),
            (420, 430),
            (421, 430),
            (800, 810),
        ] {
            assert_eq!(response_mti(Mti::from_u16(req).unwrap()).as_u16(), resp);
        }
    }

    #[test]
    fn classify_refuses_responses() {
        assert_eq!(classify(Mti::from_u16(110).unwrap()), None);
        assert_eq!(
            classify(Mti::from_u16(421).unwrap()),
            Some(RequestKind::Decide(MessageClass::Reversal))
        );
    }

    /// DE 3 goes into the request as its 6 digits (part of what a repeat must share), absent
    /// when the message has none.
    #[test]
    fn the_processing_code_is_read_into_the_request() {
        let dialect = Dialect::ascii();
        let pan_key = PanKey::parse_hex(&"ab".repeat(32)).unwrap();
        let message = |de3: Option<&str>| {
            let mut b = MessageBuilder::new(Mti::from_u16(100).unwrap());
            b.set(2, "5413330089010434")
                .set(4, "000000002500")
                .set(7, "1122101500")
                .set_number(11, 123)
                .set(32, "12345")
                .set(49, "986");
            if let Some(de3) = de3 {
                b.set(3, de3);
            }
            Message::decode(&dialect, b.encode(&dialect).unwrap()).unwrap()
        };
        let cash = message(Some("010000"));
        let masked = MaskedPan::of(cash.pan().unwrap());
        let request =
            request_from_message(&cash, MessageClass::Authorization, &pan_key, &masked).unwrap();
        assert_eq!(request.processing_code, Some(*b"010000"));
        let none = message(None);
        let request =
            request_from_message(&none, MessageClass::Authorization, &pan_key, &masked).unwrap();
        assert_eq!(request.processing_code, None);
    }

    #[test]
    fn masked_pan_keeps_first_six_last_four() {
        assert_eq!(
            MaskedPan::of("5413330089010434").as_str(),
            "541333******0434"
        );
        assert_eq!(
            MaskedPan::of("4761739001010010123").as_str(),
            "476173*********0123"
        );
        assert_eq!(MaskedPan::of("123").as_str(), "***");
    }

    #[test]
    fn masked_pan_hides_short_pans_whole_and_three_digits_at_least() {
        for (pan, masked) in [
            ("5413330089", "**********"),
            ("54133300890", "***********"),
            ("541333008901", "************"),
            ("5413330089012", "541333***9012"),
            ("5413330089010434", "541333******0434"),
            ("4761739001010010123", "476173*********0123"),
        ] {
            assert_eq!(MaskedPan::of(pan).as_str(), masked, "{} digits", pan.len());
        }
    }
}
