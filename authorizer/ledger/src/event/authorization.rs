//! The authorizers' events on `authorizations` (`docs/authorizations-events.md`): the
//! [`AuthorizationEvent`] with its [`AuthorizationKind`] and [`Trace`] (its small value types,
//! [`ApprovalCode`], [`CardAtc`] and [`DeclineReason`], are in `codes.rs`), the wire structs, the reader into them, the checks after it, and `to_json`, the only writer.
//!
//! Must never: write what the reader would reject or read back differently (fuzz target
//! `event_parse` parses what `to_json` wrote), nor carry a PAN (the trace has it masked).

use std::borrow::Cow;

#[cfg(any(test, feature = "fuzzing"))]
use serde::Deserialize;
use serde::Serialize;

pub use super::codes::{ApprovalCode, CardAtc, DeclineReason};
#[cfg(any(test, feature = "fuzzing"))]
use super::reference::{self, text};
use super::{
    EventError, SCHEMA, Source, amount_non_negative, check_schema, currency, digits_value, id_text,
    invalid, required, timestamp,
};
use crate::json;
use crate::types::{
    AmountMinor, Currency, HoldId, InstitutionId, PanHash, ResponseCode, Stan, TransmissionStamp,
    UnixSeconds,
};

/// What an authorizer event says happened to a hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuthorizationKind {
    /// `hold.placed`: an authorization (0100) approved; `amount_minor` is held until `expires_at`.
    HoldPlaced,
    /// `hold.adjusted`: an advice (0120/0121) applied. The hold becomes `amount_minor` (0 when the
    /// network's stand-in decision was a decline), whatever the authorization said.
    HoldAdjusted,
    /// `hold.released`: a reversal (0400/0420); at most `remaining_minor` stays held.
    HoldReleased,
    /// `authorization.declined`: recorded so that a repeat gets the same answer; holds nothing.
    Declined,
}

impl AuthorizationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthorizationKind::HoldPlaced => "hold.placed",
            AuthorizationKind::HoldAdjusted => "hold.adjusted",
            AuthorizationKind::HoldReleased => "hold.released",
            AuthorizationKind::Declined => "authorization.declined",
        }
    }

    /// The kind as one byte (event ids, watermark votes): 1 placed, 2 adjusted, 3 released,
    /// 4 declined.
    pub fn code(self) -> u8 {
        match self {
            AuthorizationKind::HoldPlaced => 1,
            AuthorizationKind::HoldAdjusted => 2,
            AuthorizationKind::HoldReleased => 3,
            AuthorizationKind::Declined => 4,
        }
    }

    pub fn parse(text: &str) -> Option<AuthorizationKind> {
        match text {
            "hold.placed" => Some(AuthorizationKind::HoldPlaced),
            "hold.adjusted" => Some(AuthorizationKind::HoldAdjusted),
            "hold.released" => Some(AuthorizationKind::HoldReleased),
            "authorization.declined" => Some(AuthorizationKind::Declined),
            _ => None,
        }
    }
}

/// The network trace identifiers of the request an authorizer event comes from (PAN masked).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trace<'a> {
    /// MTI of the request, 4 digits ("0100").
    pub mti: Cow<'a, str>,
    /// First 6 and last 4 digits, the rest `*`.
    pub pan_masked: Cow<'a, str>,
    /// DE 7 of the *original* request (for a reversal: from DE 90), MMDDhhmmss.
    pub transmission: TransmissionStamp,
    /// The same instant with its year (inferred by the decider from its clock).
    pub transmitted_at: UnixSeconds,
    pub stan: Stan,
    pub acquirer: InstitutionId,
    pub forwarder: InstitutionId,
    /// DE 37, when the request had one.
    pub retrieval_reference: Option<Cow<'a, str>>,
}

/// An event an authorizer publishes on `authorizations` (and every replica applies).
/// Documented in `docs/authorizations-events.md`, schema in `schemas/*.schema.json`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthorizationEvent<'a> {
    pub kind: AuthorizationKind,
    pub event_id: Cow<'a, str>,
    pub at: UnixSeconds,
    /// The authorizer instance that decided.
    pub instance: Cow<'a, str>,
    pub account_id: Cow<'a, str>,
    pub hold_id: HoldId,
    /// DE 39 of our answer.
    pub response_code: ResponseCode,
    /// DE 39 of an advice (the network's stand-in decision). `hold.adjusted` only.
    pub network_response_code: Option<ResponseCode>,
    /// DE 38 of an approval.
    pub approval_code: Option<ApprovalCode>,
    /// Held amount (`hold.placed`, `hold.adjusted`), or requested amount (`authorization.declined`),
    /// or the amount the reversal released as far as the decider knew (`hold.released`, 0 when the
    /// original was unknown), in `currency`.
    pub amount_minor: AmountMinor,
    pub currency: Currency,
    /// `hold.released`: what stays held (0: full release).
    pub remaining_minor: Option<AmountMinor>,
    /// `hold.placed`, `hold.adjusted`: when the hold stops counting against open-to-buy.
    pub expires_at: Option<UnixSeconds>,
    /// DE 18, when the request had one.
    pub merchant_category: Option<u16>,
    /// `hold.adjusted` only: an approved advice whose amount is in no currency of the account
    /// (no DE 6 in it, and DE 49 another currency): nothing is held, and this is the amount the
    /// network approved (DE 4 in DE 49's currency), for the cloud to book. Never silently 0.
    pub unconverted: Option<Unconverted>,
    /// `hold.placed`, `authorization.declined`: the fingerprint of the request's content (DE 3,
    /// DE 4, DE 49, DE 6, DE 51; `decide::content_fingerprint`), that a repeat must match to get
    /// the first answer. Never 0. `None` only in events of older authorizers.
    pub content_fingerprint: Option<u64>,
    /// `hold.placed`, `authorization.declined`: the ATC (9F36) of a verified ARQC and the card it
    /// belongs to; every replica raises the card's highest ATC to it.
    pub card_atc: Option<CardAtc>,
    /// `authorization.declined`: why, when the response code alone does not say (for the cloud's
    /// fraud side).
    pub decline_reason: Option<DeclineReason>,
    pub trace: Trace<'a>,
}

/// An amount the authorizer could not take in the account's currency (see
/// [`AuthorizationEvent::unconverted`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unconverted {
    pub amount_minor: AmountMinor,
    pub currency: Currency,
}

impl AuthorizationEvent<'_> {
    /// The Kafka key: the account id.
    pub fn account_id(&self) -> &str {
        &self.account_id
    }

    pub fn event_id(&self) -> &str {
        &self.event_id
    }

    /// The JSON value published on `authorizations`.
    pub fn to_json(&self) -> Vec<u8> {
        let wire = AuthorizationWire {
            schema: Some(SCHEMA),
            kind: Some(Cow::Borrowed(self.kind.as_str())),
            event_id: Some(Cow::Borrowed(&self.event_id)),
            at: Some(Cow::Owned(self.at.to_string())),
            instance: Some(Cow::Borrowed(&self.instance)),
            account_id: Some(Cow::Borrowed(&self.account_id)),
            hold_id: Some(Cow::Owned(self.hold_id.to_text())),
            response_code: Some(Cow::Borrowed(self.response_code.as_str())),
            network_response_code: self
                .network_response_code
                .map(|c| Cow::Owned(c.as_str().to_owned())),
            approval_code: self
                .approval_code
                .map(|c| Cow::Owned(c.as_str().to_owned())),
            amount_minor: Some(self.amount_minor.minor()),
            currency: Some(Cow::Owned(self.currency.to_string())),
            remaining_minor: self.remaining_minor.map(AmountMinor::minor),
            expires_at: self.expires_at.map(|t| Cow::Owned(t.to_string())),
            merchant_category: self
                .merchant_category
                .map(|m| Cow::Owned(format!("{m:04}"))),
            unconverted_amount_minor: self.unconverted.map(|u| u.amount_minor.minor()),
            unconverted_currency: self.unconverted.map(|u| Cow::Owned(u.currency.to_string())),
            content_fingerprint: self
                .content_fingerprint
                .map(|f| Cow::Owned(format!("{f:016x}"))),
            pan_hash: self.card_atc.map(|c| Cow::Owned(hex::encode(c.pan_hash.0))),
            atc: self.card_atc.map(|c| u64::from(c.atc)),
            decline_reason: self.decline_reason.map(|r| Cow::Borrowed(r.as_str())),
            trace: Some(TraceWire {
                mti: Some(Cow::Borrowed(&self.trace.mti)),
                pan_masked: Some(Cow::Borrowed(&self.trace.pan_masked)),
                transmission_date_time: Some(Cow::Owned(format!(
                    "{:010}",
                    self.trace.transmission.0
                ))),
                transmitted_at: Some(Cow::Owned(self.trace.transmitted_at.to_string())),
                stan: Some(Cow::Owned(format!("{:06}", self.trace.stan.0))),
                acquirer_id: Some(Cow::Owned(self.trace.acquirer.0.to_string())),
                forwarder_id: Some(Cow::Owned(self.trace.forwarder.0.to_string())),
                retrieval_reference: self.trace.retrieval_reference.as_deref().map(Cow::Borrowed),
            }),
        };
        serde_json::to_vec(&wire).expect("serializing plain strings and integers cannot fail")
    }

    /// A copy that owns its strings.
    pub fn into_owned(self) -> AuthorizationEvent<'static> {
        AuthorizationEvent {
            kind: self.kind,
            event_id: Cow::Owned(self.event_id.into_owned()),
            at: self.at,
            instance: Cow::Owned(self.instance.into_owned()),
            account_id: Cow::Owned(self.account_id.into_owned()),
            hold_id: self.hold_id,
            response_code: self.response_code,
            network_response_code: self.network_response_code,
            approval_code: self.approval_code,
            amount_minor: self.amount_minor,
            currency: self.currency,
            remaining_minor: self.remaining_minor,
            expires_at: self.expires_at,
            merchant_category: self.merchant_category,
            unconverted: self.unconverted,
            content_fingerprint: self.content_fingerprint,
            card_atc: self.card_atc,
            decline_reason: self.decline_reason,
            trace: Trace {
                mti: Cow::Owned(self.trace.mti.into_owned()),
                pan_masked: Cow::Owned(self.trace.pan_masked.into_owned()),
                transmission: self.trace.transmission,
                transmitted_at: self.trace.transmitted_at,
                stan: self.trace.stan,
                acquirer: self.trace.acquirer,
                forwarder: self.trace.forwarder,
                retrieval_reference: self
                    .trace
                    .retrieval_reference
                    .map(|r| Cow::Owned(r.into_owned())),
            },
        }
    }
}

/// The `trace` object on the wire.
#[derive(Debug, Default, PartialEq, Serialize)]
#[cfg_attr(any(test, feature = "fuzzing"), derive(Deserialize))]
struct TraceWire<'a> {
    #[serde(borrow, default, deserialize_with = "text")]
    mti: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "text")]
    pan_masked: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "text")]
    transmission_date_time: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "text")]
    transmitted_at: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "text")]
    stan: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "text")]
    acquirer_id: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "text")]
    forwarder_id: Option<Cow<'a, str>>,
    #[serde(
        borrow,
        default,
        deserialize_with = "text",
        skip_serializing_if = "Option::is_none"
    )]
    retrieval_reference: Option<Cow<'a, str>>,
}

/// An authorizer event on the wire (read by [`read_authorization`], written by `to_json`).
#[derive(Debug, Default, PartialEq, Serialize)]
#[cfg_attr(any(test, feature = "fuzzing"), derive(Deserialize))]
pub(super) struct AuthorizationWire<'a> {
    schema: Option<u64>,
    #[serde(rename = "type", borrow, default, deserialize_with = "text")]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "text")]
    event_id: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "text")]
    at: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "text")]
    instance: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "text")]
    account_id: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "text")]
    hold_id: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "text")]
    response_code: Option<Cow<'a, str>>,
    #[serde(
        borrow,
        default,
        deserialize_with = "text",
        skip_serializing_if = "Option::is_none"
    )]
    network_response_code: Option<Cow<'a, str>>,
    #[serde(
        borrow,
        default,
        deserialize_with = "text",
        skip_serializing_if = "Option::is_none"
    )]
    approval_code: Option<Cow<'a, str>>,
    amount_minor: Option<i64>,
    #[serde(borrow, default, deserialize_with = "text")]
    currency: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    remaining_minor: Option<i64>,
    #[serde(
        borrow,
        default,
        deserialize_with = "text",
        skip_serializing_if = "Option::is_none"
    )]
    expires_at: Option<Cow<'a, str>>,
    #[serde(
        borrow,
        default,
        deserialize_with = "text",
        skip_serializing_if = "Option::is_none"
    )]
    merchant_category: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    unconverted_amount_minor: Option<i64>,
    #[serde(
        borrow,
        default,
        deserialize_with = "text",
        skip_serializing_if = "Option::is_none"
    )]
    unconverted_currency: Option<Cow<'a, str>>,
    #[serde(
        borrow,
        default,
        deserialize_with = "text",
        skip_serializing_if = "Option::is_none"
    )]
    content_fingerprint: Option<Cow<'a, str>>,
    #[serde(
        borrow,
        default,
        deserialize_with = "text",
        skip_serializing_if = "Option::is_none"
    )]
    pan_hash: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    atc: Option<u64>,
    #[serde(
        borrow,
        default,
        deserialize_with = "text",
        skip_serializing_if = "Option::is_none"
    )]
    decline_reason: Option<Cow<'a, str>>,
    #[serde(borrow)]
    #[cfg_attr(
        any(test, feature = "fuzzing"),
        serde(default, deserialize_with = "reference::object_or_null")
    )]
    trace: Option<TraceWire<'a>>,
}

pub(super) fn parse_authorization(payload: &[u8]) -> Result<AuthorizationEvent<'_>, EventError> {
    authorization_event(read_authorization(payload).map_err(|e| *e)?)
}

/// The keys of `trace`, in the order `to_json` writes them. Indices match `read_trace`.
const TRACE_FIELDS: &[&str] = &[
    "mti",
    "pan_masked",
    "transmission_date_time",
    "transmitted_at",
    "stan",
    "acquirer_id",
    "forwarder_id",
    "retrieval_reference",
];

/// The keys of an authorizer event, in the order `to_json` writes them. Indices match
/// `read_authorization`.
const AUTHORIZATION_FIELDS: &[&str] = &[
    "schema",
    "type",
    "event_id",
    "at",
    "instance",
    "account_id",
    "hold_id",
    "response_code",
    "network_response_code",
    "approval_code",
    "amount_minor",
    "currency",
    "remaining_minor",
    "expires_at",
    "merchant_category",
    "unconverted_amount_minor",
    "unconverted_currency",
    "content_fingerprint",
    "pan_hash",
    "atc",
    "decline_reason",
    "trace",
];

/// Reads the `trace` object.
fn read_trace<'a>(reader: &mut json::Reader<'a>) -> json::JsonResult<TraceWire<'a>> {
    let mut t = TraceWire::default();
    reader.object("struct TraceWire", TRACE_FIELDS, |r, field| {
        match field {
            Some(0) => {
                t.mti = r.text()?;
            }
            Some(1) => {
                t.pan_masked = r.secret_text()?;
            }
            Some(2) => {
                t.transmission_date_time = r.text()?;
            }
            Some(3) => {
                t.transmitted_at = r.text()?;
            }
            Some(4) => {
                t.stan = r.text()?;
            }
            Some(5) => {
                t.acquirer_id = r.text()?;
            }
            Some(6) => {
                t.forwarder_id = r.text()?;
            }
            Some(7) => {
                t.retrieval_reference = r.text()?;
            }
            _ => r.skip()?,
        }
        Ok(())
    })?;
    Ok(t)
}

/// Reads the wire fields of an authorizer event (unknown fields skipped).
pub(super) fn read_authorization(payload: &[u8]) -> json::JsonResult<AuthorizationWire<'_>> {
    let mut reader = json::Reader::new(payload);
    let mut w = AuthorizationWire::default();
    reader.object(
        "struct AuthorizationWire",
        AUTHORIZATION_FIELDS,
        |r, field| {
            match field {
                Some(0) => {
                    w.schema = r.uint()?;
                }
                Some(1) => {
                    w.kind = r.text()?;
                }
                Some(2) => {
                    w.event_id = r.text()?;
                }
                Some(3) => {
                    w.at = r.text()?;
                }
                Some(4) => {
                    w.instance = r.text()?;
                }
                Some(5) => {
                    w.account_id = r.text()?;
                }
                Some(6) => {
                    w.hold_id = r.text()?;
                }
                Some(7) => {
                    w.response_code = r.text()?;
                }
                Some(8) => {
                    w.network_response_code = r.text()?;
                }
                Some(9) => {
                    w.approval_code = r.text()?;
                }
                Some(10) => {
                    w.amount_minor = r.int()?;
                }
                Some(11) => {
                    w.currency = r.text()?;
                }
                Some(12) => {
                    w.remaining_minor = r.int()?;
                }
                Some(13) => {
                    w.expires_at = r.text()?;
                }
                Some(14) => {
                    w.merchant_category = r.text()?;
                }
                Some(15) => {
                    w.unconverted_amount_minor = r.int()?;
                }
                Some(16) => {
                    w.unconverted_currency = r.text()?;
                }
                Some(17) => {
                    w.content_fingerprint = r.text()?;
                }
                Some(18) => {
                    w.pan_hash = r.secret_text()?;
                }
                Some(19) => {
                    w.atc = r.uint()?;
                }
                Some(20) => {
                    w.decline_reason = r.text()?;
                }
                Some(21) => {
                    w.trace = if r.null()? {
                        None
                    } else {
                        Some(read_trace(r)?)
                    };
                }
                _ => r.skip()?,
            }
            Ok(())
        },
    )?;
    reader.end()?;
    Ok(w)
}

/// Checks and converts the wire fields of an authorizer event.
pub(super) fn authorization_event(
    wire: AuthorizationWire<'_>,
) -> Result<AuthorizationEvent<'_>, EventError> {
    check_schema(wire.schema)?;
    let kind_text = required(wire.kind, "type")?;
    let kind = match AuthorizationKind::parse(&kind_text) {
        Some(kind) => kind,
        None if matches!(kind_text.as_ref(), "account.upserted" | "card.upserted") => {
            return Err(EventError::WrongTopic {
                event_type: kind_text.into_owned(),
                source: Source::Authorizations,
            });
        }
        None => {
            return Err(EventError::UnknownType {
                event_type: kind_text.chars().take(64).collect(),
            });
        }
    };
    let hold_text = required(wire.hold_id, "hold_id")?;
    let hold_id = HoldId::parse(&hold_text)
        .ok_or_else(|| invalid("hold_id", &hold_text, "`h-` + 32 hex characters"))?;
    let code_text = required(wire.response_code, "response_code")?;
    let response_code = ResponseCode::parse(&code_text)
        .ok_or_else(|| invalid("response_code", &code_text, "2 alphanumeric characters"))?;
    let network_response_code =
        match wire.network_response_code {
            None => None,
            Some(text) => Some(ResponseCode::parse(&text).ok_or_else(|| {
                invalid("network_response_code", &text, "2 alphanumeric characters")
            })?),
        };
    let approval_code = match wire.approval_code {
        None => None,
        Some(text) => Some(
            ApprovalCode::parse(&text)
                .ok_or_else(|| invalid("approval_code", &text, "6 characters 0-9 A-Z"))?,
        ),
    };
    let remaining_minor = match wire.remaining_minor {
        None => None,
        Some(value) => Some(amount_non_negative(Some(value), "remaining_minor")?),
    };
    let expires_at = match wire.expires_at {
        None => None,
        Some(text) => Some(timestamp(Some(text), "expires_at")?),
    };
    let merchant_category = match wire.merchant_category {
        None => None,
        Some(text) => {
            Some(digits_value(Some(text), "merchant_category", 4..=4, "4 digits")? as u16)
        }
    };
    let unconverted = match (wire.unconverted_amount_minor, wire.unconverted_currency) {
        (None, None) => None,
        (amount, currency_text) => {
            if kind != AuthorizationKind::HoldAdjusted {
                return Err(EventError::InvalidField {
                    field: "unconverted_amount_minor",
                    value: kind.as_str().to_owned(),
                    expected: "only on hold.adjusted",
                });
            }
            Some(Unconverted {
                amount_minor: amount_non_negative(amount, "unconverted_amount_minor")?,
                currency: currency(currency_text, "unconverted_currency")?,
            })
        }
    };
    let of_an_authorization = matches!(
        kind,
        AuthorizationKind::HoldPlaced | AuthorizationKind::Declined
    );
    let only_on = |field: &'static str, expected: &'static str| EventError::InvalidField {
        field,
        value: kind.as_str().to_owned(),
        expected,
    };
    let content_fingerprint = match wire.content_fingerprint {
        None => None,
        Some(_) if !of_an_authorization => {
            return Err(only_on(
                "content_fingerprint",
                "only on hold.placed and authorization.declined",
            ));
        }
        Some(text) => Some(
            parse_fingerprint(&text)
                .ok_or_else(|| invalid("content_fingerprint", &text, "16 hex characters, not 0"))?,
        ),
    };
    let card_atc = match (wire.pan_hash, wire.atc) {
        (None, None) => None,
        (Some(_), _) | (_, Some(_)) if !of_an_authorization => {
            return Err(only_on(
                "atc",
                "only on hold.placed and authorization.declined",
            ));
        }
        (pan_hash_text, atc) => {
            let pan_hash_text = required(pan_hash_text, "pan_hash")?;
            let pan_hash = PanHash::parse_hex(&pan_hash_text)
                .ok_or_else(|| invalid("pan_hash", &pan_hash_text, "64 hex characters"))?;
            let atc = required(atc, "atc")?;
            let atc =
                u16::try_from(atc).map_err(|_| invalid("atc", atc, "an integer in 0..=65535"))?;
            Some(CardAtc { pan_hash, atc })
        }
    };
    let decline_reason = match wire.decline_reason {
        None => None,
        Some(_) if kind != AuthorizationKind::Declined => {
            return Err(only_on("decline_reason", "only on authorization.declined"));
        }
        Some(text) => Some(
            DeclineReason::parse(&text)
                .ok_or_else(|| invalid("decline_reason", &text, "atc_replay"))?,
        ),
    };
    match kind {
        AuthorizationKind::HoldPlaced | AuthorizationKind::HoldAdjusted if expires_at.is_none() => {
            return Err(EventError::MissingField {
                field: "expires_at",
            });
        }
        AuthorizationKind::HoldReleased if remaining_minor.is_none() => {
            return Err(EventError::MissingField {
                field: "remaining_minor",
            });
        }
        AuthorizationKind::HoldAdjusted if network_response_code.is_none() => {
            return Err(EventError::MissingField {
                field: "network_response_code",
            });
        }
        _ => {}
    }
    let trace = required(wire.trace, "trace")?;
    let mti_text = required(trace.mti, "trace.mti")?;
    if mti_text.len() != 4 || !mti_text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid("trace.mti", &mti_text, "4 digits"));
    }
    let pan_masked = required(trace.pan_masked, "trace.pan_masked")?;
    if !is_masked_pan(&pan_masked) {
        return Err(invalid(
            "trace.pan_masked",
            &pan_masked,
            "a masked PAN: 10..=19 digits and `*`, at most 10 digits shown and at least 3 hidden",
        ));
    }
    let transmission = digits_value(
        trace.transmission_date_time,
        "trace.transmission_date_time",
        10..=10,
        "10 digits MMDDhhmmss",
    )?;
    let retrieval_reference = match trace.retrieval_reference {
        None => None,
        Some(text)
            if text.len() <= 12 && text.bytes().all(|b| b.is_ascii_graphic() || b == b' ') =>
        {
            Some(text)
        }
        Some(text) => {
            return Err(invalid(
                "trace.retrieval_reference",
                &text,
                "at most 12 printable characters",
            ));
        }
    };
    Ok(AuthorizationEvent {
        kind,
        event_id: id_text(wire.event_id, "event_id")?,
        at: timestamp(wire.at, "at")?,
        instance: id_text(wire.instance, "instance")?,
        account_id: id_text(wire.account_id, "account_id")?,
        hold_id,
        response_code,
        network_response_code,
        approval_code,
        amount_minor: amount_non_negative(wire.amount_minor, "amount_minor")?,
        currency: currency(wire.currency, "currency")?,
        remaining_minor,
        expires_at,
        merchant_category,
        unconverted,
        content_fingerprint,
        card_atc,
        decline_reason,
        trace: Trace {
            mti: mti_text,
            pan_masked,
            transmission: TransmissionStamp(transmission),
            transmitted_at: timestamp(trace.transmitted_at, "trace.transmitted_at")?,
            stan: Stan(digits_value(trace.stan, "trace.stan", 1..=6, "1..=6 digits")? as u32),
            acquirer: InstitutionId(digits_value(
                trace.acquirer_id,
                "trace.acquirer_id",
                1..=11,
                "1..=11 digits",
            )?),
            forwarder: InstitutionId(digits_value(
                trace.forwarder_id,
                "trace.forwarder_id",
                1..=11,
                "1..=11 digits",
            )?),
            retrieval_reference,
        },
    })
}

/// A content fingerprint as written: 16 lower-case hex characters, not all zeros.
fn parse_fingerprint(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    if b.len() != 16 || !b.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    u64::from_str_radix(text, 16).ok().filter(|f| *f != 0)
}

/// A masked PAN as `trace.pan_masked` must carry it: 10..=19 characters, digits and `*` only, at
/// least one `*`, at most 10 digits shown (first 6 and last 4) and never more than `len - 3`.
fn is_masked_pan(text: &str) -> bool {
    let b = text.as_bytes();
    let shown = b.iter().filter(|c| c.is_ascii_digit()).count();
    (10..=19).contains(&b.len())
        && b.iter().all(|&c| c.is_ascii_digit() || c == b'*')
        && shown < b.len()
        && shown <= 10
        && shown + 3 <= b.len()
}
