//! Apply rules and rejection reasons of the ledger, one test per rule.

use ledger::state::WATERMARK_QUORUM;
use ledger::{
    AccountStatus, Applied, Event, EventError, HoldId, LedgerConfig, PanHash, PanKey, Source,
    State, UnixSeconds,
};

const PAN_HASH: &str = "5f0e1c2b3a49586776859a0b1c2d3e4f5f0e1c2b3a49586776859a0b1c2d3e4f";
const HOLD: &str = "h-00112233445566778899aabbccddeeff";

fn account_json(
    event_id: &str,
    version: u64,
    limit: i64,
    balance: i64,
    cleared: &[&str],
) -> Vec<u8> {
    let cleared: Vec<String> = cleared.iter().map(|c| format!("\"{c}\"")).collect();
    format!(
        r#"{{"schema":1,"type":"account.upserted","event_id":"{event_id}","at":"2026-11-22T10:15:00Z","account_id":"acc-1","version":{version},"status":"open","currency":"986","credit_limit":{limit},"posted_balance":{balance},"cleared_holds":[{}]}}"#,
        cleared.join(",")
    )
    .into_bytes()
}

fn card_json(event_id: &str, version: u64, status: &str) -> Vec<u8> {
    format!(
        r#"{{"schema":1,"type":"card.upserted","event_id":"{event_id}","at":"2026-11-22T10:15:00Z","account_id":"acc-1","card_id":"card-1","version":{version},"pan_hash":"{PAN_HASH}","pan_last4":"0010","expiry":"2811","psn":"01","status":"{status}","key_set":"mc-cvn17-1"}}"#
    )
    .into_bytes()
}

fn hold_json(event_id: &str, kind: &str, at: &str, amount: i64, extra: &str) -> Vec<u8> {
    format!(
        r#"{{"schema":1,"type":"{kind}","event_id":"{event_id}","at":"{at}","instance":"auth-a","account_id":"acc-1","hold_id":"{HOLD}","response_code":"00","amount_minor":{amount},"currency":"986"{extra},"trace":{{"mti":"0100","pan_masked":"541333******0010","transmission_date_time":"1122101500","transmitted_at":"2026-11-22T10:15:00Z","stan":"000123","acquirer_id":"12345","forwarder_id":"0"}}}}"#
    )
    .into_bytes()
}

fn placed(event_id: &str, amount: i64) -> Vec<u8> {
    hold_json(
        event_id,
        "hold.placed",
        "2026-11-22T10:15:01Z",
        amount,
        r#","approval_code":"ABC123","expires_at":"2026-11-29T10:15:00Z""#,
    )
}

fn released(event_id: &str, remaining: i64) -> Vec<u8> {
    hold_json(
        event_id,
        "hold.released",
        "2026-11-22T10:20:00Z",
        0,
        &format!(r#","remaining_minor":{remaining}"#),
    )
}

fn now() -> UnixSeconds {
    ledger::time::parse_rfc3339_utc("2026-11-22T12:00:00Z").unwrap()
}

fn state() -> State {
    State::new(LedgerConfig::default())
}

fn otb(state: &State) -> i128 {
    state
        .open_to_buy(state.account_by_id("acc-1").unwrap(), now())
        .0
}

#[test]
fn account_upsert_is_parsed_and_applied() {
    let mut s = state();
    assert_eq!(
        s.apply_json(
            Source::AccountUpdates,
            &account_json("e1", 1, 500_000, 123_450, &[])
        ),
        Ok(Applied::Changed)
    );
    let account = s.account(s.account_by_id("acc-1").unwrap());
    assert_eq!(account.status(), AccountStatus::Open);
    assert_eq!(account.credit_limit().minor(), 500_000);
    assert_eq!(account.currency().code(), 986);
    assert_eq!(otb(&s), 500_000 - 123_450);
    assert_eq!(s.counts().accounts, 1);
}

#[test]
fn last_writer_wins_by_version_in_any_order() {
    let mut a = state();
    a.apply_json(Source::AccountUpdates, &account_json("e1", 1, 100, 0, &[]))
        .unwrap();
    a.apply_json(Source::AccountUpdates, &account_json("e2", 2, 200, 0, &[]))
        .unwrap();
    let mut b = state();
    b.apply_json(Source::AccountUpdates, &account_json("e2", 2, 200, 0, &[]))
        .unwrap();
    assert_eq!(
        b.apply_json(Source::AccountUpdates, &account_json("e1", 1, 100, 0, &[])),
        Ok(Applied::Unchanged)
    );
    assert_eq!(otb(&a), 200);
    assert_eq!(a.state_hash(), b.state_hash());
    // Equal version, different content: both replicas keep the same (larger) content.
    let mut c = state();
    c.apply_json(Source::AccountUpdates, &account_json("e3", 3, 300, 0, &[]))
        .unwrap();
    c.apply_json(Source::AccountUpdates, &account_json("e4", 3, 301, 0, &[]))
        .unwrap();
    let mut d = state();
    d.apply_json(Source::AccountUpdates, &account_json("e4", 3, 301, 0, &[]))
        .unwrap();
    d.apply_json(Source::AccountUpdates, &account_json("e3", 3, 300, 0, &[]))
        .unwrap();
    assert_eq!(c.state_hash(), d.state_hash());
    assert_eq!(otb(&c), 301);
}

#[test]
fn duplicate_event_id_changes_nothing() {
    let mut s = state();
    s.apply_json(Source::AccountUpdates, &account_json("e1", 1, 100, 0, &[]))
        .unwrap();
    let hash = s.state_hash();
    assert_eq!(
        s.apply_json(Source::AccountUpdates, &account_json("e1", 5, 999, 0, &[])),
        Ok(Applied::Unchanged)
    );
    assert_eq!(s.state_hash(), hash);
}

#[test]
fn dedup_window_is_bounded() {
    let mut s = State::new(LedgerConfig {
        dedup_window_events: 2,
    });
    for i in 0..5 {
        s.apply_json(
            Source::AccountUpdates,
            &account_json(&format!("e{i}"), i, 100, 0, &[]),
        )
        .unwrap();
    }
    assert_eq!(s.counts().dedup_window, 2);
}

#[test]
fn card_upsert_keys_by_pan_hash() {
    let mut s = state();
    s.apply_json(Source::AccountUpdates, &account_json("e1", 1, 100, 0, &[]))
        .unwrap();
    s.apply_json(Source::AccountUpdates, &card_json("c1", 1, "active"))
        .unwrap();
    s.apply_json(Source::AccountUpdates, &card_json("c2", 2, "lost"))
        .unwrap();
    assert_eq!(
        s.apply_json(Source::AccountUpdates, &card_json("c0", 1, "active")),
        Ok(Applied::Unchanged)
    );
    let card = s.card(&PanHash::parse_hex(PAN_HASH).unwrap()).unwrap();
    assert_eq!(card.status(), ledger::CardStatus::Lost);
    assert_eq!(s.card_id(card), "card-1");
    assert_eq!(s.key_set_name(card), "mc-cvn17-1");
    assert_eq!(card.expiry().year, 2028);
    assert_eq!(s.counts().cards, 1);
}

#[test]
fn pan_hash_helper_is_hmac_sha256_of_the_digits() {
    let key = PanKey::parse_hex(&"00".repeat(32)).unwrap();
    let a = PanHash::of_pan(&key, b"5413330000000010").unwrap();
    let b = PanHash::of_pan(&key, b"5413330000000010").unwrap();
    assert_eq!(a, b);
    assert_ne!(a, PanHash::of_pan(&key, b"5413330000000011").unwrap());
    assert!(PanHash::of_pan(&key, b"54133300000A0010").is_none());
    assert!(PanHash::of_pan(&key, b"12345").is_none());
    // Known value: HMAC-SHA256(32 zero bytes, "5413330000000010"), computed with Python's hmac.
    assert_eq!(
        a,
        PanHash::parse_hex("f8646e5b226047cb28efd4b4f758d026987b7e3cb45af505d59a78c0e5699af8")
            .unwrap()
    );
}

#[test]
fn hold_placed_reduces_open_to_buy_and_release_restores_it() {
    let mut s = state();
    s.apply_json(
        Source::AccountUpdates,
        &account_json("e1", 1, 10_000, 0, &[]),
    )
    .unwrap();
    assert_eq!(
        s.apply_json(Source::Authorizations, &placed("p1", 2_500)),
        Ok(Applied::Changed)
    );
    assert_eq!(otb(&s), 7_500);
    s.apply_json(Source::Authorizations, &released("r1", 1_000))
        .unwrap();
    assert_eq!(otb(&s), 9_000, "a partial reversal leaves 1,000 held");
    s.apply_json(Source::Authorizations, &released("r2", 0))
        .unwrap();
    assert_eq!(otb(&s), 10_000);
    // The same place again (another event id, e.g. replayed by a second replica) changes nothing.
    assert_eq!(
        s.apply_json(Source::Authorizations, &placed("p2", 2_500)),
        Ok(Applied::Unchanged)
    );
    assert_eq!(otb(&s), 10_000);
}

#[test]
fn release_before_hold_wins() {
    let mut a = state();
    a.apply_json(
        Source::AccountUpdates,
        &account_json("e1", 1, 10_000, 0, &[]),
    )
    .unwrap();
    a.apply_json(Source::Authorizations, &released("r1", 0))
        .unwrap();
    a.apply_json(Source::Authorizations, &placed("p1", 2_500))
        .unwrap();
    assert_eq!(otb(&a), 10_000);
    let mut b = state();
    b.apply_json(
        Source::AccountUpdates,
        &account_json("e1", 1, 10_000, 0, &[]),
    )
    .unwrap();
    b.apply_json(Source::Authorizations, &placed("p1", 2_500))
        .unwrap();
    b.apply_json(Source::Authorizations, &released("r1", 0))
        .unwrap();
    assert_eq!(a.state_hash(), b.state_hash());
}

#[test]
fn posting_clears_holds_in_any_order() {
    let mut a = state();
    a.apply_json(
        Source::AccountUpdates,
        &account_json("e1", 1, 10_000, 0, &[]),
    )
    .unwrap();
    a.apply_json(Source::Authorizations, &placed("p1", 2_500))
        .unwrap();
    a.apply_json(
        Source::AccountUpdates,
        &account_json("e2", 2, 10_000, 2_500, &[HOLD]),
    )
    .unwrap();
    assert_eq!(
        otb(&a),
        7_500,
        "the posting replaces the hold, not adds to it"
    );
    let mut b = state();
    b.apply_json(
        Source::AccountUpdates,
        &account_json("e2", 2, 10_000, 2_500, &[HOLD]),
    )
    .unwrap();
    b.apply_json(
        Source::AccountUpdates,
        &account_json("e1", 1, 10_000, 0, &[]),
    )
    .unwrap();
    b.apply_json(Source::Authorizations, &placed("p1", 2_500))
        .unwrap();
    assert_eq!(otb(&b), 7_500);
    assert_eq!(a.state_hash(), b.state_hash());
    assert_eq!(a.counts().cleared_markers, 1);
}

#[test]
fn advice_overrides_the_approval_amount() {
    let mut s = state();
    s.apply_json(
        Source::AccountUpdates,
        &account_json("e1", 1, 10_000, 0, &[]),
    )
    .unwrap();
    s.apply_json(Source::Authorizations, &placed("p1", 2_500))
        .unwrap();
    let advice = hold_json(
        "a1",
        "hold.adjusted",
        "2026-11-22T10:16:00Z",
        4_000,
        r#","network_response_code":"00","expires_at":"2026-11-29T10:15:00Z""#,
    );
    s.apply_json(Source::Authorizations, &advice).unwrap();
    assert_eq!(otb(&s), 6_000);
    let declined = hold_json(
        "a2",
        "hold.adjusted",
        "2026-11-22T10:16:00Z",
        0,
        r#","network_response_code":"05","expires_at":"2026-11-29T10:15:00Z""#,
    );
    let mut t = state();
    t.apply_json(
        Source::AccountUpdates,
        &account_json("e1", 1, 10_000, 0, &[]),
    )
    .unwrap();
    t.apply_json(Source::Authorizations, &declined).unwrap();
    t.apply_json(Source::Authorizations, &placed("p1", 2_500))
        .unwrap();
    assert_eq!(otb(&t), 10_000, "a stand-in decline advice holds nothing");
}

#[test]
fn expired_holds_do_not_count_and_retired_holds_are_purged() {
    let mut s = state();
    s.apply_json(
        Source::AccountUpdates,
        &account_json("e1", 1, 10_000, 0, &[]),
    )
    .unwrap();
    s.apply_json(Source::Authorizations, &placed("p1", 2_500))
        .unwrap();
    let index = s.account_by_id("acc-1").unwrap();
    let after_expiry = ledger::time::parse_rfc3339_utc("2026-11-29T10:15:00Z").unwrap();
    assert_eq!(s.open_to_buy(index, after_expiry).0, 10_000);
    assert_eq!(
        s.counts().holds,
        1,
        "expiry alone does not remove the record"
    );
    // Authorizer events 46 days later (as many as the watermark's quorum) move the watermark
    // past the retention.
    for i in 0..WATERMARK_QUORUM {
        let late = hold_json(
            &format!("x{i}"),
            "authorization.declined",
            "2027-01-07T10:15:00Z",
            10,
            "",
        );
        let late = String::from_utf8(late)
            .unwrap()
            .replace("h-0011", &format!("h-99{i}1"))
            .replace("1122101500", "0107101500")
            .replace("2026-11-22T10:15:00Z", "2027-01-07T10:15:00Z");
        s.apply_json(Source::Authorizations, late.as_bytes())
            .unwrap();
    }
    assert_eq!(
        s.counts().holds,
        WATERMARK_QUORUM as u64,
        "only the new decline records are left"
    );
    assert!(s.hold(&HoldId::parse(HOLD).unwrap()).is_none());
    // A part of the retired hold that arrives now is dropped.
    assert_eq!(
        s.apply_json(Source::Authorizations, &released("r9", 0)),
        Ok(Applied::Unchanged)
    );
    assert!(s.hold(&HoldId::parse(HOLD).unwrap()).is_none());
    s.assert_invariants();
}

fn reason(source: Source, payload: &[u8]) -> EventError {
    Event::parse(source, payload).unwrap_err()
}

#[test]
fn every_rejection_names_the_field() {
    let good = String::from_utf8(account_json("e1", 1, 100, 0, &[])).unwrap();
    let card = String::from_utf8(card_json("c1", 1, "active")).unwrap();
    assert!(matches!(
        reason(Source::AccountUpdates, b"{not json"),
        EventError::Json { .. }
    ));
    assert!(matches!(
        reason(Source::AccountUpdates, br#"{"schema":"1"}"#),
        EventError::Json { .. }
    ));
    assert_eq!(
        reason(
            Source::AccountUpdates,
            good.replace(r#""version":1,"#, "").as_bytes()
        ),
        EventError::MissingField { field: "version" }
    );
    assert_eq!(
        reason(
            Source::AccountUpdates,
            good.replace(r#""schema":1"#, r#""schema":2"#).as_bytes()
        ),
        EventError::UnsupportedSchema { schema: 2 }
    );
    assert!(matches!(
        reason(
            Source::AccountUpdates,
            good.replace("account.upserted", "account.deleted")
                .as_bytes()
        ),
        EventError::UnknownType { .. }
    ));
    assert!(matches!(
        reason(Source::Authorizations, good.as_bytes()),
        EventError::WrongTopic { .. }
    ));
    let field = |e: EventError| match e {
        EventError::InvalidField { field, .. } => field,
        other => panic!("expected InvalidField, got {other:?}"),
    };
    assert_eq!(
        field(reason(
            Source::AccountUpdates,
            good.replace(r#""credit_limit":100"#, r#""credit_limit":-1"#)
                .as_bytes()
        )),
        "credit_limit"
    );
    assert_eq!(
        field(reason(
            Source::AccountUpdates,
            good.replace(r#""status":"open""#, r#""status":"gone""#)
                .as_bytes()
        )),
        "status"
    );
    assert_eq!(
        field(reason(
            Source::AccountUpdates,
            good.replace(r#""currency":"986""#, r#""currency":"BRL""#)
                .as_bytes()
        )),
        "currency"
    );
    assert_eq!(
        field(reason(
            Source::AccountUpdates,
            good.replace("2026-11-22T10:15:00Z", "yesterday").as_bytes()
        )),
        "at"
    );
    assert_eq!(
        field(reason(
            Source::AccountUpdates,
            good.replace(r#""cleared_holds":[]"#, r#""cleared_holds":["h-xyz"]"#)
                .as_bytes()
        )),
        "cleared_holds"
    );
    assert_eq!(
        field(reason(
            Source::AccountUpdates,
            good.replace(r#""account_id":"acc-1""#, r#""account_id":"""#)
                .as_bytes()
        )),
        "account_id"
    );
    assert_eq!(
        field(reason(
            Source::AccountUpdates,
            card.replace(PAN_HASH, "abc").as_bytes()
        )),
        "pan_hash"
    );
    assert_eq!(
        field(reason(
            Source::AccountUpdates,
            card.replace(r#""expiry":"2811""#, r#""expiry":"2813""#)
                .as_bytes()
        )),
        "expiry"
    );
    assert_eq!(
        field(reason(
            Source::AccountUpdates,
            card.replace(r#""psn":"01""#, r#""psn":"1""#).as_bytes()
        )),
        "psn"
    );
    assert_eq!(
        field(reason(
            Source::AccountUpdates,
            card.replace(r#""status":"active""#, r#""status":"on""#)
                .as_bytes()
        )),
        "status"
    );
    assert_eq!(
        field(reason(
            Source::AccountUpdates,
            card.replace(r#""pan_last4":"0010""#, r#""pan_last4":"10""#)
                .as_bytes()
        )),
        "pan_last4"
    );
    // Dead-letter reasons are readable and name the value.
    let text = reason(
        Source::AccountUpdates,
        good.replace(r#""credit_limit":100"#, r#""credit_limit":-1"#)
            .as_bytes(),
    )
    .to_string();
    assert!(
        text.contains("credit_limit") && text.contains("-1"),
        "{text}"
    );
    // Unknown fields are ignored (the contract allows extensions).
    assert!(
        Event::parse(
            Source::AccountUpdates,
            good.replace(r#""schema":1,"#, r#""schema":1,"extra":{"a":[1]},"#)
                .as_bytes()
        )
        .is_ok()
    );
}

#[test]
fn authorization_events_roundtrip_through_json() {
    let bytes = placed("p1", 2_500);
    let event = Event::parse(Source::Authorizations, &bytes).unwrap();
    let Event::Authorization(auth) = event else {
        panic!("not an authorization event")
    };
    let json = auth.to_json();
    let again = Event::parse(Source::Authorizations, &json).unwrap();
    assert_eq!(again, Event::Authorization(auth.clone()));
    assert_eq!(auth.account_id(), "acc-1");
    assert_eq!(auth.event_id(), "p1");
    let broken = String::from_utf8(placed("p1", 2_500))
        .unwrap()
        .replace(r#","expires_at":"2026-11-29T10:15:00Z""#, "");
    assert_eq!(
        reason(Source::Authorizations, broken.as_bytes()),
        EventError::MissingField {
            field: "expires_at"
        }
    );
}

#[test]
fn bad_input_never_panics() {
    let mut s = state();
    for payload in [
        &b""[..],
        b"null",
        b"[]",
        b"{}",
        b"\xff\xfe",
        br#"{"schema":1,"type":"card.upserted"}"#,
        br#"{"schema":18446744073709551616}"#,
    ] {
        assert!(s.apply_json(Source::AccountUpdates, payload).is_err());
        assert!(s.apply_json(Source::Authorizations, payload).is_err());
    }
}

#[test]
fn a_runaway_clock_cannot_retire_holds() {
    let mut s = state();
    s.apply_json(
        Source::AccountUpdates,
        &account_json("e1", 1, 10_000, 0, &[]),
    )
    .unwrap();
    s.apply_json(Source::Authorizations, &placed("p1", 2_500))
        .unwrap();
    // Another replica's events stamped a year ahead, for requests whose DE 7 is today (as many
    // as the watermark's quorum, so that they could move it).
    for i in 0..WATERMARK_QUORUM {
        let ahead = String::from_utf8(hold_json(
            &format!("x{i}"),
            "authorization.declined",
            "2027-11-22T10:15:00Z",
            10,
            "",
        ))
        .unwrap()
        .replace("h-0011", &format!("h-99{i}1"));
        s.apply_json(Source::Authorizations, ahead.as_bytes())
            .unwrap();
    }
    assert_eq!(
        s.watermark().to_string(),
        "2026-11-23T10:15:00Z",
        "the watermark moves at most a day past DE 7"
    );
    assert!(s.hold(&HoldId::parse(HOLD).unwrap()).is_some());
    assert_eq!(otb(&s), 7_500);
}

/// An authorizer event (published by hand, or corrupt) dated decades ahead, among real
/// traffic, on two replicas that apply the log in different orders.
#[test]
fn one_far_future_event_cannot_drag_the_watermark_and_two_replicas_converge() {
    let far = String::from_utf8(hold_json(
        "far",
        "authorization.declined",
        "2060-01-01T00:00:00Z",
        10,
        "",
    ))
    .unwrap()
    .replace("h-0011", "h-ffff")
    .replace("2026-11-22T10:15:00Z", "2060-01-01T00:00:00Z")
    .replace("1122101500", "0101000000");
    let second_hold = String::from_utf8(placed("p2", 1_000))
        .unwrap()
        .replace("h-0011", "h-2211")
        .replace("000123", "000124");
    let log: Vec<(Source, Vec<u8>)> = vec![
        (
            Source::AccountUpdates,
            account_json("e1", 1, 10_000, 0, &[]),
        ),
        (Source::Authorizations, placed("p1", 2_500)),
        (Source::Authorizations, far.into_bytes()),
        (Source::Authorizations, second_hold.into_bytes()),
        (Source::AccountUpdates, card_json("c1", 1, "active")),
        (Source::Authorizations, released("r1", 2_000)),
    ];
    let mut a = state();
    for (source, payload) in &log {
        a.apply_json(*source, payload).unwrap();
    }
    // Replica B reads the cloud's topic first, and the authorizations in reverse batches.
    let mut b = state();
    for (source, payload) in log.iter().filter(|(s, _)| *s == Source::AccountUpdates) {
        b.apply_json(*source, payload).unwrap();
    }
    for (source, payload) in log
        .iter()
        .rev()
        .filter(|(s, _)| *s == Source::Authorizations)
    {
        b.apply_json(*source, payload).unwrap();
    }
    for s in [&a, &b] {
        assert!(
            s.watermark() < ledger::time::parse_rfc3339_utc("2026-12-01T00:00:00Z").unwrap(),
            "watermark {} dragged",
            s.watermark()
        );
        assert!(
            s.hold(&HoldId::parse(HOLD).unwrap()).is_some(),
            "the live hold stays"
        );
        // 2,000 left of the first hold, 1,000 of the second.
        assert_eq!(otb(s), 7_000);
        s.assert_invariants();
    }
    assert_eq!(a.state_hash(), b.state_hash());
}
