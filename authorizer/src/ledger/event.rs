//! The events of the log: parsing the cloud's contract (`account.upserted`, `card.upserted`)
//! and the authorizers' own events (`hold.placed`, `hold.adjusted`, `hold.released`,
//! `authorization.declined`), and serializing the latter.
//!
//! Parsing never panics and never trusts a field: every value is checked and bounded here, and
//! every rejection names the field and the value in [`EventError`]. Strings are borrowed from
//! the input where JSON allows it (no escapes), so parsing allocates only for `cleared_holds`.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::time::parse_rfc3339_utc;
use super::types::{
    AccountStatus, AmountMinor, CardExpiry, CardStatus, Currency, EventKey, HoldId, InstitutionId,
    PanHash, PanSequence, ResponseCode, Stan, TransmissionDateTime, UnixSeconds, Version,
};

/// The topic an event was read from; it decides which event shapes are acceptable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// The cloud's topic (`kafka-contract.md`): `account.upserted`, `card.upserted`.
    AccountUpdates,
    /// The authorizers' own topic: the [`AuthorizationEvent`]s.
    Authorizations,
}

/// Bounds on the text fields of events (the contract gives none; these are far above real ids).
pub const ID_LEN_MAX: usize = 128;
/// Bound on `cleared_holds` in one `account.upserted`.
pub const CLEARED_HOLDS_MAX: usize = 10_000;
/// The only `schema` number this code knows.
pub const SCHEMA: u64 = 1;

/// Why an event was rejected. `Display` is the dead-letter `reason`: it names the field and the
/// offending value (never a PAN: events carry none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventError {
    /// Not JSON, or a field of the wrong JSON type (serde's message, with line and column).
    Json {
        message: String,
    },
    MissingField {
        field: &'static str,
    },
    UnsupportedSchema {
        schema: u64,
    },
    UnknownType {
        event_type: String,
    },
    /// A valid event type, but not on this topic (e.g. `hold.placed` on `account-updates`).
    WrongTopic {
        event_type: String,
        source: Source,
    },
    InvalidField {
        field: &'static str,
        value: String,
        expected: &'static str,
    },
    /// The state reached a bound (e.g. 65,535 distinct key sets). Operator action needed.
    CapacityExceeded {
        what: &'static str,
        limit: u64,
    },
}

impl fmt::Display for EventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventError::Json { message } => write!(f, "invalid JSON: {message}"),
            EventError::MissingField { field } => write!(f, "missing required field `{field}`"),
            EventError::UnsupportedSchema { schema } => {
                write!(
                    f,
                    "unsupported schema {schema} (this authorizer reads schema {SCHEMA})"
                )
            }
            EventError::UnknownType { event_type } => {
                write!(f, "unknown event type {event_type:?}")
            }
            EventError::WrongTopic { event_type, source } => {
                write!(f, "event type {event_type:?} is not expected on {source:?}")
            }
            EventError::InvalidField {
                field,
                value,
                expected,
            } => {
                write!(
                    f,
                    "field `{field}` = {value:?} is invalid: expected {expected}"
                )
            }
            EventError::CapacityExceeded { what, limit } => {
                write!(
                    f,
                    "capacity exceeded: more than {limit} {what}; raise the bound in code"
                )
            }
        }
    }
}

impl std::error::Error for EventError {}

fn invalid(field: &'static str, value: impl fmt::Display, expected: &'static str) -> EventError {
    let mut text = value.to_string();
    if text.len() > 80 {
        let mut cut = 80;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    EventError::InvalidField {
        field,
        value: text,
        expected,
    }
}

fn required<T>(value: Option<T>, field: &'static str) -> Result<T, EventError> {
    value.ok_or(EventError::MissingField { field })
}

fn id_text<'a>(
    value: Option<Cow<'a, str>>,
    field: &'static str,
) -> Result<Cow<'a, str>, EventError> {
    let value = required(value, field)?;
    if value.is_empty() || value.len() > ID_LEN_MAX || value.chars().any(char::is_control) {
        return Err(invalid(
            field,
            &value,
            "1..=128 characters, no control characters",
        ));
    }
    Ok(value)
}

fn timestamp(value: Option<Cow<'_, str>>, field: &'static str) -> Result<UnixSeconds, EventError> {
    let value = required(value, field)?;
    parse_rfc3339_utc(&value)
        .ok_or_else(|| invalid(field, &value, "RFC 3339 UTC time between 2000 and 2200"))
}

fn amount_non_negative(value: Option<i64>, field: &'static str) -> Result<AmountMinor, EventError> {
    let value = required(value, field)?;
    AmountMinor::new_non_negative(value)
        .ok_or_else(|| invalid(field, value, "an integer 0..=999999999999999 (minor units)"))
}

fn currency(value: Option<Cow<'_, str>>, field: &'static str) -> Result<Currency, EventError> {
    let value = required(value, field)?;
    Currency::parse(&value).ok_or_else(|| invalid(field, &value, "ISO 4217 numeric code, 3 digits"))
}

/// The cloud's `account.upserted`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountUpserted<'a> {
    pub event_id: Cow<'a, str>,
    pub at: UnixSeconds,
    pub account_id: Cow<'a, str>,
    pub version: Version,
    pub status: AccountStatus,
    pub currency: Currency,
    pub credit_limit: AmountMinor,
    pub posted_balance: AmountMinor,
    pub cleared_holds: Vec<HoldId>,
}

/// The cloud's `card.upserted`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CardUpserted<'a> {
    pub event_id: Cow<'a, str>,
    pub at: UnixSeconds,
    pub account_id: Cow<'a, str>,
    pub card_id: Cow<'a, str>,
    pub version: Version,
    pub pan_hash: PanHash,
    pub pan_last4: [u8; 4],
    pub expiry: CardExpiry,
    pub psn: PanSequence,
    pub status: CardStatus,
    pub key_set: Cow<'a, str>,
}

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
    pub transmission: TransmissionDateTime,
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
    pub trace: Trace<'a>,
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

/// DE 38, the approval code: 6 characters `0-9A-Z`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ApprovalCode(pub [u8; 6]);

impl ApprovalCode {
    pub fn parse(text: &str) -> Option<ApprovalCode> {
        let b = text.as_bytes();
        if b.len() != 6
            || !b
                .iter()
                .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
        {
            return None;
        }
        let mut code = [0u8; 6];
        code.copy_from_slice(b);
        Some(ApprovalCode(code))
    }

    /// Derived from the hold id, so that a repeat (or another replica) gives the same code.
    pub fn of_hold(hold_id: HoldId) -> ApprovalCode {
        const ALPHABET: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
        let mut value = u64::from_be_bytes(hold_id.0[8..16].try_into().expect("8 bytes"));
        let mut code = [0u8; 6];
        for c in code.iter_mut() {
            *c = ALPHABET[(value % 36) as usize];
            value /= 36;
        }
        ApprovalCode(code)
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("approval codes are ASCII by construction")
    }
}

impl fmt::Debug for ApprovalCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApprovalCode({})", self.as_str())
    }
}

/// Any event the ledger applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event<'a> {
    AccountUpserted(AccountUpserted<'a>),
    CardUpserted(CardUpserted<'a>),
    Authorization(AuthorizationEvent<'a>),
}

impl<'a> Event<'a> {
    pub fn event_id(&self) -> &str {
        match self {
            Event::AccountUpserted(e) => &e.event_id,
            Event::CardUpserted(e) => &e.event_id,
            Event::Authorization(e) => &e.event_id,
        }
    }

    pub fn event_key(&self) -> EventKey {
        EventKey::of(self.event_id())
    }

    pub fn at(&self) -> UnixSeconds {
        match self {
            Event::AccountUpserted(e) => e.at,
            Event::CardUpserted(e) => e.at,
            Event::Authorization(e) => e.at,
        }
    }

    pub fn account_id(&self) -> &str {
        match self {
            Event::AccountUpserted(e) => &e.account_id,
            Event::CardUpserted(e) => &e.account_id,
            Event::Authorization(e) => &e.account_id,
        }
    }

    /// Parses one Kafka value read from `source`.
    pub fn parse(source: Source, payload: &'a [u8]) -> Result<Event<'a>, EventError> {
        match source {
            Source::AccountUpdates => parse_cloud(payload),
            Source::Authorizations => parse_authorization(payload).map(Event::Authorization),
        }
    }
}

/// A JSON string, borrowed from the payload when it has no escapes (the common case), owned
/// otherwise. serde borrows a bare `Cow<str>` field only when told to, and never one inside an
/// `Option` or a `Vec`: without this every string field of every event was an allocation.
struct TextVisitor;

impl<'de> serde::de::Visitor<'de> for TextVisitor {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

/// One string in a wire struct, borrowed when possible (see [`TextVisitor`]).
struct Text<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(TextVisitor).map(Text)
    }
}

/// `deserialize_with` for an optional string field (absent: `None` through `default`).
fn text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Cow<'de, str>>, D::Error> {
    Option::<Text<'de>>::deserialize(d).map(|t| t.map(|t| t.0))
}

/// `deserialize_with` for an optional list of strings.
fn texts<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<Cow<'de, str>>>, D::Error> {
    Option::<Vec<Text<'de>>>::deserialize(d)
        .map(|v| v.map(|v| v.into_iter().map(|t| t.0).collect()))
}

#[derive(Deserialize)]
struct CloudWire<'a> {
    schema: Option<u64>,
    #[serde(rename = "type", borrow, default, deserialize_with = "text")]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "text")]
    event_id: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "text")]
    at: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "text")]
    account_id: Option<Cow<'a, str>>,
    version: Option<u64>,
    #[serde(borrow, default, deserialize_with = "text")]
    status: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "text")]
    currency: Option<Cow<'a, str>>,
    credit_limit: Option<i64>,
    posted_balance: Option<i64>,
    #[serde(borrow, default, deserialize_with = "texts")]
    cleared_holds: Option<Vec<Cow<'a, str>>>,
    #[serde(borrow, default, deserialize_with = "text")]
    card_id: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "text")]
    pan_hash: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "text")]
    pan_last4: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "text")]
    expiry: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "text")]
    psn: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "text")]
    key_set: Option<Cow<'a, str>>,
}

fn json_error(error: serde_json::Error) -> EventError {
    EventError::Json {
        message: error.to_string(),
    }
}

fn check_schema(schema: Option<u64>) -> Result<(), EventError> {
    let schema = required(schema, "schema")?;
    if schema != SCHEMA {
        return Err(EventError::UnsupportedSchema { schema });
    }
    Ok(())
}

fn parse_cloud(payload: &[u8]) -> Result<Event<'_>, EventError> {
    let wire: CloudWire<'_> = serde_json::from_slice(payload).map_err(json_error)?;
    check_schema(wire.schema)?;
    let kind = required(wire.kind, "type")?;
    match kind.as_ref() {
        "account.upserted" => {
            let posted = required(wire.posted_balance, "posted_balance")?;
            let cleared = wire.cleared_holds.unwrap_or_default();
            if cleared.len() > CLEARED_HOLDS_MAX {
                return Err(invalid(
                    "cleared_holds",
                    cleared.len(),
                    "at most 10000 hold ids",
                ));
            }
            let mut cleared_holds = Vec::with_capacity(cleared.len());
            for text in &cleared {
                let id = HoldId::parse(text).ok_or_else(|| {
                    invalid("cleared_holds", text, "hold ids `h-` + 32 hex characters")
                })?;
                cleared_holds.push(id);
            }
            let status_text = required(wire.status, "status")?;
            Ok(Event::AccountUpserted(AccountUpserted {
                event_id: id_text(wire.event_id, "event_id")?,
                at: timestamp(wire.at, "at")?,
                account_id: id_text(wire.account_id, "account_id")?,
                version: Version(required(wire.version, "version")?),
                status: AccountStatus::parse(&status_text)
                    .ok_or_else(|| invalid("status", &status_text, "open, frozen or closed"))?,
                currency: currency(wire.currency, "currency")?,
                credit_limit: amount_non_negative(wire.credit_limit, "credit_limit")?,
                posted_balance: AmountMinor::new(posted).ok_or_else(|| {
                    invalid(
                        "posted_balance",
                        posted,
                        "an integer within ±999999999999999",
                    )
                })?,
                cleared_holds,
            }))
        }
        "card.upserted" => {
            let pan_hash_text = required(wire.pan_hash, "pan_hash")?;
            let pan_hash = PanHash::parse_hex(&pan_hash_text)
                .ok_or_else(|| invalid("pan_hash", &pan_hash_text, "64 hex characters"))?;
            let last4_text = required(wire.pan_last4, "pan_last4")?;
            let last4 = last4_text.as_bytes();
            if last4.len() != 4 || !last4.iter().all(u8::is_ascii_digit) {
                return Err(invalid("pan_last4", &last4_text, "4 digits"));
            }
            let expiry_text = required(wire.expiry, "expiry")?;
            let psn_text = required(wire.psn, "psn")?;
            let status_text = required(wire.status, "status")?;
            let key_set = id_text(wire.key_set, "key_set")?;
            Ok(Event::CardUpserted(CardUpserted {
                event_id: id_text(wire.event_id, "event_id")?,
                at: timestamp(wire.at, "at")?,
                account_id: id_text(wire.account_id, "account_id")?,
                card_id: id_text(wire.card_id, "card_id")?,
                version: Version(required(wire.version, "version")?),
                pan_hash,
                pan_last4: [last4[0], last4[1], last4[2], last4[3]],
                expiry: CardExpiry::parse_yymm(expiry_text.as_bytes())
                    .ok_or_else(|| invalid("expiry", &expiry_text, "YYMM with month 01..12"))?,
                psn: PanSequence::parse(&psn_text)
                    .ok_or_else(|| invalid("psn", &psn_text, "2 digits"))?,
                status: CardStatus::parse(&status_text).ok_or_else(|| {
                    invalid(
                        "status",
                        &status_text,
                        "active, blocked, lost, stolen or closed",
                    )
                })?,
                key_set,
            }))
        }
        other => {
            if AuthorizationKind::parse(other).is_some() {
                Err(EventError::WrongTopic {
                    event_type: other.to_owned(),
                    source: Source::AccountUpdates,
                })
            } else {
                Err(EventError::UnknownType {
                    event_type: other.chars().take(64).collect(),
                })
            }
        }
    }
}

#[derive(Serialize, Deserialize)]
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

#[derive(Serialize, Deserialize)]
struct AuthorizationWire<'a> {
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
    #[serde(borrow)]
    trace: Option<TraceWire<'a>>,
}

fn digits_value(
    value: Option<Cow<'_, str>>,
    field: &'static str,
    len: std::ops::RangeInclusive<usize>,
    expected: &'static str,
) -> Result<u64, EventError> {
    let text = required(value, field)?;
    let b = text.as_bytes();
    if !len.contains(&b.len()) || !b.iter().all(u8::is_ascii_digit) {
        return Err(invalid(field, &text, expected));
    }
    Ok(b.iter().fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0')))
}

fn parse_authorization(payload: &[u8]) -> Result<AuthorizationEvent<'_>, EventError> {
    let wire: AuthorizationWire<'_> = serde_json::from_slice(payload).map_err(json_error)?;
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
    if !(10..=19).contains(&pan_masked.len())
        || !pan_masked.bytes().all(|b| b.is_ascii_digit() || b == b'*')
    {
        return Err(invalid(
            "trace.pan_masked",
            &pan_masked,
            "10..=19 digits and `*`",
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
        trace: Trace {
            mti: mti_text,
            pan_masked,
            transmission: TransmissionDateTime(transmission),
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
