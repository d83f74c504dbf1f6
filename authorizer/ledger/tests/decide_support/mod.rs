//! The account, card and request that the decision tests share (`decide_rules`,
//! `decide_repeats_atc`): one open account `acc-1` in 986, one active card, a 0100 of 986.
#![allow(dead_code)]

use ledger::decide::{DecideConfig, MessageClass, Request};
use ledger::time::parse_rfc3339_utc;
use ledger::{
    AmountMinor, Currency, InstitutionId, LedgerConfig, PanHash, Source, Stan, State,
    TransmissionStamp, UnixSeconds,
};

pub const PAN_HASH: &str = "5f0e1c2b3a49586776859a0b1c2d3e4f5f0e1c2b3a49586776859a0b1c2d3e4f";

pub fn now() -> UnixSeconds {
    parse_rfc3339_utc("2026-11-22T10:15:05Z").unwrap()
}

pub fn config() -> DecideConfig {
    let config = DecideConfig::new("auth-a");
    config.validate().unwrap();
    config
}

/// `account.upserted` of `acc-1` (currency 986, nothing posted).
pub fn account_json(version: u64, status: &str, limit: i64) -> Vec<u8> {
    format!(
        r#"{{"schema":1,"type":"account.upserted","event_id":"acc-v{version}-{status}","at":"2026-11-22T10:00:00Z","account_id":"acc-1","version":{version},"status":"{status}","currency":"986","credit_limit":{limit},"posted_balance":0}}"#
    )
    .into_bytes()
}

/// `card.upserted` of `card-1` on `acc-1`, the card whose PAN hash is [`PAN_HASH`].
pub fn card_json(version: u64, status: &str, expiry: &str) -> Vec<u8> {
    format!(
        r#"{{"schema":1,"type":"card.upserted","event_id":"card-v{version}","at":"2026-11-22T10:00:00Z","account_id":"acc-1","card_id":"card-1","version":{version},"pan_hash":"{PAN_HASH}","pan_last4":"0010","expiry":"{expiry}","psn":"01","status":"{status}","key_set":"mc-cvn17-1"}}"#
    )
    .into_bytes()
}

pub fn account(state: &mut State, version: u64, status: &str, limit: i64) {
    state
        .apply_json(
            Source::AccountUpdates,
            &account_json(version, status, limit),
        )
        .unwrap();
}

pub fn card(state: &mut State, version: u64, status: &str, expiry: &str) {
    state
        .apply_json(Source::AccountUpdates, &card_json(version, status, expiry))
        .unwrap();
}

/// An open account with `limit` and its active card.
pub fn ready_state(limit: i64) -> State {
    let mut state = State::new(LedgerConfig::default());
    account(&mut state, 1, "open", limit);
    card(&mut state, 1, "active", "2811");
    state
}

pub fn amount(value: i64) -> AmountMinor {
    AmountMinor::new(value).unwrap()
}

pub fn authorization(stan: u32, amount_minor: i64) -> Request<'static> {
    Request {
        class: MessageClass::Authorization,
        mti: *b"0100",
        pan_hash: PanHash::parse_hex(PAN_HASH).unwrap(),
        pan_masked: "541333******0010",
        transmission: TransmissionStamp(1_122_101_500),
        stan: Stan(stan),
        processing_code: Some(*b"000000"),
        acquirer: InstitutionId(12345),
        forwarder: InstitutionId(0),
        amount_transaction: amount(amount_minor),
        currency_transaction: Currency::new(986).unwrap(),
        amount_billing: None,
        currency_billing: None,
        card_expiry: None,
        merchant_category: Some(5812),
        network_response_code: None,
        original: None,
        replacement: None,
        retrieval_reference: Some("123456789012"),
        chip: None,
    }
}
