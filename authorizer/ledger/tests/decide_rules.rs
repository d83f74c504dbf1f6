//! Every decision path and response code of `decide`, in the order the checks run.

use ledger::decide::{
    Cryptogram, DecideConfig, Decision, Facts, MccHoldRule, MessageClass, OriginalRequest,
    RemainingAmounts, Request, decide,
};
use ledger::{
    AuthorizationKind, Currency, Event, LedgerConfig, PanHash, Source, Stan, State,
    TransmissionStamp, UnixSeconds,
};

mod decide_support;
use decide_support::*;

fn reversal_of(
    original: &Request<'_>,
    stan: u32,
    replacement: Option<RemainingAmounts>,
) -> Request<'static> {
    Request {
        class: MessageClass::Reversal,
        mti: *b"0400",
        stan: Stan(stan),
        transmission: TransmissionStamp(1_122_101_600),
        original: Some(OriginalRequest {
            mti: original.mti,
            stan: original.stan,
            transmission: original.transmission,
            acquirer: original.acquirer,
            forwarder: original.forwarder,
        }),
        replacement,
        ..authorization(stan, 0)
    }
}

fn advice(stan: u32, amount_minor: i64, network_code: &str) -> Request<'static> {
    Request {
        class: MessageClass::Advice,
        mti: *b"0120",
        network_response_code: Some(ledger::ResponseCode::parse(network_code).unwrap()),
        ..authorization(stan, amount_minor)
    }
}

const CHIP: Facts = Facts {
    cryptogram: Cryptogram::Verified,
};
const NO_CHIP: Facts = Facts {
    cryptogram: Cryptogram::Absent,
};

fn run(state: &mut State, request: &Request<'_>, facts: &Facts) -> Decision<'static> {
    let config = config();
    let decision = decide(state, request, facts, &config, now()).into_owned();
    if let Some(event) = &decision.event {
        // What the daemon does: publish, and apply to its own state at once (via JSON here, to
        // prove the published form is what replicas apply).
        let json = event.to_json();
        state.apply_json(Source::Authorizations, &json).unwrap();
    }
    decision
}

fn otb(state: &State) -> i128 {
    state
        .open_to_buy(state.account_by_id("acc-1").unwrap(), now())
        .0
}

fn code<'d>(decision: &'d Decision<'_>) -> &'d str {
    decision.response_code.as_str()
}

#[test]
fn approval_holds_the_amount_with_a_six_character_code_and_arpc() {
    let mut state = ready_state(10_000);
    let decision = run(&mut state, &authorization(1, 2_500), &CHIP);
    assert_eq!(code(&decision), "00");
    let approval = decision.approval_code.unwrap();
    assert_eq!(approval.as_str().len(), 6);
    assert!(
        approval
            .as_str()
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
    );
    let arpc = decision.arpc.unwrap();
    assert_eq!(&arpc.arc, b"00");
    assert_eq!(arpc.csu, [0x00, 0x80, 0x00, 0x00]);
    let event = decision.event.unwrap();
    assert_eq!(event.kind, AuthorizationKind::HoldPlaced);
    assert_eq!(event.amount_minor, amount(2_500));
    assert_eq!(event.trace.pan_masked, "541333******0010");
    // The event id is a UUID, version 8, RFC 9562 variant.
    let id = event.event_id.as_bytes();
    assert_eq!(id.len(), 36);
    assert_eq!((id[8], id[13], id[18], id[23]), (b'-', b'-', b'-', b'-'));
    assert_eq!(id[14], b'8');
    assert!(matches!(id[19], b'8' | b'9' | b'a' | b'b'));
    assert_eq!(otb(&state), 7_500);
}

#[test]
fn a_repeat_gets_the_first_answer_and_changes_nothing() {
    let mut state = ready_state(10_000);
    let first = run(&mut state, &authorization(1, 2_500), &NO_CHIP);
    let hash = state.state_hash();
    let repeat = Request {
        mti: *b"0101",
        ..authorization(1, 2_500)
    };
    let second = run(&mut state, &repeat, &NO_CHIP);
    assert!(second.repeat);
    assert_eq!(second.response_code, first.response_code);
    assert_eq!(second.approval_code, first.approval_code);
    assert!(second.event.is_none());
    assert_eq!(state.state_hash(), hash);
    assert_eq!(otb(&state), 7_500);
}

#[test]
fn a_repeated_decline_stays_declined_after_a_payment() {
    let mut state = ready_state(1_000);
    assert_eq!(
        code(&run(&mut state, &authorization(1, 2_500), &NO_CHIP)),
        "51"
    );
    account(&mut state, 2, "open", 100_000);
    let again = run(&mut state, &authorization(1, 2_500), &NO_CHIP);
    assert_eq!(code(&again), "51");
    assert!(again.repeat && again.event.is_none());
    // A new request (new STAN) is approved.
    assert_eq!(
        code(&run(&mut state, &authorization(2, 2_500), &NO_CHIP)),
        "00"
    );
}

#[test]
fn unknown_card_is_14_without_event_or_arpc() {
    let mut state = ready_state(10_000);
    let request = Request {
        pan_hash: PanHash([7; 32]),
        ..authorization(1, 100)
    };
    let decision = run(&mut state, &request, &CHIP);
    assert_eq!(code(&decision), "14");
    assert!(decision.event.is_none() && decision.arpc.is_none());
}

#[test]
fn card_status_codes() {
    for (status, expected) in [
        ("lost", "41"),
        ("stolen", "43"),
        ("blocked", "62"),
        ("closed", "14"),
    ] {
        let mut state = ready_state(10_000);
        card(&mut state, 2, status, "2811");
        let decision = run(&mut state, &authorization(1, 100), &CHIP);
        assert_eq!(code(&decision), expected, "card {status}");
        assert_eq!(decision.event.unwrap().kind, AuthorizationKind::Declined);
        assert_eq!(
            &decision.arpc.unwrap().arc,
            expected.as_bytes(),
            "tag 91 on a verified decline"
        );
        assert_eq!(otb(&state), 10_000);
    }
}

#[test]
fn expired_card_or_wrong_de14_is_54() {
    let mut state = ready_state(10_000);
    card(&mut state, 2, "active", "2610");
    assert_eq!(
        code(&run(&mut state, &authorization(1, 100), &NO_CHIP)),
        "54"
    );
    // Expiring this month is still valid.
    card(&mut state, 3, "active", "2611");
    assert_eq!(
        code(&run(&mut state, &authorization(2, 100), &NO_CHIP)),
        "00"
    );
    let wrong = Request {
        card_expiry: ledger::CardExpiry::parse_yymm(b"2812"),
        ..authorization(3, 100)
    };
    assert_eq!(code(&run(&mut state, &wrong, &NO_CHIP)), "54");
}

#[test]
fn unverified_arqc_is_05_without_arpc_unless_configured() {
    let mut state = ready_state(10_000);
    let failed = Facts {
        cryptogram: Cryptogram::NotVerified,
    };
    let decision = run(&mut state, &authorization(1, 100), &failed);
    assert_eq!(code(&decision), "05");
    assert!(decision.arpc.is_none());
    let lenient = DecideConfig {
        decline_unverified_arqc: false,
        ..config()
    };
    let decision = decide(&state, &authorization(2, 100), &failed, &lenient, now());
    assert_eq!(code(&decision), "00");
}

#[test]
fn account_status_codes() {
    for (status, expected) in [("frozen", "62"), ("closed", "14")] {
        let mut state = ready_state(10_000);
        account(&mut state, 2, status, 10_000);
        assert_eq!(
            code(&run(&mut state, &authorization(1, 100), &NO_CHIP)),
            expected,
            "account {status}"
        );
    }
    // A card whose account was never upserted.
    let mut state = State::new(LedgerConfig::default());
    card(&mut state, 1, "active", "2811");
    assert_eq!(
        code(&run(&mut state, &authorization(1, 100), &NO_CHIP)),
        "05"
    );
}

#[test]
fn amount_is_taken_in_the_account_currency() {
    let mut state = ready_state(10_000);
    let usd = Currency::new(840).unwrap();
    let brl = Currency::new(986).unwrap();
    // DE 6 in the account's currency wins over DE 4.
    let billed = Request {
        currency_transaction: usd,
        amount_billing: Some(amount(600)),
        currency_billing: Some(brl),
        ..authorization(1, 100)
    };
    assert_eq!(code(&run(&mut state, &billed, &NO_CHIP)), "00");
    assert_eq!(otb(&state), 9_400);
    // Neither DE 51 nor DE 49 is the account's currency.
    let foreign = Request {
        currency_transaction: usd,
        ..authorization(2, 100)
    };
    assert_eq!(code(&run(&mut state, &foreign, &NO_CHIP)), "05");
    let wrong_billing = Request {
        amount_billing: Some(amount(100)),
        currency_billing: Some(usd),
        ..authorization(3, 100)
    };
    assert_eq!(code(&run(&mut state, &wrong_billing, &NO_CHIP)), "05");
}

#[test]
fn insufficient_open_to_buy_is_51_and_exact_fit_is_approved() {
    let mut state = ready_state(10_000);
    assert_eq!(
        code(&run(&mut state, &authorization(1, 10_001), &NO_CHIP)),
        "51"
    );
    assert_eq!(
        code(&run(&mut state, &authorization(2, 10_000), &NO_CHIP)),
        "00"
    );
    assert_eq!(otb(&state), 0);
    assert_eq!(code(&run(&mut state, &authorization(3, 1), &NO_CHIP)), "51");
}

#[test]
fn checks_run_in_the_documented_order() {
    // Lost and expired: card status first.
    let mut state = ready_state(0);
    card(&mut state, 2, "lost", "2001");
    assert_eq!(
        code(&run(&mut state, &authorization(1, 100), &NO_CHIP)),
        "41"
    );
    // Expired and frozen: expiry first.
    let mut state = ready_state(0);
    card(&mut state, 2, "active", "2001");
    account(&mut state, 2, "frozen", 0);
    assert_eq!(
        code(&run(&mut state, &authorization(1, 100), &NO_CHIP)),
        "54"
    );
    // Frozen and insufficient: account status first.
    let mut state = ready_state(0);
    account(&mut state, 2, "frozen", 0);
    assert_eq!(
        code(&run(&mut state, &authorization(1, 100), &NO_CHIP)),
        "62"
    );
    // Wrong currency and insufficient: currency first.
    let mut state = ready_state(0);
    let foreign = Request {
        currency_transaction: Currency::new(840).unwrap(),
        ..authorization(1, 100)
    };
    assert_eq!(code(&run(&mut state, &foreign, &NO_CHIP)), "05");
}

#[test]
fn hold_expiry_depends_on_the_merchant_category() {
    let mut state = ready_state(10_000);
    let hotel = Request {
        merchant_category: Some(7011),
        ..authorization(1, 100)
    };
    let event = run(&mut state, &hotel, &NO_CHIP).event.unwrap();
    // Counted from the decision (`now`), not from DE 7.
    assert_eq!(event.expires_at.unwrap().0 - now().0, 31 * 86_400);
    let restaurant = run(&mut state, &authorization(2, 100), &NO_CHIP)
        .event
        .unwrap();
    assert_eq!(restaurant.expires_at.unwrap().0 - now().0, 7 * 86_400);
    // After the restaurant hold expires only the hotel hold counts.
    let later = UnixSeconds(now().0 + 8 * 86_400);
    assert_eq!(
        state
            .open_to_buy(state.account_by_id("acc-1").unwrap(), later)
            .0,
        9_900
    );
}

#[test]
fn too_many_holds_on_one_account_is_05() {
    let mut state = ready_state(1_000_000);
    let small = DecideConfig {
        holds_per_account_max: 2,
        ..config()
    };
    for stan in 1..=2 {
        let d = decide(&state, &authorization(stan, 1), &NO_CHIP, &small, now());
        state
            .apply(&Event::Authorization(d.event.unwrap()))
            .unwrap();
    }
    assert_eq!(
        code(&decide(
            &state,
            &authorization(3, 1),
            &NO_CHIP,
            &small,
            now()
        )),
        "05"
    );
}

#[test]
fn approved_advice_holds_even_beyond_open_to_buy() {
    let mut state = ready_state(1_000);
    let decision = run(&mut state, &advice(1, 5_000, "00"), &NO_CHIP);
    assert_eq!(code(&decision), "00");
    assert_eq!(
        decision.event.unwrap().kind,
        AuthorizationKind::HoldAdjusted
    );
    assert_eq!(otb(&state), -4_000);
    let repeat = run(
        &mut state,
        &Request {
            mti: *b"0121",
            ..advice(1, 5_000, "00")
        },
        &NO_CHIP,
    );
    assert!(repeat.repeat && repeat.event.is_none());
    assert_eq!(otb(&state), -4_000);
}

#[test]
fn declined_advice_holds_nothing_and_is_still_answered_00() {
    let mut state = ready_state(1_000);
    let decision = run(&mut state, &advice(1, 500, "51"), &NO_CHIP);
    assert_eq!(code(&decision), "00");
    assert_eq!(otb(&state), 1_000);
    // An advice that our approval was replaced by a network decline releases our hold.
    assert_eq!(
        code(&run(&mut state, &authorization(2, 300), &NO_CHIP)),
        "00"
    );
    assert_eq!(otb(&state), 700);
    run(&mut state, &advice(2, 300, "05"), &NO_CHIP);
    assert_eq!(otb(&state), 1_000);
}

#[test]
fn advice_for_an_unknown_card_is_acknowledged() {
    let mut state = ready_state(1_000);
    let request = Request {
        pan_hash: PanHash([9; 32]),
        ..advice(1, 500, "00")
    };
    let decision = run(&mut state, &request, &NO_CHIP);
    assert_eq!(code(&decision), "00");
    assert!(decision.event.is_none());
}

#[test]
fn full_reversal_releases_the_hold() {
    let mut state = ready_state(10_000);
    let original = authorization(1, 2_500);
    run(&mut state, &original, &NO_CHIP);
    let decision = run(&mut state, &reversal_of(&original, 50, None), &NO_CHIP);
    assert_eq!(code(&decision), "00");
    let event = decision.event.unwrap();
    assert_eq!(event.kind, AuthorizationKind::HoldReleased);
    assert_eq!(event.remaining_minor, Some(amount(0)));
    assert_eq!(event.amount_minor, amount(2_500));
    assert_eq!(otb(&state), 10_000);
    // The repeat (0401) changes nothing.
    let repeat = run(
        &mut state,
        &Request {
            mti: *b"0401",
            ..reversal_of(&original, 50, None)
        },
        &NO_CHIP,
    );
    assert!(repeat.repeat && repeat.event.is_none());
    // DE 95 all zeros is a full release too.
    let zeros = RemainingAmounts {
        transaction: amount(0),
        settlement: amount(0),
        billing: amount(0),
    };
    let second = authorization(2, 1_000);
    run(&mut state, &second, &NO_CHIP);
    run(&mut state, &reversal_of(&second, 51, Some(zeros)), &NO_CHIP);
    assert_eq!(otb(&state), 10_000);
}

#[test]
fn partial_reversal_keeps_the_replacement_amount() {
    let mut state = ready_state(10_000);
    let original = authorization(1, 2_500);
    run(&mut state, &original, &NO_CHIP);
    // Billing non-zero: billing is what remains.
    let billing = RemainingAmounts {
        transaction: amount(9),
        settlement: amount(0),
        billing: amount(1_000),
    };
    run(
        &mut state,
        &reversal_of(&original, 50, Some(billing)),
        &NO_CHIP,
    );
    assert_eq!(otb(&state), 9_000);
    // Billing zero: transaction is what remains.
    let transaction = RemainingAmounts {
        transaction: amount(400),
        settlement: amount(0),
        billing: amount(0),
    };
    run(
        &mut state,
        &reversal_of(&original, 51, Some(transaction)),
        &NO_CHIP,
    );
    assert_eq!(otb(&state), 9_600);
}

#[test]
fn reversal_before_its_original_releases_the_late_original() {
    let mut state = ready_state(10_000);
    let original = authorization(1, 2_500);
    let decision = run(&mut state, &reversal_of(&original, 50, None), &NO_CHIP);
    assert_eq!(code(&decision), "00");
    assert_eq!(
        decision.event.unwrap().amount_minor,
        amount(0),
        "nothing known to release yet"
    );
    // The network has reversed it: declined, nothing held.
    assert_eq!(code(&run(&mut state, &original, &NO_CHIP)), "05");
    assert_eq!(otb(&state), 10_000, "the late original holds nothing");
}

#[test]
fn reversal_of_a_declined_original_does_nothing() {
    let mut state = ready_state(1_000);
    let original = authorization(1, 2_500);
    assert_eq!(code(&run(&mut state, &original, &NO_CHIP)), "51");
    let hash = state.state_hash();
    let decision = run(&mut state, &reversal_of(&original, 50, None), &NO_CHIP);
    assert_eq!(code(&decision), "00");
    assert!(decision.event.is_none());
    assert_eq!(state.state_hash(), hash);
}

#[test]
fn format_errors_are_30_with_the_field() {
    let mut state = ready_state(1_000);
    let bad_de7 = Request {
        transmission: TransmissionStamp(1_332_101_500),
        ..authorization(1, 100)
    };
    let decision = run(&mut state, &bad_de7, &NO_CHIP);
    assert_eq!((code(&decision), decision.field_in_error), ("30", Some(7)));
    let no_de90 = Request {
        original: None,
        ..reversal_of(&authorization(1, 1), 2, None)
    };
    let decision = run(&mut state, &no_de90, &NO_CHIP);
    assert_eq!((code(&decision), decision.field_in_error), ("30", Some(90)));
    let no_de39 = Request {
        network_response_code: None,
        ..advice(3, 100, "00")
    };
    assert_eq!(run(&mut state, &no_de39, &NO_CHIP).field_in_error, Some(39));
    assert!(decision.event.is_none());
}

#[test]
fn decisions_are_deterministic_and_event_ids_unique_per_request() {
    let state = ready_state(10_000);
    let config = config();
    let a = decide(&state, &authorization(1, 100), &NO_CHIP, &config, now());
    let b = decide(&state, &authorization(1, 100), &NO_CHIP, &config, now());
    assert_eq!(a, b);
    let c = decide(&state, &authorization(2, 100), &NO_CHIP, &config, now());
    assert_ne!(a.event.unwrap().event_id, c.event.unwrap().event_id);
}

#[test]
fn config_bounds_are_enforced() {
    assert!(
        DecideConfig {
            instance: String::new(),
            ..config()
        }
        .validate()
        .is_err()
    );
    let too_long = DecideConfig {
        hold_duration_rules: vec![MccHoldRule {
            from: 7011,
            to: 7011,
            duration_s: 90 * 86_400,
        }],
        ..config()
    };
    let error = too_long.validate().unwrap_err().to_string();
    assert!(
        error.contains("7011") && error.contains("7776000"),
        "{error}"
    );
    assert!(
        DecideConfig {
            holds_per_account_max: 0,
            ..config()
        }
        .validate()
        .is_err()
    );
}

// The holes a review found (docs/network.md, "Decision rules"): each test failed before its fix.

#[test]
fn a_stale_de7_is_a_field_in_error_and_cannot_spend_the_same_money_twice() {
    let mut state = ready_state(10_000);
    // DE 7 eight days before the clock: 11-14 10:15:00.
    for stan in 1..=5 {
        let stale = Request {
            transmission: TransmissionStamp(1_114_101_500),
            ..authorization(stan, 6_000)
        };
        let decision = run(&mut state, &stale, &NO_CHIP);
        assert_eq!((code(&decision), decision.field_in_error), ("30", Some(7)));
        assert!(decision.event.is_none());
    }
    assert_eq!(otb(&state), 10_000);
    // Just inside the default skew (10 minutes) either way is a request like any other.
    for (stan, de7) in [(6, 1_122_100_506), (7, 1_122_102_505)] {
        let near = Request {
            transmission: TransmissionStamp(de7),
            ..authorization(stan, 1_000)
        };
        assert_eq!(code(&run(&mut state, &near, &NO_CHIP)), "00");
    }
    let too_far = Request {
        transmission: TransmissionStamp(1_122_102_506),
        ..authorization(8, 1_000)
    };
    assert_eq!(run(&mut state, &too_far, &NO_CHIP).field_in_error, Some(7));
    assert_eq!(otb(&state), 8_000);
}

#[test]
fn a_hold_expires_from_the_decision_never_from_de7() {
    let mut state = ready_state(10_000);
    // DE 7 five minutes before the decision.
    let request = Request {
        transmission: TransmissionStamp(1_122_101_005),
        ..authorization(1, 100)
    };
    let event = run(&mut state, &request, &NO_CHIP).event.unwrap();
    assert_eq!(event.expires_at.unwrap().0 - now().0, 7 * 86_400);
    let advice = Request {
        transmission: TransmissionStamp(1_122_101_005),
        ..advice(2, 100, "00")
    };
    let event = run(&mut state, &advice, &NO_CHIP).event.unwrap();
    assert_eq!(event.expires_at.unwrap().0 - now().0, 7 * 86_400);
}

#[test]
fn apply_refuses_a_hold_that_has_expired_when_placed() {
    let mut state = ready_state(10_000);
    let mut event = run(&mut ready_state(10_000), &authorization(1, 6_000), &NO_CHIP)
        .event
        .unwrap();
    event.expires_at = Some(event.at);
    let hash = state.state_hash();
    let error = state
        .apply_json(Source::Authorizations, &event.to_json())
        .unwrap_err();
    assert!(error.to_string().contains("expires_at"), "{error}");
    assert_eq!(state.state_hash(), hash, "nothing applied");
}

#[test]
fn an_identity_repeated_with_another_amount_is_94_and_holds_nothing() {
    let mut state = ready_state(10_000);
    assert_eq!(
        code(&run(&mut state, &authorization(1, 1_000), &NO_CHIP)),
        "00"
    );
    let hash = state.state_hash();
    let altered = run(&mut state, &authorization(1, 9_000), &NO_CHIP);
    assert_eq!(code(&altered), "94");
    assert!(!altered.repeat && altered.event.is_none() && altered.approval_code.is_none());
    let other_currency = Request {
        currency_transaction: Currency::new(840).unwrap(),
        ..authorization(1, 1_000)
    };
    assert_eq!(code(&run(&mut state, &other_currency, &NO_CHIP)), "94");
    assert_eq!(state.state_hash(), hash);
    assert_eq!(otb(&state), 9_000);
    // The true repeat still gets the first answer.
    let repeat = Request {
        mti: *b"0101",
        ..authorization(1, 1_000)
    };
    let again = run(&mut state, &repeat, &NO_CHIP);
    assert!(again.repeat && code(&again) == "00");
}

#[test]
fn an_original_after_its_reversal_is_declined_and_holds_nothing() {
    let mut state = ready_state(10_000);
    let original = authorization(1, 2_500);
    run(&mut state, &reversal_of(&original, 50, None), &NO_CHIP);
    let late = run(&mut state, &original, &NO_CHIP);
    assert_eq!(code(&late), "05");
    assert!(late.approval_code.is_none());
    assert_eq!(
        late.event.as_ref().map(|e| e.kind),
        Some(AuthorizationKind::Declined)
    );
    assert_eq!(otb(&state), 10_000);
    // Its repeat is the same decline.
    let repeat = run(
        &mut state,
        &Request {
            mti: *b"0101",
            ..original
        },
        &NO_CHIP,
    );
    assert!(repeat.repeat && code(&repeat) == "05");
}

#[test]
fn declined_requests_cannot_lock_an_account() {
    let mut state = ready_state(1_000);
    let small = DecideConfig {
        holds_per_account_max: 3,
        ..config()
    };
    // Anyone with the PAN: many declined requests (over the limit each time).
    for stan in 1..=10 {
        let d = decide(&state, &authorization(stan, 5_000), &NO_CHIP, &small, now());
        assert_eq!(code(&d), "51");
        state
            .apply(&Event::Authorization(d.event.unwrap()))
            .unwrap();
    }
    // The card holder's own purchase is still decided on its money.
    let mine = decide(&state, &authorization(100, 100), &NO_CHIP, &small, now());
    assert_eq!(code(&mine), "00");
    state
        .apply(&Event::Authorization(mine.event.unwrap()))
        .unwrap();
    // Live holds with money still count: three of them, then 05.
    for stan in 101..=102 {
        let d = decide(&state, &authorization(stan, 100), &NO_CHIP, &small, now());
        assert_eq!(code(&d), "00");
        state
            .apply(&Event::Authorization(d.event.unwrap()))
            .unwrap();
    }
    let fourth = decide(&state, &authorization(103, 100), &NO_CHIP, &small, now());
    assert_eq!(code(&fourth), "05");
}

#[test]
fn an_event_id_names_everything_the_event_does() {
    let state = ready_state(10_000);
    let config = config();
    let event = decide(&state, &authorization(1, 100), &NO_CHIP, &config, now())
        .event
        .unwrap();
    // `at` moves the watermark: another instant is another event.
    let later = decide(
        &state,
        &authorization(1, 100),
        &NO_CHIP,
        &config,
        UnixSeconds(now().0 + 1),
    )
    .event
    .unwrap();
    assert_ne!(event.event_id, later.event_id, "`at` is part of the id");
    // What changes no state leaves the id alone: the same decision by another instance, or
    // with another DE 37, is the same effect, and dropping one of the two loses nothing.
    let other_instance = DecideConfig {
        instance: "auth-b".into(),
        ..config.clone()
    };
    let b = decide(
        &state,
        &authorization(1, 100),
        &NO_CHIP,
        &other_instance,
        now(),
    )
    .event
    .unwrap();
    assert_eq!(event.event_id, b.event_id);
    // The same request after its card moved to another account: another event.
    let mut moved = ready_state(10_000);
    let json = r#"{"schema":1,"type":"account.upserted","event_id":"acc-2","at":"2026-11-22T10:00:00Z","account_id":"acc-2","version":1,"status":"open","currency":"986","credit_limit":10000,"posted_balance":0}"#;
    moved
        .apply_json(Source::AccountUpdates, json.as_bytes())
        .unwrap();
    let json = format!(
        r#"{{"schema":1,"type":"card.upserted","event_id":"card-v2","at":"2026-11-22T10:00:00Z","account_id":"acc-2","card_id":"card-1","version":2,"pan_hash":"{PAN_HASH}","pan_last4":"0010","expiry":"2811","psn":"01","status":"active","key_set":"mc-cvn17-1"}}"#
    );
    moved
        .apply_json(Source::AccountUpdates, json.as_bytes())
        .unwrap();
    let d = decide(&moved, &authorization(1, 100), &NO_CHIP, &config, now())
        .event
        .unwrap();
    assert_eq!(d.account_id(), "acc-2");
    assert_ne!(
        event.event_id, d.event_id,
        "`account_id` is part of the event"
    );
}

#[test]
fn a_partial_reversal_reads_de95_only_in_the_currency_the_hold_was_taken_in() {
    let mut state = ready_state(10_000);
    // Held from DE 6 (5,000 in the account's currency) for a purchase of 1,000 dollars.
    let dollars = Request {
        amount_transaction: amount(1_000),
        currency_transaction: Currency::new(840).unwrap(),
        amount_billing: Some(amount(5_000)),
        currency_billing: Some(Currency::new(986).unwrap()),
        ..authorization(1, 0)
    };
    assert_eq!(code(&run(&mut state, &dollars, &NO_CHIP)), "00");
    assert_eq!(otb(&state), 5_000);
    let reversal = |stan: u32, transaction: i64, billing: i64| Request {
        amount_transaction: amount(1_000),
        currency_transaction: Currency::new(840).unwrap(),
        amount_billing: Some(amount(5_000)),
        currency_billing: Some(Currency::new(986).unwrap()),
        ..reversal_of(
            &dollars,
            stan,
            Some(RemainingAmounts {
                transaction: amount(transaction),
                settlement: amount(0),
                billing: amount(billing),
            }),
        )
    };
    // DE 95 billing: 3,000 of the account's currency remain.
    run(&mut state, &reversal(50, 600, 3_000), &NO_CHIP);
    assert_eq!(otb(&state), 7_000);
    // DE 95 with only the transaction subfield: 200 *dollars* remain, which is not 200 of the
    // account's currency: ignored, the hold released in full (never more than was held).
    run(&mut state, &reversal(51, 200, 0), &NO_CHIP);
    assert_eq!(otb(&state), 10_000);
}

#[test]
fn an_approved_advice_in_no_currency_of_the_account_is_flagged_never_silently_zero() {
    let mut state = ready_state(10_000);
    let dollars = Request {
        currency_transaction: Currency::new(840).unwrap(),
        ..advice(1, 5_000, "00")
    };
    let decision = run(&mut state, &dollars, &NO_CHIP);
    assert_eq!(code(&decision), "00", "an advice is never declined");
    let json = String::from_utf8(decision.event.unwrap().to_json()).unwrap();
    assert!(json.contains(r#""amount_minor":0"#), "{json}");
    assert!(
        json.contains(r#""unconverted_amount_minor":5000,"unconverted_currency":"840""#),
        "the event says what the network approved: {json}"
    );
    // Every replica reads it back (the JSON `run` applied is the one published).
    let parsed = Event::parse(Source::Authorizations, json.as_bytes()).unwrap();
    let Event::Authorization(parsed) = parsed else {
        panic!("an authorizer event")
    };
    assert_eq!(
        parsed
            .unconverted
            .map(|u| (u.amount_minor, u.currency.code())),
        Some((amount(5_000), 840))
    );
    assert_eq!(otb(&state), 10_000, "nothing held without a rate");
}

#[test]
fn chip_data_that_disagrees_with_the_request_is_declined() {
    use ledger::decide::{ChipData, MccRange};
    let agreeing = ChipData {
        amount: Some(amount(100)),
        currency: Some(Currency::new(986).unwrap()),
        date: Some((26, 11, 22)),
        atc: Some(7),
    };
    // Each with its own ATC (the card's counter goes up), so that only the data disagrees.
    let chip = |stan: u32, chip: ChipData| Request {
        chip: Some(ChipData {
            atc: Some(6 + stan as u16),
            ..chip
        }),
        ..authorization(stan, 100)
    };
    let mut state = ready_state(100_000);
    assert_eq!(code(&run(&mut state, &chip(1, agreeing), &CHIP)), "00");
    // A cryptogram the card computed for 10,000, replayed with DE 4 = 100.
    let more = ChipData {
        amount: Some(amount(10_000)),
        ..agreeing
    };
    let declined = run(&mut state, &chip(2, more), &CHIP);
    assert_eq!(code(&declined), "05");
    assert_eq!(
        declined.event.as_ref().map(|e| e.kind),
        Some(AuthorizationKind::Declined),
        "the decline is published, for the cloud's fraud side"
    );
    assert!(
        declined.arpc.is_some(),
        "the ARQC verified: tag 91 goes back"
    );
    let dollars = ChipData {
        currency: Some(Currency::new(840).unwrap()),
        ..agreeing
    };
    assert_eq!(code(&run(&mut state, &chip(3, dollars), &CHIP)), "05");
    let last_week = ChipData {
        date: Some((26, 11, 15)),
        ..agreeing
    };
    assert_eq!(code(&run(&mut state, &chip(4, last_week), &CHIP)), "05");
    // Where amounts legitimately differ (a fuel dispenser), only the amount may.
    let fuel = DecideConfig {
        chip_amount_may_differ: vec![MccRange {
            from: 5542,
            to: 5542,
        }],
        ..config()
    };
    let at_the_pump = Request {
        merchant_category: Some(5542),
        ..chip(5, more)
    };
    assert_eq!(
        code(&decide(&state, &at_the_pump, &CHIP, &fuel, now())),
        "00"
    );
    let pump_in_dollars = Request {
        merchant_category: Some(5542),
        ..chip(6, dollars)
    };
    assert_eq!(
        code(&decide(&state, &pump_in_dollars, &CHIP, &fuel, now())),
        "05"
    );
}
