//! The no-overspend property where the simple one cannot look: DE 7 anywhere within the
//! accepted skew (and beyond it), several currencies, expiry by merchant category, chip
//! requests (their ATC rising, and replays of a used one), repeats with altered amounts or
//! another DE 3, reversals before their originals, time moving on, and a second replica that
//! applies the same events in another interleaving and must end with the same state (the
//! cards' highest ATC included, whether the card or its events arrive first).
//!
//! The global check, after every step: the live holds that approvals placed (advices aside:
//! the network's stand-in spends beyond open-to-buy by design) never add up to more than the
//! credit limit minus the posted balance.

use std::collections::{BTreeMap, BTreeSet};

use ledger::decide::{
    ChipData, Cryptogram, DecideConfig, Facts, MessageClass, OriginalRequest, RemainingAmounts,
    Request, decide,
};
use ledger::state::parts;
use ledger::time::civil_from_days;
use ledger::{
    AmountMinor, Currency, DeclineReason, HoldId, InstitutionId, LedgerConfig, PanHash,
    ResponseCode, Source, Stan, State, TransmissionStamp, UnixSeconds,
};
use proptest::prelude::*;

const PAN_HASH: &str = "5f0e1c2b3a49586776859a0b1c2d3e4f5f0e1c2b3a49586776859a0b1c2d3e4f";
const LIMIT: i64 = 10_000;

#[derive(Clone, Copy, Debug)]
enum Money {
    /// DE 4 in the account's currency.
    Local,
    /// DE 4 in dollars, DE 6 in the account's currency (twice the dollar figure).
    Billed,
    /// DE 4 in dollars, no DE 6: no way to hold it.
    Foreign,
}

#[derive(Clone, Debug)]
enum Op {
    Authorize {
        stan: u32,
        amount: i64,
        skew_s: i64,
        money: Money,
        hotel: bool,
        chip: bool,
    },
    /// The identity of an earlier request (its STAN and DE 7), another amount.
    Altered { stan: u32, amount: i64 },
    /// A true repeat (0101) of an earlier request.
    Repeat { stan: u32 },
    /// The identity and amount of an earlier request, another DE 3 (cash instead of purchase).
    OtherCode { stan: u32 },
    /// A new request whose verified ARQC has an ATC `back` below the card's highest.
    Replay { stan: u32, back: u16 },
    Advise {
        stan: u32,
        amount: i64,
        approved: bool,
    },
    /// A reversal; of a STAN never seen, it comes before its original.
    Reverse { stan: u32, remaining: Option<i64> },
    /// The clock moves on.
    Wait { seconds: i64 },
}

fn money() -> impl Strategy<Value = Money> {
    prop_oneof![4 => Just(Money::Local), 2 => Just(Money::Billed), 1 => Just(Money::Foreign)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0u32..30, 1i64..4_000, -900i64..900, money(), any::<bool>(), any::<bool>()).prop_map(
            |(stan, amount, skew_s, money, hotel, chip)| Op::Authorize { stan, amount, skew_s, money, hotel, chip }
        ),
        2 => (0u32..30, 1i64..8_000).prop_map(|(stan, amount)| Op::Altered { stan, amount }),
        2 => (0u32..30).prop_map(|stan| Op::Repeat { stan }),
        1 => (0u32..30).prop_map(|stan| Op::OtherCode { stan }),
        1 => (0u32..30, 0u16..3).prop_map(|(stan, back)| Op::Replay { stan, back }),
        1 => (0u32..30, 1i64..4_000, any::<bool>()).prop_map(|(stan, amount, approved)| Op::Advise { stan, amount, approved }),
        2 => (0u32..40, proptest::option::of(0i64..4_000)).prop_map(|(stan, remaining)| Op::Reverse { stan, remaining }),
        1 => (1i64..(10 * 86_400)).prop_map(|seconds| Op::Wait { seconds }),
    ]
}

/// DE 7 (MMDDhhmmss, UTC) of an instant.
fn de7(at: UnixSeconds) -> TransmissionStamp {
    let (_, month, day) = civil_from_days(at.0.div_euclid(86_400));
    let second_of_day = at.0.rem_euclid(86_400) as u64;
    TransmissionStamp(
        u64::from(month) * 100_000_000
            + u64::from(day) * 1_000_000
            + (second_of_day / 3600) * 10_000
            + (second_of_day / 60 % 60) * 100
            + second_of_day % 60,
    )
}

fn amount(value: i64) -> AmountMinor {
    AmountMinor::new(value).unwrap()
}

fn request(
    stan: u32,
    transmission: TransmissionStamp,
    value: i64,
    money: Money,
) -> Request<'static> {
    let (currency, billing) = match money {
        Money::Local => (986, None),
        Money::Billed => (840, Some(amount(value * 2))),
        Money::Foreign => (840, None),
    };
    Request {
        class: MessageClass::Authorization,
        mti: *b"0100",
        pan_hash: PanHash::parse_hex(PAN_HASH).unwrap(),
        pan_masked: "541333******0010",
        transmission,
        stan: Stan(stan),
        processing_code: Some(*b"000000"),
        acquirer: InstitutionId(12345),
        forwarder: InstitutionId(0),
        amount_transaction: amount(value),
        currency_transaction: Currency::new(currency).unwrap(),
        amount_billing: billing,
        currency_billing: billing.map(|_| Currency::new(986).unwrap()),
        card_expiry: None,
        merchant_category: Some(5812),
        network_response_code: None,
        original: None,
        replacement: None,
        retrieval_reference: None,
        chip: None,
    }
}

/// A replica's log: the cloud's events and the authorizers', each in its topic's order.
#[derive(Default)]
struct Log {
    cloud: Vec<Vec<u8>>,
    authorizations: Vec<Vec<u8>>,
}

fn setup(state: &mut State, log: &mut Log) {
    let account = format!(
        r#"{{"schema":1,"type":"account.upserted","event_id":"a1","at":"2026-11-22T10:00:00Z","account_id":"acc-1","version":1,"status":"open","currency":"986","credit_limit":{LIMIT},"posted_balance":0}}"#
    );
    let card = format!(
        r#"{{"schema":1,"type":"card.upserted","event_id":"c1","at":"2026-11-22T10:00:00Z","account_id":"acc-1","card_id":"card-1","version":1,"pan_hash":"{PAN_HASH}","pan_last4":"0010","expiry":"2811","psn":"01","status":"active","key_set":"ks"}}"#
    );
    for event in [account, card] {
        state
            .apply_json(Source::AccountUpdates, event.as_bytes())
            .unwrap();
        log.cloud.push(event.into_bytes());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn no_overspend_across_skew_currencies_expiry_repeats_reversals_and_two_replicas(
        ops in proptest::collection::vec(op(), 1..80),
        interleaving in proptest::collection::vec(any::<bool>(), 0..200),
    ) {
        let config = DecideConfig::new("auth-a");
        let mut now = ledger::time::parse_rfc3339_utc("2026-11-22T10:15:05Z").unwrap();
        let mut state = State::new(LedgerConfig::default());
        let mut log = Log::default();
        setup(&mut state, &mut log);
        let account = state.account_by_id("acc-1").unwrap();
        // The first request of each STAN: its DE 7, amount and money.
        let mut first: BTreeMap<u32, (TransmissionStamp, i64, Money)> = BTreeMap::new();
        let mut approved: BTreeSet<HoldId> = BTreeSet::new();
        let pan_hash = PanHash::parse_hex(PAN_HASH).unwrap();
        // The card's counter: each chip request of an Authorize uses the next one.
        let mut atc: u16 = 0;
        for op in ops {
            let mut must_be = None;
            let mut facts = Facts { cryptogram: Cryptogram::Absent };
            let request = match op {
                Op::Authorize { stan, amount: value, skew_s, money, hotel, chip } => {
                    let transmission = de7(UnixSeconds(now.0 + skew_s));
                    first.entry(stan).or_insert((transmission, value, money));
                    let mut chip_data = None;
                    if chip {
                        facts.cryptogram = Cryptogram::Verified;
                        atc += 1;
                        chip_data = Some(ChipData { atc: Some(atc), ..ChipData::default() });
                    }
                    Request {
                        merchant_category: Some(if hotel { 7011 } else { 5812 }),
                        chip: chip_data,
                        ..request(stan, transmission, value, money)
                    }
                }
                Op::Altered { stan, amount: value } => {
                    let Some(&(transmission, _, money)) = first.get(&stan) else { continue };
                    request(stan, transmission, value, money)
                }
                Op::Repeat { stan } => {
                    let Some(&(transmission, value, money)) = first.get(&stan) else { continue };
                    Request { mti: *b"0101", ..request(stan, transmission, value, money) }
                }
                Op::OtherCode { stan } => {
                    let Some(&(transmission, value, money)) = first.get(&stan) else { continue };
                    let request = Request {
                        processing_code: Some(*b"010000"),
                        ..request(stan, transmission, value, money)
                    };
                    let decided = state
                        .hold(&HoldId::derive(&request.identity()))
                        .is_some_and(|h| h.has(parts::AUTH) || h.has(parts::DECLINE));
                    // Its DE 7 may have left the skew since (30 comes first).
                    let in_skew = ledger::time::transmission_instant(transmission.0, now)
                        .is_some_and(|t| (t.0 - now.0).abs() <= config.transmission_skew_s);
                    if decided && in_skew {
                        must_be = Some(("94", None));
                    }
                    request
                }
                Op::Replay { stan, back } => {
                    let Some(highest) = state.card(&pan_hash).and_then(|c| c.atc()) else { continue };
                    facts.cryptogram = Cryptogram::Verified;
                    let request = Request {
                        chip: Some(ChipData { atc: Some(highest.saturating_sub(back)), ..ChipData::default() }),
                        ..request(3_000 + stan, de7(now), 100, Money::Local)
                    };
                    if state.hold(&HoldId::derive(&request.identity())).is_none() {
                        must_be = Some(("05", Some(DeclineReason::AtcReplay)));
                    }
                    request
                }
                Op::Advise { stan, amount: value, approved } => Request {
                    class: MessageClass::Advice,
                    mti: *b"0120",
                    network_response_code: Some(ResponseCode::parse(if approved { "00" } else { "51" }).unwrap()),
                    ..request(1_000 + stan, de7(now), value, Money::Local)
                },
                Op::Reverse { stan, remaining } => {
                    let (transmission, _, money) = first
                        .get(&stan)
                        .copied()
                        .unwrap_or((de7(UnixSeconds(now.0 - 30)), 0, Money::Local));
                    Request {
                        class: MessageClass::Reversal,
                        mti: *b"0400",
                        original: Some(OriginalRequest {
                            mti: *b"0100",
                            stan: Stan(stan),
                            transmission,
                            acquirer: InstitutionId(12345),
                            forwarder: InstitutionId(0),
                        }),
                        replacement: remaining.map(|r| RemainingAmounts {
                            transaction: amount(r),
                            settlement: AmountMinor::ZERO,
                            billing: AmountMinor::ZERO,
                        }),
                        ..request(2_000 + stan, de7(now), 0, money)
                    }
                }
                Op::Wait { seconds } => {
                    now = UnixSeconds(now.0 + seconds);
                    continue;
                }
            };
            let before = state.open_to_buy(account, now);
            let hash_before = state.state_hash();
            let decision = decide(&state, &request, &facts, &config, now);
            if let Some((code, reason)) = must_be {
                prop_assert_eq!((decision.response_code.as_str(), decision.reason), (code, reason));
                if code == "94" {
                    prop_assert!(decision.event.is_none(), "another content changes nothing");
                }
            }
            if let Some(event) = &decision.event {
                let json = event.to_json();
                state.apply_json(Source::Authorizations, &json).unwrap();
                log.authorizations.push(json);
            }
            let after = state.open_to_buy(account, now);
            if decision.event.is_none() {
                prop_assert_eq!(state.state_hash(), hash_before);
            }
            if request.class == MessageClass::Authorization {
                if decision.response_code.is_approved() && !decision.repeat {
                    prop_assert!(after.0 >= 0, "approval took open-to-buy from {before:?} to {after:?}");
                    approved.insert(decision.hold_id.unwrap());
                } else if !decision.response_code.is_approved() {
                    prop_assert_eq!(after, before, "a decline holds nothing");
                }
                // DE 7 outside the skew is a field in error, and holds nothing.
                let transmitted = ledger::time::transmission_instant(request.transmission.0, now).unwrap();
                if (transmitted.0 - now.0).abs() > config.transmission_skew_s {
                    prop_assert_eq!((decision.response_code.as_str(), decision.field_in_error), ("30", Some(7)));
                }
                if matches!(op_money(&request), Money::Foreign) {
                    prop_assert!(!decision.response_code.is_approved() || decision.repeat);
                }
            }
            // The global check: what approvals hold, live, never exceeds limit - balance.
            let held: i128 = approved
                .iter()
                .filter_map(|id| state.hold(id))
                .filter(|hold| !hold.has(parts::ADVICE))
                .map(|hold| i128::from(hold.held_at(now).minor()))
                .sum();
            prop_assert!(held <= i128::from(LIMIT), "approvals hold {held} on a limit of {LIMIT}");
        }
        // A second replica: the cloud's topic and the authorizers' interleaved another way, and
        // every authorizer event delivered twice.
        let mut replica = State::new(LedgerConfig::default());
        let (mut cloud, mut auths) = (log.cloud.iter(), log.authorizations.iter().peekable());
        let mut choices = interleaving.into_iter();
        loop {
            let take_cloud = choices.next().unwrap_or(true);
            match (take_cloud, auths.peek().is_some()) {
                (true, _) | (false, false) => match cloud.next() {
                    Some(event) => { replica.apply_json(Source::AccountUpdates, event).unwrap(); }
                    None if auths.peek().is_none() => break,
                    None => {
                        let event = auths.next().unwrap();
                        replica.apply_json(Source::Authorizations, event).unwrap();
                        replica.apply_json(Source::Authorizations, event).unwrap();
                    }
                },
                (false, true) => {
                    let event = auths.next().unwrap();
                    replica.apply_json(Source::Authorizations, event).unwrap();
                    replica.apply_json(Source::Authorizations, event).unwrap();
                }
            }
        }
        prop_assert_eq!(replica.state_hash(), state.state_hash(), "the replicas converge");
        prop_assert_eq!(
            replica.card(&pan_hash).and_then(|c| c.atc()),
            state.card(&pan_hash).and_then(|c| c.atc())
        );
        replica.assert_invariants();
    }
}

fn op_money(request: &Request<'_>) -> Money {
    match (request.currency_transaction.code(), request.amount_billing) {
        (986, _) => Money::Local,
        (_, Some(_)) => Money::Billed,
        _ => Money::Foreign,
    }
}
