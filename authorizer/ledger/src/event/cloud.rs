//! The cloud's events on `account-updates` (`docs/kafka-contract.md`): [`AccountUpserted`] and
//! [`CardUpserted`], their wire struct, the reader into it and the checks after it.
//!
//! Must never: accept an authorizer event on this topic (that is [`EventError::WrongTopic`]),
//! nor let a field through unchecked: every value is bounded here before it is in an [`Event`].

use std::borrow::Cow;

#[cfg(any(test, feature = "fuzzing"))]
use serde::Deserialize;

#[cfg(any(test, feature = "fuzzing"))]
use super::reference::{text, texts};
use super::{
    AuthorizationKind, CLEARED_HOLDS_MAX, Event, EventError, Source, amount_non_negative,
    check_schema, currency, id_text, invalid, required, timestamp,
};
use crate::json;
use crate::types::{
    AccountStatus, AmountMinor, CardExpiry, CardStatus, Currency, HoldId, PanHash, PanSequence,
    UnixSeconds, Version,
};

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

/// The fields of a cloud event as they are on the wire (read by [`read_cloud`]).
#[derive(Debug, Default, PartialEq)]
#[cfg_attr(any(test, feature = "fuzzing"), derive(Deserialize))]
pub(super) struct CloudWire<'a> {
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

pub(super) fn parse_cloud(payload: &[u8]) -> Result<Event<'_>, EventError> {
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
pub(super) fn read_cloud(payload: &[u8]) -> json::JsonResult<CloudWire<'_>> {
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
                w.pan_hash = r.secret_text()?;
            }
            Some(13) => {
                w.pan_last4 = r.secret_text()?;
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
pub(super) fn cloud_event(wire: CloudWire<'_>) -> Result<Event<'_>, EventError> {
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
