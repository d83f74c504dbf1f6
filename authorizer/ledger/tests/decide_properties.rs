//! Property tests of the decision rules: no overspend, repeats change nothing.

use ledger::decide::{
    Cryptogram, DecideConfig, Facts, MessageClass, OriginalRequest, RemainingAmounts, Request,
    decide,
};
use ledger::{
    AccountIndex, AmountMinor, Currency, Event, InstitutionId, LedgerConfig, PanHash, ResponseCode,
    Source, Stan, State, TransmissionStamp,
};
use proptest::prelude::*;

const PAN_HASH: &str = "5f0e1c2b3a49586776859a0b1c2d3e4f5f0e1c2b3a49586776859a0b1c2d3e4f";

#[derive(Clone, Debug)]
enum Op {
    Authorize {
        stan: u32,
        amount: i64,
    },
    Advise {
        stan: u32,
        amount: i64,
        approved: bool,
    },
    Reverse {
        stan: u32,
        remaining: Option<i64>,
    },
    Repeat {
        stan: u32,
        class: u8,
    },
    Payment {
        limit: i64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u32..40, 0i64..4_000).prop_map(|(stan, amount)| Op::Authorize { stan, amount }),
        1 => (0u32..40, 0i64..4_000, any::<bool>()).prop_map(|(stan, amount, approved)| Op::Advise { stan, amount, approved }),
        2 => (0u32..40, proptest::option::of(0i64..4_000)).prop_map(|(stan, remaining)| Op::Reverse { stan, remaining }),
        2 => (0u32..40, 0u8..3).prop_map(|(stan, class)| Op::Repeat { stan, class }),
        1 => (0i64..20_000).prop_map(|limit| Op::Payment { limit }),
    ]
}

fn request(class: MessageClass, mti: &[u8; 4], stan: u32, amount: i64) -> Request<'static> {
    Request {
        class,
        mti: *mti,
        pan_hash: PanHash::parse_hex(PAN_HASH).unwrap(),
        pan_masked: "541333******0010",
        transmission: TransmissionStamp(1_122_101_500),
        stan: Stan(stan),
        processing_code: Some(*b"000000"),
        acquirer: InstitutionId(12345),
        forwarder: InstitutionId(0),
        amount_transaction: AmountMinor::new(amount).unwrap(),
        currency_transaction: Currency::new(986).unwrap(),
        amount_billing: None,
        currency_billing: None,
        card_expiry: None,
        merchant_category: None,
        network_response_code: None,
        original: None,
        replacement: None,
        retrieval_reference: None,
        chip: None,
    }
}

fn reversal(stan: u32, remaining: Option<i64>, mti: &[u8; 4]) -> Request<'static> {
    Request {
        original: Some(OriginalRequest {
            mti: *b"0100",
            stan: Stan(stan),
            transmission: TransmissionStamp(1_122_101_500),
            acquirer: InstitutionId(12345),
            forwarder: InstitutionId(0),
        }),
        replacement: remaining.map(|r| RemainingAmounts {
            transaction: AmountMinor::new(r).unwrap(),
            settlement: AmountMinor::ZERO,
            billing: AmountMinor::ZERO,
        }),
        transmission: TransmissionStamp(1_122_101_600),
        ..request(MessageClass::Reversal, mti, 500 + stan, 0)
    }
}

fn setup(limit: i64, version: u64, state: &mut State) {
    let account = format!(
        r#"{{"schema":1,"type":"account.upserted","event_id":"a{version}","at":"2026-11-22T10:00:00Z","account_id":"acc-1","version":{version},"status":"open","currency":"986","credit_limit":{limit},"posted_balance":0}}"#
    );
    state
        .apply_json(Source::AccountUpdates, account.as_bytes())
        .unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn no_overspend_and_repeats_change_nothing(ops in proptest::collection::vec(op(), 1..80), limit in 0i64..20_000) {
        let config = DecideConfig::new("auth-a");
        let facts = Facts { cryptogram: Cryptogram::Absent };
        let now = ledger::time::parse_rfc3339_utc("2026-11-22T10:15:05Z").unwrap();
        let mut state = State::new(LedgerConfig::default());
        setup(limit, 1, &mut state);
        let card = format!(
            r#"{{"schema":1,"type":"card.upserted","event_id":"c1","at":"2026-11-22T10:00:00Z","account_id":"acc-1","card_id":"card-1","version":1,"pan_hash":"{PAN_HASH}","pan_last4":"0010","expiry":"2811","psn":"01","status":"active","key_set":"ks"}}"#
        );
        state.apply_json(Source::AccountUpdates, card.as_bytes()).unwrap();
        let account = state.account_by_id("acc-1").unwrap();
        // The same decisions applied the ledger thread's way (`apply_decided`, with a right or a
        // wrong account hint) give the same state.
        let mut shadow = State::new(LedgerConfig::default());
        setup(limit, 1, &mut shadow);
        shadow.apply_json(Source::AccountUpdates, card.as_bytes()).unwrap();
        let mut version = 1;
        for (i, op) in ops.into_iter().enumerate() {
            let request = match op {
                Op::Authorize { stan, amount } => request(MessageClass::Authorization, b"0100", stan, amount),
                Op::Advise { stan, amount, approved } => Request {
                    network_response_code: Some(ResponseCode::parse(if approved { "00" } else { "51" }).unwrap()),
                    ..request(MessageClass::Advice, b"0120", 100 + stan, amount)
                },
                Op::Reverse { stan, remaining } => reversal(stan, remaining, b"0400"),
                Op::Repeat { stan, class } => match class {
                    0 => request(MessageClass::Authorization, b"0101", stan, 1),
                    1 => Request {
                        network_response_code: Some(ResponseCode::APPROVED),
                        ..request(MessageClass::Advice, b"0121", 100 + stan, 1)
                    },
                    _ => reversal(stan, None, b"0401"),
                },
                Op::Payment { limit } => {
                    version += 1;
                    setup(limit, version, &mut state);
                    setup(limit, version, &mut shadow);
                    continue;
                }
            };
            let before = state.open_to_buy(account, now);
            let hash_before = state.state_hash();
            let decision = decide(&state, &request, &facts, &config, now);
            if decision.repeat {
                prop_assert!(decision.event.is_none());
            }
            if let Some(event) = &decision.event {
                state.apply(&Event::Authorization(event.clone())).unwrap();
                let hint = decision.account.map(|a| if i % 3 == 0 { AccountIndex(a.0 + i as u32) } else { a });
                shadow.apply_decided(event, hint).unwrap();
                prop_assert_eq!(shadow.state_hash(), state.state_hash());
            } else {
                prop_assert_eq!(state.state_hash(), hash_before, "no event, no change");
            }
            let after = state.open_to_buy(account, now);
            if request.class == MessageClass::Authorization && decision.response_code.is_approved() && !decision.repeat {
                // An approval never takes open-to-buy below zero, and takes at most its amount
                // (less when a reversal arrived before it).
                prop_assert!(after.0 >= 0, "approval took OTB from {:?} to {:?}", before, after);
                prop_assert!(after.0 >= before.0 - i128::from(request.amount_transaction.minor()));
            }
            if request.class == MessageClass::Authorization && !decision.response_code.is_approved() {
                prop_assert_eq!(after, before, "a decline holds nothing");
            }
            // Deciding the same request again right away is a repeat: same answer, no event.
            let again = decide(&state, &request, &facts, &config, now);
            if decision.event.is_some() {
                prop_assert!(again.event.is_none(), "second decision of {:?} has an event", request.mti);
                if request.class == MessageClass::Authorization {
                    prop_assert_eq!(again.response_code, decision.response_code);
                    prop_assert_eq!(again.approval_code, decision.approval_code);
                }
            }
        }
    }
}
