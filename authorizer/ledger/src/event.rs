//! The events of the log: parsing the cloud's contract (`account.upserted`, `card.upserted`)
//! and the authorizers' own events (`hold.placed`, `hold.adjusted`, `hold.released`,
//! `authorization.declined`), and serializing the latter.
//!
//! Parsing never panics and never trusts a field: every value is checked and bounded here, and
//! every rejection names the field and the value in [`EventError`]. Strings are borrowed from
//! the input where JSON allows it (no escapes), so parsing allocates only for `cleared_holds`.
//! The JSON is read by [`super::json::Reader`] into the wire structs below; `serde_json` into
//! the same structs is kept as `reference` (tests and feature `fuzzing`), which the reader
//! must match on every input (differential proptests here, fuzz target `event_parse`).

use std::borrow::Cow;
use std::fmt;

#[cfg(any(test, feature = "fuzzing"))]
use serde::Deserialize;
use serde::Serialize;

use super::json;
use super::time::parse_rfc3339_utc;
use super::types::{
    AccountStatus, AmountMinor, CardExpiry, CardStatus, Currency, EventKey, HoldId, InstitutionId,
    PanHash, PanSequence, ResponseCode, Stan, TransmissionStamp, UnixSeconds, Version,
};

/// The stream (topic) an event was read from; it decides which event shapes are acceptable.
/// The Kafka edge names each input topic by its `Source` (one name for one concept).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
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

#[cfg(any(test, feature = "fuzzing"))]
use reference::{text, texts};

/// The fields of a cloud event as they are on the wire (read by [`read_cloud`]).
#[derive(Debug, Default, PartialEq)]
#[cfg_attr(any(test, feature = "fuzzing"), derive(Deserialize))]
struct CloudWire<'a> {
    schema: Option<u64>,
    #[cfg_attr(
        any(test, feature = "fuzzing"),
        serde(rename = "type", borrow, default, deserialize_with = "text")
    )]
    kind: Option<Cow<'a, str>>,
    #[cfg_attr(
        any(test, feature = "fuzzing"),
        serde(borrow, default, deserialize_with = "text")
    )]
    event_id: Option<Cow<'a, str>>,
    #[cfg_attr(
        any(test, feature = "fuzzing"),
        serde(borrow, default, deserialize_with = "text")
    )]
    at: Option<Cow<'a, str>>,
    #[cfg_attr(
        any(test, feature = "fuzzing"),
        serde(borrow, default, deserialize_with = "text")
    )]
    account_id: Option<Cow<'a, str>>,
    version: Option<u64>,
    #[cfg_attr(
        any(test, feature = "fuzzing"),
        serde(borrow, default, deserialize_with = "text")
    )]
    status: Option<Cow<'a, str>>,
    #[cfg_attr(
        any(test, feature = "fuzzing"),
        serde(borrow, default, deserialize_with = "text")
    )]
    currency: Option<Cow<'a, str>>,
    credit_limit: Option<i64>,
    posted_balance: Option<i64>,
    #[cfg_attr(
        any(test, feature = "fuzzing"),
        serde(borrow, default, deserialize_with = "texts")
    )]
    cleared_holds: Option<Vec<Cow<'a, str>>>,
    #[cfg_attr(
        any(test, feature = "fuzzing"),
        serde(borrow, default, deserialize_with = "text")
    )]
    card_id: Option<Cow<'a, str>>,
    #[cfg_attr(
        any(test, feature = "fuzzing"),
        serde(borrow, default, deserialize_with = "text")
    )]
    pan_hash: Option<Cow<'a, str>>,
    #[cfg_attr(
        any(test, feature = "fuzzing"),
        serde(borrow, default, deserialize_with = "text")
    )]
    pan_last4: Option<Cow<'a, str>>,
    #[cfg_attr(
        any(test, feature = "fuzzing"),
        serde(borrow, default, deserialize_with = "text")
    )]
    expiry: Option<Cow<'a, str>>,
    #[cfg_attr(
        any(test, feature = "fuzzing"),
        serde(borrow, default, deserialize_with = "text")
    )]
    psn: Option<Cow<'a, str>>,
    #[cfg_attr(
        any(test, feature = "fuzzing"),
        serde(borrow, default, deserialize_with = "text")
    )]
    key_set: Option<Cow<'a, str>>,
}

fn check_schema(schema: Option<u64>) -> Result<(), EventError> {
    let schema = required(schema, "schema")?;
    if schema != SCHEMA {
        return Err(EventError::UnsupportedSchema { schema });
    }
    Ok(())
}

fn parse_cloud(payload: &[u8]) -> Result<Event<'_>, EventError> {
    cloud_event(read_cloud(payload).map_err(|e| *e)?)
}

/// The keys of a cloud event, in the contract's order for `account.upserted` (the reader
/// checks the next key against the one after the last first). Indices match `read_cloud`.
const CLOUD_FIELDS: &[&str] = &[
    "schema",
    "type",
    "event_id",
    "at",
    "account_id",
    "version",
    "status",
    "currency",
    "credit_limit",
    "posted_balance",
    "cleared_holds",
    "card_id",
    "pan_hash",
    "pan_last4",
    "expiry",
    "psn",
    "key_set",
];

/// Reads the wire fields of a cloud event (unknown fields skipped).
fn read_cloud(payload: &[u8]) -> json::JsonResult<CloudWire<'_>> {
    let mut reader = json::Reader::new(payload);
    let mut w = CloudWire::default();
    reader.object("struct CloudWire", CLOUD_FIELDS, |r, field| {
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
                w.account_id = r.text()?;
            }
            Some(5) => {
                w.version = r.uint()?;
            }
            Some(6) => {
                w.status = r.text()?;
            }
            Some(7) => {
                w.currency = r.text()?;
            }
            Some(8) => {
                w.credit_limit = r.int()?;
            }
            Some(9) => {
                w.posted_balance = r.int()?;
            }
            Some(10) => {
                w.cleared_holds = r.texts()?;
            }
            Some(11) => {
                w.card_id = r.text()?;
            }
            Some(12) => {
                w.pan_hash = r.text()?;
            }
            Some(13) => {
                w.pan_last4 = r.text()?;
            }
            Some(14) => {
                w.expiry = r.text()?;
            }
            Some(15) => {
                w.psn = r.text()?;
            }
            Some(16) => {
                w.key_set = r.text()?;
            }
            _ => r.skip()?,
        }
        Ok(())
    })?;
    reader.end()?;
    Ok(w)
}

/// Checks and converts the wire fields of a cloud event.
fn cloud_event(wire: CloudWire<'_>) -> Result<Event<'_>, EventError> {
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
    #[cfg_attr(
        any(test, feature = "fuzzing"),
        serde(default, deserialize_with = "reference::object_or_null")
    )]
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
                t.pan_masked = r.text()?;
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
fn read_authorization(payload: &[u8]) -> json::JsonResult<AuthorizationWire<'_>> {
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
fn authorization_event(wire: AuthorizationWire<'_>) -> Result<AuthorizationEvent<'_>, EventError> {
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

/// The serde_json path these events were parsed with before [`json::Reader`]: the reference the
/// differential tests and the `event_parse` fuzz target compare the reader with (same wire
/// structs, same checks after them). Not built in production (feature `fuzzing` or tests only).
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod reference {
    use std::borrow::Cow;
    use std::fmt;
    use std::marker::PhantomData;

    use serde::Deserialize;

    use super::*;

    /// A JSON string, borrowed from the payload when it has no escapes, owned otherwise (serde
    /// borrows a bare `Cow<str>` only when told to, and never inside an `Option` or a `Vec`).
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
    pub(super) fn text<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Cow<'de, str>>, D::Error> {
        Option::<Text<'de>>::deserialize(d).map(|t| t.map(|t| t.0))
    }

    /// `deserialize_with` for an optional list of strings.
    pub(super) fn texts<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Vec<Cow<'de, str>>>, D::Error> {
        Option::<Vec<Text<'de>>>::deserialize(d)
            .map(|v| v.map(|v| v.into_iter().map(|t| t.0).collect()))
    }

    /// A struct from a JSON object only (serde's derive also takes an array, fields by position;
    /// the contract says objects).
    struct Object<T>(T);

    impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct MapOnly<T>(PhantomData<T>);
            impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for MapOnly<T> {
                type Value = T;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                    T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                }
            }
            d.deserialize_map(MapOnly(PhantomData)).map(Object)
        }
    }

    /// `deserialize_with` for `trace`: an object or `null`.
    pub(super) fn object_or_null<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
    ) -> Result<Option<T>, D::Error> {
        Option::<Object<T>>::deserialize(d).map(|o| o.map(|o| o.0))
    }

    fn json_error(error: serde_json::Error) -> EventError {
        EventError::Json {
            message: error.to_string(),
        }
    }

    fn wire<'a, T: Deserialize<'a>>(payload: &'a [u8]) -> Result<T, EventError> {
        let mut de = serde_json::Deserializer::from_slice(payload);
        let Object(wire) = Object::<T>::deserialize(&mut de).map_err(json_error)?;
        de.end().map_err(json_error)?;
        Ok(wire)
    }

    /// `Event::parse` through serde_json.
    pub fn parse(source: Source, payload: &[u8]) -> Result<Event<'_>, EventError> {
        match source {
            Source::AccountUpdates => cloud_event(wire(payload)?),
            Source::Authorizations => authorization_event(wire(payload)?).map(Event::Authorization),
        }
    }

    /// The wire structs through serde_json and through [`json::Reader`], for comparison.
    pub fn wires_agree(source: Source, payload: &[u8]) -> Result<bool, (EventError, EventError)> {
        Ok(match source {
            Source::AccountUpdates => match (
                wire::<CloudWire<'_>>(payload),
                read_cloud(payload).map_err(|e| *e),
            ) {
                (Ok(a), Ok(b)) => a == b,
                (Err(_), Err(_)) => true,
                (a, b) => {
                    return Err((
                        a.err().unwrap_or(EventError::MissingField { field: "-" }),
                        b.err().unwrap_or(EventError::MissingField { field: "-" }),
                    ));
                }
            },
            Source::Authorizations => match (
                wire::<AuthorizationWire<'_>>(payload),
                read_authorization(payload).map_err(|e| *e),
            ) {
                (Ok(a), Ok(b)) => a == b,
                (Err(_), Err(_)) => true,
                (a, b) => {
                    return Err((
                        a.err().unwrap_or(EventError::MissingField { field: "-" }),
                        b.err().unwrap_or(EventError::MissingField { field: "-" }),
                    ));
                }
            },
        })
    }
}

#[cfg(test)]
mod tests {
    //! The hand-written reader against the serde_json reference: the same inputs accepted with
    //! the same events, the same inputs rejected (with the same error when it is not a JSON
    //! syntax or type error, whose message may differ).

    use proptest::prelude::*;

    use super::*;

    const CARD: &str = r#"{"schema":1,"type":"card.upserted","event_id":"0b0c0d0e-1111-4222-8333-000000000001","at":"2026-11-22T10:15:00Z","account_id":"acc-1","card_id":"card-1","version":2,"pan_hash":"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff","pan_last4":"0010","expiry":"2811","psn":"01","status":"active","key_set":"mc-cvn17-1"}"#;
    const ACCOUNT: &str = r#"{"schema":1,"type":"account.upserted","event_id":"e-1","at":"2026-11-22T10:15:00Z","account_id":"acc-1","version":7,"status":"open","currency":"986","credit_limit":500000,"posted_balance":-12,"cleared_holds":["h-00112233445566778899aabbccddeeff"]}"#;
    const PLACED: &str = r#"{"schema":1,"type":"hold.placed","event_id":"p-1","at":"2026-11-22T10:15:00Z","instance":"auth-a","account_id":"acc-1","hold_id":"h-00112233445566778899aabbccddeeff","response_code":"00","approval_code":"A1B2C3","amount_minor":2500,"currency":"986","expires_at":"2026-11-29T10:15:00Z","merchant_category":"5812","trace":{"mti":"0100","pan_masked":"541333******0010","transmission_date_time":"1122101500","transmitted_at":"2026-11-22T10:15:00Z","stan":"000123","acquirer_id":"12345","forwarder_id":"0","retrieval_reference":"RRN000000001"}}"#;
    const RELEASED: &str = r#"{"schema":1,"type":"hold.released","event_id":"r-1","at":"2026-11-22T10:15:00Z","instance":"auth-a","account_id":"acc-1","hold_id":"h-00112233445566778899aabbccddeeff","response_code":"00","amount_minor":2500,"currency":"986","remaining_minor":0,"trace":{"mti":"0400","pan_masked":"541333******0010","transmission_date_time":"1122101500","transmitted_at":"2026-11-22T10:15:00Z","stan":"000124","acquirer_id":"12345","forwarder_id":"0"}}"#;

    fn same(source: Source, payload: &[u8]) -> Result<(), TestCaseError> {
        let fast = Event::parse(source, payload);
        let slow = reference::parse(source, payload);
        match (&fast, &slow) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
            (Err(EventError::Json { .. }), Err(EventError::Json { .. })) => {}
            (Err(a), Err(b)) => prop_assert_eq!(a, b),
            _ => prop_assert!(
                false,
                "reader {fast:?} but serde {slow:?} for {:?}",
                String::from_utf8_lossy(payload)
            ),
        }
        let wires = reference::wires_agree(source, payload);
        prop_assert!(
            wires == Ok(true),
            "wire structs differ ({wires:?}) for {:?}",
            String::from_utf8_lossy(payload)
        );
        Ok(())
    }

    /// Bytes that matter to JSON and to the checks after it.
    fn interesting_byte() -> impl Strategy<Value = u8> {
        prop_oneof![
            prop::sample::select(b"{}[]:,\"\\ \t\n\r-+.eE0123456789abcdefnulltrsu/xAFDC".to_vec()),
            any::<u8>(),
        ]
    }

    /// A valid event edited in place: bytes replaced, inserted, removed, or fragments spliced in.
    fn mutated() -> impl Strategy<Value = (Source, Vec<u8>)> {
        let base = prop::sample::select(vec![
            (Source::AccountUpdates, CARD),
            (Source::AccountUpdates, ACCOUNT),
            (Source::Authorizations, PLACED),
            (Source::Authorizations, RELEASED),
        ]);
        let fragment = prop::sample::select(vec![
            "null",
            "true",
            "false",
            "-0",
            "0",
            "-1",
            "1.5",
            "1e3",
            "18446744073709551615",
            "18446744073709551616",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775808",
            "-9223372036854775809",
            "01",
            "[]",
            "{}",
            "[1,[2,{\"a\":[]}]]",
            "{\"x\":{\"y\":null}}",
            "\"\\u0041\"",
            "\"\\ud83d\\ude00\"",
            "\"\\ud83d\"",
            "\"\\ude00\"",
            "\"\\uZZZZ\"",
            "\"\\q\"",
            "\"\u{e9}\"",
            ",",
            ":",
            "\"schema\":1,",
            "\"type\":",
            "\"trace\":null,",
            "\"event_id\":\"x\",",
            "\"version\":",
            " \t\r\n",
            "\"sch\\u0065ma\"",
            "\"cleared_holds\":[\"h-00112233445566778899aabbccddeeff\",]",
            "\"cleared_holds\":null,",
            "\"unknown\":[\"\\ud800\",\"\u{1}\"],",
        ]);
        let edit = prop_oneof![
            (any::<prop::sample::Index>(), interesting_byte()).prop_map(|(i, b)| (0u8, i, vec![b])),
            (any::<prop::sample::Index>(), interesting_byte()).prop_map(|(i, b)| (1u8, i, vec![b])),
            any::<prop::sample::Index>().prop_map(|i| (2u8, i, Vec::new())),
            (any::<prop::sample::Index>(), fragment).prop_map(|(i, f)| (
                1u8,
                i,
                f.as_bytes().to_vec()
            )),
        ];
        (base, prop::collection::vec(edit, 1..4)).prop_map(|((source, text), edits)| {
            let mut bytes = text.as_bytes().to_vec();
            for (kind, index, insert) in edits {
                let at = index.index(bytes.len() + 1);
                match kind {
                    0 if at < bytes.len() => bytes[at] = insert[0],
                    2 if at < bytes.len() => {
                        bytes.remove(at);
                    }
                    _ => {
                        bytes.splice(at..at, insert);
                    }
                }
            }
            (source, bytes)
        })
    }

    /// Valid events with their fields reordered, spaced, escaped, duplicated, nulled or retyped,
    /// and unknown fields added.
    fn rewritten() -> impl Strategy<Value = (Source, Vec<u8>)> {
        let base = prop::sample::select(vec![
            (Source::AccountUpdates, CARD),
            (Source::AccountUpdates, ACCOUNT),
            (Source::Authorizations, PLACED),
            (Source::Authorizations, RELEASED),
        ]);
        let value_edit = prop_oneof![
            12 => Just("keep"),
            1 => prop::sample::select(vec![
            "keep",
            "keep",
            "keep",
            "keep",
            "keep",
            "keep",
            "keep",
            "keep",
            "null",
            "17",
            "\"x\"",
            "[]",
            "{}",
            "escape",
            "duplicate",
            "drop",
            "-0",
            "0",
            "-1",
            "1.5",
            "1e3",
            "01",
            "true",
            "nul",
            "\"\"",
            "18446744073709551615",
            "18446744073709551616",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775808",
            "-9223372036854775809",
            "\"\\ud83d\\ude00\"",
            "\"\\ud83d\"",
            "\"\\ude00\"",
            "\"\\ud83dx\"",
            "\"\u{e9}\"",
            "\"\\u00e9\"",
            "\"a\\tb\"",
            "[\"h-00112233445566778899aabbccddeeff\",]",
            "[\"h-00112233445566778899aabbccddeeff\",null]",
            "[[]]",
            "{\"mti\":\"0100\"}",
        ]),
        ];
        (
            base,
            prop::collection::vec(value_edit, 24),
            any::<u64>(),
            prop::sample::select(vec!["", " ", "\n\t", "\r"]),
        )
            .prop_map(|((source, text), edits, seed, space)| {
                let value: serde_json::Value = serde_json::from_str(text).expect("valid base");
                let object = value.as_object().expect("an object");
                let mut fields: Vec<String> = Vec::new();
                for (i, (key, field)) in object.iter().enumerate() {
                    let key_text = if edits[i % edits.len()] == "escape" {
                        // Escape the first character of the key.
                        let mut chars = key.chars();
                        let first = chars.next().unwrap_or('x');
                        format!("\"\\u{:04x}{}\"", first as u32, chars.as_str())
                    } else {
                        format!("{key:?}")
                    };
                    let value_text = match edits[i % edits.len()] {
                        "keep" | "escape" => {
                            let text = field.to_string();
                            if let Some(s) = field.as_str() {
                                if seed >> (i % 64) & 1 == 1 && !s.is_empty() {
                                    let mut chars = s.chars();
                                    let first = chars.next().unwrap_or('x');
                                    format!("\"\\u{:04X}{}\"", first as u32, chars.as_str())
                                } else {
                                    text
                                }
                            } else {
                                text
                            }
                        }
                        "duplicate" => {
                            fields.push(format!("{key_text}{space}:{space}{field}"));
                            field.to_string()
                        }
                        "drop" => continue,
                        other => other.to_owned(),
                    };
                    fields.push(format!("{key_text}{space}:{space}{value_text}"));
                    if seed >> ((i + 7) % 64) & 3 == 0 {
                        fields.push(format!(
                            "\"ext{i}\":{{\"a\":[1,-2.5e-3,\"\\n\",true,null]}}"
                        ));
                    }
                }
                let rotate = (seed % (fields.len() as u64 + 1)) as usize;
                let rotate = rotate.min(fields.len());
                fields.rotate_left(rotate);
                let joined = fields.join(&format!(",{space}"));
                (
                    source,
                    format!("{space}{{{space}{joined}{space}}}{space}").into_bytes(),
                )
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

        #[test]
        fn reader_matches_serde_on_edited_events((source, payload) in mutated()) {
            same(source, &payload)?;
            let other = match source {
                Source::AccountUpdates => Source::Authorizations,
                Source::Authorizations => Source::AccountUpdates,
            };
            same(other, &payload)?;
        }

        #[test]
        fn reader_matches_serde_on_rewritten_events((source, payload) in rewritten()) {
            same(source, &payload)?;
        }

        #[test]
        fn reader_matches_serde_on_any_bytes(payload in prop::collection::vec(interesting_byte(), 0..64)) {
            same(Source::AccountUpdates, &payload)?;
            same(Source::Authorizations, &payload)?;
        }
    }

    #[test]
    fn the_reference_events_parse() {
        for (source, text) in [
            (Source::AccountUpdates, CARD),
            (Source::AccountUpdates, ACCOUNT),
            (Source::Authorizations, PLACED),
            (Source::Authorizations, RELEASED),
        ] {
            let event = Event::parse(source, text.as_bytes()).expect(text);
            assert_eq!(Ok(event), reference::parse(source, text.as_bytes()));
        }
    }

    #[test]
    fn edge_cases_agree_with_serde() {
        let cases: Vec<String> = vec![
            // Arrays are not objects (serde's derive took them positionally; the contract does not).
            "[1,\"card.upserted\"]".into(),
            PLACED
                .replace("\"trace\":{", "\"trace\":[")
                .replace("}}", "]}"),
            // Duplicates, also after a null.
            CARD.replace("\"psn\":\"01\"", "\"psn\":null,\"psn\":\"01\""),
            CARD.replace("\"psn\":\"01\"", "\"psn\":\"01\",\"p\\u0073n\":\"01\""),
            // Unknown duplicates are fine.
            CARD.replace("\"psn\":\"01\"", "\"psn\":\"01\",\"x\":1,\"x\":[]"),
            // Deep nesting in an ignored value (serde has no limit there).
            CARD.replace(
                "\"psn\":\"01\"",
                &format!(
                    "\"psn\":\"01\",\"deep\":{}{}",
                    "[".repeat(5000),
                    "]".repeat(5000)
                ),
            ),
            // Invalid UTF-8 in an ignored string is accepted by serde; in a field it is not.
            format!("{},\"x\":\"\u{e9}\"}}", &CARD[..CARD.len() - 1]),
            // Numbers at the edges of the field types.
            ACCOUNT.replace("\"posted_balance\":-12", "\"posted_balance\":-0"),
            ACCOUNT.replace(
                "\"posted_balance\":-12",
                "\"posted_balance\":-9223372036854775808",
            ),
            ACCOUNT.replace(
                "\"posted_balance\":-12",
                "\"posted_balance\":9223372036854775808",
            ),
            ACCOUNT.replace("\"version\":7", "\"version\":18446744073709551615"),
            ACCOUNT.replace("\"version\":7", "\"version\":18446744073709551616"),
            ACCOUNT.replace("\"version\":7", "\"version\":7.0"),
            ACCOUNT.replace("\"version\":7", "\"version\":-7"),
            ACCOUNT.replace("\"version\":7", "\"version\":07"),
            // Trailing characters, trailing commas.
            format!("{CARD} x"),
            format!("{CARD}\n\t "),
            CARD.replace("}", ",}"),
            ACCOUNT.replace("\"]", "\",]"),
        ];
        for case in &cases {
            let source = if case.contains("hold.") {
                Source::Authorizations
            } else {
                Source::AccountUpdates
            };
            same(source, case.as_bytes()).unwrap();
        }
        let mut bytes = CARD.as_bytes().to_vec();
        let at = CARD.find("x\"").unwrap_or(10);
        bytes.splice(
            at..at,
            [
                b'"', b',', b'"', b'z', b'"', b':', b'"', 0xff, b'"', b',', b'"',
            ],
        );
        same(Source::AccountUpdates, &bytes).unwrap();
        // A bad key is an error even when its field is unknown.
        let bad_key = [&CARD.as_bytes()[..CARD.len() - 1], b",\"\xff\":1}"].concat();
        same(Source::AccountUpdates, &bad_key).unwrap();
        assert!(Event::parse(Source::AccountUpdates, &bad_key).is_err());
    }
}
