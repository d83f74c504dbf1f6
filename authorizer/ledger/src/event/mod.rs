//! The events of the log: parsing the cloud's contract (`account.upserted`, `card.upserted`)
//! and the authorizers' own events (`hold.placed`, `hold.adjusted`, `hold.released`,
//! `authorization.declined`), and serializing the latter.
//!
//! Parsing never panics and never trusts a field: every value is checked and bounded here, and
//! every rejection names the field and the value in [`EventError`]. Strings are borrowed from
//! the input where JSON allows it (no escapes), so parsing allocates only for `cleared_holds`.
//! The JSON is read by `super::json::Reader` into the wire structs of `cloud.rs` and
//! `authorization.rs`; `serde_json` into the same structs is kept as `reference` (tests and
//! feature `fuzzing`), which the reader must match on every input (differential proptests in
//! `reference.rs`, fuzz target `event_parse`).
//!
//! # Files
//!
//! This file: the [`Event`] itself, its [`Source`], the bounds, [`EventError`] and the field
//! checks. Then `cloud.rs` (the cloud's `account.upserted` and `card.upserted`),
//! `authorization.rs` (the authorizers' events and `to_json`), `codes.rs` (their small value
//! types) and `reference.rs` (the serde_json reference and the differential tests).

use std::borrow::Cow;
use std::fmt;

use super::time::parse_rfc3339_utc;
use super::types::{AmountMinor, Currency, EventKey, UnixSeconds};

mod authorization;
mod cloud;
mod codes;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod reference;

use authorization::parse_authorization;
pub use authorization::{
    ApprovalCode, AuthorizationEvent, AuthorizationKind, CardAtc, DeclineReason, Trace, Unconverted,
};
use cloud::parse_cloud;
pub use cloud::{AccountUpserted, CardUpserted};

/// The stream (topic) an event was read from; it decides which event shapes are acceptable.
/// The Kafka edge names each input topic by its `Source` (one name for one concept).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    /// The cloud's topic (`docs/kafka-contract.md`): `account.upserted`, `card.upserted`.
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

/// Fields whose value a rejection never quotes (the card's identity): the reason says how long
/// the value was, nothing more. A dead letter keeps the payload itself, behind its topic's ACLs.
pub const WITHHELD_FIELDS: [&str; 3] = ["pan_hash", "pan_last4", "trace.pan_masked"];

/// The most characters of an offending value a rejection quotes; a longer one is cut, with `…`.
pub const REASON_VALUE_MAX: usize = 64;

fn invalid(field: &'static str, value: impl fmt::Display, expected: &'static str) -> EventError {
    let text = value.to_string();
    let value = if WITHHELD_FIELDS.contains(&field) {
        format!("<withheld, {} characters>", text.chars().count())
    } else if text.chars().count() > REASON_VALUE_MAX {
        let mut cut: String = text.chars().take(REASON_VALUE_MAX).collect();
        cut.push('…');
        cut
    } else {
        text
    };
    EventError::InvalidField {
        field,
        value,
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

fn check_schema(schema: Option<u64>) -> Result<(), EventError> {
    let schema = required(schema, "schema")?;
    if schema != SCHEMA {
        return Err(EventError::UnsupportedSchema { schema });
    }
    Ok(())
}
