//! What [`decide`](super::decide) reads and what it answers: the [`Request`] the network layer
//! fills from a validated message (its [`MessageClass`], DE 90 [`OriginalRequest`], DE 95
//! [`RemainingAmounts`]), the [`Facts`] learned outside the ledger (the HSM's [`Cryptogram`]
//! check), and the [`Decision`]: the answer's DE 38, DE 39 and DE 44, the event to publish, and
//! the [`ArpcInput`] of tag 91.
//!
//! Must never: carry a PAN (the request carries the PAN hash and the masked PAN only), nor decide
//! anything: these are plain data, the rules are in `rules.rs`.

use sha2::{Digest, Sha256};

use crate::{
    AccountIndex, AmountMinor, ApprovalCode, AuthorizationEvent, Currency, DeclineReason, HoldId,
    InstitutionId, NetworkIdentity, PanHash, ResponseCode, Stan, TransmissionStamp,
};

/// Which flow a request belongs to (from its MTI).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageClass {
    /// 0100, 0101.
    Authorization,
    /// 0120, 0121.
    Advice,
    /// 0400, 0401, 0420, 0421.
    Reversal,
}

/// DE 90, original data elements (the identity of the original request).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OriginalRequest {
    pub mti: [u8; 4],
    pub stan: Stan,
    pub transmission: TransmissionStamp,
    pub acquirer: InstitutionId,
    pub forwarder: InstitutionId,
}

/// DE 95, replacement amounts: what *remains* after a partial reversal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemainingAmounts {
    pub transaction: AmountMinor,
    pub settlement: AmountMinor,
    pub billing: AmountMinor,
}

/// The request to decide, filled by the network layer from a validated message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    pub class: MessageClass,
    /// The MTI as received ("0100", "0421", …).
    pub mti: [u8; 4],
    /// HMAC-SHA256 of DE 2 ([`PanHash::of_pan`]).
    pub pan_hash: PanHash,
    /// DE 2 masked: first 6 and last 4 digits, `*` between.
    pub pan_masked: &'a str,
    /// DE 7.
    pub transmission: TransmissionStamp,
    /// DE 11.
    pub stan: Stan,
    /// DE 3, the processing code (6 digits), when present: part of the content a repeat must
    /// share with its original.
    pub processing_code: Option<[u8; 6]>,
    /// DE 32.
    pub acquirer: InstitutionId,
    /// DE 33 (0 when absent).
    pub forwarder: InstitutionId,
    /// DE 4 and DE 49.
    pub amount_transaction: AmountMinor,
    pub currency_transaction: Currency,
    /// DE 6 and DE 51, when present.
    pub amount_billing: Option<AmountMinor>,
    pub currency_billing: Option<Currency>,
    /// DE 14, when present.
    pub card_expiry: Option<crate::CardExpiry>,
    /// DE 18, when present.
    pub merchant_category: Option<u16>,
    /// DE 39 of an advice: the network's stand-in decision.
    pub network_response_code: Option<ResponseCode>,
    /// DE 90 of a reversal.
    pub original: Option<OriginalRequest>,
    /// DE 95 of a reversal, when present.
    pub replacement: Option<RemainingAmounts>,
    /// DE 37, when present (12 characters at most).
    pub retrieval_reference: Option<&'a str>,
    /// What the chip's cryptogram covers (from DE 55), when the request carries one.
    pub chip: Option<ChipData>,
}

/// The tags of DE 55 that the ARQC covers and that must agree with the request: a verified
/// cryptogram proves the card computed it, not that it computed it for this transaction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChipData {
    /// 9F02, amount authorised (n 12).
    pub amount: Option<AmountMinor>,
    /// 5F2A, transaction currency code (n 3).
    pub currency: Option<Currency>,
    /// 9A, transaction date (YYMMDD), as (year within the century, month, day).
    pub date: Option<(u8, u8, u8)>,
    /// 9F36, application transaction counter.
    pub atc: Option<u16>,
}

impl Request<'_> {
    pub fn identity(&self) -> NetworkIdentity {
        NetworkIdentity {
            pan_hash: self.pan_hash,
            transmission: self.transmission,
            stan: self.stan,
            acquirer: self.acquirer,
            forwarder: self.forwarder,
        }
    }

    /// The fingerprint of the content a repeat must share with its original: the first 8 bytes
    /// (big-endian) of `SHA-256("content1" ‖ DE 3 ‖ DE 4 i64 ‖ DE 49 u16 ‖ DE 6 ‖ DE 51)`,
    /// where DE 3 is a presence byte (0/1) then its 6 digits (zeros when absent), DE 6 a
    /// presence byte then i64, DE 51 a presence byte then u16 (integers big-endian; 37 bytes, one
    /// SHA-256 block). 0 is reserved for "not known" (events of older authorizers): a digest of
    /// 0 becomes 1. A cryptographic hash, because the network chooses these fields: content that
    /// differs must not be crafted into the same fingerprint.
    pub fn content_fingerprint(&self) -> u64 {
        let mut input = [0u8; 37];
        input[..8].copy_from_slice(b"content1");
        if let Some(code) = self.processing_code {
            input[8] = 1;
            input[9..15].copy_from_slice(&code);
        }
        input[15..23].copy_from_slice(&self.amount_transaction.minor().to_be_bytes());
        input[23..25].copy_from_slice(&self.currency_transaction.code().to_be_bytes());
        if let Some(amount) = self.amount_billing {
            input[25] = 1;
            input[26..34].copy_from_slice(&amount.minor().to_be_bytes());
        }
        if let Some(currency) = self.currency_billing {
            input[34] = 1;
            input[35..37].copy_from_slice(&currency.code().to_be_bytes());
        }
        let digest = Sha256::digest(input);
        let fingerprint = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
        fingerprint.max(1)
    }

    /// The identity of the hold this request concerns: its own, or, for a reversal, the
    /// original's (DE 90).
    pub fn hold_identity(&self) -> Option<NetworkIdentity> {
        match self.class {
            MessageClass::Reversal => self.original.map(|o| NetworkIdentity {
                pan_hash: self.pan_hash,
                transmission: o.transmission,
                stan: o.stan,
                acquirer: o.acquirer,
                forwarder: o.forwarder,
            }),
            MessageClass::Authorization | MessageClass::Advice => Some(self.identity()),
        }
    }
}

/// The chip cryptogram check the caller did with the HSM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cryptogram {
    /// No ARQC in DE 55 (magnetic stripe, e-commerce, …).
    Absent,
    Verified,
    /// Present but did not verify (or could not be verified).
    NotVerified,
}

/// What the caller learned outside the ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Facts {
    pub cryptogram: Cryptogram,
}

/// The input of the ARPC (tag 91) the caller computes with the HSM, when the answer must carry
/// one (chip request whose ARQC verified, approved or declined).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArpcInput {
    /// Method 1: ARC = DE 39 as two ASCII characters.
    pub arc: [u8; 2],
    /// Method 2: CSU, `00800000` when approved, `00000000` when declined.
    pub csu: [u8; 4],
}

/// The outcome of one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision<'a> {
    /// DE 39 of the answer.
    pub response_code: ResponseCode,
    /// DE 38 of an approved authorization.
    pub approval_code: Option<ApprovalCode>,
    /// DE 44 when `response_code` is 30: the number of the first field in error.
    pub field_in_error: Option<u8>,
    /// The hold this request concerns.
    pub hold_id: Option<HoldId>,
    /// The account of [`Decision::event`], as an index into the state decided on: lets
    /// [`State::apply_decided`](crate::State::apply_decided) skip looking the account up again.
    pub account: Option<AccountIndex>,
    /// The event to publish (and apply) before answering; `None` when nothing changes (a repeat,
    /// an unknown card, a reversal of a declined original, a format error).
    pub event: Option<AuthorizationEvent<'a>>,
    /// `Some` when the answer must carry tag 91.
    pub arpc: Option<ArpcInput>,
    /// The request repeats one already decided: this is the first answer again.
    pub repeat: bool,
    /// Why it was declined, when the code alone does not say (its event says it too): for the
    /// caller's counters.
    pub reason: Option<DeclineReason>,
}

impl Decision<'_> {
    /// The same decision, owning its event's text (to keep it past the request and the config).
    pub fn into_owned(self) -> Decision<'static> {
        Decision {
            response_code: self.response_code,
            approval_code: self.approval_code,
            field_in_error: self.field_in_error,
            hold_id: self.hold_id,
            account: self.account,
            event: self.event.map(AuthorizationEvent::into_owned),
            arpc: self.arpc,
            repeat: self.repeat,
            reason: self.reason,
        }
    }
}
