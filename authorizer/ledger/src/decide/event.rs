//! The event a decision publishes: built from the request and what the rules decided
//! (`EventParts`), then sealed with its deterministic, content-derived id (`event_id`).
//!
//! Must never: give the same id to two events that differ in what they do to the state (a shared
//! id would make the second a "duplicate" in every replica's dedup window), nor put a PAN in the
//! trace (the request carries the masked PAN only).

use std::borrow::Cow;

use sha2::{Digest, Sha256};

use super::{DecideConfig, Request};
use crate::{
    AmountMinor, AuthorizationEvent, AuthorizationKind, Currency, HoldId, NetworkIdentity,
    ResponseCode, Trace, UnixSeconds,
};

/// Deterministic event id (UUID text, version 8): SHA-256 of everything the event does to a
/// replica's state: kind, hold, response codes, amounts, expiry, its instant `at` (which moves
/// the watermark), its account, its DE 7 instant (which fixes the record's retention), and its
/// currency and MTI, the content fingerprint, the card's ATC and the decline reason; two SHA-256
/// blocks for account ids up to 32 bytes. The fields it leaves out change no state, or are
/// fixed by the hold id: the instance, the merchant category, the approval code (derived from
/// the hold id), the PAN hash of the ATC and the rest of the trace (DE 7, DE 11, DE 32, DE 33
/// and the PAN are the hold id's own inputs; the masked PAN and DE 37 are for people). So two
/// events that share an id have the same effect on every replica, and dropping either as a
/// duplicate loses nothing; the same decision made again at the same instant yields the same
/// id. A cryptographic hash,
/// because the request fields are chosen by the network: a crafted collision must not make a
/// hold vanish.
pub(super) fn event_id(event: &AuthorizationEvent<'_>) -> String {
    const FIXED: usize = 87;
    let kind = event.kind.code();
    let mti: [u8; 4] = event.trace.mti.as_bytes().try_into().unwrap_or([b'?'; 4]);
    let account_id = event.account_id.as_bytes();
    let account_id = &account_id[..account_id.len().min(255)];
    let mut input = [0u8; FIXED + 255];
    input[..6].copy_from_slice(b"event5");
    input[6] = kind;
    input[7..23].copy_from_slice(&event.hold_id.0);
    input[23..25].copy_from_slice(&event.response_code.0);
    input[25..27].copy_from_slice(&event.network_response_code.map_or([0; 2], |c| c.0));
    input[27..35].copy_from_slice(&event.amount_minor.minor().to_be_bytes());
    input[35..43].copy_from_slice(
        &event
            .remaining_minor
            .map_or(-1, AmountMinor::minor)
            .to_be_bytes(),
    );
    input[43..51].copy_from_slice(&event.expires_at.map_or(i64::MIN, |t| t.0).to_be_bytes());
    input[51..59].copy_from_slice(&event.at.0.to_be_bytes());
    input[59..67].copy_from_slice(&event.trace.transmitted_at.0.to_be_bytes());
    input[67..69].copy_from_slice(&event.currency.code().to_be_bytes());
    input[69..73].copy_from_slice(&mti);
    input[73..81].copy_from_slice(&event.content_fingerprint.unwrap_or(0).to_be_bytes());
    if let Some(card_atc) = event.card_atc {
        input[81] = 1;
        input[82..84].copy_from_slice(&card_atc.atc.to_be_bytes());
    }
    input[84] = event.decline_reason.map_or(0, |r| r.code());
    input[85..87].copy_from_slice(&(account_id.len() as u16).to_be_bytes());
    input[FIXED..FIXED + account_id.len()].copy_from_slice(account_id);
    let digest = Sha256::digest(&input[..FIXED + account_id.len()]);
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    bytes[6] = (bytes[6] & 0x0f) | 0x80; // version 8 (custom)
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 9562 variant
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(36);
    for (i, byte) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            text.push('-');
        }
        text.push(char::from(HEX[usize::from(byte >> 4)]));
        text.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    debug_assert_eq!(text.len(), 36);
    text
}

pub(super) struct EventParts {
    pub(super) kind: AuthorizationKind,
    pub(super) response_code: ResponseCode,
    pub(super) account_id: String,
    pub(super) hold_id: HoldId,
    pub(super) hold_identity: NetworkIdentity,
    pub(super) transmitted_at: UnixSeconds,
    pub(super) amount_minor: AmountMinor,
    pub(super) currency: Currency,
}

pub(super) fn build_event<'a>(
    config: &'a DecideConfig,
    request: &Request<'a>,
    now: UnixSeconds,
    p: EventParts,
) -> AuthorizationEvent<'a> {
    AuthorizationEvent {
        kind: p.kind,
        // Set by `seal` once the event is complete.
        event_id: Cow::Borrowed(""),
        at: now,
        instance: Cow::Borrowed(&config.instance),
        account_id: Cow::Owned(p.account_id),
        hold_id: p.hold_id,
        response_code: p.response_code,
        network_response_code: None,
        approval_code: None,
        amount_minor: p.amount_minor,
        currency: p.currency,
        remaining_minor: None,
        expires_at: None,
        merchant_category: request.merchant_category,
        unconverted: None,
        content_fingerprint: None,
        card_atc: None,
        decline_reason: None,
        trace: Trace {
            mti: mti_text(request.mti),
            pan_masked: Cow::Borrowed(request.pan_masked),
            transmission: p.hold_identity.transmission,
            transmitted_at: p.transmitted_at,
            stan: p.hold_identity.stan,
            acquirer: p.hold_identity.acquirer,
            forwarder: p.hold_identity.forwarder,
            retrieval_reference: request.retrieval_reference.map(Cow::Borrowed),
        },
    }
}

/// The MTI as text, without allocating for the ones the authorizer answers.
fn mti_text(mti: [u8; 4]) -> Cow<'static, str> {
    match &mti {
        b"0100" => Cow::Borrowed("0100"),
        b"0101" => Cow::Borrowed("0101"),
        b"0120" => Cow::Borrowed("0120"),
        b"0121" => Cow::Borrowed("0121"),
        b"0400" => Cow::Borrowed("0400"),
        b"0401" => Cow::Borrowed("0401"),
        b"0420" => Cow::Borrowed("0420"),
        b"0421" => Cow::Borrowed("0421"),
        other => Cow::Owned(String::from_utf8_lossy(other).into_owned()),
    }
}

/// Gives a complete event its content-derived id.
pub(super) fn seal(mut event: AuthorizationEvent<'_>) -> AuthorizationEvent<'_> {
    event.event_id = Cow::Owned(event_id(&event));
    event
}
