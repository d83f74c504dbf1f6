//! A repeat must share the whole content of its original (DE 3, DE 4, DE 49, DE 6, DE 51), and a
//! verified ARQC's ATC (9F36) must be above the highest one the state has seen for the card: on
//! one replica, across replicas whatever the order of the events, and through a snapshot.

use ledger::decide::{ChipData, Cryptogram, DecideConfig, Decision, Facts, Request};
use ledger::snapshot::{self, ResumeOffsets};
use ledger::{AuthorizationKind, Currency, LedgerConfig, PanHash, Source, State};

mod decide_support;
use decide_support::*;

fn chip(stan: u32, atc: u16) -> Request<'static> {
    Request {
        chip: Some(ChipData {
            amount: Some(amount(100)),
            currency: Some(Currency::new(986).unwrap()),
            date: Some((26, 11, 22)),
            atc: Some(atc),
        }),
        ..authorization(stan, 100)
    }
}

const VERIFIED: Facts = Facts {
    cryptogram: Cryptogram::Verified,
};
const NO_CHIP: Facts = Facts {
    cryptogram: Cryptogram::Absent,
};

/// Decides, and applies the published JSON as the daemon does; returns the decision and the
/// published event's JSON.
fn run(state: &mut State, request: &Request<'_>, facts: &Facts) -> (Decision<'static>, Vec<u8>) {
    let config = config();
    let decision = ledger::decide::decide(state, request, facts, &config, now()).into_owned();
    let mut json = Vec::new();
    if let Some(event) = &decision.event {
        json = event.to_json();
        state.apply_json(Source::Authorizations, &json).unwrap();
    }
    (decision, json)
}

fn code<'d>(decision: &'d Decision<'_>) -> &'d str {
    decision.response_code.as_str()
}

fn otb(state: &State) -> i128 {
    state
        .open_to_buy(state.account_by_id("acc-1").unwrap(), now())
        .0
}

#[test]
fn a_repeat_with_another_processing_code_is_declined_94_and_holds_nothing() {
    let mut state = ready_state(10_000);
    let (first, _) = run(&mut state, &authorization(1, 2_500), &NO_CHIP);
    assert_eq!(code(&first), "00");
    let hash = state.state_hash();
    // Same identity, same amount, but a cash withdrawal (DE 3 01xxxx) instead of a purchase.
    let cash = Request {
        mti: *b"0101",
        processing_code: Some(*b"010000"),
        ..authorization(1, 2_500)
    };
    let (second, _) = run(&mut state, &cash, &NO_CHIP);
    assert_eq!(code(&second), "94");
    assert!(second.event.is_none() && second.approval_code.is_none());
    assert_eq!(state.state_hash(), hash, "nothing changes");
    assert_eq!(otb(&state), 7_500, "nothing more held");
    // The true repeat still gets the first answer.
    let (again, _) = run(
        &mut state,
        &Request {
            mti: *b"0101",
            ..authorization(1, 2_500)
        },
        &NO_CHIP,
    );
    assert!(again.repeat);
    assert_eq!(code(&again), "00");
    assert_eq!(again.approval_code, first.approval_code);
}

#[test]
fn a_repeat_of_a_declined_request_with_other_content_is_declined_94() {
    let mut state = ready_state(1_000);
    let (first, _) = run(&mut state, &authorization(1, 2_500), &NO_CHIP);
    assert_eq!(code(&first), "51");
    let hash = state.state_hash();
    let smaller = authorization(1, 500);
    let (second, _) = run(&mut state, &smaller, &NO_CHIP);
    assert_eq!(code(&second), "94", "not the first answer: other content");
    assert!(second.event.is_none());
    let other_de3 = Request {
        processing_code: Some(*b"200000"),
        ..authorization(1, 2_500)
    };
    assert_eq!(code(&run(&mut state, &other_de3, &NO_CHIP).0), "94");
    assert_eq!(state.state_hash(), hash);
    let (same, _) = run(&mut state, &authorization(1, 2_500), &NO_CHIP);
    assert!(same.repeat);
    assert_eq!(code(&same), "51");
}

#[test]
fn a_repeat_with_the_same_billing_but_another_transaction_amount_is_94() {
    let mut state = ready_state(10_000);
    let billed = |de4: i64, de49: u16| Request {
        amount_transaction: amount(de4),
        currency_transaction: Currency::new(de49).unwrap(),
        amount_billing: Some(amount(2_500)),
        currency_billing: Some(Currency::new(986).unwrap()),
        ..authorization(1, 0)
    };
    assert_eq!(
        code(&run(&mut state, &billed(1_000, 840), &NO_CHIP).0),
        "00"
    );
    assert_eq!(
        code(&run(&mut state, &billed(1_200, 840), &NO_CHIP).0),
        "94"
    );
    assert_eq!(
        code(&run(&mut state, &billed(1_000, 978), &NO_CHIP).0),
        "94"
    );
    let (same, _) = run(&mut state, &billed(1_000, 840), &NO_CHIP);
    assert!(same.repeat);
    assert_eq!(code(&same), "00");
    assert_eq!(otb(&state), 7_500);
}

#[test]
fn an_arqc_replayed_with_a_seen_atc_is_declined_05_and_a_higher_one_approved() {
    let mut state = ready_state(100_000);
    assert_eq!(code(&run(&mut state, &chip(1, 7), &VERIFIED).0), "00");
    // The network's own retransmission (same identity, same content) is a repeat, not a replay.
    let (repeat, _) = run(&mut state, &chip(1, 7), &VERIFIED);
    assert!(repeat.repeat);
    assert_eq!(code(&repeat), "00");
    // The same cryptogram under a new STAN: a replay.
    let (replayed, json) = run(&mut state, &chip(2, 7), &VERIFIED);
    assert_eq!(code(&replayed), "05");
    assert!(
        replayed.arpc.is_some(),
        "the ARQC verified: tag 91 goes back"
    );
    let event = replayed.event.as_ref().unwrap();
    assert_eq!(event.kind, AuthorizationKind::Declined);
    let json = String::from_utf8(json).unwrap();
    assert!(
        json.contains(r#""decline_reason":"atc_replay""#),
        "the cloud's fraud side reads why: {json}"
    );
    assert_eq!(
        code(&run(&mut state, &chip(3, 6), &VERIFIED).0),
        "05",
        "lower"
    );
    assert_eq!(
        code(&run(&mut state, &chip(4, 8), &VERIFIED).0),
        "00",
        "higher"
    );
    assert_eq!(otb(&state), 100_000 - 200);
}

#[test]
fn an_unverified_arqc_does_not_raise_the_atc() {
    let mut state = ready_state(100_000);
    let config = DecideConfig {
        decline_unverified_arqc: false,
        ..config()
    };
    let unverified = Facts {
        cryptogram: Cryptogram::NotVerified,
    };
    let decision = ledger::decide::decide(&state, &chip(1, 60_000), &unverified, &config, now());
    let event = decision.event.unwrap().into_owned();
    state
        .apply_json(Source::Authorizations, &event.to_json())
        .unwrap();
    // A forged counter must not lock the real card out.
    assert_eq!(code(&run(&mut state, &chip(2, 8), &VERIFIED).0), "00");
}

/// Events of one replica, applied by two others in other orders (the card before or after them),
/// give the same ATC and the same state hash; a cloud `card.upserted` never lowers it.
#[test]
fn replicas_applying_chip_events_in_other_orders_agree_on_the_atc_and_the_hash() {
    let mut decider = ready_state(100_000);
    let mut events = Vec::new();
    for (stan, atc) in [(1, 7), (2, 9), (3, 8)] {
        let (decision, json) = run(&mut decider, &chip(stan, atc), &VERIFIED);
        assert!(decision.event.is_some());
        events.push(json);
    }
    let pan_hash = PanHash::parse_hex(PAN_HASH).unwrap();
    assert_eq!(decider.card(&pan_hash).unwrap().atc(), Some(9));

    let mut a = ready_state(100_000);
    for json in &events {
        a.apply_json(Source::Authorizations, json).unwrap();
    }
    let mut b = State::new(LedgerConfig::default());
    for json in events.iter().rev() {
        b.apply_json(Source::Authorizations, json).unwrap();
    }
    b.apply_json(Source::AccountUpdates, &account_json(1, "open", 100_000))
        .unwrap();
    b.apply_json(Source::AccountUpdates, &card_json(1, "active", "2811"))
        .unwrap();
    for state in [&a, &b] {
        assert_eq!(state.card(&pan_hash).unwrap().atc(), Some(9));
        assert_eq!(state.state_hash(), decider.state_hash());
        state.assert_invariants();
    }
    // A new version of the card from the cloud keeps the highest ATC.
    a.apply_json(Source::AccountUpdates, &card_json(2, "active", "2811"))
        .unwrap();
    assert_eq!(a.card(&pan_hash).unwrap().atc(), Some(9));
    assert_eq!(code(&run(&mut a, &chip(4, 9), &VERIFIED).0), "05");
    assert_eq!(code(&run(&mut a, &chip(5, 10), &VERIFIED).0), "00");
}

#[test]
fn the_snapshot_keeps_the_atc_and_the_content_of_each_request() {
    let mut state = ready_state(100_000);
    assert_eq!(code(&run(&mut state, &chip(1, 7), &VERIFIED).0), "00");
    assert_eq!(
        code(&run(&mut state, &authorization(2, 500), &NO_CHIP).0),
        "00"
    );
    let mut bytes = Vec::new();
    snapshot::write(&mut bytes, &state, &ResumeOffsets::new(), 0).unwrap();
    let (mut restored, _, header) = snapshot::read(&bytes[..]).unwrap();
    assert_eq!(header.format_version, 4);
    assert_eq!(restored.state_hash(), state.state_hash());
    let pan_hash = PanHash::parse_hex(PAN_HASH).unwrap();
    assert_eq!(restored.card(&pan_hash).unwrap().atc(), Some(7));
    let cash = Request {
        processing_code: Some(*b"010000"),
        ..authorization(2, 500)
    };
    assert_eq!(code(&run(&mut restored, &cash, &NO_CHIP).0), "94");
    assert_eq!(code(&run(&mut restored, &chip(3, 7), &VERIFIED).0), "05");
    assert!(
        run(&mut restored, &authorization(2, 500), &NO_CHIP)
            .0
            .repeat
    );
}

/// The new fields are read back as written, and refused where they do not belong.
#[test]
fn fingerprint_atc_and_reason_are_checked_where_they_belong() {
    use ledger::{Event, EventError};
    let declined = |extra: &str, kind: &str| {
        format!(
            r#"{{"schema":1,"type":"{kind}","event_id":"d-1","at":"2026-11-22T10:15:00Z","instance":"auth-a","account_id":"acc-1","hold_id":"h-00112233445566778899aabbccddeeff","response_code":"05","amount_minor":100,"currency":"986","remaining_minor":0{extra},"trace":{{"mti":"0100","pan_masked":"541333******0010","transmission_date_time":"1122101500","transmitted_at":"2026-11-22T10:15:00Z","stan":"000125","acquirer_id":"12345","forwarder_id":"0"}}}}"#
        )
    };
    let parse = |json: String| match Event::parse(Source::Authorizations, json.as_bytes()) {
        Ok(Event::Authorization(event)) => Ok(event.into_owned()),
        Ok(other) => panic!("not an authorizer event: {other:?}"),
        Err(error) => Err(error),
    };
    let full = format!(
        r#","content_fingerprint":"0f1e2d3c4b5a6978","pan_hash":"{PAN_HASH}","atc":65535,"decline_reason":"atc_replay""#
    );
    let event = parse(declined(&full, "authorization.declined")).expect("a valid decline");
    assert_eq!(event.content_fingerprint, Some(0x0f1e_2d3c_4b5a_6978));
    assert_eq!(event.card_atc.map(|c| c.atc), Some(65_535));
    assert_eq!(
        event.card_atc.map(|c| c.pan_hash),
        PanHash::parse_hex(PAN_HASH)
    );
    assert_eq!(event.decline_reason, Some(ledger::DeclineReason::AtcReplay));
    assert_eq!(
        parse(String::from_utf8(event.to_json()).unwrap()),
        Ok(event.clone()),
        "to_json reads back the same"
    );
    let field = |result: Result<ledger::AuthorizationEvent<'static>, EventError>| match result {
        Err(EventError::InvalidField { field, .. }) => field,
        Err(EventError::MissingField { field }) => field,
        other => panic!("expected a rejection, got {other:?}"),
    };
    let cases = [
        (
            r#","content_fingerprint":"0000000000000000""#,
            "content_fingerprint",
        ),
        (
            r#","content_fingerprint":"0F1E2D3C4B5A6978""#,
            "content_fingerprint",
        ),
        (r#","atc":7"#, "pan_hash"),
        (&format!(r#","pan_hash":"{PAN_HASH}""#), "atc"),
        (&format!(r#","pan_hash":"{PAN_HASH}","atc":65536"#), "atc"),
        (r#","decline_reason":"velocity""#, "decline_reason"),
    ];
    for (extra, expected) in cases {
        assert_eq!(
            field(parse(declined(extra, "authorization.declined"))),
            expected,
            "{extra}"
        );
    }
    // Only authorizations carry them; a reason only a decline.
    assert_eq!(
        field(parse(declined(
            r#","content_fingerprint":"0f1e2d3c4b5a6978""#,
            "hold.released"
        ))),
        "content_fingerprint"
    );
    assert_eq!(
        field(parse(declined(
            &format!(r#","pan_hash":"{PAN_HASH}","atc":7"#),
            "hold.released"
        ))),
        "atc"
    );
    assert_eq!(
        field(parse(declined(
            r#","decline_reason":"atc_replay""#,
            "hold.released"
        ))),
        "decline_reason"
    );
}

/// An ATC whose card has not arrived yet is kept aside, through a snapshot, until the card comes.
#[test]
fn a_pending_atc_survives_a_snapshot_and_joins_its_card() {
    let mut decider = ready_state(100_000);
    let (_, json) = run(&mut decider, &chip(1, 41), &VERIFIED);
    let mut early = State::new(LedgerConfig::default());
    early.apply_json(Source::Authorizations, &json).unwrap();
    let pan_hash = PanHash::parse_hex(PAN_HASH).unwrap();
    assert_eq!(early.pending_atc(&pan_hash), Some(41));
    assert_eq!(early.counts().pending_atcs, 1);
    let mut bytes = Vec::new();
    snapshot::write(&mut bytes, &early, &ResumeOffsets::new(), 0).unwrap();
    let (mut restored, _, header) = snapshot::read(&bytes[..]).unwrap();
    assert_eq!(header.counts.pending_atcs, 1);
    assert_eq!(restored.state_hash(), early.state_hash());
    assert_eq!(restored.pending_atc(&pan_hash), Some(41));
    restored
        .apply_json(Source::AccountUpdates, &account_json(1, "open", 100_000))
        .unwrap();
    restored
        .apply_json(Source::AccountUpdates, &card_json(1, "active", "2811"))
        .unwrap();
    assert_eq!(restored.card(&pan_hash).unwrap().atc(), Some(41));
    assert_eq!(restored.pending_atc(&pan_hash), None);
    assert_eq!(restored.state_hash(), decider.state_hash());
    restored.assert_invariants();
    assert_eq!(code(&run(&mut restored, &chip(2, 41), &VERIFIED).0), "05");
}
